"""The read side's one view of an index version: postings, forward fields, metadata, dense vectors, engagement."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from ..config import Settings
from ..dense.encoders import Encoder, canonical_encoder_name, resolve_device
from ..dense.index import DenseIndex
from ..errors import EncoderMismatch, IndexNotFound, InputError
from ..index.forward import ForwardField, Vocabulary
from ..index.postings import FieldPostings
from ..index.querylog import QueryLog
from ..index.store import IndexVersion
from ..text.analysis import Analyzer
from .bm25 import CollectionStats
from .filters import DocumentMetadata
from .pruned import Impacts


class IndexReader:
    """Opens one version read-only (arrays memory-mapped) and hands out its parts; safe to share between threads.

    Branches, features and the Searcher read the index only through this narrow, typed interface."""

    def __init__(self, version: IndexVersion, settings: Settings):
        self.version = version
        self.settings = settings
        self.analyzer = Analyzer(version.analyzer_config)
        self.n_docs = version.manifest.doc_count
        self.field_boosts = {f: w for f, w in settings.bm25.field_boosts.items() if w}
        unknown = set(self.field_boosts) - set(version.inverted.fields)
        if unknown:
            raise InputError(f"unknown fields in bm25.field_boosts: {sorted(unknown)}")
        self.metadata = DocumentMetadata(version.documents)
        self._impacts: dict[str, Impacts] = {}
        self._impact_lock = threading.Lock()
        self.doc_ids: list[str] = version.documents.column("doc_id").to_pylist()

    @classmethod
    def open(cls, index_dir: Path | str, settings: Settings | None = None, version: str | None = None) -> IndexReader:
        settings = settings or Settings()
        return cls(IndexVersion.open(Path(index_dir), settings.analyzer, version), settings)

    @property
    def root(self) -> Path:
        """The index folder: rankers, tuned weights and the query log live here, beside the versions."""
        return self.version.root

    @property
    def vocabulary(self) -> Vocabulary:
        return self.version.vocabulary

    def postings(self, field: str) -> FieldPostings:
        return self.version.inverted.fields[field]

    def collection_stats(self, field: str) -> CollectionStats | None:
        """The collection's BM25 statistics where this version is one shard of it; None: its own postings'."""
        return None

    def impacts(self, field: str) -> Impacts:
        """Each posting's BM25 score and each term's largest, for pruned top-k, made on first use by one pass
        over the field's postings."""
        with self._impact_lock:  # one pass per field, even when the first queries arrive together
            impacts = self._impacts.get(field)
            if impacts is None:
                bm25 = self.settings.bm25
                impacts = self._impacts[field] = Impacts.of(self.postings(field), bm25.k1, bm25.b)
        return impacts

    def forward(self, field: str) -> ForwardField:
        return self.version.forward.fields[field]

    def known_ids(self, terms: list[str]) -> list[int]:
        """Vocabulary ids of the terms the index knows, in order, repeats kept."""
        return [t for t in self.vocabulary.lookup(terms) if t is not None]

    def stored_text(self, field: str, doc_ord: int) -> str:
        return self.version.documents.column(field)[doc_ord].as_py() or ""

    # -- dense ----------------------------------------------------------------------------------------

    @cached_property
    def has_dense(self) -> bool:
        return DenseIndex.exists(self.version.path)

    @cached_property
    def dense(self) -> DenseIndex:
        if not self.has_dense:
            raise IndexNotFound(f"index {self.version.path} has no dense branch: build it with dense.enabled = true")
        return DenseIndex(self.version.path)

    def query_encoder(self) -> Encoder:
        """The manifest's encoder, unless configuration names another, which is refused before any model loads."""
        configured = self.settings.dense.encoder
        dense = self.dense
        if not dense.accepts(configured):
            raise EncoderMismatch(
                f"the index was embedded with {dense.manifest.model_id!r}, but the query encoder is "
                f"{canonical_encoder_name(configured)!r}: vectors from different models are not comparable. "
                "Use the index's encoder or rebuild the index."
            )
        return dense.encoder(self.settings.dense.batch_size, resolve_device(self.settings.dense.device))

    def encode_query(self, text: str) -> np.ndarray:
        return self.dense.encode_query(text, self.query_encoder())

    def dense_cosines(self, vector: np.ndarray | None, docs: np.ndarray) -> np.ndarray:
        """Cosine of the query with each document's best passage (NaN without a dense branch)."""
        if vector is None or not self.has_dense:
            return np.full(len(docs), np.nan)
        return self.dense.doc_cosines(vector, docs)

    def compatibility(self) -> dict:
        """What a ranker's features depend on: the analyzer and the dense model."""
        return {
            "analyzer": self.version.manifest.analyzer_fingerprint,
            "dense_model": self.dense.manifest.model_id if self.has_dense else None,
        }

    # -- behaviour ------------------------------------------------------------------------------------

    @cached_property
    def engagement(self) -> tuple[np.ndarray, np.ndarray]:
        """(impressions, clicks) per document from the index's query log; zeros where nothing was logged.

        Read once per reader: a reopened reader sees newer clicks."""
        return self.engagement_of()

    @cached_property
    def ordinals(self) -> dict[str, int]:
        """Doc id → ordinal in this version."""
        return {doc_id: i for i, doc_id in enumerate(self.doc_ids)}

    def engagement_of(self, before: float | None = None,
                      without_queries: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
        """(impressions, clicks) per document of the log's searches before `before` less the queries
        `without_queries` (`QueryLog.engagement`)."""
        impressions, clicks = np.zeros(self.n_docs), np.zeros(self.n_docs)
        ordinals = self.ordinals
        log = QueryLog(self.root)
        if log.queries_dir.is_dir() or log.clicks_dir.is_dir():
            for doc_id, (shown, clicked) in log.engagement(before, without_queries).items():
                if doc_id in ordinals:
                    impressions[ordinals[doc_id]], clicks[ordinals[doc_id]] = shown, clicked
        return impressions, clicks

    def with_engagement(self, engagement: tuple[np.ndarray, np.ndarray]) -> IndexReader:
        """This reader seen with other per-document (impressions, clicks), everything else shared with it (nothing
        loaded twice): a ranker learning from some sessions' clicks must see the click features of the others
        alone, or it learns "clicked means relevant"."""
        return _WithEngagement(self, engagement)  # type: ignore[return-value]


class _WithEngagement:
    """A reader with the engagement given, every other attribute read from the reader it wraps."""

    def __init__(self, reader: IndexReader, engagement: tuple[np.ndarray, np.ndarray]):
        self._reader = reader
        self.engagement = engagement

    def __getattr__(self, name: str):
        return getattr(self._reader, name)
