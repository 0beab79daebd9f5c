"""The native JSON API under /v1: search in every mode, suggest, did-you-mean, documents, similar documents,
impressions and clicks, versions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...behaviour.interleaving import ARMS, INTERLEAVED_ARM
from ...constants import MAX_K, MAX_QUERY_CHARS, SEARCH_MODES
from ...errors import IndexNotFound
from ...index.querylog import MAX_ID_CHARS
from ...index.store import Manifest, current_version, list_versions, versions_dir
from ...retrieval.channels import audience_for
from ...search.filters import Filters
from ..interleave import assigned, interleaved_search, search_seed
from ..suggest import MAX_INPUT_CHARS
from . import metrics
from .common import query_model, query_parameters, reply, run, served, snapshot
from .es import source_of
from .served import Snapshot

router = APIRouter(prefix="/v1", tags=["native"])

MAX_LOGGED_RESULTS = 1_000  # result ids one impression may carry


class Strict(BaseModel):
    """Unknown fields are refused by name rather than ignored."""

    model_config = ConfigDict(extra="forbid")


class Visitor(Strict):
    """The client's anonymous ids, logged only as salted hashes (docs/behaviour.md)."""

    user_id: str | None = Field(None, max_length=MAX_ID_CHARS, description="anonymous user id, hashed at rest")
    session_id: str | None = Field(None, max_length=MAX_ID_CHARS, description="session id, hashed at rest")


class SearchRequest(Visitor):
    q: str = Field(max_length=MAX_QUERY_CHARS, description="query in the project's syntax (see README)")
    mode: Literal[SEARCH_MODES] = "bm25"
    k: int = Field(10, ge=0, le=MAX_K)
    offset: int = Field(0, ge=0, le=MAX_K)
    source: list[str] = []
    lang: list[str] = []
    tag: list[str] = []
    since: datetime | None = None
    until: datetime | None = None
    syntax: bool = Field(True, description="false: operators and quotes are ordinary words")
    snippets: bool = Field(True, description="highlighted titles and snippets (<mark>)")
    explain: bool = False
    log: bool = Field(False, description="record the search and its results as an impression; returns query_id")
    personalize: bool = Field(False, description="hybrid modes: use this user_id's own profile (opt-in)")
    region: str | None = Field(None, max_length=100, description="hybrid modes: lift documents of this region")

    @model_validator(mode="after")
    def _window(self) -> SearchRequest:
        if self.offset + self.k > MAX_K:
            raise ValueError(f"offset + k must be at most {MAX_K}")
        if self.personalize and not self.user_id:
            raise ValueError("personalize=true needs the user_id whose profile to use")
        return self

    def filters(self) -> Filters:
        return Filters(tuple(self.source), tuple(self.lang), tuple(self.tag), self.since, self.until)


class Impression(Visitor):
    query: str = Field(max_length=MAX_QUERY_CHARS)
    mode: Literal[SEARCH_MODES] = "bm25"
    result_ids: list[str] = Field([], max_length=MAX_LOGGED_RESULTS)
    result_count: int | None = Field(None, ge=0)
    offset: int = Field(0, ge=0, le=MAX_K)
    latency_ms: float = Field(0.0, ge=0)
    filters: dict[str, str | list[str]] = {}
    experiment: str | None = Field(None, max_length=64, description="the experiment a search response named")
    result_arms: list[Literal[ARMS]] | None = Field(None, max_length=MAX_LOGGED_RESULTS,
                                                    description="the arm of each of result_ids, as the response gave")

    @model_validator(mode="after")
    def _arms(self) -> Impression:
        if (self.experiment is None) != (self.result_arms is None):
            raise ValueError("experiment and result_arms come together")
        if self.result_arms is not None and len(self.result_arms) != len(self.result_ids):
            raise ValueError("result_arms must name the arm of each of result_ids")
        return self


class Click(Visitor):
    query_id: str = Field(min_length=1, max_length=64)
    doc_id: str = Field(min_length=1, max_length=1_000)
    position: int = Field(ge=1, le=MAX_K, description="1-based position of the clicked result")


class SuggestRequest(Strict):
    q: str = Field(max_length=MAX_INPUT_CHARS)
    limit: int = Field(8, ge=1, le=50)


class SimilarRequest(Strict):
    k: int = Field(10, ge=1, le=100)


def _search(request: Request, query: SearchRequest) -> tuple[Callable[[], dict], Snapshot]:
    """The search as work for a thread, and the snapshot it runs on."""
    snap = snapshot(request)

    def work() -> dict:
        started = time.perf_counter()
        index, query_id = served(request), uuid.uuid4().hex
        experiment = assigned(index.experiments, index.log, query.user_id, query.session_id, query.mode)
        logged = {"ranker": snap.ranker_id if query.mode == "ltr" else None}
        if experiment is None:
            audience = audience_for(snap.searcher.reader, query.user_id if query.personalize else None,
                                    query.region)
            response = snap.searcher.search(query.q, query.k, query.filters(), query.syntax, query.offset,
                                            query.snippets, query.mode, query.explain, audience)
            body = {"version": snap.version, "mode": query.mode, **response.to_json()}
        else:  # the visitor is in an interleaving experiment: its arms merged, each result tagged with its arm
            # (neither arm personalizes: the comparison is between the two rankers as everyone gets them)
            seed = search_seed(query.session_id or query.user_id, query.q, query.filters())
            result = interleaved_search(snap.searcher, experiment, query.q, query_id, snap.ranker, query.k,
                                        query.offset, query.filters(), query.syntax, query.snippets, query.explain,
                                        seed)
            response = result.response
            body = {"version": snap.version, "mode": query.mode, **result.to_json()}
            logged = {"arm": INTERLEAVED_ARM, "experiment": experiment.experiment_id, "result_arms": result.arms}
        metrics.SEARCH_SECONDS.labels(query.mode).observe(time.perf_counter() - started)
        if query.log:
            body["query_id"] = index.log.log_query(
                query.q, query.mode, query.filters(), response.took_ms, [h.doc_id for h in response.hits],
                response.total_matches, result_offset=query.offset, query_id=query_id, user_id=query.user_id,
                session_id=query.session_id, **logged)
        return body

    return work, snap


