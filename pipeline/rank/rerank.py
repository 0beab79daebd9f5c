"""The learned ranker online: fuse, keep the best candidates, and order them by the model's score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..deadline import check
from ..retrieval.adaptive import AdaptiveFusion
from ..retrieval.branches import BranchResult
from ..retrieval.hybrid import HybridResult, hybrid
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
                      adaptive: AdaptiveFusion | None = None,
                      branches: dict[str, BranchResult] | None = None,
                      channel_weights: dict[str, float] | None = None) -> tuple[HybridResult, np.ndarray]:
    """(the hybrid mode's fusion, the candidates the ranker re-orders): one choice, online and in training.

    The candidates are the best of what the hybrid mode serves, adaptive fusion included, so the ranker starts
    from that order and sees its fused score. Training passes the branches it already recalled."""
    fused = hybrid(reader, plan, weights, adaptive, branches, channel_weights)
    return fused, fused.doc_ords[: reader.settings.ranker.candidates]


def learned(reader: IndexReader, plan: QueryPlan, ranker: Ranker, weights: FusionWeights,
            adaptive: AdaptiveFusion | None = None, branches: dict[str, BranchResult] | None = None,
            channel_weights: dict[str, float] | None = None) -> RankedResult:
    fused, candidates = ranker_candidates(reader, plan, weights, adaptive, branches, channel_weights)
    features = extract(reader, plan, candidates, fused.branches, fused.scores[: len(candidates)])
    check("ranking")
    model_scores = ranker.predict(features)
    order = top_k(candidates, model_scores)
    return RankedResult(
        candidates[order], model_scores[order], fused.branches, fused.fused_scores, fused.choice,
        features=features[order], candidates=candidates[order], ranker=ranker,
    )
