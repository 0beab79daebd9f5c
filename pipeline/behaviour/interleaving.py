"""Team-draft interleaving (Radlinski, Kurup and Joachims, 2008): two rankings merged into one list, each position
remembering which ranking (team) placed it, so clicks on the merged list say which ranking users prefer.

Like two captains picking players: the team with fewer picks so far (a seeded coin breaks a tie) adds its highest
ranked document not already in the list. Every prefix of the merged list therefore holds the top of both rankings
about equally, and a user who clicks what is relevant, wherever it is, credits the ranking that put it higher."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

CONTROL = "control"
CANDIDATE = "candidate"
ARMS = (CONTROL, CANDIDATE)
# The `arm` logged for a search whose results were interleaved: each result's own arm is in `result_arms`.
INTERLEAVED_ARM = "interleaved"


@dataclass
class Interleaved:
    docs: list  # the merged list, best first
    teams: list[str]  # teams[i]: the arm (CONTROL or CANDIDATE) that placed docs[i]


def team_draft(control: Sequence[Hashable], candidate: Sequence[Hashable], k: int,
               seed: int | np.random.Generator) -> Interleaved:
    """The first `k` documents of the team-draft merge of two rankings (best first), with the team of each.

    When one ranking has nothing new left, the other fills the rest: nothing is shown that neither ranked."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lists = {CONTROL: list(control), CANDIDATE: list(candidate)}
    cursor = {CONTROL: 0, CANDIDATE: 0}
    picks = {CONTROL: 0, CANDIDATE: 0}
    shown: set = set()
    merged = Interleaved([], [])

    def next_new(team: str):
        ranking = lists[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in shown:
            cursor[team] += 1
        return ranking[cursor[team]] if cursor[team] < len(ranking) else None

    while len(merged.docs) < k:
        heads = {team: next_new(team) for team in ARMS}
        available = [team for team in ARMS if heads[team] is not None]
        if not available:
            break
        if len(available) == 1:
            team = available[0]
        elif picks[CONTROL] != picks[CANDIDATE]:
            team = CONTROL if picks[CONTROL] < picks[CANDIDATE] else CANDIDATE
        else:
            team = ARMS[int(rng.integers(2))]
        doc = heads[team]
        shown.add(doc)
        merged.docs.append(doc)
        merged.teams.append(team)
        picks[team] += 1
    return merged


def impression_seed(query_id: str) -> int:
    """The coin flips of one logged search, from its id: the same search always shows the same merge."""
    return int.from_bytes(hashlib.sha256(query_id.encode("utf-8")).digest()[:8], "big")


def credit(teams: Sequence[str], clicked_positions: Sequence[int], offset: int = 0) -> dict[str, int]:
    """Clicks per arm: each distinct clicked 1-based position goes to the arm that placed the result there."""
    counts = {team: 0 for team in ARMS}
    for position in set(clicked_positions):
        index = position - offset - 1
        if 0 <= index < len(teams):
            counts[teams[index]] += 1
    return counts


def outcome(credited: dict[str, int]) -> str:
    """One impression's result for the candidate: win, loss, tie (both clicked equally) or no_clicks."""
    control, candidate = credited[CONTROL], credited[CANDIDATE]
    if candidate > control:
        return "win"
    if candidate < control:
        return "loss"
    return "tie" if candidate else "no_clicks"


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial (sign) test of wins against losses under p = 1/2; ties carry no evidence."""
    n = wins + losses
    tail = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2))
               for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail)
