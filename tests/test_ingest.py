"""Ingestion: every reader yields the canonical documents table; bad records go to quarantine with a reason."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError
from pipeline import schemas
from pipeline.config import IngestConfig
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
