"""Ingestion: every reader yields the canonical documents table; bad records go to quarantine with a reason."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schemas
from pipeline.config import IngestConfig
from pipeline.errors import InputError
from pipeline.ingest.ingest import ingest


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_reader_fills_every_canonical_column(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [
        {"id": "a", "title": "倒排索引", "text": "倒排索引把词映射到文档。", "source": "kb",
         "published_at": "2024-05-01", "tags": ["index", "zh"], "url": "https://x/a"},
    ])
    result = ingest([path])
    assert result.documents.schema == schemas.DOCUMENTS
    row = result.documents.to_pylist()[0]
    assert (row["doc_id"], row["title"], row["source"], row["lang"], row["tags"], row["url"]) == (
        "a", "倒排索引", "kb", "zh", ["index", "zh"], "https://x/a")
    assert row["published_at"].year == 2024 and len(row["content_hash"]) == 32 and row["ingested_at"]


def test_csv_reader_reads_rows_with_comma_separated_tags(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text('doc_id,title,body,tags\n1,BM25,"Okapi, the ranking function",\"ir,bm25\"\n', encoding="utf-8")
    row = ingest([path]).documents.to_pylist()[0]
    assert (row["doc_id"], row["body"], row["tags"], row["lang"]) == ("1", "Okapi, the ranking function",
                                                                     ["ir", "bm25"], "en")


def test_parquet_reader_reads_rows(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"_id": ["p1", "p2"], "text": ["first", "second"]}), path)
    assert ingest([path]).documents.column("doc_id").to_pylist() == ["p1", "p2"]


def test_folder_reader_takes_titles_from_headings_and_html_title(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("intro line\n# 向量检索\n\nHNSW 图索引。", encoding="utf-8")
    (tmp_path / "notes" / "b.html").write_text(
        "<html><head><title>Faiss &amp; IVF</title><script>var x=1;</script></head>"
        "<body><p>Inverted file lists.</p></body></html>", encoding="utf-8")
    (tmp_path / "notes" / "c.txt").write_text("plain text without heading", encoding="utf-8")
    rows = {r["doc_id"]: r for r in ingest([tmp_path / "notes"]).documents.to_pylist()}
    assert rows["a.md"]["title"] == "向量检索" and rows["a.md"]["body"] == "HNSW 图索引。"
    assert rows["b.html"]["title"] == "Faiss & IVF" and rows["b.html"]["body"] == "Inverted file lists."
    assert rows["c.txt"]["title"] == "" and rows["c.txt"]["path"] == "c.txt"


def test_beir_folder_reads_its_corpus(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": "t", "text": "body"}])
    result = ingest([tmp_path])
    assert result.documents.column("doc_id").to_pylist() == ["d1"]
    assert result.documents.column("source").to_pylist() == [tmp_path.name]


def test_bad_records_are_quarantined_with_reasons_and_valid_ones_kept(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = [{"_id": str(i), "text": f"document {i}"} for i in range(5)]
    lines = [json.dumps(r).encode() for r in good]
    lines.insert(1, b'{"_id": "broken", "text": ')
    lines.insert(2, b'{"_id": "latin1", "text": "caf\xe9"}')
    lines.insert(3, json.dumps({"text": "no id"}).encode())
    lines.insert(4, json.dumps({"_id": "empty", "title": "", "text": "  "}).encode())
    lines.append(json.dumps({"_id": "huge", "text": "x" * 200}).encode())
    lines.append(json.dumps({"_id": "0", "text": "conflicting content"}).encode())
    lines.append(json.dumps({"_id": "1", "text": "document 1"}).encode())
    lines.append(b"[1, 2]")
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = ingest([path], IngestConfig(max_doc_chars=100))
    assert result.documents.column("doc_id").to_pylist() == ["0", "1", "2", "3", "4"]
    assert result.documents.column("body").to_pylist()[0] == "document 0"
    reasons = result.quarantine.column("reason").to_pylist()
    assert sorted(reasons) == sorted(["invalid_json", "invalid_utf8", "missing_id", "missing_text", "too_large",
                                      "duplicate_id", "invalid_json"])
    assert result.duplicates_dropped == 1
    raw = dict(zip(reasons, result.quarantine.column("raw").to_pylist()))
    assert raw["invalid_utf8"] == b'{"_id": "latin1", "text": "caf\xe9"}\n'
    assert all(result.quarantine.column("location").to_pylist())


def test_invalid_utf8_file_in_a_folder_is_quarantined_not_fatal(tmp_path):
    (tmp_path / "gbk.txt").write_bytes("中文".encode("gbk"))
    (tmp_path / "ok.md").write_text("# ok\nfine", encoding="utf-8")
    result = ingest([tmp_path])
    assert result.documents.column("doc_id").to_pylist() == ["ok.md"]
    assert result.quarantine.column("reason").to_pylist() == ["invalid_utf8"]


def test_invalid_utf8_csv_row_is_quarantined(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_bytes(b"doc_id,body\n1,fine\n2,caf\xe9\n")
    result = ingest([path])
    assert result.documents.column("doc_id").to_pylist() == ["1"]
    assert result.quarantine.column("reason").to_pylist() == ["invalid_utf8"]


def test_unknown_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        ingest([tmp_path / "missing.jsonl"])
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(InputError, match="no reader"):
        ingest([tmp_path / "x.xml"])


def test_sample_corpus_ingests_cleanly():
    from conftest import SAMPLE

    result = ingest([SAMPLE])
    assert result.documents.num_rows >= 60 and result.quarantine.num_rows == 0
    assert set(result.documents.column("lang").to_pylist()) == {"en", "zh"}


# -- one bad record or file never aborts a build -----------------------------------------------------------


def quarantined(result):
    """{(doc_id or location, field, reason)} of every quarantine row."""
    return {(r["doc_id"] or r["location"], r["field"], r["reason"]) for r in result.quarantine.to_pylist()}


@pytest.mark.parametrize(("field", "value"), [("tags", 7), ("lang", 3), ("url", ["a", "b"]), ("source", {"x": 1}),
                                               ("title", 12), ("text", ["a list", "of strings"]), ("tags", [1, 2])])
def test_a_jsonl_field_of_the_wrong_type_quarantines_that_record_and_names_the_field(tmp_path, field, value):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "bad", "text": "body", field: value},
                                                 {"id": "good", "text": "body"}])
    result = ingest([path])
    assert result.documents.column("doc_id").to_pylist() == ["good"]
    assert quarantined(result) == {("bad", field, "wrong_type")}


def test_a_parquet_column_of_the_wrong_type_quarantines_its_records(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["one", "two"], "lang": pa.array([None, 5], pa.int64())}), path)
    result = ingest([path])
    assert result.documents.column("doc_id").to_pylist() == ["a"]
    assert quarantined(result) == {("b", "lang", "wrong_type")}


@pytest.mark.parametrize("field", ["url", "source", "lang", "tags", "id", "title", "text"])
def test_a_lone_surrogate_in_any_field_is_quarantined_with_that_field(tmp_path, field):
    path = tmp_path / "docs.jsonl"
    value = '["x\\ud800"]' if field == "tags" else '"x\\ud800"'
    record = {"id": "bad", "text": "body"}
    line = json.dumps(record)[:-1] + f', "{field}": {value}' + "}"
    path.write_text(line + "\n" + json.dumps({"id": "good", "text": "body"}) + "\n")
    result = ingest([path])
    assert result.documents.column("doc_id").to_pylist() == ["good"]
    assert [(r["field"], r["reason"]) for r in result.quarantine.to_pylist()] == [(field, "invalid_utf8")]


def test_json_nested_a_hundred_thousand_levels_deep_is_quarantined_not_a_recursion_error(tmp_path):
    path = tmp_path / "docs.jsonl"
    deep = '{"id": "deep", "text": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text(deep + "\n" + json.dumps({"id": "good", "text": "body"}) + "\n")
    result = ingest([path])
    assert result.documents.column("doc_id").to_pylist() == ["good"]
    assert result.quarantine.column("reason").to_pylist() == ["invalid_json"]


def test_a_csv_cell_longer_than_the_csv_modules_default_limit_is_read_whole(tmp_path):
    path = tmp_path / "docs.csv"
    long_body = "word " * 40_000  # 200,000 characters: over csv's 131,072, under ingest.max_doc_chars
    path.write_text(f'doc_id,body\nlong,"{long_body}"\nshort,fine\n', encoding="utf-8")
    result = ingest([path])
    assert result.documents.column("body").to_pylist() == [long_body, "fine"]


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_an_unreadable_parquet_file_is_quarantined_as_a_file_and_the_other_inputs_are_built(tmp_path, damage):
    good = write_jsonl(tmp_path / "good.jsonl", [{"id": "g", "text": "kept"}])
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["p"], "text": ["lost"]}), bad)
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2] if damage == "truncated" else b"not parquet")
    result = ingest([bad, good])
    assert result.documents.column("doc_id").to_pylist() == ["g"]
    row = result.quarantine.to_pylist()[0]
    assert (row["location"], row["reason"], row["raw"]) == (str(bad), "unreadable_file", None) and row["detail"]


def test_a_utf8_bom_is_stripped_from_csv_and_jsonl(tmp_path):
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfid,body\n1,first\n2,second\n")
    jsonl_path = tmp_path / "bom.jsonl"
    jsonl_path.write_bytes(b"\xef\xbb\xbf" + b'{"id": "3", "text": "third"}\n{"id": "4", "text": "fourth"}\n')
    result = ingest([csv_path, jsonl_path])
    assert result.documents.column("doc_id").to_pylist() == ["1", "2", "3", "4"]
    assert result.quarantine.num_rows == 0


def test_identical_duplicates_are_counted_in_the_summary(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "same", "tags": ["x"]}] * 3)
    assert ingest([path]).summary() == {"documents": 1, "quarantined": 0, "identical_duplicates_dropped": 2}


def test_a_duplicate_id_with_the_same_text_but_other_metadata_is_a_conflict(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "same", "tags": ["x"]},
                                                 {"id": "a", "text": "same", "tags": ["y"]}])
    result = ingest([path])
    assert result.documents.column("tags").to_pylist() == [["x"]]
    assert quarantined(result) == {("a", "tags", "duplicate_id")} and result.duplicates_dropped == 0


def test_parquet_binary_text_is_decoded_and_undecodable_or_list_text_refused(tmp_path):
    binary = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"id": ["ok", "latin1"], "text": pa.array(["倒排".encode(), b"caf\xe9"], pa.binary())}),
                   binary)
    listed = tmp_path / "listed.parquet"
    pq.write_table(pa.table({"id": ["l"], "text": [["a", "b"]]}), listed)
    result = ingest([binary, listed])
    assert result.documents.column("body").to_pylist() == ["倒排"]
    assert quarantined(result) == {("latin1", "text", "invalid_utf8"), ("l", "text", "wrong_type")}


def test_an_integer_id_becomes_a_string_and_a_float_or_boolean_id_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": 7, "text": "int"}, {"id": 1.5, "text": "float"},
                                                 {"id": True, "text": "bool"}])
    result = ingest([path])
    assert result.documents.column("doc_id").to_pylist() == ["7"]
    assert [(r["field"], r["reason"]) for r in result.quarantine.to_pylist()] == [("id", "wrong_type")] * 2


def test_a_single_tag_string_in_json_is_one_tag(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "t", "tags": "machine learning, ir"}])
    assert ingest([path]).documents.column("tags").to_pylist() == [["machine learning, ir"]]


def test_a_date_that_does_not_parse_is_quarantined_not_silently_dropped(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "t", "published_at": "last tuesday"},
                                                 {"id": "b", "text": "t", "date": 20240501}])
    assert quarantined(ingest([path])) == {("a", "published_at", "invalid_value"), ("b", "date", "wrong_type")}


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_a_date_that_falls_outside_the_calendar_in_utc_is_quarantined_not_stored_unreadable(tmp_path, value):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "t", "published_at": value},
                                                 {"id": "b", "text": "t"}])
    result = ingest([path])
    assert quarantined(result) == {("a", "published_at", "invalid_value")}
    assert [row["doc_id"] for row in result.documents.to_pylist()] == ["b"]


def test_a_blank_id_or_one_holding_control_characters_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": "   ", "text": "blank"}, {"id": "a\u0000b", "text": "nul"},
                                                 {"id": "line\nbreak", "text": "newline"}, {"id": "ok 1", "text": "t"}])
    result = ingest([path])
    assert result.documents.column("doc_id").to_pylist() == ["ok 1"]
    assert sorted(r["reason"] for r in result.quarantine.to_pylist()) == ["invalid_value", "invalid_value",
                                                                         "missing_id"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_text_saved_as_utf16_or_utf32_with_a_byte_order_mark_is_read_like_utf8(tmp_path, encoding):
    import codecs

    bom = {"utf-16": b"", "utf-16-be": codecs.BOM_UTF16_BE, "utf-32": b""}[encoding]  # utf-16/32 write their own
    (tmp_path / "docs.jsonl").write_bytes(bom + '{"id": "j", "text": "向量检索 in JSONL"}\n'.encode(encoding))
    (tmp_path / "docs.csv").write_bytes(bom + "id,text\nc,向量检索 in CSV\n".encode(encoding))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "m.md").write_bytes(bom + "# 标题\n向量检索 in Markdown\n".encode(encoding))
    result = ingest([tmp_path / "docs.jsonl", tmp_path / "docs.csv", tmp_path / "notes"])
    assert result.quarantine.num_rows == 0
    assert sorted(result.documents.column("doc_id").to_pylist()) == ["c", "j", "m.md"]
    assert all(body.startswith("向量检索") for body in result.documents.column("body").to_pylist())
