"""Approximate nearest neighbours with faiss: flat, HNSW and IVF (flat, or PQ re-ranked exactly), chosen by size.

Ids are slots: row numbers of the vectors array, stable for the index's lifetime. Updates append new slots and
remove old ones in place: flat (behind an id map) and IVF drop them from the index, HNSW, which faiss cannot
delete from, keeps them as tombstones that every search filters out until a merge rebuilds the index.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError, RecallTooLow

AnnKind = Literal["flat", "hnsw", "ivf-flat", "ivf-pq"]
# Below this many vectors exact search is fast enough that an approximate index only loses recall.
EXACT_UP_TO = 20_000
# The most efSearch a recall check may raise HNSW to; beyond this a graph search costs about as much as exact.
MAX_EF_SEARCH = 2048


@dataclass
class AnnSpec:
    kind: AnnKind
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int = 0
    nprobe: int = 16
    pq_m: int = 0
    pq_bits: int = 8
    rerank: int = 10  # IVF-PQ fetches k · rerank candidates and re-ranks them on the exact vectors

    def construction(self) -> dict:
        """What a built index's structure depends on; the rest (ef_search, nprobe, rerank) is set per search."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _SEARCH_TIME}


_SEARCH_TIME = {"ef_search", "nprobe", "rerank"}


def estimated_bytes(kind: AnnKind, n: int, dim: int, spec: AnnSpec) -> int:
    if kind == "flat" or kind == "ivf-flat":
        return n * dim * 4
    if kind == "hnsw":
        return n * (dim * 4 + spec.hnsw_m * 2 * 4)
    return n * (max(spec.pq_m, 1) + 8)  # codes + ids; exact vectors stay on disk, memory-mapped


