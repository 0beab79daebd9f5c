"""The personal channel measured with simulated users who prefer tags: nDCG@10 against each user's own relevance (the
judgment, one grade higher where the document carries a tag the user prefers, as the simulator's users click), with
the user's profile on and off, in hybrid and with a ranker trained from the same log's clicks. BEIR sets have no tags, so a scratch copy of the cached index gets topic tags: the
k-means cluster of each document's vector. Prints Markdown for docs/behaviour.md (measures, not timings)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.behaviour.profile import profile_for
from pipeline.behaviour.simulate import ClickSimulator, user_id, write_sessions
from pipeline.config import Settings
from pipeline.eval.beir import BeirDataset
from pipeline.eval.metrics import score_run
from pipeline.experiment.runs import cached_index, settings_for
from pipeline.index.querylog import QueryLog
from pipeline.index.store import Manifest, current_version, file_inventory, versions_dir
from pipeline.rank.training import train_from_clicks
from pipeline.retrieval.channels import Audience
from pipeline.searcher import Searcher


def topic_tags(searcher: Searcher, topics: int, seed: int) -> list[list[str]]:
    """One tag per document: the nearest of `topics` k-means centroids of the document vectors (a few rounds)."""
    reader = searcher.reader
    vectors = np.stack([reader.dense.doc_vector(d) for d in range(reader.n_docs)])
    rng = np.random.default_rng(seed)
    centroids = vectors[rng.choice(len(vectors), topics, replace=False)]
    for _ in range(10):
        nearest = np.argmax(vectors @ centroids.T, axis=1)
        for t in range(topics):
            members = vectors[nearest == t]
            if len(members):
                centroids[t] = members.mean(axis=0) / max(np.linalg.norm(members.mean(axis=0)), 1e-12)
    return [[f"topic-{t:02d}"] for t in np.argmax(vectors @ centroids.T, axis=1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--preferred-tags", type=int, default=2)
    parser.add_argument("--topics", type=int, default=20)
    parser.add_argument("--measured-users", type=int, default=30)
    parser.add_argument("--queries", type=int, default=100, help="test queries measured per user")
    args = parser.parse_args()
    settings = settings_for("hybrid", Settings())
    behaviour = settings.behaviour.model_copy(update={"users": args.users, "preferred_tags": args.preferred_tags})
    settings = settings.model_copy(update={"behaviour": behaviour})
    dataset = BeirDataset.load(args.dataset)
    with tempfile.TemporaryDirectory(prefix="sousuo-personal-") as scratch:
        index = Path(scratch) / "index"
        shutil.copytree(cached_index(dataset, settings), index)
        tags = topic_tags(Searcher.open(index, settings), args.topics, behaviour.seed)
        documents = versions_dir(index) / current_version(index) / "documents.parquet"
        table = pq.read_table(documents)
        table = table.set_column(table.schema.get_field_index("tags"), "tags", pa.array(tags, pa.list_(pa.string())))
        pq.write_table(table, documents)
        manifest = Manifest.read(documents.parent)
        manifest.files = file_inventory(documents.parent)
        manifest.write(documents.parent)
        searcher = Searcher.open(index, settings)
        doc_tags = dict(zip(searcher.doc_ids, tags))
        train = dataset.qrels("train")
        queries = {qid: dataset.queries[qid] for qid in train}
        served = lambda text: [searcher.doc_ids[d] for d in searcher.rank(text, 10, mode="hybrid").doc_ords]
        simulator = ClickSimulator(queries, train, served, behaviour, doc_tags)
        counts = write_sessions(QueryLog(index), simulator.sessions(args.sessions), queries, "hybrid", behaviour.seed)
        preferences = simulator._preferences(np.random.default_rng(behaviour.seed))
        searcher = Searcher.open(index, settings)  # reads the log the sessions went into
        test = dataset.qrels("test")
        qids = sorted(test)[: args.queries]
        plans = {qid: searcher.plan(dataset.queries[qid], "hybrid") for qid in qids}
        plain = {qid: [searcher.doc_ids[d] for d in searcher.rank_plan(plans[qid], 10, mode="hybrid").doc_ords]
                 for qid in qids}
        # A ranker trained from the same log's clicks learns the `personal` feature from its searchers' profiles.
        ranker, _ = train_from_clicks(searcher.reader, searcher.fusion_weights, "pbm")
        runs: dict[str, dict] = {name: {} for name in ("hybrid, off", "hybrid, on", "ltr, off", "ltr, on")}
        own_qrels, profiled = {}, 0
        for user in range(args.measured_users):
            profile = profile_for(searcher.reader, user_id(user), behaviour.profile_half_life_days)
            profiled += profile is not None
            liked = preferences[user]
            mine = {d for d, t in doc_tags.items() if liked.intersection(t)}
            for qid in qids:
                key = f"{user}/{qid}"
                own_qrels[key] = {d: 1 for d in mine} | {d: g + (d in mine) for d, g in test[qid].items() if g > 0}
                for mode in ("hybrid", "ltr"):
                    for state, audience in (("off", None), ("on", Audience(profile))):
                        if (mode, state) == ("hybrid", "off"):
                            ranked = plain[qid]
                        else:
                            ranked = [searcher.doc_ids[d] for d in searcher.rank_plan(
                                plans[qid], 10, mode=mode, ranker=ranker, audience=audience).doc_ords]
                        runs[f"{mode}, {state}"][key] = {d: 10.0 - i for i, d in enumerate(ranked)}
    print(f"{dataset.name}: {counts['sessions']:,} simulated sessions of the train queries ({counts['clicks']:,} "
          f"clicks), {args.users} users preferring {args.preferred_tags} of {args.topics} topic tags; measured on "
          f"{args.measured_users} users ({profiled} with a profile) × {len(qids)} test queries\n")
    print(f"The ranker: trained from the log's clicks (pbm), {ranker.card.label_source['profiled_queries']:,} of "
          f"its {ranker.card.label_source['queries']:,} queries with their searchers' pooled profile.\n")
    print("| served | profile | nDCG@10 (own relevance) |\n|---|---|---|")
    for name, run in runs.items():
        mode, state = name.split(", ")
        print(f"| {mode} | {state} | {score_run(run, own_qrels)[0]['ndcg@10']:.4f} |")


if __name__ == "__main__":
    main()
