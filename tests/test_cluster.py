"""A partitioned index answers as the single index: shards score with the collection's statistics; Ray Serve."""

import asyncio
import json
import shutil

import numpy as np
import pytest
from conftest import SAMPLE, free_port

from pipeline.cluster.coordinator import Coordinator, local_call
from pipeline.cluster.partition import partition
from pipeline.cluster.shard import Shard
from pipeline.errors import InputError
from pipeline.eval.beir import BeirDataset
from pipeline.rank.training import plan_queries, train_ranker, training_set
from pipeline.retrieval.weights import FusionWeights
from pipeline.searcher import Searcher

QUERIES = [json.loads(line)["text"] for line in (SAMPLE / "queries.jsonl").read_text().splitlines()]


def assert_same_ranking(single: Searcher, rank, mode: str) -> None:
    for query in QUERIES:
        expected = single.rank(query, 10, mode=mode)
        docs, scores, total = rank(query, mode)
        assert docs.tolist() == expected.doc_ords.tolist(), (mode, query)
        np.testing.assert_allclose(scores, expected.scores, rtol=0, atol=1e-6)
        assert total == expected.total_matches, (mode, query)


def test_two_shards_score_bm25_as_the_single_index(sample_index, settings, tmp_path):
    layout = partition(sample_index, tmp_path / "cluster", 2, settings)
    assert layout.offsets == [0, 36, 72]
    coordinator = Coordinator(layout, local_call([Shard(layout, s, settings) for s in range(2)]), settings)

    def rank(query, mode):
        _, docs, scores, total = asyncio.run(coordinator.rank(query, 10, mode))
        return docs, scores, total

    assert_same_ranking(Searcher.open(sample_index, settings), rank, "bm25")


def test_a_shard_holds_its_documents_and_the_whole_vocabulary(sample_index, settings, tmp_path):
    layout = partition(sample_index, tmp_path / "cluster", 2, settings)
    single = Searcher.open(sample_index, settings).reader
    second = Shard(layout, 1, settings).reader
    assert second.doc_ids == single.doc_ids[36:]
    assert second.vocabulary.terms == single.vocabulary.terms
    assert second.dense.ann.live_count == int((single.dense.passage_docs >= 36).sum())


def test_partitioning_into_more_shards_than_documents_is_refused(sample_index, settings, tmp_path):
    with pytest.raises(InputError, match="cannot make 100 shards"):
        partition(sample_index, tmp_path / "cluster", 100, settings)


@pytest.mark.slow
def test_a_local_ray_cluster_of_two_shards_answers_as_the_single_index(sample_index, settings, tmp_path):
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    from pipeline.cluster.serve import application

    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    single = Searcher.open(index, settings)
    dataset = BeirDataset.load(SAMPLE)
    weights = FusionWeights(settings.fusion.method, settings.fusion.weights)
    training = training_set(single.reader, plan_queries(single.reader, dataset.queries), dataset.qrels("test"), weights)
    train_ranker(single.reader, training, "sample/test").save(index / "rankers")
    layout = partition(index, tmp_path / "cluster", 2, settings)

    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        handle = serve.run(application(layout.root, settings), name="sousuo", route_prefix="/search")
        for mode in ("bm25", "dense", "hybrid", "ltr"):
            assert_same_ranking(single, lambda query, mode: handle.rank.remote(query, 10, mode).result(), mode)
        served = handle.search.remote(QUERIES[0], 5, "hybrid").result()
        expected = single.search(QUERIES[0], 5, mode="hybrid")
        assert [h.doc_id for h in served.hits] == [h.doc_id for h in expected.hits]
        assert [h.snippet for h in served.hits] == [h.snippet for h in expected.hits]
        assert served.query_terms == expected.query_terms and served.total_matches == expected.total_matches
    finally:
        serve.shutdown()
        ray.shutdown()
