"""Prefect flow: the full index build (ingest, analyze, embed, finalize, publish), trained and evaluated when judged."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline import schemas
from pipeline.config import Settings
from pipeline.constants import SEARCH_MODES
from pipeline.errors import SousuoError
from pipeline.index.build import (
    Staging,
    analyze_shard,
    corpus_fingerprint,
    embed_shard,
    shard_bounds,
    stage_dense,
    stage_encoder,
    stage_finalize,
    stage_index,
    stage_ingest,
    stage_write_documents,
)
from pipeline.index.store import (
    Manifest,
    current_version,
    index_lock,
    prune_versions,
    publish,
    versions_dir,
)
from pipeline.io import staged_folder

from .retrain import evaluate_task, judged_splits, train_task


def transient(_task, _task_run, state) -> bool:
    """Retry only what can pass on a second try (I/O and timeouts), never an error in the input itself."""
    error = state.data
    # A missing or forbidden file stays missing or forbidden: that is the input, not a passing fault.
    permanent = (SousuoError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
    return isinstance(error, (OSError, TimeoutError)) and not isinstance(error, permanent)


def cached_ingest(folder: Path) -> dict | None:
    """The counts of an ingest cached in `folder`, or None when its files are missing or unreadable.

    Checked on every hit: a cache folder that was cleared, moved or half-deleted is recomputed, never trusted."""
    try:
        documents = pq.read_metadata(folder / "documents.parquet")
        quarantine = pq.read_metadata(folder / "quarantine.parquet")
    except (OSError, pa.ArrowException):
        return None
    if not documents.schema.to_arrow_schema().equals(schemas.DOCUMENTS, check_metadata=False):
        return None
    return {"folder": str(folder), "documents": documents.num_rows, "quarantined": quarantine.num_rows}


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=transient)
def ingest_task(corpus: list[str], corpus_key: str, settings: Settings) -> dict:
    """Read and validate the corpus once per input fingerprint; the result lives in the cache folder."""
    folder = settings.cache_dir / "ingest" / corpus_key
    cached = cached_ingest(folder)
    if cached is not None:
        return cached
    ingested = stage_ingest(corpus, settings)
    shutil.rmtree(folder, ignore_errors=True)  # a damaged earlier copy
    with staged_folder(folder, folder.with_name(folder.name + ".partial")) as staging:
        stage_write_documents(ingested, staging)
    return cached_ingest(folder)


@task
def analyze_shard_task(staging_folder: str, start: int, stop: int, settings: Settings):
    return analyze_shard(Path(staging_folder), start, stop, settings)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
def embed_shard_task(staging_folder: str, start: int, stop: int, settings: Settings) -> int:
    return embed_shard(Path(staging_folder), start, stop, settings)


@task
def index_task(staging_folder: str, settings: Settings, shards=None) -> dict:
    return stage_index(Path(staging_folder), settings, shards=shards)


@task
def encoder_task(staging_folder: str, settings: Settings) -> tuple[Settings, dict | None]:
    """Choose the encoder (auto: by the time budget) and make the index's static model when it needs one."""
    resolved, choice = stage_encoder(Path(staging_folder), settings)
    if choice:
        get_run_logger().info("dense encoder %s: %s", resolved.dense.encoder, choice["reason"])
    return resolved, choice


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
def embed_task(staging_folder: str, settings: Settings, choice: dict | None = None) -> dict | None:
    """Embeddings go through the cache, so a retry re-embeds only what the failed try had not stored."""
    return stage_dense(Path(staging_folder), settings, choice=choice)


@task
def publish_task(index: str, version: str, keep: int) -> None:
    publish(Path(index), version)
    prune_versions(Path(index), keep)


def report(manifest: Manifest, key: str, extra: list[dict] | None = None) -> None:
    """The run's table artifact: counts, quarantine, ANN kind and recall, stage timings (and `extra` rows)."""
    dense = manifest.dense or {}
    rows = [
        {"measure": "documents", "value": manifest.doc_count},
        {"measure": "terms", "value": manifest.term_count},
        {"measure": "quarantined", "value": manifest.quarantined},
        {"measure": "identical duplicates dropped", "value": manifest.duplicates},
        {"measure": "passages", "value": dense.get("passages", 0)},
        {"measure": "dense encoder", "value": dense.get("model_id", "none")},
        {"measure": "encoder choice", "value": (dense.get("choice") or {}).get("reason", "n/a")},
        {"measure": "ANN kind", "value": dense.get("ann", {}).get("kind", "none")},
        {"measure": "ANN recall@10", "value": dense.get("recall_at_10", "n/a")},
        *(extra or []),
        *({"measure": f"stage {name} (s)", "value": seconds} for name, seconds in manifest.stages.items()),
    ]
    create_table_artifact(rows, key=key, description=f"index version {manifest.version}")
    create_markdown_artifact(
        f"# Index version `{manifest.version}`\n\n{manifest.doc_count:,} documents, {manifest.term_count:,} terms, "
        f"{manifest.quarantined} quarantined; sources: {', '.join(manifest.sources)}.",
        key=f"{key}-summary",
    )


