"""Prometheus metrics of the API: requests by route and status, latency by route and by search mode, errors,
and the served version; summed over worker processes when PROMETHEUS_MULTIPROC_DIR is set."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Milliseconds matter here: the service's own overhead is a couple of them.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("sousuo_api_requests_total", "HTTP requests by route template, method and status",
                   ["route", "method", "status"])
REQUEST_SECONDS = Histogram("sousuo_api_request_seconds", "HTTP request latency by route template", ["route"],
                            buckets=LATENCY_BUCKETS)
SEARCH_SECONDS = Histogram("sousuo_api_search_seconds", "Search latency by search mode, native and Elasticsearch",
                           ["mode"], buckets=LATENCY_BUCKETS)
ERRORS = Counter("sousuo_api_errors_total", "Requests answered with an error, by error type", ["type"])
TIMEOUTS = Counter("sousuo_api_timeouts_total", "Searches cut off at api.timeout_s")
SERVED_VERSION = Gauge("sousuo_api_served_version", "1 for the index version this process serves, 0 for those it "
                       "served before", ["version"], multiprocess_mode="liveall")
SERVED_DOCUMENTS = Gauge("sousuo_api_served_documents", "Documents in the served version",
                         multiprocess_mode="livemax")
SWAPS = Counter("sousuo_api_version_swaps_total", "Published versions or rankers swapped in without a restart")


def served(version: str, previous: str | None, documents: int) -> None:
    if previous is not None and previous != version:
        SERVED_VERSION.labels(previous).set(0)
    SERVED_VERSION.labels(version).set(1)
    SERVED_DOCUMENTS.set(documents)


def exposition() -> tuple[bytes, str]:
    """The text exposition format: this process's metrics, or every worker's in multi-process mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
