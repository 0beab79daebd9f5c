"""Top-k BM25 without scoring every posting: MaxScore over per-term score bounds, compiled with numba.

Exact by construction. A visited document's score is summed in the order `bm25.bm25_scores` sums it (query terms
in order, from 0.0), with the same arithmetic, so its value is the exhaustive score to the last bit; documents
are only skipped when even their upper bound cannot beat the k-th best so far, and a skipped document always has
a higher ordinal than every document kept, so it would lose a tie too. The pruned top-k therefore equals
`topk.top_k` over the exhaustive scores, ties included (tests/test_pruned.py checks every benchmark query).

MaxScore (Turtle & Flood 1995, as in PISA and Lucene): the query's posting lists, sorted by their score bound,
split into essential lists, whose union is walked document by document, and non-essential ones, whose bounds
add up to no more than the current threshold, which are only probed (by galloping search) for documents that
the essential lists found and that can still make the top k. Block-max bounds (per BLOCK postings) let the walk
jump over runs of documents whose blocks cannot beat the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..index.postings import FieldPostings

# Bounds are inflated by this relative margin so that rounding in a differently ordered partial sum never
# prunes a document whose exact score would have made the top k.
BOUND_SLACK = 1e-9


# Postings per block for block-max bounds: small enough to skip finely, large enough that the bounds stay small.
BLOCK = 64


@dataclass(frozen=True)
class ImpactBounds:
    """Per field: each document's BM25 length norm, and the largest tf / (tf + norm) of each term's postings,
    over the whole list and over each block of BLOCK postings."""

    norm: np.ndarray  # float64 [n_docs]: k1 · (1 − b + b · dl / avgdl)
    max_ratio: np.ndarray  # float64 [n_terms]
    block_start: np.ndarray  # int64 [n_terms + 1]: term t's blocks are block_max[block_start[t]:block_start[t + 1]]
    block_max: np.ndarray  # float64 [blocks]

    @classmethod
    def of(cls, postings: FieldPostings, k1: float, b: float) -> ImpactBounds:
        avgdl = postings.avgdl or 1.0
        norm = k1 * (1.0 - b + b * postings.doc_lengths / avgdl)
        df = np.diff(postings.term_indptr)
        blocks = -(-df // BLOCK)
        block_start = np.r_[0, np.cumsum(blocks)].astype(np.int64)
        max_ratio, block_max = np.zeros(postings.n_terms), np.zeros(int(block_start[-1]))
        if len(postings.docs):
            tfs = np.asarray(postings.tfs, dtype=np.float64)
            ratio = tfs / (tfs + norm[np.asarray(postings.docs)])
            nonempty = np.flatnonzero(df > 0)
            max_ratio[nonempty] = np.maximum.reduceat(ratio, postings.term_indptr[nonempty])
            within = np.arange(len(block_max)) - np.repeat(block_start[:-1], blocks)
            first = np.repeat(postings.term_indptr[:-1], blocks) + within * BLOCK
            block_max = np.maximum.reduceat(ratio, first)
        return cls(norm, max_ratio, block_start, block_max)


def pruned_top_k(postings: FieldPostings, bounds: ImpactBounds, term_ids: list[int], k: int,
                 boost: float = 1.0, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(doc ordinals, scores) of the k best documents by `boost` × BM25 of `term_ids` (repeats count once per
    repeat), best first, ties by lower ordinal; `allowed` restricts the candidates (filters, matching)."""
    terms = np.asarray(term_ids, dtype=np.int64)
    if k <= 0 or len(terms) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    mask = _NO_MASK if allowed is None else allowed
    return _maxscore(postings.term_indptr, postings.docs, postings.tfs, bounds.norm, bounds.max_ratio,
                     bounds.block_start, bounds.block_max, terms, float(boost), int(k), mask, allowed is not None)


_NO_MASK = np.ones(1, dtype=np.bool_)


def warm_up(postings: FieldPostings, bounds: ImpactBounds) -> None:
    """Compile the kernel (or load it from numba's cache) for these arrays' types — memory-mapped arrays are
    read-only, a type of their own — so that no first query waits seconds for it."""
    nonempty = np.flatnonzero(np.diff(postings.term_indptr) > 0)
    if len(nonempty):
        pruned_top_k(postings, bounds, [int(nonempty[0])], 1)


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
def _push(heap_scores, heap_docs, size, score, doc):
    """Add to a min-heap (the worst entry on top); returns the new size."""
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


