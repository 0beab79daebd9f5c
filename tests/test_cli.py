"""The `sousuo` command: help on every subcommand, build → search --json, versions and rollback."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLE

from flows.cli import build_parser

SUBCOMMANDS = ["build", "update", "serve", "train", "ui", "search", "eval", "sql", "check", "versions", "publish",
               "rollback", "api", "prefect-server", "simulate", "forget-user", "click-models"]


def sousuo(*args, check=True):
    return subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, check=check, env={**os.environ})


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([name, "--help"])
    assert exit_info.value.code == 0 and "usage: sousuo " + name in capsys.readouterr().out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    index = tmp_path_factory.mktemp("cli") / "index"
    corpus = tmp_path_factory.mktemp("corpus") / "extra.jsonl"
    corpus.write_text('{"_id": "bad json"\n{"_id": "x1", "text": "an extra document about inverted files"}\n')
    first = sousuo("build", "--corpus", SAMPLE, "--index", index)
    second = sousuo("build", "--corpus", SAMPLE, corpus, "--index", index)
    return index, first, second


def test_build_prints_the_version_last_and_reports_quarantine(built):
    index, first, second = built
    version = second.stdout.strip().splitlines()[-1]
    first.stdout = first.stdout.strip().splitlines()[-1]
    second.stdout = version
    assert (index / "versions" / version / "manifest.json").is_file()
    assert "quarantine: invalid_json: 1" in second.stderr


def test_search_json_lists_doc_id_score_title_and_snippet(built):
    index, *_ = built
    result = json.loads(sousuo("search", "inverted index", "--index", index, "--json", "-k", "3").stdout)
    assert len(result["results"]) == 3
    assert set(result["results"][0]) >= {"doc_id", "score", "title", "snippet"}
    assert result["results"][0]["score"] >= result["results"][1]["score"]


def test_search_filters_from_the_command_line(built):
    index, *_ = built
    result = json.loads(sousuo("search", "索引 index", "--index", index, "--json", "--lang", "zh", "-k", "50").stdout)
    assert result["results"] and {r["lang"] for r in result["results"]} == {"zh"}


def test_versions_and_rollback_switch_what_search_serves(built):
    index, first, second = built
    listing = sousuo("versions", "--index", index).stdout
    assert f"* {second.stdout.strip()}" in listing
    assert sousuo("rollback", "--index", index).stdout.strip() == first.stdout.strip()
    result = json.loads(sousuo("search", "extra inverted files", "--index", index, "--json").stdout)
    assert "x1" not in {r["doc_id"] for r in result["results"]}
    sousuo("publish", second.stdout.strip(), "--index", index)
    result = json.loads(sousuo("search", "extra inverted files", "--index", index, "--json").stdout)
    assert result["results"][0]["doc_id"] == "x1"


def test_a_missing_index_is_a_clear_error_not_a_traceback(tmp_path):
    result = sousuo("search", "x", "--index", tmp_path / "nothing", check=False)
    assert result.returncode == 3 and "the path does not exist" in result.stderr and "Traceback" not in result.stderr


def test_an_unbuilt_index_folder_says_how_to_build_it(tmp_path):
    result = sousuo("search", "x", "--index", tmp_path, check=False)
    assert result.returncode == 3 and "no published index" in result.stderr and "sousuo build" in result.stderr


@pytest.mark.parametrize("command", [("versions",), ("rollback",), ("check",), ("sql", "-c", "SELECT 1")])
def test_an_index_path_that_is_a_file_is_a_one_line_error(tmp_path, command):
    (tmp_path / "file").write_text("not an index")
    result = sousuo(*command, "--index", tmp_path / "file", check=False)
    assert result.returncode == 2 and "is a file, not an index folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_versions_of_a_path_that_does_not_exist_is_an_error(tmp_path):
    result = sousuo("versions", "--index", tmp_path / "nowhere", check=False)
    assert result.returncode == 3 and "the path does not exist" in result.stderr


@pytest.mark.parametrize("args", [("-k", "0"), ("-k", "-3"), ("--offset", "-1")])
def test_result_counts_and_offsets_must_make_sense(built, args):
    index, *_ = built
    result = sousuo("search", "x", "--index", index, *args, check=False)
    assert result.returncode == 2 and "must be" in result.stderr


def test_offset_pages_through_the_results(built):
    index, *_ = built
    first = json.loads(sousuo("search", "inverted index", "--index", index, "-k", "2", "--json").stdout)
    second = json.loads(sousuo("search", "inverted index", "--index", index, "-k", "1", "--offset", "1",
                               "--json").stdout)
    assert second["results"][0]["doc_id"] == first["results"][1]["doc_id"]


def test_publishing_a_path_instead_of_a_version_name_is_refused(built):
    index, *_ = built
    result = sousuo("publish", "../../elsewhere/versions/x", "--index", index, check=False)
    assert result.returncode == 2 and "is not a version name" in result.stderr


def test_check_reports_a_damaged_version_and_exits_with_its_code(built, tmp_path):
    import shutil

    index, *_ = built
    copy = tmp_path / "copy"
    shutil.copytree(index, copy)
    assert sousuo("check", "--index", copy).returncode == 0
    version = sousuo("versions", "--index", copy).stdout.split("* ")[1].split()[0]
    target = copy / "versions" / version / "inverted" / "text.docs.npy"
    target.write_bytes(target.read_bytes()[:-8])
    result = sousuo("check", "--index", copy, check=False)
    assert result.returncode == 4 and "text.docs.npy has" in result.stderr


def test_a_syntax_error_is_a_clear_error(built):
    index, *_ = built
    result = sousuo("search", "(unclosed", "--index", index, check=False)
    assert result.returncode == 2 and "missing ')'" in result.stderr


def test_a_bad_configuration_value_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "flows.cli", "versions", "--index", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "SOUSUO_BM25__K1": "-1"})
    assert result.returncode == 2 and "invalid configuration (bm25.k1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_eval_method_is_a_one_line_error_naming_the_methods():
    result = sousuo("eval", SAMPLE, "--method", "nope", check=False)
    assert result.returncode == 2 and "unknown method 'nope'" in result.stderr and "hybrid" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_command_line_does_not_import_the_engine_to_parse_arguments():
    probe = "import sys, flows.cli; print(any(m.startswith('pipeline.searcher') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout.strip() == "False"


@pytest.mark.parametrize("command", ["build", "update", "serve"])
def test_a_repeated_corpus_option_adds_to_the_corpus_not_replaces_it(command, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(""), second.write_text("")
    args = build_parser().parse_args([command, "--corpus", str(first), "--corpus", str(second), "--index", "i"])
    assert args.corpus == [first, second]


@pytest.mark.parametrize("command", ["build", "update", "serve"])
def test_a_corpus_path_that_does_not_exist_is_a_one_line_error_before_any_flow_runs(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--corpus", str(tmp_path / "missing.jsonl"), "--index", "i"])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "missing.jsonl does not exist" in error and "Traceback" not in error


@pytest.mark.parametrize(("option", "value", "field"), [("--port", "99999", "api.port"), ("--port", "-1", "api.port"),
                                                       ("--workers", "0", "api.workers")])
def test_an_api_port_or_worker_count_out_of_range_is_a_one_line_error(sample_index, option, value, field):
    result = sousuo("api", "--index", sample_index, option, value, check=False)
    assert result.returncode == 2 and f"invalid configuration ({field}:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_user_error_inside_a_flow_is_logged_without_a_traceback(tmp_path):
    note = tmp_path / "note.md"
    note.write_text("# a single Markdown file, which is not an input: its folder is")
    result = sousuo("build", "--corpus", note, "--index", tmp_path / "index", check=False)
    assert result.returncode == 2 and "sousuo build: no reader for" in result.stderr
    assert "Traceback" not in result.stderr


def test_versions_of_a_folder_that_holds_no_index_is_a_one_line_error(tmp_path):
    result = sousuo("versions", "--index", tmp_path, check=False)
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0 and "no index versions" in result.stderr
