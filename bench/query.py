"""Query latency of each search mode (p50/p95/p99), query embedding included, on SciFact and a 100k-doc corpus.

The large corpus is SciFact's abstracts in synthetic variants (sentences shuffled, words dropped), so the
lexical index is real text at 20× the size. Embedding 100k passages would take hours on 2 cores, so each
variant's vector is its original's real MiniLM vector plus a little noise; queries are embedded for real.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.report import markdown_table, write_section  # noqa: E402
from pipeline.index.build import build_index  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.constants import SEARCH_MODES  # noqa: E402
from pipeline.dense.cache import text_hash  # noqa: E402
from pipeline.dense.encoders import load_encoder  # noqa: E402
from pipeline.eval.beir import BeirDataset  # noqa: E402
from pipeline.experiment.runs import cached_index, settings_for  # noqa: E402
from pipeline.errors import SousuoError  # noqa: E402
from pipeline.rank.model import RANKERS_DIR  # noqa: E402
from pipeline.rank.training import train_from_judgments  # noqa: E402
from pipeline.searcher import Searcher  # noqa: E402



class ReplayEncoder:
    """Real MiniLM for queries; for passages, vectors looked up by text hash (the synthetic corpus's jittered
    copies of real vectors). Used only by this benchmark, to build the 100k dense index in minutes."""

    def __init__(self, real, vectors_by_hash: dict[str, np.ndarray]):
        self.real, self.vectors = real, vectors_by_hash
        self.model_id, self.dim, self.normalized = real.model_id, real.dim, True

    def encode_queries(self, texts):
        return self.real.encode_queries(texts)

    def encode_passages(self, texts):
        return np.stack([self.vectors[text_hash(t)] for t in texts])


def synthetic_corpus(source: Path, out: Path, copies: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path = out / "corpus.jsonl"
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    docs = [json.loads(line) for line in open(source / "corpus.jsonl", encoding="utf-8")]
    with open(path, "w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
        for copy in range(1, copies):
            for doc in docs:
                sentences = doc["text"].split(". ")
                rng.shuffle(sentences)
                words = " ".join(sentences).split()
                keep = [w for w in words if rng.random() > 0.1]
                variant = {"_id": f"{doc['_id']}~{copy}", "title": doc["title"], "text": " ".join(keep)}
                handle.write(json.dumps(variant, ensure_ascii=False) + "\n")
    return path


def build_large(settings: Settings, small: Searcher, copies: int, out: Path) -> Path:
    index_dir = out / "index"
    if (index_dir / "CURRENT").exists():
        return index_dir
    corpus = synthetic_corpus(ROOT.parent / "shared" / "datasets" / "scifact", out / "corpus", copies)
    from pipeline.dense.passages import split_passages
    from pipeline.ingest.ingest import ingest

    # Map every synthetic passage text to its original document's best real vector, plus noise.
    small_dense = small.reader.dense
    original_vector = {}
    for doc_ord, doc_id in enumerate(small.doc_ids):
        rows = np.flatnonzero(small_dense.passage_docs == doc_ord)
        original_vector[doc_id] = np.asarray(small_dense.ann.vectors[rows[0]], dtype=np.float32)
    rng = np.random.default_rng(1)
    vectors = {}
    config = settings.dense
    for doc in ingest([corpus]).documents.to_pylist():
        base = original_vector[doc["doc_id"].split("~")[0]]
        for passage in split_passages(0, doc["title"], doc["body"], config.passage_window, config.passage_overlap):
            noisy = base + rng.normal(scale=0.02, size=base.shape).astype(np.float32)
            vectors[text_hash(passage.text)] = noisy / np.linalg.norm(noisy)
    encoder = ReplayEncoder(load_encoder("minilm"), vectors)
    large_settings = settings.model_copy(update={"cache_dir": out / "cache"})
    build_index([corpus], index_dir, large_settings, show_progress=True, encoder=encoder)
    return index_dir


def latencies(searcher: Searcher, queries: list[str], mode: str) -> np.ndarray:
    searcher.search(queries[0], k=10, mode=mode)  # warm: model load, page cache
    out = []
    for query in queries:
        start = time.perf_counter()
        searcher.search(query, k=10, mode=mode, syntax=False)
        out.append((time.perf_counter() - start) * 1000)
    return np.asarray(out)


def scifact_with_ranker(settings: Settings) -> tuple[BeirDataset, Path, Searcher]:
    """SciFact's cached index (built on first use) with a ranker published beside it."""
    dataset = BeirDataset.load(ROOT.parent / "shared" / "datasets" / "scifact")
    index = cached_index(dataset, settings)
    searcher = Searcher.open(index, settings)
    try:
        searcher.ranker  # noqa: B018 (loads and checks the published model)
    except SousuoError:  # none yet, or trained on an older feature set
        train_from_judgments(searcher.reader, dataset, searcher.fusion_weights, "train")
        searcher = Searcher.open(index, settings)
    return dataset, index, searcher


