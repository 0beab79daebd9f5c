"""The click graph (behaviour branch) measured: simulated users search a judged split's queries, and nDCG@10 on the
judgments is compared without the log, with the graph as a recall branch, and with rankers trained from the clicks
with and without the graph's feature. Prints Markdown for docs/behaviour.md (measures, not timings)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from pipeline.behaviour.clickmodels import fit_and_compare, save_tables
from pipeline.behaviour.sessions import ClickLog
from pipeline.behaviour.simulate import ClickSimulator, write_sessions
from pipeline.config import Settings
from pipeline.eval.beir import BeirDataset
from pipeline.eval.metrics import run_of, score_run
from pipeline.experiment.runs import cached_index, settings_for
from pipeline.index.querylog import QueryLog
from pipeline.rank.model import Ranker
from pipeline.rank.training import train_from_clicks
from pipeline.searcher import Searcher


def ndcg(searcher: Searcher, queries: dict[str, str], qrels, mode: str, ranker: Ranker | None = None) -> float:
    run = {}
    for qid, text in queries.items():
        top = searcher.rank_plan(searcher.plan(text, mode, syntax=False), 10, mode=mode, ranker=ranker)
        run[qid] = run_of(searcher.doc_ids, top.doc_ords, top.scores)
    return score_run(run, {q: qrels[q] for q in queries})[0]["ndcg@10"]


def with_behaviour(settings: Settings, **changes) -> Settings:
    return settings.model_copy(update={"behaviour": settings.behaviour.model_copy(update=changes)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--logged", default="test", help="the split whose queries the simulated users search")
    parser.add_argument("--unseen", default="train", help="a split the log never saw, measured beside it")
    args = parser.parse_args()
    settings = settings_for("hybrid", Settings())
    behaviour = settings.behaviour
    dataset = BeirDataset.load(args.dataset)
    logged, logged_qrels = dataset.judged_queries(args.logged)
    unseen, unseen_qrels = dataset.judged_queries(args.unseen) if args.unseen in dataset.splits() else ({}, {})
    with tempfile.TemporaryDirectory(prefix="sousuo-graph-") as scratch:
        index = Path(scratch) / "index"
        shutil.copytree(cached_index(dataset, settings), index)
        plain = Searcher.open(index, settings)
        served = lambda text: [plain.doc_ids[d] for d in plain.rank(text, 10, syntax=False, mode="hybrid").doc_ords]
        simulator = ClickSimulator(logged, logged_qrels, served, behaviour)
        counts = write_sessions(QueryLog(index), simulator.sessions(args.sessions), logged, "hybrid", behaviour.seed)
        rows = {"hybrid, no log": (plain, "hybrid", None)}
        # The weights a served graph reads: the PBM's relevance, as `sousuo click-models` writes it.
        save_tables(fit_and_compare(ClickLog.from_querylog(QueryLog(index), behaviour.positions), behaviour), index)
        graphed = Searcher.open(index, settings)
        rows["hybrid + click graph branch"] = (graphed, "hybrid", None)
        for name, changes in (("ltr from clicks-pbm, no past in training (`graph_history_share=0`)",
                               {"graph_history_share": 0.0}),
                              ("ltr from clicks-pbm, as trained now (defaults)", {}),
                              ("ltr from clicks-pbm, past without the unseen half (`graph_unseen_share=0`)",
                               {"graph_unseen_share": 0.0})):
            reader = Searcher.open(index, with_behaviour(settings, **changes)).reader
            ranker, _ = train_from_clicks(reader, graphed.fusion_weights, "pbm")
            rows[name] = (graphed, "ltr", ranker)
        print(f"{dataset.name}: {counts['sessions']:,} simulated sessions of the {len(logged)} judged "
              f"{args.logged} queries ({counts['clicks']:,} clicks, simulator defaults, served by hybrid); nDCG@10 "
              f"on the {args.logged} judgments (queries in the log) and on the {len(unseen)} {args.unseen} queries "
              "(never logged)\n")
        print(f"| served | {args.logged} (logged) | {args.unseen} (unseen) |\n|---|---|---|")
        for name, (searcher, mode, ranker) in rows.items():
            seen = ndcg(searcher, logged, logged_qrels, mode, ranker)
            other = ndcg(searcher, unseen, unseen_qrels, mode, ranker) if unseen else float("nan")
            print(f"| {name} | {seen:.4f} | {other:.4f} |", flush=True)


if __name__ == "__main__":
    main()
