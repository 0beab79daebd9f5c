"""What the native and Elasticsearch routes share: the served index, the per-request timeout, the version header."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from .served import ServedIndex, Snapshot

VERSION_HEADER = "X-Sousuo-Version"  # the version that answered: a response never mixes two

T = TypeVar("T")


class SearchTimeout(Exception):
    """A request ran past api.timeout_s; the worker answers now and the search thread's result is dropped."""


def served(request: Request) -> ServedIndex:
    return request.app.state.served


def snapshot(request: Request) -> Snapshot:
    """The snapshot this request runs on, taken once at its start."""
    return served(request).current


async def run(request: Request, work: Callable[[], T]) -> T:
    """Run blocking search work off the event loop, bounded by api.timeout_s, so no request hangs a worker."""
    timeout = served(request).settings.api.timeout_s
    try:
        return await asyncio.wait_for(asyncio.to_thread(work), timeout)
    except TimeoutError:
        raise SearchTimeout(f"the request took longer than {timeout} s (api.timeout_s)") from None


def reply(body: object, snap: Snapshot, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status, headers={VERSION_HEADER: snap.version, **(headers or {})})
