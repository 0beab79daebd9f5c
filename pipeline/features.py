"""Ranking features for each candidate, read from the forward index and the branches, never re-tokenized."""

from __future__ import annotations

import math

import numpy as np

from .forward_index import ForwardIndex
from .recall import BranchResult, QueryContext, field_bm25

BRANCH_RANKS = ("bm25", "bm25_body", "bm25_title", "dense", "proximity")
FEATURES = (
    "bm25",
    "bm25_body",
    "bm25_title",
    "bm25_ratio",
    *(f"rank_{name}" for name in BRANCH_RANKS),
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
)


def min_span(positions: list[int], terms: list[int]) -> int | None:
    """Smallest position window that holds every distinct term seen (None when fewer than two are seen)."""
    wanted = len(set(terms))
    if wanted < 2:
        return None
    pairs = sorted(zip(positions, terms))
    counts: dict[int, int] = {}
    best, left = None, 0
    for right, (position, term) in enumerate(pairs):
        counts[term] = counts.get(term, 0) + 1
        while len(counts) == wanted:
            width = position - pairs[left][0]
            best = width if best is None else min(best, width)
            left_term = pairs[left][1]
            counts[left_term] -= 1
            if counts[left_term] == 0:
                del counts[left_term]
            left += 1
    return best


def span_features(forward: ForwardIndex, doc: int, lookup: np.ndarray) -> tuple[float, float]:
    """(minimum span, proximity in [0, 1]) of the query terms in the body, else the title."""
    for name in ("body", "title"):
        field = forward.fields[name]
        window = field.doc_slice(doc)
        ids = field.term_ids[window]
        hit = lookup[ids]
        if np.count_nonzero(hit) < 2:
            continue
        matched_ids = ids[hit].tolist()
        span = min_span(field.positions[window][hit].tolist(), matched_ids)
        if span is not None:
            # A span no wider than the matched terms themselves is perfect proximity.
            return float(span), 1.0 / (1.0 + max(0, span - (len(set(matched_ids)) - 1)))
    return math.nan, 0.0


def _coverage(searcher, field_name: str, candidates: np.ndarray, distinct: list[int]) -> np.ndarray:
    """Share of the distinct query terms whose postings in the field hold each candidate."""
    if not distinct:
        return np.zeros(len(candidates))
    postings = searcher.index.inverted.fields[field_name]
    present = np.zeros(len(candidates))
    for term_id in distinct:
        present += np.isin(candidates, postings.docs[postings.span(term_id)], assume_unique=True)
    return present / len(distinct)


def extract(searcher, ctx: QueryContext, candidates: np.ndarray, branches: dict[str, BranchResult]) -> np.ndarray:
    """Feature matrix (candidates × FEATURES), in the order of FEATURES."""
    forward = searcher.index.forward
    n = len(candidates)
    columns: dict[str, np.ndarray] = {}
    for name, field_name in (("bm25", "all"), ("bm25_body", "body"), ("bm25_title", "title")):
        columns[name] = field_bm25(searcher, ctx, field_name)[candidates]
    # Raw BM25 scales differ from query to query; the ratio to the query's best candidate does not.
    best = columns["bm25"].max() if n else 0.0
    columns["bm25_ratio"] = columns["bm25"] / best if best > 0 else np.zeros(n)
    depth = searcher.settings.fusion.depth
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
    columns["coverage"] = _coverage(searcher, "text", candidates, ctx.distinct_ids)
    columns["title_coverage"] = _coverage(searcher, "title", candidates, ctx.distinct_ids)
    lookup = ctx.term_lookup(len(searcher.index.vocabulary))
    spans = [span_features(forward, int(d), lookup) for d in candidates]
    columns["min_span"] = np.array([s for s, _ in spans])
    columns["proximity"] = np.array([p for _, p in spans])
    title = forward.fields["title"]
    query_set = set(ctx.distinct_ids)
    columns["title_exact"] = np.array(
        [float(bool(query_set) and set(title.term_ids[title.doc_slice(int(d))].tolist()) == query_set)
         for d in candidates]
    )
    columns["doc_length"] = forward.fields["body"].lengths[candidates].astype(np.float64)
    columns["title_length"] = title.lengths[candidates].astype(np.float64)
    columns["dense_cosine"] = searcher.dense_cosines(ctx.vector, candidates)
    finite = columns["dense_cosine"][~np.isnan(columns["dense_cosine"])]
    columns["dense_gap"] = columns["dense_cosine"] - (finite.max() if len(finite) else np.nan)
    columns["freshness_days"] = searcher.age_days(candidates)
    impressions, clicks = searcher.engagement()
    columns["clicks"] = np.log1p(clicks[candidates])
    # Smoothed towards zero so one lucky click on one impression is not a CTR of 1.
    columns["ctr"] = clicks[candidates] / (impressions[candidates] + 5.0)
    columns["query_terms"] = np.full(n, float(len(ctx.distinct_ids)))
    return np.column_stack([columns[name] for name in FEATURES]) if n else np.zeros((0, len(FEATURES)))

