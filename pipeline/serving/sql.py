"""DuckDB over every artifact: one view per Parquet table of an index version and of the evaluation cache, sandboxed
so that no statement reads or writes any file but those the views name."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from ..behaviour.clickmodels import BEHAVIOUR_DIR, TABLES
from ..behaviour.experiments import (
    INTERLEAVING_VIEWS,
    ExperimentStore,
    experiments_view_sql,
)
from ..errors import IndexDamaged, InputError
from ..index.querylog import LOG_SCHEMAS, QueryLog, log_view_sql
from ..index.store import Manifest, check_sizes, resolve_version_dir

# View name → path of its Parquet file, relative to the index version folder.
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
# The sandbox leaves these only the view files to touch, so all they could do is overwrite the index or copy it
# into a table (which INSERT … SELECT does as well): refused in every session.
FILE_STATEMENTS = {duckdb.StatementType.COPY, duckdb.StatementType.EXPORT}


class SqlError(InputError):
    """A statement DuckDB cannot parse or run, or one the sandbox refuses."""


class SandboxViolation(SqlError):
    """A statement that would read or write a file the views do not name."""


class ReadOnlyViolation(SandboxViolation):
    """A statement that would change data; the SQL console only reads."""


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _parquet_list(files: list[Path]) -> str:
    return "[" + ", ".join(_quote(f) for f in files) + "]"


def view_files(index_dir: Path | None, cache_dir: Path | None) -> dict[str, list[Path]]:
    """View name → the Parquet files it reads. Globs are expanded here, when the session opens, so the sandbox can
    allow exactly these files rather than whole folders (DuckDB may write into an allowed folder)."""
    files: dict[str, list[Path]] = {}
    if index_dir is not None:
        folder = resolve_version_dir(index_dir).absolute()
        check_sizes(folder, Manifest.read(folder))  # what search checks on open: a damaged version is not read
        for name, relative in INDEX_VIEWS.items():
            if (folder / relative).exists() or name == "documents":
                files[name] = [folder / relative]
        log = QueryLog(Path(index_dir).absolute())
        for name in LOG_SCHEMAS:  # the parts that read as the log's schema; any other is quarantined
            found = log.parts(name)
            if found:
                files[name] = found
        for name, (file, _) in TABLES.items():  # click models fitted on the log (sousuo click-models)
            path = Path(index_dir).absolute() / BEHAVIOUR_DIR / file
            if path.exists():
                files[name] = [path]
    if cache_dir is not None:
        for name, pattern in CACHE_VIEWS.items():
            found = sorted(Path(cache_dir).absolute().glob(pattern))
            if found:
                files[name] = found
    return files


def view_definitions(files: dict[str, list[Path]]) -> dict[str, str]:
    views = {}
    for name, paths in files.items():
        if name == "documents":
            # Postings and the forward index refer to documents by row number: expose it as doc_ord.
            views[name] = ("SELECT file_row_number::INTEGER AS doc_ord, * EXCLUDE (file_row_number) "
                           f"FROM read_parquet({_parquet_list(paths)}, file_row_number = true)")
        elif name in LOG_SCHEMAS:
            views[name] = log_view_sql(paths, LOG_SCHEMAS[name])
        else:
            views[name] = f"SELECT * FROM read_parquet({_parquet_list(paths)}, union_by_name = true)"
    return views


def experiment_views(index_dir: Path | None, files: dict[str, list[Path]]) -> dict[str, str]:
    """The index's experiments and the interleaving report over its log, where it has either; views defined after
    those of `view_definitions`, which they read."""
    if index_dir is None:
        return {}
    experiments = ExperimentStore(index_dir).list()
    if not experiments and "queries" not in files:
        return {}
    views = {name: log_view_sql([], schema) for name, schema in LOG_SCHEMAS.items() if name not in files}
    views["experiments"] = experiments_view_sql(experiments)
    views.update(INTERLEAVING_VIEWS)
    return views


def _sql_error(error: duckdb.Error) -> SqlError:
    """DuckDB's error as one line; a refused file access becomes a SandboxViolation."""
    kind = SandboxViolation if isinstance(error, duckdb.PermissionException) else SqlError
    return kind(" ".join(str(error).split()))


