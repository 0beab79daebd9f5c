"""Shared fixtures: offline environment, the sample corpus index, and the shared BEIR datasets."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "PREFECT_HOME": str(ROOT / ".prefect"),
    # Prefect logs "Stopping temporary server" at exit, after pytest has closed the streams it captured.
    "PREFECT_LOGGING_LEVEL": "WARNING",
}.items():
    os.environ.setdefault(key, value)

import pytest  # noqa: E402

from pipeline.config import Settings  # noqa: E402
from pipeline.index.build import build_index  # noqa: E402
from pipeline.searcher import Searcher  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
DATASETS = Settings().datasets_dir or ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    return Settings(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, settings) -> Path:
    index_dir = tmp_path_factory.mktemp("sample-index")
    build_index([SAMPLE], index_dir, settings)
    return index_dir


@pytest.fixture(scope="session")
def sample_searcher(sample_index, settings) -> Searcher:
    return Searcher.open(sample_index, settings)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.fail(f"the shared BEIR datasets are expected at {DATASETS} (or set SOUSUO_DATASETS_DIR)")
    return DATASETS


BIN = ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    port = free_port()
    subprocess.run([str(BIN / "prefect"), "server", "database", "upgrade", "-y"], env=env, check=True,
                   capture_output=True)
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if json.load(response) is True:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(server.pid, signal.SIGKILL)
        pytest.fail("the local Prefect server did not become healthy in 90 s")
    yield {**env, "PREFECT_API_URL": url}
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
