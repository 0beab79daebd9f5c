"""Offline training from judged queries: the ranker's feature rows and LambdaMART fits, tuned fusion weights, and
the adaptive fusion model."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..dense.cache import EmbeddingCache, encode_queries_with_cache
from ..eval.beir import BeirDataset, Qrels
from ..eval.metrics import run_of, score_run
from ..retrieval.adaptive import (
    ARMS,
    BASE_ARM,
    SIGNALS,
    AdaptiveFusion,
    arm_weights,
    fit_rule,
    query_signals,
    served_adaptive,
)
from ..retrieval.branches import BranchResult, available_branches
from ..retrieval.fusion import tune_weights
from ..retrieval.hybrid import fuse_branches, recall
from ..retrieval.weights import FusionWeights
from ..search.plan import QueryPlan, plan_query
from ..search.reader import IndexReader
from .features import FEATURES, extract
from .model import RANKERS_DIR, Ranker, TrainingSet, split_queries
from .rerank import ranker_candidates

PlannedQueries = dict[str, tuple[QueryPlan, dict[str, BranchResult]]]


def query_vectors(reader: IndexReader, texts: list[str]) -> np.ndarray:
    """All queries in one batch (far faster than one by one), through the embedding cache."""
    encoder = reader.query_encoder()
    cache = EmbeddingCache(reader.settings.cache_dir, encoder.model_id, encoder.dim)
    return encode_queries_with_cache(encoder, texts, cache)


def plan_queries(reader: IndexReader, queries: dict[str, str], show_progress: bool = False,
                 label: str = "queries") -> PlannedQueries:
    """Per query: its plan (written as prose, so operators are words) and every branch's results."""
    qids = list(queries)
    vectors = list(query_vectors(reader, [queries[q] for q in qids])) if reader.has_dense else [None] * len(qids)
    out = {}
    for qid, vector in tqdm(zip(qids, vectors), total=len(qids), desc=label, unit="q", disable=not show_progress):
        plan = plan_query(reader, queries[qid], syntax=False, vector=vector)
        out[qid] = (plan, recall(reader, plan))
    return out


def _ndcg_per_query(reader: IndexReader, fused: dict[str, tuple[np.ndarray, np.ndarray]], qrels: Qrels) -> np.ndarray:
    run = {qid: run_of(reader.doc_ids, docs[:10], scores[:10]) for qid, (docs, scores) in fused.items()}
    per_query = score_run(run, {q: qrels.get(q, {}) for q in fused})[1]
    return np.array([per_query[q]["ndcg@10"] for q in fused])


def tune_fusion(reader: IndexReader, method: str, planned: PlannedQueries, qrels: Qrels,
                trained_on: str) -> FusionWeights:
    """Weights of `method` that maximise nDCG@10 over judged queries' branch results."""
    fusion = reader.settings.fusion
    qids = list(planned)
    per_query = [planned[q][1] for q in qids]

    def objective(fused) -> float:
        return float(_ndcg_per_query(reader, dict(zip(qids, fused)), qrels).mean())

    weights, best = tune_weights(per_query, objective, method, available_branches(reader), fusion.rrf_k,
                                 fusion.normalization)
    return FusionWeights.tuned(method, weights, trained_on, best)


def train_adaptive(reader: IndexReader, planned: PlannedQueries, qrels: Qrels, base: FusionWeights,
                   trained_on: str) -> AdaptiveFusion:
    """The rule tree that picks, per query, the arm (scaling of `base`) with the best nDCG@10 on judged queries."""
    fusion = reader.settings.fusion
    gains = np.column_stack([
        _ndcg_per_query(reader, {q: fuse_branches(b, fusion, arm_weights(base, arm)) for q, (_, b) in planned.items()},
                        qrels)
        for arm in range(len(ARMS))
    ])
    signals = np.array([query_signals(reader, plan, branches).values() for plan, branches in planned.values()])
    rule = fit_rule(signals.reshape(len(planned), len(SIGNALS)), gains, fusion.adaptive)
    chosen = [rule.walk(dict(zip(SIGNALS, row)))[0] for row in signals]
    train_ndcg = float(gains[np.arange(len(chosen)), chosen].mean()) if chosen else 0.0
    base_ndcg = float(gains[:, BASE_ARM].mean()) if chosen else 0.0
    return AdaptiveFusion.trained(base, rule, trained_on, train_ndcg, base_ndcg)


QueryRows = tuple[np.ndarray, np.ndarray, np.ndarray]  # one query's feature rows, labels, and candidates


def query_rows(reader: IndexReader, plan: QueryPlan, branches: dict[str, BranchResult], judged: dict[str, int],
               weights: FusionWeights, adaptive: AdaptiveFusion | None = None) -> QueryRows:
    """Feature rows of one query's ranker candidates, labelled by its judgments (0 where unjudged)."""
    fused, docs = ranker_candidates(reader, plan, weights, adaptive, branches)
    features = extract(reader, plan, docs, fused.branches, fused.scores[: len(docs)])
    labels = np.array([judged.get(reader.doc_ids[d], 0) for d in docs.tolist()], dtype=np.float64)
    return features, labels, docs


def stack_rows(rows: dict[str, QueryRows]) -> TrainingSet:
    """The training set of these queries' rows, in their order."""
    features = np.vstack([f for f, _, _ in rows.values()]) if rows else np.zeros((0, len(FEATURES)))
    labels = np.concatenate([l for _, l, _ in rows.values()]) if rows else np.zeros(0)
    return TrainingSet(features, labels, [len(d) for *_, d in rows.values()], list(rows),
                       [d for *_, d in rows.values()])


def training_set(reader: IndexReader, planned: PlannedQueries, qrels: Qrels, weights: FusionWeights,
                 adaptive: AdaptiveFusion | None = None) -> TrainingSet:
    """Feature rows of each query's ranker candidates: the hybrid mode's, fused with `adaptive` where given."""
    return stack_rows({qid: query_rows(reader, plan, branches, qrels.get(qid, {}), weights, adaptive)
                       for qid, (plan, branches) in planned.items()})


def validation_fraction(n_queries: int, config) -> float:
    """Queries held out for early stopping: none when there are too few to spare."""
    return 0.0 if n_queries < config.small_below_queries else config.validation_fraction


def train_ranker(reader: IndexReader, training: TrainingSet, trained_on: str) -> Ranker:
    config = reader.settings.ranker
    train_idx, valid_idx = split_queries(len(training.groups), validation_fraction(len(training.groups), config),
                                         config.seed)
    return Ranker.train(training.subset(train_idx), training.subset(valid_idx), config, trained_on,
                        reader.compatibility())


def train_from_judgments(reader: IndexReader, dataset: BeirDataset, weights: FusionWeights, split: str = "train",
                         show_progress: bool = False) -> Ranker:
    """Train and publish the ranker of an index from a judged dataset whose doc ids are the index's, on the
    candidates the hybrid mode serves: fused with the index's published adaptive model where it is served."""
    queries, qrels = dataset.judged_queries(split)
    adaptive = served_adaptive(reader.root, reader.settings.fusion)
    training = training_set(reader, plan_queries(reader, queries, show_progress, "features"), qrels, weights,
                            adaptive)
    ranker = train_ranker(reader, training, f"{dataset.name}/{split}")
    ranker.save(reader.root / RANKERS_DIR)
    return ranker
