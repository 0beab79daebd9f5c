"""DuckDB views: every artifact is queryable, the documented queries run, writes are refused, and no statement
reaches a file the views do not name."""

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, SAMPLE

from pipeline.experiment.runs import evaluate
from pipeline.serving.sql import (
    ReadOnlyViolation,
    SandboxViolation,
    SqlError,
    SqlSession,
)

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
     "ATTACH ':memory:' AS other", "SELECT 1; DELETE FROM documents"],
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


# -- the sandbox --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    return write_outside_files(tmp_path_factory.mktemp("outside"))


def write_outside_files(folder):
    """A folder outside the index holding one file of each format DuckDB reads."""
    (folder / "secret.csv").write_text("secret\nhunter2\n")
    (folder / "secret.json").write_text('{"secret": "hunter2"}\n')
    duckdb.sql(f"COPY (SELECT 'hunter2' AS secret) TO '{folder / 'secret.parquet'}'")
    return folder


FILE_FUNCTIONS = [
    "SELECT * FROM read_text('{dir}/secret.csv')",
    "SELECT * FROM read_blob('{dir}/secret.csv')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_csv('{dir}/secret.csv')",
    "SELECT * FROM read_csv_auto('{dir}/secret.csv')",
    "SELECT * FROM read_json('{dir}/secret.json')",
    "SELECT * FROM read_json_auto('{dir}/secret.json')",
    "SELECT * FROM read_parquet('{dir}/secret.parquet')",
    "SELECT * FROM parquet_scan('{dir}/secret.parquet')",
    "SELECT * FROM '{dir}/secret.parquet'",
    "SELECT * FROM glob('{dir}/*')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_text('{index}/../../{outside_name}/secret.csv')",
    "EXPLAIN ANALYZE SELECT * FROM read_text('{dir}/secret.csv')",
    "COPY (SELECT 42) TO '{dir}/written.csv'",
    "COPY documents TO '{dir}/written.csv'",
    "COPY documents FROM '{dir}/secret.csv'",
    "EXPLAIN ANALYZE COPY (SELECT 42) TO '{dir}/written.csv'",
    "EXPLAIN (ANALYZE, FORMAT json) COPY (SELECT 42) TO '{dir}/written.csv'",
    "EXPORT DATABASE '{dir}/exported'",
    "ATTACH '{dir}/written.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "RESET lock_configuration",
    "CREATE PERSISTENT SECRET leak (TYPE s3, KEY_ID 'a', SECRET 'b')",
]


@pytest.fixture(scope="module", params=[False, True], ids=["read-only", "writable"])
def sandboxed(request, sample_index):
    with SqlSession(sample_index, writable=request.param) as session:
        yield session


@pytest.mark.parametrize("template", FILE_FUNCTIONS)
def test_no_statement_reaches_a_file_outside_the_views(sandboxed, sample_index, outside, template):
    sql = template.format(dir=outside, index=sample_index, outside_name=outside.name)
    with pytest.raises(SqlError) as refused:
        sandboxed.fetch(sql)
    assert "\n" not in str(refused.value)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.csv", "secret.json", "secret.parquet"]
    assert sandboxed.fetch("SELECT count(*) FROM documents")[1][0][0] > 0


@pytest.mark.parametrize("sql", ["COPY (SELECT 42) TO '{dir}/written.csv'", "EXPORT DATABASE '{dir}/exported'",
                                 "SELECT * FROM read_text('/etc/passwd')", "SET enable_external_access = true"])
def test_duckdb_itself_refuses_outside_paths_even_past_the_statement_check(sandboxed, outside, sql):
    with pytest.raises(duckdb.Error):
        sandboxed.connection.execute(sql.format(dir=outside)).fetchall()
    assert not (outside / "written.csv").exists() and not (outside / "exported").exists()


def test_a_refused_file_access_is_a_sandbox_violation_not_a_duckdb_traceback(sandboxed):
    with pytest.raises(SandboxViolation, match="Cannot access file \"/etc/passwd\""):
        sandboxed.fetch("SELECT * FROM read_text('/etc/passwd')")


def test_copy_cannot_overwrite_a_view_file_either(sandboxed, sample_index):
    documents = sandboxed.views["documents"].split("'")[1]
    before = Path(documents).read_bytes()
    with pytest.raises(SandboxViolation):
        sandboxed.fetch(f"EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '{documents}' (USE_TMP_FILE false)")
    assert Path(documents).read_bytes() == before


def test_a_syntax_error_is_one_line(sandboxed):
    with pytest.raises(SqlError, match="^Parser Error: syntax error at or near \"SELEKT\"[^\n]*$"):
        sandboxed.fetch("SELEKT nonsense FROM nowhere")


@pytest.mark.parametrize("sql", ["SELECT '\udcff'", "SELECT '\ud800' AS x"])
def test_a_statement_holding_undecodable_bytes_is_a_one_line_sql_error(sandboxed, sql):
    with pytest.raises(SqlError, match="^the statement is not valid Unicode"):
        sandboxed.fetch(sql)


def test_a_writable_session_writes_its_own_tables(sample_index):
    with SqlSession(sample_index, writable=True) as session:
        session.fetch("CREATE TABLE en AS SELECT doc_id FROM documents WHERE lang = 'en'")
        assert session.fetch("SELECT count(*) > 0 FROM en")[1] == [(True,)]
