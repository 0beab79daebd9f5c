"""Evaluation of a method on a BEIR-layout folder: cached indexes, runs per method, TREC and Parquet outputs.

It reads and measures only: weights tuned and rankers trained here stay in memory and never reach an index."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .. import schemas
from ..behaviour.labels import LABEL_SOURCES, click_labels
from ..behaviour.sessions import ClickLog, query_key
from ..behaviour.simulate import ClickSimulator, write_sessions
from ..config import DenseConfig, Settings
from ..constants import SEARCH_MODES
from ..errors import InputError
from ..eval.beir import BeirDataset, Qrels
from ..eval.metrics import Run, run_of, run_table, score_run, write_trec_run
from ..index.build import build_index
from ..index.querylog import QueryLog
from ..index.store import current_version
from ..rank.model import TrainingSet, folds
from ..rank.training import (
    PlannedQueries,
    QueryRows,
    fold_weights,
    plan_queries,
    query_rows,
    query_vectors,
    relabelled,
    stack_rows,
    train_adaptive,
    train_ranker,
    tune_fusion,
)
from ..retrieval.adaptive import BASE_ARM, AdaptiveFusion, Rule, query_signals
from ..retrieval.fusion import fuse
from ..retrieval.hybrid import fuse_branches
from ..retrieval.weights import FusionWeights
from ..search.reader import IndexReader
from ..searcher import Searcher

RUN_DEPTH = 1000
Train = tuple[dict[str, str], Qrels] | None  # the train split's queries and judgments, when there is one
# `sousuo eval --encoder` names that fine-tune on the dataset first, and what each tunes.
TUNED_ENCODERS = {"tuned": "minilm", "tuned-static": "static"}
TRAIN_LABELS = ("judgments", *(f"clicks-{source}" for source in LABEL_SOURCES))


def cached_index(dataset: BeirDataset, settings: Settings, show_progress: bool = False) -> Path:
    """The index of a dataset's corpus under the cache folder, built on first use.

    The key holds everything that changes the index: corpus, analyzer, and the encoder when dense is on (with what
    makes a static model, for a static one).
    """
    dense = "nodense"
    if settings.dense.enabled:
        from ..dense.choice import chosen_for_speed, decide
        from ..ingest.ingest import ingest

        choice = decide(ingest([dataset.path]).documents, settings)
        dense = encoder_key(choice.name) + (f"-{settings.dense.static_fingerprint()}" if choice.static else "")
        # A static model `auto` made within the time budget saw less of its teacher than a configured one.
        budget = f"-budget{settings.dense.time_budget_s:g}s-share{settings.dense.static_entries_share:g}"
        dense += budget if chosen_for_speed(choice) else ""
    key = f"{dataset.name}-{dataset.fingerprint()}-{settings.analyzer.fingerprint()}-{dense}"
    index_dir = settings.cache_dir / "indexes" / key
    if current_version(index_dir) is None:
        build_index([dataset.path], index_dir, settings, show_progress=show_progress)
    return index_dir


def encoder_key(name: str) -> str:
    """An encoder as a file-name part: a model folder (tuned, or a static model) by its model id, which says which
    model it is."""
    if Path(name).is_dir():
        from ..dense.encoders import load_encoder

        name = load_encoder(name).model_id
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def settings_for(method: str, settings: Settings, encoder: str | None = None, dense: bool = True) -> Settings:
    """The settings an evaluation runs with: lexical methods, or `dense=False`, skip the (slow) dense build."""
    if method == "dense" and not dense:
        raise InputError("--method dense needs the dense branch")
    dense = settings.dense.model_copy(update={"enabled": dense and method in DENSE_METHODS})
    if encoder:
        dense = dense.model_copy(update={"encoder": encoder})
    return settings.model_copy(update={"dense": dense})


def tuned_encoder_for(dataset: BeirDataset, split: str, settings: Settings, show_progress: bool = False,
                      kind: str = "minilm") -> Path:
    """MiniLM (`kind` minilm), or the corpus's static encoder (`kind` static), fine-tuned on the dataset's train split
    (title pseudo-queries where it has none, or where `split` is train itself). Trained once into a cached index,
    MiniLM into the lexical one and the static model beside the one it was distilled in, and reused by every
    evaluation with the same training settings."""
    from ..rank.encoder_data import query_triples, title_triples, tune_encoder

    base = settings_for("dense", settings, "static") if kind == "static" else settings_for("bm25", settings)
    reader = IndexReader.open(cached_index(dataset, base, show_progress), base)
    judged = "train" in dataset.splits() and split != "train"
    source = {"source": "judgments", "dataset": dataset.name, "split": "train"} if judged else \
        {"source": "titles", "dataset": dataset.name}
    teacher = None
    if kind == "static":
        from ..dense.encoders import choose_encoder_name

        teacher = choose_encoder_name(reader.version.documents.column("lang").to_pylist())
    found = tuned_before(reader.root, source, settings.dense, teacher)
    if found is not None:
        return found
    if judged:
        queries, qrels = dataset.judged_queries("train")
        triples = query_triples(reader, queries, qrels, source, show_progress)
    else:
        triples = title_triples(reader, show_progress)
        triples.source = {**source, **triples.source}
    return tune_encoder(reader, triples, publish=kind != "static", kind=kind)


def tuned_before(index_root: Path, source: dict, config: DenseConfig, static_teacher: str | None = None
                 ) -> Path | None:
    """An encoder an earlier evaluation tuned in the index on the same data with the same settings: MiniLM, or, given
    `static_teacher`, the index's published static model of that teacher (tuned versions are never published)."""
    if static_teacher is not None:
        from ..dense.static import StaticCard, published_static, static_versions

        start = StaticCard.read(published_static(index_root, static_teacher)).model_id
        wanted = (source["source"], source.get("split"), start, config.tune_static_epochs,
                  config.tune_static_learning_rate)
        for folder in static_versions(index_root):
            tuned = (StaticCard.read(folder).fit or {}).get("tuned", {})
            data = tuned.get("data", {})
            if (data.get("source"), data.get("split"), tuned.get("from"), tuned.get("epochs"),
                    tuned.get("learning_rate")) == wanted:
                return folder
        return None
    from ..dense.tuned import TunedCard, tuned_versions

    wanted = (source["source"], source.get("split"), config.tune_side, config.tune_epochs, config.tune_learning_rate)
    for folder in tuned_versions(index_root):
        card = TunedCard.read(folder)
        if (card.data.get("source"), card.data.get("split"), card.side, card.epochs, card.learning_rate) == wanted:
            return folder
    return None