def explained_type(statement: duckdb.Statement) -> duckdb.StatementType:
    """The type of the statement an EXPLAIN [ANALYZE] runs (EXPLAIN ANALYZE COPY writes a file), else its own."""
    if statement.type != duckdb.StatementType.EXPLAIN:
        return statement.type
    query = statement.query
    tokens = duckdb.tokenize(query)
    i, depth = 1, 0  # token 0 is EXPLAIN; skip ANALYZE or a parenthesised option list
    while i < len(tokens):
        start = tokens[i][0]
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(query)
        text = query[start:end].strip()
        if text == "(" and tokens[i][1] == duckdb.token_type.operator:
            depth += 1
        elif text == ")" and depth:
            depth -= 1
        elif not depth and text.upper() != "ANALYZE":
            return explained_type(duckdb.extract_statements(query[start:])[0])
        i += 1
    return statement.type


class SqlSession:
    """A DuckDB connection with the views defined; read-only unless asked otherwise.

    Either way DuckDB runs with external access off, only the view files allowed, and its configuration locked, so
    no file function, COPY, ATTACH, INSTALL or SET reaches any other path."""

    def __init__(self, index_dir: Path | None = None, cache_dir: Path | None = None, writable: bool = False):
        self.writable = writable
        files = view_files(index_dir, cache_dir)
        self.views = view_definitions(files) | experiment_views(index_dir, files)
        self._scratch = tempfile.TemporaryDirectory(prefix="sousuo-sql-")
        database = str(Path(self._scratch.name) / "views.duckdb")
        with duckdb.connect(database) as setup:
            for name, select in self.views.items():
                try:
                    setup.execute(f"CREATE VIEW {name} AS {select}")
                except duckdb.Error as error:  # a file of the right size that is not Parquet
                    raise IndexDamaged(f"the {name} view cannot read its files: {' '.join(str(error).split())}") \
                        from None
        # Reopened read-only: DuckDB itself refuses any write to the catalog.
        self.connection = duckdb.connect(database, read_only=not writable)
        allowed = sorted({str(path) for paths in files.values() for path in paths})
        self.connection.execute("SET allowed_paths = $1", [allowed])
        self.connection.execute("SET enable_external_access = false")
        self.connection.execute("SET lock_configuration = true")

    def check(self, sql: str) -> None:
        try:
            sql.encode("utf-8")
        except UnicodeEncodeError:  # bytes of the command line that were not UTF-8; DuckDB takes only UTF-8
            raise SqlError("the statement is not valid Unicode: it holds bytes that are not UTF-8") from None
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as error:
            raise _sql_error(error) from None
        for statement in statements:
            kind = explained_type(statement)
            if kind in FILE_STATEMENTS:
                raise SandboxViolation(f"{kind.name} statements are refused: the SQL console reads no file but its views' "
                               "and writes none")
            if not self.writable and kind not in READ_ONLY_STATEMENTS:
                raise ReadOnlyViolation(f"{kind.name} statements are refused in a read-only session (use --writable)")

    def query(self, sql: str) -> duckdb.DuckDBPyRelation | None:
        """Checks and binds `sql`; rows are read when the relation is fetched (see `fetch` for errors as SqlError)."""
        self.check(sql)
        try:
            return self.connection.sql(sql)
        except duckdb.Error as error:
            raise _sql_error(error) from None

    def fetch(self, sql: str, max_rows: int | None = None):
        """(column names, rows) of a query, at most `max_rows` rows."""
        relation = self.query(sql)
        if relation is None:
            return [], []
        try:
            rows = (relation if max_rows is None else relation.limit(max_rows)).fetchall()
        except duckdb.Error as error:
            raise _sql_error(error) from None
        return relation.columns, rows

    def close(self) -> None:
        self.connection.close()
        self._scratch.cleanup()

    def __enter__(self) -> SqlSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
