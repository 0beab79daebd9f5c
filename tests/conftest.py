"""Shared fixtures: offline environment, the sample corpus index, and the shared BEIR datasets."""

import os
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
}.items():
    os.environ.setdefault(key, value)

import pytest  # noqa: E402

from pipeline.build import build_index  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.search import Searcher  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
DATASETS = ROOT.parent / "shared" / "datasets"


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
        pytest.fail(f"the shared BEIR datasets are expected at {DATASETS}")
    return DATASETS
