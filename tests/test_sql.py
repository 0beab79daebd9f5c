"""DuckDB views: every artifact is queryable, the documented queries run, and writes are refused."""

import re
import subprocess
import sys

import duckdb
import pytest

from pipeline.experiment.runs import evaluate
from pipeline.serving.sql import ReadOnlyViolation, SqlSession

from conftest import ROOT, SAMPLE

DOCUMENTED = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "analysis.md").read_text(), re.S)


@pytest.fixture(scope="module")
def session(sample_index, settings):
    evaluate(SAMPLE, settings=settings)
    with SqlSession(sample_index, settings.cache_dir) as session:
        yield session


def test_every_artifact_has_a_view(session):
    assert set(session.views) == {"documents", "quarantine", "vocabulary", "terms", "postings", "forward",
                                  "passages", "embeddings", "runs", "metrics"}


def test_views_read_the_index_as_it_stands(session, sample_searcher):
    columns, rows = session.fetch("SELECT count(*) FROM documents")
    assert rows == [(sample_searcher.reader.n_docs,)]


def test_there_are_at_least_ten_documented_queries():
    assert len(DOCUMENTED) >= 10


@pytest.mark.parametrize("sql", DOCUMENTED, ids=[f"query{i + 1}" for i in range(len(DOCUMENTED))])
def test_documented_query_returns_rows(session, sql):
    columns, rows = session.fetch(sql)
    # The sample has no document without words and no quarantined record: those two queries find nothing.
    if "HAVING sum(f.length) = 0" in sql or "FROM quarantine" in sql:
        assert columns and rows == []
    else:
        assert columns and rows


def test_df_per_language_query_finds_chinese_terms(session):
    _, rows = session.fetch(DOCUMENTED[3])
    assert {row[0] for row in rows} == {"en", "zh"}


@pytest.mark.parametrize(
    "sql",
    ["CREATE TABLE x AS SELECT 1", "DROP VIEW documents", "INSERT INTO documents SELECT * FROM documents",
     "COPY documents TO '/tmp/leak.csv'", "ATTACH ':memory:' AS other", "SELECT 1; DELETE FROM documents"],
)
def test_writing_statements_are_refused(session, sql):
    with pytest.raises(ReadOnlyViolation):
        session.query(sql)


def test_read_only_connection_refuses_writes_even_past_the_check(session):
    with pytest.raises(duckdb.Error):
        session.connection.execute("CREATE TABLE sneaky (x INT)")


def test_sql_cli_runs_a_command_as_json(sample_index):
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "sql", "--index", str(sample_index), "--json",
         "-c", "SELECT lang, count(*) AS n FROM documents GROUP BY lang ORDER BY lang"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    assert '"lang": "en"' in result.stdout and '"lang": "zh"' in result.stdout
