"""Recall branches run in parallel: BM25 over all fields, body and title, dense ANN, and term proximity."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .bm25 import bm25_scores


@dataclass
class BranchResult:
    name: str
    doc_ords: np.ndarray  # best first
    scores: np.ndarray

    def rank_of(self) -> dict[int, int]:
        return {int(d): rank for rank, d in enumerate(self.doc_ords.tolist(), 1)}


@dataclass
class QueryContext:
    """What every branch and feature shares about one query; filled once, read by many threads."""

    text: str
    terms: list[str]
    term_ids: list[int]  # known terms, repeats kept (a repeated word weighs more in BM25)
    allowed: np.ndarray | None = None  # filter mask over documents
    vector: np.ndarray | None = None  # the query embedding, when the index has a dense branch
    field_scores: dict[str, np.ndarray] = field(default_factory=dict)  # dense per-doc BM25 per field

    _lookup: np.ndarray | None = field(default=None, repr=False)

    @property
    def distinct_ids(self) -> list[int]:
        return list(dict.fromkeys(self.term_ids))

    def term_lookup(self, n_terms: int) -> np.ndarray:
        """A boolean table over the vocabulary marking the query's terms, built once per query."""
        if self._lookup is None:
            self._lookup = np.zeros(n_terms, dtype=bool)
            self._lookup[np.asarray(self.distinct_ids, dtype=np.int64)] = True
        return self._lookup


def _top(scores: np.ndarray, allowed: np.ndarray | None, depth: int, name: str) -> BranchResult:
    mask = scores > 0 if allowed is None else (scores > 0) & allowed
    candidates = np.flatnonzero(mask)
    if len(candidates) > depth:
        candidates = candidates[np.argpartition(-scores[candidates], depth - 1)[:depth]]
    order = np.lexsort((candidates, -scores[candidates]))
    return BranchResult(name, candidates[order], scores[candidates[order]])


def field_bm25(searcher, ctx: QueryContext, field_name: str) -> np.ndarray:
    """BM25 of one field for every document (the boosted multi-field score for `all`), memoised per query."""
    if field_name not in ctx.field_scores:
        if field_name == "all":
            ctx.field_scores[field_name] = searcher.score_terms(ctx.term_ids)
        else:
            bm25 = searcher.settings.bm25
            postings = searcher.index.inverted.fields[field_name]
            ctx.field_scores[field_name] = bm25_scores(postings, ctx.term_ids, bm25.k1, bm25.b)
    return ctx.field_scores[field_name]


def _bm25_branch(name: str, field_name: str) -> Callable:
    def branch(searcher, ctx: QueryContext, depth: int) -> BranchResult:
        return _top(field_bm25(searcher, ctx, field_name), ctx.allowed, depth, name)

    return branch


def dense_branch(searcher, ctx: QueryContext, depth: int) -> BranchResult:
    if ctx.vector is None:
        return BranchResult("dense", np.zeros(0, np.int64), np.zeros(0))
    docs, scores = searcher.dense.rank(ctx.vector, depth, ctx.allowed)
    return BranchResult("dense", docs, scores)


def proximity_branch(searcher, ctx: QueryContext, depth: int) -> BranchResult:
    """Documents where several query terms occur close together, by coverage, then by how tight the span is."""
    from .features import span_features

    distinct = ctx.distinct_ids
    empty = BranchResult("proximity", np.zeros(0, np.int64), np.zeros(0))
    if len(distinct) < 2:
        return empty
    postings = searcher.index.inverted.fields["text"]
    coverage = np.zeros(searcher.n_docs, dtype=np.int32)
    for term_id in distinct:
        coverage[postings.docs[postings.span(term_id)]] += 1
    if ctx.allowed is not None:
        coverage[~ctx.allowed] = 0
    candidates = np.flatnonzero(coverage >= 2)
    if not len(candidates):
        return empty
    # Bound the position work: the best-covered documents, BM25 breaking ties.
    tiebreak = field_bm25(searcher, ctx, "all")[candidates]
    candidates = candidates[np.lexsort((-tiebreak, -coverage[candidates]))[: depth * 3]]
    lookup = ctx.term_lookup(len(searcher.index.vocabulary))
    scores = np.array([
        coverage[d] / len(distinct) + span_features(searcher.index.forward, int(d), lookup)[1] for d in candidates
    ])
    return _top_scores(candidates, scores, depth, "proximity")


def _top_scores(candidates: np.ndarray, scores: np.ndarray, depth: int, name: str) -> BranchResult:
    order = np.lexsort((candidates, -scores))[:depth]
    return BranchResult(name, candidates[order], scores[order])


BRANCHES: dict[str, Callable] = {
    "bm25": _bm25_branch("bm25", "all"),
    "bm25_body": _bm25_branch("bm25_body", "body"),
    "bm25_title": _bm25_branch("bm25_title", "title"),
    "dense": dense_branch,
    "proximity": proximity_branch,
}


def run_branches(
    searcher, ctx: QueryContext, depth: int, names: list[str] | None = None, threads: int = 4
) -> dict[str, BranchResult]:
    """Every named branch, concurrently; numpy and faiss release the GIL for the heavy parts."""
    names = names or list(BRANCHES)
    # The boosted score is shared by two branches and the features: compute it once, up front.
    field_bm25(searcher, ctx, "all")
    pool = _pool(threads)
    futures = {name: pool.submit(BRANCHES[name], searcher, ctx, depth) for name in names}
    return {name: future.result() for name, future in futures.items()}


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """One long-lived pool per size: starting threads for every query would cost more than the branches."""
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recall")
    return _POOLS[threads]
