"""Top-k BM25 of many queries in one compiled call (numba): per-posting impacts, summed term at a time into an
accumulator, with MaxScore pruning over per-term score bounds for queries with many postings.

A query with fewer than PRUNE_MIN_POSTINGS postings is summed whole, its lists in query order, and a heap of k
reads back the documents it touched: no per-query array as long as the corpus (the accumulator is reused and
zeroed where touched). Otherwise MaxScore, term at a time (Turtle & Flood 1995): the lists are summed in the order
of their score bounds, highest first; once a lower bound of the k-th best (the best partial sums completed by
probing the other lists) is above the sum of the bounds of the lists left, no document those lists have not
reached yet can make the top k, so the remaining (long, low-scoring) lists are only walked or probed, by
galloping search, for the candidates that can still make it, and candidates drop out as the k-th best rises.

Exact by construction. A posting's impact is the value `bm25.bm25_scores` adds for it, computed the same way, and
a query summed whole adds them in the order `bm25_scores` does (query terms in order, from 0.0), so its scores are
the exhaustive ones to the last bit. A pruned query's approximate top k and every document within rounding of
its k-th score are summed again in that order. A document is dropped only when even its upper bound is below the
k-th best (bounds inflated by BOUND_SLACK), so it could not even tie. The top k therefore equals `topk.top_k` over
the exhaustive scores, ties included (tests/test_pruned.py checks every benchmark query, one at a time and
batched, pruned and not).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numba
import numpy as np

from ..index.postings import FieldPostings
from .bm25 import lucene_idf

# Bounds are inflated (and the k-th best deflated) by this relative margin, far above the rounding of any sum
# of a query's impacts in a different order, so that rounding never drops a document that belongs in the top k.
BOUND_SLACK = 1e-9

# Queries with fewer postings than this are summed whole: pruning them costs more than it saves. Measured on one
# thread: SciFact's queries (about 4,000 postings each) sum whole twice as fast as MaxScore; on SciFact copied
# 20× (about 60,000 each; `make bench-bm25`, scale table) MaxScore is about 1.25× faster than summing whole.
PRUNE_MIN_POSTINGS = 1 << 15

# A list is walked, not probed per survivor, when it holds fewer than this many postings per survivor.
GALLOP_RATIO = 8

# Impacts are computed this many postings at a time, to bound the temporaries of large indexes.
_CHUNK = 1 << 22


@dataclass(frozen=True)
class Impacts:
    """Per field: each posting's BM25 score and each term's largest (inflated by BOUND_SLACK)."""

    scores: np.ndarray  # float64 [n_postings]: idf · tf / (tf + k1 · (1 − b + b · dl / avgdl))
    upper: np.ndarray  # float64 [n_terms]

    @classmethod
    def of(cls, postings: FieldPostings, k1: float, b: float) -> Impacts:
        df = np.diff(postings.term_indptr)
        term_weight = lucene_idf(df, postings.n_docs)
        scores = np.empty(len(postings.docs))
        for lo in range(0, len(scores), _CHUNK):  # as bm25_scores computes each posting's contribution
            hi = min(lo + _CHUNK, len(scores))
            terms = np.searchsorted(postings.term_indptr, np.arange(lo, hi), side="right") - 1
            tfs = np.asarray(postings.tfs[lo:hi], dtype=np.float64)
            norm = k1 * (1.0 - b + b * postings.doc_lengths[postings.docs[lo:hi]] / postings.avgdl)
            scores[lo:hi] = term_weight[terms] * tfs / (tfs + norm)
        upper = np.zeros(postings.n_terms)
        nonempty = np.flatnonzero(df > 0)
        if len(nonempty):
            upper[nonempty] = np.maximum.reduceat(scores, postings.term_indptr[nonempty])
        return cls(scores, upper * (1.0 + BOUND_SLACK))


def top_k_many(postings: FieldPostings, impacts: Impacts, queries: Sequence[Sequence[int]], k: int,
               boost: float = 1.0, allowed: np.ndarray | None = None, prune_above: int = PRUNE_MIN_POSTINGS
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query of term ids (repeats count once per repeat): (doc ordinals, scores) of the k best documents by
    `boost` (> 0) × BM25, best first, ties by lower ordinal; `allowed` restricts the candidates (filters).
    Queries whose lists hold more than `prune_above` postings in all are pruned."""
    indptr = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, queries), dtype=np.int64, count=len(queries)), out=indptr[1:])
    terms = np.fromiter(chain.from_iterable(queries), dtype=np.int64, count=int(indptr[-1]))
    docs, scores, sizes = _search(postings.term_indptr, postings.docs, impacts.scores, impacts.upper,
                                  _accumulator(postings.n_docs), indptr, terms, float(boost), max(int(k), 0),
                                  _NO_MASK if allowed is None else allowed, allowed is not None, int(prune_above))
    return [(docs[q, :sizes[q]], scores[q, :sizes[q]]) for q in range(len(queries))]


