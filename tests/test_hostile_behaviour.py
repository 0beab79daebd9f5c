"""Hostile and odd query logs against the behaviour surfaces: training the ranker from clicks, the simulator's and
`similar`'s arguments, and the click graph read again under a server's searches (docs/behaviour.md)."""

import logging
import shutil
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from conftest import SAMPLE

from flows.cli import main
from pipeline.errors import InputError
from pipeline.index.querylog import QueryLog
from pipeline.rank import training
from pipeline.rank.model import RANKERS_DIR
from pipeline.searcher import Searcher

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHOWN = ["en-015", "en-001", "zh-011"]


@pytest.fixture
def index(tmp_path, sample_index):
    """A copy of the sample index with an empty query log."""
    copy = tmp_path / "index"
    shutil.copytree(sample_index, copy)
    return copy


def searched(log: QueryLog, n: int, text=lambda i: "hnsw graphs", clicked=lambda i: SHOWN[0], ts=lambda i: T0 +
             timedelta(minutes=i), user=lambda i: f"user-{i % 3}", shown=lambda i: SHOWN) -> None:
    """`n` first-page searches, each with one click where `clicked` names a document (None: no click)."""
    for i in range(n):
        query_id = log.log_query(text(i), "hybrid", None, 1.0, shown(i), len(shown(i)), ts=ts(i), user_id=user(i))
        if clicked(i) is not None:
            log.log_click(query_id, clicked(i), shown(i).index(clicked(i)) + 1, ts=ts(i), user_id=user(i))


def current(index) -> str | None:
    pointer = index / RANKERS_DIR / "CURRENT"
    return pointer.read_text().strip() if pointer.exists() else None


# name → how the log without a single label is written
UNLABELLED = {
    "searches without clicks": lambda log: searched(log, 10, clicked=lambda i: None),
    "clicks in the earlier half only": lambda log: searched(log, 20, text=lambda i: f"q{i}" if i < 10 else "later",
                                                            clicked=lambda i: SHOWN[0] if i < 10 else None),
    "clicks on searches never logged": lambda log: orphan_clicks(log),
}


def orphan_clicks(log: QueryLog) -> None:
    searched(log, 4, clicked=lambda i: None)
    for i in range(5):
        log.log_click("never-logged", "en-015", 1, ts=T0 + timedelta(minutes=i))


@pytest.mark.parametrize("write", UNLABELLED.values(), ids=UNLABELLED)
@pytest.mark.parametrize("source", ["pbm", "ipw", "raw"])
def test_training_from_a_log_whose_later_searches_hold_no_label_is_refused_in_one_line(index, capsys, write,
                                                                                       source):
    write(QueryLog(index))
    assert main(["train", "--index", str(index), "--from-clicks", source]) == InputError.exit_code
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sousuo train:")]
    assert len(errors) == 1 and "nothing to learn from" in errors[0]
    assert current(index) is None


def test_training_from_an_empty_log_is_refused_in_one_line(index, capsys):
    assert main(["train", "--index", str(index), "--from-clicks", "pbm"]) == InputError.exit_code
    assert "nothing to learn from" in capsys.readouterr().err


def test_a_ranker_the_guard_has_no_query_to_compare_on_is_saved_but_not_published(index, settings):
    searched(QueryLog(index), 2)
    searcher = Searcher.open(index, settings)
    ranker, verdict = training.train_from_clicks(searcher.reader, searcher.fusion_weights, "pbm")
    assert verdict.queries == 0 and not verdict.publish
    assert (index / RANKERS_DIR / ranker.card.model_id / "ranker.json").exists() and current(index) is None


def test_the_command_says_why_a_ranker_with_no_query_to_compare_on_is_not_published(index, capsys):
    searched(QueryLog(index), 2)
    assert main(["train", "--index", str(index), "--from-clicks", "pbm"]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("NOT published")]
    assert len(said) == 1 and "no query to compare on" in said[0] and "--dataset" in said[0]


# name → an odd but valid log: training goes through and the guard decides
ODD_LOGS = {
    "every search at one instant": lambda log: searched(log, 30, text=lambda i: ["hnsw", "rank fusion"][i % 2],
                                                        ts=lambda i: T0),
    "clicks on documents no longer indexed": lambda log: searched(log, 30, shown=lambda i: ["gone-1", *SHOWN],
                                                                  clicked=lambda i: "gone-1" if i % 2 else "en-015"),
    "anonymous users only": lambda log: searched(log, 30, user=lambda i: None),
}


