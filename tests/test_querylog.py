"""The query log: append-only Parquet parts, atomic under concurrent writers, and the analytics over it."""

import json
import threading
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError
from pipeline.index.querylog import CLICKS, QUERIES, QueryLog, filters_json
from pipeline.searcher import Filters

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def log(tmp_path):
    return QueryLog(tmp_path / "index")


def test_empty_log_reads_as_empty_tables(log):
    assert log.queries() == [] and log.clicks() == []
    assert log.top_queries() == [] and log.zero_result_queries() == []
    assert log.latency_percentiles() == [] and log.ctr_by_position() == []
    assert log.count() == {"queries": 0, "clicks": 0}


def test_a_query_round_trips_with_every_field(log):
    filters = Filters(sources=("blog",), langs=("zh",), since=datetime(2024, 1, 1, tzinfo=UTC))
    qid = log.log_query("向量检索", "ltr", filters, 12.5, ["zh-011", "zh-012"], 7, ts=T0)
    (row,) = log.queries()
    assert row["query_id"] == qid
    assert row["ts"] == T0
    assert row["text"] == "向量检索" and row["mode"] == "ltr"
    assert json.loads(row["filters"]) == {"langs": ["zh"], "since": "2024-01-01T00:00:00+00:00", "sources": ["blog"]}
    assert row["latency_ms"] == 12.5
    assert row["result_ids"] == ["zh-011", "zh-012"]
    assert row["result_count"] == 7 and row["result_offset"] == 0


def test_every_part_file_has_the_declared_schema(log):
    qid = log.log_query("bm25", "bm25", None, 1.0, ["en-003"], 1)
    log.log_click(qid, "en-003", 1)
    (query_part,) = log.queries_dir.glob("*.parquet")
    (click_part,) = log.clicks_dir.glob("*.parquet")
    assert pq.read_schema(query_part).remove_metadata() == QUERIES
    assert pq.read_schema(click_part).remove_metadata() == CLICKS


def test_filters_json_is_stable_and_drops_empty_values():
    assert filters_json(None) == "{}"
    assert filters_json(Filters()) == "{}"
    assert filters_json({"tags": ["ann"], "langs": []}) == '{"tags": ["ann"]}'


def test_long_queries_are_truncated_and_positions_are_one_based(log):
    log.log_query("x" * 10_000, "bm25")
    assert len(log.queries()[0]["text"]) == 2_000
    with pytest.raises(InputError):
        log.log_click("q", "d", 0)


def test_concurrent_writers_lose_and_tear_nothing(log):
    threads, per_thread = 8, 25

    def writer(n):
        for i in range(per_thread):
            qid = log.log_query(f"query {n}-{i}", "bm25", None, float(i), [f"d{n}-{i}"], 1)
            log.log_click(qid, f"d{n}-{i}", 1)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    # Read while they write: every part seen must be complete.
    while any(w.is_alive() for w in workers):
        for part in list(log.queries_dir.glob("*.parquet")):
            assert pq.read_table(part).num_rows == 1
    for worker in workers:
        worker.join()
    queries, clicks = log.queries(), log.clicks()
    assert len(queries) == threads * per_thread and len(clicks) == threads * per_thread
    assert {q["text"] for q in queries} == {f"query {n}-{i}" for n in range(threads) for i in range(per_thread)}
    assert {c["query_id"] for c in clicks} == {q["query_id"] for q in queries}
    assert not list(log.root.rglob("*.tmp"))


def test_top_and_zero_result_queries(log):
    for i, text in enumerate(["BM25", "bm25 ", "bm25", "向量检索", "qwertyuiop", "qwertyuiop"]):
        count = 0 if text == "qwertyuiop" else 3
        log.log_query(text, "bm25", None, 10.0, ["a"] if count else [], count, ts=T0 + timedelta(minutes=i))
    top = log.top_queries()
    assert [(r["text"].strip().lower(), r["searches"], r["zero_results"]) for r in top] == [
        ("bm25", 3, 0), ("qwertyuiop", 2, 2), ("向量检索", 1, 0)]
    assert [r["text"] for r in log.top_queries(min_results=1)] == ["bm25", "向量检索"]
    zero = log.zero_result_queries()
    assert [(r["text"], r["searches"], r["modes"]) for r in zero] == [("qwertyuiop", 2, ["bm25"])]


def test_latency_percentiles_by_hour_and_day(log):
    for i, latency in enumerate([10, 20, 30, 40, 50]):
        log.log_query("a", "bm25", None, latency, ts=T0 + timedelta(minutes=10 * i))  # 9:00 … 9:40
    log.log_query("a", "bm25", None, 100, ts=T0 + timedelta(hours=2))
    hourly = log.latency_percentiles("hour")
    assert [(r["bucket"], r["searches"], r["p50_ms"]) for r in hourly] == [
        (T0, 5, 30.0), (T0 + timedelta(hours=2), 1, 100.0)]
    assert hourly[0]["p90_ms"] == pytest.approx(46.0)
    (daily,) = log.latency_percentiles("day")
    assert daily["searches"] == 6 and daily["p50_ms"] == 35.0
    with pytest.raises(InputError):
        log.latency_percentiles("fortnight")


def test_ctr_by_position_counts_impressions_and_distinct_clicks(log):
    q1 = log.log_query("a", "bm25", None, 1, ["d1", "d2", "d3"], 3)
    q2 = log.log_query("b", "bm25", None, 1, ["d1", "d2"], 2)
    q3 = log.log_query("c", "bm25", None, 1, ["d4"], 30, result_offset=10)  # page 2: position 11
    log.log_click(q1, "d1", 1)
    log.log_click(q1, "d1", 1)  # a repeated click counts once
    log.log_click(q2, "d2", 2)
    log.log_click(q1, "d3", 3)
    log.log_click(q3, "d4", 11)
    rows = log.ctr_by_position(max_position=20)
    assert [(r["position"], r["impressions"], r["clicks"], r["ctr"]) for r in rows] == [
        (1, 2, 1, 0.5), (2, 2, 1, 0.5), (3, 1, 1, 1.0), (11, 1, 1, 1.0)]
    assert [r["position"] for r in log.ctr_by_position(max_position=3)] == [1, 2, 3]
    assert log.clicked_documents()[0] == {"doc_id": "d1", "clicks": 2, "avg_position": 1.0}
