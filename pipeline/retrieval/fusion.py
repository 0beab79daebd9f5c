"""Fusion of recall branches: RRF, weighted RRF, convex combination (min-max or z-score), and DBSF."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..errors import InputError
from ..search.topk import top_k
from .branches import BranchResult

FUSION_METHODS = ("rrf", "weighted_rrf", "convex", "dbsf")


def _union(results: Mapping[str, BranchResult]) -> np.ndarray:
    docs = [r.doc_ords for r in results.values() if len(r.doc_ords)]
    return np.unique(np.concatenate(docs)) if docs else np.zeros(0, dtype=np.int64)


def _accumulate(results: Mapping[str, BranchResult], contribution: Callable[[BranchResult], np.ndarray],
                weights: Mapping[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
    docs = _union(results)
    total = np.zeros(len(docs))
    for name, result in results.items():
        weight = 1.0 if weights is None else weights.get(name, 0.0)
        if weight == 0 or not len(result.doc_ords):
            continue
        total[np.searchsorted(docs, result.doc_ords)] += weight * contribution(result)
    order = top_k(docs, total)
    return docs[order], total[order]


def rrf(results: Mapping[str, BranchResult], k: int = 60, weights: Mapping[str, float] | None = None):
    """Reciprocal rank fusion: Σ w_b / (k + rank_b); unweighted when `weights` is None."""
    return _accumulate(results, lambda r: 1.0 / (k + np.arange(1, len(r.doc_ords) + 1)), weights)


def minmax(scores: np.ndarray) -> np.ndarray:
    spread = scores.max() - scores.min()
    return np.ones_like(scores) if spread == 0 else (scores - scores.min()) / spread


def zscore(scores: np.ndarray) -> np.ndarray:
    std = scores.std()
    return np.zeros_like(scores) if std == 0 else (scores - scores.mean()) / std


def convex(results: Mapping[str, BranchResult], weights: Mapping[str, float], normalization: str = "minmax"):
    """Σ w_b · norm(score_b) over the branches that found a document; a branch that missed it adds nothing."""
    norm = {"minmax": minmax, "zscore": zscore}[normalization]
    return _accumulate(results, lambda r: norm(np.asarray(r.scores, dtype=np.float64)), weights)


def dbsf(results: Mapping[str, BranchResult], weights: Mapping[str, float] | None = None):
    """Distribution-based score fusion: each list scaled by its mean ± 3σ to [0, 1], then summed."""

    def scale(result: BranchResult) -> np.ndarray:
        scores = np.asarray(result.scores, dtype=np.float64)
        low, high = scores.mean() - 3 * scores.std(), scores.mean() + 3 * scores.std()
        return np.ones_like(scores) if high == low else np.clip((scores - low) / (high - low), 0, 1)

    return _accumulate(results, scale, weights)


def fuse(results: Mapping[str, BranchResult], method: str, weights: Mapping[str, float], rrf_k: int = 60,
         normalization: str = "minmax"):
    """(doc ordinals, fused scores), best first."""
    if method == "rrf":
        return rrf(results, rrf_k)
    if method == "weighted_rrf":
        return rrf(results, rrf_k, weights)
    if method == "convex":
        return convex(results, weights, normalization)
    if method == "dbsf":
        return dbsf(results, weights)
    raise InputError(f"unknown fusion method {method!r}; choose from {FUSION_METHODS}")


WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)


def tune_weights(
    per_query: list[dict[str, BranchResult]],
    objective: Callable[[list[tuple[np.ndarray, np.ndarray]]], float],
    method: str,
    branches: list[str],
    rrf_k: int = 60,
    normalization: str = "minmax",
    rounds: int = 2,
) -> tuple[dict[str, float], float]:
    """Per-branch weights that maximise `objective` over a train split's fused runs, by coordinate ascent over
    WEIGHT_GRID: a full grid grows as 5^branches, this as 5 · branches · rounds."""

    def score(weights: dict[str, float]) -> float:
        return objective([fuse(results, method, weights, rrf_k, normalization) for results in per_query])

    best_weights = {b: 1.0 for b in branches}
    best_score = score(best_weights)
    for _ in range(rounds):
        improved = False
        for branch in branches:
            for value in WEIGHT_GRID:
                if value == best_weights[branch]:
                    continue
                candidate = {**best_weights, branch: value}
                if not any(candidate.values()):
                    continue
                candidate_score = score(candidate)
                if candidate_score > best_score + 1e-9:
                    best_weights, best_score, improved = candidate, candidate_score, True
        if not improved:
            break
    return best_weights, best_score
