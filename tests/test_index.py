"""Forward and inverted indexes on a hand-made corpus: exact lengths, postings, positions and statistics."""

import json

import duckdb
import numpy as np
import pytest

from pipeline.config import AnalyzerConfig, Settings
from pipeline.errors import AnalyzerMismatch
from pipeline.index.build import build_index
from pipeline.index.store import (
    IndexVersion,
    Manifest,
    current_version,
    resolve_version_dir,
)

DOCS = [
    {"_id": "d0", "title": "Search engines", "text": "search search index"},
    {"_id": "d1", "title": "倒排索引", "text": "倒排索引 and search"},
    {"_id": "d2", "title": "", "text": "index"},
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS), encoding="utf-8")
    build_index([corpus], folder / "index", Settings(cache_dir=folder / "cache"))
    return IndexVersion.open(folder / "index")


def term_id(index, term):
    return index.vocabulary.ids[term]


def test_forward_index_holds_each_fields_token_ids_in_order(index):
    body = index.forward.fields["body"]
    terms = [index.vocabulary.terms[t] for t in body.term_ids[body.doc_slice(0)]]
    assert terms == ["search", "search", "index"]
    assert body.lengths.tolist() == [3, 3, 1]  # 倒排索引 → 倒排, 索引; "and" is a stopword


def test_forward_index_spans_point_into_stored_text(index):
    body = index.forward.fields["body"]
    window = body.doc_slice(1)
    text = DOCS[1]["text"]
    pieces = [text[s:e] for s, e in zip(body.starts[window], body.ends[window])]
    assert pieces == ["倒排", "索引", "search"]


def test_postings_hold_doc_tf_and_positions_per_field(index):
    body = index.inverted.fields["body"]
    span = body.span(term_id(index, "search"))
    assert body.docs[span].tolist() == [0, 1]
    assert body.tfs[span].tolist() == [2, 1]
    assert body.positions_of(span.start).tolist() == [0, 1]
    assert body.positions_of(span.start + 1).tolist() == [5]  # 倒排索引 takes 4 character positions, "and" 1


def test_text_field_concatenates_title_and_body_with_a_position_gap(index):
    text = index.inverted.fields["text"]
    span = text.span(term_id(index, "search"))
    assert text.docs[span].tolist() == [0, 1]
    assert text.tfs[span].tolist() == [3, 1]
    # Title "search engines": search@0, engin@1; the body starts past the gap at 1 + 2.
    assert text.positions_of(span.start).tolist() == [0, 3, 4]
    assert text.doc_lengths.tolist() == [5, 5, 1]


def test_field_statistics_are_exact(index):
    body = index.inverted.fields["body"]
    assert body.df(term_id(index, "index")) == 2
    assert body.avgdl == pytest.approx(7 / 3)
    assert index.manifest.avgdl["title"] == pytest.approx(4 / 3)


def test_manifest_records_counts_analyzer_and_snapshot(index):
    manifest = index.manifest
    assert manifest.doc_count == 3
    assert manifest.term_count == len(index.vocabulary)
    assert manifest.analyzer == AnalyzerConfig().model_dump()
    assert len(manifest.source_snapshot) == 16 and manifest.created_at


def test_parquet_tables_agree_with_the_arrays(index):
    postings = index.path / "inverted" / "postings.parquet"
    rows = duckdb.sql(
        f"SELECT doc_ord, tf, positions FROM read_parquet('{postings}') "
        f"WHERE field = 'body' AND term_id = {term_id(index, 'search')} ORDER BY doc_ord"
    ).fetchall()
    assert rows == [(0, 2, [0, 1]), (1, 1, [5])]
    terms = index.path / "inverted" / "terms.parquet"
    df = duckdb.sql(f"SELECT df FROM read_parquet('{terms}') WHERE field='text' AND term='index'").fetchall()
    assert df == [(2,)]
    forward = index.path / "forward" / "forward.parquet"
    ids = duckdb.sql(f"SELECT token_ids FROM read_parquet('{forward}') WHERE field='body' AND doc_id='d0'").fetchall()
    assert ids == [(np.asarray(index.forward.fields["body"].term_ids[0:3]).tolist(),)]


def test_opening_with_a_different_analyzer_is_refused(index):
    with pytest.raises(AnalyzerMismatch, match="stem_english: index=True configured=False"):
        IndexVersion.open(index.path, AnalyzerConfig(stem_english=False))


def test_build_publishes_a_complete_version(index):
    root = index.path.parent.parent
    assert resolve_version_dir(root) == index.path
    assert current_version(root) == index.path.name
    assert Manifest.read(index.path).version == index.path.name
