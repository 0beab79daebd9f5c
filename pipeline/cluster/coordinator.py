"""The coordinator of a sharded index: analyzes once, fans out recall to the shards, merges, fuses and ranks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import cached_property

import numpy as np

from ..config import Settings
from ..constants import MAX_K
from ..errors import IndexNotFound
from ..index.store import IndexVersion
from ..rank.features import list_features
from ..rank.model import RANKERS_DIR, Ranker
from ..retrieval.adaptive import AdaptiveFusion, served_adaptive, signals_of
from ..retrieval.branches import BranchResult
from ..retrieval.hybrid import fuse_branches
from ..retrieval.weights import FusionWeights, served_weights
from ..search.filters import Filters
from ..search.plan import QueryPlan
from ..search.results import SearchResponse
from ..search.topk import top_k
from ..searcher import Searcher, _check, _distinct
from .partition import Layout
from .shard import Ranked, Recall, ShardQuery, ShardReader

# call(shard, method, *args): a shard's method run where the shard lives (in process, or on a Ray replica).
ShardCall = Callable[..., Awaitable]


def merge_top(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of the shards' top lists, ties by global ordinal as a single index breaks them."""
    docs = np.concatenate([np.asarray(d, dtype=np.int64) for d, _ in parts]) if parts else np.zeros(0, np.int64)
    scores = np.concatenate([np.asarray(s, dtype=np.float64) for _, s in parts]) if parts else np.zeros(0)
    keep = top_k(docs, scores, k)
    return docs[keep], scores[keep]


def merge_recall(parts: list[Recall], depth: int) -> dict[str, BranchResult]:
    """Every branch over the whole collection from the shards' parts: the lists a single index recalls."""
    branches = {name: BranchResult(name, *merge_top([p.branches[name] for p in parts], depth))
                for name in parts[0].branches}
    candidates, coverage, tiebreak, scores = (np.concatenate(column) for column in zip(*(p.proximity for p in parts)))
    by_ordinal = np.argsort(candidates, kind="stable")
    candidates, coverage, tiebreak, scores = (a[by_ordinal] for a in (candidates, coverage, tiebreak, scores))
    keep = np.lexsort((-tiebreak, -coverage))[: depth * 3]  # the proximity branch's own bound on position work
    best = top_k(candidates[keep], scores[keep], depth)
    branches["proximity"] = BranchResult("proximity", candidates[keep][best], scores[keep][best])
    return branches


class Coordinator:
    """Serves the search modes of a partitioned index through `call`; answers as a Searcher of the whole index would."""

    def __init__(self, layout: Layout, call: ShardCall, settings: Settings | None = None):
        self.layout = layout
        self.call = call
        self.settings = settings or Settings()
        # Every shard keeps the whole vocabulary, so the first shard's reader analyzes and encodes for the cluster.
        version = IndexVersion.open(layout.shard_dir(0), self.settings.analyzer)
        self.reader = ShardReader(version, self.settings, layout)
        self.planner = Searcher(self.reader)

    @cached_property
    def fusion_weights(self) -> FusionWeights:
        return served_weights(self.layout.root, self.settings.fusion.method, self.settings.fusion.weights)

    @cached_property
    def adaptive_fusion(self) -> AdaptiveFusion | None:
        return served_adaptive(self.layout.root, self.settings.fusion)

    @cached_property
    def ranker(self) -> Ranker:
        ranker = Ranker.load_current(self.layout.root / RANKERS_DIR)
        if ranker is None:
            raise IndexNotFound(f"no trained ranker in {self.layout.root}: train one on the index, partition it "
                                "again, or use --mode hybrid")
        ranker.check(self.reader.compatibility())
        return ranker

    async def _fan_out(self, method: str, *args) -> list:
        return await asyncio.gather(*(self.call(shard, method, *args) for shard in range(len(self.layout.shards))))

    def _owners(self, doc_ords: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.layout.offsets, doc_ords, side="right") - 1

    async def rank(self, query: str, k: int = 10, mode: str = "bm25", filters: Filters | None = None,
                   syntax: bool = True, offset: int = 0) -> tuple[QueryPlan, np.ndarray, np.ndarray, int]:
        """(plan, global ordinals, scores, total matches) of the page a Searcher of the whole index returns."""
        _check(mode, offset)
        ranker = self.ranker if mode == "ltr" else None
        plan = self.planner.plan(query, mode, None, syntax)
        request = ShardQuery(plan.text, plan.analyzed, syntax, filters, plan.vector)
        k = max(0, min(int(k), MAX_K))
        if mode in ("bm25", "dense"):
            parts: list[Ranked] = await self._fan_out("top", request, offset + k, mode)
            docs, scores = merge_top([(p.doc_ords, p.scores) for p in parts], offset + k)
            return plan, docs[offset:], scores[offset:], sum(p.total for p in parts)
        depth = self.settings.fusion.depth
        branches = merge_recall(await self._fan_out("recall", request, depth), depth)
        signals = signals_of(plan, branches, self.layout.languages, depth)
        adaptive = self.adaptive_fusion
        choice = adaptive.choose(signals) if adaptive is not None else None
        docs, scores = fuse_branches(branches, self.settings.fusion, choice.weights if choice else self.fusion_weights)
        total = len(docs)
        if mode == "ltr":
            candidates = docs[: self.settings.ranker.candidates]
            columns = await self._document_features(request, candidates)
            features = list_features(columns, candidates, branches, scores[: len(candidates)], signals,
                                     len(plan.distinct_ids), depth)
            model_scores = ranker.predict(features)
            order = top_k(candidates, model_scores)
            docs, scores = candidates[order], model_scores[order]
        return plan, docs[offset:offset + k], scores[offset:offset + k], total

    async def _document_features(self, request: ShardQuery, candidates: np.ndarray) -> dict[str, np.ndarray]:
        """Each candidate's document features from the shard that holds it, in the candidates' order."""
        owners = self._owners(candidates)
        shards = sorted(set(owners.tolist()))
        parts = await asyncio.gather(*(self.call(s, "features", request, candidates[owners == s]) for s in shards))
        columns: dict[str, np.ndarray] = {}
        for shard, part in zip(shards, parts):
            for name, values in part.items():
                column = columns.setdefault(name, np.zeros(len(candidates)))
                column[owners == shard] = values
        return columns

    async def search(self, query: str, k: int = 10, mode: str = "bm25", filters: Filters | None = None,
                     syntax: bool = True, offset: int = 0, with_snippets: bool = True) -> SearchResponse:
        """`Searcher.search` of the whole index, its result rows made by the shards that hold them."""
        started = time.perf_counter()
        plan, docs, scores, total = await self.rank(query, k, mode, filters, syntax, offset)
        term_ids = plan.scored_ids if mode == "bm25" else plan.term_ids
        owners = self._owners(docs)
        shards = sorted(set(owners.tolist()))
        parts = await asyncio.gather(*(self.call(s, "hits", docs[owners == s], scores[owners == s], term_ids,
                                                 with_snippets) for s in shards))
        by_ordinal = {hit.doc_ord: hit for part in parts for hit in part}
        hits = [by_ordinal[d] for d in docs.tolist()]
        query_terms = _distinct(plan.scored_terms if mode == "bm25" else plan.terms)
        return SearchResponse(plan.text, hits, total, (time.perf_counter() - started) * 1000, query_terms)


def local_call(shards: list) -> ShardCall:
    """A ShardCall over shards in this process: the coordinator without Ray, for tests and one machine."""

    async def call(shard: int, method: str, *args):
        return getattr(shards[shard], method)(*args)

    return call
