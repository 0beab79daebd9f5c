"""The served index: the Searcher of the published version and ranker, swapped in place when either is published."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ...behaviour.experiments import ExperimentStore
from ...config import Settings
from ...errors import IndexNotFound
from ...index.querylog import QueryLog
from ...index.store import current_version
from ...io import CURRENT_POINTER, read_pointer
from ...rank.model import RANKERS_DIR, Ranker
from ...search.pruned import warm_up
from ...searcher import Searcher
from ..suggest import Suggester, suggester_for
from . import metrics

log = logging.getLogger("sousuo.api")

POPULAR_QUERIES_TTL_S = 30.0  # autocomplete offers past queries; reading the log on every keystroke is too slow


@dataclass
class Snapshot:
    """One published version with its ranker, warm. A request keeps the snapshot it started with to the end."""

    searcher: Searcher
    version: str
    ranker_id: str | None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _suggester: Suggester | None = field(default=None, repr=False)
    _rankers: dict[str, Ranker] = field(default_factory=dict, repr=False)

    @property
    def doc_count(self) -> int:
        return self.searcher.reader.n_docs

    @cached_property
    def ordinals(self) -> dict[str, int]:
        return self.searcher.reader.ordinals

    def doc_ordinal(self, doc_id: str) -> int | None:
        return self.ordinals.get(doc_id)

    def suggester(self) -> Suggester:
        """Autocomplete of this version, built on first use (it scans the documents)."""
        with self._lock:
            if self._suggester is None:
                self._suggester = suggester_for(self.searcher.reader)
            return self._suggester

    def ranker(self, model_id: str | None) -> Ranker:
        """The published ranker, or another trained one of the index by its model id."""
        if model_id is None or model_id == self.ranker_id:
            return self.searcher.ranker
        with self._lock:
            if model_id not in self._rankers:
                folder = self.searcher.reader.root / RANKERS_DIR / model_id
                if not (folder / "ranker.json").is_file() or "/" in model_id or model_id.startswith("."):
                    raise IndexNotFound(f"no trained ranker {model_id!r} in this index")
                ranker = Ranker.load(folder)
                ranker.check(self.searcher.reader.compatibility())
                self._rankers[model_id] = ranker
            return self._rankers[model_id]


def served_key(root: Path) -> tuple[str | None, str | None]:
    """What a publish changes: the CURRENT pointers of the versions and of the rankers."""
    return current_version(root), read_pointer(root / RANKERS_DIR / CURRENT_POINTER)


class ServedIndex:
    """Holds the current Snapshot and a thread that swaps in a new one when a version or ranker is published.

    The new snapshot is opened and warmed before the swap, which is one attribute assignment: requests
    in flight finish on the old snapshot, which is freed (its memory maps closed) when the last one ends."""

    def __init__(self, root: Path, settings: Settings, name: str):
        self.root = Path(root)
        self.settings = settings
        self.name = name
        self.log = QueryLog(self.root)
        self.experiments = ExperimentStore(self.root)  # interleaving experiments, re-read when they change
        self._popular: tuple[float, list[tuple[str, int]]] = (0.0, [])
        self._failed_key: tuple[str | None, str | None] | None = None  # tried once; retried when the key changes
        self._current = self._open(served_key(self.root))
        metrics.served(self._current.version, None, self._current.doc_count)
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="sousuo-version-watch", daemon=True)

    @property
    def current(self) -> Snapshot:
        return self._current

    def start(self) -> None:
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()

    def _open(self, key: tuple[str | None, str | None]) -> Snapshot:
        version, ranker_id = key
        if version is None:
            raise IndexNotFound(f"no published index in {self.root}: run `sousuo build --index {self.root}` first")
        searcher = Searcher.open(self.root, self.settings, version)
        # Warm everything a first query would otherwise pay for: analyzer, dense index and encoder, ranker.
        searcher.rank("warm up", 1)
        for field in searcher.reader.field_boosts:  # pruned top-k's impacts and compiled kernel
            warm_up(searcher.reader.postings(field), searcher.reader.impacts(field))
        if searcher.reader.has_dense:
            searcher.reader.encode_query("warm up")
        if ranker_id is not None:
            searcher.ranker  # noqa: B018 (loads and checks the model)
        searcher.fusion_weights  # noqa: B018
        searcher.refresh_click_graph()  # reads the query log and encodes its past queries: never on a request's time
        snap = Snapshot(searcher, version, ranker_id)
        snap.ordinals  # noqa: B018 (built before the swap, not by the first request)
        return snap

    def refresh(self) -> bool:
        """Swap in the published version and ranker if either changed; True when it swapped."""
        key = served_key(self.root)
        current = self._current
        if key in ((current.version, current.ranker_id), self._failed_key):
            return False
        try:
            self._current = self._open(key)
        except Exception:
            self._failed_key = key
            raise
        metrics.SWAPS.inc()
        metrics.served(self._current.version, current.version, self._current.doc_count)
        log.info("serving version %s, ranker %s", key[0], key[1])
        return True

    def _watch(self) -> None:
        graph_checked = time.monotonic()
        while not self._stop.wait(self.settings.api.reload_interval_s):
            try:
                self.refresh()
            except Exception:  # a broken publish must not stop serving the version that works
                metrics.ERRORS.labels("version_swap_failed").inc()
                log.exception("could not open the published version of %s; still serving %s", self.root,
                              self._current.version)
            if time.monotonic() - graph_checked >= self.settings.behaviour.graph_refresh_s:
                graph_checked = time.monotonic()
                try:
                    self._current.searcher.refresh_click_graph()
                except Exception:  # an unreadable log must not stop serving the graph already read
                    metrics.ERRORS.labels("click_graph_refresh_failed").inc()
                    log.exception("could not read the click graph of %s again; serving the one read before",
                                  self.root)

    def popular_queries(self) -> list[tuple[str, int]]:
        """Past queries that found something, for autocomplete; read at most every POPULAR_QUERIES_TTL_S."""
        read_at, queries = self._popular
        if time.monotonic() - read_at > POPULAR_QUERIES_TTL_S:
            try:
                queries = [(r["text"], r["searches"]) for r in self.log.top_queries(limit=200, min_results=1)]
            except Exception:  # an unreadable log must not break the search box
                log.exception("could not read the query log")
            self._popular = (time.monotonic(), queries)
        return queries
