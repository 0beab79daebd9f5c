"""One search shard: a contiguous range of the collection's documents, scored with the collection's statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Settings
from ..index.store import IndexVersion
from ..rank.features import document_features
from ..retrieval.branches import BRANCHES, available_branches, proximity_candidates
from ..search.bm25 import CollectionStats
from ..search.filters import Filters
from ..search.plan import QueryPlan, plan_query
from ..search.reader import IndexReader
from ..search.results import Hit, make_hit
from ..searcher import Searcher
from ..text.analysis import AnalyzedText
from .partition import Layout


@dataclass(frozen=True)
class ShardQuery:
    """What the coordinator sends every shard: the query analyzed once, its vector, and its filters."""

    text: str
    analyzed: AnalyzedText
    syntax: bool = True
    filters: Filters | None = None
    vector: np.ndarray | None = None


@dataclass
class Ranked:
    """A shard's best documents by global ordinal, best first, and how many it matched."""

    doc_ords: np.ndarray
    scores: np.ndarray
    total: int


@dataclass
class Recall:
    """A shard's part of every recall branch, by global ordinal; proximity keeps what the coordinator re-ranks."""

    branches: dict[str, tuple[np.ndarray, np.ndarray]]
    proximity: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # candidates, coverage, BM25, score


class ShardReader(IndexReader):
    """An IndexReader of one shard whose BM25 and document ages are the whole collection's."""

    def __init__(self, version: IndexVersion, settings: Settings, layout: Layout):
        super().__init__(version, settings)
        self._stats = {field: layout.stats(field) for field in version.inverted.fields}
        self.metadata.newest_us = layout.newest_us

    def collection_stats(self, field: str) -> CollectionStats:
        return self._stats[field]


class Shard:
    """Answers the coordinator for one shard: BM25 and dense top lists, recall branches, features, result rows."""

    def __init__(self, layout: Layout, shard: int, settings: Settings | None = None):
        settings = settings or Settings()
        # Pruned top-k's impacts come from the shard's own statistics: score exhaustively with the collection's.
        settings = settings.model_copy(update={"bm25": settings.bm25.model_copy(update={"pruning": False})})
        version = IndexVersion.open(layout.shard_dir(shard), settings.analyzer)
        self.reader = ShardReader(version, settings, layout)
        self.searcher = Searcher(self.reader)
        self.offset = layout.offsets[shard]

    def plan(self, query: ShardQuery) -> QueryPlan:
        return plan_query(self.reader, query.text, query.syntax, query.filters, query.vector, analyzed=query.analyzed)

    def top(self, query: ShardQuery, k: int, mode: str) -> Ranked:
        """The k best of the shard in mode bm25 or dense."""
        top = self.searcher.rank_plan(self.plan(query), k, 0, mode)
        return Ranked(top.doc_ords.astype(np.int64) + self.offset, top.scores, top.total_matches)

    def recall(self, query: ShardQuery, depth: int) -> Recall:
        plan = self.plan(query)
        names = [name for name in available_branches(self.reader) if name != "proximity"]
        branches = {}
        for name in names:
            result = BRANCHES[name](self.reader, plan, depth)
            branches[name] = (result.doc_ords.astype(np.int64) + self.offset, result.scores)
        candidates, coverage, tiebreak, scores = proximity_candidates(self.reader, plan, depth * 3)
        return Recall(branches, (candidates.astype(np.int64) + self.offset, coverage, tiebreak, scores))

    def features(self, query: ShardQuery, doc_ords: np.ndarray) -> dict[str, np.ndarray]:
        """`document_features` of documents given by global ordinal."""
        return document_features(self.reader, self.plan(query), np.asarray(doc_ords, dtype=np.int64) - self.offset)

    def hits(self, doc_ords: np.ndarray, scores: np.ndarray, term_ids: list[int], with_snippets: bool) -> list[Hit]:
        hits = []
        for doc_ord, score in zip(np.asarray(doc_ords).tolist(), np.asarray(scores).tolist()):
            hit = make_hit(self.reader, doc_ord - self.offset, float(score), set(term_ids), with_snippets)
            hit.doc_ord = doc_ord
            hits.append(hit)
        return hits
