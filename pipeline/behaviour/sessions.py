"""Sessions read back from the query log as arrays: what each search showed on its first page and what was clicked."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from ..index.querylog import QueryLog

# The experiment arm whose sessions saw the results in random order (the simulator's exploration share): position
# is independent of the document there, which is what pins down position bias.
EXPLORE_ARM = "explore"


def query_key(text: str) -> str:
    """How the log groups searches into one query: case- and surrounding-space-insensitive, as `top_queries` does."""
    return (text or "").strip().lower()


@dataclass
class ClickLog:
    """First-page sessions: `pairs[s, r]` is the (query, document) pair shown at position r + 1 of session s (-1 past
    the results shown), `clicks[s, r]` whether it was clicked. Pair i is (queries[pair_query[i]], doc_ids[pair_doc[i]])."""

    queries: list[str]  # query keys
    texts: list[str]  # one logged text per query key
    doc_ids: list[str]
    pair_query: np.ndarray
    pair_doc: np.ndarray
    pairs: np.ndarray  # int64 (sessions, positions)
    clicks: np.ndarray  # bool (sessions, positions)
    randomised: np.ndarray  # bool (sessions,): shown in random order (experiment arm EXPLORE_ARM)
    first_ts: object = None
    last_ts: object = None
    users: np.ndarray | None = None  # object (sessions,): the searching user's hash, None where anonymous
    times: np.ndarray | None = None  # float (sessions,): when, in seconds since the epoch

    @property
    def n_sessions(self) -> int:
        return len(self.pairs)

    @property
    def n_pairs(self) -> int:
        return len(self.pair_query)

    @classmethod
    def from_querylog(cls, log: QueryLog, positions: int) -> ClickLog:
        """Every logged search shown from the first result, with its distinct clicked positions up to `positions`."""
        rows = log.sql(
            """
            SELECT q.text, q.result_ids, coalesce(c.positions, []) AS clicked, q.arm, q.ts, q.user_hash,
                   epoch(q.ts) AS t
            FROM queries q LEFT JOIN (
                SELECT query_id, list(DISTINCT position) AS positions FROM clicks GROUP BY query_id
            ) c USING (query_id)
            WHERE coalesce(q.result_offset, 0) = 0 AND len(q.result_ids) > 0
            ORDER BY q.ts, q.query_id
            """
        )
        log = cls.from_rows([(r["text"], r["result_ids"], r["clicked"], r["arm"] == EXPLORE_ARM) for r in rows],
                            positions, rows[0]["ts"] if rows else None, rows[-1]["ts"] if rows else None)
        log.users = np.array([r["user_hash"] for r in rows], dtype=object)
        log.times = np.array([float(r["t"]) for r in rows], dtype=np.float64)
        return log

    @classmethod
    def from_rows(cls, rows: list[tuple[str, list[str], list[int], bool]], positions: int, first_ts=None,
                  last_ts=None) -> ClickLog:
        """Sessions from (query text, doc ids shown best first, clicked 1-based positions, shown shuffled)."""
        query_index: dict[str, int] = {}
        texts: list[str] = []
        doc_index: dict[str, int] = {}
        pair_index: dict[tuple[int, int], int] = {}
        pairs = np.full((len(rows), positions), -1, dtype=np.int64)
        clicks = np.zeros((len(rows), positions), dtype=bool)
        randomised = np.array([bool(row[3]) for row in rows], dtype=bool)
        for s, (text, shown, clicked, _) in enumerate(rows):
            key = query_key(text)
            if key not in query_index:
                query_index[key] = len(query_index)
                texts.append(text)
            q = query_index[key]
            for r, doc in enumerate(shown[:positions]):
                d = doc_index.setdefault(doc, len(doc_index))
                pairs[s, r] = pair_index.setdefault((q, d), len(pair_index))
            for position in clicked:
                if 1 <= position <= min(positions, len(shown)):
                    clicks[s, position - 1] = True
        keys = np.array(list(pair_index), dtype=np.int64).reshape(-1, 2)
        return cls(list(query_index), texts, list(doc_index), keys[:, 0], keys[:, 1], pairs, clicks, randomised,
                   first_ts, last_ts)

    def subset(self, sessions: np.ndarray) -> ClickLog:
        """The same pairs (so parameters stay aligned), fewer sessions."""
        return ClickLog(self.queries, self.texts, self.doc_ids, self.pair_query, self.pair_doc, self.pairs[sessions],
                        self.clicks[sessions], self.randomised[sessions], *self._span(sessions),
                        None if self.users is None else self.users[sessions],
                        None if self.times is None else self.times[sessions])

    def _span(self, sessions: np.ndarray) -> tuple[object, object]:
        """(first, last) time of these sessions where times are known, else the whole log's."""
        if self.times is None:
            return self.first_ts, self.last_ts
        times = self.times[sessions]
        if not len(times):
            return None, None
        return datetime.fromtimestamp(times.min(), UTC), datetime.fromtimestamp(times.max(), UTC)

    def without_queries(self, keys: set[str]) -> ClickLog:
        """These sessions less those of the queries `keys`."""
        first = self.pairs[:, 0]
        keep = [s for s, pair in enumerate(first.tolist())
                if pair < 0 or self.queries[self.pair_query[pair]] not in keys]
        return self.subset(np.array(keep, dtype=np.int64))

    def askers(self) -> dict[str, Counter]:
        """Query key → how many of its sessions each known user searched it in."""
        found: dict[str, Counter] = {}
        if self.users is None:
            return found
        for s, user in enumerate(self.users.tolist()):
            first = self.pairs[s, 0]
            if user is not None and first >= 0:
                found.setdefault(self.queries[self.pair_query[first]], Counter())[user] += 1
        return found

    def split_in_time(self, history_share: float) -> tuple[ClickLog, ClickLog]:
        """(earlier, later): the first `history_share` of sessions in log order (`from_querylog` reads them by
        time), and the rest; the later part keeps at least one session."""
        n_history = min(int(self.n_sessions * history_share), max(self.n_sessions - 1, 0))
        return self.subset(np.arange(n_history)), self.subset(np.arange(n_history, self.n_sessions))

    def split(self, held_out: float, seed: int) -> tuple[ClickLog, ClickLog]:
        """(fit, held out): a seeded random share of sessions kept aside to compare click models."""
        order = np.random.default_rng(seed).permutation(self.n_sessions)
        n_held = round(self.n_sessions * held_out)
        return self.subset(np.sort(order[n_held:])), self.subset(np.sort(order[:n_held]))
