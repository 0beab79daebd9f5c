"""Why a document is in the results: the branches that found it, the terms it matched, each feature's share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..retrieval.adaptive import nothing_to_say, query_signals
from ..retrieval.hybrid import HybridResult
from ..search.plan import QueryPlan
from ..search.reader import IndexReader
from ..search.results import matched_terms
from .features import FEATURES
from .rerank import RankedResult

TOP_FEATURES = 8  # features listed one by one; the rest are summed into "(other features)"


@dataclass
class Explanation:
    """Under the ranker, the contributions add up (with the bias) to the model score."""

    branches: dict[str, dict]  # branch → {"rank", "score"}
    matched_terms: list[str]
    fused_score: float | None = None
    fusion_weights: str | None = None  # "configured", or the id of the tuned weights fused with
    query_weights: dict[str, float] | None = None  # adaptive fusion: this query's branch weights
    fusion_choice: str | None = None  # adaptive fusion: the arm chosen and, in words, why
    notes: list[str] | None = None  # what the user should know about the query, e.g. a branch with nothing to say
    model_score: float | None = None
    bias: float | None = None
    contributions: list[dict] | None = None  # [{"feature", "value", "contribution"}], largest |contribution| first

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def single_branch(reader: IndexReader, mode: str, doc_ords: np.ndarray, scores: np.ndarray, term_ids: list[int],
                  doc_ord: int) -> dict:
    """A single-branch mode: that branch found the document at its rank."""
    rank = int(np.flatnonzero(doc_ords == doc_ord)[0]) + 1
    return {"branches": {mode: {"rank": rank, "score": round(float(scores[rank - 1]), 6)}},
            "matched_terms": matched_terms(reader, doc_ord, set(term_ids))}


def explain(reader: IndexReader, plan: QueryPlan, result: HybridResult, doc_ord: int,
            weights_id: str | None = None) -> Explanation:
    found = {}
    for name, branch in result.branches.items():
        hits = np.flatnonzero(branch.doc_ords == doc_ord)
        if len(hits):
            found[name] = {"rank": int(hits[0]) + 1, "score": round(float(branch.scores[hits[0]]), 6)}
    matched = matched_terms(reader, doc_ord, set(plan.term_ids))
    explanation = Explanation(found, matched, fused_score=result.fused_scores.get(doc_ord), fusion_weights=weights_id)
    choice = result.choice
    signals = choice.signals if choice is not None else query_signals(reader, plan, result.branches)
    note = nothing_to_say(signals, reader.has_dense)
    explanation.notes = [note] if note else None
    if choice is not None:
        explanation.fusion_weights = choice.weights.weights_id
        explanation.query_weights = {b: round(w, 6) for b, w in choice.weights.weights.items()}
        explanation.fusion_choice = choice.arm + (" because " + " and ".join(choice.reasons) if choice.reasons else "")
    if isinstance(result, RankedResult) and result.ranker is not None:
        row = int(np.flatnonzero(result.candidates == doc_ord)[0])
        contributions = result.ranker.contributions(result.features[row : row + 1])[0]
        explanation.bias = float(contributions[-1])
        explanation.model_score = float(contributions.sum())
        items = [
            {"feature": name, "value": _plain(result.features[row, i]), "contribution": float(contributions[i])}
            for i, name in enumerate(FEATURES)
        ]
        items.sort(key=lambda item: -abs(item["contribution"]))
        explanation.contributions = items[:TOP_FEATURES] + [
            {"feature": "(other features)", "value": None,
             "contribution": float(sum(item["contribution"] for item in items[TOP_FEATURES:]))}
        ]
    return explanation


def _plain(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6)
