"""`sousuo api` under load, on SciFact and on a 100k-document corpus: QPS and latency by workers, concurrency and
mode, the API's overhead over in-process search measured query by query, and 10 versions published during one cell.
Writes the `api` section of docs/benchmarks.md.

The load generator is locust, headless, one process per cell (bench/locustfile.py): `concurrency` users in a
closed loop send their next search as soon as the last one answers, until the cell's request budget or time
budget is spent, and check every answer (status, and that body and header name the same version). It runs on
the same 2 cores as the server, which the write-up says.

Overhead is paired: each query runs in-process and then through the API (1 worker, one connection kept alive),
alternately, so both see the same machine load; the p50 of the per-query differences is the API's overhead.
"""

from __future__ import annotations

import argparse
import http.client
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
from urllib.parse import urlencode, urlsplit

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.query import large_index, scifact_with_ranker
from bench.report import markdown_table, write_section
from pipeline.config import Settings
from pipeline.experiment.runs import settings_for
from pipeline.index.store import Manifest, current_version, publish, versions_dir
from pipeline.searcher import Searcher

MODES = ("bm25", "hybrid", "ltr")
CONCURRENCY = (1, 8, 32)
WORKERS = (1, 2, 4)
REQUESTS = {"bm25": 400, "hybrid": 150, "ltr": 150}  # per cell, and at most CELL_SECONDS
CELL_SECONDS = 6.0
PUBLISHES = 10
SWAP_CELL = (2, "bm25", 8)  # workers, mode, concurrency of the cell during which versions are published


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_copy(source: Path, out: Path, publishes: bool) -> Path:
    """The index hard-linked into bench/out (versions are immutable, so links cost nothing), with the published
    version also linked under PUBLISHES new ids when the swap cell runs on it."""
    index = out / "index"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, index, copy_function=os.link)
    version = current_version(index)
    for i in range(PUBLISHES if publishes else 0):
        copy = versions_dir(index) / f"{version}-swap{i:02d}"
        shutil.copytree(versions_dir(index) / version, copy, copy_function=os.link,
                        ignore=shutil.ignore_patterns("manifest.json"))
        manifest = Manifest.read(versions_dir(index) / version)
        manifest.version = copy.name
        manifest.write(copy)
    return index


