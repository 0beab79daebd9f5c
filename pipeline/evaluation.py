"""Evaluation on BEIR-layout folders: cached indexes, TREC run files, per-query metrics via ir-measures."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import ir_measures
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ir_measures import AP, RR, R, nDCG
from tqdm import tqdm

from . import schemas
from .build import build_index
from .config import Settings
from .embeddings import EmbeddingCache, encode_queries_with_cache
from .features import FEATURES, extract
from .fusion import fuse, tune_weights
from .hybrid import fuse_configured, recall
from .index_store import current_version
from .ranking import RANKERS_DIR, Ranker, TrainingSet, folds, split_queries
from .search import Searcher

# Names in the JSON contract → ir-measures measures.
MEASURES = {"ndcg@10": nDCG @ 10, "recall@100": R @ 100, "mrr@10": RR @ 10, "map": AP}
RUN_DEPTH = 1000

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


@dataclass
class BeirDataset:
    path: Path
    queries: dict[str, str]

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def load(cls, path: Path | str) -> BeirDataset:
        path = Path(path)
        if not (path / "corpus.jsonl").is_file():
            raise FileNotFoundError(f"{path} is not a BEIR folder: corpus.jsonl is missing")
        queries = {}
        with open(path / "queries.jsonl", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    queries[str(record["_id"])] = record["text"]
        return cls(path, queries)

    def splits(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "qrels").glob("*.tsv"))

    def qrels(self, split: str) -> Qrels:
        path = self.path / "qrels" / f"{split}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"{self.name} has no split {split!r}; it has {self.splits()}")
        qrels: Qrels = {}
        with open(path, encoding="utf-8") as handle:
            for row in csv.reader(handle, delimiter="\t"):
                if not row or row[0] == "query-id":
                    continue
                qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
        return qrels

    def fingerprint(self) -> str:
        corpus = self.path / "corpus.jsonl"
        stat = corpus.stat()
        return hashlib.sha256(f"{corpus.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]


def cached_index(dataset: BeirDataset, settings: Settings, show_progress: bool = False) -> Path:
    """The index of a dataset's corpus under the cache folder, built on first use.

    The key holds everything that changes the index: corpus, analyzer, and the encoder when dense is on.
    """
    dense = "nodense"
    if settings.dense.enabled:
        from .dense import resolve_encoder_name
        from .ingest import ingest

        langs = ingest([dataset.path]).documents.column("lang").to_pylist()
        dense = re.sub(r"[^A-Za-z0-9._-]+", "_", resolve_encoder_name(settings, langs))
    key = f"{dataset.name}-{dataset.fingerprint()}-{settings.analyzer.fingerprint()}-{dense}"
    index_dir = settings.cache_dir / "indexes" / key
    if current_version(index_dir) is None:
        build_index([dataset.path], index_dir, settings, show_progress=show_progress)
    return index_dir


def settings_for(method: str, settings: Settings, encoder: str | None = None, dense: bool = True) -> Settings:
    """The settings an evaluation runs with: lexical methods, or `dense=False`, skip the (slow) dense build."""
    if method == "dense" and not dense:
        raise ValueError("--method dense needs the dense branch")
    dense = settings.dense.model_copy(update={"enabled": dense and method in DENSE_METHODS})
    if encoder:
        dense = dense.model_copy(update={"encoder": encoder})
    return settings.model_copy(update={"dense": dense})


def score_run(run: Run, qrels: Qrels) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean and per-query values of MEASURES; a judged query missing from the run scores 0."""
    per_query = {qid: dict.fromkeys(MEASURES, 0.0) for qid in qrels}
    names = {str(measure): name for name, measure in MEASURES.items()}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, run):
        if metric.query_id in per_query:
            per_query[metric.query_id][names[str(metric.measure)]] = float(metric.value)
    means = {name: sum(q[name] for q in per_query.values()) / max(len(per_query), 1) for name in MEASURES}
    return means, per_query


