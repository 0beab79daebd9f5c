"""Hostile files in the query log: a part that is not the log's is moved to querylog/quarantine/ with its reason,
and every valid part is still read, by analytics, the SQL console, forgetting a user and search."""

import json
import logging
import shutil
import threading
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.index import querylog
from pipeline.index.querylog import QueryLog, type_fits
from pipeline.schemas import CLICKS, QUERIES
from pipeline.searcher import Searcher
from pipeline.serving.sql import SqlSession

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CLICK = {"query_id": ["q1"], "ts": [T0], "doc_id": ["en-001"], "position": [1]}


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_parquet(path, table: pa.Table) -> None:
    path.write_bytes(parquet_bytes(table))


def truncated() -> bytes:
    """The first half of a valid click part: what a copy cut short leaves."""
    data = parquet_bytes(pa.Table.from_pylist([{"query_id": "q1", "ts": T0, "doc_id": "en-001", "position": 1}],
                                              schema=CLICKS))
    return data[: len(data) // 2]


# name → (how the bad click part is made, the reason it is quarantined with, the field at fault)
BAD_CLICK_PARTS = {
    "garbage": (lambda log, path: path.write_bytes(b"this is not parquet at all\n" * 20), "unreadable_file", None),
    "zero-byte": (lambda log, path: path.write_bytes(b""), "unreadable_file", None),
    "truncated": (lambda log, path: path.write_bytes(truncated()), "unreadable_file", None),
    "position-as-string": (lambda log, path: write_parquet(path, pa.table({**CLICK, "position": ["1"]})),
                           "wrong_type", "position"),
    "another-schema": (lambda log, path: write_parquet(path, pa.table({"title": ["a"], "body": ["b"]})),
                       "missing_column", "query_id"),
}


@pytest.fixture
def log(tmp_path):
    log = QueryLog(tmp_path / "index")
    query_id = log.log_query("bm25", "bm25", None, 1.0, ["en-001", "en-002"], 2, ts=T0)
    log.log_click(query_id, "en-002", 2, ts=T0)
    return log


@pytest.mark.parametrize("kind", BAD_CLICK_PARTS)
def test_a_bad_click_part_is_quarantined_with_its_reason_and_the_valid_rows_are_still_read(log, kind, caplog):
    make, reason, field = BAD_CLICK_PARTS[kind]
    bad = log.clicks_dir / f"99999999T000000-{kind}.parquet"
    make(log, bad)
    with caplog.at_level(logging.WARNING, logger="pipeline.index.querylog"):
        assert [row["doc_id"] for row in log.clicks()] == ["en-002"]
        assert log.ctr_by_position(2)[1]["clicks"] == 1
    assert not bad.exists()
    moved = log.root / "quarantine" / "clicks" / bad.name
    assert moved.is_file()
    record = json.loads(moved.with_name(bad.name + ".json").read_text(encoding="utf-8"))
    assert record["source"] == str(bad) and record["location"] == str(moved)
    assert record["reason"] == reason and record["field"] == field and record["detail"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert bad.name in warning and reason in warning and "\n" not in warning


def test_a_part_with_a_valid_footer_but_damaged_pages_is_quarantined_when_a_read_fails(log):
    (part,) = log.clicks_dir.glob("*.parquet")
    damaged = bytearray(part.read_bytes())
    damaged[8:60] = bytes(b ^ 0xFF for b in damaged[8:60])  # the first page header, after the magic bytes
    bad = log.clicks_dir / "99999999T000000-damaged.parquet"
    bad.write_bytes(bytes(damaged))
    assert [row["doc_id"] for row in log.clicks()] == ["en-002"]
    record = json.loads((log.root / "quarantine" / "clicks" / (bad.name + ".json")).read_text(encoding="utf-8"))
    assert record["reason"] == "unreadable_file" and not bad.exists()


def test_a_statement_that_is_wrong_itself_is_not_blamed_on_the_files(log, monkeypatch):
    import duckdb

    monkeypatch.setattr(QueryLog, "read_through", lambda self: pytest.fail("the parts were read through"))
    with pytest.raises(duckdb.BinderException):
        log.sql("SELECT no_such_column FROM clicks")


def test_a_bad_query_part_is_quarantined_and_the_valid_queries_are_still_read(log):
    bad = log.queries_dir / "99999999T000000-foreign.parquet"
    write_parquet(bad, pa.table({"query_id": ["q9"], "ts": [T0], "result_ids": ["not a list"]}))
    assert [row["text"] for row in log.queries()] == ["bm25"]
    record = json.loads((log.root / "quarantine" / "queries" / (bad.name + ".json")).read_text(encoding="utf-8"))
    assert record["reason"] == "wrong_type" and record["field"] == "result_ids"


def test_parts_of_older_or_wider_but_fitting_types_are_kept(log):
    """Columns missing (older parts), wider integers, other timestamp units and zones, other string encodings, and
    columns of nulls or not declared all read as the log's: nothing valid is quarantined."""
    fitting = pa.table({"query_id": pa.array(["q2"], pa.large_string()), "ts": pa.array([T0], pa.timestamp("ns")),
                        "doc_id": pa.array(["en-003"]).dictionary_encode(), "position": pa.array([3], pa.int64()),
                        "user_hash": pa.array([None], pa.null()), "newer_column": [1.5]})
    write_parquet(log.clicks_dir / "99999999T000000-fitting.parquet", fitting)
    assert sorted(row["doc_id"] for row in log.clicks()) == ["en-002", "en-003"]
    assert not (log.root / "quarantine").exists()


@pytest.mark.parametrize("actual, declared, fits", [
    (pa.int8(), pa.int32(), True), (pa.uint64(), pa.int64(), True), (pa.int32(), pa.float64(), True),
    (pa.float64(), pa.int32(), False), (pa.string(), pa.int32(), False), (pa.int64(), pa.string(), False),
    (pa.string(), CLICKS.field("ts").type, False), (pa.timestamp("ms"), CLICKS.field("ts").type, True),
    (pa.large_list(pa.large_string()), QUERIES.field("result_ids").type, True),
    (pa.list_(pa.int64()), QUERIES.field("result_ids").type, False), (pa.null(), pa.list_(pa.string()), True),
])
def test_a_column_fits_the_declared_type_only_within_its_family(actual, declared, fits):
    assert type_fits(actual, declared) is fits


def test_a_part_footer_is_read_once_until_the_part_changes(log, monkeypatch):
    calls = []
    checked = querylog.part_rejection

    def counting(path, schema):
        calls.append(path.name)
        return checked(path, schema)

    monkeypatch.setattr(querylog, "part_rejection", counting)
    log.clicks()
    calls.clear()
    log.clicks()
    QueryLog(log.root.parent).count()
    assert calls == []
    (part,) = log.clicks_dir.glob("*.parquet")
    write_parquet(part, pa.table({**CLICK, "position": pa.array([1], pa.int32())}))
    log.clicks()
    assert calls == [part.name]


def test_concurrent_readers_quarantine_a_bad_part_once_and_all_read_the_valid_rows(log, monkeypatch):
    bad = log.clicks_dir / "99999999T000000-garbage.parquet"
    bad.write_bytes(b"garbage")
    # Every reader checks the part itself (as separate processes would), then all race to move it.
    monkeypatch.setattr(querylog, "_checked", {})
    start = threading.Barrier(8)
    seen, errors = [], []

    def reader():
        try:
            start.wait()
            querylog._checked.clear()
            seen.append([row["doc_id"] for row in QueryLog(log.root.parent).clicks()])
        except Exception as error:  # noqa: BLE001 - the test reports any failure of any reader
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and seen == [["en-002"]] * 8
    assert sorted(p.name for p in (log.root / "quarantine" / "clicks").iterdir()) == [bad.name, bad.name + ".json"]


def test_moving_a_part_that_is_already_gone_is_no_error(log):
    from pipeline.ingest.quarantine import Rejection

    log.quarantine(log.clicks_dir / "gone.parquet", "clicks", Rejection("unreadable_file", "gone"))
    assert not (log.root / "quarantine" / "clicks" / "gone.parquet.json").exists()


def test_a_part_that_cannot_be_moved_is_skipped_and_the_rest_still_read(log, monkeypatch, caplog):
    bad = log.clicks_dir / "99999999T000000-garbage.parquet"
    bad.write_bytes(b"garbage")

    def read_only(source, target):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(querylog.os, "replace", read_only)
    with caplog.at_level(logging.WARNING, logger="pipeline.index.querylog"):
        assert [row["doc_id"] for row in log.clicks()] == ["en-002"]
        assert [row["doc_id"] for row in log.clicks()] == ["en-002"]
    assert bad.exists()
    assert len(caplog.records) == 1 and "cannot be moved" in caplog.records[0].getMessage()


def test_forget_user_rewrites_the_valid_parts_and_skips_a_bad_one(log):
    log.log_query("mine", "bm25", None, 1.0, ["en-009"], 1, user_id="user-a")
    (log.queries_dir / "99999999T000000-garbage.parquet").write_bytes(b"garbage")
    assert log.forget_user("user-a")["queries"] == 1
    assert [row["text"] for row in log.queries()] == ["bm25"]


def test_hybrid_search_similar_and_profiles_work_over_a_log_with_bad_parts(tmp_path, sample_index, settings):
    from pipeline.behaviour.profile import profile_for

    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    log = QueryLog(index)
    for n in range(3):
        query_id = log.log_query("Reciprocal rank fusion", "hybrid", None, 1.0, ["zh-011"], 1, user_id="user-a",
                                 session_id=f"s{n}")
        log.log_click(query_id, "zh-011", 1, user_id="user-a", session_id=f"s{n}")
        log.log_click(query_id, "en-001", 2, user_id="user-a", session_id=f"s{n}")
    for kind, (make, _, _) in BAD_CLICK_PARTS.items():
        make(log, log.clicks_dir / f"99999999T000000-{kind}.parquet")
    (log.queries_dir / "99999999T000000-garbage.parquet").write_bytes(b"garbage")
    searcher = Searcher.open(index, settings)
    hits = searcher.search("reciprocal rank fusion", 10, mode="hybrid").hits
    assert any(h.doc_id == "zh-011" and h.reasons for h in hits)  # the click graph read the valid clicks
    similar = searcher.similar(searcher.doc_ids.index("en-001"), k=80)
    assert any("co_clicks" in sources for sources in similar.sources)
    assert profile_for(searcher.reader, "user-a", settings.behaviour.profile_half_life_days) is not None
    quarantined = sorted(p.name for p in (index / "querylog" / "quarantine").rglob("*.json"))
    assert len(quarantined) == len(BAD_CLICK_PARTS) + 1
    (log.clicks_dir / "99999999T000000-late.parquet").write_bytes(b"")  # met first by the SQL console
    with SqlSession(index, settings.cache_dir) as session:
        assert session.fetch("SELECT count(*) FROM clicks")[1] == [(6,)]
    assert (index / "querylog" / "quarantine" / "clicks" / "99999999T000000-late.parquet.json").is_file()


def test_a_link_that_loops_is_quarantined_and_the_valid_rows_are_still_read(log):
    loop = log.clicks_dir / "99999999T000000-loop.parquet"
    loop.symlink_to(loop)
    assert [row["doc_id"] for row in log.clicks()] == ["en-002"]
    record = json.loads((log.root / "quarantine" / "clicks" / (loop.name + ".json")).read_text(encoding="utf-8"))
    assert record["reason"] == "unreadable_file" and "symbolic links" in record["detail"]


def test_a_link_to_a_foreign_file_is_moved_aside_and_the_file_it_points_to_is_left_alone(log, tmp_path):
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not the log's", encoding="utf-8")
    (log.clicks_dir / "99999999T000000-link.parquet").symlink_to(foreign)
    assert [row["doc_id"] for row in log.clicks()] == ["en-002"]
    assert (log.root / "quarantine" / "clicks" / "99999999T000000-link.parquet").is_symlink()
    assert foreign.read_text(encoding="utf-8") == "not the log's"


def test_a_folder_named_like_a_part_is_quarantined(log):
    (log.queries_dir / "99999999T000000-folder.parquet").mkdir()
    assert [row["text"] for row in log.queries()] == ["bm25"]
    assert (log.root / "quarantine" / "queries" / "99999999T000000-folder.parquet").is_dir()
