"""How close together a query's terms stand in a document: the smallest window holding them all."""

from __future__ import annotations

import math

import numpy as np

from .reader import IndexReader


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


def span_features(reader: IndexReader, doc: int, lookup: np.ndarray) -> tuple[float, float]:
    """(minimum span, proximity in [0, 1]) of the query terms in the body, else the title."""
    for name in ("body", "title"):
        field = reader.forward(name)
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
