"""Evaluation: the JSON last-line contract, run and metrics files, graded judgments, and the BM25 bars."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, SAMPLE

from pipeline.dense.encoders import MULTILINGUAL_E5
from pipeline.errors import InputError
from pipeline.eval.beir import BeirDataset, read_qrels, read_queries
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


def test_an_evaluation_index_embedded_by_a_static_model_is_keyed_by_what_makes_that_model(tmp_path, monkeypatch):
    import pipeline.experiment.runs as runs
    from pipeline.config import Settings

    monkeypatch.setattr(runs, "build_index", lambda *args, **kwargs: None)
    empty = Settings(cache_dir=tmp_path)  # nothing embedded: auto's choice turns on the teacher's speed alone

    def index_for(**dense):
        config = empty.dense.model_copy(update={"encoder": "static", **dense})
        return runs.cached_index(BeirDataset.load(SAMPLE), empty.model_copy(update={"dense": config}))

    assert index_for(static_vocabulary="corpus-terms") != index_for(static_vocabulary="teacher-tokenizer")
    assert index_for(static_fit_epochs=3) != index_for(static_fit_epochs=10)
    assert index_for(time_budget_s=1.0) == index_for(time_budget_s=600.0)
    # `auto` taking the static encoder because the teacher is too slow makes a budget-bound model of its own.
    bound = index_for(encoder="auto", time_budget_s=0.0, throughput={MULTILINGUAL_E5: 1.0})
    assert bound.name == index_for(time_budget_s=0.0).name + "-budget0s-share0.5"
    assert index_for(static_queries="teacher") != index_for()


def test_unknown_split_is_a_clear_error(settings):
    with pytest.raises(InputError, match="has no split 'dev'"):
        evaluate(SAMPLE, split="dev", settings=settings)


def test_trec_qrels_separated_by_spaces_read_like_beir_ones(tmp_path):
    trec, beir = tmp_path / "trec.tsv", tmp_path / "beir.tsv"
    trec.write_text("q1 0 d1 2\nq1 0 d2 0\nq2 Q0 d3 1.0\n", encoding="utf-8")
    beir.write_text("\ufeffquery-id\tcorpus-id\tscore\r\nq1\td1\t2\r\nq1\td2\t0\r\nq2\td3\t1\r\n", encoding="utf-8")
    assert read_qrels(trec) == read_qrels(beir) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}


@pytest.mark.parametrize("line", ["q1\td1", "q1\td1\tvery", "q1 d1 x y z", "q1\td1\tinf"])
def test_a_malformed_judgment_names_its_line(tmp_path, line):
    path = tmp_path / "test.tsv"
    path.write_text(f"q0\td0\t1\n{line}\n", encoding="utf-8")
    with pytest.raises(InputError, match="test.tsv:2"):
        read_qrels(path)


def test_only_a_first_row_that_names_the_score_column_is_a_header(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("q1\td1\tvery\nq2\td2\t1\n", encoding="utf-8")
    with pytest.raises(InputError, match="test.tsv:1"):
        read_qrels(path)


def test_query_ids_of_any_json_type_read_as_strings_and_a_bad_line_is_named(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text('\ufeff{"_id": 7, "text": "seven"}\n\n{"_id": "q8", "text": "eight", "metadata": {}}\n',
                    encoding="utf-8")
    assert read_queries(path) == {"7": "seven", "q8": "eight"}
    for bad in ('{"_id": 8}', '{"_id": true, "text": "t"}', '{"_id": [8], "text": "t"}'):
        path.write_text('{"_id": 7, "text": "seven"}\n' + bad + "\n", encoding="utf-8")
        with pytest.raises(InputError, match="queries.jsonl:2"):
            read_queries(path)


def test_a_folder_without_queries_is_not_a_beir_folder(tmp_path):
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d", "text": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="queries.jsonl is missing"):
        BeirDataset.load(tmp_path)


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