def large_index(settings: Settings, small: Searcher, copies: int) -> Path:
    """The synthetic corpus's index (SciFact ×copies), built on first use, with the small index's ranker."""
    index = build_large(settings, small, copies, ROOT / "bench" / "out" / f"scifact-x{copies}")
    shutil.copytree(small.reader.root / RANKERS_DIR, index / RANKERS_DIR, dirs_exist_ok=True)
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=20, help="variants per SciFact document (20 → 103,660 docs)")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    settings = settings_for("ltr", Settings())
    dataset, small_dir, small = scifact_with_ranker(settings)
    queries = list(dataset.queries.values())[: args.queries]
    large_dir = large_index(settings, small, args.copies)
    large = Searcher.open(large_dir, settings)

    exhaustive = settings.model_copy(update={"bm25": settings.bm25.model_copy(update={"pruning": False})})
    rows = []
    for name, path in (("SciFact", small_dir), (f"SciFact ×{args.copies} (synthetic)", large_dir)):
        searchers = {"": Searcher.open(path, settings), " (exhaustive)": Searcher.open(path, exhaustive)}
        for query in queries:  # touch the memory-mapped postings and hit rows once: no mode is timed on cold pages
            searchers[" (exhaustive)"].search(query, 10, syntax=False)
        for mode in SEARCH_MODES:
            for label, searcher in searchers.items():
                if label and mode != "bm25":
                    continue  # pruning is BM25's top-k: the other modes score every candidate anyway
                ms = latencies(searcher, queries, mode)
                rows.append({"corpus": name, "docs": f"{searcher.reader.n_docs:,}", "mode": mode + label,
                             "p50 ms": f"{np.percentile(ms, 50):.1f}", "p95 ms": f"{np.percentile(ms, 95):.1f}",
                             "p99 ms": f"{np.percentile(ms, 99):.1f}"})
                print(rows[-1], flush=True)
    table = markdown_table(rows)
    large_kind = large.reader.dense.manifest.ann["kind"]
    write_section(
        "query latency",
        "make bench-query",
        f"One process, {len(queries)} SciFact queries per mode, top-10 with snippets, query embedding included "
        "(MiniLM on one torch thread, as the query path runs single queries; faiss searches on one OpenMP thread); "
        f"the recall branches run on a pool of "
        f"{settings.fusion.threads} threads over 2 cores. `ltr` = hybrid recall + fusion + LightGBM over "
        f"{settings.ranker.candidates} candidates. The large corpus's ANN index is {large_kind}. `bm25` takes its "
        "top-k by the compiled, pruned kernel (`search/pruned.py`); `bm25 (exhaustive)` scores every posting, as with "
        "`bm25.pruning = false`, and returns the same results. "
        "Goal: hybrid + LTR p99 < 50 ms at 100k documents.\n\n" + table,
    )


if __name__ == "__main__":
    main()
