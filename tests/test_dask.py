"""The build flow on prefect-dask (a LocalCluster of 2 worker processes, a running Prefect server) builds the
same index as the local runner, with analysis and embedding split into document shards."""

import subprocess
import sys

import numpy as np
from conftest import ROOT, SAMPLE

from pipeline.index.store import IndexVersion
from pipeline.searcher import Searcher

ON_DASK = """
import sys
from prefect_dask import DaskTaskRunner
from flows.build import build_flow

runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                        "host": "127.0.0.1", "dashboard_address": None})
print(build_flow.with_options(task_runner=runner)([sys.argv[1]], sys.argv[2], shards=2))
"""


def test_the_flow_on_a_dask_cluster_builds_the_same_index_as_the_local_runner(tmp_path, prefect_server, settings):
    env = {**prefect_server, "SOUSUO_CACHE_DIR": str(settings.cache_dir)}
    subprocess.run([sys.executable, "-c", ON_DASK, str(SAMPLE), str(tmp_path / "dask")], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "flows.cli", "build", "--corpus", str(SAMPLE), "--index",
                    str(tmp_path / "local")], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    dask, local = IndexVersion.open(tmp_path / "dask"), IndexVersion.open(tmp_path / "local")
    assert dask.documents.column("doc_id").equals(local.documents.column("doc_id"))
    assert dask.vocabulary.terms == local.vocabulary.terms
    for name, postings in local.inverted.fields.items():
        for array in ("term_indptr", "docs", "tfs", "positions", "doc_lengths"):
            np.testing.assert_array_equal(getattr(dask.inverted.fields[name], array), getattr(postings, array))
    np.testing.assert_allclose(np.load(dask.path / "dense" / "vectors.npy"),
                               np.load(local.path / "dense" / "vectors.npy"), atol=1e-6)
    a, b = Searcher.open(tmp_path / "dask", settings), Searcher.open(tmp_path / "local", settings)
    for query in ["向量检索", "reciprocal rank fusion", "深度学习 优化"]:
        for mode in ("bm25", "hybrid"):
            assert [h.doc_id for h in a.search(query, mode=mode).hits] == [h.doc_id for h in b.search(query, mode=mode).hits]
