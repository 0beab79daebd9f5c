"""Recall branches run in parallel: BM25 over the boosted fields, body and title, dense ANN, and term proximity."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..index.postings import TEXT_FIELD
from ..search.plan import QueryPlan
from ..search.proximity import span_features
from ..search.reader import IndexReader
from ..search.scoring import plan_boosted_scores, plan_field_scores
from ..search.topk import top_k


@dataclass
class BranchResult:
    name: str
    doc_ords: np.ndarray  # best first
    scores: np.ndarray

    def rank_of(self) -> dict[int, int]:
        return {int(d): rank for rank, d in enumerate(self.doc_ords.tolist(), 1)}


def _best(name: str, candidates: np.ndarray, scores: np.ndarray, depth: int) -> BranchResult:
    keep = top_k(candidates, scores, depth)
    return BranchResult(name, candidates[keep], scores[keep])


def _positive(name: str, scores: np.ndarray, allowed: np.ndarray | None, depth: int) -> BranchResult:
    """The `depth` best documents that score above zero and pass the filter."""
    candidates = np.flatnonzero(scores > 0 if allowed is None else (scores > 0) & allowed)
    return _best(name, candidates, scores[candidates], depth)


def bm25_branch(reader: IndexReader, plan: QueryPlan, depth: int) -> BranchResult:
    return _positive("bm25", plan_boosted_scores(reader, plan), plan.allowed, depth)


def _field_branch(name: str, field: str) -> Callable[[IndexReader, QueryPlan, int], BranchResult]:
    def branch(reader: IndexReader, plan: QueryPlan, depth: int) -> BranchResult:
        return _positive(name, plan_field_scores(reader, plan, field), plan.allowed, depth)

    return branch


def dense_branch(reader: IndexReader, plan: QueryPlan, depth: int) -> BranchResult:
    if plan.vector is None:
        return BranchResult("dense", np.zeros(0, np.int64), np.zeros(0))
    docs, scores = reader.dense.rank(plan.vector, depth, plan.allowed)
    return BranchResult("dense", docs, scores)


def proximity_branch(reader: IndexReader, plan: QueryPlan, depth: int) -> BranchResult:
    """Documents where several query terms occur close together, by coverage, then by how tight the span is."""
    candidates, _, _, scores = proximity_candidates(reader, plan, depth * 3)
    return _best("proximity", candidates, scores, depth)


def proximity_candidates(reader: IndexReader, plan: QueryPlan,
                         limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(candidates, coverage, BM25, proximity score) of the `limit` best-covered documents holding two or more
    distinct query terms, BM25 then ordinal breaking ties: what the proximity branch ranks. A cluster's
    coordinator picks its own `limit` best from every shard's."""
    distinct = plan.distinct_ids
    empty = np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0), np.zeros(0)
    if len(distinct) < 2:
        return empty
    postings = reader.postings(TEXT_FIELD)  # title and body together
    coverage = np.zeros(reader.n_docs, dtype=np.int32)
    for term_id in distinct:
        coverage[postings.docs[postings.span(term_id)]] += 1
    if plan.allowed is not None:
        coverage[~plan.allowed] = 0
    candidates = np.flatnonzero(coverage >= 2)
    if not len(candidates):
        return empty
    # Bound the position work: the best-covered documents, BM25 breaking ties.
    tiebreak = plan_boosted_scores(reader, plan)[candidates]
    keep = np.lexsort((-tiebreak, -coverage[candidates]))[:limit]
    candidates, tiebreak = candidates[keep], tiebreak[keep]
    lookup = plan.term_lookup(len(reader.vocabulary))
    scores = np.array([coverage[d] / len(distinct) + span_features(reader, int(d), lookup)[1] for d in candidates])
    return candidates, coverage[candidates], tiebreak, scores


BRANCHES: dict[str, Callable[[IndexReader, QueryPlan, int], BranchResult]] = {
    "bm25": bm25_branch,
    "bm25_body": _field_branch("bm25_body", "body"),
    "bm25_title": _field_branch("bm25_title", "title"),
    "dense": dense_branch,
    "proximity": proximity_branch,
}


def available_branches(reader: IndexReader) -> list[str]:
    """Every branch the index can run: dense only where it has vectors."""
    return [name for name in BRANCHES if name != "dense" or reader.has_dense]


def run_branches(
    reader: IndexReader, plan: QueryPlan, depth: int, names: list[str] | None = None, threads: int = 4
) -> dict[str, BranchResult]:
    """Every named branch, concurrently; numpy and faiss release the GIL for the heavy parts."""
    names = names or list(BRANCHES)
    # The boosted score is shared by two branches and the features: compute it once, up front.
    plan_boosted_scores(reader, plan)
    pool = _pool(threads)
    futures = {name: pool.submit(BRANCHES[name], reader, plan, depth) for name in names}
    return {name: future.result() for name, future in futures.items()}


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """One long-lived pool per size: starting threads for every query would cost more than the branches."""
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recall")
    return _POOLS[threads]