def load_cell(url: str, queries_file: Path, mode: str, concurrency: int, budget: int,
              keep_going: Path | None = None) -> dict:
    """One cell driven by locust, headless, in its own process: `concurrency` users in a closed loop until
    `budget` requests or CELL_SECONDS have passed (longer while `keep_going` exists); see bench/locustfile.py."""
    out = queries_file.with_name(f"cell-{mode}-{concurrency}.json")
    out.unlink(missing_ok=True)
    env = {**os.environ, "SOUSUO_BENCH_QUERIES": str(queries_file), "SOUSUO_BENCH_MODE": mode,
           "SOUSUO_BENCH_REQUESTS": str(budget), "SOUSUO_BENCH_SECONDS": str(CELL_SECONDS),
           "SOUSUO_BENCH_OUT": str(out), "SOUSUO_BENCH_KEEP_GOING": str(keep_going or "/nonexistent")}
    # -t is only a backstop: the locustfile stops the cell itself.
    try:
        subprocess.run([str(Path(sys.executable).with_name("locust")), "-f", str(ROOT / "bench" / "locustfile.py"),
                        "--headless", "--host", url, "-u", str(concurrency), "-r", str(concurrency * 100),
                        "-t", f"{int(CELL_SECONDS * 20)}s", "--only-summary", "--loglevel", "ERROR"],
                       env=env, cwd=ROOT, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=CELL_SECONDS * 20 + 60)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"locust did not stop after the {mode} cell at concurrency {concurrency}") from None
    if not out.is_file():
        raise RuntimeError(f"locust wrote no result for the {mode} cell at concurrency {concurrency}")
    cell = json.loads(out.read_text(encoding="utf-8"))
    ms = np.asarray(cell["latencies_ms"]) if cell["latencies_ms"] else np.zeros(1)
    return {"requests": len(cell["latencies_ms"]) + len(cell["failures"]), "errors": len(cell["failures"]),
            "qps": len(cell["latencies_ms"]) / max(cell["wall_s"], 1e-9), "p50": np.percentile(ms, 50),
            "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99), "versions": len(cell["versions"])}


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


def publisher(index: Path, publishing: Path) -> None:
    """Publish the PUBLISHES new versions one after another, half a second apart; the load goes on while
    `publishing` exists."""
    swaps = sorted(v.name for v in versions_dir(index).iterdir() if "-swap" in v.name)
    for version in swaps:
        publish(index, version)
        time.sleep(0.5)
    time.sleep(1.0)  # let the last swap be served before the cell ends
    publishing.unlink()


def paired_overhead(searcher: Searcher, url: str, queries: list[str], mode: str) -> dict:
    """In-process and API latency of each query, one after the other, and the p50 of their differences.

    The API side is timed with the standard library's keep-alive HTTP client: the figure is what the service
    adds, not what a client library adds on top (httpx costs about half a millisecond more a request here)."""
    local, remote = [], []
    connection = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=60)
    for query in queries:
        started = time.perf_counter()
        searcher.search(query, k=10, mode=mode, syntax=False)
        local.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        connection.request("GET", "/v1/search?" + urlencode({"q": query, "mode": mode, "k": 10, "syntax": "false"}))
        response = connection.getresponse()
        response.read()
        remote.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise RuntimeError(f"the API answered {response.status} to {query!r}")
    connection.close()
    local_ms, remote_ms = np.asarray(local), np.asarray(remote)
    return {"local": local_ms, "overhead p50": float(np.percentile(remote_ms - local_ms, 50)),
            "api p50": float(np.percentile(remote_ms, 50)), "local p50": float(np.percentile(local_ms, 50))}


def round_trip(url: str, path: str = "/healthz", requests: int = 300) -> float:
    """p50 ms of a request that does no work: the floor any route pays on this machine."""
    connection = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=60)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        connection.request("GET", path)
        connection.getresponse().read()
        times.append((time.perf_counter() - started) * 1000)
    connection.close()
    return float(np.percentile(times, 50))


