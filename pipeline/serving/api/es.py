"""Elasticsearch-compatible routes: `_search`, `_msearch`, `_count`, `_doc`, `_mapping`, `_cat/indices` and the root,
answered in Elasticsearch's shapes so that its official clients (and opensearch-py) work unmodified."""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import replace

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from ...constants import MAX_K
from ...errors import IndexNotFound, InputError
from ...retrieval.branches import BranchResult
from ...retrieval.fusion import rrf
from ...search.facets import by_date, date_histogram, value_counts
from ...search.snippets import highlight_all, make_snippet, matched_spans
from . import metrics
from .common import VERSION_HEADER, reply, run, snapshot
from .es_dsl import (
    SOURCE_FIELDS,
    EsError,
    EsSearch,
    HighlightSpec,
    QuerySpec,
    compile_query,
    compile_search,
)
from .served import Snapshot

# What the root reports. The Elasticsearch client checks the product header on its first request; the version
# is the one this subset follows.
ES_VERSION = "9.0.0"
PRODUCT_HEADER = {"X-Elastic-Product": "Elasticsearch"}
ALL_INDICES = ("_all", "*")
SHARDS = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
MAPPING = {
    "title": {"type": "text"},
    "body": {"type": "text"},
    "text": {"type": "text"},  # the catch-all field: title then body
    "url": {"type": "keyword"},
    "source": {"type": "keyword"},
    "lang": {"type": "keyword"},
    "tags": {"type": "keyword"},
    "published_at": {"type": "date"},
}

router = APIRouter(tags=["elasticsearch"])


