"""A hostile corpus in every input format: ingest and a real build finish, every valid document is there with its
exact text, and every bad record or file is quarantined with the field at fault and the reason."""

import codecs
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import DenseConfig, IngestConfig, Settings
from pipeline.index.build import build_index
from pipeline.ingest.ingest import ingest
from pipeline.searcher import Searcher

BOM = codecs.BOM_UTF8
LONG_BODY = "longcell " * 25_000  # 225,000 characters: over the csv module's default field limit


def jsonl_line(record):
    return json.dumps(record, ensure_ascii=False).encode()


def with_field(record, field, raw_json):
    """`record` as a JSON line with `field` set to `raw_json` verbatim (to write escapes such as "\\ud800")."""
    return json.dumps(record)[:-1].encode() + f', "{field}": {raw_json}}}'.encode()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return write_hostile_corpus(tmp_path_factory.mktemp("hostile"))


def write_hostile_corpus(root):
    """Write the corpus under `root`; returns (input paths, {doc_id: (title, body)} of the valid documents,
    {(doc_id or location, field, reason)} expected in quarantine, identical duplicates)."""
    valid, bad = {}, set()

    # JSONL, starting with a BOM.
    lines = [BOM + jsonl_line({"id": "j-first", "title": "BOM line", "text": "the first record follows a BOM"})]
    valid["j-first"] = ("BOM line", "the first record follows a BOM")
    lines.append(jsonl_line({"id": 123, "text": "an integer id is a string id", "tags": "single-tag"}))
    valid["123"] = ("", "an integer id is a string id")
    lines.append(jsonl_line({"id": "j-gas", "title": "ｶﾞｽ", "text": "ﬁrst river ｶﾞｽ 檢索 zebrafish"}))
    valid["j-gas"] = ("ｶﾞｽ", "ﬁrst river ｶﾞｽ 檢索 zebrafish")
    lines.append(jsonl_line({"id": "j-gas", "title": "ｶﾞｽ", "text": "ﬁrst river ｶﾞｽ 檢索 zebrafish"}))  # identical
    lines.append(jsonl_line({"id": "j-gas", "title": "ｶﾞｽ", "text": "ﬁrst river ｶﾞｽ 檢索 zebrafish",
                             "tags": ["other"]}))
    bad.add(("j-gas", "tags", "duplicate_id"))
    for field, value in [("tags", 7), ("lang", 3), ("url", ["a"]), ("source", 1.5), ("title", {"a": 1})]:
        lines.append(jsonl_line({"id": f"j-type-{field}", "text": "wrong type", field: value}))
        bad.add((f"j-type-{field}", field, "wrong_type"))
    for field in ["url", "source", "lang", "tags", "title", "text"]:
        raw = '["x\\ud800"]' if field == "tags" else '"x\\ud800"'
        lines.append(with_field({"id": f"j-sur-{field}", "text": "surrogate"}, field, raw))
        bad.add((f"j-sur-{field}", field, "invalid_utf8"))
    lines.append(b'{"id": "j-deep", "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    lines.append(b'{"id": "j-broken", "text": ')
    lines.append(b'{"id": "j-latin1", "text": "caf\xe9"}')
    lines.append(jsonl_line({"id": "j-date", "text": "t", "published_at": "someday"}))
    bad.add(("j-date", "published_at", "invalid_value"))
    lines.append(jsonl_line({"text": "no id"}))
    lines.append(jsonl_line({"id": "j-empty", "text": " "}))
    bad.add(("j-empty", None, "missing_text"))
    jsonl = root / "docs.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    for line_no, reason in [(len(lines) - 5, "invalid_json"), (len(lines) - 4, "invalid_json"),
                            (len(lines) - 3, "invalid_utf8"), (len(lines) - 1, "missing_id")]:
        bad.add((f"{jsonl}:{line_no}", None, reason))

    # CSV, starting with a BOM, with a cell longer than the csv module's default limit.
    csv_path = root / "docs.csv"
    csv_path.write_bytes(BOM + b'doc_id,title,body,tags\nc-1,CSV,"quoted, with comma","a,b"\n'
                         + f"c-long,Long,{LONG_BODY},\n".encode() + b"c-bad,x,caf\xe9,\nc-short,only two\n")
    valid["c-1"] = ("CSV", "quoted, with comma")
    valid["c-long"] = ("Long", LONG_BODY)
    bad |= {(f"{csv_path}:4", None, "invalid_utf8"), (f"{csv_path}:5", None, "invalid_csv")}

    # Parquet: a good file with a binary text column, wrong-type and list-text files, a garbage and a truncated one.
    good_parquet = root / "binary.parquet"
    pq.write_table(pa.table({"_id": ["p-1", "p-bad"], "text": pa.array(["二进制 zebrafish".encode(), b"\xff\xfe"]),
                             "tags": [["x"], None]}), good_parquet)
    valid["p-1"] = ("", "二进制 zebrafish")
    bad.add(("p-bad", "text", "invalid_utf8"))
    typed = root / "typed.parquet"
    pq.write_table(pa.table({"_id": ["p-lang", "p-ok"], "text": ["int lang", "fine"],
                             "lang": pa.array([5, None], pa.int64())}), typed)
    valid["p-ok"] = ("", "fine")
    bad.add(("p-lang", "lang", "wrong_type"))
    listed = root / "listed.parquet"
    pq.write_table(pa.table({"_id": ["p-list"], "text": [["a", "b"]]}), listed)
    bad.add(("p-list", "text", "wrong_type"))
    garbage = root / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not a parquet file")
    truncated = root / "truncated.parquet"
    pq.write_table(pa.table({"_id": ["lost"], "text": ["lost"]}), truncated)
    truncated.write_bytes(truncated.read_bytes()[:-20])
    bad |= {(str(garbage), None, "unreadable_file"), (str(truncated), None, "unreadable_file")}

    # A folder of Markdown, HTML and text, one with a BOM and one in GBK.
    folder = root / "notes"
    folder.mkdir()
    (folder / "a.md").write_bytes(BOM + "# Markdown\n\nﬁle ｶﾞｽ".encode())
    valid["a.md"] = ("Markdown", "ﬁle ｶﾞｽ")
    (folder / "b.html").write_text("<title>HTML</title><p>html body</p>", encoding="utf-8")
    valid["b.html"] = ("HTML", "html body")
    (folder / "c.txt").write_bytes("中文".encode("gbk"))
    bad.add((str(folder / "c.txt"), None, "invalid_utf8"))

    # A BEIR folder whose corpus starts with a BOM.
    beir = root / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_bytes(BOM + jsonl_line({"_id": "b-1", "title": "BEIR", "text": "beir body"})
                                        + b"\n" + jsonl_line({"_id": "b-2", "text": "t", "tags": 1}) + b"\n")
    valid["b-1"] = ("BEIR", "beir body")
    bad.add(("b-2", "tags", "wrong_type"))

    paths = [jsonl, csv_path, good_parquet, typed, listed, garbage, truncated, folder, beir]
    return paths, valid, bad, 1


@pytest.fixture(scope="module")
def ingested(hostile):
    return ingest(hostile[0], IngestConfig())


def test_every_valid_document_is_kept_with_its_exact_text(hostile, ingested):
    rows = ingested.documents.to_pylist()
    assert {r["doc_id"]: (r["title"], r["body"]) for r in rows} == hostile[1]


def test_every_bad_record_and_file_is_quarantined_with_its_field_and_reason(hostile, ingested):
    found = {(r["doc_id"] or r["location"], r["field"], r["reason"]) for r in ingested.quarantine.to_pylist()}
    assert found == hostile[2]
    assert all(r["detail"] for r in ingested.quarantine.to_pylist())


def test_identical_duplicates_are_counted(hostile, ingested):
    assert ingested.summary()["identical_duplicates_dropped"] == hostile[3]


def test_metadata_is_coerced_only_where_unambiguous(ingested):
    tags = dict(zip(ingested.documents.column("doc_id").to_pylist(), ingested.documents.column("tags").to_pylist()))
    assert (tags["123"], tags["c-1"], tags["p-1"]) == (["single-tag"], ["a", "b"], ["x"])


@pytest.fixture(scope="module")
def searcher(hostile, tmp_path_factory):
    cache = tmp_path_factory.mktemp("hostile-cache")
    settings = Settings(cache_dir=cache, dense=DenseConfig(enabled=False))
    index_dir = tmp_path_factory.mktemp("hostile-index")
    build_index(hostile[0], index_dir, settings)
    return Searcher.open(index_dir, settings)


def test_a_real_build_over_the_hostile_corpus_indexes_every_valid_document(hostile, searcher):
    assert sorted(searcher.doc_ids) == sorted(hostile[1])


@pytest.mark.parametrize(("query", "expected"), [("zebrafish", {"j-gas", "p-1"}), ("ガス", {"j-gas", "a.md"}),
                                                  ("ｶﾞｽ", {"j-gas", "a.md"}), ("检索", {"j-gas"}),
                                                  ("longcell", {"c-long"})])
def test_the_built_index_finds_documents_whatever_their_input_format(searcher, query, expected):
    assert {hit.doc_id for hit in searcher.search(query, k=20).hits} == expected


def test_highlights_map_back_to_the_original_text_after_expanding_and_composing_characters(searcher):
    hit = searcher.search("river", k=1).hits[0]
    assert "<mark>river</mark>" in hit.snippet
