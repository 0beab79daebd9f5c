"""Adaptive fusion: per-query signals, the rule tree learned over them, its artifact, and the hybrid mode serving it."""

import numpy as np
import pytest

from pipeline.config import AdaptiveFusionConfig, FusionConfig
from pipeline.eval.beir import BeirDataset
from pipeline.experiment.runs import evaluate
from pipeline.rank.training import fold_weights, plan_queries, train_adaptive, tune_fusion
from pipeline.retrieval.adaptive import (
    ARMS,
    BASE_ARM,
    SIGNALS,
    AdaptiveFusion,
    Rule,
    arm_weights,
    fit_rule,
    nothing_to_say,
    query_signals,
    served_adaptive,
)
from pipeline.retrieval.hybrid import fuse_branches, recall
from pipeline.retrieval.weights import FusionWeights
from pipeline.search.plan import plan_query
from pipeline.searcher import Searcher

from conftest import ROOT

MEANING_ONLY = [name for name, *_ in ARMS].index("meaning only")
LANGUAGE = SIGNALS.index("language_share")
CONFIG = AdaptiveFusionConfig(min_leaf_queries=4, min_gain=0.005, min_net_wins=3)


def gains_where(meaning_helps: np.ndarray) -> np.ndarray:
    """nDCG@10 per query and arm: 0.8 everywhere, except 1.0 for `meaning only` where it helps and 0.4 where not."""
    gains = np.full((len(meaning_helps), len(ARMS)), 0.8)
    gains[:, MEANING_ONLY] = np.where(meaning_helps, 1.0, 0.4)
    return gains


def signals_with_language(share: np.ndarray, seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).random((len(share), len(SIGNALS)))
    values[:, LANGUAGE] = share
    return values


def test_the_tree_sends_queries_in_a_foreign_language_to_meaning_only():
    share = np.array([0.0] * 10 + [1.0] * 10)
    rule = fit_rule(signals_with_language(share), gains_where(share == 0), CONFIG)
    assert rule.signal == "language_share" and 0 < rule.threshold < 1
    assert rule.at_most.arm == MEANING_ONLY and rule.above.arm == BASE_ARM
    assert rule.walk({**dict.fromkeys(SIGNALS, 0.5), "language_share": 0.0})[0] == MEANING_ONLY


def test_one_lucky_query_does_not_move_the_weights():
    gains = np.full((20, len(ARMS)), 0.8)
    gains[0, MEANING_ONLY] = 1.0  # a lift far above min_gain, but from a single query
    rule = fit_rule(signals_with_language(np.linspace(0, 1, 20)), gains, CONFIG)
    assert rule == Rule(BASE_ARM, 20)


def test_without_a_signal_that_separates_the_queries_the_base_weights_stay():
    helps = np.arange(20) % 2 == 0
    rule = fit_rule(np.full((20, len(SIGNALS)), 0.5), gains_where(helps), CONFIG)
    assert rule.signal is None and rule.arm == BASE_ARM


def test_arms_scale_the_lexical_and_dense_parts_of_the_base_weights():
    base = FusionWeights("convex", {"bm25": 1.0, "bm25_title": 0.5, "dense": 2.0})
    assert arm_weights(base, MEANING_ONLY).weights == {"bm25": 0.0, "bm25_title": 0.0, "dense": 2.0}
    assert arm_weights(base, BASE_ARM).weights == base.weights
    assert arm_weights(base, len(ARMS) - 1).weights == {"bm25": 1.0, "bm25_title": 0.5, "dense": 0.0}


def signals_of(searcher, query):
    plan = plan_query(searcher.reader, query, vector=searcher.reader.encode_query(query))
    return query_signals(searcher.reader, plan, recall(searcher.reader, plan))


def test_signals_see_the_query_language_and_words_the_corpus_lacks(sample_searcher):
    english = signals_of(sample_searcher, "reciprocal rank fusion")
    assert english.language_share == pytest.approx(0.5)  # half of the sample is English
    assert english.terms_matched == 1.0 and english.lexical_found > 0 and 0 < english.agreement <= 1
    unknown = signals_of(sample_searcher, "qzxv blorptang")
    assert unknown.terms_matched == 0 and unknown.lexical_found == 0
    assert nothing_to_say(unknown, has_dense=True) == \
        "No words of this query occur in the corpus; results come from meaning."
    assert nothing_to_say(english, has_dense=True) is None


def test_the_model_is_a_versioned_artifact_served_only_for_its_method(tmp_path):
    base = FusionWeights("convex", {"bm25": 1.0, "dense": 1.0})
    rule = Rule(BASE_ARM, 20, "language_share", 0.25, Rule(MEANING_ONLY, 8), Rule(BASE_ARM, 12))
    model = AdaptiveFusion.trained(base, rule, "test/train", 0.8, 0.7)
    model.save(tmp_path)
    assert AdaptiveFusion.published(tmp_path) == model
    assert served_adaptive(tmp_path, FusionConfig()) == model
    assert served_adaptive(tmp_path, FusionConfig(method="rrf")) is None
    assert served_adaptive(tmp_path, FusionConfig(adaptive=AdaptiveFusionConfig(enabled=False))) is None


