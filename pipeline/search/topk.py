"""The one top-k: best scores first, ties broken by document ordinal so every ranking is deterministic."""

from __future__ import annotations

import numpy as np


def top_k(candidates: np.ndarray, scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """Positions into `candidates` of the k best `scores` (all of them, ordered, when k is None)."""
    candidates = np.asarray(candidates)
    scores = np.asarray(scores)
    if k is None:
        k = len(candidates)
    if k <= 0 or len(candidates) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = np.arange(len(candidates))
    if len(candidates) > k:
        # Keep everything tied with the k-th score so the tie-break below sees all of them.
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = np.flatnonzero(scores >= kth)
    order = np.lexsort((candidates[keep], -scores[keep]))
    return keep[order[:k]]
