"""Build one index version in stages: ingest → analyze and index → embed and ANN → finalize → publish.

Each stage is a plain function over a staging folder, so the Prefect flows can run them as tasks and the
library can run them in a row.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..config import Settings
from ..errors import InputError
from ..ingest.ingest import IngestResult, ingest
from ..io import timestamped_id
from ..text.analysis import Analyzer
from .forward import ForwardField, ForwardIndex, Vocabulary
from .postings import InvertedIndex
from .store import (
    STAGING_PREFIX,
    Manifest,
    current_version,
    file_inventory,
    index_lock,
    prune_versions,
    publish,
    versions_dir,
)


def source_snapshot(documents: pa.Table) -> str:
    """A hash of every (doc_id, content hash) pair: equal snapshots mean equal corpora."""
    digest = hashlib.sha256()
    pairs = sorted(zip(documents.column("doc_id").to_pylist(), documents.column("content_hash").to_pylist()))
    for doc_id, content in pairs:
        digest.update(f"{doc_id}\x00{content}\n".encode())
    return digest.hexdigest()[:16]


def corpus_fingerprint(corpus_paths: Iterable[Path | str], settings: Settings) -> str:
    """Cheap change detection before reading anything: every input file's path, size and mtime, plus the
    configuration that shapes the index."""
    digest = hashlib.sha256()
    for path in sorted(Path(p).resolve() for p in corpus_paths):
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for file in files:
            stat = file.stat()
            digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    config = settings.model_dump(mode="json", include={"analyzer", "ingest", "dense"})
    digest.update(json.dumps(config, sort_keys=True).encode())
    return digest.hexdigest()[:16]


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)


@dataclass
class Staging:
    """A version being built: invisible to readers until `stage_finalize` renames it into place.

    Used as a context manager: a build that fails or is interrupted leaves no staging folder behind."""

    index_dir: Path
    version: str

    @classmethod
    def start(cls, index_dir: Path) -> Staging:
        staging = cls(Path(index_dir), timestamped_id())
        staging.folder.mkdir(parents=True)
        return staging

    @property
    def folder(self) -> Path:
        return versions_dir(self.index_dir) / f"{STAGING_PREFIX}{self.version}"

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def stage_ingest(corpus_paths: Iterable[Path | str], settings: Settings, show_progress: bool = False) -> IngestResult:
    with tqdm(desc="ingest", unit="rec", disable=not show_progress) as bar:
        return ingest([Path(p) for p in corpus_paths], settings.ingest, progress=bar)


# Key in documents.parquet's metadata: identical duplicate records dropped at ingest, for the build's report.
DUPLICATES_KEY = b"sousuo.identical_duplicates"


def stage_write_documents(ingested: IngestResult, folder: Path) -> None:
    """Stage the documents and the quarantine; a corpus with no valid document stops the build or update before
    it can publish an empty version over a good one (a wrong path or a broken export, far more often than intent)."""
    if ingested.documents.num_rows == 0:
        reasons = Counter(ingested.quarantine.column("reason").to_pylist()) if ingested.quarantine.num_rows else {}
        why = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        raise InputError(f"the corpus holds no valid document ({ingested.quarantine.num_rows} records quarantined"
                         f"{': ' + why if why else ''}): nothing is published, and the published version stays")
    folder.mkdir(parents=True, exist_ok=True)
    # Kept with the table so that a copy of the file (the flow's ingest cache) carries the count along.
    documents = ingested.documents.replace_schema_metadata(
        {**(ingested.documents.schema.metadata or {}), DUPLICATES_KEY: str(ingested.duplicates_dropped).encode()})
    pq.write_table(documents, folder / "documents.parquet")
    pq.write_table(ingested.quarantine, folder / "quarantine.parquet")


def shard_bounds(n_docs: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) document ranges, as even as possible."""
    edges = np.linspace(0, n_docs, max(1, shards) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def analyze_shard(folder: Path, start: int, stop: int, settings: Settings,
                  progress=None) -> tuple[list[str], ForwardIndex]:
    """Forward index of documents [start, stop) with a shard-local vocabulary: one unit of parallel work."""
    documents = pq.read_table(folder / "documents.parquet").slice(start, stop - start)
    vocabulary = Vocabulary()
    return vocabulary.terms, ForwardIndex.build(documents, Analyzer(settings.analyzer), vocabulary, progress)


def merge_shards(shards: list[tuple[list[str], ForwardIndex]]) -> tuple[Vocabulary, ForwardIndex]:
    """One forward index over consecutive shards. Merging vocabularies in shard order assigns the same term ids
    as a single pass over all documents would."""
    vocabulary = Vocabulary()
    remapped = []
    for terms, forward in shards:
        mapping = np.asarray(vocabulary.add_all(terms), dtype=np.int32)
        remapped.append({
            name: ForwardField(field.indptr, mapping[field.term_ids] if len(field.term_ids) else field.term_ids,
                               field.positions, field.starts, field.ends)
            for name, field in forward.fields.items()
        })
    fields = {}
    for name in remapped[0]:
        parts = [shard[name] for shard in remapped]
        lengths = np.concatenate([np.diff(p.indptr) for p in parts])
        fields[name] = ForwardField(
            np.r_[0, np.cumsum(lengths)].astype(np.int64),
            *(np.concatenate([getattr(p, key) for p in parts]) for key in ("term_ids", "positions", "starts", "ends")),
        )
    return vocabulary, ForwardIndex(fields)


def stage_index(folder: Path, settings: Settings, show_progress: bool = False,
                shards: list[tuple[list[str], ForwardIndex]] | None = None) -> dict:
    """Forward and inverted indexes of the staged documents (from pre-analyzed shards when given)."""
    documents = pq.read_table(folder / "documents.parquet", columns=["doc_id"])
    if shards is None:
        with tqdm(total=documents.num_rows, desc="analyze", unit="doc", disable=not show_progress) as bar:
            shards = [analyze_shard(folder, 0, documents.num_rows, settings, bar.update)]
    vocabulary, forward = merge_shards(shards)
    inverted = InvertedIndex.build(forward, len(vocabulary))
    forward.save(folder / "forward", documents.column("doc_id"))
    inverted.save(folder / "inverted", vocabulary)
    return {
        "doc_count": documents.num_rows,
        "term_count": len(vocabulary),
        "avgdl": {name: round(postings.avgdl, 6) for name, postings in inverted.fields.items()},
    }


def stage_encoder(folder: Path, settings: Settings) -> tuple[Settings, dict | None]:
    """Resolve `dense.encoder` for this build: `auto` by the time budget, `static` to the index's static model
    (distilled from the teacher now when the index has none). Returns the settings the embedding stages run with
    and the choice's record for the manifest."""
    if not settings.dense.enabled:
        return settings, None
    from ..dense.choice import prepare_encoder
    from ..dense.index import index_root_of

    documents = pq.read_table(folder / "documents.parquet", columns=["title", "body", "lang"])
    name, record = prepare_encoder(index_root_of(folder), documents, settings)
    return settings.model_copy(update={"dense": settings.dense.model_copy(update={"encoder": name})}), record


def stage_dense(folder: Path, settings: Settings, show_progress: bool = False, encoder=None,
                choice: dict | None = None) -> dict | None:
    if not settings.dense.enabled:
        return None
    from ..dense.index import build_dense

    documents = pq.read_table(folder / "documents.parquet")
    with tqdm(desc="embed", unit="passage", disable=not show_progress) as bar:
        return asdict(build_dense(documents, settings, folder, encoder=encoder, progress=bar.update, choice=choice))


def embed_shard(folder: Path, start: int, stop: int, settings: Settings) -> int:
    """Embed the passages of documents [start, stop) into the shared cache; returns how many were encoded.

    The dense stage that follows finds every vector cached and only builds the ANN index."""
    from ..dense.cache import EmbeddingCache, embed_with_cache
    from ..dense.encoders import passage_cache_id
    from ..dense.index import configured_encoder, split_documents

    if not settings.dense.enabled:
        return 0
    documents = pq.read_table(folder / "documents.parquet", columns=["title", "body", "lang"])
    encoder = configured_encoder(settings, documents)
    texts = [passage.text for passage in split_documents(documents, range(start, stop), settings)]
    cache = EmbeddingCache(settings.cache_dir, passage_cache_id(encoder), encoder.dim)
    _, encoded = embed_with_cache(encoder, texts, cache)
    return encoded


def stage_finalize(staging: Staging, settings: Settings, counts: dict, dense: dict | None, sources: list[str],
                   stages: dict[str, float], corpus_key: str = "", changes: dict | None = None) -> Manifest:
    """Write the manifest and move the version into place: it appears whole or not at all."""
    documents = pq.read_table(staging.folder / "documents.parquet", columns=["doc_id", "content_hash"])
    quarantined = pq.read_metadata(staging.folder / "quarantine.parquet").num_rows
    metadata = pq.read_schema(staging.folder / "documents.parquet").metadata or {}
    manifest = Manifest(
        version=staging.version,
        created_at=datetime.now(UTC).isoformat(),
        doc_count=counts["doc_count"],
        term_count=counts["term_count"],
        avgdl=counts["avgdl"],
        analyzer=settings.analyzer.model_dump(),
        analyzer_fingerprint=settings.analyzer.fingerprint(),
        source_snapshot=source_snapshot(documents),
        sources=sources,
        quarantined=quarantined,
        duplicates=int(metadata.get(DUPLICATES_KEY, b"0")),
        parent=current_version(staging.index_dir),
        stages=stages,
        dense=dense,
        corpus_key=corpus_key,
        changes=changes,
        files=file_inventory(staging.folder),
    )
    manifest.write(staging.folder)
    os.replace(staging.folder, versions_dir(staging.index_dir) / staging.version)
    return manifest


def write_version(
    ingested: IngestResult,
    index_dir: Path,
    settings: Settings,
    sources: list[str],
    show_progress: bool = False,
    timer: StageTimer | None = None,
    encoder=None,
    corpus_key: str = "",
) -> Manifest:
    """Index already-ingested documents into a new, complete version folder (not yet published)."""
    timer = timer or StageTimer()
    with Staging.start(Path(index_dir)) as staging:
        with timer.stage("write documents"):
            stage_write_documents(ingested, staging.folder)
        with timer.stage("analyze+index"):
            counts = stage_index(staging.folder, settings, show_progress)
        embedding, choice = settings, None
        if encoder is None:
            with timer.stage("encoder"):
                embedding, choice = stage_encoder(staging.folder, settings)
        with timer.stage("embed+ann"):
            dense = stage_dense(staging.folder, embedding, show_progress, encoder, choice)
        return stage_finalize(staging, settings, counts, dense, sources, timer.seconds, corpus_key)


def build_index(
    corpus_paths: Iterable[Path | str],
    index_dir: Path | str,
    settings: Settings | None = None,
    show_progress: bool = False,
    publish_version: bool = True,
    encoder=None,
) -> tuple[Manifest, IngestResult]:
    """Ingest, index and (by default) publish a new version; returns its manifest and the ingest result.

    `encoder` overrides the configured dense encoder (any object with the Encoder interface)."""
    settings = settings or Settings()
    corpus_paths = [Path(p) for p in corpus_paths]
    timer = StageTimer()
    with index_lock(Path(index_dir), settings.lock_timeout_s):
        with timer.stage("ingest"):
            ingested = stage_ingest(corpus_paths, settings, show_progress)
        manifest = write_version(ingested, Path(index_dir), settings, [str(p) for p in corpus_paths], show_progress,
                                 timer, encoder, corpus_fingerprint(corpus_paths, settings))
        if publish_version:
            publish(Path(index_dir), manifest.version)
            prune_versions(Path(index_dir), settings.keep_versions)
    return manifest, ingested
