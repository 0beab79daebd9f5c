"""Files that appear whole or not at all: atomic writes, pointer files, staged folders, and .npy arrays."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

# The file that names the published version (or ranker, or tuned weights) beside the folders it chooses from.
CURRENT_POINTER = "CURRENT"


def timestamped_id() -> str:
    """A name that sorts by creation time and does not collide: versions, rankers, tuned weights.

    Microseconds, because two builds can finish within one second and rollback picks the previous by name."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6]


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a hidden sibling, then rename it over `path`: readers see the old file or the new one.

    The temporary name starts with a dot and ends in `.tmp`, so globs for the real files never match it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(staging)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_pointer(path: Path, name: str) -> None:
    """Point a `CURRENT`-style file at `name`, atomically."""
    atomic_write_text(path, name + "\n")


def read_pointer(path: Path) -> str | None:
    """The name a pointer file holds, or None where there is none."""
    path = Path(path)
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


@contextmanager
def staged_folder(final: Path, staging: Path) -> Iterator[Path]:
    """Yield `staging` to fill; on success rename it to `final`, on any failure remove it."""
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
    staging.mkdir(parents=True)
    try:
        yield staging
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_arrays(owner, folder: Path, name: str, array_names: tuple[str, ...]) -> None:
    """Each named array of `owner` as `folder/name.ARRAY.npy`."""
    for array_name in array_names:
        np.save(folder / f"{name}.{array_name}.npy", getattr(owner, array_name))


def load_arrays(folder: Path, name: str, array_names: tuple[str, ...], mmap: bool = True) -> list[np.ndarray]:
    # Plain ndarray views of the maps: numpy.memmap's own slicing costs microseconds a call.
    mode = "r" if mmap else None
    return [np.load(folder / f"{name}.{a}.npy", mmap_mode=mode).view(np.ndarray) for a in array_names]


def csr_lists(indptr: np.ndarray, values: np.ndarray):
    """A CSR pair (row i owns values[indptr[i]:indptr[i + 1]]) as an Arrow list column, without copying rows."""
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array(np.asarray(indptr).astype(np.int32)), pa.array(values))


def run_gather_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices that lay runs `source[starts[i] : starts[i] + lengths[i]]` end to end, for one vectorised take."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)
