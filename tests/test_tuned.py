"""Encoders fine-tuned on the corpus: training triples from an index, the versioned artifact, `--encoder tuned`,
and distributed training that matches a single process."""

import json

import numpy as np
import pytest

from pipeline.dense.choice import prepare_encoder
from pipeline.dense.encoders import MINILM, load_encoder
from pipeline.dense.index import DenseIndex
from pipeline.dense.static import StaticEncoder
from pipeline.dense.tuned import (
    CARD,
    TrainSpec,
    Triples,
    TunedEncoder,
    base_model_folder,
    batch_for,
    published_tuned,
    run_training,
    tuned_root,
    write_triples,
)
from pipeline.errors import IndexDamaged, InputError
from pipeline.index.store import current_version, versions_dir
from pipeline.rank.encoder_data import query_triples, title_triples
from pipeline.search.reader import IndexReader


def test_the_global_batch_divides_among_processes_and_never_exceeds_the_data():
    assert batch_for(32, 1000, 2) == 32
    assert batch_for(32, 7, 2) == 6
    assert batch_for(32, 1, 2) == 2


def test_judged_triples_pair_each_relevant_document_with_a_bm25_negative_that_is_not_judged_relevant(
        sample_index, settings):
    reader = IndexReader.open(sample_index, settings)
    relevant = reader.doc_ids[:2]
    triples = query_triples(reader, {"q1": "search"}, {"q1": {d: 1 for d in relevant}}, {"source": "judgments"})
    assert triples.anchors == ["search", "search"]
    positives = {reader.stored_text("title", i) for i in range(2)}
    assert {p.split("\n")[0] for p in triples.positives} == positives
    assert not {n.split("\n")[0] for n in triples.negatives} & positives
    assert triples.source == {"source": "judgments", "queries": 1}


def test_title_pseudo_queries_point_at_their_own_body_without_its_title(sample_index, settings):
    reader = IndexReader.open(sample_index, settings)
    triples = title_triples(reader)
    assert triples.source["source"] == "titles" and len(triples) > 0
    for title, positive in zip(triples.anchors, triples.positives):
        assert not positive.startswith(title + "\n")


def test_an_index_without_a_tuned_encoder_refuses_a_build_with_one(sample_index, settings):
    import pyarrow.parquet as pq

    tuned = settings.model_copy(update={"dense": settings.dense.model_copy(update={"encoder": "tuned"})})
    documents = pq.read_table(versions_dir(sample_index) / current_version(sample_index) / "documents.parquet")
    with pytest.raises(InputError, match="tune-encoder"):
        prepare_encoder(sample_index, documents, tuned)


def test_a_tuned_folder_without_its_card_is_reported_damaged(tmp_path):
    with pytest.raises(IndexDamaged):
        TunedEncoder(tmp_path)


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    """A few steps of MiniLM on 16 synthetic triples, short sequences, no dropout (ranks draw different masks)."""
    folder = tmp_path_factory.mktemp("tune")
    words = ["protein", "cell", "virus", "gene", "cancer", "drug", "brain", "heart"]
    rng = np.random.default_rng(0)
    anchors = [f"{words[i % 8]} {words[(i * 3) % 8]} study {i}" for i in range(16)]
    positives = [f"{a} results in patients" for a in anchors]
    negatives = [" ".join(rng.choice(words, 5)) for _ in anchors]
    data = write_triples(Triples(anchors, positives, negatives), folder / "triples.parquet")
    spec = {"base": base_model_folder(MINILM), "data": str(data), "batch_size": 8, "epochs": 1.0,
            "learning_rate": 1e-4, "max_seq_length": 16, "loss": "mnrl", "seed": 0, "max_steps": 3, "dropout": 0.0}
    return spec, folder


@pytest.mark.slow
def test_two_ddp_processes_follow_the_loss_curve_of_one_process_with_the_same_global_batch(tiny_spec):
    spec, folder = tiny_spec
    single = run_training(TrainSpec(**spec, out=str(folder / "one"), processes=1))
    distributed = run_training(TrainSpec(**spec, out=str(folder / "two"), processes=2))
    assert len(single) == len(distributed) == 3
    np.testing.assert_allclose(distributed, single, rtol=1e-3, atol=1e-4)
    assert json.loads((folder / "two" / "loss_curve.json").read_text()) == distributed


@pytest.mark.slow
def test_tuned_encoder_is_a_published_artifact_that_a_build_embeds_with_and_search_accepts(
        tmp_path, settings, sample_index):
    import shutil

    from conftest import SAMPLE

    from pipeline.index.build import build_index
    from pipeline.rank.encoder_data import tune_encoder

    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    both = settings.model_copy(update={"dense": settings.dense.model_copy(update={"tune_side": "both"})})
    reader = IndexReader.open(index, both)
    folder = tune_encoder(reader, title_triples(reader), max_steps=1)
    assert published_tuned(index) == folder and folder.parent == tuned_root(index)
    card = json.loads((folder / CARD).read_text())
    assert card["model_id"].startswith("tuned-minilm@") and card["base"] == MINILM and card["steps"] == 1
    tuned = settings.model_copy(update={"dense": settings.dense.model_copy(update={"encoder": "tuned"})})
    build_index([SAMPLE], index, tuned)
    dense = DenseIndex(versions_dir(index) / current_version(index))
    assert dense.manifest.model_id == card["model_id"] and dense.accepts("tuned") and dense.accepts(str(folder))
    assert not dense.accepts("minilm")
    assert dense.encoder().model_id == load_encoder(str(folder)).model_id