def write_trec_run(path: Path, run: Run, tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for qid, scores in run.items():
            ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
            for rank, (doc_id, score) in enumerate(ranked, 1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


def run_table(run: Run, method: str) -> pa.Table:
    rows = []
    for qid, scores in run.items():
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        rows.extend(
            {"query_id": qid, "doc_id": d, "rank": r, "score": s, "method": method}
            for r, (d, s) in enumerate(ranked, 1)
        )
    return pa.Table.from_pylist(rows, schema=schemas.RUN)


def bm25_run(searcher: Searcher, queries: dict[str, str], depth: int, show_progress: bool = False) -> Run:
    run: Run = {}
    for qid, text in tqdm(queries.items(), desc="bm25", unit="q", disable=not show_progress):
        ranking = searcher.rank(text, k=depth, syntax=False)
        run[qid] = {searcher.doc_ids[d]: float(s) for d, s in zip(ranking.doc_ords.tolist(), ranking.scores)}
    return run


def dense_run(searcher: Searcher, queries: dict[str, str], depth: int, show_progress: bool = False) -> Run:
    encoder = searcher.query_encoder()
    qids = list(queries)
    vectors = _query_vectors(searcher, encoder, [queries[q] for q in qids])
    run: Run = {}
    for qid, vector in tqdm(zip(qids, vectors), total=len(qids), desc="dense", unit="q", disable=not show_progress):
        docs, scores = searcher.dense.rank(vector, depth)
        run[qid] = {searcher.doc_ids[d]: float(s) for d, s in zip(docs.tolist(), scores.tolist())}
    return run


def _query_vectors(searcher: Searcher, encoder, texts: list[str]):
    """All queries in one batch (far faster than one by one), through the embedding cache."""
    cache = EmbeddingCache(searcher.settings.cache_dir, encoder.model_id, encoder.dim)
    return encode_queries_with_cache(encoder, texts, cache)


def _contexts(searcher: Searcher, queries: dict[str, str], show_progress: bool, label: str):
    """Per query: its context and branch results; query vectors are encoded in one batch."""
    qids = list(queries)
    vectors = [None] * len(qids)
    if searcher.has_dense:
        vectors = list(_query_vectors(searcher, searcher.query_encoder(), [queries[q] for q in qids]))
    out = {}
    for qid, vector in tqdm(zip(qids, vectors), total=len(qids), desc=label, unit="q", disable=not show_progress):
        ctx = searcher.prepare(queries[qid], vector=vector)
        out[qid] = (ctx, recall(searcher, ctx))
    return out


def _to_run(searcher: Searcher, docs, scores) -> dict[str, float]:
    return {searcher.doc_ids[d]: float(s) for d, s in zip(np.asarray(docs).tolist(), np.asarray(scores).tolist())}


def fusion_run(method: str):
    def run_method(searcher: Searcher, queries: dict[str, str], depth: int, show_progress: bool = False,
                   train: tuple[dict[str, str], Qrels] | None = None) -> Run:
        fusion = searcher.settings.fusion
        weights = searcher.settings.fusion.weights
        if method != "rrf" and train is not None:
            weights = tune_fusion(searcher, method, *train, show_progress=show_progress)
        contexts = _contexts(searcher, queries, show_progress, method)
        return {
            qid: _to_run(searcher, *fuse(branches, method, weights, fusion.rrf_k, fusion.normalization))
            for qid, (_, branches) in contexts.items()
        }

    return run_method


def tune_fusion(searcher: Searcher, method: str, queries: dict[str, str], qrels: Qrels,
                show_progress: bool = False) -> dict[str, float]:
    """Weights that maximise nDCG@10 on a train split; stored as fusion-METHOD.json beside the versions."""
    fusion = searcher.settings.fusion
    contexts = _contexts(searcher, queries, show_progress, f"tune {method}")
    qids = list(contexts)
    per_query = [contexts[q][1] for q in qids]

    def objective(fused) -> float:
        run = {qid: _to_run(searcher, docs[:10], scores[:10]) for qid, (docs, scores) in zip(qids, fused)}
        return score_run(run, {q: qrels[q] for q in qids})[0]["ndcg@10"]

    weights, best = tune_weights(per_query, objective, method, searcher.branch_names(), fusion.rrf_k,
                                 fusion.normalization)
    (searcher.index.root / f"fusion-{method}.json").write_text(
        json.dumps({"method": method, "weights": weights, "train_ndcg@10": best}, indent=2)
    )
    return weights


def _training_set(searcher: Searcher, contexts: dict, qrels: Qrels) -> TrainingSet:
    rows, labels, groups, qids, docs_per_query = [], [], [], [], []
    candidates_n = searcher.settings.ranker.candidates
    for qid, (ctx, branches) in contexts.items():
        docs = fuse_configured(searcher, branches)[0][:candidates_n]
        rows.append(extract(searcher, ctx, docs, branches))
        judged = qrels.get(qid, {})
        labels.append(np.array([judged.get(searcher.doc_ids[d], 0) for d in docs.tolist()], dtype=np.float64))
        groups.append(len(docs))
        qids.append(qid)
        docs_per_query.append(docs)
    features = np.vstack(rows) if rows else np.zeros((0, len(FEATURES)))
    return TrainingSet(features, np.concatenate(labels) if labels else np.zeros(0), groups, qids, docs_per_query)


def validation_fraction(n_queries: int, config) -> float:
    """Queries held out for early stopping: none when there are too few to spare."""
    return 0.0 if n_queries < config.small_below_queries else config.validation_fraction


def train_ranker(searcher: Searcher, training: TrainingSet, trained_on: str) -> Ranker:
    config = searcher.settings.ranker
    train_idx, valid_idx = split_queries(len(training.groups), validation_fraction(len(training.groups), config),
                                         config.seed)
    return Ranker.train(training.subset(train_idx), training.subset(valid_idx), config, trained_on,
                        searcher.compatibility())


def ltr_run(searcher: Searcher, queries: dict[str, str], depth: int, show_progress: bool = False,
            train: tuple[dict[str, str], Qrels] | None = None, test_qrels: Qrels | None = None,
            dataset_name: str = "") -> Run:
    """Train on the train split and rank the test queries; without one, k-fold cross-validation over the test
    queries, so that no query is ranked by a model that saw it."""
    contexts = _contexts(searcher, queries, show_progress, "ltr features")
    testing = _training_set(searcher, contexts, test_qrels or {})
    run: Run = {}
    if train is not None:
        training = _training_set(searcher, _contexts(searcher, train[0], show_progress, "ltr train"), train[1])
        ranker = train_ranker(searcher, training, f"{dataset_name}/train")
        ranker.save(searcher.index.root / RANKERS_DIR)
        plans = [(ranker, list(range(len(testing.groups))))]
    else:
        plans = []
        for fold in folds(len(testing.groups), searcher.settings.ranker.folds, searcher.settings.ranker.seed):
            others = sorted(set(range(len(testing.groups))) - set(fold))
            plans.append((train_ranker(searcher, testing.subset(others), f"{dataset_name}/cv"), fold))
    for ranker, members in plans:
        for i in members:
            rows = testing.rows_of(i)
            scores = ranker.predict(testing.features[rows])
            run[testing.query_ids[i]] = _to_run(searcher, testing.doc_ords[i], scores)
    return run


RunMethod = Callable[..., Run]
METHODS: dict[str, RunMethod] = {
    "bm25": bm25_run,
    "dense": dense_run,
    "rrf": fusion_run("rrf"),
    "weighted_rrf": fusion_run("weighted_rrf"),
    "convex": fusion_run("convex"),
    "dbsf": fusion_run("dbsf"),
    "ltr": ltr_run,
}
DENSE_METHODS = {"dense", "rrf", "weighted_rrf", "convex", "dbsf", "ltr"}
TRAINED_METHODS = {"weighted_rrf", "convex", "dbsf", "ltr"}


def evaluate(
    dataset_dir: Path | str,
    method: str = "bm25",
    split: str = "test",
    settings: Settings | None = None,
    show_progress: bool = False,
    encoder: str | None = None,
    dense: bool = True,
) -> dict:
    """Run `method` on a split's judged queries; write the TREC run and metrics Parquet; return the summary."""
    settings = settings_for(method, settings or Settings(), encoder, dense)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    dataset = BeirDataset.load(dataset_dir)
    qrels = dataset.qrels(split)
    queries = {qid: dataset.queries[qid] for qid in qrels if qid in dataset.queries}
    searcher = Searcher.open(cached_index(dataset, settings, show_progress), settings)
    extra = {}
    if method in TRAINED_METHODS:
        train_split = "train" if "train" in dataset.splits() and split != "train" else None
        if train_split:
            train_qrels = dataset.qrels(train_split)
            train_ids = sorted(q for q in train_qrels if q in dataset.queries)
            cap = settings.ranker.max_train_queries
            if len(train_ids) > cap:
                keep = np.random.default_rng(settings.ranker.seed).choice(len(train_ids), cap, replace=False)
                train_ids = [train_ids[i] for i in sorted(keep)]
            extra["train"] = ({q: dataset.queries[q] for q in train_ids}, train_qrels)
    if method == "ltr":
        extra.update(test_qrels=qrels, dataset_name=dataset.name)
    run = METHODS[method](searcher, queries, RUN_DEPTH, show_progress, **extra)
    means, per_query = score_run(run, {qid: qrels[qid] for qid in queries})
    label = method if settings.dense.enabled or method not in DENSE_METHODS else f"{method}-lexical"
    stem = f"{dataset.name}.{label}.{split}"
    runs_dir = settings.cache_dir / "runs"
    write_trec_run(runs_dir / f"{stem}.trec", run, f"sousuo-{label}")
    pq.write_table(run_table(run, label), runs_dir / f"{stem}.run.parquet")
    now = datetime.now(UTC)
    metric_rows = [
        {"dataset": dataset.name, "method": label, "split": split, "query_id": qid, "measure": name,
         "value": value, "evaluated_at": now}
        for qid, values in per_query.items()
        for name, value in values.items()
    ] + [
        {"dataset": dataset.name, "method": label, "split": split, "query_id": "all", "measure": name,
         "value": value, "evaluated_at": now}
        for name, value in means.items()
    ]
    (settings.cache_dir / "metrics").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(metric_rows, schema=schemas.METRICS),
                   settings.cache_dir / "metrics" / f"{stem}.parquet")
    return {"dataset": dataset.name, "method": label, "split": split, "queries": len(queries),
            **{name: round(value, 4) for name, value in means.items()}}


def train_from_judgments(searcher: Searcher, dataset: BeirDataset, split: str = "train",
                         show_progress: bool = False) -> Ranker:
    """Train and publish the ranker of an index from a judged dataset whose doc ids are the index's."""
    qrels = dataset.qrels(split)
    queries = {q: dataset.queries[q] for q in qrels if q in dataset.queries}
    training = _training_set(searcher, _contexts(searcher, queries, show_progress, "features"), qrels)
    ranker = train_ranker(searcher, training, f"{dataset.name}/{split}")
    ranker.save(searcher.index.root / RANKERS_DIR)
    return ranker


def evaluate_searcher(searcher: Searcher, dataset: BeirDataset, split: str, modes: list[str]) -> list[dict]:
    """Metrics of the index's own search modes (its published ranker for `ltr`) on a judged split."""
    qrels = dataset.qrels(split)
    queries = {q: dataset.queries[q] for q in qrels if q in dataset.queries}
    rows = []
    for mode in modes:
        if (mode == "dense" and not searcher.has_dense) or (mode == "ltr" and not searcher.has_ranker):
            continue
        run = {}
        for qid, text in queries.items():
            ranking = searcher.rank(text, k=100, syntax=False, mode=mode)
            run[qid] = _to_run(searcher, ranking.doc_ords, ranking.scores)
        means, _ = score_run(run, qrels)
        rows.append({"mode": mode, "queries": len(queries), **{k: round(v, 4) for k, v in means.items()}})
    return rows


# -- reproduction matrix --------------------------------------------------------------------------------


@dataclass
class MatrixCell:
    dataset: str
    method: str
    expected: float  # nDCG@10
    split: str = "test"
    slow: bool = False
    dense: bool = True


def load_matrix(path: Path, datasets_dir: Path | None = None) -> tuple[list[Path], float, list[MatrixCell]]:
    """(dataset roots, `datasets_dir` first when given; tolerance; cells) of a reproduction matrix."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    base = Path(path).resolve().parent
    roots = [Path(datasets_dir)] if datasets_dir else []
    roots += [(base / root).resolve() for root in spec["dataset_roots"]]
    cells = [
        MatrixCell(c["dataset"], c["method"], float(c["ndcg@10"]), c.get("split", "test"), bool(c.get("slow")),
                   bool(c.get("dense", True)))
        for c in spec["cells"]
    ]
    return roots, float(spec["tolerance"]), cells


def dataset_path(roots: list[Path], name: str) -> Path:
    for root in roots:
        if (root / name / "corpus.jsonl").is_file():
            return root / name
    raise FileNotFoundError(f"dataset {name!r} is in none of {[str(r) for r in roots]}")


def run_matrix(path: Path, settings: Settings, include_slow: bool = False, show_progress: bool = False):
    """Each cell's measured nDCG@10 beside its expected value; yields one row per cell as it finishes."""
    roots, tolerance, cells = load_matrix(path, settings.datasets_dir)
    for cell in cells:
        if cell.slow and not include_slow:
            continue
        summary = evaluate(dataset_path(roots, cell.dataset), cell.method, cell.split, settings, show_progress,
                           dense=cell.dense)
        got = summary["ndcg@10"]
        yield {"dataset": cell.dataset, "method": summary["method"], "split": cell.split, "expected": cell.expected,
               "ndcg@10": got, "ok": abs(got - cell.expected) <= tolerance}
