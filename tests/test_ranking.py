"""Features against hand-computed values, the ranker's training, refusals, and explanations that add up."""

import json
import math

import numpy as np
import pytest

from pipeline.config import DenseConfig, Settings
from pipeline.errors import RankerMismatch
from pipeline.index.build import build_index
from pipeline.rank.features import FEATURES, extract
from pipeline.rank.model import Ranker, data_hash, split_queries
from pipeline.rank.training import (
    plan_queries,
    train_ranker,
    training_set,
    validation_fraction,
)
from pipeline.retrieval.branches import available_branches, run_branches
from pipeline.retrieval.weights import FusionWeights
from pipeline.search.plan import plan_query
from pipeline.search.proximity import min_span
from pipeline.searcher import Searcher

DOCS = [
    {"_id": "d0", "title": "Vector search", "text": "vector search with dense vectors and fast search",
     "published_at": "2024-01-10"},
    {"_id": "d1", "title": "Inverted index", "text": "search engines use an inverted index for search",
     "published_at": "2024-01-01"},
    {"_id": "d2", "title": "", "text": "cooking recipes"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-ranking")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    settings = Settings(cache_dir=folder / "cache", dense=DenseConfig(enabled=False))
    build_index([folder / "corpus.jsonl"], folder / "index", settings)
    return Searcher.open(folder / "index", settings)


def features_of(searcher, query):
    reader = searcher.reader
    plan = plan_query(reader, query)
    branches = run_branches(reader, plan, 10, available_branches(reader))
    candidates = np.array([0, 1])
    return dict(zip(FEATURES, extract(reader, plan, candidates, branches, np.zeros(len(candidates))).T))


def configured_weights(searcher) -> FusionWeights:
    fusion = searcher.settings.fusion
    return FusionWeights(fusion.method, fusion.weights)


def train_on(searcher, queries, qrels):
    return training_set(searcher.reader, plan_queries(searcher.reader, queries), qrels, configured_weights(searcher))


def test_min_span_is_the_tightest_window_holding_every_term():
    assert min_span([0, 4, 1, 7], [5, 5, 6, 6]) == 1
    assert min_span([3, 10, 20], [1, 2, 1]) == 7
    assert min_span([1, 2], [9, 9]) is None


def test_features_match_values_computed_by_hand(tiny):
    f = features_of(tiny, "vector search")
    # Title BM25 of d0: two terms, each df = 1 of N = 3, tf = 1, title length 2, average 4/3.
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    tf_part = 1 / (1 + 1.2 * (1 - 0.75 + 0.75 * 2 / (4 / 3)))
    assert f["bm25_title"][0] == pytest.approx(2 * idf * tf_part)
    assert f["bm25_title"][1] == 0.0
    assert f["bm25_ratio"].tolist() == pytest.approx([1.0, f["bm25"][1] / f["bm25"][0]])
    assert f["coverage"].tolist() == [1.0, 0.5]
    assert f["title_coverage"].tolist() == [1.0, 0.0]
    assert f["title_exact"].tolist() == [1.0, 0.0]
    # d0 body: vector@0 search@1 … vectors@4 … search@7 → tightest window 0–1; d1 has one query term only.
    assert f["min_span"][0] == 1.0 and math.isnan(f["min_span"][1])
    assert f["proximity"].tolist() == [1.0, 0.0]
    assert f["doc_length"].tolist() == [6.0, 6.0] and f["title_length"].tolist() == [2.0, 2.0]
    assert f["freshness_days"].tolist() == [0.0, 9.0]
    not_found = tiny.settings.fusion.depth + 1
    assert f["rank_bm25"].tolist() == [1.0, 2.0] and f["rank_bm25_title"].tolist() == [1.0, not_found]
    assert math.isnan(f["dense_cosine"][0])  # this index has no dense branch
    assert f["query_terms"].tolist() == [2.0, 2.0]


@pytest.fixture(scope="module")
def sample_ranker(sample_searcher):
    from conftest import SAMPLE

    from pipeline.eval.beir import BeirDataset

    dataset = BeirDataset.load(SAMPLE)
    training = train_on(sample_searcher, dataset.queries, dataset.qrels("test"))
    return train_ranker(sample_searcher.reader, training, "sample/test"), training


def test_a_trained_model_is_a_versioned_artifact(sample_ranker, tmp_path, sample_searcher):
    ranker, training = sample_ranker
    folder = ranker.save(tmp_path / "rankers")
    card = json.loads((folder / "ranker.json").read_text())
    config = sample_searcher.settings.ranker
    fraction = validation_fraction(len(training.groups), config)
    assert fraction == 0.0  # 24 queries: too few to hold any out
    train_rows, validation_rows = split_queries(len(training.groups), fraction, config.seed)
    expected_hash = data_hash(training.subset(train_rows), training.subset(validation_rows))
    assert card["features"] == list(FEATURES) and card["training_data_hash"] == expected_hash
    assert card["created_at"] and card["metrics"]["train_queries"] > 0
    assert card["index_compatibility"] == sample_searcher.reader.compatibility()
    assert (tmp_path / "rankers" / "CURRENT").read_text().strip() == ranker.card.model_id
    reloaded = Ranker.load_current(tmp_path / "rankers")
    np.testing.assert_allclose(reloaded.predict(training.features[:5]), ranker.predict(training.features[:5]))


def test_a_model_trained_on_another_index_is_refused(sample_ranker):
    ranker, _ = sample_ranker
    with pytest.raises(RankerMismatch, match="Retrain the ranker"):
        ranker.check({"analyzer": "another", "dense_model": "all-MiniLM-L6-v2"})


def test_a_model_with_other_features_is_refused(sample_ranker, sample_searcher):
    ranker, _ = sample_ranker
    ranker.card.features = ranker.card.features[:-1]
    try:
        with pytest.raises(RankerMismatch, match="other features"):
            ranker.check(sample_searcher.reader.compatibility())
    finally:
        ranker.card.features = list(FEATURES)


def test_contributions_sum_to_the_model_score(sample_ranker, sample_index, settings, tmp_path):
    import shutil

    ranker, _ = sample_ranker
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    ranker.save(index / "rankers")
    response = Searcher.open(index, settings).search("向量检索 HNSW", mode="ltr", k=5, explain=True)
    assert response.hits
    for hit in response.hits:
        why = hit.explanation
        total = why["bias"] + sum(item["contribution"] for item in why["contributions"])
        assert total == pytest.approx(why["model_score"], abs=1e-6)
        assert why["model_score"] == pytest.approx(hit.score, abs=1e-6)
        assert why["branches"] and isinstance(why["matched_terms"], list)


def test_hybrid_explanations_name_the_branches_and_ranks(sample_searcher):
    hit = sample_searcher.search("reciprocal rank fusion", mode="hybrid", k=1, explain=True).hits[0]
    assert hit.doc_id == "en-018"
    assert hit.explanation["branches"]["bm25"]["rank"] == 1 and "dense" in hit.explanation["branches"]
    assert {"Reciprocal", "Rank", "Fusion"} <= set(hit.explanation["matched_terms"])


def test_the_trained_ranker_beats_bm25_on_held_aside_folds(shared_datasets, settings):
    """Cranfield, lexical branches only (fast): each fold is ranked by a model trained on the other four."""
    from pipeline.eval.beir import BeirDataset
    from pipeline.eval.metrics import score_run
    from pipeline.experiment.runs import cached_index, settings_for
    from pipeline.rank.model import folds

    lexical = settings_for("bm25", settings)
    dataset = BeirDataset.load(shared_datasets / "cranfield")
    qrels = dataset.qrels("test")
    queries = {q: dataset.queries[q] for q in qrels}
    searcher = Searcher.open(cached_index(dataset, lexical), lexical)
    data = train_on(searcher, queries, qrels)
    learned, bm25 = {}, {}
    for fold in folds(len(data.groups), 5, seed=13):
        ranker = train_ranker(searcher.reader, data.subset(sorted(set(range(len(data.groups))) - set(fold))), "cv")
        for i in fold:
            qid, docs = data.query_ids[i], data.doc_ords[i]
            scores = ranker.predict(data.features[data.rows_of(i)])
            learned[qid] = {searcher.doc_ids[d]: float(s) for d, s in zip(docs.tolist(), scores)}
            ranking = searcher.rank(queries[qid], k=100, syntax=False)
            bm25[qid] = {searcher.doc_ids[d]: float(s) for d, s in zip(ranking.doc_ords.tolist(), ranking.scores)}
    assert score_run(learned, qrels)[0]["ndcg@10"] > score_run(bm25, qrels)[0]["ndcg@10"] + 0.01


def test_click_features_come_from_the_query_log(tmp_path, sample_index, settings):
    import shutil

    from pipeline.index.querylog import QueryLog

    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    log = QueryLog(index)
    for _ in range(3):
        query_id = log.log_query("hnsw", "hybrid", result_ids=["en-015", "en-014"], result_count=2)
        log.log_click(query_id, "en-015", position=1)
    searcher = Searcher.open(index, settings)
    reader = searcher.reader
    plan = plan_query(reader, "hnsw")
    branches = run_branches(reader, plan, 10, available_branches(reader))
    ords = np.array([searcher.doc_ids.index("en-015"), searcher.doc_ids.index("en-014")])
    f = dict(zip(FEATURES, extract(reader, plan, ords, branches, np.zeros(len(ords))).T))
    assert f["clicks"].tolist() == pytest.approx([math.log1p(3), 0.0])
    assert f["ctr"].tolist() == pytest.approx([3 / (3 + 5), 0.0])


def test_the_ranker_re_orders_the_candidates_of_the_hybrid_mode_s_adaptive_fusion(sample_searcher):
    """Candidates, their order and the fused-score feature are what hybrid serves with the same adaptive model."""
    from pipeline.rank.rerank import ranker_candidates
    from pipeline.retrieval.adaptive import ARMS, AdaptiveFusion, Rule
    from pipeline.retrieval.hybrid import hybrid

    reader = sample_searcher.reader
    arm = [name for name, *_ in ARMS].index("meaning only")
    meaning_only = AdaptiveFusion(configured_weights(sample_searcher), Rule(arm, 1))
    plan = sample_searcher.plan("how does reciprocal rank fusion combine rankings", mode="ltr", syntax=False)
    served = hybrid(reader, plan, configured_weights(sample_searcher), meaning_only)
    fused, candidates = ranker_candidates(reader, plan, configured_weights(sample_searcher), meaning_only)
    assert candidates.tolist() == served.doc_ords[: len(candidates)].tolist()
    assert fused.choice.arm == "meaning only"
    rows = training_set(reader, plan_queries(reader, {"q": plan.text}), {}, configured_weights(sample_searcher),
                        meaning_only)
    columns = dict(zip(FEATURES, rows.features.T))
    np.testing.assert_allclose(columns["fused_score"], served.scores[: len(candidates)])
    assert columns["rank_fused"].tolist() == list(range(1, len(candidates) + 1))


def test_a_ranker_with_nothing_to_learn_keeps_the_fused_order(sample_searcher):
    """Boosting starts from the fused score: judgments that tell the candidates apart nowhere leave it as it is."""
    reader = sample_searcher.reader
    queries = {f"q{i}": text for i, text in enumerate(["hnsw", "bm25", "向量检索", "倒排索引", "learning to rank",
                                                        "dropout", "拼音", "nDCG"])}
    data = train_on(sample_searcher, queries, {})  # no judgments: every label is 0
    ranker = train_ranker(reader, data, "unjudged")
    for i in range(len(data.groups)):
        scores = ranker.predict(data.features[data.rows_of(i)])
        assert np.all(np.diff(scores) <= 1e-12) and scores[0] > scores[-1]  # rows come in fused order, best first


def _synthetic(n_queries: int, relevant, seed: int = 5):
    """Queries of 20 candidates in fused order (fused_score falling), a random bm25 column, and one relevant
    candidate per query chosen by `relevant(bm25 column)`."""
    from pipeline.rank.model import TrainingSet

    rng = np.random.default_rng(seed)
    blocks, labels = [], []
    for _ in range(n_queries):
        rows = np.zeros((20, len(FEATURES)))
        rows[:, FEATURES.index("fused_score")] = np.linspace(1.0, 0.05, 20)
        rows[:, FEATURES.index("bm25")] = rng.random(20)
        label = np.zeros(20)
        label[relevant(rows[:, FEATURES.index("bm25")])] = 1
        blocks.append(rows)
        labels.append(label)
    return TrainingSet(np.vstack(blocks), np.concatenate(labels), [20] * n_queries, [str(i) for i in range(n_queries)])


def test_trees_that_do_not_beat_the_fused_order_on_validation_are_not_served():
    """Judgments the fused order already gets right leave the trees nothing to win on validation queries: the
    ranker keeps the fused order, online too, rather than a correction that helps no more queries than it hurts."""
    from pipeline.config import RankerConfig

    config = RankerConfig()
    data = _synthetic(200, lambda bm25: 0)  # the fused order's first candidate is the relevant one
    train, valid = split_queries(200, config.validation_fraction, config.seed)
    ranker = Ranker.train(data.subset(train), data.subset(valid), config, "synthetic", {})
    assert ranker.keeps_fused_order
    assert ranker.card.metrics["trees_vs_fused_order"]["wins"] == 0
    features = data.features[data.rows_of(0)]
    np.testing.assert_array_equal(ranker.predict(features), features[:, FEATURES.index("fused_score")])
    np.testing.assert_allclose(ranker.contributions(features).sum(axis=1), ranker.predict(features))


def test_trees_that_help_validation_queries_beyond_chance_are_kept():
    from pipeline.config import RankerConfig

    config = RankerConfig()
    data = _synthetic(200, np.argmax)  # the candidate with the highest bm25, anywhere in the fused order
    train, valid = split_queries(200, config.validation_fraction, config.seed)
    ranker = Ranker.train(data.subset(train), data.subset(valid), config, "synthetic", {})
    assert not ranker.keeps_fused_order
    verdict = ranker.card.metrics["trees_vs_fused_order"]
    assert verdict["gain"] >= config.min_gain and verdict["wins"] > verdict["losses"]