@router.get("/search", summary="Search in any mode, with filters, paging, snippets and explanations",
            openapi_extra=query_parameters(SearchRequest))
async def search_get(request: Request) -> JSONResponse:
    work, snap = _search(request, query_model(request, SearchRequest))
    return reply(await run(request, work), snap)


@router.post("/search", summary="Search, the request as a JSON body")
async def search_post(request: Request, query: SearchRequest) -> JSONResponse:
    work, snap = _search(request, query)
    return reply(await run(request, work), snap)


@router.get("/suggest", summary="Autocomplete: prefixes, phrases, pinyin and initials, popular past queries",
            openapi_extra=query_parameters(SuggestRequest))
async def suggest(request: Request) -> JSONResponse:
    query = query_model(request, SuggestRequest)
    snap = snapshot(request)

    def work() -> list[dict]:
        suggester = snap.suggester().with_queries(served(request).popular_queries())
        return [asdict(s) for s in suggester.complete(query.q, query.limit)]

    return reply({"version": snap.version, "suggestions": await run(request, work, offload=True)}, snap)


@router.get("/did-you-mean", summary="Spelling corrections of a query (English, pinyin, Chinese homophones)",
            openapi_extra=query_parameters(SuggestRequest))
async def did_you_mean(request: Request) -> JSONResponse:
    query = query_model(request, SuggestRequest)
    snap = snapshot(request)
    corrections = await run(request, lambda: snap.suggester().did_you_mean(query.q, query.limit), offload=True)
    return reply({"version": snap.version, "corrections": corrections}, snap)


def _ordinal(request: Request, doc_id: str) -> int:
    doc_ord = snapshot(request).doc_ordinal(doc_id)
    if doc_ord is None:
        raise IndexNotFound(f"no document {doc_id!r} in the served version")
    return doc_ord


@router.get("/documents/{doc_id}", summary="One document by id")
def document(request: Request, doc_id: str) -> JSONResponse:
    snap = snapshot(request)
    doc_ord = _ordinal(request, doc_id)
    return reply({"version": snap.version, "doc_id": doc_id, **source_of(snap, doc_ord)}, snap)


@router.get("/documents/{doc_id}/similar",
            summary="Documents like this one: dense neighbours, its top terms and co-clicks, fused by RRF",
            openapi_extra=query_parameters(SimilarRequest))
async def similar_documents(request: Request, doc_id: str) -> JSONResponse:
    query = query_model(request, SimilarRequest)
    snap = snapshot(request)
    doc_ord = _ordinal(request, doc_id)

    def work() -> dict:
        found = snap.searcher.similar(doc_ord, query.k)
        return {"version": snap.version, "doc_id": doc_id, "terms": found.terms,
                "results": found.hits(snap.searcher.reader)}

    return reply(await run(request, work, offload=True), snap)


@router.post("/impressions", summary="Record results shown to a user; returns the query_id clicks refer to")
def impression(request: Request, event: Impression) -> JSONResponse:
    if event.experiment is not None:
        served(request).experiments.get(event.experiment)  # an unknown experiment is a 404, not a logged row
    query_id = served(request).log.log_query(event.query, event.mode, event.filters, event.latency_ms,
                                             event.result_ids, event.result_count, result_offset=event.offset,
                                             user_id=event.user_id, session_id=event.session_id,
                                             arm=INTERLEAVED_ARM if event.experiment else None,
                                             experiment=event.experiment, result_arms=event.result_arms)
    return reply({"query_id": query_id}, snapshot(request), 201)


@router.post("/clicks", summary="Record a click on a result of an impression or a logged search")
def click(request: Request, event: Click) -> JSONResponse:
    served(request).log.log_click(event.query_id, event.doc_id, event.position, user_id=event.user_id,
                                  session_id=event.session_id)
    return reply({"recorded": True}, snapshot(request), 201)


@router.get("/versions", summary="The index's versions, the published one and the one this worker serves")
def versions(request: Request) -> JSONResponse:
    index = served(request)
    snap = snapshot(request)
    published = current_version(index.root)
    rows = []
    for version in list_versions(index.root):
        manifest = Manifest.read(versions_dir(index.root) / version)
        rows.append({"version": version, "documents": manifest.doc_count, "terms": manifest.term_count,
                     "created_at": manifest.created_at, "published": version == published})
    return reply({"served": snap.version, "ranker": snap.ranker_id, "published": published, "versions": rows}, snap)
