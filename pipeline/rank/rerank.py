"""The learned ranker online: fuse, keep the best candidates, and order them by the model's score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..retrieval.branches import BranchResult
from ..retrieval.hybrid import HybridResult, fuse_branches, recall
from ..retrieval.weights import FusionWeights
from ..search.plan import QueryPlan
from ..search.reader import IndexReader
from ..search.topk import top_k
from .features import extract
from .model import Ranker


@dataclass
class RankedResult(HybridResult):
    """A hybrid result re-ordered by the ranker, with the feature rows that explain each candidate."""

    features: np.ndarray | None = None  # rows align with `candidates`
    candidates: np.ndarray | None = None
    ranker: Ranker | None = None


def ranker_candidates(reader: IndexReader, plan: QueryPlan, weights: FusionWeights,
                      branches: dict[str, BranchResult] | None = None):
    """(branches, fused docs, fused scores, the candidates the ranker re-orders): one choice, online and in training.

    Training passes the branches it already recalled."""
    branches = recall(reader, plan) if branches is None else branches
    docs, scores = fuse_branches(branches, reader.settings.fusion, weights)
    return branches, docs, scores, docs[: reader.settings.ranker.candidates]


def learned(reader: IndexReader, plan: QueryPlan, ranker: Ranker, weights: FusionWeights) -> RankedResult:
    branches, docs, fused_scores, candidates = ranker_candidates(reader, plan, weights)
    features = extract(reader, plan, candidates, branches)
    model_scores = ranker.predict(features)
    order = top_k(candidates, model_scores)
    return RankedResult(
        candidates[order], model_scores[order], branches, dict(zip(docs.tolist(), fused_scores.tolist())),
        features=features[order], candidates=candidates[order], ranker=ranker,
    )
