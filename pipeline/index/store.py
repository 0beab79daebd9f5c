"""The index folder: immutable version folders, their manifests, and the atomically swapped `CURRENT` pointer."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import AnalyzerConfig
from ..errors import AnalyzerMismatch, IndexNotFound
from ..io import CURRENT_POINTER, atomic_write_text, read_pointer, write_pointer
from .forward import ForwardIndex, Vocabulary
from .postings import InvertedIndex

FORMAT_VERSION = 1
VERSIONS_DIR = "versions"


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
    parent: str | None = None
    format: int = FORMAT_VERSION
    stages: dict[str, float] = field(default_factory=dict)
    dense: dict | None = None  # the DenseManifest when the version has a dense branch
    corpus_key: str = ""  # input files and configuration this version was built from (change detection)
    changes: dict | None = None  # for an incremental update: added / changed / deleted / unchanged counts

    def write(self, folder: Path) -> None:
        atomic_write_text(folder / "manifest.json", json.dumps(asdict(self), indent=2, ensure_ascii=False))

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / "manifest.json"
        if not path.is_file():
            raise IndexNotFound(f"{folder} is not an index version: manifest.json is missing")
        return cls(**json.loads(path.read_text()))


def versions_dir(index_dir: Path) -> Path:
    return Path(index_dir) / VERSIONS_DIR


def list_versions(index_dir: Path) -> list[str]:
    folder = versions_dir(index_dir)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())


def current_version(index_dir: Path) -> str | None:
    return read_pointer(Path(index_dir) / CURRENT_POINTER)


def publish(index_dir: Path, version: str) -> None:
    """Point CURRENT at `version`. The rename is atomic, so readers see the old or the new, never neither."""
    index_dir = Path(index_dir)
    if not (versions_dir(index_dir) / version / "manifest.json").is_file():
        raise IndexNotFound(f"no complete version {version!r} in {index_dir}")
    write_pointer(index_dir / CURRENT_POINTER, version)


def resolve_version_dir(index_dir: Path, version: str | None = None) -> Path:
    """The folder of `version`, or of the published one. A bare version folder is accepted too."""
    index_dir = Path(index_dir)
    if (index_dir / "manifest.json").is_file():
        return index_dir
    version = version or current_version(index_dir)
    if version is None:
        raise IndexNotFound(f"no published index in {index_dir}: run `sousuo build --index {index_dir}` first")
    folder = versions_dir(index_dir) / version
    if not folder.is_dir():
        raise IndexNotFound(f"index version {version!r} is missing from {index_dir}")
    return folder


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
        folder = resolve_version_dir(index_dir, version)
        manifest = Manifest.read(folder)
        if analyzer is not None and analyzer.fingerprint() != manifest.analyzer_fingerprint:
            built = AnalyzerConfig(**manifest.analyzer)
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
        return cls(
            path=folder,
            manifest=manifest,
            documents=pq.read_table(folder / "documents.parquet", memory_map=True),
            vocabulary=Vocabulary.load(folder / "inverted" / "vocabulary.parquet"),
            forward=ForwardIndex.load(folder / "forward"),
            inverted=InvertedIndex.load(folder / "inverted"),
        )

    @property
    def root(self) -> Path:
        """The index folder that holds this version (and the rankers and tuned fusion weights)."""
        return self.path.parent.parent if self.path.parent.name == VERSIONS_DIR else self.path

    @property
    def analyzer_config(self) -> AnalyzerConfig:
        return AnalyzerConfig(**self.manifest.analyzer)