def bm25_run(searcher: Searcher, queries: dict[str, str], depth: int, show_progress: bool = False, **_) -> Run:
    qids = list(queries)
    tops = searcher.rank_bm25_many([queries[qid] for qid in qids], depth)
    return {qid: run_of(searcher.doc_ids, docs, scores) for qid, (docs, scores) in zip(qids, tops)}


def dense_run(searcher: Searcher, queries: dict[str, str], depth: int, show_progress: bool = False, **_) -> Run:
    qids = list(queries)
    vectors = query_vectors(searcher.reader, [queries[q] for q in qids])
    run: Run = {}
    for qid, vector in tqdm(zip(qids, vectors), total=len(qids), desc="dense", unit="q", disable=not show_progress):
        run[qid] = run_of(searcher.doc_ids, *searcher.reader.dense.rank(vector, depth))
    return run


def cv_splits(qids: list[str], settings: Settings) -> list[tuple[list[str], list[str]]]:
    """(training queries, held-out queries) of each fold of the k-fold cross-validation that trained methods run
    where a dataset has no train split: the same folds for every method."""
    splits = []
    for fold in folds(len(qids), settings.fusion.adaptive.folds, settings.ranker.seed):
        held = set(fold)
        splits.append(([q for i, q in enumerate(qids) if i not in held], [qids[i] for i in fold]))
    return splits


def fusion_run(method: str):
    def run_method(searcher: Searcher, queries: dict[str, str], depth: int, show_progress: bool = False,
                   train: Train = None, test_qrels: Qrels | None = None, dataset_name: str = "", **_) -> Run:
        """Fused with weights tuned on the train split, else on each cross-validation fold's training queries
        (`fold_weights`); RRF has none to tune."""
        reader = searcher.reader
        fusion = reader.settings.fusion
        planned = plan_queries(reader, queries, show_progress, method)
        plans = [(FusionWeights(method, fusion.weights), list(planned))]
        if method != "rrf" and train is not None:
            planned_train = plan_queries(reader, train[0], show_progress, f"tune {method}")
            plans = [(tune_fusion(reader, method, planned_train, train[1], f"{dataset_name}/train"), list(planned))]
        elif method != "rrf" and test_qrels:
            plans = [(fold_weights(reader, method, {q: planned[q] for q in others}, test_qrels, f"{dataset_name}/cv"),
                      held) for others, held in cv_splits(list(planned), reader.settings)]
        return {
            qid: run_of(searcher.doc_ids, *fuse(planned[qid][1], method, weights.weights, fusion.rrf_k,
                                                fusion.normalization))
            for weights, members in plans for qid in members
        }

    return run_method


