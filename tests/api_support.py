"""Test helpers for `sousuo api`: a served copy of the sample index with a ranker, and a real server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from pipeline.config import Settings
from pipeline.eval.beir import BeirDataset
from pipeline.rank.training import train_from_judgments
from pipeline.searcher import Searcher
from pipeline.serving.api.app import create_app

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
INDEX_NAME = "sample"


def served_copy(sample_index: Path, settings: Settings, folder: Path) -> Path:
    """The sample index copied into `folder`, with a ranker trained on its judged queries and published."""
    index = folder / "index"
    shutil.copytree(sample_index, index)
    searcher = Searcher.open(index, settings)
    train_from_judgments(searcher.reader, BeirDataset.load(SAMPLE), searcher.fusion_weights, "test")
    return index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_settings(settings: Settings, index: Path, **api) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update={"index": index, "name": INDEX_NAME,
                                                                               "reload_interval_s": 0.1, **api})})


@contextlib.contextmanager
def running(settings: Settings, app=None):
    """uvicorn serving the API (by default over settings.api.index) in a background thread; yields the base URL."""
    port = free_port()
    app = app or create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, headers={"X-API-Key": settings.api_key.get_secret_value()} if settings.api_key else None)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_ready(url: str, timeout: float = 120, headers: dict | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2, headers=headers).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become ready in {timeout} s")
