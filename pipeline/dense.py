"""The dense recall branch of an index version: passages, their vectors, the ANN index, doc = max over passages."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import schemas
from .ann import AnnIndex, choose_spec
from .config import Settings
from .embeddings import (
    Encoder,
    EncoderMismatch,
    EmbeddingCache,
    canonical_encoder_name,
    choose_encoder_name,
    embed_with_cache,
    load_encoder,
    split_passages,
    text_hash,
)

DENSE_DIR = "dense"


@dataclass
class DenseManifest:
    model_id: str
    dim: int
    normalized: bool
    passage_window: int
    passage_overlap: int
    passages: int
    encoded: int  # passages embedded in this build; the rest came from the cache
    ann: dict
    recall_at_10: float

    @classmethod
    def read(cls, folder: Path) -> DenseManifest:
        return cls(**json.loads((folder / "dense.json").read_text()))


def resolve_encoder_name(settings: Settings, langs: list[str | None]) -> str:
    configured = settings.dense.encoder
    return choose_encoder_name(langs) if configured == "auto" else canonical_encoder_name(configured)


def build_dense(
    documents: pa.Table,
    settings: Settings,
    folder: Path,
    encoder: Encoder | None = None,
    progress: Callable[[int], None] | None = None,
) -> DenseManifest:
    """Split, embed (through the cache), index and check recall; writes `folder/dense/`."""
    config = settings.dense
    encoder = encoder or load_encoder(resolve_encoder_name(settings, documents.column("lang").to_pylist()),
                                      config.batch_size)
    titles = documents.column("title").to_pylist()
    bodies = documents.column("body").to_pylist()
    passages = [
        passage
        for doc_ord, (title, body) in enumerate(zip(titles, bodies))
        for passage in split_passages(doc_ord, title or "", body or "", config.passage_window, config.passage_overlap)
    ]
    texts = [p.text for p in passages]
    cache = EmbeddingCache(settings.cache_dir, encoder.model_id, encoder.dim)
    vectors, encoded = embed_with_cache(encoder, texts, cache, progress=progress)

    spec = choose_spec(
        len(vectors), encoder.dim, config.memory_budget_mb << 20, config.ann_kind, hnsw_m=config.hnsw_m,
        ef_construction=config.ef_construction, ef_search=config.ef_search, nprobe=config.nprobe,
    )
    ann = AnnIndex.build(vectors, spec)
    recall = ann.ensure_recall(config.recall_floor)
    out = folder / DENSE_DIR
    out.mkdir(parents=True, exist_ok=True)
    doc_ids = documents.column("doc_id").to_pylist()
    passage_docs = np.fromiter((p.doc_ord for p in passages), dtype=np.int32, count=len(passages))
    np.save(out / "vectors.npy", vectors)
    np.save(out / "passage_docs.npy", passage_docs)
    pq.write_table(
        pa.table(
            {
                "passage_id": pa.array(np.arange(len(passages), dtype=np.int32)),
                "doc_ord": pa.array(passage_docs),
                "doc_id": pa.array([doc_ids[p.doc_ord] for p in passages], pa.string()),
                "start": pa.array([p.start for p in passages], pa.int32()),
                "end": pa.array([p.end for p in passages], pa.int32()),
                "text_hash": pa.array([text_hash(t) for t in texts], pa.string()),
            },
            schema=schemas.PASSAGES,
        ),
        out / "passages.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "passage_id": pa.array(np.arange(len(passages), dtype=np.int32)),
                "doc_id": pa.array([doc_ids[p.doc_ord] for p in passages], pa.string()),
                "model_id": pa.repeat(pa.scalar(encoder.model_id), len(passages)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), encoder.dim),
            },
            schema=schemas.embeddings_schema(encoder.dim),
        ),
        out / "embeddings.parquet",
    )
    ann.save(out)
    manifest = DenseManifest(
        model_id=encoder.model_id,
        dim=encoder.dim,
        normalized=encoder.normalized,
        passage_window=config.passage_window,
        passage_overlap=config.passage_overlap,
        passages=len(passages),
        encoded=encoded,
        ann=asdict(spec),
        recall_at_10=round(recall, 4),
    )
    (out / "dense.json").write_text(json.dumps(asdict(manifest), indent=2))
    return manifest


class DenseIndex:
    """Serves the dense branch of one version: encode the query, search passages, keep each doc's best."""

    def __init__(self, folder: Path):
        folder = Path(folder) / DENSE_DIR
        self.manifest = DenseManifest.read(folder)
        self.passage_docs = np.load(folder / "passage_docs.npy")
        self.ann = AnnIndex.load(folder, np.load(folder / "vectors.npy", mmap_mode="r"))
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

    def encoder(self, batch_size: int = 32) -> Encoder:
        if self._encoder is None:
            self._encoder = load_encoder(self.manifest.model_id, batch_size)
        return self._encoder

    def encode_query(self, text: str, encoder: Encoder | None = None) -> np.ndarray:
        encoder = encoder or self.encoder()
        self.check_encoder(encoder)
        return encoder.encode_queries([text])[0]

    def doc_cosines(self, query_vector: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """Each document's best passage cosine with the query."""
        starts = np.searchsorted(self.passage_docs, docs, side="left")
        ends = np.searchsorted(self.passage_docs, docs, side="right")
        lengths = ends - starts
        rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if len(docs) else np.zeros(0, int)
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
        allowed = None if allowed_docs is None else allowed_docs[self.passage_docs]
        available = self.ann.n if allowed is None else int(allowed.sum())
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
