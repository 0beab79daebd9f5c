"""Interleaving (issue 13 §4): the team-draft merge, experiments and who is in them, the log's record of which arm
placed each result, the report with its sign test, and the simulator showing a better ranker wins (docs/behaviour.md)."""

import json
import shutil
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE
from scipy.stats import binomtest

from flows.cli import main
from pipeline.behaviour.experiments import ExperimentStore, create_views, report
from pipeline.behaviour.interleaving import (
    CANDIDATE,
    CONTROL,
    credit,
    outcome,
    sign_test,
    team_draft,
)
from pipeline.behaviour.simulate import ClickSimulator, write_sessions
from pipeline.config import BehaviourConfig
from pipeline.errors import IndexNotFound, InputError
from pipeline.index.querylog import QueryLog
from pipeline.schemas import QUERIES
from pipeline.serving.sql import SqlSession

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def rankings(seed: int, n_docs: int = 30, k: int = 10) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(n_docs)]
    return [docs[i] for i in rng.permutation(n_docs)[:k]], [docs[i] for i in rng.permutation(n_docs)[:k]]


# -- the team-draft merge -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(50))
def test_each_prefix_holds_the_top_of_both_rankings_and_no_duplicates(seed):
    control, candidate = rankings(seed)
    merged = team_draft(control, candidate, 10, seed)
    assert len(merged.docs) == len(set(merged.docs)) == 10
    assert set(merged.docs) <= set(control) | set(candidate)
    for n in range(1, 11):
        prefix = merged.docs[:n]
        picks = {arm: merged.teams[:n].count(arm) for arm in (CONTROL, CANDIDATE)}
        assert set(control[: picks[CONTROL]]) <= set(prefix)
        assert set(candidate[: picks[CANDIDATE]]) <= set(prefix)
        assert abs(picks[CONTROL] - picks[CANDIDATE]) <= 1
    for doc, team in zip(merged.docs, merged.teams):  # a team only places what its own ranking holds
        assert doc in (control if team == CONTROL else candidate)


def test_the_merge_is_deterministic_per_seed_and_the_coin_decides_who_picks_first():
    control, candidate = rankings(7)
    assert team_draft(control, candidate, 10, 42) == team_draft(control, candidate, 10, 42)
    first = {team_draft(control, candidate, 10, seed).teams[0] for seed in range(20)}
    assert first == {CONTROL, CANDIDATE}


def test_identical_rankings_merge_into_themselves_and_short_ones_fill_from_the_other():
    ranking = [f"d{i}" for i in range(10)]
    assert team_draft(ranking, ranking, 10, 3).docs == ranking
    merged = team_draft(["a", "b"], ["c", "d", "e", "f"], 5, 0)
    assert sorted(merged.docs) == ["a", "b", "c", "d", "e"] and merged.teams.count(CONTROL) == 2


def test_clicks_are_credited_to_the_arm_that_placed_the_document():
    teams = [CONTROL, CANDIDATE, CANDIDATE, CONTROL]
    assert credit(teams, [2, 3]) == {CONTROL: 0, CANDIDATE: 2}
    assert credit(teams, [1, 1, 4]) == {CONTROL: 2, CANDIDATE: 0}  # a repeated click counts once
    assert credit(teams, [12, 13], offset=10) == {CONTROL: 0, CANDIDATE: 2}  # page 2 of the same merge
    assert [outcome(credit(teams, c)) for c in ([2], [1], [1, 2], [])] == ["win", "loss", "tie", "no_clicks"]


def test_the_sign_test_is_the_exact_two_sided_binomial():
    for wins, losses in ((0, 0), (5, 5), (9, 1), (30, 12), (120, 160)):
        expected = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
        assert sign_test(wins, losses) == pytest.approx(expected, rel=1e-9)


# -- experiments and who takes part --------------------------------------------------------------------


def start(store: ExperimentStore, name: str = "exp", share: float = 0.3, control: str = "hybrid",
          candidate: str = "bm25", days: float = 7):
    return store.start(name, control, candidate, share, NOW, NOW + timedelta(days=days))


def test_assignment_follows_the_share_is_stable_per_visitor_and_holds_only_in_the_window(tmp_path):
    store = ExperimentStore(tmp_path)
    start(store, share=0.3)
    visitors = [f"{i:032x}" for i in range(20_000)]
    during = NOW + timedelta(days=1)
    inside = [v for v in visitors if store.assign(v, "hybrid", during) is not None]
    assert abs(len(inside) / len(visitors) - 0.3) < 0.015
    assert inside == [v for v in visitors if store.assign(v, "hybrid", during + timedelta(hours=5)) is not None]
    assert store.assign(inside[0], "hybrid", NOW - timedelta(seconds=1)) is None  # not started
    assert store.assign(inside[0], "hybrid", NOW + timedelta(days=7)) is None  # ended
    assert store.assign(inside[0], "bm25", during) is None  # the control arm serves hybrid, not bm25
    assert store.assign(None, "hybrid", during) is None  # no visitor id, no experiment
    store.stop("exp", at=during)
    assert store.assign(inside[0], "hybrid", during + timedelta(seconds=1)) is None
    assert store.get("exp").stopped_at == during


