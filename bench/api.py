"""`sousuo api` under load: QPS and latency by workers, concurrency and mode, beside in-process latency of the same
queries, with 10 versions published during one cell. Writes the `api` section of docs/benchmarks.md.

The load generator is a closed-loop asyncio + httpx driver: `concurrency` tasks each send their next request as
soon as the last one answers, until the cell's request budget or time budget is spent. It stands in for locust:
locust would add gevent, which monkey-patches sockets and threads in the process that also publishes versions,
and a headless locust start per cell for 27 cells, where this whole bench must fit in about 10 minutes on a
2-core machine; a bounded driver also makes every cell's request count and duration explicit. The driver runs
in this process and shares the two cores with the server, which the write-up says.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.query import latencies as in_process  # noqa: E402
from bench.report import markdown_table, write_section
from pipeline.config import Settings
from pipeline.errors import SousuoError
from pipeline.eval.beir import BeirDataset
from pipeline.experiment.runs import cached_index, settings_for
from pipeline.index.store import Manifest, current_version, publish, versions_dir
from pipeline.rank.training import train_from_judgments
from pipeline.searcher import Searcher

MODES = ("bm25", "hybrid", "ltr")
CONCURRENCY = (1, 8, 32)
WORKERS = (1, 2, 4)
REQUESTS = {"bm25": 400, "hybrid": 150, "ltr": 150}  # per cell, and at most CELL_SECONDS
CELL_SECONDS = 8.0
PUBLISHES = 10
SWAP_CELL = (2, "bm25", 8)  # workers, mode, concurrency of the cell during which versions are published


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_copy(source: Path, out: Path) -> Path:
    """The cached index hard-linked into bench/out (versions are immutable, so links cost nothing), with the
    published version also linked under PUBLISHES new ids for the swap cell."""
    index = out / "index"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, index, copy_function=os.link)
    version = current_version(index)
    for i in range(PUBLISHES):
        copy = versions_dir(index) / f"{version}-swap{i:02d}"
        shutil.copytree(versions_dir(index) / version, copy, copy_function=os.link,
                        ignore=shutil.ignore_patterns("manifest.json"))
        manifest = Manifest.read(versions_dir(index) / version)
        manifest.version = copy.name
        manifest.write(copy)
    return index


async def drive(url: str, queries: list[str], mode: str, concurrency: int, budget: int,
                keep_going: threading.Event | None = None) -> dict:
    """Closed loop: `concurrency` tasks, `budget` requests or CELL_SECONDS (longer while `keep_going` is set)."""
    latencies: list[float] = []
    errors = 0
    versions: set[str] = set()
    sent = 0
    started = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent, errors
        while True:
            busy = keep_going is not None and keep_going.is_set()
            if not busy and (sent >= budget or time.perf_counter() - started > CELL_SECONDS):
                return
            query = queries[sent % len(queries)]
            sent += 1
            t = time.perf_counter()
            try:
                response = await client.get("/v1/search", params={"q": query, "mode": mode, "k": 10,
                                                                  "syntax": "false"})
                ok = response.status_code == 200
                versions.add(response.headers.get("X-Sousuo-Version", ""))
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - t) * 1000)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    ms = np.asarray(latencies) if latencies else np.zeros(1)
    return {"requests": len(latencies) + errors, "errors": errors, "qps": len(latencies) / wall,
            "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99),
            "versions": len(versions)}


def start_server(index: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "flows.cli", "api", "--index", str(index), "--port", str(port),
                               "--workers", str(workers)], env=env, cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                # Every worker must be up, not just the first: wait until several answers came from warm workers.
                for _ in range(4 * workers):
                    httpx.get(f"{url}/v1/search", params={"q": "warm up", "mode": "ltr"}, timeout=120)
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise TimeoutError("the API did not become ready")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def publisher(index: Path, done: threading.Event) -> None:
    """Publish the PUBLISHES new versions one after another, half a second apart."""
    swaps = sorted(v.name for v in versions_dir(index).iterdir() if "-swap" in v.name)
    for version in swaps:
        publish(index, version)
        time.sleep(0.5)
    time.sleep(1.0)  # let the last swap be served before the cell ends
    done.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    load_before = os.getloadavg()
    bench_started = time.time()

    settings = settings_for("ltr", Settings())
    dataset = BeirDataset.load(ROOT.parent / "shared" / "datasets" / "scifact")
    index = served_copy(cached_index(dataset, settings), ROOT / "bench" / "out" / "api")
    searcher = Searcher.open(index, settings)
    try:
        searcher.ranker  # noqa: B018 (loads and checks the published model)
    except SousuoError:  # none published beside the cached index
        train_from_judgments(searcher.reader, dataset, searcher.fusion_weights, "train")
        searcher = Searcher.open(index, settings)
    queries = list(dataset.queries.values())[: args.queries]
    prepared_s = time.time() - bench_started  # building the cached index on first use, training the ranker
    local = {mode: in_process(searcher, queries, mode) for mode in MODES}
    del searcher

    rows, swap_note = [], ""
    for workers in WORKERS:
        server, url = start_server(index, workers)
        try:
            for mode in MODES:
                for concurrency in CONCURRENCY:
                    swapping = threading.Event()
                    if (workers, mode, concurrency) == SWAP_CELL:
                        swapping.set()
                        threading.Thread(target=publisher, args=(index, swapping), daemon=True).start()
                    cell = asyncio.run(drive(url, queries, mode, concurrency, REQUESTS[mode], swapping))
                    if (workers, mode, concurrency) == SWAP_CELL:
                        swap_note = (f"During the cell with {workers} workers, {mode}, concurrency {concurrency}, "
                                     f"{PUBLISHES} new versions were published half a second apart: "
                                     f"{cell['requests']} requests, {cell['errors']} failed, answers came from "
                                     f"{cell['versions']} distinct versions.")
                    ms = local[mode]
                    rows.append({"workers": workers, "mode": mode, "concurrency": concurrency,
                                 "requests": cell["requests"], "QPS": f"{cell['qps']:.0f}",
                                 "p50 ms": f"{cell['p50']:.1f}", "p95 ms": f"{cell['p95']:.1f}",
                                 "p99 ms": f"{cell['p99']:.1f}", "errors": cell["errors"],
                                 "in-process p50 / p95 / p99 ms": f"{np.percentile(ms, 50):.1f} / "
                                                                  f"{np.percentile(ms, 95):.1f} / "
                                                                  f"{np.percentile(ms, 99):.1f}"})
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            stop_server(server)
    load_after = os.getloadavg()
    overhead = {mode: float(next(r["p50 ms"] for r in rows if r["workers"] == 1 and r["mode"] == mode
                                 and r["concurrency"] == 1)) - np.percentile(local[mode], 50) for mode in MODES}
    write_section(
        "api",
        "make bench-api",
        f"`sousuo api` on SciFact ({len(queries)} queries cycled, top-10 with snippets, `GET /v1/search`), driven "
        "by a closed-loop asyncio + httpx client in the same machine (see `bench/api.py` for why not locust): "
        f"each cell sends up to {REQUESTS['bm25']} (bm25) or {REQUESTS['hybrid']} (hybrid, ltr) requests, at most "
        f"{CELL_SECONDS:.0f} s. In-process latency: the same queries through `Searcher.search` in the bench "
        "process, one at a time, in the same run. The 100k-document synthetic corpus was not part of this run: "
        "`bench/query.py` had not built it under `bench/out/` on this machine, and building it (embedding "
        "~100k passages) does not fit the bench's 10-minute budget.\n\n"
        f"API overhead at p50 (1 worker, concurrency 1, minus in-process p50): "
        + ", ".join(f"{mode} {value:+.1f} ms" for mode, value in overhead.items()) + ".\n\n"
        + swap_note + "\n\n"
        f"Machine load (1-minute average) {load_before[0]:.1f} before and {load_after[0]:.1f} after, on 2 cores "
        "shared with other work; the load generator takes part of the same 2 cores, so QPS cannot grow past "
        f"what 2 cores give and flattens from 2 workers on. Preparing the index and ranker took {prepared_s:.0f} s "
        f"(building the cached index on first use dominates), the measurements {time.time() - bench_started - prepared_s:.0f} s."
        "\n\n"
        + markdown_table(rows),
    )


if __name__ == "__main__":
    main()
