"""Prefect flow: the incremental update (new, changed and deleted documents since the published version)."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task

from pipeline.config import Settings
from pipeline.index.build import corpus_fingerprint
from pipeline.index.incremental import (
    configuration_changes,
    full_build_reason,
    index_configuration,
    update_index,
)
from pipeline.index.store import Manifest, current_version, index_lock, versions_dir

from .build import (
    build_version,
    configured_judgments,
    evaluate_version,
    publish_task,
    report,
    transient,
)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
def update_task(corpus: list[str], index: str, settings: Settings) -> str:
    """A new, unpublished version with the changes applied; a failed try leaves nothing behind."""
    manifest, _ = update_index(corpus, index, settings, publish_version=False, caller_holds_lock=True)
    return manifest.version


def _change_rows(manifest: Manifest) -> list[dict]:
    rows = [{"measure": f"documents {kind}", "value": count} for kind, count in (manifest.changes or {}).items()]
    if manifest.dense:
        ann = manifest.dense.get("update") or {"mode": "built", "added": manifest.dense["passages"], "removed": 0}
        rows.append({"measure": "ANN update", "value": f"{ann['mode']}: +{ann['added']} -{ann['removed']} passages"})
    return rows


@flow(name="sousuo-update", log_prints=True)
def update_flow(corpus: list[str], index: str, judgments: str | None = None, reconfigure: bool = False) -> str:
    """Apply what changed since the published version, evaluate it when judgments are configured, publish.

    The update keeps the configuration the index was built with; `reconfigure` applies the current settings
    instead, which is a full build when they change the analyzer or the dense branch. The published ranker
    keeps serving: the update changes documents, not the features' definitions (the weekly retrain flow
    refreshes the model). A first run, with no version yet, is a full build."""
    settings = Settings()
    with index_lock(Path(index), settings.lock_timeout_s):
        return _update(corpus, index, settings, judgments, reconfigure)


def _update(corpus: list[str], index: str, settings: Settings, judgments: str | None, reconfigure: bool) -> str:
    logger = get_run_logger()
    index_dir = Path(index)
    current = current_version(index_dir)
    if current is None:
        return build_version(corpus, index, settings, judgments=judgments)
    published = Manifest.read(versions_dir(index_dir) / current)
    applied = index_configuration(published, settings, reconfigure)
    applied_changes = configuration_changes(published, applied)
    ignored = [c for c in configuration_changes(published, settings) if c not in applied_changes]
    if ignored:
        logger.info("keeping the configuration %s was built with, not the current defaults (%s); "
                    "`sousuo update --reconfigure` applies them", current, "; ".join(ignored))
    settings = applied
    if published.corpus_key == corpus_fingerprint(corpus, settings):
        logger.info("nothing changed since %s", current)
        return current
    reason = full_build_reason(published, settings)
    if reason:
        logger.warning("%s since %s (%s): running a full build", reason, current,
                       "; ".join(configuration_changes(published, settings)) or "as configured")
        return build_version(corpus, index, settings, judgments=judgments)
    version = update_task(corpus, index, settings)
    manifest = Manifest.read(versions_dir(index_dir) / version)
    judgments = configured_judgments(judgments, settings)
    if judgments:
        started = time.perf_counter()
        metrics = evaluate_version(str(versions_dir(index_dir) / version), judgments, settings)
        logger.info("evaluated in %.1f s: %s", time.perf_counter() - started, metrics)
    publish_task(index, version, settings.keep_versions)
    report(manifest, "sousuo-update", _change_rows(manifest))
    logger.info("updated to %s: %s", version, manifest.changes)
    return version
