"""Training labels from clicks: each (query, document) pair's relevance, estimated by a click model, as a grade.

- `pbm`: the position-based model's relevance (EM), debiased for how rarely low positions are examined;
- `ipw`: clicks weighted by the inverse of their position's propensity, under the same prior;
- `raw`: the click-through rate, blind to position: the biased baseline.

All three share the prior and the grading: a relevance at or below the prior's mean (no evidence) earns grade 0,
and the rest of [0, 1] is cut into `grades` equal steps, so the three differ only in how they treat position."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import BehaviourConfig
from ..errors import InputError
from ..eval.beir import Qrels
from .clickmodels import ClickThroughRate, PositionBased
from .sessions import ClickLog

LABEL_SOURCES = ("pbm", "ipw", "raw")


@dataclass
class ClickLabels:
    queries: dict[str, str]  # query key → a logged text of it
    qrels: Qrels  # query key → doc id → grade (only grades above 0)
    source: dict  # what the labels came from, for the ranker's card


def pair_relevance(log: ClickLog, source: str, config: BehaviourConfig) -> np.ndarray:
    if source == "raw":
        return ClickThroughRate(config).fit(log).relevance()
    if source in ("pbm", "ipw"):
        model = PositionBased(config).fit(log)
        return model.relevance() if source == "pbm" else model.ipw_relevance(log)
    raise InputError(f"unknown click label source {source!r}; choose from {list(LABEL_SOURCES)}")


def grades(relevance: np.ndarray, config: BehaviourConfig) -> np.ndarray:
    floor = config.prior_mean
    return np.rint(config.grades * np.clip((relevance - floor) / (1 - floor), 0, 1)).astype(np.int64)


def click_labels(log: ClickLog, source: str, config: BehaviourConfig) -> ClickLabels:
    if not log.n_sessions:
        raise InputError("the query log holds no first-page searches with results: nothing to learn from")
    graded = grades(pair_relevance(log, source, config), config)
    qrels: Qrels = {}
    for pair in np.nonzero(graded)[0]:
        qrels.setdefault(log.queries[log.pair_query[pair]], {})[log.doc_ids[log.pair_doc[pair]]] = int(graded[pair])
    # A part of a log (`ClickLog.subset`) keeps every query of the whole: only those its sessions searched count.
    asked = np.unique(log.pair_query[log.pairs[:, 0][log.pairs[:, 0] >= 0]])
    queries = {log.queries[q]: log.texts[q] for q in asked.tolist()}
    summary = {"labels": f"clicks-{source}", "click_model": "ctr" if source == "raw" else "pbm",
               "sessions": log.n_sessions, "clicks": int(log.clicks.sum()), "queries": len(queries),
               "labelled_pairs": int(np.count_nonzero(graded)),
               "log_from": str(log.first_ts) if log.first_ts else None,
               "log_to": str(log.last_ts) if log.last_ts else None}
    return ClickLabels(queries, qrels, summary)
