"""Damaged and hostile index folders: each kind of damage is detected and named, never served; one build at a time."""

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE

from pipeline.config import DenseConfig, Settings
from pipeline.errors import IndexBusy, IndexDamaged, IndexNotFound, InputError
from pipeline.index.build import build_index
from pipeline.index.store import (
    STAGING_PREFIX,
    IndexVersion,
    check_version,
    current_version,
    index_lock,
    publish,
    resolve_version_dir,
    versions_dir,
)
from pipeline.io import CURRENT_POINTER
from pipeline.searcher import Searcher
from pipeline.serving.sql import SqlSession


@pytest.fixture(scope="module")
def lexical(tmp_path_factory) -> tuple[Settings, Path]:
    """A lexical index of the sample, built once; tests damage copies of it."""
    root = tmp_path_factory.mktemp("lexical")
    settings = Settings(cache_dir=root / "cache", dense=DenseConfig(enabled=False))
    build_index([SAMPLE], root / "index", settings)
    return settings, root / "index"


@pytest.fixture
def index(lexical, tmp_path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(lexical[1], copy)
    return copy


def published(index: Path) -> Path:
    return versions_dir(index) / current_version(index)


def test_a_sound_version_passes_the_full_check(index):
    assert check_version(published(index)) == []


def truncate(path: Path, by: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:-by])


def drop_manifest_key(version: Path) -> None:
    data = json.loads((version / "manifest.json").read_text())
    del data["doc_count"]
    (version / "manifest.json").write_text(json.dumps(data))


# (kind of damage, how to do it to the published version folder, the error opening it must raise)
DAMAGES = [
    ("truncated postings pointer array", lambda v: truncate(v / "inverted" / "text.term_indptr.npy"),
     "text.term_indptr.npy has .* bytes, the manifest records"),
    ("zero-byte array", lambda v: (v / "forward" / "body.positions.npy").write_bytes(b""),
     "body.positions.npy has 0 bytes"),
    ("missing documents table", lambda v: (v / "documents.parquet").unlink(), "documents.parquet is missing"),
    ("truncated Parquet", lambda v: truncate(v / "inverted" / "vocabulary.parquet", 100), "vocabulary.parquet has"),
    ("manifest with missing keys", drop_manifest_key, "manifest.json is not a valid manifest"),
    ("manifest that is not JSON", lambda v: (v / "manifest.json").write_text("{not json"),
     "manifest.json is not a valid manifest"),
    ("CURRENT naming a path outside versions/", lambda v: (v.parent.parent / CURRENT_POINTER).write_text("../../x\n"),
     "is not a version name"),
    ("CURRENT that is not text", lambda v: (v.parent.parent / CURRENT_POINTER).write_bytes(b"\xff\xfe\x00"),
     "CURRENT is not UTF-8 text"),
    ("manifest nested too deeply to read", lambda v: (v / "manifest.json").write_text("[" * 100_000 + "]" * 100_000),
     "manifest.json is not a valid manifest"),
]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_each_kind_of_damage_is_refused_on_open_with_the_file_named(index, lexical, damage):
    _, do, message = damage
    do(published(index))
    with pytest.raises(IndexDamaged, match=message) as refused:
        Searcher.open(index, lexical[0])
    assert "\n" not in str(refused.value)


def test_out_of_range_ids_of_the_same_size_are_found_by_the_full_check(index):
    path = published(index) / "inverted" / "title.docs.npy"
    docs = np.load(path)
    docs[0] = 10_000_000
    np.save(path, docs)  # same size: only the checksum and the range check can tell
    problems = check_version(published(index))
    assert any("title.docs.npy does not match its checksum" in p for p in problems)


def test_the_range_check_names_an_array_with_ids_beyond_the_corpus(index):
    version = IndexVersion.open(index)
    version.inverted.fields["body"].docs = np.append(version.inverted.fields["body"].docs[:-1], 999_999)
    assert any("body.docs.npy holds document ids beyond" in p for p in version.out_of_range())


def test_a_version_is_a_name_not_a_path(index, lexical, tmp_path):
    other = tmp_path / "other"
    build_index([SAMPLE], other, lexical[0])
    escape = f"../../other/versions/{current_version(other)}"
    with pytest.raises(InputError, match="is not a version name"):
        publish(index, escape)
    with pytest.raises(InputError, match="is not a version name"):
        resolve_version_dir(index, escape)


def test_sql_reads_the_same_validated_version_as_search(index, lexical):
    (index / CURRENT_POINTER).write_text("../../fake\n")
    with pytest.raises(IndexDamaged, match="is not a version name"):
        SqlSession(index, lexical[0].cache_dir)


