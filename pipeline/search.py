"""BM25 search over an index version: boolean and phrase matching, filters, top-k and highlighted snippets."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .analysis import Analyzer, AnalyzedText
from .bm25 import bm25_scores
from .config import Settings
from .index_store import IndexVersion
from . import hybrid as hybrid_pipeline
from .dense import DenseIndex
from .hybrid import HybridResult
from .ranking import RANKERS_DIR, Ranker
from .recall import BRANCHES, QueryContext
from .embeddings import Encoder, EncoderMismatch, canonical_encoder_name
from .index_store import IndexStoreError
from .query import MAX_QUERY_CHARS, Bool, Node, Phrase, Term, parse_query, plain_query
from .snippets import highlight_all, make_snippet, matched_spans

MAX_K = 10_000
SEARCH_MODES = ("bm25", "dense", "hybrid", "ltr")


@dataclass(frozen=True)
class Filters:
    """Restrict results to documents whose metadata passes every given condition."""

    sources: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def __bool__(self) -> bool:
        return bool(self.sources or self.langs or self.tags or self.since or self.until)


@dataclass
class Hit:
    doc_ord: int
    doc_id: str
    score: float
    title: str
    snippet: str  # HTML-escaped, matches in <mark>
    title_html: str
    source: str | None
    lang: str | None
    published_at: datetime | None
    tags: list[str]
    matched_terms: list[str]
    explanation: dict | None = None

    def to_json(self) -> dict:
        return {
            "doc_id": self.doc_id,
            "score": round(self.score, 6),
            "title": self.title,
            "snippet": self.snippet,
            "source": self.source,
            "lang": self.lang,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "tags": self.tags,
            "matched_terms": self.matched_terms,
            **({"explanation": self.explanation} if self.explanation is not None else {}),
        }


@dataclass
class SearchResponse:
    query: str
    hits: list[Hit]
    total_matches: int
    took_ms: float
    query_terms: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "total_matches": self.total_matches,
            "took_ms": round(self.took_ms, 3),
            "query_terms": self.query_terms,
            "results": [hit.to_json() for hit in self.hits],
        }


@dataclass
class Ranking:
    doc_ords: np.ndarray
    scores: np.ndarray
    total_matches: int
    term_ids: list[int]
    query_terms: list[str]
    context: QueryContext | None = None  # hybrid modes keep what explanations need
    hybrid: HybridResult | None = None
    mode: str = "bm25"


def maximal_terms(analyzed: AnalyzedText) -> list[tuple[str, int]]:
    """Terms whose span no longer term covers: the search-mode sub-words of 中华人民共和国 drop out."""
    spans = list(zip(analyzed.starts, analyzed.ends))
    out = []
    for i, (start, end) in enumerate(spans):
        covered = any(s <= start and end <= e and (e - s) > (end - start) for s, e in spans)
        if not covered:
            out.append((analyzed.terms[i], analyzed.positions[i]))
    return out


class Searcher:
    """Opens one index version and answers queries; safe to share between threads."""

    def __init__(self, index: IndexVersion, settings: Settings | None = None):
        self.index = index
        self.settings = settings or Settings()
        self.analyzer = Analyzer(index.analyzer_config)
        self.n_docs = index.manifest.doc_count
        self.field_boosts = {f: w for f, w in self.settings.bm25.field_boosts.items() if w}
        unknown = set(self.field_boosts) - set(index.inverted.fields)
        if unknown:
            raise ValueError(f"unknown fields in bm25.field_boosts: {sorted(unknown)}")
        self._metadata = _Metadata(index.documents)
        self.doc_ids: list[str] = index.documents.column("doc_id").to_pylist()
        self._engagement: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def open(cls, index_dir: Path | str, settings: Settings | None = None, version: str | None = None) -> Searcher:
        settings = settings or Settings()
        return cls(IndexVersion.open(Path(index_dir), settings.analyzer, version), settings)

    # -- scoring -------------------------------------------------------------------------------------

    def term_ids(self, terms: list[str]) -> list[int]:
        return [t for t in self.index.vocabulary.lookup(terms) if t is not None]

    def score_terms(self, term_ids: list[int]) -> np.ndarray:
        """Dense BM25 scores summed over the boosted fields."""
        bm25 = self.settings.bm25
        total = np.zeros(self.n_docs)
        for name, boost in self.field_boosts.items():
            total += boost * bm25_scores(self.index.inverted.fields[name], term_ids, bm25.k1, bm25.b)
        return total

    def _contains_all(self, term_ids: list[int]) -> np.ndarray:
        mask = np.ones(self.n_docs, dtype=bool)
        for term_id in term_ids:
            mask &= self._contains(term_id)
        return mask

    def _contains(self, term_id: int) -> np.ndarray:
        mask = np.zeros(self.n_docs, dtype=bool)
        for name in self.field_boosts:
            postings = self.index.inverted.fields[name]
            mask[postings.docs[postings.span(term_id)]] = True
        return mask

    def _phrase_mask(self, analyzed: AnalyzedText) -> np.ndarray:
        parts = maximal_terms(analyzed)
        ids = self.index.vocabulary.lookup([term for term, _ in parts])
        mask = np.zeros(self.n_docs, dtype=bool)
        if not parts or any(i is None for i in ids):
            return mask
        base = parts[0][1]
        offsets = [position - base for _, position in parts]
        for name in self.field_boosts:
            postings = self.index.inverted.fields[name]
            candidates = None
            spans = [postings.span(i) for i in ids]
            for span in spans:
                docs = np.asarray(postings.docs[span])
                candidates = docs if candidates is None else np.intersect1d(candidates, docs, assume_unique=True)
            for doc in candidates.tolist():
                if mask[doc]:
                    continue
                starts = None
                for span, offset in zip(spans, offsets):
                    docs = postings.docs[span]
                    posting = span.start + int(np.searchsorted(docs, doc))
                    here = np.asarray(postings.positions_of(posting)) - offset
                    starts = here if starts is None else np.intersect1d(starts, here)
                    if len(starts) == 0:
                        break
                mask[doc] = starts is not None and len(starts) > 0
        return mask

    def _evaluate(self, node: Node, terms: list[int], names: list[str]) -> np.ndarray | None:
        """Match mask of a clause tree (None = matches by score alone) and the positive terms it scores."""
        if isinstance(node, (Term, Phrase)):
            analyzed = self.analyzer.analyze(node.text)
            names.extend(analyzed.terms)
            ids = self.term_ids(analyzed.terms)
            terms.extend(ids)
            if isinstance(node, Phrase):
                return self._phrase_mask(analyzed)
            required = [term for term, _ in maximal_terms(analyzed)]
            required_ids = self.index.vocabulary.lookup(required)
            if any(i is None for i in required_ids):
                return np.zeros(self.n_docs, dtype=bool)
            return self._contains_all(required_ids)
        assert isinstance(node, Bool)
        mask = np.ones(self.n_docs, dtype=bool)
        for clause in node.must:
            mask &= self._evaluate(clause, terms, names)
        if node.should and not node.must:
            any_should = np.zeros(self.n_docs, dtype=bool)
            for clause in node.should:
                any_should |= self._evaluate(clause, terms, names)
            mask &= any_should
        elif node.should:
            for clause in node.should:
                self._evaluate(clause, terms, names)
        for clause in node.must_not:
            mask &= ~self._evaluate(clause, [], [])
        return mask

    # -- hybrid and learned ranking ---------------------------------------------------------------------

    def prepare(self, query: str, filters: Filters | None = None, vector: np.ndarray | None = None) -> QueryContext:
        """Analyze once, look up terms once, embed once: what every branch and feature shares."""
        query = query[:MAX_QUERY_CHARS]
        terms = self.analyzer.analyze(query).terms
        if vector is None and self.has_dense:
            vector = self.dense.encode_query(query, self.query_encoder())
        allowed = self._metadata.mask(filters) if filters else None
        return QueryContext(query, terms, self.term_ids(terms), allowed, vector)

    @cached_property
    def has_dense(self) -> bool:
        return DenseIndex.exists(self.index.path)

    def branch_names(self) -> list[str]:
        return [name for name in BRANCHES if name != "dense" or self.has_dense]

    def fusion_weights(self) -> dict[str, float]:
        """Weights tuned on a train split (fusion-METHOD.json beside the versions) win over the configured ones.

        Read once per Searcher, like the version it serves; reopen to pick up newly tuned weights."""
        return self._fusion_weights

    @cached_property
    def _fusion_weights(self) -> dict[str, float]:
        tuned = self.index.root / f"fusion-{self.settings.fusion.method}.json"
        if tuned.is_file():
            return json.loads(tuned.read_text())["weights"]
        return self.settings.fusion.weights

    def compatibility(self) -> dict:
        return {
            "analyzer": self.index.manifest.analyzer_fingerprint,
            "dense_model": self.dense.manifest.model_id if self.has_dense else None,
        }

    @property
    def has_ranker(self) -> bool:
        return Ranker.published(self.index.root / RANKERS_DIR)

    @cached_property
    def ranker(self) -> Ranker:
        ranker = Ranker.load_current(self.index.root / RANKERS_DIR)
        if ranker is None:
            raise IndexStoreError(
                f"no trained ranker for {self.index.root}: run `sousuo train --index {self.index.root} "
                "--dataset BEIR_FOLDER` first, or use --mode hybrid"
            )
        ranker.check(self.compatibility())
        return ranker

    def dense_cosines(self, vector: np.ndarray | None, docs: np.ndarray) -> np.ndarray:
        """Cosine of the query with each document's best passage (NaN without a dense branch)."""
        if vector is None or not self.has_dense:
            return np.full(len(docs), np.nan)
        return self.dense.doc_cosines(vector, docs)

    def age_days(self, docs: np.ndarray) -> np.ndarray:
        """Days between each document's date and the newest date in the corpus (NaN where undated).

        Measured from the corpus's newest date, not today, so features do not drift while an index ages.
        """
        return self._metadata.age_days(docs)

    def engagement(self) -> tuple[np.ndarray, np.ndarray]:
        """(impressions, clicks) per document from the index's query log; zeros where nothing was logged.

        Read once per Searcher: a reopened searcher sees newer clicks."""
        if self._engagement is None:
            from .querylog import QueryLog

            impressions, clicks = np.zeros(self.n_docs), np.zeros(self.n_docs)
            ordinals = {doc_id: i for i, doc_id in enumerate(self.doc_ids)}
            log = QueryLog(self.index.root)
            if log.queries_dir.is_dir() or log.clicks_dir.is_dir():
                for doc_id, (shown, clicked) in log.engagement().items():
                    if doc_id in ordinals:
                        impressions[ordinals[doc_id]], clicks[ordinals[doc_id]] = shown, clicked
            self._engagement = (impressions, clicks)
        return self._engagement

    def matched_terms(self, doc_ord: int, term_ids: set[int]) -> list[str]:
        """The words of the document that matched, as written there (`Networks`, not the stem `network`)."""
        texts = {name: self.index.documents.column(name)[doc_ord].as_py() or "" for name in ("title", "body")}
        spans = {name: matched_spans(self.index.forward.fields[name], doc_ord, term_ids) for name in texts}
        return surface_words(texts, spans)

    def _rank_hybrid(self, query: str, k: int, filters: Filters | None, offset: int, learned: bool) -> Ranking:
        ranker = self.ranker if learned else None
        ctx = self.prepare(query, filters)
        result = hybrid_pipeline.learned(self, ctx, ranker) if ranker else hybrid_pipeline.hybrid(self, ctx)
        total = len(result.fused_scores)
        docs, scores = result.doc_ords[offset : offset + k], result.scores[offset : offset + k]
        return Ranking(docs, scores, total, ctx.term_ids, list(dict.fromkeys(ctx.terms)), ctx, result)

    # -- querying -----------------------------------------------------------------------------------

    def rank(
        self,
        query: str,
        k: int = 10,
        filters: Filters | None = None,
        syntax: bool = True,
        offset: int = 0,
        mode: str = "bm25",
    ) -> Ranking:
        """Doc ordinals and scores of the top-k, without building result rows: the fast path for evaluation."""
        k = max(0, min(int(k), MAX_K))
        if mode == "bm25":
            ranking = self._rank_bm25(query, k, filters, syntax, offset)
        elif mode == "dense":
            ranking = self._rank_dense(query, k, filters, offset)
        elif mode in ("hybrid", "ltr"):
            ranking = self._rank_hybrid(query, k, filters, offset, learned=mode == "ltr")
        else:
            raise ValueError(f"unknown search mode {mode!r}; choose from {SEARCH_MODES}")
        ranking.mode = mode
        return ranking

    def _rank_bm25(self, query: str, k: int, filters: Filters | None, syntax: bool, offset: int) -> Ranking:
        tree = parse_query(query) if syntax else plain_query(query)
        term_ids: list[int] = []
        names: list[str] = []
        if _is_plain(tree):
            for clause in tree.should:
                analyzed = self.analyzer.analyze(clause.text)
                names.extend(analyzed.terms)
                term_ids.extend(self.term_ids(analyzed.terms))
            scores = self.score_terms(term_ids)
            mask = scores > 0
        else:
            mask = self._evaluate(tree, term_ids, names)
            scores = self.score_terms(term_ids)
        if filters:
            mask &= self._metadata.mask(filters)
        candidates = np.flatnonzero(mask)
        top = _top_k(candidates, scores[candidates], offset + k)[offset:]
        return Ranking(top, scores[top], len(candidates), term_ids, list(dict.fromkeys(names)))

    # -- dense --------------------------------------------------------------------------------------

    @cached_property
    def dense(self) -> DenseIndex:
        if not DenseIndex.exists(self.index.path):
            raise IndexStoreError(f"index {self.index.path} has no dense branch: build it with dense.enabled = true")
        return DenseIndex(self.index.path)

    def query_encoder(self) -> Encoder:
        """The manifest's encoder, unless configuration names another, which is refused before any model loads."""
        configured = self.settings.dense.encoder
        dense = self.dense
        if configured != "auto" and canonical_encoder_name(configured) != dense.manifest.model_id:
            raise EncoderMismatch(
                f"the index was embedded with {dense.manifest.model_id!r}, but the query encoder is "
                f"{canonical_encoder_name(configured)!r}: vectors from different models are not comparable. "
                "Use the index's encoder or rebuild the index."
            )
        return dense.encoder(self.settings.dense.batch_size)

    def _rank_dense(self, query: str, k: int, filters: Filters | None, offset: int) -> Ranking:
        allowed = self._metadata.mask(filters) if filters else None
        vector = self.dense.encode_query(query[:MAX_QUERY_CHARS], self.query_encoder())
        docs, scores = self.dense.rank(vector, offset + k, allowed)
        names = self.analyzer.analyze(query[:MAX_QUERY_CHARS]).terms
        total = self.n_docs if allowed is None else int(allowed.sum())
        return Ranking(docs[offset:], scores[offset:], total, self.term_ids(names), list(dict.fromkeys(names)))

    def search(
        self,
        query: str,
        k: int = 10,
        filters: Filters | None = None,
        syntax: bool = True,
        offset: int = 0,
        with_snippets: bool = True,
        mode: str = "bm25",
        explain: bool = False,
    ) -> SearchResponse:
        """Top-k documents for `query`. With `syntax=False` operators and quotes are ordinary words."""
        started = time.perf_counter()
        ranking = self.rank(query, k, filters, syntax, offset, mode)
        query_ids = set(ranking.term_ids)
        hits = [
            self._hit(int(d), float(s), query_ids, with_snippets) for d, s in zip(ranking.doc_ords, ranking.scores)
        ]
        if explain:
            for hit in hits:
                hit.explanation = self._explain(ranking, hit.doc_ord)
        return SearchResponse(
            query=query,
            hits=hits,
            total_matches=ranking.total_matches,
            took_ms=(time.perf_counter() - started) * 1000,
            query_terms=ranking.query_terms,
        )

    def _explain(self, ranking: Ranking, doc_ord: int) -> dict:
        if ranking.hybrid is None:  # a single-branch mode: that branch found it at its rank
            rank = int(np.flatnonzero(ranking.doc_ords == doc_ord)[0]) + 1
            matched = self.matched_terms(doc_ord, set(ranking.term_ids))
            score = float(ranking.scores[rank - 1])
            return {"branches": {ranking.mode: {"rank": rank, "score": round(score, 6)}}, "matched_terms": matched}
        return hybrid_pipeline.explain(self, ranking.context, ranking.hybrid, doc_ord).to_json()

    def _hit(self, doc_ord: int, score: float, term_ids: set[int], with_snippets: bool) -> Hit:
        row = self._metadata.row(doc_ord)
        title = row["title"] or ""
        body = row["body"] or ""
        snippet = title_html = ""
        matched: list[str] = []
        if with_snippets:
            forward = self.index.forward.fields
            title_spans = matched_spans(forward["title"], doc_ord, term_ids)
            body_spans = matched_spans(forward["body"], doc_ord, term_ids)
            matched = surface_words({"title": title, "body": body}, {"title": title_spans, "body": body_spans})
            snippet = make_snippet(body, body_spans, self.settings.snippet.width_chars).html()
            title_html = highlight_all(title, title_spans).html()
        return Hit(
            doc_ord=doc_ord,
            doc_id=row["doc_id"],
            score=score,
            title=title,
            snippet=snippet,
            title_html=title_html,
            source=row["source"],
            lang=row["lang"],
            published_at=row["published_at"],
            tags=row["tags"] or [],
            matched_terms=matched,
        )