@pytest.mark.parametrize("write", ODD_LOGS.values(), ids=ODD_LOGS)
def test_odd_but_valid_logs_train_and_the_guard_decides(index, settings, write):
    write(QueryLog(index))
    searcher = Searcher.open(index, settings)
    ranker, verdict = training.train_from_clicks(searcher.reader, searcher.fusion_weights, "pbm")
    assert ranker.card.label_source["sessions"] > 0
    assert (current(index) == ranker.card.model_id) == verdict.publish


@pytest.mark.parametrize("value", ["nan", "-0.5", "1.5", "inf", "1e309"])
def test_simulate_refuses_a_continuation_probability_outside_0_to_1(index, capsys, value):
    args = ["simulate", "--index", str(index), "--dataset", str(SAMPLE), "--split", "test", "--sessions", "5",
            f"--session-continue={value}"]
    assert main(args) == InputError.exit_code
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("sousuo simulate: --session-continue")
    assert QueryLog(index).count()["queries"] == 0


@pytest.mark.parametrize("doc_id", ["", "x" * 5000, "文档'\"", "en-001\"", "en-001\n", "\udcff"])
def test_similar_names_an_odd_id_it_does_not_know_in_one_line(sample_index, capsys, doc_id):
    assert main(["similar", "--index", str(sample_index), "--", doc_id]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("sousuo similar: no document") and "\n" not in err


def clicked_log(index, settings):
    """A log whose clicks the click models were fitted on (INDEX/behaviour/relevance.parquet)."""
    searched(QueryLog(index), 20)
    assert main(["click-models", "--index", str(index)]) == 0
    return index / "behaviour" / "relevance.parquet"


@pytest.mark.parametrize("damage", [lambda t: t.write_bytes(b"garbage"),
                                    lambda t: __import__("pyarrow.parquet").parquet.write_table(
                                        __import__("pyarrow").table({"x": [1]}), t)],
                         ids=["garbage", "other columns"])
def test_a_damaged_click_model_table_weighs_the_graph_by_click_rate_and_search_goes_on(index, settings, caplog,
                                                                                       damage):
    table = clicked_log(index, settings)
    searcher = Searcher.open(index, settings)
    assert searcher.click_graph.source == "pbm"
    damage(table)
    with caplog.at_level(logging.WARNING, logger="pipeline.behaviour.graph"):
        assert searcher.refresh_click_graph()
    assert searcher.click_graph.source == "ctr" and searcher.click_graph.query_docs
    assert "sousuo click-models" in caplog.text
    assert len(Searcher.open(index, settings).rank("hnsw graphs", mode="hybrid").doc_ords)


def test_a_log_removed_between_refreshes_leaves_an_empty_graph_not_an_error(index, settings):
    clicked_log(index, settings)
    searcher = Searcher.open(index, settings)
    assert searcher.click_graph.query_docs
    shutil.rmtree(QueryLog(index).clicks_dir)
    assert searcher.refresh_click_graph() and searcher.click_graph.empty
    assert len(searcher.rank("hnsw graphs", mode="hybrid").doc_ords)


def test_searches_go_on_while_other_threads_refresh_the_graph_with_new_clicks(index, settings):
    searched(QueryLog(index), 20)  # no click model fitted: the graph weighs every logged pair by its click rate
    searcher = Searcher.open(index, settings)
    log, errors = QueryLog(index), []

    def run(work):
        try:
            work()
        except Exception as error:  # collected: a thread's exception would not fail the test
            errors.append(repr(error))

    def search():
        for _ in range(10):
            assert len(searcher.rank("hnsw graphs", mode="hybrid").doc_ords)

    def refresh():
        for i in range(5):
            searched(log, 1, text=lambda _: f"fresh {i}", ts=lambda _: T0 + timedelta(days=1, minutes=i))
            searcher.refresh_click_graph()

    threads = [threading.Thread(target=run, args=(work,)) for work in (search, search, refresh, refresh)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    searcher.refresh_click_graph()
    assert {f"fresh {i}" for i in range(5)} <= set(searcher.click_graph.query_docs)


def test_click_models_fit_a_log_of_short_result_lists_without_warnings():
    import warnings

    from pipeline.behaviour.clickmodels import SimplifiedDBN
    from pipeline.behaviour.sessions import ClickLog
    from pipeline.config import BehaviourConfig

    log = ClickLog.from_rows([("hnsw", ["a", "b"], [1], False), ("hnsw", ["b", "a"], [], False)], 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = SimplifiedDBN(BehaviourConfig()).fit(log)
    assert model.examination[0] == 1.0 and np.isnan(model.examination[2:]).all()
