"""faiss HNSW and IVF (through pipeline.dense.ann) against hnswlib and Annoy: build time, size, recall@10 and QPS.

Two vector sets, all unit length and searched by inner product:

- SciFact: MiniLM embeddings of the corpus passages (the built dense index's own vectors when there is one, else
  embedded here and cached under bench/out/), queried by the 300 test queries.
- Synthetic: 1,000,000 vectors (100,000 with --quick), each a random SciFact passage vector plus noise shaped like
  the passages' own covariance, re-normalised; queried by 1,000 held-out vectors made the same way.

Indexes are built with 2 threads where the library can; every search runs on 1 thread. Recall is against exact
search (faiss IndexFlatIP), whose QPS is the baseline of the speed-up column.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning made faiss builds up to 15× slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import markdown_table, write_section  # noqa: E402
from pipeline.dense.ann import AnnIndex, AnnSpec, choose_spec  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.dense.cache import EmbeddingCache, embed_with_cache  # noqa: E402
from pipeline.dense.encoders import MINILM, load_encoder  # noqa: E402
from pipeline.dense.passages import split_passages  # noqa: E402
from pipeline.eval.beir import BeirDataset  # noqa: E402

OUT = ROOT / "bench" / "out"
PLOT = ROOT / "docs" / "ann_recall_qps.png"
K = 10
BUILD_THREADS = 2
HNSW_M = 32
# 16-dim sub-vectors: pipeline.dense.ann's default (dim/4 = 96 sub-quantizers of 4 dims) trains about 30× slower.
PQ_M = 24
EF_SEARCH = (16, 32, 64, 128, 256)
NPROBE = (1, 2, 4, 8, 16, 32, 64)
ANNOY_SEARCH_K = (1_000, 3_000, 10_000, 30_000, 100_000)
GOAL_RECALL, GOAL_SPEEDUP = 0.95, 50


@dataclass
class Result:
    library: str
    index: str
    setting: str
    build_s: float
    size_mb: float
    recall: float
    qps: float


# -- vectors ------------------------------------------------------------------------------------------


def scifact_passages(dataset: BeirDataset) -> list[str]:
    """The passages the dense index embeds: title + body windows of 200 words overlapping by 50."""
    texts = []
    with open(dataset.path / "corpus.jsonl", encoding="utf-8") as handle:
        for doc_ord, line in enumerate(handle):
            record = json.loads(line)
            texts += [p.text for p in split_passages(doc_ord, record.get("title", ""), record["text"], 200, 50)]
    return texts


def scifact_vectors(dataset: BeirDataset) -> tuple[np.ndarray, str]:
    """(passage vectors, where they came from): a built SciFact dense index, the bench/out cache, or MiniLM now."""
    built = sorted((ROOT / "data" / "cache" / "indexes").glob(f"scifact-*-{MINILM}/versions/*/dense/dense.json"))
    if built:
        folder = built[-1].parent
        return np.load(folder / "vectors.npy"), f"the built dense index `{folder.relative_to(ROOT)}`"
    cached = OUT / "scifact-minilm-passages.npy"
    if not cached.exists():
        encoder = load_encoder("minilm")
        cache = EmbeddingCache(ROOT / "data" / "cache", encoder.model_id, encoder.dim)
        vectors, _ = embed_with_cache(encoder, scifact_passages(dataset), cache)
        OUT.mkdir(parents=True, exist_ok=True)
        np.save(cached, vectors)
    return np.load(cached), f"`{cached.relative_to(ROOT)}`, embedded by this script"


def scifact_queries(dataset: BeirDataset) -> np.ndarray:
    cached = OUT / "scifact-minilm-test-queries.npy"
    if not cached.exists():
        texts = [dataset.queries[query_id] for query_id in dataset.qrels("test")]
        OUT.mkdir(parents=True, exist_ok=True)
        np.save(cached, load_encoder("minilm").encode_queries(texts))
    return np.load(cached)


def jittered(base: np.ndarray, count: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(`count` unit vectors, the row of `base` each one starts from): that row plus `scale` × noise with the
    covariance of `base`, re-normalised."""
    rng = np.random.default_rng(seed)
    _, singular, components = np.linalg.svd(base - base.mean(axis=0), full_matrices=False)
    # z @ shaping, with z standard normal, has the covariance of the base vectors.
    shaping = (singular[:, None] * components / np.sqrt(len(base))).astype(np.float32)
    origins = rng.integers(len(base), size=count)
    out = np.empty((count, base.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        chunk = origins[start : start + 100_000]
        noise = rng.standard_normal((len(chunk), base.shape[1]), dtype=np.float32) @ shaping
        rows = base[chunk] + scale * noise
        out[start : start + len(chunk)] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out, origins


# -- measuring ----------------------------------------------------------------------------------------


@contextmanager
def threads(n: int) -> Iterator[None]:
    """faiss (OpenMP) and every BLAS in the process on n threads."""
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(n)
    with threadpool_limits(n):
        yield


def timed(fn: Callable, clock: Callable[[], float] = time.perf_counter):
    start = clock()
    result = fn()
    return clock() - start, result


def saved_mb(save: Callable[[str], None]) -> float:
    """Size of an index as its library writes it to disk."""
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as folder:
        path = os.path.join(folder, "index")
        save(path)
        return os.path.getsize(path) / 2**20


def faiss_mb(index) -> float:
    import faiss

    return saved_mb(lambda path: faiss.write_index(index, path))


class Bench:
    """Every index on one vector set: a Result per search setting, exact search first."""

    def __init__(self, name: str, vectors: np.ndarray, queries: np.ndarray, repeats: int):
        self.name, self.vectors, self.queries, self.repeats = name, vectors, queries, repeats
        self.n, self.dim = vectors.shape
        self.results: list[Result] = []
        print(f"{name}: {self.n:,} vectors, {len(queries):,} queries", flush=True)
        with threads(BUILD_THREADS):
            build_s, flat = timed(lambda: AnnIndex.build(vectors, AnnSpec(kind="flat")))
        seconds, self.truth = self.best_search(lambda q: flat.search(q, K)[1])
        # Mean cosine of each query's exact 1st and 10th neighbour: how tight the neighbourhoods are.
        cosines = np.einsum("qd,qkd->qk", queries, vectors[self.truth])
        self.neighbour_cosines = f"{cosines[:, 0].mean():.2f} / {cosines[:, -1].mean():.2f}"
        self.exact_qps = len(queries) / seconds
        self.add("faiss", "exact FlatIP", "—", build_s, vectors.nbytes / 2**20, 1.0, self.exact_qps)

    def best_search(self, search: Callable[[np.ndarray], np.ndarray]) -> tuple[float, np.ndarray]:
        """(best CPU seconds over the repeats, ids) for all queries, searched on this thread alone.

        The thread's CPU time, unlike wall time, leaves out the time other processes hold the core.
        """
        best = float("inf")
        with threads(1):
            for _ in range(self.repeats):
                seconds, found = timed(lambda: search(self.queries), time.thread_time)
                best = min(best, seconds)
        return best, np.asarray(found, dtype=np.int64)

    def add(self, library: str, index: str, setting: str, build_s: float, size_mb: float, recall: float,
            qps: float) -> None:
        self.results.append(Result(library, index, setting, build_s, size_mb, recall, qps))
        print(f"  {library:8} {index:26} {setting:16} build {build_s:7.1f}s {size_mb:8.1f} MB  "
              f"recall@10 {recall:.3f}  QPS {qps:9,.0f}", flush=True)

    def sweep(self, library: str, index: str, build_s: float, size_mb: float,
              settings: Iterator[tuple[str, Callable[[np.ndarray], np.ndarray]]]) -> None:
        for setting, search in settings:
            seconds, found = self.best_search(search)
            hits = (found[:, :, None] == self.truth[:, None, :]).any(axis=2).sum()
            self.add(library, index, setting, build_s, size_mb, hits / self.truth.size, len(self.queries) / seconds)

    def faiss_hnsw(self, ef_construction: int) -> None:
        spec = choose_spec(self.n, self.dim, 0, "hnsw", hnsw_m=HNSW_M, ef_construction=ef_construction)
        with threads(BUILD_THREADS):
            build_s, ann = timed(lambda: AnnIndex.build(self.vectors, spec))

        def settings():
            for ef in EF_SEARCH:
                ann.spec.ef_search = ef
                yield f"efSearch {ef}", lambda q: ann.search(q, K)[1]

        self.sweep("faiss", f"HNSW M{HNSW_M} efC{ef_construction}", build_s, faiss_mb(ann.index), settings())

    def faiss_ivf(self, kind: str, nlist: int) -> None:
        spec = choose_spec(self.n, self.dim, 0, kind, nlist=nlist, pq_m=PQ_M if kind == "ivf-pq" else 0)
        with threads(BUILD_THREADS):
            build_s, ann = timed(lambda: AnnIndex.build(self.vectors, spec))

        def settings():
            for nprobe in (p for p in NPROBE if p <= spec.nlist):
                ann.spec.nprobe = nprobe
                yield f"nprobe {nprobe}", lambda q: ann.search(q, K)[1]

        if kind == "ivf-flat":
            name = f"IVF{spec.nlist},Flat"
        else:
            name = f"IVF{spec.nlist},PQ{spec.pq_m} rerank {K * spec.rerank}"
        self.sweep("faiss", name, build_s, faiss_mb(ann.index), settings())

    def hnswlib(self, ef_construction: int) -> None:
        import hnswlib

        def build():
            index = hnswlib.Index(space="ip", dim=self.dim)
            index.init_index(max_elements=self.n, ef_construction=ef_construction, M=HNSW_M, random_seed=0)
            index.add_items(self.vectors, np.arange(self.n), num_threads=BUILD_THREADS)
            return index

        build_s, index = timed(build)

        def settings():
            for ef in EF_SEARCH:
                index.set_ef(ef)
                yield f"ef {ef}", lambda q: index.knn_query(q, K, num_threads=1)[0]

        size = saved_mb(index.save_index)
        self.sweep("hnswlib", f"HNSW M{HNSW_M} efC{ef_construction}", build_s, size, settings())

    def annoy(self, trees: int) -> None:
        from annoy import AnnoyIndex

        def build():
            index = AnnoyIndex(self.dim, "dot")
            for i, vector in enumerate(self.vectors):
                index.add_item(i, vector.tolist())
            index.build(trees, n_jobs=BUILD_THREADS)
            return index

        build_s, index = timed(build)
        size = saved_mb(index.save)  # Annoy then serves from the memory-mapped file, still in the page cache
        queries = [q.tolist() for q in self.queries]

        def settings():
            for search_k in ANNOY_SEARCH_K:
                yield f"search_k {search_k:,}", lambda _: [index.get_nns_by_vector(q, K, search_k) for q in queries]

        self.sweep("Annoy", f"{trees} trees", build_s, size, settings())

    def run(self, ef_construction: int, nlist: int, annoy_trees: int) -> None:
        self.faiss_hnsw(ef_construction)
        self.faiss_ivf("ivf-flat", nlist)
        self.faiss_ivf("ivf-pq", nlist)
        self.hnswlib(ef_construction)
        self.annoy(annoy_trees)

    def table(self) -> str:
        return markdown_table([
            {"library": r.library, "index": r.index, "search setting": r.setting, "build s": f"{r.build_s:.1f}",
             "index MB": f"{r.size_mb:,.0f}", "recall@10": f"{r.recall:.3f}", "QPS": f"{r.qps:,.0f}",
             "× exact": f"{r.qps / self.exact_qps:.1f}"}
            for r in self.results
        ])


# -- report -------------------------------------------------------------------------------------------


def plot(benches: list[Bench], goal: Bench) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(benches), figsize=(6.5 * len(benches), 5), squeeze=False)
    for axis, bench in zip(axes[0], benches):
        curves: dict[str, list[Result]] = {}
        for result in bench.results[1:]:
            curves.setdefault(f"{result.library} {result.index}", []).append(result)
        for label, points in curves.items():
            axis.plot([p.recall for p in points], [p.qps for p in points], marker="o", markersize=3, label=label)
        axis.axhline(bench.exact_qps, color="grey", linestyle=":", label="exact FlatIP")
        if bench is goal:
            axis.axhline(GOAL_SPEEDUP * bench.exact_qps, color="red", linestyle="--", linewidth=0.8,
                         label=f"goal: {GOAL_SPEEDUP}× exact at recall@10 {GOAL_RECALL}")
            axis.axvline(GOAL_RECALL, color="red", linestyle="--", linewidth=0.8)
        axis.set(yscale="log", xlabel="recall@10", ylabel="queries/s (1 thread)",
                 title=f"{bench.name}: {bench.n:,} × {bench.dim}, {len(bench.queries):,} queries")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT, dpi=120)


