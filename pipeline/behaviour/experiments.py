"""Online experiments: a control and a candidate ranker interleaved on a share of traffic for a time window, and the
report of which one users' clicks prefer.

Layout under an index folder::

    experiments/<id>.json    one experiment, written atomically (created once, rewritten when stopped)

An arm is a ranker spec: a search mode (`bm25`, `dense`, `hybrid`) or `ltr:<model id>`, a ranker of the index's
`rankers/`. A request takes part when the experiment is running, its control arm's mode is the mode asked for, and
the salted hash of its user id (else its session id) falls in the experiment's share: the same visitor is always in
or always out. The report reads the log through the views below (`sousuo sql` shows them too)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import IndexNotFound, InputError
from ..index.querylog import QueryLog
from ..io import atomic_write_text
from .interleaving import CANDIDATE, CONTROL

EXPERIMENTS_DIR = "experiments"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def arm_mode(spec: str) -> tuple[str, str | None]:
    """(search mode, ranker model id or None) of an arm spec."""
    mode, _, model_id = spec.partition(":")
    return mode, (model_id or None)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class Experiment:
    experiment_id: str
    control: str  # arm specs
    candidate: str
    share: float  # of visitors, in (0, 1]
    start: datetime
    end: datetime
    created_at: datetime
    stopped_at: datetime | None = None

    def running(self, at: datetime) -> bool:
        return self.start <= _utc(at) < self.end

    def includes(self, unit_hash: str) -> bool:
        """Whether a visitor (the hash of their id) is in this experiment's share: uniform and independent of other
        experiments, since the experiment id is hashed in."""
        digest = hashlib.sha256(f"{self.experiment_id}/{unit_hash}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.share

    def arms(self) -> dict[str, str]:
        return {CONTROL: self.control, CANDIDATE: self.candidate}

    def to_json(self) -> dict:
        data = asdict(self)
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}

    @classmethod
    def from_json(cls, data: dict) -> Experiment:
        times = {k: datetime.fromisoformat(data[k]) if data.get(k) else None
                 for k in ("start", "end", "created_at", "stopped_at")}
        return cls(data["experiment_id"], data["control"], data["candidate"], float(data["share"]), **times)


class ExperimentStore:
    """The experiments of one index folder; reads are cached until the folder changes."""

    def __init__(self, index_dir: Path | str):
        self.folder = Path(index_dir) / EXPERIMENTS_DIR
        self._cache: tuple[int, list[Experiment]] | None = None

    def path(self, experiment_id: str) -> Path:
        if not _ID.fullmatch(experiment_id or ""):
            raise InputError(f"experiment ids are 1-64 letters, digits, '_', '.' or '-', not starting with a "
                             f"punctuation mark; got {experiment_id!r}")
        return self.folder / f"{experiment_id}.json"

    def list(self) -> list[Experiment]:
        """Every experiment, by start time then id."""
        try:
            stamp = self.folder.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        if self._cache is None or self._cache[0] != stamp:
            found = [Experiment.from_json(json.loads(p.read_text(encoding="utf-8")))
                     for p in self.folder.glob("*.json")]
            self._cache = (stamp, sorted(found, key=lambda e: (e.start, e.experiment_id)))
        return self._cache[1]

    def get(self, experiment_id: str) -> Experiment:
        path = self.path(experiment_id)
        if not path.is_file():
            raise IndexNotFound(f"no experiment {experiment_id!r} in {self.folder.parent}")
        return Experiment.from_json(json.loads(path.read_text(encoding="utf-8")))

    def start(self, experiment_id: str, control: str, candidate: str, share: float, start: datetime,
              end: datetime) -> Experiment:
        """Create an experiment; an existing id is refused, never overwritten."""
        start, end = _utc(start), _utc(end)
        if not 0 < share <= 1:
            raise InputError(f"the traffic share is in (0, 1], got {share}")
        if end <= start:
            raise InputError(f"the experiment must end after it starts ({start.isoformat()} → {end.isoformat()})")
        if control == candidate:
            raise InputError(f"control and candidate are the same ranker ({control}): nothing to compare")
        experiment = Experiment(experiment_id, control, candidate, float(share), start, end, datetime.now(UTC))
        path = self.path(experiment_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        staging.write_text(json.dumps(experiment.to_json(), indent=2) + "\n", encoding="utf-8")
        try:
            os.link(staging, path)  # appears whole, and only if no experiment has this id
        except FileExistsError:
            raise InputError(f"experiment {experiment_id!r} exists already; choose another id") from None
        finally:
            staging.unlink()
        return experiment

    def stop(self, experiment_id: str, at: datetime | None = None) -> Experiment:
        """End an experiment now (its record stays, for the report)."""
        experiment = self.get(experiment_id)
        at = _utc(at or datetime.now(UTC))
        experiment.stopped_at = at
        experiment.end = min(experiment.end, max(at, experiment.start))
        atomic_write_text(self.path(experiment_id), json.dumps(experiment.to_json(), indent=2) + "\n")
        return experiment

    def assign(self, unit_hash: str | None, mode: str, at: datetime | None = None) -> Experiment | None:
        """The experiment a request takes part in: the earliest started of those running at `at` whose control
        arm is in `mode` and whose share includes the visitor; None without a visitor id."""
        if not unit_hash:
            return None
        at = at or datetime.now(UTC)
        for experiment in self.list():
            if experiment.running(at) and arm_mode(experiment.control)[0] == mode and experiment.includes(unit_hash):
                return experiment
        return None


def visitor_hash(log: QueryLog, user_id: str | None, session_id: str | None) -> str | None:
    """What assignment hashes: the user id where there is one (a user stays in or out across sessions), else the
    session id, salted as the log stores them."""
    return log.hash_id(user_id) or log.hash_id(session_id)


def experiments_view_sql(experiments: list[Experiment]) -> str:
    """The experiments as a SELECT of literal rows (no file to read), typed even when there are none."""
    def text(value: str | None) -> str:
        return "NULL::VARCHAR" if value is None else "'" + value.replace("'", "''") + "'"

    def stamp(value: datetime | None) -> str:
        return "NULL::TIMESTAMPTZ" if value is None else f"'{value.isoformat()}'::TIMESTAMPTZ"

    columns = "experiment, control, candidate, share, start_at, end_at, stopped_at"
    typed = ("SELECT NULL::VARCHAR AS experiment, NULL::VARCHAR AS control, NULL::VARCHAR AS candidate, "
             "NULL::DOUBLE AS share, NULL::TIMESTAMPTZ AS start_at, NULL::TIMESTAMPTZ AS end_at, "
             "NULL::TIMESTAMPTZ AS stopped_at WHERE false")
    if not experiments:
        return typed
    rows = ", ".join(f"({text(e.experiment_id)}, {text(e.control)}, {text(e.candidate)}, {float(e.share)}::DOUBLE, "
                     f"{stamp(e.start)}, {stamp(e.end)}, {stamp(e.stopped_at)})" for e in experiments)
    return f"{typed} UNION ALL BY NAME SELECT * FROM (VALUES {rows}) AS t({columns})"


# Views over `queries`, `clicks` and `experiments`, in order. A click is credited to the arm that placed the
# document at its position (counted once per search and position, and only where the logged result there is the
# document clicked); an impression is a win for the candidate when its arm drew more clicks, a loss when fewer, a
# tie when as many (and some), `no_clicks` otherwise. The p-value is the two-sided exact sign test of wins against
# losses, summed in log space: sum over i <= min(wins, losses) of C(n, i) / 2^n, doubled, capped at 1.
INTERLEAVING_VIEWS = {
    "interleaving_clicks": """
        SELECT q.experiment, c.query_id, c.doc_id, c.position, min(c.ts) AS ts,
               q.result_arms[c.position - coalesce(q.result_offset, 0)] AS arm
        FROM clicks c JOIN queries q USING (query_id)
        WHERE q.experiment IS NOT NULL AND q.result_arms IS NOT NULL
          AND c.position - coalesce(q.result_offset, 0) BETWEEN 1 AND len(q.result_arms)
          AND q.result_ids[c.position - coalesce(q.result_offset, 0)] = c.doc_id
        GROUP BY ALL""",
    "interleaving_impressions": f"""
        SELECT q.experiment, q.query_id, q.ts, q.text,
               count(c.arm) FILTER (WHERE c.arm = '{CONTROL}') AS control_clicks,
               count(c.arm) FILTER (WHERE c.arm = '{CANDIDATE}') AS candidate_clicks,
               CASE WHEN candidate_clicks > control_clicks THEN 'win'
                    WHEN candidate_clicks < control_clicks THEN 'loss'
                    WHEN candidate_clicks > 0 THEN 'tie' ELSE 'no_clicks' END AS outcome
        FROM queries q LEFT JOIN interleaving_clicks c USING (query_id)
        WHERE q.experiment IS NOT NULL AND q.result_arms IS NOT NULL
        GROUP BY q.experiment, q.query_id, q.ts, q.text""",
    "interleaving_report": """
        WITH totals AS (
            SELECT experiment, count(*) AS impressions,
                   count(*) FILTER (WHERE outcome = 'win') AS wins,
                   count(*) FILTER (WHERE outcome = 'loss') AS losses,
                   count(*) FILTER (WHERE outcome = 'tie') AS ties,
                   count(*) FILTER (WHERE outcome = 'no_clicks') AS no_clicks,
                   sum(control_clicks) AS control_clicks, sum(candidate_clicks) AS candidate_clicks,
                   min(ts) AS first_ts, max(ts) AS last_ts
            FROM interleaving_impressions GROUP BY experiment
        ),
        terms AS (
            SELECT experiment, wins + losses AS n, unnest(generate_series(0, least(wins, losses))) AS i FROM totals
        ),
        tests AS (
            SELECT experiment,
                   least(1.0, 2 * sum(exp(lgamma(n + 1) - lgamma(i + 1) - lgamma(n - i + 1) - n * ln(2)))) AS p_value
            FROM terms GROUP BY experiment
        )
        SELECT experiment, e.control, e.candidate, e.share, e.start_at, e.end_at, e.stopped_at,
               coalesce(t.impressions, 0) AS impressions, coalesce(t.wins, 0) AS wins,
               coalesce(t.losses, 0) AS losses, coalesce(t.ties, 0) AS ties, coalesce(t.no_clicks, 0) AS no_clicks,
               coalesce(t.control_clicks, 0) AS control_clicks, coalesce(t.candidate_clicks, 0) AS candidate_clicks,
               CASE WHEN t.wins + t.losses > 0 THEN round(t.wins / (t.wins + t.losses), 4) END AS win_share,
               coalesce(s.p_value, 1.0) AS p_value,
               CASE WHEN coalesce(s.p_value, 1.0) >= 0.05 THEN 'no significant difference'
                    WHEN t.wins > t.losses THEN 'candidate' ELSE 'control' END AS preferred,
               t.first_ts, t.last_ts
        FROM experiments e FULL OUTER JOIN totals t USING (experiment) LEFT JOIN tests s USING (experiment)
        ORDER BY e.start_at NULLS LAST, experiment""",
}


def create_views(con, experiments: list[Experiment]) -> None:
    """The experiments and interleaving views on a connection that has `queries` and `clicks` already."""
    con.execute(f"CREATE VIEW experiments AS {experiments_view_sql(experiments)}")
    for name, select in INTERLEAVING_VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {select}")


def report(index_dir: Path | str) -> list[dict]:
    """One row per experiment (and per experiment id found only in the log): the `interleaving_report` view."""
    con = QueryLog(index_dir).connect()
    try:
        create_views(con, ExperimentStore(index_dir).list())
        result = con.execute("SELECT * FROM interleaving_report")
        columns = [d[0] for d in result.description]
        return [dict(zip(columns, row)) for row in result.fetchall()]
    finally:
        con.close()
