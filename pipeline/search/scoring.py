"""BM25 of a query's terms per field and summed over the boosted fields, memoised on the query plan."""

from __future__ import annotations

import numpy as np

from .bm25 import bm25_scores
from .plan import QueryPlan
from .reader import IndexReader


def field_scores(reader: IndexReader, field: str, term_ids: list[int]) -> np.ndarray:
    """Dense BM25 of one field for every document."""
    bm25 = reader.settings.bm25
    return bm25_scores(reader.postings(field), term_ids, bm25.k1, bm25.b, stats=reader.collection_stats(field))


def boosted_scores(reader: IndexReader, term_ids: list[int], field_boosts: dict[str, float] | None = None,
                   best_field: bool = False) -> np.ndarray:
    """Dense BM25 over the fields of `field_boosts` (default `bm25.field_boosts`), each times its boost:
    summed, or with `best_field` the best field's (Elasticsearch's most_fields and best_fields)."""
    total = np.zeros(reader.n_docs)
    for field, boost in (reader.field_boosts if field_boosts is None else field_boosts).items():
        scores = boost * field_scores(reader, field, term_ids)
        total = np.maximum(total, scores) if best_field else total + scores
    return total


def plan_field_scores(reader: IndexReader, plan: QueryPlan, field: str) -> np.ndarray:
    """`field_scores` of the plan's whole-query terms, computed once per plan."""
    return plan.memo(("field", field), lambda: field_scores(reader, field, plan.term_ids))


def plan_boosted_scores(reader: IndexReader, plan: QueryPlan) -> np.ndarray:
    """`boosted_scores` of the plan's whole-query terms, computed once per plan."""
    return plan.memo(("boosted",), lambda: boosted_scores(reader, plan.term_ids, plan.field_boosts,
                                                           plan.best_field))
