"""The reliability table: hostile inputs, fuzzed queries, sandbox escapes and damaged indexes, rerun and written to
docs/reliability.md (slow: `make test-slow`); every goal is zero losses, crashes and escapes."""

import shutil
from datetime import UTC, datetime

import pytest
from conftest import ROOT
from test_damage import DAMAGES, published
from test_hostile_corpus import write_hostile_corpus
from test_query_fuzz import fuzzed_queries
from test_sql import FILE_FUNCTIONS, write_outside_files

from pipeline.config import DenseConfig, IngestConfig, Settings
from pipeline.errors import QuerySyntaxError, SousuoError
from pipeline.index.build import build_index
from pipeline.ingest.ingest import ingest
from pipeline.searcher import Searcher
from pipeline.serving.sql import SqlError, SqlSession

pytestmark = pytest.mark.slow
REPORT = ROOT / "docs" / "reliability.md"
PARSED_QUERIES = 100_000
SEARCHED_QUERIES = 10_000


def hostile_inputs(root) -> dict:
    (root / "corpus").mkdir()
    paths, valid, bad, _ = write_hostile_corpus(root / "corpus")
    crashes = 0
    try:
        ingested = ingest(paths, IngestConfig())
        settings = Settings(cache_dir=root / "cache", dense=DenseConfig(enabled=False))
        build_index(paths, root / "index", settings)
        kept = Searcher.open(root / "index", settings).reader.version.documents
    except Exception:  # noqa: BLE001 — a crash is what this row counts
        crashes, kept, ingested = 1, None, None
    rows = {} if kept is None else {r["doc_id"]: (r["title"] or "", r["body"]) for r in kept.to_pylist()}
    lost = sum(rows.get(doc_id) != text for doc_id, text in valid.items())
    return {"tried": f"{len(paths)} inputs in 5 formats, {len(valid)} valid documents, {len(bad)} bad records or files",
            "lost": lost, "crashes": crashes, "quarantined": 0 if ingested is None else ingested.quarantine.num_rows}


def fuzzed(sample_searcher) -> dict:
    crashes = refused = 0
    for n, query in enumerate(fuzzed_queries(PARSED_QUERIES, seed=1)):
        try:
            if n < SEARCHED_QUERIES:
                sample_searcher.search(query, k=5)
            else:
                from pipeline.search.query import parse_query

                parse_query(query)
        except QuerySyntaxError:
            refused += 1
        except Exception:  # noqa: BLE001 — a crash is what this row counts
            crashes += 1
    return {"tried": f"{PARSED_QUERIES:,} fuzzed queries ({SEARCHED_QUERIES:,} through the searcher, the rest parsed)",
            "crashes": crashes, "refused": refused}


def sandbox(sample_index, root) -> dict:
    (root / "outside").mkdir()
    outside = write_outside_files(root / "outside")
    escapes = tries = 0
    for writable in (False, True):
        with SqlSession(sample_index, writable=writable) as session:
            for template in FILE_FUNCTIONS:
                tries += 1
                try:
                    session.fetch(template.format(dir=outside, index=sample_index, outside_name=outside.name))
                    escapes += 1
                except SqlError:
                    pass
    written = sorted(p.name for p in outside.iterdir()) != ["secret.csv", "secret.json", "secret.parquet"]
    return {"tried": f"{len(FILE_FUNCTIONS)} statements × read-only and writable sessions", "tries": tries,
            "escapes": escapes + written}


def damage(sample_index, root) -> dict:
    served = 0
    for _, do, _ in DAMAGES:
        copy = root / "damaged"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(sample_index, copy)
        do(published(copy))
        try:
            Searcher.open(copy, Settings(cache_dir=root / "cache"))
            served += 1
        except SousuoError:
            pass
    return {"tried": f"{len(DAMAGES)} kinds of damage to a published version", "served": served}


def test_the_reliability_table_meets_every_goal_and_is_written(sample_searcher, sample_index, tmp_path):
    inputs, queries = hostile_inputs(tmp_path), fuzzed(sample_searcher)
    escapes, damaged = sandbox(sample_index, tmp_path), damage(sample_index, tmp_path)
    rows = [
        ("hostile corpus (wrong types, lone surrogates, 100,000-deep JSON, 225,000-character CSV cell, garbage and "
         "truncated Parquet, BOMs, duplicates, binary and list text, GBK)", inputs["tried"],
         f"valid documents lost: {inputs['lost']} (goal 0); crashes: {inputs['crashes']} (goal 0); "
         f"quarantine rows: {inputs['quarantined']}"),
        ("query parser and searcher", queries["tried"],
         f"crashes: {queries['crashes']} (goal 0); refused with a one-line syntax error: {queries['refused']:,}"),
        ("SQL console sandbox", escapes["tried"], f"escapes: {escapes['escapes']} of {escapes['tries']} (goal 0)"),
        ("damaged index versions", damaged["tried"], f"served anyway: {damaged['served']} (goal 0)"),
    ]
    table = "\n".join(f"| {what} | {tried} | {result} |" for what, tried, result in rows)
    REPORT.write_text(
        "# Reliability\n\n"
        "What was tried against sousuo as a hostile user would, and what happened. Regenerate with "
        "`make test-slow` (`tests/test_reliability.py`); the default `make test` runs smaller versions of each "
        "(`test_hostile_corpus.py`, `test_query_fuzz.py`, `test_sql.py`, `test_damage.py`).\n\n"
        f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n\n"
        "| what | tried | result |\n|---|---|---|\n" + table + "\n\n"
        "Also covered by the default tests: concurrent builds of one index (the second waits for the lock, or "
        "exits with `IndexBusy`), builds killed with SIGKILL (the served version never changes; the next build "
        "removes the leftovers), cache folders cleared between runs (recomputed), version names that are paths "
        "(refused), and an index path that is a file or does not exist (one-line errors).\n"
    )
    assert inputs["lost"] == inputs["crashes"] == queries["crashes"] == escapes["escapes"] == damaged["served"] == 0
