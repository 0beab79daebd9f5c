"""CLI flow commands share one local Prefect server: started once on demand, reused, stopped on request."""

import json
import os
import subprocess
import sys

import httpx
from conftest import ROOT, SAMPLE

from flows.prefect_server import STATE_FILE, healthy, shared_server_url, stop_shared_server
from pipeline.index.store import current_version


def sousuo(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_flow_commands_start_one_shared_server_reuse_it_and_stop_it(tmp_path, settings):
    home = tmp_path / "prefect-home"
    env = {**os.environ, "PREFECT_HOME": str(home), "SOUSUO_FLOWS__PREFECT_SERVER": "shared",
           "SOUSUO_CACHE_DIR": str(settings.cache_dir)}
    env.pop("PREFECT_API_URL", None)
    try:
        first = sousuo("build", "--corpus", str(SAMPLE), "--index", str(tmp_path / "index"), "--no-dense", env=env)
        assert first.returncode == 0, first.stderr
        url = shared_server_url(str(home))
        assert url and healthy(url) and current_version(tmp_path / "index")
        record = json.loads((home / STATE_FILE).read_text())
        second = sousuo("update", "--corpus", str(SAMPLE), "--index", str(tmp_path / "index"), env=env)
        assert second.returncode == 0, second.stderr
        assert json.loads((home / STATE_FILE).read_text()) == record
        runs = httpx.post(f"{url}/flow_runs/filter", json={}, timeout=30).json()
        flows = {f["id"]: f["name"] for f in httpx.post(f"{url}/flows/filter", json={}, timeout=30).json()}
        assert {"sousuo-build", "sousuo-update"} <= {flows[run["flow_id"]] for run in runs}  # both ran on it
        assert sousuo("prefect-server", "status", env=env).stdout.strip() == url
        assert sousuo("prefect-server", "stop", env=env).stdout.strip() == "stopped"
        assert not healthy(url, timeout=1) and sousuo("prefect-server", "status", env=env).returncode == 1
    finally:
        stop_shared_server(str(home))
