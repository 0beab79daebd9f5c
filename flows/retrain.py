"""Prefect flows: ranker retraining, encoder fine-tuning and the evaluation report over an index."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from pipeline.config import Settings
from pipeline.constants import SEARCH_MODES
from pipeline.dense.static import StaticCard
from pipeline.dense.tuned import TunedCard
from pipeline.eval.beir import BeirDataset
from pipeline.experiment.runs import evaluate_searcher
from pipeline.rank.encoder_data import (
    click_triples,
    query_triples,
    title_triples,
    tune_encoder,
)
from pipeline.rank.training import (
    plan_queries,
    train_adaptive,
    train_from_clicks,
    train_from_judgments,
    tune_fusion,
)
from pipeline.searcher import Searcher


def judged_splits(judgments: str) -> tuple[str, str]:
    """(train split, test split) of a judgments folder; the same split twice when it has only one."""
    splits = BeirDataset.load(judgments).splits()
    return ("train" if "train" in splits else splits[0]), ("test" if "test" in splits else splits[0])


@task
def train_task(index: str, judgments: str, split: str, settings: Settings, tune_weights: bool = False) -> dict:
    """Train and publish the ranker on a judged split; `index` is an index folder or one version's folder.

    With `tune_weights`, first tune the configured fusion method's weights and the adaptive fusion model on the
    same split and publish them, so the ranker learns on the candidates it will be served (the hybrid mode's).
    Input errors are not retried: they cannot pass."""
    searcher = Searcher.open(Path(index), settings)
    dataset = BeirDataset.load(judgments)
    result = {}
    if tune_weights:
        queries, qrels = dataset.judged_queries(split)
        planned = plan_queries(searcher.reader, queries, label="tune fusion")
        weights = tune_fusion(searcher.reader, settings.fusion.method, planned, qrels, f"{dataset.name}/{split}")
        weights.save(searcher.reader.root)
        train_adaptive(searcher.reader, planned, qrels, weights, f"{dataset.name}/{split}").save(searcher.reader.root)
        searcher = Searcher(searcher.reader)  # serves the weights and model just published
        result["fusion_weights"] = weights.weights_id
    ranker = train_from_judgments(searcher.reader, dataset, searcher.fusion_weights, split)
    return {"model_id": ranker.card.model_id, **result, **ranker.card.metrics}


@flow(name="sousuo-retrain", log_prints=True)
def retrain_flow(index: str, judgments: str, split: str | None = None, tune_weights: bool = False) -> str:
    """Train the LambdaMART ranker on the judged queries (`train`, or the only split) and publish it."""
    result = train_task(index, judgments, split or judged_splits(judgments)[0], Settings(), tune_weights)
    create_table_artifact([{"measure": k, "value": str(v)} for k, v in result.items()], key="sousuo-retrain")
    return result["model_id"]


@task
def train_from_clicks_task(index: str, source: str, judgments: str | None, split: str | None,
                           settings: Settings) -> dict:
    """Train the ranker from the query log's clicks; judgments, when given, only decide whether it is published."""
    searcher = Searcher.open(Path(index), settings)
    judged = None
    if judgments:
        dataset = BeirDataset.load(judgments)
        queries, qrels = dataset.judged_queries(split or judged_splits(judgments)[1])
        judged = (dataset.name, queries, qrels)
    ranker, verdict = train_from_clicks(searcher.reader, searcher.fusion_weights, source, judged)
    return {"model_id": ranker.card.model_id, "published": verdict.publish, **ranker.card.label_source,
            "guard": vars(verdict)}


@flow(name="sousuo-retrain-from-clicks", log_prints=True)
def retrain_from_clicks_flow(index: str, source: str = "pbm", judgments: str | None = None,
                             split: str | None = None) -> dict:
    """Train LambdaMART from click-model labels of the index's query log; publish it only if it does not lose
    offline (on the judged split where given, else on held-out click labels)."""
    result = train_from_clicks_task(index, source, judgments, split, Settings())
    create_table_artifact([{"measure": k, "value": str(v)} for k, v in result.items()],
                          key="sousuo-retrain-from-clicks")
    return result


@task
def tune_encoder_task(index: str, judgments: str | None, split: str | None, clicks: str | None,
                      settings: Settings, kind: str = "minilm") -> dict:
    """Fine-tune MiniLM on the index and publish it as its tuned encoder: on a judged split where given, else on
    the query log's click labels (`clicks`: a click model), else on title pseudo-queries."""
    reader = Searcher.open(Path(index), settings).reader
    if judgments:
        dataset = BeirDataset.load(judgments)
        split = split or judged_splits(judgments)[0]
        queries, qrels = dataset.judged_queries(split)
        triples = query_triples(reader, queries, qrels, {"source": "judgments", "dataset": dataset.name,
                                                          "split": split})
    elif clicks:
        triples = click_triples(reader, clicks)
    else:
        triples = title_triples(reader)
    folder = tune_encoder(reader, triples, kind=kind)
    if kind == "static":
        card = StaticCard.read(folder)
        return {"model_id": card.model_id, **{k: v for k, v in card.fit["tuned"].items() if k != "loss_curve"}}
    card = TunedCard.read(folder)
    return {"model_id": card.model_id, **card.data, "steps": card.steps, "processes": card.processes,
            "first_loss": card.loss_curve[0] if card.loss_curve else None,
            "last_loss": card.loss_curve[-1] if card.loss_curve else None, "seconds": card.seconds}


@flow(name="sousuo-tune-encoder", log_prints=True)
def tune_encoder_flow(index: str, judgments: str | None = None, split: str | None = None,
                      clicks: str | None = None, kind: str = "minilm") -> str:
    """The retrain flow's encoder step: fine-tune and publish the tuned encoder (`kind` static: a new version of
    the index's static model); `sousuo build --encoder tuned` (or `static`) then re-embeds the corpus with it,
    through the embedding cache, keyed by its id."""
    result = tune_encoder_task(index, judgments, split, clicks, Settings(), kind)
    create_table_artifact([{"measure": k, "value": str(v)} for k, v in result.items()], key="sousuo-tune-encoder")
    return result["model_id"]


@task
def evaluate_task(index: str, judgments: str, split: str, methods: list[str], settings: Settings) -> list[dict]:
    return evaluate_searcher(Searcher.open(Path(index), settings), BeirDataset.load(judgments), split, methods)


@flow(name="sousuo-report", log_prints=True)
def report_flow(index: str, judgments: str, split: str = "test",
                methods: tuple[str, ...] = SEARCH_MODES) -> list[dict]:
    """Metrics of each search mode of the published index on judged queries, as a Prefect table artifact."""
    rows = evaluate_task(index, judgments, split, list(methods), Settings())
    create_table_artifact(rows, key="sousuo-evaluation", description=f"{Path(judgments).name} / {split}")
    return rows