def test_a_symlinked_version_folder_is_not_served(index, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(published(index), outside)
    (versions_dir(index) / "20990101T000000-linked").symlink_to(outside)
    with pytest.raises(IndexNotFound, match="is missing"):
        resolve_version_dir(index, "20990101T000000-linked")


def test_paths_that_are_not_index_folders_are_one_line_errors(tmp_path):
    with pytest.raises(IndexNotFound, match="the path does not exist"):
        resolve_version_dir(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file, not an index folder"):
        resolve_version_dir(tmp_path / "file")


def test_a_second_build_waits_for_the_first_then_gives_up(index):
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with index_lock(index, timeout_s=5):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(5)
    started = time.monotonic()
    try:
        with pytest.raises(IndexBusy, match="another build or update holds"):
            _lock_from_another_process(index, timeout_s=0.5)
        with pytest.raises(IndexBusy):
            with index_lock(index, timeout_s=0.2):  # another thread of this process
                pass
        assert time.monotonic() - started >= 0.7
    finally:
        release.set()
        holder.join()


def _lock_from_another_process(index: Path, timeout_s: float) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_try_lock, args=(index, timeout_s, queue))
    process.start()
    process.join(30)
    outcome = queue.get(timeout=5)
    if outcome != "locked":
        raise IndexBusy(outcome)


def _try_lock(index: Path, timeout_s: float, queue) -> None:
    try:
        with index_lock(index, timeout_s):
            queue.put("locked")
    except IndexBusy as error:
        queue.put(str(error))


def test_concurrent_builds_publish_one_after_the_other(index, lexical):
    settings = lexical[0]
    results = []

    def build() -> None:
        results.append(build_index([SAMPLE], index, settings)[0].version)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = results  # in the order they finished
    manifest = json.loads((versions_dir(index) / second / "manifest.json").read_text())
    # Serialised: the later build saw the earlier one published (its parent), and it is the one served.
    assert manifest["parent"] == first and current_version(index) == second and first < second


def test_leftovers_of_killed_builds_are_removed_by_the_next_build(index, lexical):
    staging = versions_dir(index) / f"{STAGING_PREFIX}20260101T000000-dead01"
    staging.mkdir()
    (staging / "documents.parquet").write_bytes(b"half")
    pointer_tmp = index / ".CURRENT.0123.tmp"
    pointer_tmp.write_text("x")
    build_index([SAMPLE], index, lexical[0])
    assert not staging.exists() and not pointer_tmp.exists()


def test_a_damaged_ingest_cache_is_recomputed_not_trusted(tmp_path):
    from flows.build import cached_ingest, ingest_task

    settings = Settings(cache_dir=tmp_path / "cache", dense=DenseConfig(enabled=False))
    first = ingest_task.fn([str(SAMPLE)], "sample-key", settings)
    documents = Path(first["folder"]) / "documents.parquet"
    documents.write_bytes(documents.read_bytes()[:100])
    assert cached_ingest(Path(first["folder"])) is None
    assert ingest_task.fn([str(SAMPLE)], "sample-key", settings) == first
    shutil.rmtree(tmp_path / "cache")  # the cache folder cleared between two runs
    assert ingest_task.fn([str(SAMPLE)], "sample-key", settings) == first


def test_an_orphaned_temporary_prefect_server_of_this_home_is_stopped(tmp_path):
    import os
    import subprocess
    import sys

    from flows.prefect_server import SERVER_APP, orphaned_servers, reap_orphaned_servers

    home = str(tmp_path / "prefect-home")
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT__SERVER_EPHEMERAL": "1"}
    # A parent that starts a stand-in server and dies at once, as a CLI run killed with SIGKILL would.
    launcher = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
                f"'{SERVER_APP.decode()}'], start_new_session=True)")
    subprocess.run([sys.executable, "-c", launcher], env=env, check=True)
    deadline = time.monotonic() + 10
    while not (orphans := orphaned_servers(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(orphans) == 1 and orphaned_servers(str(tmp_path / "another-home")) == []
    assert reap_orphaned_servers(home) == orphans
    deadline = time.monotonic() + 10
    while orphaned_servers(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert orphaned_servers(home) == []


@pytest.mark.parametrize("damage", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_sql_refuses_each_kind_of_damage_search_refuses(index, lexical, damage):
    _, do, message = damage
    do(published(index))
    with pytest.raises(IndexDamaged, match=message) as refused:
        SqlSession(index, lexical[0].cache_dir)
    assert "\n" not in str(refused.value)


def test_a_parquet_file_of_the_right_size_that_duckdb_cannot_read_is_index_damaged_in_sql(index, lexical):
    table = published(index) / "documents.parquet"
    table.write_bytes(b"\0" * table.stat().st_size)
    with pytest.raises(IndexDamaged, match="documents.parquet"):
        SqlSession(index, lexical[0].cache_dir)
