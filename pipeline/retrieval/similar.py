"""Documents like a given one: its dense neighbours fused by RRF with a more-like-this query of its top terms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..index.postings import TEXT_FIELD
from ..search.bm25 import lucene_idf
from ..search.reader import IndexReader
from ..search.results import HIGHLIGHTED_FIELDS
from ..search.scoring import boosted_scores
from ..search.topk import top_k
from .branches import BranchResult
from .fusion import rrf

MORE_LIKE_THIS_TERMS = 25  # Lucene's MoreLikeThis default (max_query_terms)


@dataclass
class SimilarDocs:
    doc_ords: np.ndarray  # best first, never the document itself
    scores: np.ndarray  # fused RRF scores
    terms: list[str]  # the top terms the lexical side searched for


def top_terms(reader: IndexReader, doc_ord: int, n: int = MORE_LIKE_THIS_TERMS) -> list[int]:
    """Term ids of the document's `n` most characteristic terms: tf × idf over its title and body."""
    ids = np.concatenate([np.asarray(reader.forward(f).term_ids[reader.forward(f).doc_slice(doc_ord)])
                          for f in HIGHLIGHTED_FIELDS])
    if not len(ids):
        return []
    terms, tfs = np.unique(ids, return_counts=True)
    df = np.array([reader.postings(TEXT_FIELD).df(int(t)) for t in terms])
    weights = tfs * lucene_idf(df, reader.n_docs)
    return terms[top_k(terms, weights, n)].tolist()


def similar(reader: IndexReader, doc_ord: int, k: int = 10, allowed: np.ndarray | None = None,
            depth: int | None = None) -> SimilarDocs:
    """The k documents most like `doc_ord` that pass `allowed`: dense neighbours of its vector and BM25 of its
    top terms, each to `depth` (fusion.depth), fused by reciprocal rank."""
    depth = depth or reader.settings.fusion.depth
    others = np.ones(reader.n_docs, dtype=bool) if allowed is None else allowed.copy()
    others[doc_ord] = False
    term_ids = top_terms(reader, doc_ord)
    scores = boosted_scores(reader, term_ids)
    candidates = np.flatnonzero((scores > 0) & others)
    keep = top_k(candidates, scores[candidates], depth)
    branches = {"bm25": BranchResult("bm25", candidates[keep], scores[candidates][keep])}
    vector = reader.dense.doc_vector(doc_ord) if reader.has_dense else None
    if vector is not None:
        docs, cosines = reader.dense.rank(vector, depth, others)
        branches["dense"] = BranchResult("dense", docs, cosines)
    docs, fused = rrf(branches, reader.settings.fusion.rrf_k)
    return SimilarDocs(docs[:k], fused[:k], [reader.vocabulary.terms[t] for t in term_ids])
