"""Experiments served: a search of a visitor in an experiment's share answered by the team-draft merge of its control
and candidate rankers, with the arm of each result (the API, the UI and `sousuo simulate --experiment` use it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..behaviour.experiments import (
    Experiment,
    ExperimentStore,
    arm_mode,
    report,
    visitor_hash,
)
from ..behaviour.interleaving import (
    ARMS,
    CANDIDATE,
    CONTROL,
    impression_seed,
    team_draft,
)
from ..constants import SEARCH_MODES
from ..errors import IndexNotFound, InputError
from ..index.querylog import QueryLog, filters_json
from ..io import CURRENT_POINTER, read_pointer, write_pointer
from ..rank.model import RANKERS_DIR, Ranker
from ..search.filters import Filters
from ..search.results import SearchResponse, make_hit
from ..searcher import Searcher, TopDocs


def resolve_arm(index_dir: Path | str, spec: str) -> str:
    """An arm spec as an experiment stores it: a search mode, or `ltr:<model id>` of a ranker the index has.

    `ltr` alone is pinned to the ranker published now, so a later publish does not change the arm mid-experiment;
    a bare model id means `ltr:<id>`."""
    rankers = Path(index_dir) / RANKERS_DIR
    mode, model_id = arm_mode(spec)
    if mode not in SEARCH_MODES:
        mode, model_id = "ltr", spec
    if mode != "ltr":
        if model_id:
            raise InputError(f"only ltr takes a ranker model id: {spec!r}")
        return mode
    if model_id is None:
        model_id = read_pointer(rankers / CURRENT_POINTER)
        if model_id is None:
            raise IndexNotFound(f"no published ranker in {index_dir} to pin the arm {spec!r} to")
    if "/" in model_id or model_id.startswith(".") or not (rankers / model_id / "ranker.json").is_file():
        known = sorted(p.parent.name for p in rankers.glob("*/ranker.json"))
        raise InputError(f"{spec!r} is neither a search mode {SEARCH_MODES} nor a trained ranker of this index "
                         f"(rankers: {', '.join(known) or 'none'})")
    return f"ltr:{model_id}"


def default_control(index_dir: Path | str) -> str:
    """What is served now: the published ranker, pinned, or hybrid fusion where none is published."""
    return resolve_arm(index_dir, "ltr") if read_pointer(Path(index_dir) / RANKERS_DIR / CURRENT_POINTER) else "hybrid"


def assigned(store: ExperimentStore, log: QueryLog, user_id: str | None, session_id: str | None,
             mode: str) -> Experiment | None:
    """The experiment a search takes part in now, if any; ids are hashed only where some experiment exists."""
    if not store.list():
        return None
    return store.assign(visitor_hash(log, user_id, session_id), mode)


def search_seed(visitor: str, text: str, filters: Filters | None) -> int:
    """The coin flips of one visitor's search: its pages, and its repeats within a session, show one merge."""
    return impression_seed(f"{visitor}/{text}/{filters_json(filters)}")


def publish_if_won(index_dir: Path | str, experiment_id: str) -> dict:
    """The online half of the publishing guard: the candidate ranker of an experiment is published when users
    preferred it (more wins than losses, sign test p < 0.05) and it is a trained ranker; otherwise nothing moves."""
    ExperimentStore(index_dir).get(experiment_id)  # an unknown id is refused by name
    row = next(r for r in report(index_dir) if r["experiment"] == experiment_id)
    mode, model_id = arm_mode(row["candidate"])
    published = model_id if row["preferred"] == CANDIDATE and mode == "ltr" else None
    if published:
        write_pointer(Path(index_dir) / RANKERS_DIR / CURRENT_POINTER, published)
    return {"experiment": experiment_id, "preferred": row["preferred"], "p_value": row["p_value"],
            "published": published}


class Rankers:
    """Trained rankers of a searcher's index by model id, loaded and checked once (the API's snapshot has its own)."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher
        self._loaded: dict[str, Ranker] = {}
        self._lock = threading.Lock()

    def __call__(self, model_id: str) -> Ranker:
        with self._lock:
            if model_id not in self._loaded:
                folder = self.searcher.reader.root / RANKERS_DIR / model_id
                if "/" in model_id or model_id.startswith(".") or not (folder / "ranker.json").is_file():
                    raise IndexNotFound(f"no trained ranker {model_id!r} in this index")
                ranker = Ranker.load(folder)
                ranker.check(self.searcher.reader.compatibility())
                self._loaded[model_id] = ranker
            return self._loaded[model_id]


@dataclass
class InterleavedResponse:
    experiment: Experiment
    response: SearchResponse
    arms: list[str]  # arms[i]: the arm that placed response.hits[i]

    def to_json(self) -> dict:
        """The search response with each result's arm, and the experiment it came from."""
        body = self.response.to_json()
        for result, arm in zip(body["results"], self.arms):
            result["arm"] = arm
        body["experiment"] = {"id": self.experiment.experiment_id, "control": self.experiment.control,
                              "candidate": self.experiment.candidate}
        return body


def arm_rankings(searcher: Searcher, experiment: Experiment, query: str, k: int, rankers: Callable[[str], Ranker],
                 filters: Filters | None = None, syntax: bool = True) -> dict[str, TopDocs]:
    """Each arm's top `k` for a query, planned once (with the query vector when either arm needs it)."""
    modes = {arm: arm_mode(spec) for arm, spec in experiment.arms().items()}
    vector_mode = next((m for m, _ in modes.values() if m in ("dense", "hybrid", "ltr")), "bm25")
    plan = searcher.plan(query, vector_mode, filters, syntax)
    return {arm: searcher.rank_plan(plan, k, 0, mode, rankers(model_id) if mode == "ltr" else None)
            for arm, (mode, model_id) in modes.items()}


def interleaved_search(searcher: Searcher, experiment: Experiment, query: str, query_id: str,
                       rankers: Callable[[str], Ranker], k: int = 10, offset: int = 0, filters: Filters | None = None,
                       syntax: bool = True, with_snippets: bool = True, explain: bool = False,
                       seed: int | None = None) -> InterleavedResponse:
    """One page of the team-draft merge of the experiment's arms; the coin flips come from `seed`, by default from
    `query_id`; a client that pages passes one seed for every page of a search, so the pages are of one merge. Each
    result keeps its own arm's score and explanation."""
    started = time.perf_counter()
    tops = arm_rankings(searcher, experiment, query, offset + k, rankers, filters, syntax)
    merged = team_draft(*(tops[arm].doc_ords.tolist() for arm in ARMS), offset + k,
                        impression_seed(query_id) if seed is None else seed)
    docs, arms = merged.docs[offset:], merged.teams[offset:]
    scores = {arm: dict(zip(top.doc_ords.tolist(), top.scores.tolist())) for arm, top in tops.items()}
    term_ids = {t for top in tops.values() for t in top.term_ids}
    hits = []
    for doc, arm in zip(docs, arms):
        hit = make_hit(searcher.reader, int(doc), scores[arm][doc], term_ids, with_snippets)
        if explain:
            hit.explanation = {**searcher.explain(tops[arm], int(doc)), "arm": arm,
                               "ranker": experiment.arms()[arm]}
        hits.append(hit)
    control = tops[CONTROL]
    response = SearchResponse(control.plan.text, hits, max(top.total_matches for top in tops.values()),
                              (time.perf_counter() - started) * 1000, control.query_terms)
    return InterleavedResponse(experiment, response, arms)
