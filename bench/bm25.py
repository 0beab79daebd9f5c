"""sousuo's BM25 against bm25s (numpy and numba backends) on SciFact: same tokens, build rate, top-10 QPS."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import markdown_table, write_section  # noqa: E402
from pipeline.search.bm25 import bm25_scores  # noqa: E402
from pipeline.search.pruned import ImpactBounds, pruned_top_k  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.eval.beir import BeirDataset  # noqa: E402
from pipeline.experiment.runs import cached_index, settings_for  # noqa: E402
from pipeline.index.forward import Vocabulary  # noqa: E402
from pipeline.index.postings import FieldPostings  # noqa: E402
from pipeline.search.topk import top_k  # noqa: E402
from pipeline.searcher import Searcher  # noqa: E402


def corpus_tokens(searcher: Searcher) -> list[list[str]]:
    forward, terms = searcher.reader.version.forward.fields, searcher.reader.version.vocabulary.terms
    title, body = np.asarray(forward["title"].term_ids), np.asarray(forward["body"].term_ids)
    return [
        [terms[i] for i in np.concatenate([title[forward["title"].doc_slice(d)], body[forward["body"].doc_slice(d)]])]
        for d in range(searcher.reader.n_docs)
    ]


def sousuo_build(tokens: list[list[str]]) -> tuple[Vocabulary, FieldPostings]:
    vocabulary = Vocabulary()
    flat = np.fromiter((i for doc in tokens for i in vocabulary.add_all(doc)), dtype=np.int32)
    lengths = np.fromiter((len(doc) for doc in tokens), dtype=np.int64, count=len(tokens))
    docs = np.repeat(np.arange(len(tokens), dtype=np.int32), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions = (np.arange(len(flat)) - starts).astype(np.int32)
    return vocabulary, FieldPostings.from_tokens(docs, flat, positions, len(tokens), len(vocabulary))


def pruned_vs_numba(rows: list[dict]) -> str:
    """The goal's figure: MaxScore's QPS over bm25s numba's, from the same run."""
    qps = {row["system"]: float(row["QPS (1 thread)"].replace(",", "")) for row in rows}
    numba_row = next((name for name in qps if name.endswith("(numba)") and name.startswith("bm25s")), None)
    if numba_row is None:
        return ""
    return (f"MaxScore answers {qps['sousuo MaxScore (numba)'] / qps[numba_row]:.2f}× the queries per second of "
            f"{numba_row} (goal: 2×).")


def best_of(repeats: int, fn):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import bm25s

    settings = Settings()
    dataset = BeirDataset.load(args.dataset)
    settings = settings_for("bm25", settings)
    searcher = Searcher.open(cached_index(dataset, settings), settings)
    tokens = corpus_tokens(searcher)
    queries = [searcher.reader.analyzer.terms(text) for text in dataset.queries.values()]
    k1, b = settings.bm25.k1, settings.bm25.b
    n_docs = len(tokens)

    build_ours, (vocabulary, postings) = best_of(args.repeats, lambda: sousuo_build(tokens))
    query_ids = [[vocabulary.ids[t] for t in q if t in vocabulary.ids] for q in queries]
    query_tokens = [[t for t in q if t in vocabulary.ids] or ["."] for q in queries]

    def ours_query_all():
        out = []
        for ids in query_ids:
            scores = bm25_scores(postings, ids, k1, b)
            candidates = np.flatnonzero(scores > 0)
            out.append(candidates[top_k(candidates, scores[candidates], 10)])
        return out

    query_ours, top_ours = best_of(args.repeats, ours_query_all)
    bounds_s, bounds = best_of(args.repeats, lambda: ImpactBounds.of(postings, k1, b))
    pruned_top_k(postings, bounds, query_ids[0], 10)  # numba compiles (or loads its cache) here

    def pruned_query_all():
        return [pruned_top_k(postings, bounds, ids, 10)[0] for ids in query_ids]

    query_pruned, top_pruned = best_of(args.repeats, pruned_query_all)
    rows = [{"system": "sousuo exhaustive (numpy CSR)", "build s": f"{build_ours:.3f}",
             "docs/s": f"{n_docs / build_ours:,.0f}", "QPS (1 thread)": f"{len(queries) / query_ours:,.0f}",
             "build ratio": "1.00", "QPS ratio": "1.00", "top-10 identical": "—"},
            {"system": "sousuo MaxScore (numba)", "build s": f"{build_ours + bounds_s:.3f}",
             "docs/s": f"{n_docs / (build_ours + bounds_s):,.0f}",
             "QPS (1 thread)": f"{len(queries) / query_pruned:,.0f}",
             "build ratio": f"{(build_ours + bounds_s) / build_ours:.2f}",
             "QPS ratio": f"{query_pruned / query_ours:.2f}",
             "top-10 identical": f"{sum(list(a) == list(p) for a, p in zip(top_ours, top_pruned))}/{len(queries)}"}]
    for backend in ("numpy", "numba"):
        def build():
            model = bm25s.BM25(method="lucene", k1=k1, b=b, backend=backend)
            model.index(tokens, show_progress=False)
            return model

        try:
            build_theirs, model = best_of(args.repeats, build)
            model.retrieve(query_tokens[:2], k=10, show_progress=False, n_threads=1)  # numba compiles here
        except ImportError as error:
            print(f"bm25s {backend} backend unavailable: {error}", file=sys.stderr)
            continue
        query_theirs, (top_theirs, scores_theirs) = best_of(
            args.repeats, lambda: model.retrieve(query_tokens, k=10, show_progress=False, n_threads=1)
        )
        identical = sum(
            list(ours) == [int(d) for d, s in zip(theirs, score) if s > 0] for ours, theirs, score in
            zip(top_ours, top_theirs, scores_theirs)
        )
        rows.append({
            "system": f"bm25s {bm25s.__version__} ({backend})", "build s": f"{build_theirs:.3f}",
            "docs/s": f"{n_docs / build_theirs:,.0f}", "QPS (1 thread)": f"{len(queries) / query_theirs:,.0f}",
            "build ratio": f"{build_theirs / build_ours:.2f}", "QPS ratio": f"{query_theirs / query_ours:.2f}",
            "top-10 identical": f"{identical}/{len(queries)}",
        })
    table = markdown_table(rows)
    print(table)
    write_section(
        "bm25",
        "make bench-bm25",
        f"SciFact: {n_docs:,} documents, {len(queries):,} queries (all of queries.jsonl), top-10, Lucene BM25 "
        f"(k1={k1}, b={b}), the same analyzer tokens fed to both. Build = vocabulary + postings from token lists "
        "(sousuo also stores positions; MaxScore adds one pass for its per-term score bounds). Ratios are the "
        "other system's time / sousuo exhaustive's: above 1 means sousuo exhaustive is faster. Top-10 identical "
        "counts queries whose ranked ids agree exactly with sousuo exhaustive (bm25s can reorder ties). "
        + pruned_vs_numba(rows) + "\n\n" + table,
    )


if __name__ == "__main__":
    main()
