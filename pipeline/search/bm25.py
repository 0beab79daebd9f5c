"""BM25, Lucene variant, scored term-at-a-time over the CSR postings of one field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..index.postings import FieldPostings


def lucene_idf(df: np.ndarray | int, n_docs: int) -> np.ndarray:
    """Lucene's non-negative idf: ln(1 + (N - df + 0.5) / (df + 0.5))."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class CollectionStats:
    """One field's BM25 statistics over a whole collection, for a shard that holds a part of it."""

    df: np.ndarray  # documents per term id of the shard's vocabulary, over every shard
    n_docs: int
    avgdl: float


def bm25_scores(
    postings: FieldPostings,
    term_ids: Sequence[int],
    k1: float,
    b: float,
    weights: Sequence[float] | None = None,
    stats: CollectionStats | None = None,
) -> np.ndarray:
    """Dense per-document BM25 scores for a bag of query terms.

    Lucene (≥ 8) drops the constant (k1 + 1) from the numerator, so scores are
    idf · tf / (tf + k1 · (1 − b + b · dl / avgdl)). A term repeated in the query counts once per repeat,
    as in Lucene's BooleanQuery. With `stats`, idf and avgdl are the collection's, not these postings'.
    """
    n_docs = postings.n_docs
    spans = [postings.span(t) for t in term_ids]
    if not spans or n_docs == 0:
        return np.zeros(n_docs, dtype=np.float64)
    lengths = np.fromiter((s.stop - s.start for s in spans), dtype=np.int64, count=len(spans))
    if lengths.sum() == 0:
        return np.zeros(n_docs, dtype=np.float64)
    weights = np.ones(len(spans)) if weights is None else np.asarray(weights, dtype=np.float64)
    df, n_total, avgdl = (lengths, n_docs, postings.avgdl) if stats is None else (
        stats.df[np.asarray(term_ids, dtype=np.int64)], stats.n_docs, stats.avgdl)
    term_weight = lucene_idf(df, n_total) * weights
    docs = np.concatenate([postings.docs[s] for s in spans])
    tfs = np.concatenate([postings.tfs[s] for s in spans]).astype(np.float64)
    norm = k1 * (1.0 - b + b * postings.doc_lengths[docs] / avgdl)
    contributions = np.repeat(term_weight, lengths) * tfs / (tfs + norm)
    return np.bincount(docs, weights=contributions, minlength=n_docs)
