"""What the native and Elasticsearch routes share: the served index, the per-request deadline, the version header."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cache
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from ...deadline import deadline
from ...errors import DeadlineExceeded
from .served import ServedIndex, Snapshot

VERSION_HEADER = "X-Sousuo-Version"  # the version that answered: a response never mixes two

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def served(request: Request) -> ServedIndex:
    return request.app.state.served


def snapshot(request: Request) -> Snapshot:
    """The snapshot this request runs on, taken once at its start."""
    return served(request).current


async def run(request: Request, work: Callable[[], T], offload: bool = False) -> T:
    """Run request work bounded by api.timeout_s: past it, a search stops with DeadlineExceeded at its next stage
    boundary (`pipeline/deadline.py`), which answers as timed out.

    Searches run on the event loop: handing the work to a thread and its result back cost 0.4–0.8 ms a request
    here, most of what the API added to a search, while a search holds the GIL for most of its work, so a thread
    bought little concurrency; more workers (`--workers`) are how the API uses more cores. The price: a stage
    (one recall branch, the ranker's prediction) is not interrupted, so the worker is busy until it ends.
    `offload` runs work that has no stage boundaries to check (completion, did-you-mean, similar documents) on a
    thread instead, where the timeout answers on time whatever the work does."""
    timeout = served(request).settings.api.timeout_s
    with deadline(timeout):
        if not offload:
            return work()
        try:  # the thread sees the deadline too: asyncio.to_thread copies the context
            return await asyncio.wait_for(asyncio.to_thread(work), timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"the request took longer than {timeout} s (api.timeout_s)") from None


class FastJSONResponse(JSONResponse):
    """JSON by orjson: several times faster than the standard encoder on a page of hits, which is most of what a
    search response costs to write. Non-finite floats become null, as JSON requires."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def reply(body: object, snap: Snapshot, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return FastJSONResponse(body, status, headers={VERSION_HEADER: snap.version, **(headers or {})})


def query_model(request: Request, model: type[M]) -> M:
    """The query string validated as `model` in one pydantic call.

    FastAPI's own query-model dependency walks every field's annotation on every request, which cost about a
    millisecond per search; this reads repeated parameters (`?tag=a&tag=b`) into list fields and reports errors
    the way FastAPI does (`query.k`), so the 400 still names the field."""
    params = request.query_params
    repeatable = _repeatable_fields(model)
    values = {name: params.getlist(name) if name in repeatable else params[name]
              for name in model.model_fields if name in params}
    values.update({name: params[name] for name in params if name not in model.model_fields})  # refused by name
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in error.errors()]) from None


@cache
def _repeatable_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, field in model.model_fields.items() if _repeatable(field.annotation))


def _repeatable(annotation) -> bool:
    """A list, tuple or set field, optional or not: its query parameter may repeat (`?tag=a&tag=b`)."""
    if get_origin(annotation) in (list, tuple, set, frozenset):
        return True
    return get_origin(annotation) in (Union, UnionType) and any(_repeatable(a) for a in get_args(annotation))


def query_parameters(model: type[BaseModel]) -> dict:
    """The OpenAPI description of `model` as query parameters, for routes that parse with `query_model`."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return {"parameters": [{"name": name, "in": "query", "required": name in required, "schema": spec,
                            **({"description": spec["description"]} if "description" in spec else {})}
                           for name, spec in schema["properties"].items()]}
