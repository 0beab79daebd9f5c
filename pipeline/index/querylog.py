"""The query log: every search and every click on a result, appended as small Parquet part files.

Layout under an index folder::

    querylog/queries/<time>-<uuid>.parquet   one file per logged search (or per batch of simulated ones)
    querylog/clicks/<time>-<uuid>.parquet    one file per logged click (or per batch)
    querylog/salt                            the secret that user and session ids are hashed with
    querylog/profiles/<user_hash>.json       a user's profile, where one is kept
    querylog/quarantine/<kind>/<part>        a part that cannot be read as the log's schema, moved aside, and
    querylog/quarantine/<kind>/<part>.json   why (the ingest quarantine's row: reason, field, detail, where from)

Each write goes to a hidden temporary name in the same folder and is then renamed into place with
`os.replace`, which is atomic: readers (and concurrent writers in other Streamlit sessions or processes)
see a complete part file or none, never a torn one. The log is append-only except for `forget_user`, which
rewrites the part files holding a user's rows the same atomic way. Analytics read every part back through DuckDB.

A part that is not the log's (garbage, a truncated or empty file, a Parquet file of other columns or types) is
moved to the quarantine when a reader first meets it, so one foreign file never takes search down and every valid
part is still read. Each part's footer is checked once per (path, mtime, size) in a process.

Anonymous user and session ids are stored only as salted hashes (HMAC-SHA256 with this log's own random salt),
so the log alone cannot be joined with another system's ids; `forget_user` hashes the id it is given the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..constants import MAX_QUERY_CHARS
from ..errors import InputError
from ..ingest.quarantine import MISSING_COLUMN, UNREADABLE_FILE, WRONG_TYPE, Rejection
from ..io import atomic_write, atomic_write_text
from ..schemas import CLICKS, QUERIES
from ..text.analysis import replace_lone_surrogates

QUERYLOG_DIR = "querylog"
QUERIES_DIR = "queries"
CLICKS_DIR = "clicks"
PROFILES_DIR = "profiles"
SALT_FILE = "salt"
QUARANTINE_DIR = "quarantine"
# The folder of each kind of part → the schema its parts are read as.
LOG_SCHEMAS = {QUERIES_DIR: QUERIES, CLICKS_DIR: CLICKS}
MAX_ID_CHARS = 200  # a client's anonymous id; longer ones are refused, not cut (two could collide)

_BUCKETS = {"minute", "hour", "day", "week", "month"}

logger = logging.getLogger(__name__)


def filters_json(filters: Any) -> str:
    """A stable JSON text of search filters: a `Filters` dataclass, a dict, or None; empty values dropped."""
    if filters is None:
        data: dict = {}
    elif is_dataclass(filters):
        data = asdict(filters)
    else:
        data = dict(filters)

    def plain(value):
        if isinstance(value, (datetime, date)):
            return value.isoformat()
        if isinstance(value, (list, tuple, set, frozenset)):
            return [plain(v) for v in value]
        return value

    return json.dumps({k: plain(v) for k, v in sorted(data.items()) if v not in (None, (), [], "")},
                      ensure_ascii=False, sort_keys=True)


def _now() -> datetime:
    return datetime.now(UTC)


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
                 pa.list_(pa.string()): "VARCHAR[]", pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ"}


def log_view_sql(files: Sequence[Path], schema: pa.Schema) -> str:
    """A SELECT over log part files with every column of `schema`: columns a part predates read as nulls, and no
    part at all gives an empty relation of the right types."""
    empty = ", ".join(f"NULL::{_DUCKDB_TYPES[f.type]} AS {f.name}" for f in schema)
    typed = f"SELECT {empty} WHERE false"
    if not files:
        return typed
    parts = "[" + ", ".join(_quote(f) for f in files) + "]"
    return f"{typed} UNION ALL BY NAME SELECT * FROM read_parquet({parts}, union_by_name = true)"


def type_fits(actual: pa.DataType, declared: pa.DataType) -> bool:
    """Whether a column of type `actual` reads as `declared` without parsing or losing meaning: the same family at
    any width or encoding (any integer for an integer, any integer or float for a float, any unit or zone for a
    timestamp, any string encoding for a string, a list of fitting items for a list), or a column of nulls only.
    A string never fits a number or a time (it would have to be parsed), nor a float an integer, nor a number a
    string: those are another program's columns, not the log's."""
    if pa.types.is_null(actual) or actual == declared:
        return True
    if pa.types.is_dictionary(actual):
        return type_fits(actual.value_type, declared)
    if pa.types.is_string(declared):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_string_view(actual)
    if pa.types.is_integer(declared):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(declared):
        return pa.types.is_integer(actual) or pa.types.is_floating(actual)
    if pa.types.is_timestamp(declared):
        return pa.types.is_timestamp(actual)
    if pa.types.is_list(declared):
        return ((pa.types.is_list(actual) or pa.types.is_large_list(actual))
                and type_fits(actual.value_type, declared.value_type))
    return False


def part_rejection(path: Path, schema: pa.Schema) -> Rejection | None:
    """Why a log part cannot be read as `schema`, from its footer alone; None where it can. Every column of the
    schema a part has must fit its declared type (`type_fits`); columns it lacks read as nulls (older parts predate
    them), except the non-nullable ones, which every part has had since the log's first version; columns the schema
    does not declare (a newer writer's) are read as they are. FileNotFoundError where the part is gone."""
    try:
        found = pq.read_schema(path)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as error:
        return Rejection(UNREADABLE_FILE, " ".join(f"{type(error).__name__}: {error}".split()))
    for declared in schema:
        if declared.name not in found.names:
            if not declared.nullable:
                return Rejection(MISSING_COLUMN, f"no column {declared.name}, which every part of the log has",
                                 declared.name)
        elif not type_fits(found.field(declared.name).type, declared.type):
            return Rejection(WRONG_TYPE, f"{declared.name} is {found.field(declared.name).type}, the log's "
                                         f"schema declares {declared.type}", declared.name)
    return None


# Part path → (mtime_ns, size, why it cannot be read or None): a part's footer is read again only when the part
# changed, so a search over a log of thousands of parts stats them rather than opening each.
_checked: dict[str, tuple[int, int, Rejection | None]] = {}


class QueryLog:
    """Append and read back the query log of one index folder; safe to share between threads and processes."""

    def __init__(self, index_dir: Path | str):
        self.root = Path(index_dir) / QUERYLOG_DIR
        self._salt_bytes: bytes | None = None

    @property
    def queries_dir(self) -> Path:
        return self.root / QUERIES_DIR

    @property
    def clicks_dir(self) -> Path:
        return self.root / CLICKS_DIR

    def clicks_changed_at(self) -> float:
        """When a click part was last added or removed (the folder's mtime); 0 where nothing was logged."""
        return self.clicks_dir.stat().st_mtime if self.clicks_dir.is_dir() else 0.0

    # -- writing ------------------------------------------------------------------------------------

    def log_query(
        self,
        text: str,
        mode: str,
        filters: Any = None,
        latency_ms: float = 0.0,
        result_ids: Sequence[str] = (),
        result_count: int | None = None,
        result_offset: int = 0,
        ts: datetime | None = None,
        query_id: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        ranker: str | None = None,
        arm: str | None = None,
        experiment: str | None = None,
        result_arms: Sequence[str] | None = None,
    ) -> str:
        """Append one search; returns its query_id, which clicks on its results refer to."""
        query_id = query_id or uuid.uuid4().hex
        row = self.query_row(text, mode, filters, latency_ms, result_ids, result_count, result_offset, ts, query_id,
                             user_id, session_id, ranker, arm, experiment, result_arms)
        self._append(self.queries_dir, pa.Table.from_pylist([row], schema=QUERIES))
        return query_id

    def query_row(self, text: str, mode: str, filters: Any = None, latency_ms: float = 0.0,
                  result_ids: Sequence[str] = (), result_count: int | None = None, result_offset: int = 0,
                  ts: datetime | None = None, query_id: str | None = None, user_id: str | None = None,
                  session_id: str | None = None, ranker: str | None = None, arm: str | None = None,
                  experiment: str | None = None, result_arms: Sequence[str] | None = None) -> dict:
        """One row of the queries table, ids hashed; `log_batch` appends many at once. `result_arms`, when an
        experiment interleaved the results, names the arm that placed each of `result_ids`."""
        if result_arms is not None and len(result_arms) != len(result_ids):
            raise InputError(f"{len(result_arms)} result arms for {len(result_ids)} results")
        return {
            "query_id": query_id or uuid.uuid4().hex,
            "ts": ts or _now(),
            # Lone surrogates (undecodable bytes in a query) cannot be stored as UTF-8: logged as U+FFFD.
            "text": replace_lone_surrogates((text or "")[:MAX_QUERY_CHARS]),
            "mode": mode,
            "filters": filters if isinstance(filters, str) else filters_json(filters),
            "latency_ms": float(latency_ms),
            "result_ids": [str(d) for d in result_ids],
            "result_count": int(len(result_ids) if result_count is None else result_count),
            "result_offset": int(result_offset),
            "user_hash": self.hash_id(user_id),
            "session_hash": self.hash_id(session_id),
            "ranker": ranker,
            "arm": arm,
            "experiment": experiment,
            "result_arms": None if result_arms is None else [str(a) for a in result_arms],
        }

    def log_click(self, query_id: str, doc_id: str, position: int, ts: datetime | None = None,
                  user_id: str | None = None, session_id: str | None = None) -> None:
        """Append one click on the result shown at 1-based `position` of search `query_id`."""
        row = self.click_row(query_id, doc_id, position, ts, user_id, session_id)
        self._append(self.clicks_dir, pa.Table.from_pylist([row], schema=CLICKS))

    def click_row(self, query_id: str, doc_id: str, position: int, ts: datetime | None = None,
                  user_id: str | None = None, session_id: str | None = None) -> dict:
        if int(position) < 1:
            raise InputError(f"positions are 1-based, got {position}")
        return {"query_id": query_id, "ts": ts or _now(), "doc_id": str(doc_id), "position": int(position),
                "user_hash": self.hash_id(user_id), "session_hash": self.hash_id(session_id)}

    def log_batch(self, queries: Sequence[dict], clicks: Sequence[dict]) -> None:
        """Append rows made by `query_row` and `click_row` as one part file each (the simulator logs thousands)."""
        if queries:
            self._append(self.queries_dir, pa.Table.from_pylist(list(queries), schema=QUERIES))
        if clicks:
            self._append(self.clicks_dir, pa.Table.from_pylist(list(clicks), schema=CLICKS))

    # -- anonymous ids ------------------------------------------------------------------------------

    def _salt(self) -> bytes:
        """This log's secret, made on first use; linked into place so two first writers agree on one."""
        if self._salt_bytes is not None:
            return self._salt_bytes
        path = self.root / SALT_FILE
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            staging = self.root / f".{SALT_FILE}.{uuid.uuid4().hex}.tmp"
            staging.write_bytes(secrets.token_bytes(32))
            os.chmod(staging, 0o600)
            try:
                os.link(staging, path)
            except FileExistsError:
                pass
            finally:
                staging.unlink()
        self._salt_bytes = path.read_bytes()
        return self._salt_bytes

    def hash_id(self, value: str | None) -> str | None:
        """The salted hash a user or session id is stored as; None stays None."""
        if value is None or value == "":
            return None
        value = str(value)
        if len(value) > MAX_ID_CHARS:
            raise InputError(f"ids are at most {MAX_ID_CHARS} characters, got {len(value)}")
        return hmac.new(self._salt(), value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]

    def profile_path(self, user_hash: str) -> Path:
        return self.root / PROFILES_DIR / f"{user_hash}.json"

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete every query and click of a user (and clicks on those queries), and their profile.

        Each part file holding such rows is rewritten without them (atomically) or removed when nothing is left;
        every other file is left untouched. Returns the numbers of rows and files removed or rewritten."""
        if not user_id:
            raise InputError("give the user id to forget")
        user_hash = self.hash_id(user_id)
        removed = {"queries": 0, "clicks": 0, "files_rewritten": 0, "files_removed": 0, "profile": 0}
        forgotten_queries: set[str] = set()

        def drop(part: Path, table: pa.Table, mine: pa.ChunkedArray, kind: str) -> None:
            kept = table.filter(pc.invert(mine))
            if kept.num_rows == table.num_rows:
                return
            removed[kind] += table.num_rows - kept.num_rows
            if kept.num_rows:
                atomic_write(part, lambda tmp: pq.write_table(kept, tmp))
                removed["files_rewritten"] += 1
            else:
                part.unlink()
                removed["files_removed"] += 1

        for part in self.parts(QUERIES_DIR):
            if "user_hash" not in pq.read_schema(part).names:
                continue  # written before users were logged: holds nobody's rows
            table = pq.read_table(part)
            mine = pc.fill_null(pc.equal(table["user_hash"], user_hash), False)
            forgotten_queries.update(table.filter(mine)["query_id"].to_pylist())
            drop(part, table, mine, "queries")
        for part in self.parts(CLICKS_DIR):
            table = pq.read_table(part)
            mine = pc.is_in(table["query_id"], pa.array(sorted(forgotten_queries), pa.string()))
            if "user_hash" in table.column_names:
                mine = pc.or_(mine, pc.fill_null(pc.equal(table["user_hash"], user_hash), False))
            drop(part, table, mine, "clicks")
        profile = self.profile_path(user_hash)
        if profile.exists():
            profile.unlink()
            removed["profile"] = 1
        return removed

    @staticmethod
    def _append(folder: Path, table: pa.Table) -> Path:
        name = f"{_now():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex}.parquet"
        return atomic_write(folder / name, lambda tmp: pq.write_table(table, tmp))

    # -- reading ------------------------------------------------------------------------------------

    def parts(self, kind: str) -> list[Path]:
        """The part files of `kind` (queries or clicks) that read as the log's schema, sorted. Any other part is
        quarantined (`quarantine`) and left out; every valid part is kept."""
        good = []
        for part in sorted((self.root / kind).glob("*.parquet")):
            try:
                stat = part.stat()
            except FileNotFoundError:
                continue  # another reader quarantined it meanwhile, or a link to nothing
            except OSError as error:  # a link that loops, or a part this process may not look at
                self.quarantine(part, kind, Rejection(UNREADABLE_FILE, f"{type(error).__name__}: {error}"))
                continue
            key = (stat.st_mtime_ns, stat.st_size)
            seen = _checked.get(str(part))
            if seen is not None and seen[:2] == key:
                rejection = seen[2]
            else:
                try:
                    rejection = part_rejection(part, LOG_SCHEMAS[kind])
                except FileNotFoundError:
                    continue  # another reader quarantined it meanwhile
                _checked[str(part)] = (*key, rejection)
                if rejection is not None:
                    self.quarantine(part, kind, rejection)
            if rejection is None:
                good.append(part)
        return good

    def quarantine(self, part: Path, kind: str, rejection: Rejection) -> None:
        """Move a part aside to querylog/quarantine/<kind>/ with a JSON record of why, and log a one-line warning.

        The move is one rename, so readers see the part in place or gone; a part that another process moved first
        is left to it (it writes the record). A part that cannot be moved (a read-only index) stays where it is and
        is skipped. Only unreadable parts move, and nothing writes an unreadable part over a readable one's name,
        so a part checked bad is still bad when it is moved."""
        folder = self.root / QUARANTINE_DIR / kind
        moved = folder / part.name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(part, moved)
        except FileNotFoundError:
            return
        except OSError as error:
            logger.warning("query log part %s skipped: %s (%s); it cannot be moved aside: %s",
                           part, rejection.reason, rejection.detail, error)
            return
        _checked.pop(str(part), None)
        record = rejection.row(str(part), str(moved), None, _now())
        record["quarantined_at"] = record["quarantined_at"].isoformat()
        atomic_write_text(moved.with_name(moved.name + ".json"), json.dumps(record, ensure_ascii=False))
        logger.warning("query log part %s moved to %s: %s (%s)", part, folder, rejection.reason, rejection.detail)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with views `queries` and `clicks` (empty when nothing is logged) over the
        parts that read as the log's schema."""
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for kind, schema in LOG_SCHEMAS.items():
            con.execute(f"CREATE VIEW {kind} AS {log_view_sql(self.parts(kind), schema)}")
        return con

    def read_through(self) -> None:
        """Read every part whose footer passed all the way through, and quarantine those DuckDB cannot read (damaged
        pages behind a valid footer): the slow check, run only after a read of the log failed."""
        con = duckdb.connect()
        try:
            for kind in LOG_SCHEMAS:
                for part in self.parts(kind):
                    try:
                        con.execute(f"SELECT * FROM read_parquet({_quote(part)})").fetchall()
                    except duckdb.Error as error:
                        if part.exists():  # not removed since it was listed
                            self.quarantine(part, kind, Rejection(UNREADABLE_FILE, " ".join(str(error).split())))
        finally:
            con.close()

    def sql(self, query: str, params: Sequence | None = None) -> list[dict]:
        """Rows of a query over the `queries` and `clicks` views, as dicts. Where DuckDB fails to read a part (damaged
        pages, or a part removed by `forget_user` or another reader since it was listed), the parts are read through
        (`read_through`) and the query runs once more over those that remain."""
        try:
            return self._rows(query, params)
        except duckdb.Error as error:
            if isinstance(error, duckdb.ProgrammingError):
                raise  # the statement's own fault, not the files'
            self.read_through()
            return self._rows(query, params)

    def _rows(self, query: str, params: Sequence | None) -> list[dict]:
        con = self.connect()
        try:
            result = con.execute(query, params or [])
            columns = [d[0] for d in result.description]
            return [dict(zip(columns, row)) for row in result.fetchall()]
        finally:
            con.close()

    def queries(self) -> list[dict]:
        return self.sql("SELECT * FROM queries ORDER BY ts, query_id")

    def clicks(self) -> list[dict]:
        return self.sql("SELECT * FROM clicks ORDER BY ts, query_id")

    def count(self) -> dict[str, int]:
        rows = self.sql("SELECT (SELECT count(*) FROM queries) AS queries, (SELECT count(*) FROM clicks) AS clicks")
        return rows[0]

    # -- analytics ----------------------------------------------------------------------------------

    def top_queries(self, limit: int = 20, min_results: int | None = None) -> list[dict]:
        """Most frequent queries (case- and space-insensitive), with their zero-result share and latency.

        `min_results=1` keeps only queries that found something: what autocomplete should offer.
        """
        having = "" if min_results is None else f"HAVING max(result_count) >= {int(min_results)}"
        return self.sql(
            f"""
            SELECT any_value(text ORDER BY ts DESC) AS text, count(*) AS searches,
                   count(*) FILTER (WHERE result_count = 0) AS zero_results,
                   round(avg(latency_ms), 3) AS avg_latency_ms, max(ts) AS last_seen
            FROM queries WHERE trim(text) <> ''
            GROUP BY lower(trim(text)) {having}
            ORDER BY searches DESC, text LIMIT ?
            """,
            [int(limit)],
        )

    def zero_result_queries(self, limit: int = 20) -> list[dict]:
        """Queries that matched nothing, most frequent first: gaps in the corpus or in the analyzer."""
        return self.sql(
            """
            SELECT any_value(text ORDER BY ts DESC) AS text, count(*) AS searches, max(ts) AS last_seen,
                   list(DISTINCT mode ORDER BY mode) AS modes
            FROM queries WHERE result_count = 0 AND trim(text) <> ''
            GROUP BY lower(trim(text)) ORDER BY searches DESC, text LIMIT ?
            """,
            [int(limit)],
        )

    def latency_percentiles(self, bucket: str = "hour") -> list[dict]:
        """p50 / p90 / p99 latency and the number of searches per time bucket (minute, hour, day, week, month)."""
        if bucket not in _BUCKETS:
            raise InputError(f"unknown bucket {bucket!r}; choose from {sorted(_BUCKETS)}")
        return self.sql(
            f"""
            SELECT date_trunc('{bucket}', ts) AS bucket, count(*) AS searches,
                   quantile_cont(latency_ms, 0.5) AS p50_ms, quantile_cont(latency_ms, 0.9) AS p90_ms,
                   quantile_cont(latency_ms, 0.99) AS p99_ms
            FROM queries GROUP BY bucket ORDER BY bucket
            """
        )

    def latency_by_mode(self) -> list[dict]:
        return self.sql(
            """
            SELECT mode, count(*) AS searches, quantile_cont(latency_ms, 0.5) AS p50_ms,
                   quantile_cont(latency_ms, 0.9) AS p90_ms, quantile_cont(latency_ms, 0.99) AS p99_ms
            FROM queries GROUP BY mode ORDER BY mode
            """
        )

    def ctr_by_position(self, max_position: int = 10) -> list[dict]:
        """Per result position: impressions (searches that showed a result there), clicks and click-through rate.

        A click counts once per search and position, however often it was repeated.
        """
        return self.sql(
            """
            WITH shown AS (
                SELECT query_id, result_offset + unnest(generate_series(1, len(result_ids))) AS position
                FROM queries WHERE len(result_ids) > 0
            ),
            impressions AS (
                SELECT position, count(*) AS impressions FROM shown WHERE position <= ? GROUP BY position
            ),
            clicked AS (
                SELECT position, count(*) AS clicks
                FROM (SELECT DISTINCT query_id, position FROM clicks WHERE position <= ?) GROUP BY position
            )
            SELECT position::INTEGER AS position, coalesce(i.impressions, 0) AS impressions,
                   coalesce(c.clicks, 0) AS clicks,
                   CASE WHEN coalesce(i.impressions, 0) = 0 THEN NULL
                        ELSE round(coalesce(c.clicks, 0) / i.impressions, 4) END AS ctr
            FROM impressions i FULL OUTER JOIN clicked c USING (position)
            ORDER BY position
            """,
            [int(max_position), int(max_position)],
        )

    def engagement(self, before: float | None = None,
                   without_queries: Sequence[str] = ()) -> dict[str, tuple[int, int]]:
        """doc_id → (impressions, clicks): the data of the ranker's click features. Over the whole log, or over its
        searches before `before` (seconds since the epoch) less those of the query keys `without_queries` (a
        ranker learning from later clicks sees the click features of that past alone)."""
        rows = self.sql(
            """
            WITH known AS (SELECT query_id, result_ids FROM queries
                           WHERE ($1 IS NULL OR epoch(ts) < $1) AND NOT list_contains($2, lower(trim(text)))),
                 shown AS (SELECT unnest(result_ids) AS doc_id FROM known),
                 impressions AS (SELECT doc_id, count(*) AS n FROM shown GROUP BY doc_id),
                 clicked AS (SELECT c.doc_id, count(*) AS n FROM clicks c
                             WHERE ($1 IS NULL AND len($2) = 0) OR c.query_id IN (SELECT query_id FROM known)
                             GROUP BY c.doc_id)
            SELECT coalesce(i.doc_id, c.doc_id) AS doc_id, coalesce(i.n, 0) AS impressions, coalesce(c.n, 0) AS clicks
            FROM impressions i FULL OUTER JOIN clicked c ON i.doc_id = c.doc_id
            """,
            [before, list(without_queries)],
        )
        return {row["doc_id"]: (int(row["impressions"]), int(row["clicks"])) for row in rows}

    def clicked_documents(self, limit: int = 20) -> list[dict]:
        return self.sql(
            """
            SELECT doc_id, count(*) AS clicks, round(avg(position), 2) AS avg_position
            FROM clicks GROUP BY doc_id ORDER BY clicks DESC, doc_id LIMIT ?
            """,
            [int(limit)],
        )
