"""The Searcher: opens one index version, plans each query once, dispatches on the search mode, builds hits."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .behaviour.graph import ClickGraph
from .config import Settings
from .constants import MAX_K, MAX_QUERY_CHARS, SEARCH_MODES
from .deadline import check
from .errors import IndexNotFound, InputError
from .rank.explain import explain, single_branch
from .rank.model import RANKERS_DIR, Ranker
from .rank.rerank import learned
from .retrieval.adaptive import AdaptiveFusion, served_adaptive
from .retrieval.channels import Audience, Channels, channel_branches, region_lift
from .retrieval.hybrid import HybridResult, hybrid, recall
from .retrieval.similar import SimilarDocs, similar
from .retrieval.weights import FusionWeights, served_weights
from .search.filters import Filters
from .search.matching import match_mask
from .search.plan import QueryPlan, plan_query
from .search.pruned import pruned_top_k, top_k_many
from .search.reader import IndexReader
from .search.results import SearchResponse, make_hit
from .search.scoring import boosted_scores
from .search.topk import top_k
from .text.analysis import replace_lone_surrogates


@dataclass
class TopDocs:
    """The top of one ranking: doc ordinals and scores, before result rows are built."""

    doc_ords: np.ndarray
    scores: np.ndarray
    total_matches: int
    term_ids: list[int]  # the terms highlights and explanations mark
    query_terms: list[str]
    mode: str
    plan: QueryPlan
    hybrid: HybridResult | None = None  # hybrid modes keep what explanations need
    # Every document the query matched (bm25), was fused (hybrid, ltr) or returned (dense): what facets count
    # and sorts by date order.
    matched: np.ndarray | None = None
    channels: Channels | None = None  # hybrid modes: the behaviour channels' branches, for reasons


class Searcher:
    """Answers queries against one version in every mode; safe to share between threads."""

    def __init__(self, reader: IndexReader):
        self.reader = reader
        self.settings = reader.settings
        self._graph: ClickGraph | None = None
        self._graph_stamp: tuple[float, int, float] | None = None  # what the graph was read from, when
        self._graph_lock = threading.Lock()
        self._refresh_lock = threading.Lock()

    @classmethod
    def open(cls, index_dir: Path | str, settings: Settings | None = None, version: str | None = None) -> Searcher:
        return cls(IndexReader.open(index_dir, settings, version))

    @property
    def doc_ids(self) -> list[str]:
        return self.reader.doc_ids

    @cached_property
    def fusion_weights(self) -> FusionWeights:
        """The configured method's published tuned weights, else the configured ones; read once per Searcher."""
        fusion = self.settings.fusion
        return served_weights(self.reader.root, fusion.method, fusion.weights)

    @cached_property
    def adaptive_fusion(self) -> AdaptiveFusion | None:
        """The published adaptive fusion model the hybrid mode picks per-query weights with, if any."""
        return served_adaptive(self.reader.root, self.settings.fusion)

    @property
    def click_graph(self) -> ClickGraph:
        """The index's query log as a click graph (empty where nothing was logged): read once, then again only by
        `refresh_click_graph`."""
        with self._graph_lock:
            if self._graph is None:
                self._graph_stamp = ClickGraph.source_stamp(self.reader.root)
                self._graph = ClickGraph.served(self.reader)
            return self._graph

    def refresh_click_graph(self) -> bool:
        """Read the click graph again, with its past queries' vectors, if the log's clicks or the click models
        changed since it was read; searches meanwhile keep the graph they have. The API server calls it off any
        request's time, so a long-running server learns from the traffic it serves. True when it swapped."""
        with self._refresh_lock:  # one read at a time, so an older read never replaces a newer one
            stamp = ClickGraph.source_stamp(self.reader.root)
            if stamp == self._graph_stamp:
                return False
            graph = ClickGraph.served(self.reader)
            reader = self.reader
            if reader.has_dense and self.settings.behaviour.graph_neighbours:
                graph.prepare(reader.query_encoder().encode_queries)
            with self._graph_lock:
                self._graph, self._graph_stamp = graph, stamp
            return True

    def similar(self, doc_ord: int, k: int = 10, allowed: np.ndarray | None = None) -> SimilarDocs:
        """Documents like `doc_ord`: dense neighbours, its top terms and its co-clicks (`retrieval/similar.py`)."""
        return similar(self.reader, doc_ord, k, allowed, graph=self.click_graph)

    @property
    def has_ranker(self) -> bool:
        return Ranker.published(self.reader.root / RANKERS_DIR)

    @cached_property
    def ranker(self) -> Ranker:
        ranker = Ranker.load_current(self.reader.root / RANKERS_DIR)
        if ranker is None:
            root = self.reader.root
            raise IndexNotFound(f"no trained ranker for {root}: run `sousuo train --index {root} "
                                "--dataset BEIR_FOLDER` first, or use --mode hybrid")
        ranker.check(self.reader.compatibility())
        return ranker

    def plan(self, query: str, mode: str = "bm25", filters: Filters | None = None, syntax: bool = True,
             vector: np.ndarray | None = None, **shape) -> QueryPlan:
        """The query analyzed once, with the vector the mode needs (encoded here unless given).

        `shape`: a clause tree built already, a filter mask and the fields to search (see `plan_query`)."""
        query = replace_lone_surrogates(query[:MAX_QUERY_CHARS])
        if vector is None and (mode == "dense" or (mode in ("hybrid", "ltr") and self.reader.has_dense)):
            vector = self.reader.encode_query(query)
        return plan_query(self.reader, query, syntax, filters, vector, **shape)

    def rank(self, query: str, k: int = 10, filters: Filters | None = None, syntax: bool = True, offset: int = 0,
             mode: str = "bm25", audience: Audience | None = None) -> TopDocs:
        """Doc ordinals and scores of the top-k, without building result rows: the fast path for evaluation."""
        _check(mode, offset)
        ranker = self.ranker if mode == "ltr" else None  # refused before any work when there is none
        return self.rank_plan(self.plan(query, mode, filters, syntax), k, offset, mode, ranker, audience)

    def rank_plan(self, plan: QueryPlan, k: int = 10, offset: int = 0, mode: str = "bm25",
                  ranker: Ranker | None = None, audience: Audience | None = None) -> TopDocs:
        """`rank` of a planned query; `ranker` replaces the published one in mode ltr. In the hybrid modes the
        click graph joins the branches where the log has clicks, and `audience` (opted in per request) adds the
        user's personal branch and the region lift."""
        _check(mode, offset)
        check("recall")  # after analysis and the query's encoding
        k = max(0, min(int(k), MAX_K))
        if mode == "ltr":
            ranker = ranker or self.ranker
        if mode == "bm25":
            return self._bm25(plan, k, offset)
        if mode == "dense":
            docs, scores = self.reader.dense.rank(plan.vector, offset + k, plan.allowed)
            total = self.reader.n_docs if plan.allowed is None else int(plan.allowed.sum())
            return TopDocs(docs[offset:], scores[offset:], total, plan.term_ids, _distinct(plan.terms), mode, plan,
                           matched=docs)
        branches, channels, graph = None, None, self.click_graph
        if not graph.empty or audience is not None:
            branches = recall(self.reader, plan)
            channels = channel_branches(self.reader, plan, branches, graph, audience, self.settings.behaviour)
            branches.update(channels.branches)
        weights = channels.weights if channels else None
        result = learned(self.reader, plan, ranker, self.fusion_weights, self.adaptive_fusion, branches, weights) \
            if mode == "ltr" else hybrid(self.reader, plan, self.fusion_weights, self.adaptive_fusion, branches, weights)
        docs, scores = region_lift(self.reader, result.doc_ords, result.scores, channels and channels.region,
                                   self.settings.behaviour.region_boost)
        window = slice(offset, offset + k)
        fused = np.fromiter(result.fused_scores, dtype=np.int64, count=len(result.fused_scores))
        return TopDocs(docs[window], scores[window], len(fused), plan.term_ids, _distinct(plan.terms), mode, plan,
                       result, fused, channels)

    def rank_bm25_many(self, queries: list[str], k: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
        """(doc ordinals, scores) of `rank(query, k, syntax=False)` for each query: with pruning, the top k of
        all of them in one compiled call (evaluation, benchmarks)."""
        plans = [self.plan(query, syntax=False) for query in queries]
        k = max(0, min(int(k), MAX_K))
        if not plans or not self._prunes(plans[0]):  # plain plans all search the configured fields
            return [(top.doc_ords, top.scores) for top in (self.rank_plan(plan, k) for plan in plans)]
        (field, boost), = plans[0].field_boosts.items()
        return top_k_many(self.reader.postings(field), self.reader.impacts(field),
                          [plan.scored_ids for plan in plans], k, boost)

    def _prunes(self, plan: QueryPlan) -> bool:
        # A zero boost scores nothing, which the exhaustive path answers by matching nothing.
        return self.settings.bm25.pruning and len(plan.field_boosts) == 1 and \
            next(iter(plan.field_boosts.values())) > 0

    def _bm25(self, plan: QueryPlan, k: int, offset: int) -> TopDocs:
        if self._prunes(plan):
            return self._bm25_pruned(plan, k, offset)
        scores = boosted_scores(self.reader, plan.scored_ids, plan.field_boosts, plan.best_field)
        mask = scores > 0 if plan.is_plain else match_mask(self.reader, plan)
        if plan.allowed is not None:
            mask &= plan.allowed
        candidates = np.flatnonzero(mask)
        top = candidates[top_k(candidates, scores[candidates], offset + k)][offset:]
        return TopDocs(top, scores[top], len(candidates), plan.scored_ids, _distinct(plan.scored_terms), "bm25", plan,
                       matched=candidates)

    def _bm25_pruned(self, plan: QueryPlan, k: int, offset: int) -> TopDocs:
        """`_bm25` by pruned top-k over the one field searched: the same top k, scores and count."""
        (field, boost), = plan.field_boosts.items()
        postings = self.reader.postings(field)
        if plan.is_plain:
            matched = np.zeros(self.reader.n_docs, dtype=bool)
            for term_id in plan.scored_ids:
                matched[postings.docs[postings.span(term_id)]] = True
        else:
            matched = match_mask(self.reader, plan)
        if plan.allowed is not None:
            matched &= plan.allowed
        eligible = None if plan.is_plain and plan.allowed is None else matched
        top, scores = pruned_top_k(postings, self.reader.impacts(field), plan.scored_ids, offset + k, boost,
                                   eligible)
        candidates = np.flatnonzero(matched)
        if len(top) < offset + k and not plan.is_plain:
            # Matched documents that no scored word reaches score 0 and follow, by ordinal, as exhaustively.
            unscored = candidates[~np.isin(candidates, top)][: offset + k - len(top)]
            top, scores = np.concatenate([top, unscored]), np.concatenate([scores, np.zeros(len(unscored))])
        return TopDocs(top[offset:], scores[offset:], len(candidates), plan.scored_ids, _distinct(plan.scored_terms),
                       "bm25", plan, matched=candidates)

    def search(self, query: str, k: int = 10, filters: Filters | None = None, syntax: bool = True, offset: int = 0,
               with_snippets: bool = True, mode: str = "bm25", explain: bool = False,
               audience: Audience | None = None) -> SearchResponse:
        """Top-k documents for `query`. With `syntax=False` operators and quotes are ordinary words."""
        started = time.perf_counter()
        return self.respond(self.rank(query, k, filters, syntax, offset, mode, audience), started, with_snippets,
                            explain)

    def respond(self, top: TopDocs, started: float, with_snippets: bool = True, explain: bool = False) -> SearchResponse:
        """Result rows of a ranking; `started` is the `time.perf_counter()` the request began at."""
        term_ids = set(top.term_ids)
        hits = []
        for doc_ord, score in zip(top.doc_ords, top.scores):
            check("building result rows")  # a page may hold up to MAX_K rows with snippets
            hits.append(make_hit(self.reader, int(doc_ord), float(score), term_ids, with_snippets))
        if explain:
            for hit in hits:
                hit.explanation = self.explain(top, hit.doc_ord)
        if top.channels is not None:
            for hit in hits:
                hit.reasons = top.channels.reasons(self.reader, hit.doc_ord) or None
        return SearchResponse(top.plan.text, hits, top.total_matches, (time.perf_counter() - started) * 1000,
                              top.query_terms)

    def explain(self, top: TopDocs, doc_ord: int) -> dict:
        if top.hybrid is None:
            return single_branch(self.reader, top.mode, top.doc_ords, top.scores, top.term_ids, doc_ord)
        return explain(self.reader, top.plan, top.hybrid, doc_ord, self.fusion_weights.weights_id).to_json()


def _check(mode: str, offset: int) -> None:
    if mode not in SEARCH_MODES:
        raise InputError(f"unknown search mode {mode!r}; choose from {SEARCH_MODES}")
    if offset < 0:
        raise InputError(f"offset must be 0 or more, got {offset}")


def _distinct(terms: list[str]) -> list[str]:
    return list(dict.fromkeys(terms))