def measure(name: str, source: Path, settings: Settings, queries: list[str], swap: bool) -> tuple[list, dict, str]:
    """Every load cell of one corpus, the paired overhead per mode, and the swap cell's note."""
    index = served_copy(source, ROOT / "bench" / "out" / "api" / name.split()[0].lower(), publishes=swap)
    queries_file = index.parent / "queries.json"
    queries_file.write_text(json.dumps(queries, ensure_ascii=False), encoding="utf-8")
    searcher = Searcher.open(index, settings)
    for mode in MODES:
        searcher.search(queries[0], k=10, mode=mode)  # load the encoder and ranker before timing
    rows, overhead, swap_note = [], {}, ""
    for workers in WORKERS:
        server, url = start_server(index, workers)
        try:
            if workers == 1:
                overhead = {mode: paired_overhead(searcher, url, queries, mode) for mode in MODES}
                overhead["floor"] = round_trip(url)
            for mode in MODES:
                for concurrency in CONCURRENCY:
                    publishing = None
                    if swap and (workers, mode, concurrency) == SWAP_CELL:
                        publishing = queries_file.with_name("publishing")
                        publishing.touch()
                        threading.Thread(target=publisher, args=(index, publishing), daemon=True).start()
                    cell = load_cell(url, queries_file, mode, concurrency, REQUESTS[mode], publishing)
                    if publishing is not None:
                        swap_note = (f"During the cell with {workers} workers, {mode}, concurrency {concurrency}, "
                                     f"{PUBLISHES} new versions were published half a second apart: "
                                     f"{cell['requests']} requests, {cell['errors']} failed, answers came from "
                                     f"{cell['versions']} distinct versions.")
                    ms = overhead[mode]["local"]
                    rows.append({"corpus": name, "workers": workers, "mode": mode, "concurrency": concurrency,
                                 "requests": cell["requests"], "QPS": f"{cell['qps']:.0f}",
                                 "p50 ms": f"{cell['p50']:.1f}", "p95 ms": f"{cell['p95']:.1f}",
                                 "p99 ms": f"{cell['p99']:.1f}", "errors": cell["errors"],
                                 "in-process p50 / p95 / p99 ms": f"{np.percentile(ms, 50):.1f} / "
                                                                  f"{np.percentile(ms, 95):.1f} / "
                                                                  f"{np.percentile(ms, 99):.1f}"})
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            stop_server(server)
    return rows, overhead, swap_note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--copies", type=int, default=20, help="SciFact variants in the large corpus (20 → 103,660)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    bench_started = time.time()

    settings = settings_for("ltr", Settings())
    dataset, small_dir, small = scifact_with_ranker(settings)
    large_dir = large_index(settings, small, args.copies)
    queries = list(dataset.queries.values())[: args.queries]
    prepared_s = time.time() - bench_started  # cached index and large corpus on first use, the ranker

    rows, overheads, notes = [], {}, []
    for name, source, swap in (("SciFact", small_dir, True), (f"SciFact ×{args.copies}", large_dir, False)):
        corpus_rows, overheads[name], note = measure(name, source, settings, queries, swap)
        rows += corpus_rows
        notes += [note] if note else []
    load_after = os.getloadavg()
    sizes = {name: f"{Searcher.open(path, settings).reader.n_docs:,}"
             for name, path in (("SciFact", small_dir), (f"SciFact ×{args.copies}", large_dir))}
    overhead_rows = [{"corpus": name, "documents": sizes[name], "mode": mode,
                      "in-process p50 ms": f"{o['local p50']:.1f}", "API p50 ms": f"{o['api p50']:.1f}",
                      "overhead p50 ms (paired)": f"{o['overhead p50']:+.2f}",
                      "GET /healthz p50 ms": f"{by_mode['floor']:.2f}"}
                     for name, by_mode in overheads.items() for mode, o in by_mode.items() if mode != "floor"]
    write_section(
        "api",
        "make bench-api",
        f"`sousuo api` (uvicorn with uvloop and httptools) on SciFact and on `bench/query.py`'s synthetic corpus "
        f"(SciFact ×{args.copies}: every abstract plus variants with sentences shuffled and words dropped, "
        f"{sizes[f'SciFact ×{args.copies}']} documents; its passage vectors are the originals' MiniLM vectors plus "
        "noise, queries are embedded for real). "
        f"{len(queries)} SciFact queries cycled, top-10 with snippets, `GET /v1/search`, driven by locust "
        "(headless, `bench/locustfile.py`, closed loop, on the same machine): each cell sends up to "
        f"{REQUESTS['bm25']} (bm25) or {REQUESTS['hybrid']} (hybrid, ltr) requests, at most {CELL_SECONDS:.0f} s.\n\n"
        "API overhead, paired: each query through `Searcher.search` in the bench process and then through the API "
        "(1 worker, a kept-alive `http.client` connection), alternately; the overhead is the p50 of the per-query "
        "differences. `GET /healthz`, a route that does no work, is the floor every request pays on this machine "
        "(HTTP parsing and the ASGI stack); searches run on the worker's event loop under a deadline, with no thread hop. "
        "Goal: at most 2 ms.\n\n" + markdown_table(overhead_rows) + "\n\n"
        + " ".join(notes) + "\n\n"
        f"Machine load (1-minute average) {load_before[0]:.1f} before and {load_after[0]:.1f} after, on 2 cores; "
        "the load generator takes part of the same 2 cores, so QPS cannot grow past what 2 cores give. "
        f"Preparing the indexes and ranker took {prepared_s:.0f} s, the measurements "
        f"{time.time() - bench_started - prepared_s:.0f} s.\n\n"
        + markdown_table(rows),
    )


if __name__ == "__main__":
    main()
