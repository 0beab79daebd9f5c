"""Shared fixtures: offline environment, the sample corpus index, and the shared BEIR datasets."""

import os
import socket
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
    # CLI flow commands in tests use a temporary server each, so no test leaves a shared one running.
    "SOUSUO_FLOWS__PREFECT_SERVER": "temporary",
}.items():
    os.environ.setdefault(key, value)

import pytest  # noqa: E402

from pipeline.config import Settings  # noqa: E402
from pipeline.index.build import build_index  # noqa: E402
from pipeline.searcher import Searcher  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
DATASETS = Settings().datasets_dir or ROOT.parent / "shared" / "datasets"
# Read before `one_embedding_cache` points SOUSUO_CACHE_DIR at the session's empty cache.
LASTING_CACHE = Path(os.environ.get("SOUSUO_CACHE_DIR") or ROOT / "data" / "cache")


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    return Settings(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session", autouse=True)
def one_embedding_cache(settings):
    """Builds in this process and in the CLI subprocesses tests start embed through the session's one cache, so the
    sample is embedded once per session, not once per test that builds it (E5 takes most of a minute for it here).
    Tests of the cache itself pass a folder of their own."""
    before = os.environ.get("SOUSUO_CACHE_DIR")
    os.environ["SOUSUO_CACHE_DIR"] = str(settings.cache_dir)
    yield
    if before is None:
        os.environ.pop("SOUSUO_CACHE_DIR", None)
    else:
        os.environ["SOUSUO_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, settings) -> Path:
    index_dir = tmp_path_factory.mktemp("sample-index")
    build_index([SAMPLE], index_dir, settings)
    return index_dir


@pytest.fixture(scope="session")
def sample_searcher(sample_index, settings) -> Searcher:
    return Searcher.open(sample_index, settings)


@pytest.fixture(scope="session")
def corpus_settings() -> Settings:
    """Settings for the slow tests over the shared collections: they embed whole corpora (E5 takes a quarter of an
    hour for DRCD), so they use the lasting cache (SOUSUO_CACHE_DIR as set before the session, else data/cache)
    that `sousuo eval` fills, not the session's empty one."""
    return Settings(cache_dir=LASTING_CACHE)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.fail(f"the shared BEIR datasets are expected at {DATASETS} (or set SOUSUO_DATASETS_DIR)")
    return DATASETS




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    """A real local Prefect server (the shared-server helper, in a home of this test's own): the environment
    that points flows at it."""
    from flows.prefect_server import start_shared_server, stop_shared_server

    home = str(tmp_path / "prefect-home")
    url = start_shared_server(home)
    yield {**os.environ, "PREFECT_HOME": home, "PREFECT_API_URL": url}
    stop_shared_server(home)
