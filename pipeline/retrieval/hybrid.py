"""Hybrid retrieval: every recall branch in parallel, then one fusion of their candidates."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..config import FusionConfig
from ..deadline import check
from ..search.plan import QueryPlan
from ..search.reader import IndexReader
from .adaptive import AdaptiveFusion, FusionChoice, query_signals
from .branches import BranchResult, available_branches, run_branches
from .fusion import fuse
from .weights import FusionWeights


@dataclass
class HybridResult:
    doc_ords: np.ndarray  # best first
    scores: np.ndarray
    branches: dict[str, BranchResult]
    fused_scores: dict[int, float]  # every fused candidate's score, for explanations
    choice: FusionChoice | None = None  # the per-query weights, when adaptive fusion chose them


def recall(reader: IndexReader, plan: QueryPlan) -> dict[str, BranchResult]:
    """Every branch the index has, at the configured depth."""
    fusion = reader.settings.fusion
    return run_branches(reader, plan, fusion.depth, available_branches(reader), fusion.threads)


def fuse_branches(branches: dict[str, BranchResult], fusion: FusionConfig,
                  weights: FusionWeights) -> tuple[np.ndarray, np.ndarray]:
    """The weights' fusion method with their weights: what the ranker sees, online and in training."""
    return fuse(branches, weights.method, weights.weights, fusion.rrf_k, fusion.normalization)


def hybrid(reader: IndexReader, plan: QueryPlan, weights: FusionWeights, adaptive: AdaptiveFusion | None = None,
           branches: dict[str, BranchResult] | None = None,
           channel_weights: dict[str, float] | None = None) -> HybridResult:
    """Recall (unless the branches are given) and fuse; with an adaptive model the weights are the ones it picks
    for this query. `channel_weights` weigh branches beyond the query's own (`channels.py`), which neither tuned nor
    adaptive weights name."""
    branches = recall(reader, plan) if branches is None else branches
    check("fusion")
    choice = adaptive.choose(query_signals(reader, plan, branches)) if adaptive is not None else None
    chosen = choice.weights if choice else weights
    if channel_weights:
        chosen = replace(chosen, weights={**chosen.weights, **channel_weights})
    docs, scores = fuse_branches(branches, reader.settings.fusion, chosen)
    return HybridResult(docs, scores, branches, dict(zip(docs.tolist(), scores.tolist())), choice)