def pruned_top_k(postings: FieldPostings, impacts: Impacts, term_ids: Sequence[int], k: int, boost: float = 1.0,
                 allowed: np.ndarray | None = None, prune_above: int = PRUNE_MIN_POSTINGS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """`top_k_many` of one query."""
    return top_k_many(postings, impacts, [term_ids], k, boost, allowed, prune_above)[0]


_NO_MASK = np.ones(1, dtype=np.bool_)
_workspaces = threading.local()


def _accumulator(n_docs: int) -> np.ndarray:
    """This thread's accumulator over n_docs documents, kept between calls, which the kernel leaves zeroed: a
    query costs its postings, not a fresh array as long as the corpus."""
    acc = getattr(_workspaces, "acc", None)
    if acc is None or len(acc) != n_docs:
        acc = _workspaces.acc = np.zeros(n_docs)
    return acc


def warm_up(postings: FieldPostings, impacts: Impacts) -> None:
    """Compile the kernel (or load it from numba's cache) for these arrays' types — memory-mapped arrays are
    read-only, a type of their own — so that no first query waits seconds for it."""
    nonempty = np.flatnonzero(np.diff(postings.term_indptr) > 0)
    if len(nonempty):
        pruned_top_k(postings, impacts, [int(nonempty[0])], 1)


@numba.njit(cache=True, nogil=True)
def _seek(docs, lo, stop, doc):
    """The first posting in [lo, stop) at or after `doc`: galloping, since the target is usually close."""
    step = 1
    hi = lo
    while hi < stop and docs[hi] < doc:
        lo = hi + 1
        hi += step
        step *= 2
    hi = min(hi, stop)
    while lo < hi:
        mid = (lo + hi) // 2
        if docs[mid] < doc:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _worse(score_a, doc_a, score_b, doc_b):
    """Entry a ranks below entry b: a lower score, or the same score and a higher ordinal."""
    return score_a < score_b or (score_a == score_b and doc_a > doc_b)


@numba.njit(cache=True, nogil=True)
def _sift_down(heap_scores, heap_docs, size, i):
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and _worse(heap_scores[child + 1], heap_docs[child + 1], heap_scores[child],
                                       heap_docs[child]):
            child += 1
        if not _worse(heap_scores[child], heap_docs[child], heap_scores[i], heap_docs[i]):
            return
        heap_scores[i], heap_scores[child] = heap_scores[child], heap_scores[i]
        heap_docs[i], heap_docs[child] = heap_docs[child], heap_docs[i]
        i = child


@numba.njit(cache=True, nogil=True)
def _offer(heap_scores, heap_docs, size, k, score, doc):
    """Keep (score, doc) if it is among the k best so far, in a min-heap (the worst on top); returns the size."""
    if size < k:
        i = size
        heap_scores[i], heap_docs[i] = score, doc
        while i > 0:
            parent = (i - 1) // 2
            if not _worse(heap_scores[i], heap_docs[i], heap_scores[parent], heap_docs[parent]):
                break
            heap_scores[i], heap_scores[parent] = heap_scores[parent], heap_scores[i]
            heap_docs[i], heap_docs[parent] = heap_docs[parent], heap_docs[i]
            i = parent
        return size + 1
    if _worse(heap_scores[0], heap_docs[0], score, doc):
        heap_scores[0], heap_docs[0] = score, doc
        _sift_down(heap_scores, heap_docs, size, 0)
    return size


@numba.njit(cache=True, nogil=True)
def _kth_best(acc, candidates, n, k, allowed, use_allowed, heap_scores, heap_docs):
    """The k-th best accumulated score among the allowed candidates[:n], deflated by BOUND_SLACK; -inf when
    fewer than k."""
    size = 0
    for i in range(n):
        d = candidates[i]
        if use_allowed and not allowed[d]:
            continue
        if size < k or acc[d] > heap_scores[0]:
            size = _offer(heap_scores, heap_docs, size, k, acc[d], d)
    return heap_scores[0] * (1.0 - BOUND_SLACK) if size == k else -np.inf


@numba.njit(cache=True, nogil=True)
def _accumulate(term_indptr, docs, impacts, t, acc, touched, n_touched):
    """Add term t's impacts into the accumulator; returns the count of documents touched."""
    if n_touched == 0:  # nothing touched yet: every document is new (0.0 + impact is the impact)
        for p in range(term_indptr[t], term_indptr[t + 1]):
            touched[p - term_indptr[t]] = docs[p]
            acc[docs[p]] = impacts[p]
        return term_indptr[t + 1] - term_indptr[t]
    for p in range(term_indptr[t], term_indptr[t + 1]):
        d = docs[p]
        touched[n_touched] = d  # kept only where the document was untouched: impacts are positive
        n_touched += acc[d] == 0.0
        acc[d] += impacts[p]
    return n_touched


@numba.njit(cache=True, nogil=True)
def _seed_threshold(term_indptr, docs, impacts, lists, order, i, m, k, allowed, use_allowed, acc, touched,
                    n_touched, heap_scores, heap_docs):
    """A lower bound of the k-th best final score, deflated by BOUND_SLACK: the k best partial sums so far,
    completed by probing the lists from the i-th in `order` on; -inf when fewer than k documents are allowed."""
    if _kth_best(acc, touched, n_touched, k, allowed, use_allowed, heap_scores, heap_docs) == -np.inf:
        return -np.inf
    lowest = np.inf
    for d in heap_docs[:k].copy():
        total = acc[d]
        for c in range(i, m):
            t = lists[order[c]]
            p = _seek(docs, term_indptr[t], term_indptr[t + 1], d)
            if p < term_indptr[t + 1] and docs[p] == d:
                total += impacts[p]
        lowest = min(lowest, total)
    return lowest * (1.0 - BOUND_SLACK)


@numba.njit(cache=True, nogil=True)
def _query(term_indptr, docs, impacts, upper_of, lists, m, prune, boost, k, allowed, use_allowed, acc, touched,
           survivors, heap_scores, heap_docs):
    """The top k of one query's lists (term ids with postings, in query order) into the heap; returns its size.
    Leaves the accumulator cleared."""
    if not prune:  # summed in query order, the sums are the exact scores
        n_touched = 0
        for c in range(m):
            n_touched = _accumulate(term_indptr, docs, impacts, lists[c], acc, touched, n_touched)
        size = 0
        for j in range(n_touched):
            d = touched[j]
            score = 0.0 + boost * acc[d]
            acc[d] = 0.0
            if (not use_allowed or allowed[d]) and (size < k or score >= heap_scores[0]):
                size = _offer(heap_scores, heap_docs, size, k, score, d)
        return size
    upper = np.empty(m)
    for c in range(m):
        upper[c] = upper_of[lists[c]]
    order = np.argsort(-upper)
    left = np.zeros(m + 1)  # left[i]: the bounds of the lists from the i-th in `order` on
    for i in range(m - 1, -1, -1):
        left[i] = left[i + 1] + upper[order[i]]
    threshold = -np.inf
    seeded = False
    done = 0.0
    n_touched = 0
    i = 0
    while i < m:
        if done > left[i]:  # the k-th best can beat the lists left only once the lists summed can
            if not seeded:
                seeded = True
                threshold = _seed_threshold(term_indptr, docs, impacts, lists, order, i, m, k, allowed,
                                            use_allowed, acc, touched, n_touched, heap_scores, heap_docs)
            if threshold > left[i]:
                break
        n_touched = _accumulate(term_indptr, docs, impacts, lists[order[i]], acc, touched, n_touched)
        done += upper[order[i]]
        i += 1
    n = 0
    for j in range(n_touched):
        d = touched[j]
        if (not use_allowed or allowed[d]) and (i == m or acc[d] * (1.0 + BOUND_SLACK) + left[i] >= threshold):
            survivors[n] = d
            n += 1
        else:
            acc[d] = 0.0  # cannot make the top k: the walks below skip it
    survivors[:n].sort()  # the probes below seek through each list in ordinal order
    while i < m:  # only the survivors can make the top k: probe the lists left for them
        t = lists[order[i]]
        p, stop = term_indptr[t], term_indptr[t + 1]
        if stop - p < GALLOP_RATIO * n:  # walking the list is cheaper than seeking each survivor in it
            for walked in range(p, stop):
                d = docs[walked]
                if acc[d] != 0.0:
                    acc[d] += impacts[walked]
        else:
            for j in range(n):
                d = survivors[j]
                p = _seek(docs, p, stop, d)
                if p == stop:
                    break
                if docs[p] == d:
                    acc[d] += impacts[p]
        i += 1
        threshold = max(threshold, _kth_best(acc, survivors, n, k, allowed, use_allowed, heap_scores, heap_docs))
        kept = 0
        for j in range(n):
            d = survivors[j]
            if acc[d] * (1.0 + BOUND_SLACK) + left[i] >= threshold:
                survivors[kept] = d
                kept += 1
            else:
                acc[d] = 0.0
        n = kept
    # `survivors[:n]` (in ordinal order) holds every document that can make the top k, summed in bound order.
    # The approximate k-th best and all within rounding of it are summed again in query order: the exact scores.
    threshold = _kth_best(acc, survivors, n, k, allowed, use_allowed, heap_scores, heap_docs)
    finals = 0
    for j in range(n):
        d = survivors[j]
        if acc[d] >= threshold:
            survivors[finals] = d
            finals += 1
    for j in range(n_touched):
        acc[touched[j]] = 0.0
    chosen = survivors[:finals]
    exact = acc  # zeroed again below: the accumulator doubles as the store of the exact sums
    for c in range(m):  # the exhaustive summation order: query terms in order
        t = lists[c]
        p, stop = term_indptr[t], term_indptr[t + 1]
        for d in chosen:
            p = _seek(docs, p, stop, d)
            if p == stop:
                break
            if docs[p] == d:
                exact[d] += impacts[p]
    size = 0
    for d in chosen:
        size = _offer(heap_scores, heap_docs, size, k, 0.0 + boost * exact[d], d)
        exact[d] = 0.0
    return size


@numba.njit(cache=True, nogil=True)
def _search(term_indptr, docs, impacts, upper, acc, query_indptr, query_terms, boost, k, allowed, use_allowed,
            prune_above):
    n_queries = len(query_indptr) - 1
    n_terms = len(term_indptr) - 1
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_scores = np.zeros((n_queries, k))
    sizes = np.zeros(n_queries, dtype=np.int64)
    longest, most = 0, 0
    for q in range(n_queries):
        longest = max(longest, query_indptr[q + 1] - query_indptr[q])
        total = 0
        for j in range(query_indptr[q], query_indptr[q + 1]):
            t = query_terms[j]
            if 0 <= t < n_terms:
                total += term_indptr[t + 1] - term_indptr[t]
        most = max(most, total)
    lists = np.empty(longest, dtype=np.int64)
    touched = np.empty(min(most, len(acc)), dtype=np.int64)
    survivors = np.empty(min(most, len(acc)), dtype=np.int64)
    heap_scores = np.empty(k)
    heap_docs = np.empty(k, dtype=np.int64)
    for q in range(n_queries):
        m, total = 0, 0
        for j in range(query_indptr[q], query_indptr[q + 1]):
            t = query_terms[j]
            if 0 <= t < n_terms and term_indptr[t + 1] > term_indptr[t]:  # terms with postings, in query order
                lists[m] = t
                m += 1
                total += term_indptr[t + 1] - term_indptr[t]
        if m == 0 or k == 0:
            continue
        size = _query(term_indptr, docs, impacts, upper, lists, m, total > prune_above, boost, k, allowed,
                      use_allowed, acc, touched, survivors, heap_scores, heap_docs)
        sizes[q] = size
        for i in range(size - 1, -1, -1):  # pop the worst first: the row fills from its end
            out_docs[q, i], out_scores[q, i] = heap_docs[0], heap_scores[0]
            heap_docs[0], heap_scores[0] = heap_docs[i], heap_scores[i]
            _sift_down(heap_scores, heap_docs, i, 0)
    return out_docs, out_scores, sizes