def test_the_hybrid_mode_fuses_with_the_weights_the_model_picks_and_explains_them(sample_index, settings, tmp_path):
    import shutil

    index = shutil.copytree(sample_index, tmp_path / "index")
    searcher = Searcher.open(index, settings)
    queries = {"q01": "how does reciprocal rank fusion combine rankings", "q13": "向量检索 HNSW 索引"}
    qrels = {"q01": {"en-018": 2}, "q13": {"zh-012": 2}}
    base = FusionWeights(settings.fusion.method, settings.fusion.weights)
    model = train_adaptive(searcher.reader, plan_queries(searcher.reader, queries), qrels, base, "sample")
    rule = Rule(BASE_ARM, 2, "language_share", 0.75, Rule(MEANING_ONLY, 1), Rule(BASE_ARM, 1))
    AdaptiveFusion(model.base, rule, "hand-made").save(index)
    searcher = Searcher.open(index, settings)
    response = searcher.search("reciprocal rank fusion", k=5, mode="hybrid", explain=True)
    why = response.hits[0].explanation
    assert why["fusion_choice"] == "meaning only because share of the corpus in the query's language ≤ 0.75"
    assert why["query_weights"]["bm25"] == 0 and why["query_weights"]["dense"] > 0
    plan = searcher.plan("reciprocal rank fusion", "hybrid")
    branches = recall(searcher.reader, plan)
    docs, _ = fuse_branches(branches, settings.fusion, arm_weights(model.base, MEANING_ONLY))
    assert [h.doc_ord for h in response.hits] == docs[:5].tolist()


def test_cross_lingual_queries_get_the_dense_branch_back(settings):
    """English queries against Chinese documents: fixed weights fall below the dense branch, adaptive does not."""
    folder = ROOT / "data" / "sample-xling"
    scores = {m: evaluate(folder, m, settings=settings)["ndcg@10"] for m in ("dense", "convex", "adaptive", "hybrid")}
    assert scores["convex"] < scores["dense"] <= scores["adaptive"]
    assert scores["hybrid"] == scores["adaptive"]  # the hybrid mode's default is adaptive fusion


def test_many_queries_that_change_a_little_both_ways_do_not_move_the_weights():
    """22 queries gain, 18 lose: the mean lift passes `min_gain` and the net wins `min_net_wins`, but a sign test
    reads 22 against 18 as chance."""
    gains = np.full((40, len(ARMS)), 0.8)
    gains[:22, MEANING_ONLY], gains[22:, MEANING_ONLY] = 0.9, 0.79
    assert fit_rule(np.full((40, len(SIGNALS)), 0.5), gains, CONFIG) == Rule(BASE_ARM, 40)
    lenient = CONFIG.model_copy(update={"min_sign_z": 0.0})
    assert fit_rule(np.full((40, len(SIGNALS)), 0.5), gains, lenient).arm == MEANING_ONLY


def tuning_from(settings, queries: int):
    return settings.model_copy(update={"fusion": settings.fusion.model_copy(update={"tune_from_queries": queries})})


def test_a_cross_validation_fold_tunes_the_weights_only_once_it_has_enough_training_queries(sample_index, settings):
    """Without a train split, a fold tunes the weights on its training queries as a train split would, once it has
    `fusion.tune_from_queries` of them; fewer keep the configured weights (a handful tunes to its own noise)."""
    queries, qrels = BeirDataset.load(ROOT / "data" / "sample").judged_queries("test")
    reader = Searcher.open(sample_index, tuning_from(settings, len(queries))).reader
    planned = plan_queries(reader, queries)
    tuned = tune_fusion(reader, "convex", planned, qrels, "sample")
    assert tuned.weights != settings.fusion.weights
    assert fold_weights(reader, "convex", planned, qrels, "sample/cv").weights == tuned.weights
    fewer = dict(list(planned.items())[:-1])
    assert fold_weights(reader, "convex", fewer, qrels, "sample/cv").weights == settings.fusion.weights


def test_convex_and_the_adaptive_base_are_tuned_on_the_same_folds(settings):
    """The sample's folds hold 19 training queries: tuning there (allowed from 10) moves convex, and adaptive, whose
    tree keeps its base on the sample, moves with it; by default (1,000) both keep the configured weights."""
    folder = ROOT / "data" / "sample"
    default = {m: evaluate(folder, m, settings=settings)["ndcg@10"] for m in ("convex", "adaptive")}
    tuned = {m: evaluate(folder, m, settings=tuning_from(settings, 10))["ndcg@10"] for m in ("convex", "adaptive")}
    assert tuned["convex"] != default["convex"]
    assert tuned["adaptive"] == tuned["convex"] and default["adaptive"] == default["convex"]