def choose_spec(n: int, dim: int, memory_budget_bytes: int, kind: str = "auto", **overrides) -> AnnSpec:
    """Flat for small corpora, HNSW while it fits the memory budget, IVF-PQ beyond."""
    spec = AnnSpec(kind="flat", **overrides)
    if kind == "auto":
        if n <= EXACT_UP_TO:
            kind = "flat"
        elif estimated_bytes("hnsw", n, dim, spec) <= memory_budget_bytes:
            kind = "hnsw"
        else:
            kind = "ivf-pq"
    spec.kind = kind
    if kind.startswith("ivf"):
        if not spec.nlist:
            # About 4·√n lists, a power of two, and at least 39 training points per list.
            spec.nlist = max(1, min(2 ** round(math.log2(max(4 * math.sqrt(n), 1))), n // 39 or 1))
        if kind == "ivf-pq" and not spec.pq_m:
            # 16-dimensional sub-vectors (24 codes for 384 dims): 4-dimensional ones trained ~30× slower in
            # bench/ann.py for no recall that the exact re-ranking does not give back.
            spec.pq_m = next((m for m in (dim // 16, dim // 8, dim // 4, dim // 2) if m >= 8 and dim % m == 0), dim)
        # A PQ codebook of 2^bits centroids needs at least that many training vectors.
        spec.pq_bits = max(1, min(spec.pq_bits, int(math.log2(max(n, 2)))))
    return spec


class AnnIndex:
    """A faiss index over L2-normalised vectors (inner product = cosine), ids = slots (rows of `vectors`).

    `live` marks the slots still in the index (None: all of them); removed slots keep their row in `vectors`
    so that the other ids stay valid.
    """

    def __init__(self, spec: AnnSpec, index, vectors: np.ndarray, live: np.ndarray | None = None):
        self.spec = spec
        self.index = index
        self.vectors = vectors
        self.live = live
        self._counted()

    def _counted(self) -> None:
        # Searches read both on every query; at a million slots recounting or repacking would cost a millisecond.
        self.live_count = self.n if self.live is None else int(self.live.sum())
        self._live_bits = None if self.live is None else np.packbits(self.live, bitorder="little")

    @property
    def n(self) -> int:
        """Slots, removed ones included."""
        return len(self.vectors)

    @property
    def _keeps_tombstones(self) -> bool:
        return self.spec.kind == "hnsw"

    def can_update_to(self, target: AnnSpec) -> bool:
        """Whether in-place additions and removals leave an index that `target` describes: the same kind and
        construction, IVF lists within 2× of the target's (so a growing corpus does not retrain on every
        update), and ids that removals leave alone (flat indexes from before the id map renumber)."""
        import faiss

        if self.spec.kind == "flat" and not isinstance(self.index, faiss.IndexIDMap2):
            return False
        built, wanted = self.spec.construction(), target.construction()
        lists = built.pop("nlist"), wanted.pop("nlist")
        return built == wanted and (lists[0] == lists[1] or 0.5 < lists[1] / max(lists[0], 1) < 2)

    @classmethod
    def build(cls, vectors: np.ndarray, spec: AnnSpec, seed: int = 0) -> AnnIndex:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        metric = faiss.METRIC_INNER_PRODUCT
        if spec.kind == "flat":
            # The id map lets removals drop vectors without renumbering the others.
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif spec.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, metric)
            index.hnsw.efConstruction = spec.ef_construction
        elif spec.kind in ("ivf-flat", "ivf-pq"):
            quantizer = faiss.IndexFlatIP(dim)
            if spec.kind == "ivf-flat":
                index = faiss.IndexIVFFlat(quantizer, dim, spec.nlist, metric)
            else:
                index = faiss.IndexIVFPQ(quantizer, dim, spec.nlist, spec.pq_m, spec.pq_bits, metric)
            rng = np.random.default_rng(seed)
            sample = vectors[rng.choice(n, size=min(n, max(spec.nlist * 64, 10_000)), replace=False)]
            index.train(sample)
        else:
            raise InputError(f"unknown ANN kind {spec.kind!r}")
        ann = cls(spec, index, vectors[:0])
        ann.add(vectors)
        return ann

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append vectors as new slots; returns their ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.arange(self.n, self.n + len(vectors), dtype=np.int64)
        if len(vectors):
            if self._keeps_tombstones:
                self.index.add(vectors)  # HNSW numbers vectors in order, and it never shrinks, so ids = slots
            else:
                self.index.add_with_ids(vectors, ids)
            self.vectors = vectors if self.n == 0 else np.concatenate([np.asarray(self.vectors, np.float32), vectors])
            if self.live is not None:
                self.live = np.r_[self.live, np.ones(len(vectors), dtype=bool)]
            self._counted()
        return ids

    def remove(self, ids: np.ndarray) -> None:
        """Take slots out of search results for good."""
        import faiss

        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if not len(ids):
            return
        if not self._keeps_tombstones:
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
        if self.live is None:
            self.live = np.ones(self.n, dtype=bool)
        self.live[ids] = False
        self._counted()

    def _params(self, selector=None):
        import faiss

        if self.spec.kind == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=self.spec.ef_search, sel=selector)
        if self.spec.kind.startswith("ivf"):
            return faiss.SearchParametersIVF(nprobe=self.spec.nprobe, sel=selector)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def exact(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top-k by inner product over live slots, or over `rows` only when given."""
        import faiss

        if rows is None and self.live is not None:
            rows = np.flatnonzero(self.live)
        vectors = np.ascontiguousarray(self.vectors if rows is None else self.vectors[rows], dtype=np.float32)
        k = min(k, len(vectors))
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, ids = faiss.knn(np.ascontiguousarray(queries, dtype=np.float32), vectors, k,
                                metric=faiss.METRIC_INNER_PRODUCT)
        return scores, (ids if rows is None else rows[ids])

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, exact_up_to: int = EXACT_UP_TO
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k nearest rows, restricted to rows where `allowed` is True.

        Missing neighbours are id -1. A restriction to at most `exact_up_to` rows is answered exactly over
        those rows; a larger one goes through the index with an ID selector. HNSW's tombstones always go
        through the selector.
        """
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.live_count)) if self.live_count else 0
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        selector = bitmap = None
        if allowed is not None:
            if self.live is not None:
                allowed = allowed & self.live
            rows = np.flatnonzero(allowed)
            if len(rows) <= exact_up_to or self.spec.kind == "flat":
                return self.exact(queries, k, rows)
            bitmap = np.packbits(allowed.astype(np.uint8), bitorder="little")
        elif self.live is not None and self._keeps_tombstones:
            allowed, bitmap = self.live, self._live_bits
        if bitmap is not None:
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        fetch = k * self.spec.rerank if self.spec.kind == "ivf-pq" else k
        # A handful of queries gain nothing from OpenMP threads, whose spinning only steals the other core.
        threads = faiss.omp_get_max_threads()
        if len(queries) <= 8:
            faiss.omp_set_num_threads(1)
        try:
            scores, ids = self.index.search(queries, min(fetch, self.live_count), params=self._params(selector))
        finally:
            faiss.omp_set_num_threads(threads)
        if self.spec.kind == "ivf-pq":
            scores, ids = self._rerank(queries, ids, k)
        if allowed is not None:
            # A selective filter can starve the graph or the probed lists; those queries are answered exactly.
            short = np.flatnonzero((ids < 0).any(axis=1))
            if len(short):
                scores[short], ids[short] = self.exact(queries[short], k, np.flatnonzero(allowed))
        return scores, ids

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, found) in enumerate(zip(queries, candidates)):
            found = found[found >= 0]
            exact = np.asarray(self.vectors[np.sort(found)], dtype=np.float32) @ query
            order = np.argsort(-exact, kind="stable")[:k]
            scores[row, : len(order)] = exact[order]
            ids[row, : len(order)] = np.sort(found)[order]
        return scores, ids

    def save(self, folder: Path) -> None:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "ann.faiss"))
        (folder / "ann.json").write_text(json.dumps(asdict(self.spec), indent=2))
        if self.live is not None:
            np.save(folder / "ann_live.npy", self.live)
        else:
            (folder / "ann_live.npy").unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: Path, vectors: np.ndarray) -> AnnIndex:
        import faiss

        known = {f.name for f in fields(AnnSpec)}  # specs written before a setting was dropped still load
        spec = AnnSpec(**{k: v for k, v in json.loads((folder / "ann.json").read_text()).items() if k in known})
        live = np.load(folder / "ann_live.npy") if (folder / "ann_live.npy").is_file() else None
        return cls(spec, faiss.read_index(str(folder / "ann.faiss")), vectors, live)