AdaptivePlans = list[tuple[AdaptiveFusion, list[str]]]  # each model and the test queries it fuses


def adaptive_models(reader: IndexReader, planned: PlannedQueries, train: Train, test_qrels: Qrels | None,
                    dataset_name: str, show_progress: bool,
                    learn: bool = True) -> tuple[PlannedQueries | None, AdaptivePlans]:
    """(the planned train queries, or None; each adaptive model with the test queries it fuses): one model
    learned on the train split over the configured method's weights tuned there, else one per fold of k-fold
    cross-validation over the test queries, over the weights tuned on the fold's training queries
    (`fold_weights`): either way the base is the weights `convex` fuses with. With `learn` off, each model is the
    bare base weights (a tree that always answers "balanced")."""
    fusion = reader.settings.fusion

    def model(on: PlannedQueries, qrels: Qrels, base: FusionWeights, trained_on: str) -> AdaptiveFusion:
        return train_adaptive(reader, on, qrels, base, trained_on) if learn else AdaptiveFusion(base, Rule(BASE_ARM, 0))

    if train is not None:
        planned_train = plan_queries(reader, train[0], show_progress, "train")
        base = tune_fusion(reader, fusion.method, planned_train, train[1], f"{dataset_name}/train")
        return planned_train, [(model(planned_train, train[1], base, f"{dataset_name}/train"), list(planned))]
    plans = []
    for others, held in cv_splits(list(planned), reader.settings):
        fold = {q: planned[q] for q in others}
        base = fold_weights(reader, fusion.method, fold, test_qrels or {}, f"{dataset_name}/cv")
        plans.append((model(fold, test_qrels or {}, base, f"{dataset_name}/cv"), held))
    return None, plans


def adaptive_run(searcher: Searcher, queries: dict[str, str], depth: int, show_progress: bool = False,
                 train: Train = None, test_qrels: Qrels | None = None, dataset_name: str = "", **_) -> Run:
    """Adaptive fusion (`adaptive_models`): each test query fused with the weights its model picks for it."""
    reader = searcher.reader
    planned = plan_queries(reader, queries, show_progress, "adaptive")
    _, plans = adaptive_models(reader, planned, train, test_qrels, dataset_name, show_progress)
    run: Run = {}
    for model, members in plans:
        for qid in members:
            plan, branches = planned[qid]
            weights = model.choose(query_signals(reader, plan, branches)).weights
            run[qid] = run_of(searcher.doc_ids, *fuse_branches(branches, reader.settings.fusion, weights))
    return run


def hybrid_run(searcher: Searcher, *args, **kwargs) -> Run:
    """Exactly what the `hybrid` search mode serves by default: adaptive fusion where it is enabled, else the
    configured fusion method, each trained as `sousuo train --tune-fusion` trains it."""
    fusion = searcher.settings.fusion
    return METHODS["adaptive" if fusion.adaptive.enabled else fusion.method](searcher, *args, **kwargs)


def simulated_click_log(searcher: Searcher, training: TrainingSet, train: tuple[dict[str, str], Qrels],
                        sessions: int) -> ClickLog:
    """Simulated users search the train queries and are shown each query's first fused candidates (what `hybrid`
    serves); their clicks, drawn from the judgments, go through a scratch query log and are read back from it."""
    reader = searcher.reader
    config = reader.settings.behaviour
    queries, qrels = train
    served = {queries[qid]: [reader.doc_ids[d] for d in docs[: config.positions].tolist()]
              for qid, docs in zip(training.query_ids, training.doc_ords)}
    simulator = ClickSimulator(queries, qrels, served.__getitem__, config)
    with tempfile.TemporaryDirectory(prefix="sousuo-clicks-") as scratch:
        log = QueryLog(scratch)
        write_sessions(log, simulator.sessions(sessions), queries, "hybrid", config.seed)
        return ClickLog.from_querylog(log, config.positions)


def simulated_click_training(searcher: Searcher, training: TrainingSet, train: tuple[dict[str, str], Qrels],
                             source: str, sessions: int) -> tuple[TrainingSet, dict]:
    """The train split's feature rows labelled from simulated clicks through click model `source` instead of its
    judgments: the judgments only drive the simulated users, never the labels."""
    queries = train[0]
    labels = click_labels(simulated_click_log(searcher, training, train, sessions), source,
                          searcher.reader.settings.behaviour)
    by_qid = {qid: labels.qrels.get(query_key(queries[qid]), {}) for qid in training.query_ids}
    return relabelled(searcher.reader, training, by_qid), labels.source


