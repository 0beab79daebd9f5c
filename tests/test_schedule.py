"""`sousuo serve` against a real local Prefect server: the scheduled update fires and publishes a version."""

import os
import shutil
import signal
import subprocess
import sys
import time

from conftest import ROOT, SAMPLE

from pipeline.index.build import build_index
from pipeline.index.store import current_version


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
