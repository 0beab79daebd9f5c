"""`sousuo serve` against a real local Prefect server: the scheduled update fires and publishes a version."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from pipeline.build import build_index
from pipeline.index_store import current_version

from conftest import ROOT, SAMPLE

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


def test_a_served_update_schedule_publishes_the_changed_corpus(tmp_path, prefect_server, settings):
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus)
    index = tmp_path / "index"
    first, _ = build_index([corpus], index, settings)
    with open(corpus / "corpus.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"_id": "scheduled", "text": "written before the scheduled update ran"}\n')
    env = {**prefect_server, "SOUSUO_CACHE_DIR": str(settings.cache_dir)}
    serving = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--corpus", str(corpus), "--index", str(index), "--interval", "5"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and current_version(index) == first.version:
            assert serving.poll() is None, "sousuo serve exited early"
            time.sleep(1)
        assert current_version(index) != first.version
    finally:
        # Prefect's runner ignores the first SIGTERM while it winds down runs; a second one ends it.
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
            if serving.poll() is not None:
                break
            os.killpg(serving.pid, sig)
            try:
                serving.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