def test_experiments_refuse_bad_settings_and_duplicate_ids(tmp_path):
    store = ExperimentStore(tmp_path)
    start(store)
    with pytest.raises(InputError, match="exists already"):
        start(store)
    with pytest.raises(InputError, match="share"):
        start(store, "other", share=1.5)
    with pytest.raises(InputError, match="end after"):
        start(store, "other", days=-1)
    with pytest.raises(InputError, match="same ranker"):
        start(store, "other", candidate="hybrid")
    with pytest.raises(InputError, match="ids are"):
        start(store, "../escape")
    with pytest.raises(IndexNotFound):
        store.get("missing")


# -- the log and the report ------------------------------------------------------------------------------


def log_impression(log: QueryLog, query_id: str, teams: list[str], clicked: list[int], experiment: str = "exp"):
    shown = [f"{query_id}-d{i}" for i in range(len(teams))]
    log.log_query("q", "hybrid", None, 1.0, shown, len(shown), query_id=query_id, user_id="u", arm="interleaved",
                  experiment=experiment, result_arms=teams, ts=NOW)
    for position in clicked:
        log.log_click(query_id, shown[position - 1], position, ts=NOW)


def test_the_report_counts_wins_losses_ties_and_tests_them(tmp_path):
    store = ExperimentStore(tmp_path)
    start(store)
    log = QueryLog(tmp_path)
    teams = [CONTROL, CANDIDATE, CONTROL, CANDIDATE]
    expected = {"win": 0, "loss": 0, "tie": 0, "no_clicks": 0}
    cases = [[2]] * 9 + [[1]] * 2 + [[1, 2]] * 3 + [[]] * 4 + [[2, 4, 1]] * 2
    for i, clicked in enumerate(cases):
        log_impression(log, f"q{i}", teams, clicked)
        expected[outcome(credit(teams, clicked))] += 1
    log.log_click("q0", "not-what-was-shown", 1, ts=NOW)  # a click that does not match the logged result: ignored
    row, = report(tmp_path)
    assert (row["wins"], row["losses"], row["ties"], row["no_clicks"], row["impressions"]) == \
        (expected["win"], expected["loss"], expected["tie"], expected["no_clicks"], len(cases)) == (11, 2, 3, 4, 20)
    assert row["p_value"] == pytest.approx(binomtest(11, 13).pvalue, rel=1e-9)
    assert row["preferred"] == "candidate" and row["control"] == "hybrid" and row["candidate"] == "bm25"
    con = log.connect()
    create_views(con, store.list())
    credited = con.execute("SELECT arm, count(*) FROM interleaving_clicks GROUP BY arm ORDER BY arm").fetchall()
    assert credited == [(CANDIDATE, 9 + 3 + 2 * 2), (CONTROL, 2 + 3 + 2)]


def test_part_files_written_before_experiments_still_read(tmp_path):
    log = QueryLog(tmp_path)
    old = pa.schema([f for f in QUERIES if f.name not in ("experiment", "result_arms")])
    row = {k: v for k, v in log.query_row("old", "bm25", None, 1.0, ["a"], 1, ts=NOW).items() if k in old.names}
    log.queries_dir.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old), log.queries_dir / "old.parquet")
    start(ExperimentStore(tmp_path))
    log_impression(log, "new", [CONTROL, CANDIDATE], [2])
    rows = log.sql("SELECT text, experiment, result_arms FROM queries ORDER BY text")
    assert rows == [{"text": "old", "experiment": None, "result_arms": None},
                    {"text": "q", "experiment": "exp", "result_arms": [CONTROL, CANDIDATE]}]
    assert [(r["impressions"], r["wins"]) for r in report(tmp_path)] == [(1, 1)]


# -- the simulator: a better ranker wins, an equal one does not ------------------------------------------


def simulated_experiment(tmp_path, control, candidate, sessions: int = 1_500) -> dict:
    rng = np.random.default_rng(0)
    docs = [f"d{j}" for j in range(40)]
    queries = {f"q{i}": f"query {i}" for i in range(100)}
    qrels = {q: {docs[j]: 1 for j in rng.choice(40, 3, replace=False)} for q in queries}
    by_text = {text: q for q, text in queries.items()}

    def ranker(relevant_first: bool):
        def rank(text: str) -> list[str]:
            relevant = list(qrels[by_text[text]])
            others = [d for d in docs if d not in relevant]
            return (relevant + others)[:10] if relevant_first else (others[:7] + relevant)[:10]
        return rank

    start(ExperimentStore(tmp_path), share=1.0)
    simulator = ClickSimulator(queries, qrels, ranker(control), BehaviourConfig(), candidate=ranker(candidate))
    write_sessions(QueryLog(tmp_path), simulator.sessions(sessions), queries, "hybrid", 13, experiment="exp")
    row, = report(tmp_path)
    return row


