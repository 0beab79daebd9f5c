"""Build one index version from corpus paths: ingest → analyze → forward index → inverted index → manifest."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import asdict
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from tqdm import tqdm

from .analysis import Analyzer
from .config import Settings
from .forward_index import ForwardIndex, Vocabulary
from .index_store import Manifest, current_version, new_version_id, prune_versions, publish, versions_dir
from .ingest import IngestResult, ingest
from .inverted_index import InvertedIndex


def source_snapshot(documents) -> str:
    """A hash of every (doc_id, content hash) pair: equal snapshots mean equal corpora."""
    digest = hashlib.sha256()
    pairs = sorted(zip(documents.column("doc_id").to_pylist(), documents.column("content_hash").to_pylist()))
    for doc_id, content in pairs:
        digest.update(f"{doc_id}\x00{content}\n".encode())
    return digest.hexdigest()[:16]


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)


def write_version(
    ingested: IngestResult,
    index_dir: Path,
    settings: Settings,
    sources: list[str],
    show_progress: bool = False,
    timer: StageTimer | None = None,
    encoder=None,
) -> Manifest:
    """Analyze and index already-ingested documents into a new, complete version folder (not yet published)."""
    timer = timer or StageTimer()
    index_dir = Path(index_dir)
    version = new_version_id()
    staging = versions_dir(index_dir) / f".staging-{version}"
    staging.mkdir(parents=True)
    try:
        documents = ingested.documents
        analyzer = Analyzer(settings.analyzer)
        vocabulary = Vocabulary()
        with timer.stage("analyze"), tqdm(
            total=documents.num_rows, desc="analyze", unit="doc", disable=not show_progress
        ) as bar:
            forward = ForwardIndex.build(documents, analyzer, vocabulary, progress=bar.update)
        with timer.stage("invert"):
            inverted = InvertedIndex.build(forward, len(vocabulary))
        dense = None
        if settings.dense.enabled:
            from .dense import build_dense

            with timer.stage("embed+ann"), tqdm(
                total=None, desc="embed", unit="passage", disable=not show_progress
            ) as bar:
                dense = build_dense(documents, settings, staging, encoder=encoder, progress=bar.update)
        with timer.stage("write"):
            pq.write_table(documents, staging / "documents.parquet")
            pq.write_table(ingested.quarantine, staging / "quarantine.parquet")
            forward.save(staging / "forward", documents.column("doc_id"))
            inverted.save(staging / "inverted", vocabulary)
        manifest = Manifest(
            version=version,
            created_at=datetime.now(UTC).isoformat(),
            doc_count=documents.num_rows,
            term_count=len(vocabulary),
            avgdl={name: round(postings.avgdl, 6) for name, postings in inverted.fields.items()},
            analyzer=settings.analyzer.model_dump(),
            analyzer_fingerprint=settings.analyzer.fingerprint(),
            source_snapshot=source_snapshot(documents),
            sources=sources,
            quarantined=ingested.quarantine.num_rows,
            parent=current_version(index_dir),
            stages=timer.seconds,
            dense=asdict(dense) if dense else None,
        )
        manifest.write(staging)
        # The version appears under its final name only once complete.
        os.replace(staging, versions_dir(index_dir) / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


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
    with timer.stage("ingest"), tqdm(desc="ingest", unit="rec", disable=not show_progress) as bar:
        ingested = ingest(corpus_paths, settings.ingest, progress=bar)
    manifest = write_version(ingested, Path(index_dir), settings, [str(p) for p in corpus_paths], show_progress, timer,
                             encoder)
    if publish_version:
        publish(Path(index_dir), manifest.version)
        prune_versions(Path(index_dir), settings.keep_versions)
    return manifest, ingested