def configured_judgments(judgments: str | None, settings: Settings) -> str | None:
    return judgments or (str(settings.schedule.judgments) if settings.schedule.judgments else None)


def evaluate_version(version_folder: str, judgments: str, settings: Settings) -> list[dict]:
    """Every search mode of a version on the judgments' test split, as the `sousuo-evaluation` artifact."""
    metrics = evaluate_task(version_folder, judgments, judged_splits(judgments)[1], list(SEARCH_MODES), settings)
    create_table_artifact(metrics, key="sousuo-evaluation", description=f"{Path(judgments).name}")
    return metrics


@flow(name="sousuo-build", log_prints=True)
def build_flow(corpus: list[str], index: str, publish_version: bool = True, shards: int = 1,
               judgments: str | None = None) -> str:
    """ingest → analyze and index → embed and ANN → finalize → publish. Returns the published version.

    With `shards` > 1, analysis and embedding run as one task per document shard, concurrently on the flow's
    task runner (threads by default, Dask workers with prefect-dask); the result is the same index.
    With `judgments` (a BEIR folder whose qrels name this corpus's documents; default: the configured
    schedule.judgments), the ranker is trained and every search mode evaluated before the version is published.
    A re-run over unchanged inputs and configuration does no work and returns the current version.
    """
    settings = Settings()
    with index_lock(Path(index), settings.lock_timeout_s):
        return build_version(corpus, index, settings, publish_version, shards, judgments)


def build_version(corpus: list[str], index: str, settings: Settings, publish_version: bool = True, shards: int = 1,
                  judgments: str | None = None) -> str:
    """The build flow's work, for a flow that already holds the index lock (an update that turns into a build)."""
    logger = get_run_logger()
    index_dir = Path(index)
    corpus_key = corpus_fingerprint(corpus, settings)
    current = current_version(index_dir)
    if current and Manifest.read(versions_dir(index_dir) / current).corpus_key == corpus_key:
        logger.info("inputs and configuration unchanged since %s: nothing to do", current)
        create_markdown_artifact(f"Nothing changed since version `{current}`.", key="sousuo-build-summary")
        return current

    stages: dict[str, float] = {}
    started = time.perf_counter()
    ingested = ingest_task(corpus, corpus_key, settings)
    stages["ingest"] = round(time.perf_counter() - started, 3)
    with Staging.start(index_dir) as staging:
        for name in ("documents.parquet", "quarantine.parquet"):
            (staging.folder / name).write_bytes((Path(ingested["folder"]) / name).read_bytes())
        folder = str(staging.folder)
        started = time.perf_counter()
        # The embedding stages get the resolved encoder; everything after the build keeps the configured one.
        embedding, choice = encoder_task(folder, settings)
        stages["encoder"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        bounds = shard_bounds(ingested["documents"], shards)
        analyzed = [analyze_shard_task.submit(folder, a, b, settings) for a, b in bounds] if shards > 1 else None
        embedded = [embed_shard_task.submit(folder, a, b, embedding) for a, b in bounds] if shards > 1 else []
        counts = index_task(folder, settings, [f.result() for f in analyzed] if analyzed else None)
        for future in embedded:
            future.result()
        stages["analyze+index"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        dense = embed_task(str(staging.folder), embedding, choice)
        stages["embed+ann"] = round(time.perf_counter() - started, 3)
        manifest = stage_finalize(staging, settings, counts, dense, [str(p) for p in corpus], stages, corpus_key)
    judgments = configured_judgments(judgments, settings)
    if judgments:
        started = time.perf_counter()
        folder = str(versions_dir(index_dir) / manifest.version)
        train_task(folder, judgments, settings.schedule.judgments_split or judged_splits(judgments)[0], settings)
        metrics = evaluate_version(folder, judgments, settings)
        logger.info("ranker trained and evaluated in %.1f s: %s", time.perf_counter() - started, metrics)
    if publish_version:
        publish_task(index, manifest.version, settings.keep_versions)
    report(manifest, "sousuo-build")
    logger.info("built version %s", manifest.version)
    return manifest.version
