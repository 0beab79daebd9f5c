"""The embedding cache: vectors keyed on (model, text hash) in append-only Parquet parts, so no text is embedded twice."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_write
from .encoders import Encoder

# At most this many texts are encoded between deadline checks: E5 takes about 10 s for 32 passages on 2 busy cores.
DEADLINE_CHUNK = 32


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_")


class EmbeddingCache:
    """(model, text hash) → vector, stored as append-only Parquet parts so an interrupted run keeps its work."""

    def __init__(self, root: Path, model_id: str, dim: int):
        self.folder = Path(root) / "embeddings" / _slug(model_id)
        self.model_id = model_id
        self.dim = dim
        self._rows: dict[str, np.ndarray] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for part in sorted(self.folder.glob("part-*.parquet")):
            table = pq.read_table(part)
            vectors = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32)
            vectors = vectors.reshape(table.num_rows, -1)
            if vectors.shape[1] != self.dim:
                continue
            for key, vector in zip(table.column("text_hash").to_pylist(), vectors):
                self._rows[key] = vector

    def __len__(self) -> int:
        self._load()
        return len(self._rows)

    def get(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        self._load()
        return [self._rows.get(key) for key in keys]

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        self._load()
        if not len(keys):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
        table = pa.table({
            "text_hash": pa.array(list(keys), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim),
        })
        # A part is either whole or absent, so an interrupted run keeps every part it finished.
        atomic_write(self.folder / f"part-{uuid.uuid4().hex}.parquet", lambda tmp: pq.write_table(table, tmp))
        for key, vector in zip(keys, vectors):
            self._rows[key] = vector


def embed_with_cache(
    encoder: Encoder,
    texts: Sequence[str],
    cache: EmbeddingCache,
    chunk: int = 256,
    progress: Callable[[int], None] | None = None,
    deadline: float | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors for `texts`, encoding only those the cache lacks; returns (vectors, how many were encoded).

    With a `deadline` (a `time.perf_counter()` reading) it encodes in the texts' order, in chunks of at most
    `DEADLINE_CHUNK`, and starts no chunk past it: the texts it did not reach keep zero vectors."""
    keys = [text_hash(t) for t in texts]
    cached = cache.get(keys)
    missing = [i for i, v in enumerate(cached) if v is None]
    if deadline is None:
        missing.sort(key=lambda i: len(texts[i]))  # similar lengths in a batch waste less padding
    else:
        chunk = min(chunk, DEADLINE_CHUNK)
    out = np.zeros((len(texts), cache.dim), dtype=np.float32)  # encoder.dim would load the model
    for i, vector in enumerate(cached):
        if vector is not None:
            out[i] = vector
    if progress is not None:
        progress(len(texts) - len(missing))
    encoded = 0
    for begin in range(0, len(missing), chunk):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        batch = missing[begin : begin + chunk]
        vectors = encoder.encode_passages([texts[i] for i in batch])
        cache.put([keys[i] for i in batch], vectors)
        out[batch] = vectors
        encoded += len(batch)
        if progress is not None:
            progress(len(batch))
    return out, encoded


def encode_queries_with_cache(encoder: Encoder, texts: Sequence[str], cache: EmbeddingCache) -> np.ndarray:
    """Query vectors through the same cache as passages, keyed apart (queries carry their own prefix):
    an evaluation that runs several methods over the same queries encodes them once."""

    class _AsPassages:
        model_id, dim, normalized = encoder.model_id, encoder.dim, encoder.normalized

        @staticmethod
        def encode_passages(batch):
            return encoder.encode_queries([t.removeprefix(QUERY_KEY) for t in batch])

    vectors, _ = embed_with_cache(_AsPassages(), [QUERY_KEY + t for t in texts], cache)
    return vectors


QUERY_KEY = "\x00query\x00"
