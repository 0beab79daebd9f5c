"""Prefect flow: the incremental update (new, changed and deleted documents since the published version)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from pipeline.build import corpus_fingerprint
from pipeline.config import Settings
from pipeline.incremental import update_index
from pipeline.index_store import Manifest, current_version, versions_dir

from .build import build_flow


@task(retries=2, retry_delay_seconds=5)
def update_task(corpus: list[str], index: str, settings: Settings) -> dict:
    manifest, changes = update_index(corpus, index, settings)
    result = {"version": manifest.version, **changes.to_json()}
    if manifest.dense:
        ann = manifest.dense.get("update") or {"mode": "built", "added": manifest.dense["passages"], "removed": 0}
        result["ANN update"] = f"{ann['mode']}: +{ann['added']} -{ann['removed']} passages"
        result["ANN recall@10"] = manifest.dense["recall_at_10"]
    return {**result, **{f"{k} (s)": v for k, v in manifest.stages.items()}}


@flow(name="sousuo-update", log_prints=True)
def update_flow(corpus: list[str], index: str) -> str:
    """Apply what changed since the published version; a first run, with no version yet, is a full build."""
    logger = get_run_logger()
    settings = Settings()
    current = current_version(Path(index))
    if current is None:
        return build_flow(corpus, index)
    if Manifest.read(versions_dir(Path(index)) / current).corpus_key == corpus_fingerprint(corpus, settings):
        logger.info("nothing changed since %s", current)
        return current
    result = update_task(corpus, index, settings)
    create_table_artifact([{"measure": k, "value": v} for k, v in result.items()], key="sousuo-update")
    logger.info("updated to %s: %s", result["version"], result)
    return result["version"]