def surface_words(texts: dict[str, str], spans: dict[str, list[tuple[int, int, int]]]) -> list[str]:
    """Distinct matched words in their written form, first occurrence first, one per term."""
    words, seen = [], set()
    for name, text in texts.items():
        for start, end, term_id in sorted(spans[name]):
            if term_id not in seen:
                seen.add(term_id)
                words.append(text[start:end])
    return words


def _is_plain(tree: Bool) -> bool:
    return not tree.must and not tree.must_not and all(isinstance(c, Term) for c in tree.should)


def _top_k(candidates: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Candidates of the k best scores, ties broken by doc ordinal so results are deterministic."""
    if k <= 0 or len(candidates) == 0:
        return candidates[:0]
    if len(candidates) > k:
        # Keep everything tied with the k-th score so the tie-break below sees all of them.
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= kth
        candidates, scores = candidates[keep], scores[keep]
    order = np.lexsort((candidates, -scores))
    return candidates[order[:k]]


class _Metadata:
    """Columnar document metadata for filters and result rows."""

    def __init__(self, documents: pa.Table):
        self.documents = documents
        self.n_docs = documents.num_rows
        self.source = documents.column("source").combine_chunks()
        self.lang = documents.column("lang").combine_chunks()
        tags = documents.column("tags").combine_chunks()
        self.tag_values = pc.list_flatten(tags)
        self.tag_parents = pc.list_parent_indices(tags).to_numpy(zero_copy_only=False)
        published = documents.column("published_at").combine_chunks()
        self.has_date = published.is_valid().to_numpy(zero_copy_only=False)
        self.published_us = published.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)

    def mask(self, filters: Filters) -> np.ndarray:
        mask = np.ones(self.n_docs, dtype=bool)
        if filters.sources:
            mask &= pc.is_in(self.source, pa.array(filters.sources)).fill_null(False).to_numpy(zero_copy_only=False)
        if filters.langs:
            mask &= pc.is_in(self.lang, pa.array(filters.langs)).fill_null(False).to_numpy(zero_copy_only=False)
        if filters.tags:
            hit = pc.is_in(self.tag_values, pa.array(filters.tags)).to_numpy(zero_copy_only=False)
            tagged = np.zeros(self.n_docs, dtype=bool)
            tagged[self.tag_parents[hit]] = True
            mask &= tagged
        for bound, keep in ((filters.since, np.greater_equal), (filters.until, np.less_equal)):
            if bound is not None:
                micros = int(pa.scalar(bound, pa.timestamp("us", tz="UTC")).cast(pa.int64()).as_py())
                mask &= self.has_date & keep(self.published_us, micros)
        return mask

    def age_days(self, docs: np.ndarray) -> np.ndarray:
        dated = self.has_date[docs]
        if not self.has_date.any():
            return np.full(len(docs), np.nan)
        newest = self.published_us[self.has_date].max()
        days = (newest - self.published_us[docs]) / 86_400e6
        return np.where(dated, days, np.nan)

    def row(self, doc_ord: int) -> dict:
        return {name: self.documents.column(name)[doc_ord].as_py() for name in self.documents.column_names}
