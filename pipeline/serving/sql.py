"""DuckDB over every artifact: one view per Parquet table of an index version and of the evaluation cache."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from ..errors import InputError
from ..index.querylog import QueryLog
from ..index.store import resolve_version_dir

# View name → path of its Parquet file(s), relative to the index version folder.
INDEX_VIEWS = {
    "documents": "documents.parquet",
    "quarantine": "quarantine.parquet",
    "vocabulary": "inverted/vocabulary.parquet",
    "terms": "inverted/terms.parquet",
    "postings": "inverted/postings.parquet",
    "forward": "forward/forward.parquet",
    "passages": "dense/passages.parquet",
    "embeddings": "dense/embeddings.parquet",
}
# View name → glob under the cache folder.
CACHE_VIEWS = {"runs": "runs/*.run.parquet", "metrics": "metrics/*.parquet"}

# Statement types a read-only session may run.
READ_ONLY_STATEMENTS = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
    duckdb.StatementType.PRAGMA,
}


class ReadOnlyViolation(InputError):
    """A statement that would change data; the SQL console only reads."""


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def view_definitions(index_dir: Path | None, cache_dir: Path | None) -> dict[str, str]:
    views = {}
    if index_dir is not None:
        folder = resolve_version_dir(index_dir)
        for name, relative in INDEX_VIEWS.items():
            if (folder / relative).exists():
                views[name] = f"SELECT * FROM read_parquet({_quote(folder / relative)})"
        log = QueryLog(index_dir)
        for name, parts in (("queries", log.queries_dir), ("clicks", log.clicks_dir)):
            if any(parts.glob("*.parquet")):
                views[name] = f"SELECT * FROM read_parquet({_quote(parts / '*.parquet')}, union_by_name=true)"
        # Postings and the forward index refer to documents by row number: expose it as doc_ord.
        views["documents"] = (
            "SELECT file_row_number::INTEGER AS doc_ord, * EXCLUDE (file_row_number) "
            f"FROM read_parquet({_quote(folder / INDEX_VIEWS['documents'])}, file_row_number = true)"
        )
    if cache_dir is not None:
        for name, pattern in CACHE_VIEWS.items():
            if any(Path(cache_dir).glob(pattern)):
                views[name] = f"SELECT * FROM read_parquet({_quote(Path(cache_dir) / pattern)}, union_by_name=true)"
    return views


class SqlSession:
    """A DuckDB connection with the views defined; read-only unless asked otherwise."""

    def __init__(self, index_dir: Path | None = None, cache_dir: Path | None = None, writable: bool = False):
        self.writable = writable
        self.views = view_definitions(index_dir, cache_dir)
        self._scratch = tempfile.TemporaryDirectory(prefix="sousuo-sql-")
        database = str(Path(self._scratch.name) / "views.duckdb")
        with duckdb.connect(database) as setup:
            for name, select in self.views.items():
                setup.execute(f"CREATE VIEW {name} AS {select}")
        # Reopened read-only: DuckDB itself refuses any write to the catalog.
        self.connection = duckdb.connect(database, read_only=not writable)

    def check(self, sql: str) -> None:
        if self.writable:
            return
        for statement in duckdb.extract_statements(sql):
            if statement.type not in READ_ONLY_STATEMENTS:
                raise ReadOnlyViolation(
                    f"{statement.type.name} statements are refused in a read-only session (use --writable)"
                )

    def query(self, sql: str) -> duckdb.DuckDBPyRelation | None:
        self.check(sql)
        return self.connection.sql(sql)

    def fetch(self, sql: str):
        """(column names, rows) of a query."""
        relation = self.query(sql)
        if relation is None:
            return [], []
        return relation.columns, relation.fetchall()

    def close(self) -> None:
        self.connection.close()
        self._scratch.cleanup()

    def __enter__(self) -> SqlSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