def test_simulated_users_prefer_the_better_ranker_significantly(tmp_path):
    better = simulated_experiment(tmp_path / "a", control=False, candidate=True)
    assert better["impressions"] == 1_500 and better["wins"] > 5 * better["losses"]
    assert better["p_value"] < 1e-6 and better["preferred"] == "candidate"
    worse = simulated_experiment(tmp_path / "b", control=True, candidate=False)
    assert worse["p_value"] < 1e-6 and worse["preferred"] == "control"
    same = simulated_experiment(tmp_path / "c", control=True, candidate=True)
    assert same["p_value"] > 0.05 and same["preferred"] == "no significant difference"


# -- commands, SQL and the API on the sample index -----------------------------------------------------------


def test_experiment_commands_and_a_simulated_experiment_on_the_sample(tmp_path, sample_index, capsys):
    index = tmp_path / "index"
    shutil.copytree(sample_index, index, ignore=shutil.ignore_patterns("querylog", "experiments"))
    base = ["--index", str(index)]
    assert main(["experiment", "start", "bm25-vs-dense", *base, "--control", "bm25", "--candidate", "dense",
                 "--share", "1"]) == 0
    started = json.loads(capsys.readouterr().out.strip())
    assert (started["control"], started["candidate"], started["share"]) == ("bm25", "dense", 1.0)
    assert main(["experiment", "start", "bm25-vs-dense", *base, "--candidate", "dense"]) == 2  # id taken
    assert main(["experiment", "start", "x", *base, "--candidate", "no-such-ranker"]) == 2
    assert main(["experiment", "report", "missing", *base]) == 3
    capsys.readouterr()
    assert main(["simulate", *base, "--dataset", str(SAMPLE), "--split", "test", "--sessions", "600",
                 "--experiment", "bm25-vs-dense"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["impressions"] == 600 and summary["wins"] + summary["losses"] + summary["ties"] > 0
    assert main(["experiment", "report", "bm25-vs-dense", *base]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["wins"] == summary["wins"] and row["p_value"] == pytest.approx(summary["p_value"])
    with SqlSession(index) as session:
        assert {"experiments", "interleaving_clicks", "interleaving_impressions", "interleaving_report"} \
            <= set(session.views)
        (wins, losses, p), = session.fetch("SELECT wins, losses, p_value FROM interleaving_report")[1]
        assert (wins, losses) == (row["wins"], row["losses"]) and p == pytest.approx(row["p_value"])
    assert main(["experiment", "stop", "bm25-vs-dense", *base]) == 0
    assert json.loads(capsys.readouterr().out.strip())["stopped_at"] is not None
    assert main(["experiment", "list", *base]) == 0
    assert [json.loads(line)["experiment_id"] for line in capsys.readouterr().out.strip().splitlines()] == \
        ["bm25-vs-dense"]


def test_the_api_interleaves_visitors_in_the_experiment_and_logs_each_results_arm(tmp_path, sample_index, settings):
    import httpx
    from api_support import api_settings, running

    index = tmp_path / "index"
    shutil.copytree(sample_index, index, ignore=shutil.ignore_patterns("querylog", "experiments"))
    ExperimentStore(index).start("exp", "bm25", "hybrid", 1.0, datetime.now(UTC) - timedelta(hours=1),
                                 datetime.now(UTC) + timedelta(days=1))
    with running(api_settings(settings, index)) as url:
        params = {"q": "vector search", "log": "true", "user_id": "visitor-1"}
        body = httpx.get(f"{url}/v1/search", params=params, timeout=60).json()
        assert body["experiment"] == {"id": "exp", "control": "bm25", "candidate": "hybrid"}
        arms = [r["arm"] for r in body["results"]]
        assert set(arms) <= {CONTROL, CANDIDATE} and len(arms) == 10
        page_two = httpx.get(f"{url}/v1/search", params={**params, "log": "false", "offset": 5, "k": 5},
                             timeout=60).json()["results"]
        assert [r["doc_id"] for r in page_two] == [r["doc_id"] for r in body["results"][5:]]  # one merge, paged
        clicked = arms.index(CANDIDATE) + 1
        doc = body["results"][clicked - 1]["doc_id"]
        assert httpx.post(f"{url}/v1/clicks", json={"query_id": body["query_id"], "doc_id": doc,
                                                    "position": clicked}, timeout=60).status_code == 201
        plain = httpx.get(f"{url}/v1/search", params={**params, "mode": "hybrid"}, timeout=60).json()
        assert "experiment" not in plain and "arm" not in plain["results"][0]  # hybrid is not the control's mode
        anonymous = httpx.get(f"{url}/v1/search", params={"q": "vector search"}, timeout=60).json()
        assert "experiment" not in anonymous
        impression = {"query": "q", "result_ids": ["a", "b"], "experiment": "exp",
                      "result_arms": [CONTROL, CANDIDATE]}
        assert httpx.post(f"{url}/v1/impressions", json=impression, timeout=60).status_code == 201
        assert httpx.post(f"{url}/v1/impressions", json={**impression, "result_arms": [CONTROL]},
                          timeout=60).status_code == 400
        assert httpx.post(f"{url}/v1/impressions", json={**impression, "experiment": "nope"},
                          timeout=60).status_code == 404
    logged = QueryLog(index).sql("SELECT experiment, result_arms FROM queries WHERE result_arms IS NOT NULL "
                                 "ORDER BY ts")
    assert logged[0] == {"experiment": "exp", "result_arms": arms}
    row, = report(index)
    assert (row["impressions"], row["wins"], row["losses"]) == (2, 1, 0)


# -- the UI ------------------------------------------------------------------------------------------------


def run_page(path, monkeypatch, index, query: str | None = None):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SOUSUO_INDEX", str(index))
    at = AppTest.from_file(str(path), default_timeout=240)
    at.run()
    if query is not None:
        at.text_input(key="q").input(query)
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_the_experiments_page_shows_the_report_beside_the_position_curve(tmp_path, monkeypatch):
    from conftest import ROOT

    from pipeline.behaviour.clickmodels import BEHAVIOUR_DIR, TABLES
    from pipeline.schemas import CLICK_PROPENSITIES

    page = ROOT / "app" / "pages" / "5_Experiments.py"
    assert "No experiment yet" in run_page(page, monkeypatch, tmp_path).info[0].value
    start(ExperimentStore(tmp_path))
    log = QueryLog(tmp_path)
    for i, clicked in enumerate([[2]] * 3 + [[1]] + [[]]):
        log_impression(log, f"q{i}", [CONTROL, CANDIDATE], clicked)
    curve = [{"model": "pbm", "position": r, "propensity": 1 / r} for r in range(1, 11)]
    (tmp_path / BEHAVIOUR_DIR).mkdir()
    pq.write_table(pa.Table.from_pylist(curve, schema=CLICK_PROPENSITIES),
                   tmp_path / BEHAVIOUR_DIR / TABLES["click_propensities"][0])
    at = run_page(page, monkeypatch, tmp_path)
    assert {m.label: m.value for m in at.metric} == {"Wins": "3", "Losses": "1", "Ties": "0",
                                                     "p-value": f"{sign_test(3, 1):.3g}"}
    assert at.dataframe[0].value.iloc[0]["impressions"] == 5
    assert [s.value for s in at.subheader][1] == "Click model: examination by position"


def test_the_search_page_interleaves_a_visitor_in_the_experiment_and_logs_the_arms(tmp_path, sample_index,
                                                                                    monkeypatch):
    from conftest import ROOT

    index = tmp_path / "index"
    shutil.copytree(sample_index, index, ignore=shutil.ignore_patterns("querylog", "experiments", "rankers"))
    ExperimentStore(index).start("ui", "hybrid", "bm25", 1.0, datetime.now(UTC) - timedelta(hours=1),
                                 datetime.now(UTC) + timedelta(days=1))
    run_page(ROOT / "app" / "Search.py", monkeypatch, index, "vector search")  # opens in hybrid: no ranker
    (row,) = QueryLog(index).queries()
    assert row["experiment"] == "ui" and row["arm"] == "interleaved"
    assert len(row["result_arms"]) == len(row["result_ids"]) > 0 and set(row["result_arms"]) == {CONTROL, CANDIDATE}


def test_a_candidate_ranker_is_published_only_when_users_preferred_it(tmp_path):
    from pipeline.serving.interleave import publish_if_won

    store = ExperimentStore(tmp_path)
    log = QueryLog(tmp_path)
    teams = [CONTROL, CANDIDATE]
    for name, outcomes in (("won", [[2]] * 11 + [[1]] * 2), ("even", [[2]] * 6 + [[1]] * 5)):
        start(store, name, candidate=f"ltr:model-{name}")
        for i, clicked in enumerate(outcomes):
            log_impression(log, f"{name}{i}", teams, clicked, experiment=name)
    pointer = tmp_path / "rankers" / "CURRENT"
    assert publish_if_won(tmp_path, "even")["published"] is None and not pointer.exists()
    verdict = publish_if_won(tmp_path, "won")
    assert verdict["published"] == "model-won" and verdict["p_value"] < 0.05
    assert pointer.read_text().strip() == "model-won"