def error_body(type_: str, reason: str, status: int, **extra) -> dict:
    cause = {"type": type_, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def es_error(error: EsError, headers: dict[str, str] | None = None) -> JSONResponse:
    metrics.ERRORS.labels(error.type).inc()
    return JSONResponse(error_body(error.type, error.reason, error.status), error.status,
                        headers={**PRODUCT_HEADER, **(headers or {})})


def index_not_found(name: str) -> EsError:
    return EsError("index_not_found_exception", f"no such index [{name}]", 404)


def _check_index(request: Request, index: str | None) -> Snapshot:
    served = request.app.state.served
    if index is not None and index not in (served.name, *ALL_INDICES):
        raise index_not_found(index)
    return snapshot(request)


async def _json_body(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise EsError("x_content_parse_exception", f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise EsError("x_content_parse_exception", "request body is nested too deeply to read") from None
    if not isinstance(body, dict):
        raise EsError("x_content_parse_exception", "request body must be a JSON object")
    return body


# -- executing a search -------------------------------------------------------------------------------------


def execute(snap: Snapshot, name: str, search: EsSearch, started: float) -> dict:
    searcher = snap.searcher
    reader = searcher.reader
    mode, explanations = "match_all", {}
    term_ids: set[int] = set()
    if search.rrf is not None:
        mode = "rrf"
        docs, scores, matched, term_ids = _rrf(snap, search)
        page, page_scores = docs[search.from_:search.from_ + search.size], scores[search.from_:search.from_ + search.size]
        if search.explain:
            explanations = {int(d): _rrf_explanation(float(s), search.rrf.rank_constant) for d, s in zip(page, page_scores)}
    elif search.knn is None and (search.query is None or search.query.tree is None):
        allowed = None if search.query is None else search.query.allowed
        matched = np.arange(reader.n_docs) if allowed is None else np.flatnonzero(allowed)
        page = matched[search.from_:search.from_ + search.size]
        page_scores = np.ones(len(page))
        explanations = {int(d): {"value": 1.0, "description": "*:*", "details": []} for d in page}
    else:
        knn = search.knn
        query = search.query or QuerySpec("", None, None, None, False)
        vector = None
        if knn is not None:
            vector = knn.vector if knn.vector is not None else reader.encode_query(knn.text)
        if search.ltr_model is not None:
            mode = "ltr"
        elif knn is None:
            mode = "bm25"
        else:
            mode = "hybrid" if search.query is not None else "dense"
        allowed = query.allowed
        if knn is not None and knn.allowed is not None:
            allowed = knn.allowed if allowed is None else allowed & knn.allowed
        plan = searcher.plan(query.text, mode, vector=vector, tree=query.tree, allowed=allowed,
                             field_boosts=query.field_boosts, best_field=query.best_field)
        ranker = snap.ranker(search.ltr_model) if mode == "ltr" else None
        if mode == "dense":  # knn: the k nearest, then from / size over them
            top = searcher.rank_plan(plan, knn.k, 0, mode)
            window = slice(search.from_, search.from_ + search.size)
            top = replace(top, doc_ords=top.doc_ords[window], scores=top.scores[window], total_matches=len(top.matched))
        elif search.sort_date is not None:
            top = searcher.rank_plan(plan, 0, 0, mode, ranker)
        else:
            top = searcher.rank_plan(plan, search.size, search.from_, mode, ranker)
        matched, page, page_scores = top.matched, top.doc_ords, top.scores
        term_ids = set(top.term_ids)
        if search.explain and search.sort_date is None:
            explanations = {int(d): _es_explanation(float(s), mode, searcher.explain(top, int(d)))
                            for d, s in zip(page, page_scores)}
    metrics.SEARCH_SECONDS.labels(mode).observe(time.perf_counter() - started)
    scored = search.sort_date is None
    if not scored:
        ordered = by_date(reader.metadata, matched, search.sort_date == "desc")
        page = ordered[search.from_:search.from_ + search.size]
    total = len(matched)
    hits = [_hit(snap, name, int(d), float(page_scores[i]) if scored else None, term_ids, search,
                 explanations.get(int(d))) for i, d in enumerate(page)]
    body: dict = {
        "took": int((time.perf_counter() - started) * 1000),
        "timed_out": False,
        "_shards": SHARDS,
        "hits": {"max_score": max((h["_score"] for h in hits), default=None) if scored else None, "hits": hits},
    }
    if search.track_total_hits is not False:
        cap = MAX_K if search.track_total_hits is True else search.track_total_hits
        exact = search.track_total_hits is True or total <= cap
        body["hits"] = {"total": {"value": total if exact else cap, "relation": "eq" if exact else "gte"},
                        **body["hits"]}
    if search.aggs:
        body["aggregations"] = _aggregations(snap, matched, search)
    return body


def _rrf(snap: Snapshot, search: EsSearch) -> tuple[np.ndarray, np.ndarray, np.ndarray, set[int]]:
    """Reciprocal rank fusion of a standard (BM25) and a knn retriever, each to its window."""
    searcher, spec = snap.searcher, search.rrf
    reader = searcher.reader
    branches: dict[str, BranchResult] = {}
    term_ids: set[int] = set()
    standard = spec.standard
    if standard.tree is None:
        docs = np.arange(reader.n_docs) if standard.allowed is None else np.flatnonzero(standard.allowed)
        branches["standard"] = BranchResult("standard", docs[:spec.rank_window_size], np.ones(min(len(docs),
                                                                                                   spec.rank_window_size)))
    else:
        plan = searcher.plan(standard.text, "bm25", tree=standard.tree, allowed=standard.allowed,
                             field_boosts=standard.field_boosts, best_field=standard.best_field)
        top = searcher.rank_plan(plan, spec.rank_window_size, 0, "bm25")
        branches["standard"] = BranchResult("standard", top.doc_ords, top.scores)
        term_ids = set(top.term_ids)
    knn = spec.knn
    vector = knn.vector if knn.vector is not None else reader.encode_query(knn.text)
    docs, cosines = reader.dense.rank(vector, min(knn.k, spec.rank_window_size), knn.allowed)
    branches["knn"] = BranchResult("knn", docs, cosines)
    fused_docs, fused = rrf(branches, spec.rank_constant)
    return fused_docs, fused, fused_docs, term_ids


def _rrf_explanation(score: float, rank_constant: int) -> dict:
    return {"value": score, "description": f"rrf score: sum of 1 / ({rank_constant} + rank) over the retrievers",
            "details": []}


def _es_explanation(score: float, mode: str, explanation: dict) -> dict:
    """The engine's explanation in Elasticsearch's shape: value, description, details."""
    return {"value": score, "description": f"sousuo {mode} score", "details": _details(explanation)}


def _details(value) -> list[dict]:
    out = []
    for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
        if isinstance(item, bool) or item is None or isinstance(item, str):
            out.append({"value": 0.0, "description": f"{key}: {item}", "details": []})
        elif isinstance(item, int | float):
            out.append({"value": float(item), "description": str(key), "details": []})
        else:
            out.append({"value": 0.0, "description": str(key), "details": _details(item)})
    return out


def source_of(snap: Snapshot, doc_ord: int, fields: tuple[list[str], list[str]] | bool = True) -> dict | None:
    if fields is False:
        return None
    row = snap.searcher.reader.metadata.row(doc_ord)
    source = {key: row[key] for key in SOURCE_FIELDS}
    if source["published_at"] is not None:
        source["published_at"] = source["published_at"].isoformat()
    if fields is True:
        return source
    includes, excludes = fields
    return {key: value for key, value in source.items()
            if (not includes or any(fnmatch.fnmatchcase(key, p) for p in includes))
            and not any(fnmatch.fnmatchcase(key, p) for p in excludes)}


def _hit(snap: Snapshot, name: str, doc_ord: int, score: float | None, term_ids: set[int], search: EsSearch,
         explanation: dict | None) -> dict:
    reader = snap.searcher.reader
    hit: dict = {"_index": name, "_id": reader.doc_ids[doc_ord], "_score": score}
    source = source_of(snap, doc_ord, search.source)
    if source is not None:
        hit["_source"] = source
    if search.highlight is not None and term_ids:
        marked = _highlight(snap, doc_ord, term_ids, search.highlight)
        if marked:
            hit["highlight"] = marked
    if search.sort_date is not None:
        micros = reader.metadata.published_us[doc_ord]
        hit["sort"] = [int(micros // 1000) if reader.metadata.has_date[doc_ord] else None]
    if search.explain and explanation is not None:
        hit["_explanation"] = explanation
    return hit


def _highlight(snap: Snapshot, doc_ord: int, term_ids: set[int], spec: HighlightSpec) -> dict[str, list[str]]:
    reader = snap.searcher.reader
    out = {}
    for field, options in spec.fields.items():
        spans = matched_spans(reader.forward(field), doc_ord, term_ids)
        if not spans:
            continue
        text = reader.stored_text(field, doc_ord)
        pre = (options.get("pre_tags") or spec.pre_tags)[0]
        post = (options.get("post_tags") or spec.post_tags)[0]
        count = int(options.get("number_of_fragments", spec.number_of_fragments))
        size = int(options.get("fragment_size", spec.fragment_size))
        if count == 0:  # Elasticsearch: the whole field, highlighted
            fragments = [highlight_all(text, spans)]
        else:
            fragments, remaining = [], sorted(spans)
            while remaining and len(fragments) < count:
                fragment = make_snippet(text, remaining, size)
                fragments.append(fragment)
                end = fragment.start + len(fragment.text)
                left = [s for s in remaining if s[1] <= fragment.start or s[0] >= end]
                if len(left) == len(remaining):
                    break
                remaining = left
            fragments.sort(key=lambda f: f.start)
        out[field] = [replace(f, truncated_left=False, truncated_right=False).plain(pre, post) for f in fragments]
    return out


def _aggregations(snap: Snapshot, matched: np.ndarray, search: EsSearch) -> dict:
    metadata = snap.searcher.reader.metadata
    out = {}
    for name, agg in search.aggs.items():
        if agg.kind == "terms":
            counts = value_counts(metadata, matched, agg.field, MAX_K)
            top = counts[:agg.size]
            out[name] = {"doc_count_error_upper_bound": 0,
                         "sum_other_doc_count": sum(c for _, c in counts[agg.size:]),
                         "buckets": [{"key": key, "doc_count": count} for key, count in top]}
        else:
            out[name] = {"buckets": [{"key_as_string": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                                      "key": int(start.timestamp() * 1000), "doc_count": count}
                                     for start, count in date_histogram(metadata, matched, agg.interval)]}
    return out


def search_body(snap: Snapshot, name: str, body: dict, params: dict[str, str]) -> dict:
    started = time.perf_counter()
    try:
        try:
            search = compile_search(snap.searcher.reader, body, params)
        except (TypeError, ValueError) as error:  # a value of the wrong kind somewhere the parser did not check
            raise EsError("parsing_exception", f"malformed search request: {error}") from None
        result = execute(snap, name, search, started)
    except IndexNotFound as error:
        raise EsError("resource_not_found_exception", str(error), 404) from None
    except InputError as error:
        raise EsError("illegal_argument_exception", str(error)) from None
    if params.get("rest_total_hits_as_int") == "true" and "total" in result["hits"]:
        result["hits"]["total"] = result["hits"]["total"]["value"]
    return result


# -- routes -----------------------------------------------------------------------------------------------


@router.get("/", summary="Cluster information, as Elasticsearch answers it")
def root(request: Request) -> JSONResponse:
    served = request.app.state.served
    return JSONResponse({
        "name": "sousuo",
        "cluster_name": "sousuo",
        "cluster_uuid": served.name,
        "version": {"number": ES_VERSION, "build_flavor": "default", "build_type": "sousuo",
                    "lucene_version": "10.0.0", "minimum_wire_compatibility_version": "8.18.0",
                    "minimum_index_compatibility_version": "8.0.0"},
        "tagline": "You Know, for Search",
    }, headers={**PRODUCT_HEADER, VERSION_HEADER: served.current.version})


@router.head("/", include_in_schema=False)
def root_head() -> Response:
    return Response(headers=PRODUCT_HEADER)


async def _search(request: Request, index: str | None) -> JSONResponse:
    snap = _check_index(request, index)
    body = await _json_body(request)
    name = request.app.state.served.name
    params = dict(request.query_params)
    return reply(await run(request, lambda: search_body(snap, name, body, params)), snap, headers=PRODUCT_HEADER)


@router.get("/_search", summary="Search (Elasticsearch query DSL subset)")
@router.post("/_search", summary="Search (Elasticsearch query DSL subset)")
async def search_all(request: Request) -> JSONResponse:
    return await _search(request, None)


@router.get("/{index}/_search", summary="Search (Elasticsearch query DSL subset)")
@router.post("/{index}/_search", summary="Search (Elasticsearch query DSL subset)")
async def search_index(request: Request, index: str) -> JSONResponse:
    return await _search(request, index)


async def _msearch(request: Request, index: str | None) -> JSONResponse:
    started = time.perf_counter()
    snap = _check_index(request, index)
    name = request.app.state.served.name
    lines = [line for line in (await request.body()).splitlines() if line.strip()]
    if len(lines) % 2:
        raise EsError("illegal_argument_exception", "_msearch expects header and body lines in pairs")
    searches = []
    for header_line, body_line in zip(lines[::2], lines[1::2]):
        try:
            header, body = json.loads(header_line), json.loads(body_line)
        except ValueError as error:
            raise EsError("x_content_parse_exception", f"_msearch line is not valid JSON: {error}") from None
        except RecursionError:
            raise EsError("x_content_parse_exception", "_msearch line is nested too deeply to read") from None
        searches.append((header, body))

    def work() -> list[dict]:
        out = []
        for header, body in searches:
            try:
                target = header.get("index", index) if isinstance(header, dict) else index
                target = target[0] if isinstance(target, list) and len(target) == 1 else target
                if target is not None and target not in (name, *ALL_INDICES):
                    raise index_not_found(str(target))
                if not isinstance(body, dict):
                    raise EsError("x_content_parse_exception", "each _msearch body must be a JSON object")
                out.append({**search_body(snap, name, body, {}), "status": 200})
            except EsError as error:
                metrics.ERRORS.labels(error.type).inc()
                out.append(error_body(error.type, error.reason, error.status))
        return out

    responses = await run(request, work)
    return reply({"took": int((time.perf_counter() - started) * 1000), "responses": responses}, snap,
                 headers=PRODUCT_HEADER)


@router.get("/_msearch", summary="Several searches in one request (NDJSON)")
@router.post("/_msearch", summary="Several searches in one request (NDJSON)")
async def msearch_all(request: Request) -> JSONResponse:
    return await _msearch(request, None)


@router.get("/{index}/_msearch", summary="Several searches in one request (NDJSON)")
@router.post("/{index}/_msearch", summary="Several searches in one request (NDJSON)")
async def msearch_index(request: Request, index: str) -> JSONResponse:
    return await _msearch(request, index)


async def _count(request: Request, index: str | None) -> JSONResponse:
    snap = _check_index(request, index)
    body = await _json_body(request)
    for key in body:
        if key != "query":
            raise EsError("parsing_exception", f"request does not support [{key}]")
    params = dict(request.query_params)

    def work() -> dict:
        reader = snap.searcher.reader
        try:
            spec = compile_query(reader, {"query_string": {"query": params["q"]}} if "q" in params else
                                 body.get("query", {"match_all": {}}))
        except (TypeError, ValueError) as error:
            raise EsError("parsing_exception", f"malformed count request: {error}") from None
        if spec.tree is None:
            count = reader.n_docs if spec.allowed is None else int(spec.allowed.sum())
        else:
            plan = snap.searcher.plan(spec.text, "bm25", tree=spec.tree, allowed=spec.allowed,
                                      field_boosts=spec.field_boosts, best_field=spec.best_field)
            count = snap.searcher.rank_plan(plan, 0).total_matches
        return {"count": count, "_shards": SHARDS}

    return reply(await run(request, work), snap, headers=PRODUCT_HEADER)


@router.get("/_count", summary="Count the matches of a query")
@router.post("/_count", summary="Count the matches of a query")
async def count_all(request: Request) -> JSONResponse:
    return await _count(request, None)


@router.get("/{index}/_count", summary="Count the matches of a query")
@router.post("/{index}/_count", summary="Count the matches of a query")
async def count_index(request: Request, index: str) -> JSONResponse:
    return await _count(request, index)


@router.get("/{index}/_doc/{doc_id}", summary="One document by id, as Elasticsearch's get API answers")
def get_doc(request: Request, index: str, doc_id: str) -> JSONResponse:
    snap = _check_index(request, index)
    name = request.app.state.served.name
    doc_ord = snap.doc_ordinal(doc_id)
    if doc_ord is None:
        return reply({"_index": name, "_id": doc_id, "found": False}, snap, 404, PRODUCT_HEADER)
    return reply({"_index": name, "_id": doc_id, "_version": 1, "_seq_no": doc_ord, "_primary_term": 1,
                  "found": True, "_source": source_of(snap, doc_ord)}, snap, headers=PRODUCT_HEADER)


@router.get("/{index}/_mapping", summary="The fields and their types")
def mapping(request: Request, index: str) -> JSONResponse:
    snap = _check_index(request, index)
    return reply({request.app.state.served.name: {"mappings": {"properties": MAPPING}}}, snap, headers=PRODUCT_HEADER)


@router.get("/_cat/indices", summary="The served index, as Elasticsearch's cat API lists indices")
@router.get("/_cat/indices/{index}", include_in_schema=False)
def cat_indices(request: Request, index: str | None = None, format: str | None = None) -> Response:
    snap = _check_index(request, index)
    served = request.app.state.served
    size = sum(p.stat().st_size for p in snap.searcher.reader.version.path.rglob("*") if p.is_file())
    row = {"health": "green", "status": "open", "index": served.name, "uuid": snap.version, "pri": "1", "rep": "0",
           "docs.count": str(snap.doc_count), "docs.deleted": "0", "store.size": f"{size}b",
           "pri.store.size": f"{size}b", "dataset.size": f"{size}b"}
    if format == "json":
        return reply([row], snap, headers=PRODUCT_HEADER)
    return PlainTextResponse(" ".join(row.values()) + "\n", headers={**PRODUCT_HEADER, VERSION_HEADER: snap.version})
