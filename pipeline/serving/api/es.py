"""Elasticsearch-compatible routes: `_search` (with scrolls), `_msearch`, `_count`, `_doc`, `_mget`, the index, its
`_mapping`, `_cat/indices`, `_cluster/health` and the root, answered in Elasticsearch's shapes so that its official
clients (and opensearch-py) work unmodified. Writes are refused as on a read-only index."""

from __future__ import annotations

import base64
import binascii
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
    OPTIONAL_SOURCE_FIELDS,
    SOURCE_FIELDS,
    EsError,
    EsSearch,
    HighlightSpec,
    QuerySpec,
    compile_query,
    compile_search,
    integer_value,
    json_object,
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
    "region": {"type": "keyword"},  # optional: a term filter on it keeps the documents of that region
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


def parse_json(raw: bytes | str, what: str):
    """JSON from a client, or a 400 naming `what`: nesting deep enough to exhaust the parser's stack is refused
    like any other malformed input."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise EsError("x_content_parse_exception", f"{what} is not valid JSON: {str(error)[:200]}") from None


async def _json_body(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = parse_json(raw, "request body")
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
        elif not search.scored:
            top = searcher.rank_plan(plan, 0, 0, mode, ranker)
        else:
            top = searcher.rank_plan(plan, search.size, search.from_, mode, ranker)
        matched, page, page_scores = top.matched, top.doc_ords, top.scores
        term_ids = set(top.term_ids)
        if search.explain and search.scored:
            explanations = {int(d): _es_explanation(float(s), mode, searcher.explain(top, int(d)))
                            for d, s in zip(page, page_scores)}
    metrics.SEARCH_SECONDS.labels(mode).observe(time.perf_counter() - started)
    scored = search.scored
    if not scored:
        ordered = np.sort(matched) if search.sort_doc else by_date(reader.metadata, matched, search.sort_date == "desc")
        start = search.from_ if search.search_after is None else _position_after(reader.metadata, ordered, search)
        page = ordered[start:start + search.size]
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


def _position_after(metadata, ordered: np.ndarray, search: EsSearch) -> int:
    """Where the page after `search_after` starts in `ordered`: at the first document whose sort values (the keys
    `by_date` or index order sort by) come after those given."""
    if search.sort_doc:
        return int(np.searchsorted(ordered, search.search_after[0], side="right"))
    millis, doc = (*search.search_after, np.iinfo(np.int64).max)[:2]  # without an ordinal: after every tie
    sign = -1 if search.sort_date == "desc" else 1
    undated, key = ~metadata.has_date[ordered], sign * (metadata.published_us[ordered] // 1000)
    after_undated, after_key = millis is None, 0 if millis is None else sign * millis
    later = (undated > after_undated) | ((undated == after_undated)
                                         & ((key > after_key) | ((key == after_key) & (ordered > doc))))
    return int(np.argmax(later)) if later.any() else len(ordered)


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
    source.update({key: row[key] for key in OPTIONAL_SOURCE_FIELDS if row.get(key) is not None})
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
        if search.tiebreak:  # in a point in time the ordinal breaks ties, as Elasticsearch's _shard_doc does
            hit["sort"].append(doc_ord)
    elif search.sort_doc:
        hit["sort"] = [doc_ord]
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


def search_body(snap: Snapshot, name: str, body: dict, params: dict[str, str], scroll: bool = False,
                in_pit: bool = False) -> dict:
    started = time.perf_counter()
    try:
        try:
            search = compile_search(snap.searcher.reader, body, params, scroll, in_pit)
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
    if "pit" in body:
        if index is not None:
            raise EsError("action_request_validation_exception",
                          "Validation Failed: 1: [indices] cannot be used with point in time;")
        if "scroll" in params:
            raise EsError("action_request_validation_exception",
                          "Validation Failed: 1: using [point in time] is not allowed in a scroll context;")
        pit = json_object(body.pop("pit"), "pit")
        version = read_token(pit.get("id"), "point in time id").get("version")
        if version != snap.version:
            raise missing_context("point in time", version, snap.version)
        result = await run(request, lambda: search_body(snap, name, body, params, in_pit=True))
        return reply({"pit_id": pit["id"], **result}, snap, headers=PRODUCT_HEADER)
    if "scroll" in params:
        if "search_after" in body:
            raise EsError("action_request_validation_exception",
                          "Validation Failed: 1: [search_after] cannot be used in a scroll context;")
        params.pop("scroll")
        offset = integer_value(params.pop("from", body.pop("from", 0)), "from")
        return reply(await run(request, lambda: scroll_page(snap, name, body, params, offset)), snap,
                     headers=PRODUCT_HEADER)
    return reply(await run(request, lambda: search_body(snap, name, body, params)), snap, headers=PRODUCT_HEADER)


# -- scrolling --------------------------------------------------------------------------------------------------
# A scroll keeps no state on the server: its id carries the search, the version it reads and where its next page
# starts. A version never changes, so replaying the search on it pages through one fixed order, in any worker.
# Once another version is served the scroll's context is gone, as an expired one is in Elasticsearch.


def token(state: dict) -> str:
    """A scroll or point-in-time id: the state it stands for, as URL-safe base64 JSON."""
    text = json.dumps(state, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def read_token(value, what: str) -> dict:
    """The state of an id `token` wrote; a 400 naming `what` for anything else."""
    try:
        state = parse_json(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), what)
        if isinstance(state, dict):
            return state
    except (TypeError, ValueError, binascii.Error, EsError):
        pass
    raise EsError("illegal_argument_exception", f"Cannot parse {what}")


def scroll_id(version: str, body: dict, params: dict[str, str], offset: int) -> str:
    # Aggregations answer the first page only, as in Elasticsearch: the pages after it do not compute them again.
    body = {key: value for key, value in body.items() if key not in ("aggs", "aggregations")}
    return token({"version": version, "body": body, "params": params, "offset": offset})


def read_scroll_id(value) -> tuple[str, dict, dict[str, str], int]:
    """(version, search body, URL parameters, offset) of a scroll id."""
    state = read_token(value, "scroll id")
    version, body, params, offset = (state.get(key) for key in ("version", "body", "params", "offset"))
    if isinstance(version, str) and isinstance(body, dict) and isinstance(params, dict) \
            and all(isinstance(v, str) for v in params.values()) and type(offset) is int and offset >= 0:
        return version, body, params, offset
    raise EsError("illegal_argument_exception", "Cannot parse scroll id")


def missing_context(kind: str, version: str | None, served: str) -> EsError:
    return EsError("search_context_missing_exception",
                   f"No search context found: the {kind} reads version {version}, and {served} is served now; "
                   f"start a new {kind}", 404)


# A point in time is a version: immutable, so it holds nothing to keep alive or free.
@router.post("/{index}/_pit", summary="Open a point in time: the version served now")
def open_point_in_time(request: Request, index: str) -> JSONResponse:
    snap = _check_index(request, index)
    return reply({"id": token({"version": snap.version})}, snap, headers=PRODUCT_HEADER)


@router.delete("/_pit", summary="Close a point in time (it holds nothing here)")
async def close_point_in_time(request: Request) -> JSONResponse:
    read_token((await _json_body(request)).get("id"), "point in time id")
    return JSONResponse({"succeeded": True, "num_freed": 1}, headers=PRODUCT_HEADER)


def scroll_page(snap: Snapshot, name: str, body: dict, params: dict[str, str], offset: int) -> dict:
    """One page of a scroll from `offset`, with the id of the next."""
    result = search_body(snap, name, body, {**params, "from": str(offset)}, scroll=True)
    following = offset + len(result["hits"]["hits"])
    return {"_scroll_id": scroll_id(snap.version, body, params, following), **result}


def _scroll_id_of(request: Request, path_id: str | None, body: dict) -> str:
    value = path_id or body.get("scroll_id") or request.query_params.get("scroll_id")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value:
        raise EsError("action_request_validation_exception", "Validation Failed: 1: scrollId is missing;")
    return value


@router.get("/_search/scroll", summary="The next page of a scroll")
@router.post("/_search/scroll", summary="The next page of a scroll")
@router.get("/_search/scroll/{path_id}", include_in_schema=False)
@router.post("/_search/scroll/{path_id}", include_in_schema=False)
async def scroll(request: Request, path_id: str | None = None) -> JSONResponse:
    version, body, params, offset = read_scroll_id(_scroll_id_of(request, path_id, await _json_body(request)))
    snap = snapshot(request)
    if version != snap.version:
        raise missing_context("scroll", version, snap.version)
    name = request.app.state.served.name
    return reply(await run(request, lambda: scroll_page(snap, name, body, params, offset)), snap,
                 headers=PRODUCT_HEADER)


@router.delete("/_search/scroll", summary="Clear scrolls (they hold nothing here)")
@router.delete("/_search/scroll/{path_id}", include_in_schema=False)
async def clear_scroll(request: Request, path_id: str | None = None) -> JSONResponse:
    body = await _json_body(request)
    ids = path_id.split(",") if path_id else body.get("scroll_id", [])
    return JSONResponse({"succeeded": True, "num_freed": len(ids) if isinstance(ids, list) else 1},
                        headers=PRODUCT_HEADER)


def in_every_scope(path: str, summary: str, handler) -> None:
    """Route GET and POST of `/{path}` (every index) and `/{index}/{path}` to `handler(request, index or None)`."""

    async def every_index(request: Request) -> JSONResponse:
        return await handler(request, None)

    async def one_index(request: Request, index: str) -> JSONResponse:
        return await handler(request, index)

    for scope, route, endpoint in (("all", f"/{path}", every_index), ("index", f"/{{index}}/{path}", one_index)):
        for method in ("GET", "POST"):
            router.add_api_route(route, endpoint, methods=[method], summary=summary,
                                 operation_id=f"{method.lower()}{path}_{scope}")


in_every_scope("_search", "Search (Elasticsearch query DSL subset)", _search)


async def _msearch(request: Request, index: str | None) -> JSONResponse:
    started = time.perf_counter()
    snap = _check_index(request, index)
    name = request.app.state.served.name
    lines = [line for line in (await request.body()).splitlines() if line.strip()]
    if len(lines) % 2:
        raise EsError("illegal_argument_exception", "_msearch expects header and body lines in pairs")
    searches = []
    for header_line, body_line in zip(lines[::2], lines[1::2]):
        searches.append((parse_json(header_line, "an _msearch line"), parse_json(body_line, "an _msearch line")))

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


in_every_scope("_msearch", "Several searches in one request (NDJSON)", _msearch)


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


in_every_scope("_count", "Count the matches of a query", _count)


def document(snap: Snapshot, name: str, doc_id: str) -> dict:
    """One document as the get API answers it; `found` false when the version does not hold it."""
    doc_ord = snap.doc_ordinal(doc_id)
    if doc_ord is None:
        return {"_index": name, "_id": doc_id, "found": False}
    return {"_index": name, "_id": doc_id, "_version": 1, "_seq_no": doc_ord, "_primary_term": 1,
            "found": True, "_source": source_of(snap, doc_ord)}


@router.get("/{index}/_doc/{doc_id}", summary="One document by id, as Elasticsearch's get API answers")
def get_doc(request: Request, index: str, doc_id: str) -> JSONResponse:
    snap = _check_index(request, index)
    found = document(snap, request.app.state.served.name, doc_id)
    return reply(found, snap, 200 if found["found"] else 404, PRODUCT_HEADER)


@router.head("/{index}/_doc/{doc_id}", include_in_schema=False)
def doc_exists(request: Request, index: str, doc_id: str) -> Response:
    snap = _check_index(request, index)
    return Response(status_code=200 if snap.doc_ordinal(doc_id) is not None else 404,
                    headers={**PRODUCT_HEADER, VERSION_HEADER: snap.version})


async def _mget(request: Request, index: str | None) -> JSONResponse:
    snap = _check_index(request, index)
    body = await _json_body(request)
    name = request.app.state.served.name
    if isinstance(body.get("ids"), list):
        wanted = [{"_id": doc_id} for doc_id in body["ids"]]
    elif isinstance(body.get("docs"), list):
        wanted = body["docs"]
    else:
        raise EsError("action_request_validation_exception", "Validation Failed: 1: no documents to get;")
    if len(wanted) > MAX_K:
        raise EsError("illegal_argument_exception", f"_mget takes at most {MAX_K} documents, got {len(wanted)}")
    docs = []
    for number, entry in enumerate(wanted):
        if not isinstance(entry, dict) or not isinstance(entry.get("_id"), str | int) or isinstance(entry["_id"], bool):
            raise EsError("action_request_validation_exception", f"Validation Failed: 1: id is missing for doc {number};")
        target = entry.get("_index", index)
        if target is None:
            raise EsError("action_request_validation_exception",
                          f"Validation Failed: 1: index is missing for doc {number};")
        if target not in (name, *ALL_INDICES):
            missing = index_not_found(str(target))
            docs.append({"_index": str(target), "_id": str(entry["_id"]),
                         "error": error_body(missing.type, missing.reason, missing.status)["error"]})
        else:
            docs.append(document(snap, name, str(entry["_id"])))
    return reply({"docs": docs}, snap, headers=PRODUCT_HEADER)


in_every_scope("_mget", "Several documents by id", _mget)


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


@router.get("/_cluster/health", summary="Green: the one index is open and served")
@router.get("/_cluster/health/{index}", include_in_schema=False)
def cluster_health(request: Request, index: str | None = None) -> JSONResponse:
    snap = _check_index(request, index)
    return reply({"cluster_name": "sousuo", "status": "green", "timed_out": False, "number_of_nodes": 1,
                  "number_of_data_nodes": 1, "active_primary_shards": 1, "active_shards": 1, "relocating_shards": 0,
                  "initializing_shards": 0, "unassigned_shards": 0, "delayed_unassigned_shards": 0,
                  "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
                  "active_shards_percent_as_number": 100.0}, snap, headers=PRODUCT_HEADER)


def no_handler(request: Request) -> EsError:
    return EsError("illegal_argument_exception",
                   f"no handler found for uri [{request.url.path}] and method [{request.method}]")


def _index_path(request: Request, index: str) -> None:
    """Refuse a `/{index}` route for an API name (`_stats`, `_nodes` …): only indices are matched there."""
    if index.startswith("_") and index not in ALL_INDICES:
        raise no_handler(request)


@router.get("/{index}", summary="The index: its mappings and settings")
def get_index(request: Request, index: str) -> JSONResponse:
    _index_path(request, index)
    snap = _check_index(request, index)
    name = request.app.state.served.name
    settings = {"index": {"number_of_shards": "1", "number_of_replicas": "0", "uuid": snap.version,
                          "provided_name": name, "max_result_window": str(MAX_K), "blocks": {"write": "true"}}}
    return reply({name: {"aliases": {}, "mappings": {"properties": MAPPING}, "settings": settings}}, snap,
                 headers=PRODUCT_HEADER)


@router.head("/{index}", include_in_schema=False)
def index_exists(request: Request, index: str) -> Response:
    served = request.app.state.served
    status = 200 if index in (served.name, *ALL_INDICES) else 400 if index.startswith("_") else 404
    return Response(status_code=status, headers=PRODUCT_HEADER)


def read_only(request: Request) -> JSONResponse:  # never returns: every write is refused
    _index_path(request, request.path_params.get("index", ""))
    raise EsError("cluster_block_exception",
                  f"index [{request.app.state.served.name}] blocked by: [FORBIDDEN/8/index write (api)]: sousuo serves "
                  "immutable index versions; add, change or delete documents with `sousuo update --corpus ... "
                  "--index ...`", 403)


# Registered last, so that no read route of the same path and method is shadowed by them; `/{index}` last of all,
# so that it does not take `/_bulk` for an index.
for _path, _methods in (("/_bulk", ["PUT", "POST"]), ("/{index}/_doc", ["POST"]),
                        ("/{index}/_doc/{doc_id}", ["PUT", "POST", "DELETE"]),
                        ("/{index}/_create/{doc_id}", ["PUT", "POST"]), ("/{index}/_update/{doc_id}", ["POST"]),
                        ("/{index}/_bulk", ["PUT", "POST"]), ("/{index}/_delete_by_query", ["POST"]),
                        ("/{index}/_update_by_query", ["POST"]), ("/{index}", ["PUT", "DELETE"])):
    router.add_api_route(_path, read_only, methods=_methods, include_in_schema=False)
