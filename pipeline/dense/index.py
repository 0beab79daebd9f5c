"""The dense recall branch of an index version: passages, their vectors, the ANN index, doc = max over passages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import schemas
from ..config import Settings
from ..errors import EncoderMismatch, InputError
from ..io import run_gather_index
from .ann import AnnIndex, AnnSpec, choose_spec, ensure_recall
from .cache import EmbeddingCache, embed_with_cache, text_hash
from .encoders import (
    Encoder,
    canonical_encoder_name,
    choose_encoder_name,
    load_encoder,
    passage_cache_id,
    resolve_device,
)
from .passages import Passage, split_passages
from .static import STATIC_PREFIX, StaticEncoder
from .tuned import TunedEncoder, is_tuned

DENSE_DIR = "dense"
_PASSAGE_ROWS = schemas.PASSAGES.remove(schemas.PASSAGES.get_field_index("doc_id"))


@dataclass
class DenseManifest:
    model_id: str
    dim: int
    normalized: bool
    passage_window: int
    passage_overlap: int
    passages: int  # live passages
    encoded: int  # passages embedded in this build; the rest came from the cache
    ann: dict
    recall_at_10: float
    slots: int = 0  # ANN ids handed out, removed passages included
    # How an incremental update changed the ANN index: "in-place" (added and removed slots) or "merged"
    # (rebuilt from the live vectors); None for a full build.
    update: dict | None = None
    # A static or tuned model's folder, relative to the index root (INDEX/encoders/static/ID or
    # INDEX/encoders/tuned/ID) or absolute for another index's (`encoder_path`); None for a named encoder.
    encoder_path: str | None = None
    choice: dict | None = None  # how `dense.encoder` was resolved: the encoder, its teacher and the reason
    embed_s: float | None = None  # seconds to embed what the cache lacked, of a full build
    ann_s: float | None = None  # seconds to build the ANN index, of a full build

    @classmethod
    def read(cls, folder: Path) -> DenseManifest:
        return cls(**json.loads((folder / "dense.json").read_text()))


def configured_encoder(settings: Settings, documents: pa.Table) -> Encoder:
    """The encoder `dense.encoder` names: a build's encoder step has already resolved `auto` and `static` into a
    teacher name or a static model's folder; left unresolved, `auto` means the corpus's teacher."""
    configured = settings.dense.encoder
    name = choose_encoder_name(documents.column("lang").to_pylist()) if configured == "auto" else configured
    if name == "static":
        raise InputError("the static encoder is made by a build's encoder step: build the index with --encoder static")
    if name == "tuned":
        raise InputError("the tuned encoder is chosen by a build's encoder step: build the index with --encoder tuned")
    device = resolve_device(settings.dense.device)
    batch = settings.dense.gpu_batch_size if device == "cuda" else settings.dense.batch_size
    return load_encoder(canonical_encoder_name(name), batch, device)


def index_root_of(folder: Path) -> Path:
    """The index folder of a version folder (INDEX/versions/VERSION, staging included)."""
    return Path(folder).resolve().parent.parent


def encoder_path(encoder: Encoder, index_root: Path) -> str | None:
    """Where a static or tuned model lives: relative to the index root when it is the index's own artifact,
    absolute when it belongs to another index (an evaluation's tuned encoder lives in its lexical index)."""
    if not isinstance(encoder, StaticEncoder | TunedEncoder):
        return None
    model = Path(encoder.folder).resolve()
    return str(model.relative_to(index_root)) if model.is_relative_to(index_root) else str(model)


def _target_spec(n: int, dim: int, settings: Settings, kind: str | None = None) -> AnnSpec:
    config = settings.dense
    return choose_spec(
        n, dim, config.memory_budget_mb << 20, kind or config.ann_kind, hnsw_m=config.hnsw_m,
        ef_construction=config.ef_construction, ef_search=config.ef_search, nprobe=config.nprobe,
    )


def spec_after_update(current: AnnSpec, n: int, dim: int, settings: Settings) -> AnnSpec:
    """The spec a full build of `n` vectors would choose, except that a corpus within 10% of the size where the
    automatic kind changes keeps its current kind: one hovering at a boundary would otherwise rebuild on every
    update."""
    target = _target_spec(n, dim, settings)
    if settings.dense.ann_kind == "auto" and target.kind != current.kind and any(
        _target_spec(int(n * f), dim, settings).kind == current.kind for f in (0.9, 1.1)
    ):
        return _target_spec(n, dim, settings, current.kind)
    return target


def split_documents(documents: pa.Table, doc_ords: Sequence[int], settings: Settings) -> list[Passage]:
    """The passages of the documents at `doc_ords`, in that order."""
    rows = documents.select(["title", "body"]).take(pa.array(doc_ords, pa.int64())).to_pylist()
    return [
        passage
        for doc_ord, row in zip(doc_ords, rows)
        for passage in split_passages(doc_ord, row["title"] or "", row["body"] or "", settings.dense.passage_window,
                                      settings.dense.passage_overlap)
    ]


def _passages_table(slots: np.ndarray, passages: list[Passage]) -> pa.Table:
    """Passage rows without doc_id, which `_write` fills in from the documents."""
    return pa.table({
        "passage_id": pa.array(np.asarray(slots, dtype=np.int32)),
        "doc_ord": pa.array(np.fromiter((p.doc_ord for p in passages), dtype=np.int32, count=len(passages))),
        "start": pa.array([p.start for p in passages], pa.int32()),
        "end": pa.array([p.end for p in passages], pa.int32()),
        "text_hash": pa.array([text_hash(p.text) for p in passages], pa.string()),
    }, schema=_PASSAGE_ROWS)


def build_dense(
    documents: pa.Table,
    settings: Settings,
    folder: Path,
    encoder: Encoder | None = None,
    progress: Callable[[int], None] | None = None,
    choice: dict | None = None,
) -> DenseManifest:
    """Split, embed (through the cache), index and check recall; writes `folder/dense/`."""
    encoder = encoder or configured_encoder(settings, documents)
    passages = split_documents(documents, range(documents.num_rows), settings)
    cache = EmbeddingCache(settings.cache_dir, passage_cache_id(encoder), encoder.dim)
    started = time.perf_counter()
    vectors, encoded = embed_with_cache(encoder, [p.text for p in passages], cache, progress=progress)
    embedded = time.perf_counter()
    ann = AnnIndex.build(vectors, _target_spec(len(vectors), encoder.dim, settings))
    seconds = {"embed_s": round(embedded - started, 3), "ann_s": round(time.perf_counter() - embedded, 3)}
    return _write(folder, documents, _passages_table(np.arange(len(passages)), passages), ann, encoder, settings,
                  encoded, choice=choice, seconds=seconds)


def update_dense(
    previous: Path,
    kept: np.ndarray,
    documents: pa.Table,
    settings: Settings,
    folder: Path,
    encoder: Encoder | None = None,
    progress: Callable[[int], None] | None = None,
) -> DenseManifest:
    """The previous version's dense branch brought up to `documents` by adding and removing ANN entries.

    `kept[old_ord]` is the new ordinal of each previous document that is unchanged, -1 for one deleted or
    changed. Unchanged documents keep their passages, vectors and ANN slots; passages of the others leave the
    index and those of new and changed documents are embedded (through the cache) and added. When removed slots
    pass `dense.merge_dead_fraction`, or the corpus has grown or shrunk into another index shape, the live
    vectors are merged into a fresh index laid out as a full build would lay them.
    """
    old = DenseManifest.read(previous / DENSE_DIR)
    if encoder is None and old.encoder_path and settings.dense.encoder in ("auto", "static", "tuned"):
        encoder = DenseIndex(previous).encoder()  # an index keeps its static model: its vectors stay comparable
    encoder = encoder or configured_encoder(settings, documents)
    if (encoder.model_id, old.passage_window, old.passage_overlap) != (
        old.model_id, settings.dense.passage_window, settings.dense.passage_overlap
    ):
        return build_dense(documents, settings, folder, encoder, progress, old.choice)
    old_passages = pq.read_table(previous / DENSE_DIR / "passages.parquet", columns=["passage_id", "doc_ord", "start",
                                                                                      "end", "text_hash"])
    new_ords = kept[old_passages.column("doc_ord").to_numpy()]
    survives = new_ords >= 0
    retained = old_passages.filter(pa.array(survives)).set_column(
        1, _PASSAGE_ROWS.field("doc_ord"), pa.array(new_ords[survives], pa.int32()))
    removed = old_passages.column("passage_id").to_numpy()[~survives]
    fresh = split_documents(documents, np.setdiff1d(np.arange(documents.num_rows), kept[kept >= 0]).tolist(), settings)
    # The same model as the previous version's, so its dimension is known: a model is loaded only when some
    # passage is missing from the cache, not to update an index whose changes were embedded before.
    cache = EmbeddingCache(settings.cache_dir, passage_cache_id(encoder), old.dim)
    vectors, encoded = embed_with_cache(encoder, [p.text for p in fresh], cache, progress=progress)

    ann = AnnIndex.load(previous / DENSE_DIR, np.load(previous / DENSE_DIR / "vectors.npy", mmap_mode="r"))
    live = retained.num_rows + len(fresh)
    target = spec_after_update(ann.spec, live, old.dim, settings)
    dead = ann.n - ann.live_count + len(removed)
    merge = (not ann.can_update_to(target)
             or dead / max(ann.n + len(fresh), 1) > settings.dense.merge_dead_fraction)
    if merge:
        slots = retained.column("passage_id").to_numpy()
        table = pa.concat_tables([retained, _passages_table(np.arange(len(fresh)) + ann.n, fresh)])
        all_vectors = np.concatenate([np.asarray(ann.vectors[slots], dtype=np.float32), vectors])
        order = np.lexsort((table.column("start").to_numpy(), table.column("doc_ord").to_numpy()))
        table = table.take(order).set_column(0, _PASSAGE_ROWS.field("passage_id"),
                                             pa.array(np.arange(live, dtype=np.int32)))
        ann = AnnIndex.build(all_vectors[order], target)
    else:
        ann.spec = replace(target, nlist=ann.spec.nlist)  # search settings as configured now
        ann.remove(removed)
        table = pa.concat_tables([retained, _passages_table(ann.add(vectors), fresh)])
    update = {"mode": "merged" if merge else "in-place", "added": len(fresh), "removed": int(len(removed)),
              "dead_slots": ann.n - ann.live_count}
    return _write(folder, documents, table, ann, encoder, settings, encoded, update, old.choice)


def _write(folder: Path, documents: pa.Table, passages: pa.Table, ann: AnnIndex, encoder: Encoder,
           settings: Settings, encoded: int, update: dict | None = None, choice: dict | None = None,
           seconds: dict | None = None) -> DenseManifest:
    """Check recall, then write `folder/dense/`: serving arrays, inspection Parquet and dense.json."""
    recall = ensure_recall(ann, settings.dense.recall_floor)
    out = folder / DENSE_DIR
    out.mkdir(parents=True, exist_ok=True)
    slots = passages.column("passage_id").to_numpy()
    doc_ords = passages.column("doc_ord").to_numpy()
    doc_ids = documents.column("doc_id").take(pa.array(doc_ords))
    passage_docs = np.full(ann.n, -1, dtype=np.int32)
    passage_docs[slots] = doc_ords
    np.save(out / "vectors.npy", np.asarray(ann.vectors, dtype=np.float32))
    np.save(out / "passage_docs.npy", passage_docs)
    pq.write_table(passages.add_column(2, "doc_id", doc_ids).select(schemas.PASSAGES.names).cast(schemas.PASSAGES),
                   out / "passages.parquet")
    order = np.argsort(slots)
    vectors = np.asarray(ann.vectors[slots[order]], dtype=np.float32)
    dim = vectors.shape[1]  # not encoder.dim, which would load a model that had nothing to embed
    pq.write_table(
        pa.table(
            {
                "passage_id": pa.array(slots[order]),
                "doc_id": doc_ids.take(pa.array(order)),
                "model_id": pa.repeat(pa.scalar(encoder.model_id), len(slots)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
            },
            schema=schemas.embeddings_schema(dim),
        ),
        out / "embeddings.parquet",
    )
    ann.save(out)
    manifest = DenseManifest(
        model_id=encoder.model_id,
        dim=dim,
        normalized=encoder.normalized,
        passage_window=settings.dense.passage_window,
        passage_overlap=settings.dense.passage_overlap,
        passages=len(slots),
        encoded=encoded,
        ann=asdict(ann.spec),
        recall_at_10=round(recall, 4),
        slots=ann.n,
        update=update,
        encoder_path=encoder_path(encoder, index_root_of(folder)),
        choice=choice,
        **(seconds or {}),
    )
    (out / "dense.json").write_text(json.dumps(asdict(manifest), indent=2))
    return manifest


class DenseIndex:
    """Serves the dense branch of one version: encode the query, search passages, keep each doc's best."""

    def __init__(self, folder: Path):
        self.root = index_root_of(folder)
        folder = Path(folder) / DENSE_DIR
        self.manifest = DenseManifest.read(folder)
        self.passage_docs = np.load(folder / "passage_docs.npy")  # slot → doc ordinal, -1 once removed
        self.ann = AnnIndex.load(folder, np.load(folder / "vectors.npy", mmap_mode="r"))
        # Updates append slots out of document order; doc_cosines needs each document's slots together.
        self._slot_is_live = self.passage_docs >= 0
        live = np.flatnonzero(self._slot_is_live)
        self._slots_by_doc = live[np.argsort(self.passage_docs[live], kind="stable")]
        self._docs_of_sorted_slots = self.passage_docs[self._slots_by_doc]
        self._encoder: Encoder | None = None

    @staticmethod
    def exists(version_folder: Path) -> bool:
        return (Path(version_folder) / DENSE_DIR / "dense.json").is_file()

    def check_encoder(self, encoder: Encoder) -> None:
        if encoder.model_id != self.manifest.model_id:
            raise EncoderMismatch(
                f"the index was embedded with {self.manifest.model_id!r}; a query encoded with "
                f"{encoder.model_id!r} would be compared in another vector space. Use --encoder "
                f"{self.manifest.model_id} or rebuild the index with the new encoder."
            )

    def encoder(self, batch_size: int = 32, device: str = "cpu") -> Encoder:
        if self._encoder is None:
            path = self.manifest.encoder_path
            self._encoder = load_encoder(str(self.root / path) if path else self.manifest.model_id, batch_size, device)
        return self._encoder

    def accepts(self, configured: str) -> bool:
        """Whether a configured query encoder names the one this index was embedded with."""
        if configured == "auto":
            return True
        if configured == "static":
            return self.manifest.model_id.startswith(STATIC_PREFIX)
        if configured == "tuned":
            return is_tuned(self.manifest.model_id)
        if Path(configured).is_dir():  # a static or tuned model's folder: its card names the model
            return load_encoder(configured).model_id == self.manifest.model_id
        return canonical_encoder_name(configured) == self.manifest.model_id

    def encode_query(self, text: str, encoder: Encoder | None = None) -> np.ndarray:
        encoder = encoder or self.encoder()
        self.check_encoder(encoder)
        return encoder.encode_queries([text])[0]

    def doc_vector(self, doc_ord: int) -> np.ndarray | None:
        """A document's own vector: the normalised mean of its passages' (None when it has none)."""
        start, end = np.searchsorted(self._docs_of_sorted_slots, [doc_ord, doc_ord + 1])
        if start == end:
            return None
        mean = np.asarray(self.ann.vectors[np.sort(self._slots_by_doc[start:end])], dtype=np.float32).mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def doc_cosines(self, query_vector: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """Each document's best passage cosine with the query."""
        starts = np.searchsorted(self._docs_of_sorted_slots, docs, side="left")
        ends = np.searchsorted(self._docs_of_sorted_slots, docs, side="right")
        lengths = ends - starts
        rows = self._slots_by_doc[run_gather_index(starts, lengths)]
        cosines = np.asarray(self.ann.vectors[rows], dtype=np.float32) @ np.asarray(query_vector, np.float32)
        out = np.full(len(docs), np.nan)
        has = lengths > 0
        if has.any():
            out[has] = np.maximum.reduceat(cosines, (np.cumsum(lengths) - lengths)[has])
        return out

    def rank(self, query_vector: np.ndarray, k: int, allowed_docs: np.ndarray | None = None):
        """(doc ordinals, cosine scores) of the k best documents that pass `allowed_docs`.

        Passages are over-fetched until k distinct documents are found or every allowed passage was seen,
        so a filter never leaves fewer than k results while k allowed documents exist.
        """
        allowed = None
        if allowed_docs is not None:
            live = self._slot_is_live
            allowed = np.zeros(len(self.passage_docs), dtype=bool)
            allowed[live] = allowed_docs[self.passage_docs[live]]
        available = self.ann.live_count if allowed is None else int(allowed.sum())
        fetch = min(available, max(k * 3, 10))
        query = np.asarray(query_vector, dtype=np.float32)[None, :]
        while True:
            if fetch >= available:  # every allowed passage is wanted: exact search cannot miss any
                rows = None if allowed is None else np.flatnonzero(allowed)
                scores, ids = self.ann.exact(query, fetch, rows)
            else:
                scores, ids = self.ann.search(query, fetch, allowed)
            ids, scores = ids[0], scores[0]
            valid = ids >= 0
            docs = self.passage_docs[ids[valid]]
            best: dict[int, float] = {}
            for doc, score in zip(docs.tolist(), scores[valid].tolist()):
                if doc not in best:  # results come best-first, so the first passage seen is the doc's max
                    best[doc] = score
            if len(best) >= k or fetch >= available:
                break
            fetch = min(available, fetch * 4)
        ranked = list(best.items())[:k]
        return (np.array([d for d, _ in ranked], dtype=np.int64), np.array([s for _, s in ranked], dtype=np.float64))