def ltr_run(searcher: Searcher, queries: dict[str, str], depth: int, show_progress: bool = False,
            train: Train = None, test_qrels: Qrels | None = None, dataset_name: str = "",
            train_labels: str = "judgments", sessions: int = 0) -> Run:
    """The ranker as `sousuo train --tune-fusion` trains and serves it: re-ordering the candidates of the hybrid
    mode's fusion (adaptive where enabled, as `hybrid_run` measures it). Trained on the train split; without one,
    by k-fold cross-validation over the test queries (the adaptive model's folds), so that no query is ranked
    by a model, ranker or fusion, that saw it.

    `train_labels` other than `judgments` label the train split from `sessions` simulated sessions' clicks."""
    reader = searcher.reader
    fusion = reader.settings.fusion
    planned = plan_queries(reader, queries, show_progress, "ltr")
    planned_train, plans = adaptive_models(reader, planned, train, test_qrels, dataset_name, show_progress,
                                           learn=fusion.adaptive.enabled)
    memo: dict[tuple, QueryRows] = {}

    def rows(split: str, qid: str, model: AdaptiveFusion) -> QueryRows:
        """Each query's rows once per weights it is fused with: folds whose models agree share them."""
        plan, branches = (planned_train if split == "train" else planned)[qid]
        weights = model.choose(query_signals(reader, plan, branches)).weights
        key = (split, qid, tuple(sorted(weights.weights.items())))
        if key not in memo:
            judged = (train[1] if split == "train" else test_qrels or {}).get(qid, {})
            memo[key] = query_rows(reader, plan, branches, judged, weights)
        return memo[key]

    run: Run = {}
    for model, members in plans:
        if planned_train is not None:
            training = stack_rows({q: rows("train", q, model) for q in planned_train})
            if train_labels != "judgments":
                training, _ = simulated_click_training(searcher, training, train,
                                                       train_labels.removeprefix("clicks-"), sessions)
        else:
            test = set(members)
            training = stack_rows({q: rows("test", q, model) for q in planned if q not in test})
        ranker = train_ranker(reader, training, f"{dataset_name}/{'train' if planned_train is not None else 'cv'}")
        for qid in members:
            features, _, docs = rows("test", qid, model)
            run[qid] = run_of(searcher.doc_ids, docs, ranker.predict(features))
    return run


RunMethod = Callable[..., Run]
METHODS: dict[str, RunMethod] = {
    "bm25": bm25_run,
    "dense": dense_run,
    "rrf": fusion_run("rrf"),
    "weighted_rrf": fusion_run("weighted_rrf"),
    "convex": fusion_run("convex"),
    "dbsf": fusion_run("dbsf"),
    "adaptive": adaptive_run,
    "hybrid": hybrid_run,
    "ltr": ltr_run,
}
DENSE_METHODS = {"dense", "rrf", "weighted_rrf", "convex", "dbsf", "adaptive", "hybrid", "ltr"}
TRAINED_METHODS = {"weighted_rrf", "convex", "dbsf", "adaptive", "hybrid", "ltr"}


def _train_split(dataset: BeirDataset, split: str, settings: Settings) -> Train:
    """The train split's judged queries (sampled down to `ranker.max_train_queries`), unless `split` is train."""
    if "train" not in dataset.splits() or split == "train":
        return None
    train_qrels = dataset.qrels("train")
    train_ids = sorted(q for q in train_qrels if q in dataset.queries)
    cap = settings.ranker.max_train_queries
    if len(train_ids) > cap:
        keep = np.random.default_rng(settings.ranker.seed).choice(len(train_ids), cap, replace=False)
        train_ids = [train_ids[i] for i in sorted(keep)]
    return {q: dataset.queries[q] for q in train_ids}, train_qrels


