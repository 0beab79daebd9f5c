"""Hybrid retrieval: parallel recall, fusion, the learned ranker on top, and why each result is there."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import FEATURES, extract
from .fusion import fuse
from .ranking import Ranker
from .recall import BranchResult, QueryContext, run_branches


@dataclass
class Explanation:
    """Why a document is in the results: the branches that found it, the terms it matched, and — under the
    ranker — each feature's contribution, which add up (with the bias) to the model score."""

    branches: dict[str, dict]  # branch → {"rank", "score"}
    matched_terms: list[str]
    fused_score: float | None = None
    model_score: float | None = None
    bias: float | None = None
    contributions: list[dict] | None = None  # [{"feature", "value", "contribution"}], largest |contribution| first

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class HybridResult:
    doc_ords: np.ndarray
    scores: np.ndarray
    branches: dict[str, BranchResult]
    fused_scores: dict[int, float]
    features: np.ndarray | None = None  # rows align with `candidates`
    candidates: np.ndarray | None = None
    ranker: Ranker | None = None


def recall(searcher, ctx: QueryContext) -> dict[str, BranchResult]:
    """Every branch the index has, at the configured depth."""
    settings = searcher.settings.fusion
    return run_branches(searcher, ctx, settings.depth, searcher.branch_names(), settings.threads)


def fuse_configured(searcher, branches: dict[str, BranchResult]) -> tuple[np.ndarray, np.ndarray]:
    """The configured fusion with the index's weights: the candidates the ranker sees, online and in training."""
    settings = searcher.settings.fusion
    return fuse(branches, settings.method, searcher.fusion_weights(), settings.rrf_k, settings.normalization)


def recall_and_fuse(searcher, ctx: QueryContext) -> tuple[dict[str, BranchResult], np.ndarray, np.ndarray]:
    branches = recall(searcher, ctx)
    return branches, *fuse_configured(searcher, branches)


def hybrid(searcher, ctx: QueryContext) -> HybridResult:
    branches, docs, scores = recall_and_fuse(searcher, ctx)
    return HybridResult(docs, scores, branches, dict(zip(docs.tolist(), scores.tolist())))


def learned(searcher, ctx: QueryContext, ranker: Ranker) -> HybridResult:
    """Fuse, keep the best `ranker.candidates`, and order them by the model's score."""
    branches, docs, fused_scores = recall_and_fuse(searcher, ctx)
    candidates = docs[: searcher.settings.ranker.candidates]
    features = extract(searcher, ctx, candidates, branches)
    model_scores = ranker.predict(features)
    order = np.lexsort((candidates, -model_scores))
    return HybridResult(
        candidates[order], model_scores[order], branches, dict(zip(docs.tolist(), fused_scores.tolist())),
        features[order], candidates[order], ranker,
    )


def explain(searcher, ctx: QueryContext, result: HybridResult, doc_ord: int, top_features: int = 8) -> Explanation:
    found = {}
    for name, branch in result.branches.items():
        hits = np.flatnonzero(branch.doc_ords == doc_ord)
        if len(hits):
            found[name] = {"rank": int(hits[0]) + 1, "score": round(float(branch.scores[hits[0]]), 6)}
    matched = searcher.matched_terms(doc_ord, set(ctx.term_ids))
    explanation = Explanation(found, matched, fused_score=result.fused_scores.get(doc_ord))
    if result.ranker is not None and result.candidates is not None:
        row = int(np.flatnonzero(result.candidates == doc_ord)[0])
        contributions = result.ranker.contributions(result.features[row : row + 1])[0]
        explanation.bias = float(contributions[-1])
        explanation.model_score = float(contributions.sum())
        items = [
            {"feature": name, "value": _plain(result.features[row, i]), "contribution": float(contributions[i])}
            for i, name in enumerate(FEATURES)
        ]
        items.sort(key=lambda item: -abs(item["contribution"]))
        explanation.contributions = items[:top_features] + [
            {"feature": "(other features)", "value": None,
             "contribution": float(sum(item["contribution"] for item in items[top_features:]))}
        ]
    return explanation


def _plain(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6)