def verdict(bench: Bench) -> str:
    """Whether faiss meets the goal on this set: the speed target, and hnswlib and Annoy at that recall."""
    target = GOAL_SPEEDUP * bench.exact_qps
    fastest: dict[tuple[str, str], Result | None] = {}  # per index: its fastest setting that reaches the recall
    for result in bench.results[1:]:
        best = fastest.setdefault((result.library, result.index), None)
        if result.recall >= GOAL_RECALL and (best is None or result.qps > best.qps):
            fastest[(result.library, result.index)] = result
    ours = [r for (library, _), r in fastest.items() if library == "faiss" and r is not None]
    theirs = [r for (library, _), r in fastest.items() if library != "faiss" and r is not None]
    best = max(ours, key=lambda r: r.qps, default=None)
    met = best is not None and best.qps >= target and all(best.qps >= r.qps for r in theirs)
    automatic = choose_spec(bench.n, bench.dim, Settings().dense.memory_budget_mb << 20).kind

    lines = [
        f"**Goal at {bench.n:,} vectors: recall@10 ≥ {GOAL_RECALL} at ≥ {GOAL_SPEEDUP}× exact-search QPS "
        f"(exact: {bench.exact_qps:,.0f} QPS, so ≥ {target:,.0f} QPS), and at least as fast as hnswlib and Annoy at "
        f"that recall. {f'Met, by faiss {best.index}' if met else 'Not met'}.** Fastest setting of each index with "
        f"recall@10 ≥ {GOAL_RECALL} (at this size, with the default memory budget, the pipeline chooses "
        f"`{automatic}`):",
        "",
    ]
    for (library, index), result in fastest.items():
        if result is None:
            lines.append(f"- {library} {index}: never reaches recall@10 {GOAL_RECALL}")
        else:
            speedup = result.qps / bench.exact_qps
            lines.append(
                f"- {library} {index}, {result.setting}: recall@10 {result.recall:.3f} at {result.qps:,.0f} QPS = "
                f"{speedup:.0f}× exact ({'meets' if speedup >= GOAL_SPEEDUP else 'misses'} the speed target)"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    parser.add_argument("--quick", action="store_true", help="100,000 synthetic vectors instead of 1,000,000")
    parser.add_argument("--synthetic", type=int, help="synthetic vector count (overrides --quick)")
    parser.add_argument("--queries", type=int, default=1_000, help="held-out synthetic queries")
    parser.add_argument("--noise", type=float, default=1.0, help="jitter scale; 1 = as spread out as the passages")
    parser.add_argument("--ef-construction", type=int, default=40, help="HNSW efConstruction, faiss and hnswlib")
    parser.add_argument("--nlist", type=int, default=0, help="IVF lists; 0 = pipeline.dense.ann's rule (about 4·√n)")
    parser.add_argument("--annoy-trees", type=int, default=50, help="Annoy trees on SciFact")
    parser.add_argument("--annoy-trees-synthetic", type=int, default=20, help="Annoy trees on the synthetic set")
    parser.add_argument("--repeats", type=int, default=2, help="search timings keep the best of this many runs")
    args = parser.parse_args()
    count = args.synthetic or (100_000 if args.quick else 1_000_000)
    started = time.perf_counter()

    dataset = BeirDataset.load(args.dataset)
    passages, source = scifact_vectors(dataset)
    scifact = Bench("SciFact (MiniLM)", passages, scifact_queries(dataset), args.repeats)
    scifact.run(args.ef_construction, args.nlist, args.annoy_trees)

    generated, origins = jittered(passages, count + args.queries, args.noise, seed=0)
    synthetic = Bench("Synthetic", generated[:count], generated[count:], args.repeats)
    same_origin = (origins[:count][synthetic.truth] == origins[count:, None]).mean()
    synthetic.run(args.ef_construction, args.nlist, args.annoy_trees_synthetic)
    del generated

    plot([scifact, synthetic], goal=synthetic)
    minutes = (time.perf_counter() - started) / 60
    text = f"""\
faiss (through `pipeline.dense.ann.AnnIndex`, the index the pipeline serves) against hnswlib and Annoy, on the same
vectors in the same run. All vectors are unit length, searched by inner product, k = 10.

- **SciFact**: {scifact.n:,} MiniLM passage vectors (title + 200-word windows, from {source}); the
  {len(scifact.queries)} test queries, embedded with MiniLM.
- **Synthetic**: {synthetic.n:,} vectors, each a random SciFact passage vector plus {args.noise} × Gaussian noise with
  the passages' own covariance, re-normalised; {len(synthetic.queries):,} held-out queries made the same way. Only
  {len(passages):,} distinct passages lie behind them (about {synthetic.n / len(passages):.0f} copies of each), and
  {same_origin:.0%} of a query's exact top-10 are copies of the passage the query was made from. Such blobs suit
  IVF's lists, so treat IVF's synthetic figures as optimistic: compare the real SciFact vectors, where IVF needs
  many more probes for the recall HNSW reaches at a small ef.

Mean cosine of a query's exact 1st / 10th neighbour: SciFact {scifact.neighbour_cosines}, synthetic
{synthetic.neighbour_cosines}.

Builds use {BUILD_THREADS} threads (faiss OpenMP, hnswlib `num_threads`, Annoy `n_jobs`); every search runs on one
thread (`faiss.omp_set_num_threads(1)`, BLAS limited to 1, hnswlib `num_threads=1`). faiss and hnswlib get all
queries as one batch; Annoy has no batch call, so it is a Python loop over queries. QPS = queries / CPU seconds of
the searching thread (`time.thread_time`, best of {args.repeats} runs), which leaves out the time the shared machine
gave to other processes; build times are wall-clock. × exact divides by exact search's QPS (faiss IndexFlatIP, one
thread, one batch), and recall@10 is against that exact search. Index MB is the size each library writes to disk.

- HNSW: M = {HNSW_M} and efConstruction = {args.ef_construction} in both libraries (the pipeline's default is 80;
  the benchmark's default of 40 keeps the 1M builds within its time budget).
- IVF: lists follow `pipeline.dense.ann.choose_spec` (about 4·√n). IVF-PQ uses {PQ_M} sub-quantizers of 8 bits (the
  pipeline's default of {passages.shape[1] // 4}, 4-dim sub-vectors, trains about 30× slower) and re-ranks k ×
  rerank candidates on the float vectors, which the pipeline memory-maps: its index MB excludes them.
- Annoy: {args.annoy_trees} trees on SciFact, {args.annoy_trees_synthetic} on the synthetic set.

Timings come from a shared 2-core machine where other CPU-heavy jobs may be running, so expect some noise, most of
all in the build times; the whole script took {minutes:.1f} minutes.

![recall@10 against single-thread QPS](ann_recall_qps.png)

{verdict(synthetic)}

### SciFact, {scifact.n:,} passages

{scifact.table()}

### Synthetic, {synthetic.n:,} vectors

{synthetic.table()}
"""
    print(text)
    write_section("ann", "make bench-ann", text)


if __name__ == "__main__":
    main()
