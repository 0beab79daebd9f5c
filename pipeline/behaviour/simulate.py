"""The click simulator: users issue a split's queries, see the served rankings, and click by a position-based model
whose relevance comes from the judgments, so that learning from clicks can be measured offline.

One session, drawn from a seeded generator (same seed, same sessions, same log rows):

1. a user, uniformly among `users`, issues a query of the split; queries are ranked in a seeded random order and
   the i-th (from 1) is issued with probability proportional to 1 / i^zipf;
2. the user is shown the served system's first `positions` results for that query (computed once per query);
   a share `explore` of sessions is shown them shuffled, as a system randomises to learn its position bias, and
   is logged under the arm EXPLORE_ARM (the others under `served`);
3. position r is examined with probability (1 / r)^eta;
4. an examined document with judgment grade g (0 when unjudged) is clicked with probability
   noise + (1 - 2 noise) (2^g - 1) / (2^G - 1), G the highest grade: irrelevant documents draw clicks at the
   noise rate, the most relevant ones are missed at the same rate;
5. with `preferred_tags` > 0, each user prefers that many tags of the corpus, and a document carrying one counts
   one grade higher for that user (G grows by one to make room);
6. with `session_continue` p > 0, after each search the session goes on with probability p with a reformulation of
   the same information need: a query of the split that shares a relevant document (grade > 0) with the current
   one and was not issued yet in the session, uniformly; where none exists the session ends. Every search of a
   session has the session's user and session id. With p = 0 (the default) no draw is added, so the sessions are
   exactly those of one query each, as before the option existed.

Time runs one search a second (so one session a second where sessions are single queries).

Against an interleaving experiment (`candidate` given), the sessions of users in the experiment's share are shown
the team-draft merge of the served (control) ranking and the candidate's, with the coin flips drawn from the same
seeded generator, and logged under the arm INTERLEAVED_ARM with the team of each position; nobody there explores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from ..config import BehaviourConfig
from ..errors import InputError
from ..eval.beir import Qrels
from ..index.querylog import QueryLog
from .interleaving import INTERLEAVED_ARM, team_draft
from .sessions import EXPLORE_ARM

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # simulated time starts here, one session a second
BATCH = 10_000  # sessions per pair of part files


@dataclass
class SimulatedSession:
    """One search of a simulated session."""

    session: int
    search: int  # the search's number over the whole run (equal to `session` while sessions are single queries)
    user: int
    query_id: str  # the judged query's id in the dataset
    shown: list[str]  # doc ids, best first
    clicked: list[int]  # 1-based positions clicked
    arm: str
    teams: list[str] | None = None  # interleaved: the arm that placed each shown document


class ClickSimulator:
    """Sessions of simulated users over `queries`, with clicks from `qrels`; `rank(text)` is the served system.

    `candidate(text)` is an experiment's candidate ranking, interleaved for the users `in_experiment(user)` picks."""

    def __init__(self, queries: dict[str, str], qrels: Qrels, rank: Callable[[str], list[str]],
                 config: BehaviourConfig, doc_tags: dict[str, list[str]] | None = None,
                 candidate: Callable[[str], list[str]] | None = None,
                 in_experiment: Callable[[int], bool] = lambda user: True):
        if not queries:
            raise InputError("the simulator needs at least one query")
        self.queries = queries
        self.qrels = qrels
        self.rank = rank
        self.config = config
        self.doc_tags = doc_tags or {}
        self.candidate = candidate
        self.in_experiment = in_experiment
        self._rankings: dict[tuple[str, bool], list[str]] = {}
        self._reformulations: dict[str, list[str]] | None = None
        self.max_grade = max([g for judged in qrels.values() for g in judged.values()] + [1])

    def ranking(self, qid: str, candidate: bool = False) -> list[str]:
        key = (qid, candidate)
        if key not in self._rankings:
            rank = self.candidate if candidate else self.rank
            self._rankings[key] = list(rank(self.queries[qid]))[: self.config.positions]
        return self._rankings[key]

    def _preferences(self, rng: np.random.Generator) -> list[frozenset[str]]:
        tags = sorted({t for doc in self.doc_tags.values() for t in doc})
        n = min(self.config.preferred_tags, len(tags))
        if not n:
            return [frozenset()] * self.config.users
        return [frozenset(rng.choice(tags, n, replace=False).tolist()) for _ in range(self.config.users)]

    def click_probability(self, qid: str, doc_id: str, preferred: frozenset[str]) -> float:
        grade = self.qrels.get(qid, {}).get(doc_id, 0)
        top = self.max_grade
        if self.config.preferred_tags:
            top += 1
            grade += bool(preferred.intersection(self.doc_tags.get(doc_id, ())))
        noise = self.config.noise
        return noise + (1 - 2 * noise) * (2.0 ** max(grade, 0) - 1) / (2.0 ** top - 1)

    def reformulations(self, qid: str) -> list[str]:
        """The other queries sharing a relevant document with `qid`: the same need in other words, by the judgments."""
        if self._reformulations is None:
            askers: dict[str, list[str]] = {}
            for other in sorted(self.queries):
                for doc, grade in self.qrels.get(other, {}).items():
                    if grade > 0:
                        askers.setdefault(doc, []).append(other)
            self._reformulations = {
                q: sorted({o for doc, grade in self.qrels.get(q, {}).items() if grade > 0
                           for o in askers.get(doc, ())} - {q})
                for q in self.queries}
        return self._reformulations[qid]

    def sessions(self, n: int, seed: int | None = None) -> Iterator[SimulatedSession]:
        """The searches of `n` sessions, in order."""
        config = self.config
        rng = np.random.default_rng(config.seed if seed is None else seed)
        preferences = self._preferences(rng)
        qids = [sorted(self.queries)[i] for i in rng.permutation(len(self.queries))]
        weights = 1.0 / np.arange(1, len(qids) + 1) ** config.zipf
        issued = rng.choice(len(qids), size=n, p=weights / weights.sum())
        users = rng.integers(config.users, size=n)
        examine = (1.0 / np.arange(1, config.positions + 1)) ** config.eta
        search = 0
        for i in range(n):
            user, qid, asked = int(users[i]), qids[issued[i]], set()
            while qid is not None:
                asked.add(qid)
                yield self._search(i, search, user, qid, preferences[user], examine, rng)
                search += 1
                qid = self._next_query(qid, asked, rng)

    def _next_query(self, qid: str, asked: set[str], rng: np.random.Generator) -> str | None:
        """The session's next query, or None where it ends. Draws nothing at `session_continue` = 0, so that the
        default sessions stay those of one query each, draw for draw."""
        if not self.config.session_continue or rng.random() >= self.config.session_continue:
            return None
        options = [q for q in self.reformulations(qid) if q not in asked]
        return options[rng.integers(len(options))] if options else None

    def _search(self, session: int, search: int, user: int, qid: str, preferred: frozenset[str],
                examine: np.ndarray, rng: np.random.Generator) -> SimulatedSession:
        """One search: what the user is shown for `qid` and clicks."""
        config = self.config
        shown, teams = self.ranking(qid), None
        if self.candidate is not None and self.in_experiment(user):
            merged = team_draft(shown, self.ranking(qid, candidate=True), config.positions, rng)
            shown, teams, arm = merged.docs, merged.teams, INTERLEAVED_ARM
        elif rng.random() < config.explore:
            shown, arm = [shown[j] for j in rng.permutation(len(shown))], EXPLORE_ARM
        else:
            arm = "served"
        looked = rng.random(config.positions) < examine
        draws = rng.random(config.positions)
        clicked = [r + 1 for r, doc in enumerate(shown)
                   if looked[r] and draws[r] < self.click_probability(qid, doc, preferred)]
        return SimulatedSession(session, search, user, qid, shown, clicked, arm, teams)


