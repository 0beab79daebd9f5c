"""The locust user `bench/api.py` loads `sousuo api` with: closed-loop searches, bounded, every answer checked.

Run by bench/api.py as `locust --headless -f bench/locustfile.py`, one process per cell; it reads the cell from
SOUSUO_BENCH_* variables and writes each request's latency, the failures and the versions that answered to
SOUSUO_BENCH_OUT as JSON when it quits. Latencies are kept here at full precision: locust's own statistics round
times under 100 ms to whole milliseconds, too coarse for a 5 ms search.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import gevent
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser

QUERIES: list[str] = json.loads(Path(os.environ["SOUSUO_BENCH_QUERIES"]).read_text(encoding="utf-8"))
MODE = os.environ["SOUSUO_BENCH_MODE"]
BUDGET = int(os.environ["SOUSUO_BENCH_REQUESTS"])  # requests in the cell ...
SECONDS = float(os.environ["SOUSUO_BENCH_SECONDS"])  # ... or seconds, whichever ends first
# While this file exists (versions are being published) the cell goes on past both bounds.
KEEP_GOING = Path(os.environ.get("SOUSUO_BENCH_KEEP_GOING", "/nonexistent"))

_sent = itertools.count()
_started = time.perf_counter()
_window = {"first": 0.0, "last": 0.0}
_stopping = []  # the first search sent and the last answered: the wall time of QPS
_latencies: list[float] = []
_failures: list[str] = []
_versions: set[str] = set()


class Searcher(FastHttpUser):
    wait_time = constant(0)  # closed loop: each user sends its next search as soon as the last one answers

    @task
    def search(self) -> None:
        n = next(_sent)
        if (n >= BUDGET or time.perf_counter() - _started > SECONDS) and not KEEP_GOING.exists():
            if not _stopping:  # one greenlet of its own stops the run: a user that stops every user hangs locust
                _stopping.append(gevent.spawn(self.environment.runner.quit))
            raise StopUser()
        if n == 0:
            _window["first"] = time.perf_counter()
        params = {"q": QUERIES[n % len(QUERIES)], "mode": MODE, "k": "10", "syntax": "false"}
        with self.client.get("/v1/search", params=params, name=MODE, catch_response=True) as response:
            header = response.headers.get("X-Sousuo-Version") if response.headers else None
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            elif response.json().get("version") != header:  # a response must never mix two versions
                response.failure(f"body version {response.json().get('version')} under header {header}")
            else:
                _versions.add(header)


@events.request.add_listener
def _record(response_time: float, exception: BaseException | None, **_) -> None:
    _window["last"] = time.perf_counter()
    if exception is None:
        _latencies.append(response_time)
    else:
        _failures.append(str(exception)[:200])


@events.quitting.add_listener
def _write(environment, **_) -> None:
    Path(os.environ["SOUSUO_BENCH_OUT"]).write_text(json.dumps({
        "latencies_ms": _latencies, "failures": _failures, "versions": sorted(_versions),
        "wall_s": _window["last"] - _window["first"]}), encoding="utf-8")