def evaluate(
    dataset_dir: Path | str,
    method: str = "bm25",
    split: str = "test",
    settings: Settings | None = None,
    show_progress: bool = False,
    encoder: str | None = None,
    dense: bool = True,
    train_labels: str = "judgments",
    sessions: int = 50_000,
) -> dict:
    """Run `method` on a split's judged queries; write the TREC run and metrics Parquet; return the summary.

    For `ltr`, `train_labels` `clicks-*` train on `sessions` simulated sessions over the train split instead of its
    judgments (see `simulated_click_training`)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    if train_labels not in TRAIN_LABELS:
        raise InputError(f"unknown training labels {train_labels!r}; choose from {list(TRAIN_LABELS)}")
    clicks = train_labels != "judgments"
    if clicks and method != "ltr":
        raise InputError("--train-labels applies to --method ltr only")
    if clicks and sessions <= 0:
        raise InputError(f"--sessions must be 1 or more, got {sessions}")
    settings = settings or Settings()
    dataset = BeirDataset.load(dataset_dir)
    encoder_name = encoder
    tuned = encoder in TUNED_ENCODERS and dense and method in DENSE_METHODS
    if tuned:
        encoder = str(tuned_encoder_for(dataset, split, settings, show_progress, TUNED_ENCODERS[encoder]))
    settings = settings_for(method, settings, encoder, dense)
    queries, qrels = dataset.judged_queries(split)
    searcher = Searcher.open(cached_index(dataset, settings, show_progress), settings)
    train = _train_split(dataset, split, settings) if method in TRAINED_METHODS else None
    if clicks and train is None:
        raise InputError(f"training from clicks simulates users on the train split, and {dataset.name} has none "
                         f"besides {split!r}")
    extra = {"train_labels": train_labels, "sessions": sessions, "eta": settings.behaviour.eta} if clicks else {}
    run = METHODS[method](searcher, queries, RUN_DEPTH, show_progress, train=train, test_qrels=qrels,
                          dataset_name=dataset.name, **({"train_labels": train_labels, "sessions": sessions}
                                                         if clicks else {}))
    means, per_query = score_run(run, {qid: qrels[qid] for qid in queries})
    label = method if settings.dense.enabled or method not in DENSE_METHODS else f"{method}-lexical"
    if settings.dense.enabled and settings.dense.encoder == "static":
        label += "-static"  # its runs and metrics sit beside the teacher's, not over them
    if tuned:
        label += f"-{encoder_name}"
    elif settings.dense.enabled and encoder and Path(encoder).is_dir():
        label += f"-{encoder_key(encoder)}"  # a model named by its folder: its runs do not replace the teacher's
    if clicks:
        label = f"{label}-{train_labels}-{sessions}"
    _write_outputs(settings.cache_dir, f"{dataset.name}.{label}.{split}", run, label, dataset.name, split, means,
                   per_query)
    return {"dataset": dataset.name, "method": label, "split": split, "queries": len(queries), **extra,
            **{name: round(value, 4) for name, value in means.items()}}


def _write_outputs(cache_dir: Path, stem: str, run: Run, label: str, dataset: str, split: str,
                   means: dict[str, float], per_query: dict[str, dict[str, float]]) -> None:
    """The TREC run, the run as Parquet, and per-query metrics as Parquet, for `sousuo sql` and the UI."""
    runs_dir = cache_dir / "runs"
    write_trec_run(runs_dir / f"{stem}.trec", run, f"sousuo-{label}")
    pq.write_table(run_table(run, label), runs_dir / f"{stem}.run.parquet")
    now = datetime.now(UTC)
    rows = [
        {"dataset": dataset, "method": label, "split": split, "query_id": qid, "measure": name, "value": value,
         "evaluated_at": now}
        for qid, values in [*per_query.items(), ("all", means)]
        for name, value in values.items()
    ]
    (cache_dir / "metrics").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas.METRICS), cache_dir / "metrics" / f"{stem}.parquet")


def evaluate_searcher(searcher: Searcher, dataset: BeirDataset, split: str, modes: list[str] = SEARCH_MODES
                      ) -> list[dict]:
    """Metrics of the index's own search modes (its published ranker for `ltr`) on a judged split."""
    queries, qrels = dataset.judged_queries(split)
    rows = []
    for mode in modes:
        if (mode == "dense" and not searcher.reader.has_dense) or (mode == "ltr" and not searcher.has_ranker):
            continue
        if mode == "bm25":
            run = bm25_run(searcher, queries, 100)
        else:
            tops = {qid: searcher.rank(text, k=100, syntax=False, mode=mode) for qid, text in queries.items()}
            run = {qid: run_of(searcher.doc_ids, top.doc_ords, top.scores) for qid, top in tops.items()}
        means, _ = score_run(run, qrels)
        rows.append({"mode": mode, "queries": len(queries), **{k: round(v, 4) for k, v in means.items()}})
    return rows
