"""Ranking features for each candidate, read from the forward index and the branches, never re-tokenized."""

from __future__ import annotations

import numpy as np

from ..index.postings import TEXT_FIELD
from ..retrieval.adaptive import QuerySignals, query_signals
from ..retrieval.branches import BRANCHES, BranchResult
from ..search.plan import QueryPlan
from ..search.proximity import span_features
from ..search.reader import IndexReader
from ..search.scoring import plan_boosted_scores, plan_field_scores

BRANCH_RANKS = tuple(BRANCHES)
FEATURES = (
    "bm25",
    "bm25_body",
    "bm25_title",
    "bm25_ratio",
    *(f"rank_{name}" for name in BRANCH_RANKS),
    "fused_score",
    "rank_fused",
    "score_dense",
    "score_proximity",
    "branches_found",
    "coverage",
    "title_coverage",
    "min_span",
    "proximity",
    "title_exact",
    "doc_length",
    "title_length",
    "dense_cosine",
    "dense_gap",
    "freshness_days",
    "clicks",
    "ctr",
    "query_terms",
    "terms_matched",
    "language_share",
    # The behaviour channels' scores (0 where a channel did not find the candidate); last, so rankers trained
    # before them still read their own columns (Ranker.check).
    "click_graph",
    "personal",
)
CHANNEL_FEATURES = {"click_graph": "behaviour", "personal": "personal"}  # feature → branch (retrieval/channels.py)


def _coverage(reader: IndexReader, field_name: str, candidates: np.ndarray, distinct: list[int]) -> np.ndarray:
    """Share of the distinct query terms whose postings in the field hold each candidate."""
    if not distinct:
        return np.zeros(len(candidates))
    postings = reader.postings(field_name)
    present = np.zeros(len(candidates))
    for term_id in distinct:
        present += np.isin(candidates, postings.docs[postings.span(term_id)], assume_unique=True)
    return present / len(distinct)


def extract(reader: IndexReader, plan: QueryPlan, candidates: np.ndarray, branches: dict[str, BranchResult],
            fused_scores: np.ndarray) -> np.ndarray:
    """Feature matrix (candidates × FEATURES), in the order of FEATURES. `candidates` are in the hybrid mode's
    fused order and `fused_scores` are their fused scores: the ranker starts from what hybrid serves (adaptive
    fusion's per-query weights included), so it can keep that order where its other features add nothing."""
    return list_features(document_features(reader, plan, candidates), candidates, branches, fused_scores,
                         query_signals(reader, plan, branches), len(plan.distinct_ids), reader.settings.fusion.depth)


def document_features(reader: IndexReader, plan: QueryPlan, candidates: np.ndarray) -> dict[str, np.ndarray]:
    """The columns read from each candidate's own postings, forward fields, vector and metadata: what a shard of
    a cluster computes for the candidates it holds."""
    columns: dict[str, np.ndarray] = {"bm25": plan_boosted_scores(reader, plan)[candidates]}
    for name, field_name in (("bm25_body", "body"), ("bm25_title", "title")):
        columns[name] = plan_field_scores(reader, plan, field_name)[candidates]
    columns["coverage"] = _coverage(reader, TEXT_FIELD, candidates, plan.distinct_ids)
    columns["title_coverage"] = _coverage(reader, "title", candidates, plan.distinct_ids)
    lookup = plan.term_lookup(len(reader.vocabulary))
    spans = [span_features(reader, int(d), lookup) for d in candidates]
    columns["min_span"] = np.array([s for s, _ in spans])
    columns["proximity"] = np.array([p for _, p in spans])
    title = reader.forward("title")
    query_set = set(plan.distinct_ids)
    columns["title_exact"] = np.array(
        [float(bool(query_set) and set(title.term_ids[title.doc_slice(int(d))].tolist()) == query_set)
         for d in candidates]
    )
    columns["doc_length"] = reader.forward("body").lengths[candidates].astype(np.float64)
    columns["title_length"] = title.lengths[candidates].astype(np.float64)
    columns["dense_cosine"] = reader.dense_cosines(plan.vector, candidates)
    columns["freshness_days"] = reader.metadata.age_days(candidates)
    impressions, clicks = reader.engagement
    columns["clicks"] = np.log1p(clicks[candidates])
    # Smoothed towards zero so one lucky click on one impression is not a CTR of 1.
    columns["ctr"] = clicks[candidates] / (impressions[candidates] + 5.0)
    return columns


def list_features(columns: dict[str, np.ndarray], candidates: np.ndarray, branches: dict[str, BranchResult],
                  fused_scores: np.ndarray, signals: QuerySignals, n_distinct: int, depth: int) -> np.ndarray:
    """The feature matrix from the candidates' `document_features` and what the query's lists say of them."""
    n = len(candidates)
    columns = dict(columns)
    columns["fused_score"] = np.asarray(fused_scores, dtype=np.float64)
    columns["rank_fused"] = np.arange(1, n + 1, dtype=np.float64)
    # Raw BM25 scales differ from query to query; the ratio to the query's best candidate does not.
    best = columns["bm25"].max() if n else 0.0
    columns["bm25_ratio"] = columns["bm25"] / best if best > 0 else np.zeros(n)
    found = np.zeros(n)
    for name in BRANCH_RANKS:
        result = branches.get(name)
        ranks = result.rank_of() if result is not None else {}
        columns[f"rank_{name}"] = np.array([ranks.get(int(d), depth + 1) for d in candidates], dtype=np.float64)
        found += columns[f"rank_{name}"] <= depth
        if name in ("dense", "proximity"):
            scores = dict(zip(result.doc_ords.tolist(), result.scores.tolist())) if result is not None else {}
            columns[f"score_{name}"] = np.array([scores.get(int(d), 0.0) for d in candidates])
    columns["branches_found"] = found
    finite = columns["dense_cosine"][~np.isnan(columns["dense_cosine"])]
    columns["dense_gap"] = columns["dense_cosine"] - (finite.max() if len(finite) else np.nan)
    columns["query_terms"] = np.full(n, float(n_distinct))
    # The adaptive fusion's signals of a lexical branch with nothing to say: no query word in the corpus, or a
    # query in a language the corpus is not written in.
    columns["terms_matched"] = np.full(n, signals.terms_matched)
    columns["language_share"] = np.full(n, signals.language_share)
    for feature, branch in CHANNEL_FEATURES.items():
        result = branches.get(branch)
        scores = dict(zip(result.doc_ords.tolist(), result.scores.tolist())) if result is not None else {}
        columns[feature] = np.array([scores.get(int(d), 0.0) for d in candidates])
    return np.column_stack([columns[name] for name in FEATURES]) if n else np.zeros((0, len(FEATURES)))
