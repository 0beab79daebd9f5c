"""Incremental updates: reuse the forward index and embeddings of unchanged documents, keep statistics exact.

A new version is written from the new corpus snapshot. Documents whose (doc_id, content hash) the published
version already holds keep their analyzed tokens (copied from its forward index, term ids stay valid because
the vocabulary only grows); only new and changed documents are analyzed. The previous postings, less those of
deleted and changed documents and renumbered, are merged in linear time with the new documents' postings, so
the arrays, and with them df, cf and avgdl, are exactly those a full analysis would give, and deleted documents
vanish instead of lingering as tombstones. The dense branch is updated in place
(`dense.update_dense`): the passages of deleted and changed documents leave the ANN index, those of new and
changed ones are embedded (through the cache) and added, and a merge rebuilds the index once too many removed
entries have piled up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..config import AnalyzerConfig, Settings
from ..dense.encoders import canonical_encoder_name
from ..dense.index import DenseIndex, update_dense
from ..dense.static import STATIC_PREFIX
from ..errors import IndexNotFound
from ..text.analysis import Analyzer
from .build import (
    StageTimer,
    Staging,
    corpus_fingerprint,
    stage_dense,
    stage_encoder,
    stage_finalize,
    stage_ingest,
    stage_write_documents,
)
from .forward import STORED_FIELDS, ForwardField, ForwardIndex
from .postings import InvertedIndex
from .store import (
    IndexVersion,
    Manifest,
    current_version,
    index_lock,
    prune_versions,
    publish,
)


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


def _reuse_forward(previous: IndexVersion, kept: np.ndarray, documents: pa.Table,
                   analyzer: Analyzer) -> tuple[ForwardIndex, ForwardIndex, np.ndarray]:
    """(forward index of `documents`, that of the new and changed ones alone, their ordinals): unchanged
    documents' tokens are copied from the previous version, only the rest are analyzed."""
    previous_ord = np.full(documents.num_rows, -1, dtype=np.int64)
    previous_ord[kept[kept >= 0]] = np.flatnonzero(kept >= 0)
    fresh_ords = np.flatnonzero(previous_ord < 0)
    fresh = ForwardIndex.build(documents.take(pa.array(fresh_ords)), analyzer, previous.vocabulary)
    forward = ForwardIndex({
        name: ForwardField.interleave(previous.forward.fields[name], previous_ord, fresh.fields[name])
        for name in STORED_FIELDS
    })
    return forward, fresh, fresh_ords


def encoder_differs(settings: Settings, model_id: str) -> bool:
    """`dense.encoder` names another model than `model_id`, the one a version was embedded with. `auto` names
    none, and `static` names whichever static model the index made (its ids are `static-TEACHER@ID`)."""
    configured = settings.dense.encoder
    if configured == "auto":
        return False
    if configured == "static":
        return not model_id.startswith(STATIC_PREFIX)
    return canonical_encoder_name(configured) != model_id


def full_build_reason(manifest: Manifest, settings: Settings) -> str | None:
    """Why the configuration rules out updating the version in `manifest` incrementally, or None.

    A changed analyzer or dense model leaves nothing to reuse, and the published ranker's features would no
    longer match: that takes a full build (which retrains the ranker where judgments are configured)."""
    if settings.analyzer.fingerprint() != manifest.analyzer_fingerprint:
        built_by = manifest.analyzer.get("revision", 1)
        if built_by != settings.analyzer.revision:
            return f"the analyzer's code changed (revision {built_by} → {settings.analyzer.revision})"
        return "the analyzer configuration changed"
    if settings.dense.enabled != bool(manifest.dense):
        return "the dense branch was switched " + ("on" if settings.dense.enabled else "off")
    if manifest.dense and encoder_differs(settings, manifest.dense["model_id"]):
        return "the dense encoder changed"
    return None


def built_configuration(manifest: Manifest) -> tuple[dict, dict]:
    """The analyzer settings, and whether the dense branch was on and its passage windows, of the version.

    The encoder is not among them: the manifest holds the model the setting resolved to, not the setting, and
    `auto` (the default) resolves again to the same teacher or the index's own static model (dense/index.py)."""
    # The revision is the analyzer's code, not configuration: it is never carried over (see full_build_reason).
    analyzer = {k: v for k, v in manifest.analyzer.items() if k in AnalyzerConfig.model_fields and k != "revision"}
    dense = {"enabled": bool(manifest.dense)}
    if manifest.dense:
        dense |= {"passage_window": manifest.dense["passage_window"],
                  "passage_overlap": manifest.dense["passage_overlap"]}
    return analyzer, dense