@numba.njit(cache=True, nogil=True)
def _maxscore(term_indptr, docs, tfs, norm, max_ratio, block_start, block_max, terms, boost, k, allowed,
              use_allowed):
    n_docs = len(norm)
    n_terms = len(term_indptr) - 1
    m = 0
    for t in terms:  # terms with postings, in query order (the exhaustive summation order)
        if t < n_terms and term_indptr[t + 1] > term_indptr[t]:
            m += 1
    starts = np.empty(m, dtype=np.int64)
    stops = np.empty(m, dtype=np.int64)
    weights = np.empty(m)
    upper = np.empty(m)
    first_block = np.empty(m, dtype=np.int64)
    c = 0
    for t in terms:
        if t < n_terms and term_indptr[t + 1] > term_indptr[t]:
            starts[c], stops[c] = term_indptr[t], term_indptr[t + 1]
            df = float(stops[c] - starts[c])
            weights[c] = np.log1p((n_docs - df + 0.5) / (df + 0.5))  # as bm25.lucene_idf
            upper[c] = weights[c] * max_ratio[t] * (1.0 + BOUND_SLACK)
            first_block[c] = block_start[t]
            c += 1
    by_bound = np.argsort(upper)  # ascending: the non-essential lists are a prefix of this order
    below = np.zeros(m + 1)  # below[i]: the sum of the i smallest bounds
    for i in range(m):
        below[i + 1] = below[i] + upper[by_bound[i]]
    position = starts.copy()
    contribution = np.zeros(m)
    seen_at = np.full(m, -1, dtype=np.int64)  # seen_at[c] == doc: list c holds the document being scored
    heap_scores = np.empty(k)
    heap_docs = np.empty(k, dtype=np.int64)
    size = 0
    threshold = -np.inf
    first_essential = 0
    sentinel = len(norm)
    checked_through = -1
    while True:
        doc = sentinel
        for i in range(first_essential, m):
            c = by_bound[i]
            if position[c] < stops[c] and docs[position[c]] < doc:
                doc = docs[position[c]]
        if doc == sentinel:
            break
        if size == k and doc > checked_through:
            # Block-max: every document up to `through` sits, in each essential list, in the block that list is
            # in now; if those blocks' bounds cannot beat the threshold, skip them all at once.
            reachable = below[first_essential]
            through = sentinel
            for i in range(first_essential, m):
                c = by_bound[i]
                if position[c] < stops[c]:
                    within = (position[c] - starts[c]) // BLOCK
                    reachable += weights[c] * block_max[first_block[c] + within] * (1.0 + BOUND_SLACK)
                    last = docs[min(starts[c] + (within + 1) * BLOCK, stops[c]) - 1]
                    if last < through:
                        through = last
            if boost * reachable <= threshold:
                for i in range(first_essential, m):
                    c = by_bound[i]
                    position[c] = _seek(docs, position[c], stops[c], through + 1)
                continue
            checked_through = through  # these blocks can hold a winner: score their documents one by one
        partial = 0.0
        for i in range(first_essential, m):
            c = by_bound[i]
            if position[c] < stops[c] and docs[position[c]] == doc:
                tf = float(tfs[position[c]])
                contribution[c] = weights[c] * tf / (tf + norm[doc])
                seen_at[c] = doc
                partial += contribution[c]
                position[c] += 1
        if use_allowed and not allowed[doc]:
            continue
        reachable = partial * (1.0 + BOUND_SLACK) + below[first_essential]
        skipped = False
        for i in range(first_essential - 1, -1, -1):
            if size == k and boost * reachable <= threshold:
                skipped = True
                break
            c = by_bound[i]
            lo = _seek(docs, position[c], stops[c], doc)
            position[c] = lo
            reachable -= upper[c]
            if lo < stops[c] and docs[lo] == doc:
                tf = float(tfs[lo])
                contribution[c] = weights[c] * tf / (tf + norm[doc])
                seen_at[c] = doc
                reachable += contribution[c] * (1.0 + BOUND_SLACK)
        if skipped:
            continue
        exact = 0.0
        for c in range(m):  # the exhaustive summation order: query terms in order
            if seen_at[c] == doc:
                exact += contribution[c]
        score = 0.0 + boost * exact
        if size < k:
            size = _push(heap_scores, heap_docs, size, score, doc)
        elif score > heap_scores[0]:  # equal scores keep the earlier, lower ordinal
            heap_scores[0], heap_docs[0] = score, doc
            _sift_down(heap_scores, heap_docs, size, 0)
        if size == k:
            threshold = heap_scores[0]
            while first_essential < m and boost * below[first_essential + 1] <= threshold:
                first_essential += 1
    order = np.empty(size, dtype=np.int64)
    for i in range(size):
        order[i] = i
    # Best first, ties by ordinal: at most k entries, so a simple insertion sort.
    for i in range(1, size):
        j = i
        while j > 0 and _worse(heap_scores[order[j - 1]], heap_docs[order[j - 1]], heap_scores[order[j]],
                               heap_docs[order[j]]):
            order[j - 1], order[j] = order[j], order[j - 1]
            j -= 1
    out_docs = np.empty(size, dtype=np.int64)
    out_scores = np.empty(size)
    for i in range(size):
        out_docs[i] = heap_docs[order[i]]
        out_scores[i] = heap_scores[order[i]]
    return out_docs, out_scores
