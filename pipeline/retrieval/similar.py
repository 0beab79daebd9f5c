"""Documents like a given one: its dense neighbours, a more-like-this query of its top terms, and the documents
opened in the same sessions, fused by RRF; never the document itself or an exact duplicate of it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..behaviour.graph import ClickGraph
from ..index.postings import TEXT_FIELD
from ..search.bm25 import lucene_idf
from ..search.reader import IndexReader
from ..search.results import HIGHLIGHTED_FIELDS, make_hit
from ..search.scoring import boosted_scores
from ..search.topk import top_k
from .branches import BranchResult
from .fusion import rrf

MORE_LIKE_THIS_TERMS = 25  # Lucene's MoreLikeThis default (max_query_terms)
SIMILAR_SOURCES = ("bm25", "dense", "co_clicks")


@dataclass
class SimilarDocs:
    doc_ords: np.ndarray  # best first, never the document itself
    scores: np.ndarray  # fused RRF scores
    terms: list[str]  # the top terms the lexical side searched for
    sources: list[list[str]]  # per result, the sources that found it ("dense", "bm25", "co_clicks")

    def hits(self, reader: IndexReader) -> list[dict]:
        """Result rows as `search --json` prints them, with `found_by` and, for co-clicks, the reason in words."""
        rows = []
        for d, score, sources in zip(self.doc_ords.tolist(), self.scores.tolist(), self.sources):
            row = {**make_hit(reader, d, score, set(), False).to_json(), "found_by": sources}
            if "co_clicks" in sources:
                row["reasons"] = ["often opened together with this one"]
            rows.append(row)
        return rows


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


def text_fingerprint(reader: IndexReader, doc_ord: int) -> str:
    """A hash of the document's normalized title and body (the analyzer's NFKC, case folding and script, space
    collapsed): equal for exact duplicates under other ids, which ingest keeps as distinct documents."""
    text = reader.analyzer.normalize(f"{reader.stored_text('title', doc_ord)}\n{reader.stored_text('body', doc_ord)}")
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def similar(reader: IndexReader, doc_ord: int, k: int = 10, allowed: np.ndarray | None = None,
            depth: int | None = None, graph: ClickGraph | None = None,
            sources: tuple[str, ...] = SIMILAR_SOURCES) -> SimilarDocs:
    """The k documents most like `doc_ord` that pass `allowed`: dense neighbours of its vector, BM25 of its top
    terms and (with a click graph) the documents co-clicked with it, each to `depth` (fusion.depth), fused by
    reciprocal rank, with the document's exact duplicates left out. `sources` picks which of the three to fuse."""
    depth = depth or reader.settings.fusion.depth
    others = np.ones(reader.n_docs, dtype=bool) if allowed is None else allowed.copy()
    others[doc_ord] = False
    term_ids = top_terms(reader, doc_ord)
    scores = boosted_scores(reader, term_ids)
    candidates = np.flatnonzero((scores > 0) & others)
    keep = top_k(candidates, scores[candidates], depth)
    branches = {"bm25": BranchResult("bm25", candidates[keep], scores[candidates][keep])} if "bm25" in sources else {}
    vector = reader.dense.doc_vector(doc_ord) if reader.has_dense and "dense" in sources else None
    if vector is not None:
        docs, cosines = reader.dense.rank(vector, depth, others)
        branches["dense"] = BranchResult("dense", docs, cosines)
    pairs = graph.co_clicked(doc_ord).items() if graph is not None and "co_clicks" in sources else ()
    co_clicked = [(d, n) for d, n in pairs if others[d]]
    if co_clicked:
        docs, counts = np.array([d for d, _ in co_clicked]), np.array([n for _, n in co_clicked], dtype=np.float64)
        keep = top_k(docs, counts, depth)
        branches["co_clicks"] = BranchResult("co_clicks", docs[keep], counts[keep])
    docs, fused = rrf(branches, reader.settings.fusion.rrf_k)
    own = text_fingerprint(reader, doc_ord)
    kept = []
    for i, d in enumerate(docs.tolist()):
        if len(kept) == k:
            break
        if text_fingerprint(reader, d) != own:
            kept.append(i)
    found = {name: set(result.doc_ords.tolist()) for name, result in branches.items()}
    return SimilarDocs(docs[kept], fused[kept], [reader.vocabulary.terms[t] for t in term_ids],
                       [[name for name in found if int(docs[i]) in found[name]] for i in kept])
