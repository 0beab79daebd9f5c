"""Click models on simulated sessions of a judged dataset's train queries: held-out log-likelihood and perplexity
per model and position, and the PBM's propensities against the simulated (1/r)^eta. Prints Markdown for
docs/behaviour.md (these are fits, not timings)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipeline.behaviour.clickmodels import fit_and_compare
from pipeline.config import Settings
from pipeline.eval.beir import BeirDataset
from pipeline.experiment.runs import (
    _train_split,
    cached_index,
    settings_for,
    simulated_click_log,
)
from pipeline.rank.training import plan_queries, training_set
from pipeline.retrieval.weights import FusionWeights
from pipeline.searcher import Searcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--sessions", type=int, default=50_000)
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--no-dense", action="store_true")
    args = parser.parse_args()
    settings = settings_for("ltr", Settings(), dense=not args.no_dense)
    settings = settings.model_copy(update={"behaviour": settings.behaviour.model_copy(update={"eta": args.eta})})
    dataset = BeirDataset.load(args.dataset)
    searcher = Searcher.open(cached_index(dataset, settings), settings)
    reader = searcher.reader
    train = _train_split(dataset, "test", settings)
    weights = FusionWeights(settings.fusion.method, settings.fusion.weights)
    training = training_set(reader, plan_queries(reader, train[0]), train[1], weights)
    log = simulated_click_log(searcher, training, train, args.sessions)
    fitted = fit_and_compare(log, settings.behaviour)
    print(f"{dataset.name}, {args.sessions} sessions, eta {args.eta}: {log.n_sessions} sessions, "
          f"{int(log.clicks.sum())} clicks, {len(log.queries)} queries, {log.n_pairs} pairs\n")
    print("| model | log-likelihood | perplexity |\n|---|---|---|")
    for row in fitted.fit:
        if row["position"] is None:
            print(f"| {row['model']} | {row['log_likelihood']:.4f} | {row['perplexity']:.4f} |")
    print("\n| position | true (1/r)^eta | PBM | SDBN examination | perplexity PBM | SDBN | CTR |")
    print("|---|---|---|---|---|---|---|")
    by = {(r["model"], r["position"]): r for r in fitted.fit}
    pbm, sdbn = fitted.models["pbm"].propensities(), fitted.models["sdbn"].propensities()
    for r in range(len(pbm)):
        print(f"| {r + 1} | {(1 / (r + 1)) ** args.eta:.3f} | {pbm[r]:.3f} | {sdbn[r]:.3f} | "
              + " | ".join(f"{by[(m, r + 1)]['perplexity']:.4f}" for m in ("pbm", "sdbn", "ctr")) + " |")
    print(f"\nmax |PBM - true| = {np.abs(pbm - (1 / np.arange(1, len(pbm) + 1)) ** args.eta).max():.3f}")


if __name__ == "__main__":
    main()
