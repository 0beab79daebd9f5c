"""Co-relevance of related documents on judged sets: for each relevant document of a query with at least two, whether
another document relevant to the same query is in its top 10 similar documents, per source and fused. Co-clicks
come from simulated sessions of the train split's queries (served by BM25) in a scratch log; with
--session-continue P those sessions go on with reformulations (queries sharing a relevant document), so co-clicks
also pair documents clicked for different queries of one session. Prints Markdown for docs/behaviour.md (these are
measures, not timings)."""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.behaviour.graph import ClickGraph
from pipeline.behaviour.simulate import ClickSimulator, write_sessions
from pipeline.config import BehaviourConfig, Settings
from pipeline.eval.beir import BeirDataset
from pipeline.experiment.runs import cached_index, settings_for
from pipeline.index.querylog import QueryLog
from pipeline.retrieval.similar import similar
from pipeline.searcher import Searcher

K = 10


def co_relevance(searcher: Searcher, groups: list[list[int]], sources: tuple[str, ...],
                 graph: ClickGraph | None) -> tuple[float, float, int]:
    """(share of relevant documents with another relevant one in their top K, mean share of the others found,
    documents measured)."""
    hits, recalls = [], []
    for group in groups:
        for d in group:
            found = set(similar(searcher.reader, d, K, graph=graph, sources=sources).doc_ords.tolist())
            others = [o for o in group if o != d]
            hits.append(bool(found.intersection(others)))
            recalls.append(len(found.intersection(others)) / len(others))
    return float(np.mean(hits)), float(np.mean(recalls)), len(hits)


def relevant_groups(dataset: BeirDataset, split: str, ordinals: dict[str, int]) -> list[list[int]]:
    """The relevant documents of each query of `split` with at least two."""
    groups = [[ordinals[d] for d, g in judged.items() if g > 0 and d in ordinals]
              for judged in dataset.qrels(split).values()]
    return [g for g in groups if len(g) >= 2]


def co_relevant_pairs(graph: ClickGraph, groups: list[list[int]]) -> tuple[int, int]:
    """(co-clicked unordered pairs, those of them relevant to one query of `groups`)."""
    pairs = {(a, b) for a, others in graph.co_clicks.items() for b in others if a < b}
    return len(pairs), len(pairs & {(a, b) for g in groups for a in g for b in g if a < b})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--splits", nargs="+", default=["test"], help="judged splits whose queries are measured")
    parser.add_argument("--sessions", type=int, default=20_000, help="simulated sessions of the train split")
    parser.add_argument("--session-continue", type=float, default=0.0, metavar="P",
                        help="simulated sessions go on with probability P with a reformulation (default 0)")
    parser.add_argument("--unlink-searches", action="store_true",
                        help="log each search as a session of its own: the same searches and clicks without "
                             "cross-query co-clicks, the control for --session-continue")
    parser.add_argument("--seed", type=int, help="the simulator's seed (default behaviour.seed)")
    parser.add_argument("--no-dense", action="store_true")
    args = parser.parse_args()
    settings = settings_for("hybrid", Settings(), dense=not args.no_dense)
    behaviour = BehaviourConfig.model_validate({**settings.behaviour.model_dump(),
                                                "session_continue": args.session_continue,
                                                **({"seed": args.seed} if args.seed is not None else {})})
    settings = settings.model_copy(update={"behaviour": behaviour})
    dataset = BeirDataset.load(args.dataset)
    searcher = Searcher.open(cached_index(dataset, settings), settings)
    ordinals = searcher.reader.ordinals
    graph = None
    if "train" in dataset.splits():
        qrels = dataset.qrels("train")
        queries = {qid: dataset.queries[qid] for qid in qrels if qid in dataset.queries}
        served = lambda text: [searcher.doc_ids[d] for d in searcher.rank(text, 10).doc_ords]
        simulator = ClickSimulator(queries, qrels, served, settings.behaviour)
        with tempfile.TemporaryDirectory(prefix="sousuo-similar-") as scratch:
            searches = simulator.sessions(args.sessions)
            if args.unlink_searches:
                searches = (replace(s, session=s.search) for s in searches)
            counts = write_sessions(QueryLog(scratch), searches, queries, "bm25", settings.behaviour.seed)
            graph = ClickGraph.load(Path(scratch), searcher.reader.ordinals, searcher.reader.analyzer.terms,
                                    settings.behaviour)
    variants = [("dense", ("dense",)), ("more-like-this (BM25 of top terms)", ("bm25",)),
                ("dense + more-like-this", ("dense", "bm25"))]
    if graph is not None:
        variants += [("co-clicks", ("co_clicks",)), ("all three", ("dense", "bm25", "co_clicks"))]
    if not searcher.reader.has_dense:
        variants = [("more-like-this (BM25 of top terms)", ("bm25",))]
        if graph is not None:
            variants += [("co-clicks", ("co_clicks",)), ("more-like-this + co-clicks", ("bm25", "co_clicks"))]
    print(f"{dataset.name}: co-relevance@{K}" + (f"; co-clicks from {counts['sessions']:,} simulated sessions "
                                                f"({counts['searches']:,} searches, session_continue "
                                                f"{args.session_continue}, seed {settings.behaviour.seed}"
                                                f"{', searches unlinked' if args.unlink_searches else ''}) of the "
                                                "train queries "
                                                f"({sum(map(len, graph.co_clicks.values())):,} co-clicked pairs)"
                                                if graph else "") + "\n")
    groups = {split: relevant_groups(dataset, split, ordinals) for split in args.splits}
    if graph is not None:
        counted = {split: co_relevant_pairs(graph, groups[split]) for split in args.splits}
        print(f"Co-clicked unordered pairs: {next(iter(counted.values()))[0]:,}; co-relevant (both relevant to one "
              "query) for " + ", ".join(f"{split}: {corel:,}" for split, (_, corel) in counted.items()) + "\n")
    print("| split | source | queries | relevant docs | co-relevance@10 | others found@10 |\n|---|---|---|---|---|---|")
    for split in args.splits:
        for name, sources in variants:
            hit, recall, n = co_relevance(searcher, groups[split], sources, graph)
            print(f"| {split} | {name} | {len(groups[split])} | {n} | {hit:.3f} | {recall:.3f} |")


if __name__ == "__main__":
    main()
