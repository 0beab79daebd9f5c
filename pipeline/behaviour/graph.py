"""The click graph read from the query log: which documents were opened after which queries (weighted by the PBM's
debiased relevance where the click-model tables exist, by click-through otherwise), and which were opened together
in one session."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import BehaviourConfig
from ..index.querylog import QueryLog
from ..search.reader import IndexReader
from .clickmodels import BEHAVIOUR_DIR, PositionBased
from .sessions import ClickLog, query_key

logger = logging.getLogger(__name__)

MAX_SESSION_CLICKS = 20  # documents of one session paired for co-clicks: a crawler's session would be quadratic


def normalized_query(text: str) -> str:
    """The log's query key with inner runs of space collapsed: how past queries are matched exactly."""
    return " ".join(query_key(text).split())


@dataclass
class QueryMatch:
    """A document the graph recalls for a query, its weight, and the past query whose clicks gave the most."""

    weight: float
    via: str


@dataclass
class ClickGraph:
    """Query → clicked documents (doc ordinal → weight) and document → co-clicked documents (ordinal → sessions)."""

    query_docs: dict[str, dict[int, float]]
    texts: dict[str, str]  # query key → a logged text of it
    query_terms: dict[str, frozenset[str]]
    co_clicks: dict[int, Counter]
    source: str  # "pbm", "ctr", or "empty"
    config: BehaviourConfig = field(default_factory=BehaviourConfig)
    _term_index: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _vectors: np.ndarray | None = field(default=None, repr=False)
    _vector_keys: list[str] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        for key, terms in self.query_terms.items():
            for term in terms:
                self._term_index.setdefault(term, []).append(key)

    @property
    def empty(self) -> bool:
        return not self.query_docs and not self.co_clicks

    @classmethod
    def none(cls) -> ClickGraph:
        return cls({}, {}, {}, {}, "empty")

    @staticmethod
    def source_stamp(index_root: Path) -> tuple[float, int, float]:
        """What a graph is read from, as it stands: when the log's clicks last changed and how many parts they are
        (a folder's time ticks coarsely, so two parts added within one tick would show as one change), and when the
        click model's relevance table was written."""
        log = QueryLog(index_root)
        parts = sum(1 for _ in log.clicks_dir.iterdir()) if log.clicks_dir.is_dir() else 0
        table = Path(index_root) / BEHAVIOUR_DIR / "relevance.parquet"
        return log.clicks_changed_at(), parts, table.stat().st_mtime if table.is_file() else 0.0

    @classmethod
    def served(cls, reader: IndexReader) -> ClickGraph:
        """The graph the hybrid modes serve over this reader's version: its index's whole log."""
        return cls.load(reader.root, reader.ordinals, reader.analyzer.terms, reader.settings.behaviour)

    @classmethod
    def load(cls, index_root: Path, ordinals: Mapping[str, int], terms: Callable[[str], list[str]],
             config: BehaviourConfig | None = None) -> ClickGraph:
        """The graph of INDEX's query log; an empty graph where nothing was logged."""
        config = config or BehaviourConfig()
        log = QueryLog(index_root)
        if not (log.queries_dir.is_dir() and any(log.queries_dir.glob("*.parquet"))
                and log.clicks_dir.is_dir() and any(log.clicks_dir.glob("*.parquet"))):
            return cls.none()
        weights, texts, source = _query_weights(log, Path(index_root), config)
        co_clicks: dict[int, Counter] = {}
        for row in log.sql(
            """
            SELECT list(DISTINCT c.doc_id) AS docs
            FROM clicks c LEFT JOIN queries q USING (query_id)
            GROUP BY coalesce(c.session_hash, q.session_hash, c.query_id)
            HAVING count(DISTINCT c.doc_id) > 1
            """
        ):
            docs = [ordinals[d] for d in sorted(row["docs"])[:MAX_SESSION_CLICKS] if d in ordinals]
            for a in docs:
                for b in docs:
                    if a != b:
                        co_clicks.setdefault(a, Counter())[b] += 1
        return cls.from_pair_weights(weights, texts, ordinals, terms, co_clicks, source, config)

    @classmethod
    def from_click_log(cls, log: ClickLog, ordinals: Mapping[str, int], terms: Callable[[str], list[str]],
                       config: BehaviourConfig) -> ClickGraph:
        """The query side of the graph of these sessions alone, weighted by the PBM's relevance fitted on them: the
        history that a ranker trained on later sessions' clicks learns the graph's branch and feature from."""
        if not log.n_sessions or not log.clicks.any():
            return cls.none()
        relevance = PositionBased(config).fit(log).relevance()
        clicks = np.bincount(log.pairs[log.clicks], minlength=log.n_pairs)
        weights = {(log.queries[log.pair_query[p]], log.doc_ids[log.pair_doc[p]]): relevance[p] - config.prior_mean
                   for p in np.flatnonzero(clicks).tolist()}
        return cls.from_pair_weights(weights, dict(zip(log.queries, log.texts)), ordinals, terms, {}, "pbm", config)

    @classmethod
    def from_pair_weights(cls, weights: dict[tuple[str, str], float], texts: dict[str, str],
                          ordinals: Mapping[str, int], terms: Callable[[str], list[str]],
                          co_clicks: dict[int, Counter], source: str, config: BehaviourConfig) -> ClickGraph:
        """The graph of (query key, doc id) → weight, keeping the documents of the index with a positive weight."""
        query_docs: dict[str, dict[int, float]] = {}
        for (key, doc_id), weight in weights.items():
            if doc_id in ordinals and weight > 0:
                query_docs.setdefault(normalized_query(key), {})[ordinals[doc_id]] = float(weight)
        texts = {normalized_query(k): t for k, t in texts.items() if normalized_query(k) in query_docs}
        query_terms = {key: frozenset(terms(texts[key])) for key in query_docs}
        return cls(query_docs, texts, query_terms, co_clicks, source, config)

    def similar_queries(self, text: str, terms: list[str], vector: np.ndarray | None = None,
                        encode: Callable[[list[str]], np.ndarray] | None = None) -> dict[str, float]:
        """Past queries like this one, with a similarity in (0, 1]: the same normalized text (1), a share of the
        analyzed terms (Jaccard at least `graph_min_jaccard`), or a query vector's neighbours (cosine at least
        `graph_min_cosine`, when a vector and an encoder are given)."""
        found: dict[str, float] = {}
        key = normalized_query(text)
        if key in self.query_docs:
            found[key] = 1.0
        mine = frozenset(terms)
        if mine:
            for other in {k for t in mine for k in self._term_index.get(t, ())}:
                theirs = self.query_terms[other]
                jaccard = len(mine & theirs) / len(mine | theirs)
                if jaccard >= self.config.graph_min_jaccard:
                    found[other] = max(found.get(other, 0.0), jaccard)
        if vector is not None and encode is not None and self.query_docs:
            vectors, keys = self._past_vectors(encode)
            cosines = vectors @ np.asarray(vector, dtype=np.float32)
            for i in np.argsort(-cosines)[: self.config.graph_neighbours]:
                if cosines[i] >= self.config.graph_min_cosine:
                    found[keys[i]] = max(found.get(keys[i], 0.0), float(cosines[i]))
        return found

    def prepare(self, encode: Callable[[list[str]], np.ndarray]) -> None:
        """Encode the past queries now, so that no search pays for it."""
        if self.query_docs:
            self._past_vectors(encode)

    def _past_vectors(self, encode: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """The past queries' vectors, encoded once per graph (the most-clicked `graph_max_queries` of them)."""
        with self._lock:
            if self._vectors is None:
                keys = sorted(self.query_docs, key=lambda k: -sum(self.query_docs[k].values()))
                keys = keys[: self.config.graph_max_queries]
                self._vectors = np.asarray(encode([self.texts[k] for k in keys]), dtype=np.float32)
                self._vector_keys = keys
        return self._vectors, self._vector_keys

    def recall(self, text: str, terms: list[str], vector: np.ndarray | None = None,
               encode: Callable[[list[str]], np.ndarray] | None = None) -> dict[int, QueryMatch]:
        """Documents clicked for this query or similar past ones: Σ similarity × weight, with the past query that
        gave each document the most."""
        matches: dict[int, QueryMatch] = {}
        best: dict[int, float] = {}
        for key, similarity in self.similar_queries(text, terms, vector, encode).items():
            for doc, weight in self.query_docs[key].items():
                part = similarity * weight
                match = matches.setdefault(doc, QueryMatch(0.0, self.texts[key]))
                match.weight += part
                if part > best.get(doc, 0.0):
                    best[doc], match.via = part, self.texts[key]
        return matches

    def co_clicked(self, doc_ord: int) -> Counter:
        """Documents opened in the same sessions as `doc_ord`, with the number of those sessions."""
        return self.co_clicks.get(doc_ord, Counter())


def _pbm_relevance(table: Path) -> pa.Table | None:
    """The PBM's rows of the click models' relevance table with at least one click; None where there is no table,
    or one that cannot be read (it is derived from the log, and `sousuo click-models` writes it again): the graph
    then weighs pairs by their click-through rate, and search goes on."""
    if not table.is_file():
        return None
    try:
        rows = pq.read_table(table, columns=["model", "query", "doc_id", "relevance", "clicks"])
        return rows.filter(pc.and_(pc.equal(rows["model"], "pbm"), pc.greater(rows["clicks"], 0)))
    except (OSError, pa.ArrowException) as error:
        logger.warning("click model table %s skipped, the click graph weighs clicks by their rate: %s; "
                       "`sousuo click-models` writes it again", table, " ".join(str(error).split()))
        return None


def _query_weights(log: QueryLog, index_root: Path,
                   config: BehaviourConfig) -> tuple[dict[tuple[str, str], float], dict[str, str], str]:
    """(query key, doc id) → weight above the relevance prior's mean, for pairs clicked at least once: the PBM's
    debiased relevance where `sousuo click-models` fitted the pair, the smoothed click-through rate for the rest
    (all of them before any fit, and pairs first clicked since the last one, so new traffic counts at once); a text
    per key; and the source of the weights ("pbm" where a fit was read)."""
    floor = config.prior_mean
    texts = {query_key(r["text"]): r["text"] for r in log.sql("SELECT any_value(text) AS text FROM queries "
                                                             "GROUP BY lower(trim(text))")}
    weights = {}
    for row in log.sql(
        """
        WITH shown AS (SELECT lower(trim(text)) AS query, unnest(result_ids) AS doc_id FROM queries),
             impressions AS (SELECT query, doc_id, count(*) AS n FROM shown GROUP BY ALL),
             clicked AS (SELECT lower(trim(q.text)) AS query, c.doc_id, count(*) AS n
                         FROM clicks c JOIN queries q USING (query_id) GROUP BY ALL)
        SELECT c.query, c.doc_id, c.n AS clicks, coalesce(i.n, c.n) AS impressions
        FROM clicked c LEFT JOIN impressions i USING (query, doc_id)
        """
    ):
        ctr = (row["clicks"] + config.prior_clicks) / (max(row["impressions"], row["clicks"]) + config.prior_clicks
                                                      + config.prior_skips)
        weights[(row["query"], row["doc_id"])] = ctr - floor
    rows = _pbm_relevance(Path(index_root) / BEHAVIOUR_DIR / "relevance.parquet")
    if rows is None or not rows.num_rows:
        return weights, texts, "ctr"
    weights.update({(q, d): r - floor for q, d, r in zip(rows["query"].to_pylist(), rows["doc_id"].to_pylist(),
                                                         rows["relevance"].to_pylist())})
    return weights, texts, "pbm"
