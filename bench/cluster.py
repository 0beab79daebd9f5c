"""Sharded serving on Ray Serve against the single index, on the sample corpus: start-up and per-query latency.

The sample index (72 documents, multilingual E5 vectors, a ranker trained on the sample's judged queries) is
partitioned into 2 shards and served by a local Ray cluster on 127.0.0.1 (`pipeline.cluster.serve`). Each of the
sample's 24 queries is ranked (top 10, no result rows) 5 times in mode bm25, and the first 8 once in the modes that
encode the query (multilingual E5 takes from a fraction of a second to a second a query on this loaded machine, in
every way alike), after one untimed pass: by the single index's Searcher, by the coordinator with both shards in
this process (the merge's own cost, with an asyncio event loop started per query), and through the Ray Serve
coordinator deployment's handle (the fan-out's cost). Every answer is checked against the single
index's: the same ids, scores within 1e-6.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from bench.report import markdown_table, write_section
from pipeline.cluster.coordinator import Coordinator, local_call
from pipeline.cluster.partition import partition
from pipeline.cluster.shard import Shard
from pipeline.config import Settings
from pipeline.eval.beir import BeirDataset
from pipeline.index.build import build_index
from pipeline.rank.training import plan_queries, train_ranker, training_set
from pipeline.retrieval.weights import FusionWeights
from pipeline.searcher import Searcher

SAMPLE = ROOT / "data" / "sample"
MODES = ("bm25", "dense", "hybrid", "ltr")


def timed(rank, queries: list[str], repeats: int, expected: dict | None = None) -> list[float]:
    """Milliseconds per call; with `expected`, every answer must equal the single index's."""
    for query in queries:
        rank(query)
    times = []
    for _ in range(repeats):
        for query in queries:
            started = time.perf_counter()
            docs, scores = rank(query)
            times.append((time.perf_counter() - started) * 1000)
            if expected is not None:
                want_docs, want_scores = expected[query]
                assert docs.tolist() == want_docs.tolist(), query
                np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the queries in mode bm25")
    parser.add_argument("--encoded-queries", type=int, default=8,
                        help="queries timed once each in the modes that encode the query (a second each here)")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    import ray
    from ray import serve

    from pipeline.cluster.serve import application

    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        build_index([SAMPLE], work / "index", settings)
        single = Searcher.open(work / "index", settings)
        dataset = BeirDataset.load(SAMPLE)
        weights = FusionWeights(settings.fusion.method, settings.fusion.weights)
        training = training_set(single.reader, plan_queries(single.reader, dataset.queries), dataset.qrels("test"),
                                weights)
        train_ranker(single.reader, training, "sample/test").save(work / "index" / "rankers")
        started = time.perf_counter()
        layout = partition(work / "index", work / "cluster", 2, settings)
        partition_s = time.perf_counter() - started
        local = Coordinator(layout, local_call([Shard(layout, s, settings) for s in range(2)]), settings)

        started = time.perf_counter()
        ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
        ray_s = time.perf_counter() - started
        serve.start(http_options={"host": "127.0.0.1", "port": 8765})
        handle = serve.run(application(layout.root, settings), name="bench", route_prefix="/search")
        startup_s = time.perf_counter() - started
        every_query = list(dict.fromkeys(dataset.queries.values()))
        rows = []
        for mode in MODES:
            queries = every_query if mode == "bm25" else every_query[: args.encoded_queries]
            repeats = args.repeats if mode == "bm25" else 1
            def native(query, mode=mode):
                top = single.rank(query, 10, mode=mode)
                return top.doc_ords, top.scores

            expected = {query: native(query) for query in queries}
            ways = {
                "single index": native,
                "2 shards, in process": lambda q, mode=mode: asyncio.run(local.rank(q, 10, mode))[1:3],
                "2 shards, Ray Serve": lambda q, mode=mode: handle.rank.remote(q, 10, mode).result()[:2],
            }
            for way, rank in ways.items():
                times = timed(rank, queries, repeats, expected)
                rows.append({"mode": mode, "served by": way, "queries": len(times),
                             "p50 ms": f"{np.percentile(times, 50):.1f}", "p99 ms": f"{np.percentile(times, 99):.1f}"})
                print(rows[-1], flush=True)
        serve.shutdown()
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = (
        f"{__doc__.split(chr(10), 1)[1].strip()}\n\n"
        f"Partitioning the index into 2 shards: {partition_s:.1f} s. Start-up: `ray.init` of a local cluster "
        f"{ray_s:.1f} s; until the Serve\napplication (2 shard deployments and the coordinator) was ready "
        f"{startup_s:.1f} s in all. Every answer of every way equalled\nthe single index's.\n\n"
        + markdown_table(rows)
    )
    print(body)
    if not args.no_write:
        write_section("cluster", "make bench-cluster", body)


if __name__ == "__main__":
    main()
