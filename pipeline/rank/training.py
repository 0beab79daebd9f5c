"""Offline training: the ranker's feature rows and LambdaMART fits from judged queries or from the query log's clicks
(with the guard that publishes a ranker only if it does not lose offline), tuned fusion weights, and the adaptive
fusion model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..behaviour.clickmodels import fit_and_compare, save_tables
from ..behaviour.graph import ClickGraph
from ..behaviour.labels import click_labels
from ..behaviour.profile import pooled_profile, profiles_before
from ..behaviour.sessions import ClickLog
from ..dense.cache import EmbeddingCache, encode_queries_with_cache
from ..errors import InputError, RankerMismatch
from ..eval.beir import BeirDataset, Qrels
from ..eval.metrics import run_of, score_run
from ..index.querylog import QueryLog
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
from ..retrieval.channels import Audience, channel_branches, channel_weights
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


def with_channels(reader: IndexReader, planned: PlannedQueries, graph: ClickGraph,
                  audiences: dict[str, Audience] | None = None) -> PlannedQueries:
    """Each planned query's branches joined by the channels' (the click graph's, and the personal branch of its
    audience where given), as the hybrid modes serve them: the ranker then learns from the candidates and the
    `click_graph` and `personal` features it will be served."""
    audiences = audiences or {}
    if graph.empty and not audiences:
        return planned
    config = reader.settings.behaviour
    joined = {}
    for qid, (plan, branches) in planned.items():
        channels = channel_branches(reader, plan, branches, graph, audiences.get(qid), config)
        joined[qid] = (plan, {**branches, **channels.branches})
    return joined


def _unseen_queries(keys: list[str], share: float, seed: int) -> set[str]:
    """A seeded `share` of the queries, to be learned as if never searched before."""
    chosen = np.random.default_rng(seed).permutation(len(keys))[: int(len(keys) * share + 0.5)]
    return {keys[i] for i in chosen.tolist()}


def askers_audiences(reader: IndexReader, recent: ClickLog, start: float, unseen: set[str]) -> dict[str, Audience]:
    """Per query of these sessions, the pooled profile of the users who searched it, each as it stood at `start`
    (so it holds none of the clicks the labels come from), weighted by their searches of it: click labels pool
    users, so the personal feature they are learned beside pools the same users. The `unseen` queries are learned
    as a first request is served: no past of their own, and no profile (most requests do not opt in)."""
    askers = {key: users for key, users in recent.askers().items() if key not in unseen}
    profiles = profiles_before(reader, start, reader.settings.behaviour.profile_half_life_days,
                               {user for users in askers.values() for user in users}, sorted(unseen))
    audiences = {}
    for key, users in askers.items():
        known = [(profiles[user], n) for user, n in users.items() if user in profiles]
        if known:
            audiences[key] = Audience(pooled_profile([p for p, _ in known], [n for _, n in known]))
    return audiences


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


def weights_ndcg(reader: IndexReader, planned: PlannedQueries, qrels: Qrels, weights: FusionWeights) -> np.ndarray:
    """nDCG@10 of each planned query fused with `weights`."""
    fusion = reader.settings.fusion
    return _ndcg_per_query(reader, {q: fuse_branches(b, fusion, weights) for q, (_, b) in planned.items()}, qrels)


def fold_weights(reader: IndexReader, method: str, planned: PlannedQueries, qrels: Qrels,
                 trained_on: str) -> FusionWeights:
    """The weights of `method` for a cross-validation fold: tuned on its training queries, as a train split's are,
    where the fold has `fusion.tune_from_queries` of them, else the configured weights."""
    fusion = reader.settings.fusion
    if len(planned) < fusion.tune_from_queries:
        return FusionWeights(method, fusion.weights)
    return tune_fusion(reader, method, planned, qrels, trained_on)


def train_adaptive(reader: IndexReader, planned: PlannedQueries, qrels: Qrels, base: FusionWeights,
                   trained_on: str) -> AdaptiveFusion:
    """The rule tree that picks, per query, the arm (scaling of `base`) with the best nDCG@10 on judged queries."""
    fusion = reader.settings.fusion
    gains = np.column_stack([weights_ndcg(reader, planned, qrels, arm_weights(base, arm)) for arm in range(len(ARMS))])
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
    fused, docs = ranker_candidates(reader, plan, weights, adaptive, branches,
                                    channel_weights(branches, reader.settings.behaviour))
    features = extract(reader, plan, docs, fused.branches, fused.scores[: len(docs)])
    return features, _labels(reader, docs, judged), docs


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


def _labels(reader: IndexReader, docs: np.ndarray, judged: dict[str, int]) -> np.ndarray:
    return np.array([judged.get(reader.doc_ids[d], 0) for d in docs.tolist()], dtype=np.float64)


def relabelled(reader: IndexReader, training: TrainingSet, qrels: Qrels) -> TrainingSet:
    """The same feature rows under other labels (clicks instead of judgments), without extracting them again."""
    labels = [_labels(reader, docs, qrels.get(qid, {})) for qid, docs in zip(training.query_ids, training.doc_ords)]
    return TrainingSet(training.features, np.concatenate(labels) if labels else np.zeros(0), training.groups,
                       training.query_ids, training.doc_ords)


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


def ranking_ndcg(reader: IndexReader, ranker: Ranker | None, testing: TrainingSet, qrels: Qrels) -> float:
    """Mean nDCG@10 of a ranker over feature rows (no ranker: the fused order the rows come in)."""
    run = {}
    for i, qid in enumerate(testing.query_ids):
        docs = testing.doc_ords[i]
        scores = ranker.predict(testing.features[testing.rows_of(i)]) if ranker else -np.arange(len(docs), dtype=float)
        run[qid] = run_of(reader.doc_ids, docs, scores)
    return float(score_run(run, {q: qrels.get(q, {}) for q in run})[0]["ndcg@10"]) if run else 0.0


@dataclass
class GuardVerdict:
    """The offline comparison that decides whether a ranker trained from clicks is published."""

    yardstick: str  # "judgments:<name>" or "clicks:held-out" (the click labels of queries it did not learn from)
    queries: int
    candidate_ndcg: float
    current_ndcg: float  # the published ranker's, or the fused order's when none is published or it is stale
    current: str  # the published ranker's model id, or "fusion"
    publish: bool


def _current_ranker(reader: IndexReader) -> Ranker | None:
    current = Ranker.load_current(reader.root / RANKERS_DIR)
    try:
        if current is not None:
            current.check(reader.compatibility())
    except RankerMismatch:
        return None  # a stale ranker cannot serve this version, so it is no yardstick either
    return current


def train_from_clicks(reader: IndexReader, weights: FusionWeights, source: str = "pbm",
                      judged: tuple[str, dict[str, str], Qrels] | None = None,
                      show_progress: bool = False) -> tuple[Ranker, GuardVerdict]:
    """Train the ranker from the index's query log alone, labels from click model `source`, and publish it only if
    it does not lose offline to what is served now.

    The click models are fitted on the whole log and their tables written first (INDEX/behaviour). The labels come
    from the later sessions, and everything the ranker sees beside them from the earlier `behaviour.
    graph_history_share` alone, as if it were trained at the moment the later ones began: their click graph, whose
    branch joins the candidates and whose score is the `click_graph` feature, as the hybrid modes serve them; the
    personal branch of each query's searchers, with their profiles of that time (`askers_audiences`); and the
    click counts of the `clicks` and `ctr` features, which counting the labels' own clicks would turn into the
    labels (a ranker that learns "clicked means relevant" and then promotes whatever other queries' users opened).
    A seeded `behaviour.graph_unseen_share` of the queries are learned as never searched before: none of their own
    past searches in the graph, the counts or the profiles, and no personal branch.

    The yardstick is `judged` (name, queries, judgments) where given, used only to evaluate, with the whole log's
    graph as served; otherwise the click labels of the queries held out from training for early stopping."""
    config = reader.settings.behaviour
    log = ClickLog.from_querylog(QueryLog(reader.root), config.positions)
    history, recent = log.split_in_time(config.graph_history_share)
    labels = click_labels(recent, source, config)
    if not labels.qrels:
        # Every label would be 0: a ranker fitted to that learns nothing, and the guard could not tell it apart.
        raise InputError(f"the later {recent.n_sessions} of the log's {log.n_sessions} first-page searches hold no "
                         "click that grades a document: nothing to learn from")
    save_tables(fit_and_compare(log, config), reader.root)
    unseen = _unseen_queries(list(labels.queries), config.graph_unseen_share, reader.settings.ranker.seed)
    start = float(recent.times.min())  # the past the ranker may know beside its labels ends here
    past = reader.with_engagement(reader.engagement_of(start, sorted(unseen)))
    audiences = askers_audiences(past, recent, start, unseen)
    planned = with_channels(past, plan_queries(past, labels.queries, show_progress, "features from clicks"),
                            ClickGraph.from_click_log(history.without_queries(unseen), reader.ordinals,
                                                      reader.analyzer.terms, config), audiences)
    adaptive = served_adaptive(reader.root, reader.settings.fusion)  # the candidates the hybrid mode serves
    training = training_set(past, planned, labels.qrels, weights, adaptive)
    ranker = train_ranker(reader, training, f"querylog:clicks-{source}")
    ranker.card.label_source = {**labels.source, "graph_sessions": history.n_sessions,
                                "profiled_queries": len(audiences)}
    if judged is not None:
        name, queries, qrels = judged
        testing = training_set(reader, with_channels(reader, plan_queries(reader, queries, show_progress, "guard"),
                                                     ClickGraph.served(reader)),
                               qrels, weights, adaptive)
        yardstick = f"judgments:{name}"
    else:
        ranker_config = reader.settings.ranker
        _, held = split_queries(len(training.groups), validation_fraction(len(training.groups), ranker_config),
                                ranker_config.seed)
        testing, qrels, yardstick = training.subset(held), labels.qrels, "clicks:held-out"
    current = _current_ranker(reader)
    verdict = GuardVerdict(yardstick, len(testing.groups), ranking_ndcg(reader, ranker, testing, qrels),
                           ranking_ndcg(reader, current, testing, qrels),
                           current.card.model_id if current else "fusion", False)
    # With no query to compare on (a log of fewer than `ranker.small_below_queries` queries holds none out) the
    # guard has no evidence that the candidate does not lose, so what is served stays.
    verdict.publish = verdict.queries > 0 and verdict.candidate_ndcg >= verdict.current_ndcg
    ranker.card.metrics["guard"] = vars(verdict)
    ranker.save(reader.root / RANKERS_DIR, publish=verdict.publish)
    return ranker, verdict