def test_a_static_model_is_tuned_into_a_new_published_version_of_itself(tmp_path, settings):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from pipeline.dense.static import (
        StaticCard,
        _static_model,
        new_card,
        published_static,
        save_static,
    )
    from pipeline.dense.tuned import tune_static

    words = ["protein", "cell", "virus", "gene", "cancer", "drug", "brain", "heart"]
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    table = np.random.default_rng(0).normal(size=(len(words) + 1, 8)).astype(np.float32)
    model = _static_model(table, tokenizer, "hash-teacher")
    first = save_static(tmp_path, model, new_card("hash-teacher", "teacher-tokenizer", model, 0.0))
    anchors = [f"{words[i % 8]} {words[(i * 3) % 8]}" for i in range(16)]
    triples = Triples(anchors, [f"{a} {words[(i * 5) % 8]}" for i, a in enumerate(anchors)],
                      [words[(i + 4) % 8] for i in range(16)], {"source": "titles"})
    tuned = tune_static(tmp_path, first, triples, settings.dense.model_copy(update={"tune_batch_size": 8}),
                        max_steps=2)
    card, before = StaticCard.read(tuned), StaticCard.read(first)
    assert published_static(tmp_path, "hash-teacher") == tuned != first
    assert card.model_id.startswith("static-hash-teacher@") and card.model_id != before.model_id
    assert card.fit["tuned"]["steps"] == 2 and card.fit["tuned"]["from"] == before.model_id
    assert not np.allclose(StaticEncoder(tuned).model.embedding, StaticEncoder(first).model.embedding)


def test_a_query_side_tuning_moves_queries_only_and_caches_passages_under_the_base_model(tmp_path, settings,
                                                                                          tiny_spec):
    import pyarrow.parquet as pq

    from pipeline.dense.encoders import passage_cache_id
    from pipeline.dense.tuned import tune_queries

    triples = pq.read_table(tiny_spec[0]["data"]).to_pydict()
    base = load_encoder(MINILM)
    config = settings.dense.model_copy(update={"tune_batch_size": 8, "tune_epochs": 1.0})
    folder = tune_queries(tmp_path, triples["anchor"], base.encode_passages(triples["positive"]),
                          base.encode_passages(triples["negative"]), {"source": "judgments"}, config)
    tuned = TunedEncoder(folder)
    assert tuned.card.side == "queries" and tuned.card.steps == 2 and published_tuned(tmp_path) == folder
    assert passage_cache_id(tuned) == MINILM and passage_cache_id(base) == MINILM
    texts = triples["anchor"][:2]
    np.testing.assert_allclose(tuned.encode_passages(texts), base.encode_passages(texts), atol=1e-6)
    assert not np.allclose(tuned.encode_queries(texts), base.encode_queries(texts), atol=1e-4)


TOY_WORDS = ["protein", "cell", "virus", "gene"]
TOY_SOURCE = {"source": "judgments", "dataset": "toy", "split": "train"}
TOY_TRIPLES = Triples([TOY_WORDS[i % 4] for i in range(8)], [TOY_WORDS[(i + 1) % 4] for i in range(8)],
                      [TOY_WORDS[(i + 2) % 4] for i in range(8)], TOY_SOURCE)


def toy_static(index_root, queries="static"):
    """A published 4-word static model of a stand-in teacher."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from pipeline.dense.static import _static_model, new_card, save_static

    vocabulary = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(TOY_WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model = _static_model(np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32), tokenizer, "hash-teacher")
    return save_static(index_root, model, new_card("hash-teacher", "teacher-tokenizer", model, 0.0, queries=queries))


def test_a_static_model_tuned_from_one_made_for_teacher_queries_encodes_its_queries_itself(tmp_path, settings):
    from pipeline.dense.static import StaticCard
    from pipeline.dense.tuned import tune_static

    config = settings.dense.model_copy(update={"tune_batch_size": 4})
    tuned = tune_static(tmp_path, toy_static(tmp_path, queries="teacher"), TOY_TRIPLES, config, publish=False,
                        max_steps=1)
    assert StaticCard.read(tuned).queries == "static"


def test_an_evaluation_reuses_a_static_model_tuned_on_the_same_data_and_settings_and_no_other(tmp_path, settings):
    from pipeline.dense.static import published_static
    from pipeline.dense.tuned import tune_static
    from pipeline.experiment.runs import tuned_before

    first = toy_static(tmp_path)
    source, triples = TOY_SOURCE, TOY_TRIPLES
    config = settings.dense.model_copy(update={"tune_batch_size": 4})
    assert tuned_before(tmp_path, source, config, "hash-teacher") is None
    tuned = tune_static(tmp_path, first, triples, config, publish=False, max_steps=1)
    assert published_static(tmp_path, "hash-teacher") == first
    assert tuned_before(tmp_path, source, config, "hash-teacher") == tuned
    assert tuned_before(tmp_path, {**source, "source": "titles"}, config, "hash-teacher") is None
    other_rate = config.model_copy(update={"tune_static_learning_rate": config.tune_static_learning_rate / 2})
    assert tuned_before(tmp_path, source, other_rate, "hash-teacher") is None