def index_configuration(manifest: Manifest, settings: Settings, reconfigure: bool = False) -> Settings:
    """The settings an update of the version in `manifest` runs with: the build configuration it was made with
    (analyzer, dense branch on or off, passage windows), except what was set on purpose — in
    `SOUSUO_*` variables or `sousuo.toml` — or, with `reconfigure`, all of the current settings.

    So a default that differs from the index's (a `--no-dense` build, then a plain update) never turns an update
    into hours of re-embedding."""
    if reconfigure:
        return settings
    analyzer, dense = built_configuration(manifest)
    analyzer |= {k: getattr(settings.analyzer, k) for k in settings.analyzer.model_fields_set if k != "revision"}
    dense = {k: v for k, v in dense.items() if k not in settings.dense.model_fields_set}
    return settings.model_copy(update={"analyzer": AnalyzerConfig(**analyzer),
                                       "dense": settings.dense.model_copy(update=dense)})


def configuration_changes(manifest: Manifest, settings: Settings) -> list[str]:
    """What `settings` would change in the version's build configuration, in words (empty: nothing)."""
    analyzer, dense = built_configuration(manifest)
    changes = [f"analyzer.{k} {v} → {getattr(settings.analyzer, k)}" for k, v in analyzer.items()
               if getattr(settings.analyzer, k) != v]
    if settings.dense.enabled != dense["enabled"]:
        return changes + ["the dense branch " + ("on" if settings.dense.enabled else "off")]
    if manifest.dense and encoder_differs(settings, manifest.dense["model_id"]):
        changes.append(f"dense.encoder {manifest.dense['model_id']} → {settings.dense.encoder}")
    for name in ("passage_window", "passage_overlap"):
        if manifest.dense and getattr(settings.dense, name) != dense[name]:
            changes.append(f"dense.{name} {dense[name]} → {getattr(settings.dense, name)}")
    return changes


def update_index(corpus_paths: list[Path | str], index_dir: Path | str, settings: Settings | None = None,
                 publish_version: bool = True, caller_holds_lock: bool = False) -> tuple[Manifest, ChangeSet]:
    """Bring the index up to date with the corpus as it is now, touching only what changed.

    Takes the index lock unless the caller (a flow that also trains and publishes) already holds it."""
    settings = settings or Settings()
    if caller_holds_lock:
        return _update(corpus_paths, Path(index_dir), settings, publish_version)
    with index_lock(Path(index_dir), settings.lock_timeout_s):
        return _update(corpus_paths, Path(index_dir), settings, publish_version)


def _update(corpus_paths: list[Path | str], index_dir: Path, settings: Settings,
            publish_version: bool) -> tuple[Manifest, ChangeSet]:
    if current_version(index_dir) is None:
        raise IndexNotFound(f"no published version in {index_dir} to update: run a full build first")
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
    with Staging.start(index_dir) as staging:
        with timer.stage("write documents"):
            stage_write_documents(ingested, staging.folder)
        kept = unchanged_map(previous.documents, documents)
        with timer.stage("analyze changed"):
            forward, fresh, fresh_ords = _reuse_forward(previous, kept, documents, Analyzer(settings.analyzer))
        with timer.stage("postings"):
            inverted = InvertedIndex.updated(previous.inverted, kept, forward, fresh, fresh_ords,
                                             len(previous.vocabulary))
            forward.save(staging.folder / "forward", documents.column("doc_id"))
            inverted.save(staging.folder / "inverted", previous.vocabulary)
        with timer.stage("embed changed+ann"):
            if settings.dense.enabled and DenseIndex.exists(previous.path):
                dense = asdict(update_dense(previous.path, kept, documents, settings, staging.folder))
            else:
                embedding, choice = stage_encoder(staging.folder, settings)
                dense = stage_dense(staging.folder, embedding, choice=choice)
        counts = {
            "doc_count": documents.num_rows,
            "term_count": len(previous.vocabulary),
            "avgdl": {name: round(postings.avgdl, 6) for name, postings in inverted.fields.items()},
        }
        manifest = stage_finalize(staging, settings, counts, dense, [str(p) for p in corpus_paths], timer.seconds,
                                  corpus_fingerprint(corpus_paths, settings), changes.to_json())
    if publish_version:
        publish(index_dir, manifest.version)
        prune_versions(index_dir, settings.keep_versions)
    return manifest, changes

