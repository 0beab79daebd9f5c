"""Incremental updates: reuse the forward index and embeddings of unchanged documents, keep statistics exact.

A new version is written from the new corpus snapshot. Documents whose (doc_id, content hash) the published
version already holds keep their analyzed tokens (copied from its forward index, term ids stay valid because
the vocabulary only grows); only new and changed documents are analyzed. The postings are then regenerated
from the forward index with one vectorised sort, so df, cf and avgdl are exactly those of a full rebuild, and
deleted documents simply vanish instead of lingering as tombstones. The dense branch is updated in place
(`dense.update_dense`): the passages of deleted and changed documents leave the ANN index, those of new and
changed ones are embedded (through the cache) and added, and a merge rebuilds the index once too many removed
entries have piled up.
"""

from __future__ import annotations

from array import array
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .analysis import Analyzer
from .build import StageTimer, Staging, corpus_fingerprint, stage_dense, stage_finalize, stage_ingest
from .build import stage_write_documents
from .config import Settings
from .dense import DenseIndex, update_dense
from .forward_index import STORED_FIELDS, ForwardField, ForwardIndex
from .index_store import IndexVersion, Manifest, current_version, prune_versions, publish
from .inverted_index import InvertedIndex


@dataclass
class ChangeSet:
    added: list[str]
    changed: list[str]
    deleted: list[str]
    unchanged: int

    def to_json(self) -> dict:
        return {"added": len(self.added), "changed": len(self.changed), "deleted": len(self.deleted),
                "unchanged": self.unchanged}


def diff(previous: dict[str, str], current: dict[str, str]) -> ChangeSet:
    """Compare doc_id → content hash maps."""
    added = [d for d in current if d not in previous]
    changed = [d for d in current if d in previous and previous[d] != current[d]]
    deleted = [d for d in previous if d not in current]
    return ChangeSet(added, changed, deleted, len(current) - len(added) - len(changed))


def unchanged_map(previous: pa.Table, documents: pa.Table) -> np.ndarray:
    """For each previous document, its ordinal in `documents` when it is there unchanged, else -1."""
    position = {doc_id: i for i, doc_id in enumerate(documents.column("doc_id").to_pylist())}
    hashes = documents.column("content_hash").to_pylist()
    kept = np.full(previous.num_rows, -1, dtype=np.int64)
    for j, (doc_id, digest) in enumerate(zip(previous.column("doc_id").to_pylist(),
                                             previous.column("content_hash").to_pylist())):
        i = position.get(doc_id)
        if i is not None and hashes[i] == digest:
            kept[j] = i
    return kept


def _reuse_forward(previous: IndexVersion, kept: np.ndarray, documents: pa.Table, analyzer: Analyzer) -> ForwardIndex:
    """Forward index of `documents`: copied slices for unchanged docs, fresh analysis for the rest."""
    previous_ord = np.full(documents.num_rows, -1, dtype=np.int64)
    previous_ord[kept[kept >= 0]] = np.flatnonzero(kept >= 0)
    vocabulary = previous.vocabulary
    texts = {name: documents.column(name).to_pylist() for name in STORED_FIELDS}
    fields = {}
    for name in STORED_FIELDS:
        old = previous.forward.fields[name]
        parts: dict[str, list] = {"term_ids": [], "positions": [], "starts": [], "ends": []}
        lengths = array("q")
        for i, j in enumerate(previous_ord.tolist()):
            if j >= 0:
                window = old.doc_slice(j)
                for key in parts:
                    parts[key].append(getattr(old, key)[window])
                lengths.append(window.stop - window.start)
                continue
            analyzed = analyzer.analyze(texts[name][i] or "")
            parts["term_ids"].append(np.asarray(vocabulary.add_all(analyzed.terms), dtype=np.int32))
            for key in ("positions", "starts", "ends"):
                parts[key].append(np.asarray(getattr(analyzed, key), dtype=np.int32))
            lengths.append(len(analyzed))
        indptr = np.r_[0, np.cumsum(np.frombuffer(lengths, dtype=np.int64))].astype(np.int64)
        fields[name] = ForwardField(
            indptr, *(np.concatenate(parts[key]) if parts[key] else np.zeros(0, np.int32) for key in parts)
        )
    return ForwardIndex(fields)


def update_index(corpus_paths: list[Path | str], index_dir: Path | str, settings: Settings | None = None,
                 publish_version: bool = True) -> tuple[Manifest, ChangeSet]:
    """Bring the index up to date with the corpus as it is now, touching only what changed."""
    settings = settings or Settings()
    index_dir = Path(index_dir)
    if current_version(index_dir) is None:
        raise FileNotFoundError(f"no published version in {index_dir} to update: run a full build first")
    previous = IndexVersion.open(index_dir, settings.analyzer)
    timer = StageTimer()
    with timer.stage("ingest"):
        ingested = stage_ingest(corpus_paths, settings)
    documents = ingested.documents
    changes = diff(
        dict(zip(previous.documents.column("doc_id").to_pylist(),
                 previous.documents.column("content_hash").to_pylist())),
        dict(zip(documents.column("doc_id").to_pylist(), documents.column("content_hash").to_pylist())),
    )
    staging = Staging.start(index_dir)
    try:
        with timer.stage("write documents"):
            stage_write_documents(ingested, staging.folder)
        kept = unchanged_map(previous.documents, documents)
        with timer.stage("analyze changed"):
            forward = _reuse_forward(previous, kept, documents, Analyzer(settings.analyzer))
        with timer.stage("postings"):
            inverted = InvertedIndex.build(forward, len(previous.vocabulary))
            forward.save(staging.folder / "forward", documents.column("doc_id"))
            inverted.save(staging.folder / "inverted", previous.vocabulary)
        with timer.stage("embed changed+ann"):
            if settings.dense.enabled and DenseIndex.exists(previous.path):
                dense = asdict(update_dense(previous.path, kept, documents, settings, staging.folder))
            else:
                dense = stage_dense(staging.folder, settings)
        counts = {
            "doc_count": documents.num_rows,
            "term_count": len(previous.vocabulary),
            "avgdl": {name: round(postings.avgdl, 6) for name, postings in inverted.fields.items()},
        }
        manifest = stage_finalize(staging, settings, counts, dense, [str(p) for p in corpus_paths], timer.seconds,
                                  corpus_fingerprint(corpus_paths, settings), changes.to_json())
    except BaseException:
        staging.abandon()
        raise
    if publish_version:
        publish(index_dir, manifest.version)
        prune_versions(index_dir, settings.keep_versions)
    return manifest, changes

