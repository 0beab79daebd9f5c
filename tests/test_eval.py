"""Evaluation: the JSON last-line contract, run and metrics files, graded judgments, and the BM25 bars."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, SAMPLE

from pipeline.errors import InputError
from pipeline.eval.metrics import score_run
from pipeline.experiment.runs import evaluate

CONTRACT_KEYS = ["dataset", "method", "split", "queries", "ndcg@10", "recall@100", "mrr@10", "map"]


def test_metrics_use_graded_gains():
    qrels = {"q": {"a": 2, "b": 1}}
    ideal = score_run({"q": {"a": 2.0, "b": 1.0}}, qrels)[0]
    swapped = score_run({"q": {"b": 2.0, "a": 1.0}}, qrels)[0]
    assert ideal["ndcg@10"] == pytest.approx(1.0)
    assert swapped["ndcg@10"] < 1.0 and swapped["mrr@10"] == pytest.approx(1.0)


def test_a_judged_query_missing_from_the_run_counts_as_zero():
    means, per_query = score_run({"q1": {"a": 1.0}}, {"q1": {"a": 1}, "q2": {"b": 1}})
    assert per_query["q2"]["ndcg@10"] == 0.0 and means["ndcg@10"] == pytest.approx(0.5)


def test_eval_cli_prints_the_contract_as_its_last_line_and_writes_run_files(tmp_path):
    env_cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "eval", str(SAMPLE), "--method", "bm25", "--json", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, check=True,
        env={**__import__("os").environ, "SOUSUO_CACHE_DIR": str(env_cache)},
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(summary) == CONTRACT_KEYS
    assert summary["dataset"] == "sample" and summary["queries"] == 24 and summary["ndcg@10"] > 0.8
    run_lines = (env_cache / "runs" / "sample.bm25.test.trec").read_text().splitlines()
    assert run_lines[0].split()[1:4:2] == ["Q0", "1"]
    metrics = pq.read_table(env_cache / "metrics" / "sample.bm25.test.parquet").to_pylist()
    overall = {row["measure"]: row["value"] for row in metrics if row["query_id"] == "all"}
    assert overall["ndcg@10"] == pytest.approx(summary["ndcg@10"], abs=1e-4)


def test_eval_reuses_the_cached_index(settings):
    evaluate(SAMPLE, settings=settings)
    indexes = list((settings.cache_dir / "indexes").iterdir())
    evaluate(SAMPLE, settings=settings)
    assert list((settings.cache_dir / "indexes").iterdir()) == indexes


def test_unknown_split_is_a_clear_error(settings):
    with pytest.raises(InputError, match="has no split 'dev'"):
        evaluate(SAMPLE, split="dev", settings=settings)


@pytest.mark.parametrize(
    ("dataset", "bar"),
    [("scifact", 0.67), ("drcd-zh-tw", 0.90), ("csl-title", 0.90)],
)
def test_bm25_meets_its_bar(shared_datasets, settings, dataset, bar):
    summary = evaluate(shared_datasets / dataset, "bm25", "test", settings)
    assert summary["ndcg@10"] >= bar


def test_bm25_runs_on_graded_cranfield(shared_datasets, settings):
    summary = evaluate(shared_datasets / "cranfield", "bm25", "test", settings)
    assert summary["queries"] == 225 and 0.3 < summary["ndcg@10"] < 0.6
