"""The index folder: immutable version folders, their manifests, and the atomically swapped `CURRENT` pointer."""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import AnalyzerConfig
from ..errors import (
    AnalyzerMismatch,
    IndexBusy,
    IndexDamaged,
    IndexNotFound,
    InputError,
)
from ..io import CURRENT_POINTER, atomic_write_text, read_pointer, write_pointer
from .forward import ForwardIndex, Vocabulary
from .postings import InvertedIndex

FORMAT_VERSION = 1
VERSIONS_DIR = "versions"
MANIFEST = "manifest.json"
LOCK_FILE = ".lock"
STAGING_PREFIX = ".staging-"
# A version is a name, never a path: no separators, no leading dot, nothing that could climb out of versions/.
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass
class Manifest:
    version: str
    created_at: str
    doc_count: int
    term_count: int
    avgdl: dict[str, float]
    analyzer: dict
    analyzer_fingerprint: str
    source_snapshot: str
    sources: list[str]
    quarantined: int
    duplicates: int = 0  # identical duplicate records dropped at ingest (a differing duplicate is quarantined)
    parent: str | None = None
    format: int = FORMAT_VERSION
    stages: dict[str, float] = field(default_factory=dict)
    dense: dict | None = None  # the DenseManifest when the version has a dense branch
    corpus_key: str = ""  # input files and configuration this version was built from (change detection)
    changes: dict | None = None  # for an incremental update: added / changed / deleted / unchanged counts
    # Every other file of the version: relative path → [bytes, blake2b]. Sizes are checked on every open,
    # checksums by `sousuo check`; versions written before this was recorded have none.
    files: dict[str, list] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        atomic_write_text(folder / MANIFEST, json.dumps(asdict(self), indent=2, ensure_ascii=False))

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.is_file():
            raise IndexNotFound(f"{folder} is not an index version: {MANIFEST} is missing")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError, AttributeError) as error:
            raise IndexDamaged(f"{path} is not a valid manifest ({error})") from None
        except RecursionError:
            raise IndexDamaged(f"{path} is not a valid manifest (JSON nested too deeply to read)") from None


def file_checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_inventory(folder: Path) -> dict[str, list]:
    """[bytes, checksum] of every file in a version folder but the manifest, by relative path."""
    return {
        str(path.relative_to(folder)): [path.stat().st_size, file_checksum(path)]
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def check_sizes(folder: Path, manifest: Manifest) -> None:
    """IndexDamaged naming the first file that is missing or whose size differs from the manifest's record."""
    for name, (size, _) in manifest.files.items():
        path = folder / name
        actual = path.stat().st_size if path.is_file() else None
        if actual != size:
            found = "is missing" if actual is None else f"has {actual:,} bytes, the manifest records {size:,}"
            raise IndexDamaged(f"{path} {found}: the version is damaged; publish another or rebuild")


def check_version(folder: Path) -> list[str]:
    """Every problem a full check finds in a version: sizes, checksums and ids out of range; empty when sound."""
    try:
        manifest = Manifest.read(folder)
    except (IndexDamaged, IndexNotFound) as error:
        return [str(error)]
    problems = []
    for name, (size, checksum) in manifest.files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{path} has {path.stat().st_size:,} bytes, the manifest records {size:,}")
        elif file_checksum(path) != checksum:
            problems.append(f"{path} does not match its checksum")
    if problems:
        return problems
    try:
        version = IndexVersion.load(folder, manifest)
    except IndexDamaged as error:
        return [str(error)]
    return version.out_of_range()


def versions_dir(index_dir: Path) -> Path:
    return Path(index_dir) / VERSIONS_DIR


def list_versions(index_dir: Path) -> list[str]:
    folder = versions_dir(index_dir)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())


def is_version_name(name: str) -> bool:
    return bool(_VERSION_NAME.fullmatch(name))