# -- the recall floor, checked at build time ----------------------------------------------------------


def _probe(index: AnnIndex, k: int, n_queries: int = 200, noise: float = 0.05, seed: int = 0):
    """(held-aside queries, their exact top-k): stored vectors moved by a little noise."""
    slots = np.arange(index.n) if index.live is None else np.flatnonzero(index.live)
    rng = np.random.default_rng(seed)
    picks = rng.choice(slots, size=min(n_queries, len(slots)), replace=False)
    queries = np.asarray(index.vectors[np.sort(picks)], dtype=np.float32)
    queries = queries + rng.normal(scale=noise / math.sqrt(queries.shape[1]), size=queries.shape)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    return queries, index.exact(queries, k)[1]

def _recall(index: AnnIndex, queries: np.ndarray, truth: np.ndarray) -> float:
    _, found = index.search(queries, truth.shape[1])
    return sum(len(set(t.tolist()) & set(f.tolist())) for t, f in zip(truth, found)) / truth.size

def recall_at(index: AnnIndex, k: int = 10) -> float:
    """Recall@k against exact search, for held-aside queries."""
    return _recall(index, *_probe(index, k)) if index.live_count else 1.0

def ensure_recall(index: AnnIndex, floor: float, k: int = 10) -> float:
    """Measured recall@k, after doubling the search effort (HNSW's efSearch, IVF's nprobe) while it is under
    `floor`; RecallTooLow when the most effort still misses it. The effort found is kept in the spec.

    An index that grows by in-place updates, or a corpus that clusters less than the rule for lists assumed,
    would otherwise fail its build on the configured effort alone."""
    if not index.live_count:
        return 1.0
    queries, truth = _probe(index, k)
    knob, most = {"hnsw": ("ef_search", MAX_EF_SEARCH), "ivf-flat": ("nprobe", index.spec.nlist),
                  "ivf-pq": ("nprobe", index.spec.nlist)}.get(index.spec.kind, (None, 0))
    recall = _recall(index, queries, truth)
    while recall < floor and knob and getattr(index.spec, knob) < most:
        setattr(index.spec, knob, min(most, max(1, getattr(index.spec, knob)) * 2))
        recall = _recall(index, queries, truth)
    if recall < floor:
        effort = f" even at {knob} {getattr(index.spec, knob)}" if knob else ""
        raise RecallTooLow(
            f"{index.spec.kind} index recall@{k} {recall:.3f} is below the floor {floor}{effort}: "
            "choose another dense.ann_kind (or, for ivf-pq, a larger rerank)"
        )
    return recall
