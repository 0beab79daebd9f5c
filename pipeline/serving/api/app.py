"""The FastAPI application: routes, the guard (API key, body cap, metrics), error shapes, health and metrics."""

from __future__ import annotations

import hmac
import logging
import re
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ...config import Settings
from ...errors import (
    DeadlineExceeded,
    IndexBusy,
    IndexDamaged,
    IndexNotFound,
    InputError,
    Mismatch,
    SousuoError,
)
from . import es, metrics, native
from .common import VERSION_HEADER
from .es_dsl import EsError
from .served import ServedIndex

log = logging.getLogger("sousuo.api")

OPERATOR_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc")
NATIVE_PREFIX = "/v1"
# Native error statuses: the user's mistakes are 4xx; an index that cannot serve is 503.
STATUS_OF = ((InputError, 400), (IndexNotFound, 404), (Mismatch, 409), (IndexBusy, 503), (IndexDamaged, 503))


def is_es_path(path: str) -> bool:
    return not (path.startswith(NATIVE_PREFIX + "/") or path in OPERATOR_PATHS)


def native_error(type_: str, message: str, status: int, **extra) -> JSONResponse:
    metrics.ERRORS.labels(type_).inc()
    return JSONResponse({"error": {"type": type_, "message": message, **extra}, "status": status}, status)


def _snake(name: str) -> str:
    """IndexNotFound → index_not_found; an acronym stays one word: HTTPException → http_exception."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Guard:
    """Pure ASGI middleware: the API key, the body-size cap, the product header on Elasticsearch routes, and
    request metrics by route template and status."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self.max_body = settings.api.max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        es_route = is_es_path(path)
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        status = {"code": 500}

        async def send_marked(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if es_route and not any(k.lower() == b"x-elastic-product" for k, _ in message.get("headers", [])):
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"x-elastic-product", b"Elasticsearch")]}
            await send(message)

        received = {"bytes": 0}

        async def receive_capped():
            message = await receive()
            received["bytes"] += len(message.get("body", b""))
            if received["bytes"] > self.max_body:
                raise BodyTooLarge
            return message

        try:
            if self.key is not None and not self._authorized(headers):
                response = self._refuse(es_route, 401, "security_exception", "missing or wrong API key (send it in "
                                        "the X-API-Key header or as Authorization: ApiKey KEY)",
                                        {"WWW-Authenticate": 'ApiKey realm="sousuo"'})
            elif _length(headers) > self.max_body:
                response = self._too_large(es_route)
            else:
                try:
                    return await self.app(scope, receive_capped, send_marked)
                except BodyTooLarge:
                    response = self._too_large(es_route)
            await response(scope, receive, send_marked)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.REQUESTS.labels(template, method, str(status["code"])).inc()
            metrics.REQUEST_SECONDS.labels(template).observe(time.perf_counter() - started)

    def _authorized(self, headers: dict[str, bytes]) -> bool:
        offered = headers.get("x-api-key")
        authorization = headers.get("authorization", b"")
        scheme, _, value = authorization.partition(b" ")
        if offered is None and scheme.lower() in (b"apikey", b"bearer"):
            offered = value.strip()
        return offered is not None and hmac.compare_digest(offered, self.key)

    def _too_large(self, es_route: bool) -> Response:
        return self._refuse(es_route, 400, "request_too_large",
                            f"the request body is larger than {self.max_body} bytes (api.max_body_bytes)")

    @staticmethod
    def _refuse(es_route: bool, status: int, type_: str, reason: str, headers: dict | None = None) -> Response:
        metrics.ERRORS.labels(type_).inc()
        body = es.error_body(type_, reason, status) if es_route else \
            {"error": {"type": type_, "message": reason}, "status": status}
        return JSONResponse(body, status, headers=headers)


class BodyTooLarge(Exception):
    pass


def _length(headers: dict[str, bytes]) -> int:
    """The declared body length; an unreadable one counts as too large."""
    try:
        return int(headers.get("content-length", b"0") or 0)
    except ValueError:
        return 1 << 62


def create_app(settings: Settings | None = None, served: ServedIndex | None = None) -> FastAPI:
    """The application over `settings.api.index` (or an already open ServedIndex, as tests and the bench pass)."""
    settings = settings or Settings()
    if served is None:
        if settings.api.index is None:
            raise InputError("no index to serve: give `sousuo api --index DIR` (or SOUSUO_API__INDEX)")
        root = Path(settings.api.index)
        served = ServedIndex(root, settings, settings.api.name or root.resolve().name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        served.start()
        yield
        served.stop()

    app = FastAPI(title="sousuo", summary="Chinese/English search: native JSON API and an Elasticsearch subset",
                  version="1", lifespan=lifespan)
    app.state.served = served

    @app.exception_handler(EsError)
    async def on_es_error(request: Request, error: EsError) -> JSONResponse:
        return es.es_error(error)

    @app.exception_handler(DeadlineExceeded)
    async def on_timeout(request: Request, error: DeadlineExceeded) -> JSONResponse:
        metrics.TIMEOUTS.inc()
        if is_es_path(request.url.path):  # Elasticsearch answers a timeout as a normal, timed-out response
            return JSONResponse({"took": int(settings.api.timeout_s * 1000), "timed_out": True, "_shards": es.SHARDS,
                                 "hits": {"total": {"value": 0, "relation": "gte"}, "max_score": None, "hits": []}},
                                headers={VERSION_HEADER: served.current.version})
        return native_error("timeout", str(error), 504)

    @app.exception_handler(SousuoError)
    async def on_sousuo_error(request: Request, error: SousuoError) -> JSONResponse:
        status = next((code for kind, code in STATUS_OF if isinstance(error, kind)), 500)
        if is_es_path(request.url.path):
            type_ = "resource_not_found_exception" if status == 404 else "illegal_argument_exception"
            return es.es_error(EsError(type_, str(error), status))
        return native_error(_snake(type(error).__name__), str(error), status)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()]
        names = ", ".join(f["field"] for f in fields)
        return native_error("validation_error", f"invalid request: {names}", 400, fields=fields)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, error: HTTPException) -> JSONResponse:
        if is_es_path(request.url.path):
            refusal = es.no_handler(request)
            if error.status_code not in (404, 405):
                refusal.status = error.status_code
            return es.es_error(refusal)
        return native_error(_snake(type(error).__name__), str(error.detail), error.status_code)

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    @app.head("/healthz", include_in_schema=False)
    async def healthz() -> dict:  # async: a sync route would pay a thread hop to say "ok"
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="A version is open and warm")
    @app.head("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        snap = served.current
        return JSONResponse({"status": "ready", "index": served.name, "version": snap.version,
                             "documents": snap.doc_count, "ranker": snap.ranker_id},
                            headers={VERSION_HEADER: snap.version})

    @app.get("/metrics", tags=["operations"], summary="Prometheus text format")
    def prometheus() -> Response:
        payload, content_type = metrics.exposition()
        return Response(payload, media_type=content_type)

    app.include_router(native.router)
    app.include_router(es.router)
    app.add_middleware(Guard, settings=settings)
    if settings.api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization", "X-API-Key"])
    return app


def app_from_environment() -> FastAPI:
    """The factory uvicorn's workers call (`--workers N` imports the app in each process): Settings() reads the
    index, name and caps from the SOUSUO_API__* variables that `sousuo api` sets."""
    return create_app(Settings())