def require_index_dir(index_dir: Path) -> Path:
    """The index folder, or a one-line error when the path does not exist or is not a folder."""
    index_dir = Path(index_dir)
    if not index_dir.exists():
        raise IndexNotFound(f"no index at {index_dir}: the path does not exist")
    if not index_dir.is_dir():
        raise InputError(f"{index_dir} is a file, not an index folder")
    return index_dir


def current_version(index_dir: Path) -> str | None:
    """The published version's name; IndexDamaged when CURRENT names anything but a version."""
    pointer = Path(index_dir) / CURRENT_POINTER
    try:
        name = read_pointer(pointer)
    except UnicodeDecodeError:
        raise IndexDamaged(f"{pointer} is not UTF-8 text: publish a version again") from None
    if name is not None and not is_version_name(name):
        raise IndexDamaged(f"{pointer} names {name!r}, which is not a version name: publish a version again")
    return name


def version_dir(index_dir: Path, version: str) -> Path:
    """The folder of a version by name; InputError for anything that is not a plain name."""
    if not is_version_name(version):
        raise InputError(f"{version!r} is not a version name: versions are named like 20261203T094512123456-a1b2c3")
    return versions_dir(index_dir) / version


def publish(index_dir: Path, version: str) -> None:
    """Point CURRENT at `version`. The rename is atomic, so readers see the old or the new, never neither."""
    index_dir = require_index_dir(index_dir)
    if not (version_dir(index_dir, version) / MANIFEST).is_file():
        raise IndexNotFound(f"no complete version {version!r} in {index_dir}")
    write_pointer(index_dir / CURRENT_POINTER, version)


def resolve_version_dir(index_dir: Path, version: str | None = None) -> Path:
    """The folder of `version`, or of the published one. A bare version folder is accepted too.

    Search, SQL, the UI and the flows all open versions through here, so all read the same validated one."""
    index_dir = require_index_dir(index_dir)
    if (index_dir / MANIFEST).is_file():
        return index_dir
    version = version or current_version(index_dir)
    if version is None:
        raise IndexNotFound(f"no published index in {index_dir}: run `sousuo build --index {index_dir}` first")
    folder = version_dir(index_dir, version)
    if not folder.is_dir() or folder.is_symlink():
        raise IndexNotFound(f"index version {version!r} is missing from {index_dir}")
    return folder


_THREAD_LOCKS: dict[str, threading.Lock] = {}  # flock excludes other processes; these, other threads
_THREAD_LOCKS_GUARD = threading.Lock()


