"""The Prefect build flow: stages as tasks, no work on unchanged input, atomic publish under kills and load."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, SAMPLE
from prefect.artifacts import Artifact

from flows.build import build_flow
from flows.retrain import retrain_flow
from flows.update import update_flow
from pipeline.config import DenseConfig
from pipeline.index.build import build_index
from pipeline.index.store import (
    Manifest,
    current_version,
    list_versions,
    publish,
    versions_dir,
)
from pipeline.searcher import Searcher


@pytest.fixture(scope="module")
def flow_index(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("flow-corpus") / "sample"
    shutil.copytree(SAMPLE, corpus)
    index = tmp_path_factory.mktemp("flow-index") / "index"
    version = build_flow([str(corpus)], str(index))
    return corpus, index, version


def test_the_flow_builds_and_publishes_a_version(flow_index):
    _, index, version = flow_index
    assert current_version(index) == version
    assert Searcher.open(index).search("倒排索引 原理", k=1).hits[0].doc_id == "zh-001"


def test_a_rerun_with_nothing_changed_does_no_work(flow_index):
    corpus, index, version = flow_index
    assert build_flow([str(corpus)], str(index)) == version
    assert list_versions(index) == [version]


def test_a_changed_corpus_builds_a_new_version_with_a_trained_ranker(flow_index):
    corpus, index, version = flow_index
    extra = corpus / "corpus.jsonl"
    extra.write_text(extra.read_text() + '{"_id": "new-1", "text": "a brand new document about zebras"}\n')
    new_version = build_flow([str(corpus)], str(index), judgments=str(SAMPLE))
    assert new_version != version and current_version(index) == new_version
    searcher = Searcher.open(index)
    assert searcher.search("zebras", k=1).hits[0].doc_id == "new-1"
    # With judgments, the flow trained and published a ranker for the new version before publishing it.
    assert searcher.has_ranker and searcher.search("向量检索", mode="ltr", k=3).hits


def served_copy_and_grown_corpus(tmp_path, sample_index, document: str):
    """(a copy of the sample index, the version it serves, a copy of the sample corpus with `document` added)."""
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus)
    with open(corpus / "corpus.jsonl", "a", encoding="utf-8") as handle:
        handle.write(document + "\n")
    return index, current_version(index), corpus


def test_the_update_flow_publishes_the_changes_and_reports_the_ann_update(tmp_path, sample_index):
    index, served, corpus = served_copy_and_grown_corpus(
        tmp_path, sample_index, '{"_id": "okapi", "text": "an update about okapis, written after the build"}')
    version = update_flow([str(corpus)], str(index), judgments=str(SAMPLE))
    assert current_version(index) == version != served
    assert Searcher.open(index).search("okapis", mode="dense", k=1).hits[0].doc_id == "okapi"
    report = {row["measure"]: row["value"] for row in json.loads(Artifact.get("sousuo-update").data)}
    assert report["documents added"] == 1 and report["ANN update"] == "in-place: +1 -0 passages"
    assert report["documents"] == 73 and report["quarantined"] == 0 and report["ANN recall@10"] == 1.0
    assert any(name.startswith("stage ") for name in report)
    evaluated = {row["mode"]: row for row in json.loads(Artifact.get("sousuo-evaluation").data)}
    assert {"bm25", "dense", "hybrid"} <= set(evaluated) and evaluated["bm25"]["ndcg@10"] > 0.9
    assert update_flow([str(corpus)], str(index)) == version  # nothing changed since


def test_an_update_after_the_dense_branch_is_switched_off_is_a_full_build(tmp_path, sample_index, monkeypatch):
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    monkeypatch.setenv("SOUSUO_DENSE__ENABLED", "false")
    manifest = Manifest.read(versions_dir(index) / update_flow([str(SAMPLE)], str(index)))
    assert manifest.changes is None and manifest.dense is None


def test_an_update_of_an_index_built_without_vectors_stays_lexical(tmp_path, settings):
    index = tmp_path / "index"
    build_index([SAMPLE], index, settings.model_copy(update={"dense": DenseConfig(enabled=False)}))
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus)
    with open(corpus / "corpus.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"_id": "okapi", "text": "an update about okapis, written after the build"}\n')
    manifest = Manifest.read(versions_dir(index) / update_flow([str(corpus)], str(index)))
    assert manifest.dense is None and manifest.changes["added"] == 1


def test_retraining_on_judgments_without_a_train_split_learns_from_their_only_split(tmp_path, sample_index):
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    model_id = retrain_flow(str(index), str(SAMPLE))  # data/sample has qrels/test.tsv only
    assert Searcher.open(index).ranker.card.model_id == model_id


def test_a_build_killed_at_a_random_moment_never_changes_what_is_served(tmp_path, sample_index):
    index, served, corpus = served_copy_and_grown_corpus(
        tmp_path, sample_index, '{"_id": "late", "text": "a document added after the served version"}')
    # An empty embedding cache of its own keeps the build embedding for many seconds after its staging folder
    # appears, so the kill below lands before the publish; with the session's warm cache it could finish first.
    env = {**os.environ, "SOUSUO_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "flows.cli", "build", "--corpus", str(corpus), "--index", str(index)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    # Kill somewhere between Prefect's start-up and the end of indexing.
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".staging") for p in versions_dir(index).iterdir()):
        time.sleep(0.05)
    time.sleep(random.uniform(0, 1.0))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert current_version(index) == served
    assert Searcher.open(index).search("向量检索", k=1).hits
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert current_version(index) == finished.stdout.strip().splitlines()[-1] != served


def test_queries_during_publishes_see_no_errors(tmp_path, sample_index, settings):
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    first = current_version(index)
    from pipeline.index.build import build_index

    second, _ = build_index([SAMPLE], index, settings.model_copy(update={"keep_versions": 10}))
    errors, answered = [], [0]
    stop = threading.Event()

    def query_loop():
        while not stop.is_set():
            try:
                assert Searcher.open(index, settings).search("inverted index", k=3).hits
                answered[0] += 1
            except Exception as error:  # any failure is the finding
                errors.append(repr(error))

    threads = [threading.Thread(target=query_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for i in range(40):
        publish(index, first if i % 2 else second.version)
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == [] and answered[0] > 0
