"""Recall channels from behaviour, beside the query's own branches: the click graph (what was opened after this and
similar past queries), a user's personal branch (opt-in), and the region boost; each keeps the words of its reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..behaviour.graph import ClickGraph
from ..behaviour.profile import UserProfile, profile_for
from ..config import BehaviourConfig
from ..search.plan import QueryPlan
from ..search.reader import IndexReader
from ..search.topk import top_k
from .branches import BranchResult

CLICK_BRANCH = "behaviour"
PERSONAL_BRANCH = "personal"


@dataclass
class Audience:
    """Who asks, where they opted in: their own profile and their region; None for either leaves it out."""

    profile: UserProfile | None = None
    region: str | None = None


def audience_for(reader: IndexReader, personal_user_id: str | None, region: str | None) -> Audience | None:
    """The audience of a request: the profile of the user who opted in (`personal_user_id`), and their region;
    None when the request asked for neither."""
    if not personal_user_id and not region:
        return None
    half_life = reader.settings.behaviour.profile_half_life_days
    return Audience(profile_for(reader, personal_user_id, half_life) if personal_user_id else None, region)


@dataclass
class Channels:
    """The channels' branches for one query, their fusion weights, and what a reason needs per document."""

    branches: dict[str, BranchResult] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    via: dict[int, str] = field(default_factory=dict)  # doc → the past query whose clicks recalled it most
    region: str | None = None

    def reasons(self, reader: IndexReader, doc_ord: int) -> list[str]:
        """Plain words for each channel that found or lifted the document."""
        words = []
        if doc_ord in self.via:
            words.append(f"often opened after searching “{self.via[doc_ord]}”")
        personal = self.branches.get(PERSONAL_BRANCH)
        if personal is not None and doc_ord in personal.rank_of():
            words.append("similar to what you read")
        if self.region and reader.metadata.region_of(doc_ord) == self.region:
            words.append("popular in your region" if reader.engagement[1][doc_ord] > 0 else "in your region")
        return words


def channel_weights(branches: Mapping[str, BranchResult], config: BehaviourConfig) -> dict[str, float]:
    """The fusion weights of the channels' branches among `branches` (their own branches have none here)."""
    configured = {CLICK_BRANCH: config.graph_weight, PERSONAL_BRANCH: config.personal_weight}
    return {name: weight for name, weight in configured.items() if name in branches}


def click_branch(reader: IndexReader, plan: QueryPlan, graph: ClickGraph, depth: int) -> tuple[BranchResult, dict]:
    """Documents clicked for this query and similar past ones, by Σ similarity × debiased relevance."""
    encode = None
    if plan.vector is not None and reader.has_dense and reader.settings.behaviour.graph_neighbours:
        encode = reader.query_encoder().encode_queries
    matches = graph.recall(plan.text, plan.terms, plan.vector, encode)
    docs = np.array([d for d in matches if plan.allowed is None or plan.allowed[d]], dtype=np.int64)
    weights = np.array([matches[d].weight for d in docs.tolist()])
    keep = top_k(docs, weights, depth)
    return BranchResult(CLICK_BRANCH, docs[keep], weights[keep]), {int(d): matches[int(d)].via for d in docs[keep]}


def personal_branch(reader: IndexReader, profile: UserProfile, candidates: np.ndarray, depth: int) -> BranchResult:
    """The query's candidates ordered by the user's affinity to them (those with none left out)."""
    scores = profile.affinity(reader, candidates)
    liked = np.flatnonzero(scores > 0)
    keep = top_k(candidates[liked], scores[liked], depth)
    return BranchResult(PERSONAL_BRANCH, candidates[liked][keep], scores[liked][keep])


def channel_branches(reader: IndexReader, plan: QueryPlan, recalled: dict[str, BranchResult], graph: ClickGraph,
                     audience: Audience | None, config: BehaviourConfig) -> Channels:
    """The channels that have something for this query: the click graph where the log has clicks, the personal
    branch where the request opted in with a profile; the region only lifts, after fusion (`region_lift`)."""
    channels = Channels(region=audience.region if audience else None)
    depth = reader.settings.fusion.depth
    if not graph.empty:
        branch, via = click_branch(reader, plan, graph, depth)
        if len(branch.doc_ords):
            channels.branches[CLICK_BRANCH], channels.via = branch, via
    if audience is not None and audience.profile is not None:
        found = [r.doc_ords for r in (*recalled.values(), *channels.branches.values()) if len(r.doc_ords)]
        candidates = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
        branch = personal_branch(reader, audience.profile, candidates, depth)
        if len(branch.doc_ords):
            channels.branches[PERSONAL_BRANCH] = branch
    channels.weights = channel_weights(channels.branches, config)
    return channels


def region_lift(reader: IndexReader, docs: np.ndarray, scores: np.ndarray, region: str | None,
                boost: float) -> tuple[np.ndarray, np.ndarray]:
    """In-region documents lifted by `boost` × the list's score spread, then re-ordered; unchanged without a region
    or where the index has no regions."""
    if not region or not len(docs):
        return docs, scores
    inside = reader.metadata.in_region(docs, region)
    if not inside.any():
        return docs, scores
    spread = float(scores.max() - scores.min()) or 1.0
    lifted = np.asarray(scores, dtype=np.float64) + boost * spread * inside
    order = top_k(docs, lifted)
    return docs[order], lifted[order]