@contextmanager
def index_lock(index_dir: Path, timeout_s: float) -> Iterator[None]:
    """One build or update of an index at a time: wait up to `timeout_s` for the lock, else IndexBusy.

    An flock on INDEX/.lock, so a killed holder releases it with its last file descriptor."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    busy = IndexBusy(f"another build or update holds {index_dir / LOCK_FILE} (waited {timeout_s:g} s); "
                     "try again when it has finished")
    deadline = time.monotonic() + timeout_s
    with _THREAD_LOCKS_GUARD:
        in_process = _THREAD_LOCKS.setdefault(str(index_dir.resolve()), threading.Lock())
    if not in_process.acquire(timeout=timeout_s):
        raise busy
    try:
        with open(index_dir / LOCK_FILE, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise busy from None
                    time.sleep(0.2)
            try:
                remove_leftovers(index_dir)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        in_process.release()


def remove_leftovers(index_dir: Path) -> list[Path]:
    """Staging folders and temporary files that killed builds left; only safe while holding the index lock."""
    doomed = [p for p in versions_dir(index_dir).glob(f"{STAGING_PREFIX}*")] if versions_dir(index_dir).is_dir() else []
    doomed += [p for p in Path(index_dir).glob(".*.tmp")]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return doomed


def prune_versions(index_dir: Path, keep: int) -> list[str]:
    """Delete the oldest versions beyond `keep`, never the published one."""
    current = current_version(index_dir)
    versions = list_versions(index_dir)
    doomed = [v for v in versions[: max(0, len(versions) - keep)] if v != current]
    for version in doomed:
        shutil.rmtree(versions_dir(index_dir) / version, ignore_errors=True)
    return doomed


@dataclass
class IndexVersion:
    """Everything one version holds, opened read-only; arrays are memory-mapped."""

    path: Path
    manifest: Manifest
    documents: pa.Table
    vocabulary: Vocabulary
    forward: ForwardIndex
    inverted: InvertedIndex

    @classmethod
    def open(cls, index_dir: Path, analyzer: AnalyzerConfig | None = None, version: str | None = None) -> IndexVersion:
        """Open the published version (or `version`), refusing a damaged one or one of another analyzer."""
        folder = resolve_version_dir(index_dir, version)
        manifest = Manifest.read(folder)
        check_sizes(folder, manifest)
        if analyzer is not None and analyzer.fingerprint() != manifest.analyzer_fingerprint:
            built = AnalyzerConfig(**{"revision": 1, **manifest.analyzer})  # revision 1 was not recorded
            diff = {
                key: (value, getattr(analyzer, key))
                for key, value in built.model_dump().items()
                if getattr(analyzer, key) != value
            }
            changes = ", ".join(f"{k}: index={a!r} configured={b!r}" for k, (a, b) in diff.items())
            raise AnalyzerMismatch(
                f"index {folder} was built with a different analyzer ({changes}). "
                "Rebuild the index, or set the analyzer configuration back to the index's."
            )
        return cls.load(folder, manifest)

    @classmethod
    def load(cls, folder: Path, manifest: Manifest) -> IndexVersion:
        parts = {}
        for name, path, load in (
            ("documents", folder / "documents.parquet", lambda p: pq.read_table(p, memory_map=True)),
            ("vocabulary", folder / "inverted" / "vocabulary.parquet", Vocabulary.load),
            ("forward", folder / "forward", ForwardIndex.load),
            ("inverted", folder / "inverted", InvertedIndex.load),
        ):
            try:
                parts[name] = load(path)
            except (OSError, ValueError, EOFError, pa.ArrowException) as error:
                raise IndexDamaged(f"{path} cannot be read ({type(error).__name__}: {error}); rebuild the index") \
                    from None
        version = cls(path=folder, manifest=manifest, **parts)
        if version.documents.num_rows != manifest.doc_count or len(version.vocabulary) != manifest.term_count:
            raise IndexDamaged(f"{folder} holds {version.documents.num_rows} documents and {len(version.vocabulary)} "
                               f"terms, its manifest {manifest.doc_count} and {manifest.term_count}")
        return version

    def out_of_range(self) -> list[str]:
        """Arrays whose ids point outside the documents or the vocabulary (a full scan: `sousuo check`)."""
        n_docs, n_terms = self.manifest.doc_count, self.manifest.term_count
        problems = []
        for name, postings in self.inverted.fields.items():
            where = self.path / "inverted" / name
            if len(postings.docs) and int(postings.docs.max()) >= n_docs:
                problems.append(f"{where}.docs.npy holds document ids beyond the {n_docs} documents")
            if postings.term_indptr[-1] != len(postings.docs) or (postings.term_indptr[1:] < postings.term_indptr[:-1]).any():
                problems.append(f"{where}.term_indptr.npy does not index its postings")
        for name, forward in self.forward.fields.items():
            where = self.path / "forward" / name
            if len(forward.term_ids) and int(forward.term_ids.max()) >= n_terms:
                problems.append(f"{where}.term_ids.npy holds term ids beyond the {n_terms} terms")
            if len(forward.indptr) != n_docs + 1 or forward.indptr[-1] != len(forward.term_ids):
                problems.append(f"{where}.indptr.npy does not index its tokens")
        return problems

    @property
    def root(self) -> Path:
        """The index folder that holds this version (and the rankers and tuned fusion weights)."""
        return self.path.parent.parent if self.path.parent.name == VERSIONS_DIR else self.path

    @property
    def analyzer_config(self) -> AnalyzerConfig:
        return AnalyzerConfig(**{"revision": 1, **self.manifest.analyzer})