def user_id(user: int) -> str:
    return f"sim-user-{user}"


def write_sessions(log: QueryLog, sessions: Iterator[SimulatedSession], queries: dict[str, str], mode: str,
                   seed: int, experiment: str | None = None, epoch: datetime = EPOCH) -> dict[str, int]:
    """Log simulated sessions as searches and clicks (ids hashed like any client's; every search of a session under
    its user and session ids), in batches of part files; interleaved ones under `experiment`, with the arm of each
    result."""
    counts = {"sessions": 0, "searches": 0, "clicks": 0}
    query_rows, click_rows = [], []
    last_session = None
    for s in sessions:
        ts = epoch + timedelta(seconds=s.search)
        # An experiment's searches get ids of their own: two runs with one seed must not share query ids.
        query_id = f"sim{seed}-{experiment}-{s.search}" if experiment else f"sim{seed}-{s.search}"
        ids = {"user_id": user_id(s.user), "session_id": f"sim{seed}-session-{s.session}"}
        query_rows.append(log.query_row(queries[s.query_id], mode, None, 0.0, s.shown, len(s.shown), 0, ts, query_id,
                                        ranker=f"simulated:{mode}", arm=s.arm,
                                        experiment=experiment if s.teams is not None else None,
                                        result_arms=s.teams, **ids))
        click_rows.extend(log.click_row(query_id, s.shown[r - 1], r, ts + timedelta(milliseconds=100 * r), **ids)
                          for r in s.clicked)
        counts["sessions"] += s.session != last_session
        counts["searches"] += 1
        counts["clicks"] += len(s.clicked)
        last_session = s.session
        if len(query_rows) >= BATCH:
            log.log_batch(query_rows, click_rows)
            query_rows, click_rows = [], []
    log.log_batch(query_rows, click_rows)
    return counts
