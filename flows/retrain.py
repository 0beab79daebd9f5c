"""Prefect flows: ranker retraining and the evaluation report, both over an index and a judged BEIR folder."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from pipeline.config import Settings
from pipeline.evaluation import BeirDataset, evaluate_searcher, train_from_judgments
from pipeline.search import Searcher

MODES = ("bm25", "dense", "hybrid", "ltr")


def judged_splits(judgments: str) -> tuple[str, str]:
    """(train split, test split) of a judgments folder; the same split twice when it has only one."""
    splits = BeirDataset.load(judgments).splits()
    return ("train" if "train" in splits else splits[0]), ("test" if "test" in splits else splits[0])


@task(retries=1)
def train_task(index: str, judgments: str, split: str, settings: Settings) -> dict:
    """Train and publish the ranker on a judged split; `index` is an index folder or one version's folder."""
    searcher = Searcher.open(Path(index), settings)
    ranker = train_from_judgments(searcher, BeirDataset.load(judgments), split)
    return {"model_id": ranker.card.model_id, **ranker.card.metrics}


@flow(name="sousuo-retrain", log_prints=True)
def retrain_flow(index: str, judgments: str, split: str | None = None) -> str:
    """Train the LambdaMART ranker on the judged queries (`train`, or the only split) and publish it."""
    result = train_task(index, judgments, split or judged_splits(judgments)[0], Settings())
    create_table_artifact([{"measure": k, "value": str(v)} for k, v in result.items()], key="sousuo-retrain")
    return result["model_id"]


@task
def evaluate_task(index: str, judgments: str, split: str, methods: list[str], settings: Settings) -> list[dict]:
    return evaluate_searcher(Searcher.open(Path(index), settings), BeirDataset.load(judgments), split, methods)


@flow(name="sousuo-report", log_prints=True)
def report_flow(index: str, judgments: str, split: str = "test",
                methods: tuple[str, ...] = MODES) -> list[dict]:
    """Metrics of each search mode of the published index on judged queries, as a Prefect table artifact."""
    rows = evaluate_task(index, judgments, split, list(methods), Settings())
    create_table_artifact(rows, key="sousuo-evaluation", description=f"{Path(judgments).name} / {split}")
    return rows
