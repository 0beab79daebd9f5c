"""The Streamlit UI through `streamlit.testing.v1.AppTest`: every page, its interactions, and hostile input."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, SAMPLE
from streamlit.testing.v1 import AppTest

from pipeline import schemas
from pipeline.config import DenseConfig, RankerConfig, Settings
from pipeline.index.build import build_index
from pipeline.index.incremental import update_index
from pipeline.index.querylog import QueryLog
from pipeline.index.store import current_version, list_versions

APP = ROOT / "app"
PAGES = {
    "search": APP / "Search.py",
    "analytics": APP / "pages" / "1_Analytics.py",
    "index": APP / "pages" / "2_Index.py",
    "evaluation": APP / "pages" / "3_Evaluation.py",
    "sql": APP / "pages" / "4_SQL.py",
}
TIMEOUT = 240  # seconds per script run: the machine may be loaded and the first hybrid query loads the encoder
ALLOWED_TAGS = {"div", "mark", "style", "/div", "/mark", "/style"}

_COPIES: dict[tuple, Path] = {}


# -- shared helpers (test_browser.py uses them too) -------------------------------------------------------


def copy_index(sample_index: Path, target: Path) -> Path:
    shutil.copytree(sample_index, target, ignore=shutil.ignore_patterns("querylog", "rankers"))
    return target


def ranked_index(sample_index: Path, settings: Settings, target: Path) -> Path:
    """A copy of the sample index with a learned ranker trained on the sample's judgments.

    Trained once per session: later calls return the first copy, whatever `target` they name."""
    key = (str(sample_index), "ranked")
    if key in _COPIES:
        return _COPIES[key]
    from pipeline.eval.beir import BeirDataset
    from pipeline.rank.training import train_from_judgments
    from pipeline.searcher import Searcher

    copy_index(sample_index, target)
    # Small leaves so the sample's 24 queries give a model with several contributing features.
    ranker_settings = settings.model_copy(update={"ranker": RankerConfig(min_data_in_leaf=5, n_estimators=60)})
    searcher = Searcher.open(target, ranker_settings)
    train_from_judgments(searcher.reader, BeirDataset.load(SAMPLE), searcher.fusion_weights, "test")
    _COPIES[key] = target
    return target


def write_evaluation(cache_dir: Path, doc_ids: list[str]) -> Path:
    """Metrics and runs for two methods on the sample dataset, in the layout `sousuo eval` writes."""
    qrels = {}
    for line in (SAMPLE / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        qrels.setdefault(qid, {})[doc] = int(score)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    (cache_dir / "metrics").mkdir(parents=True, exist_ok=True)
    (cache_dir / "runs").mkdir(parents=True, exist_ok=True)
    for m, method in enumerate(["bm25", "ltr"]):
        rows, runs = [], []
        for i, qid in enumerate(sorted(qrels)):
            relevant = sorted(qrels[qid])
            ranked = relevant[: 1 + (i + m) % 2] + [d for d in doc_ids if d not in relevant][:8]
            if (i + m) % 3 == 0:
                ranked = ranked[::-1]
            runs.extend({"query_id": qid, "doc_id": d, "rank": r + 1, "score": 10.0 - r, "method": method}
                        for r, d in enumerate(ranked))
            value = round(0.4 + 0.5 * ((i * 7 + m * 3) % 10) / 10, 4)
            rows.append({"dataset": "sample", "method": method, "split": "test", "query_id": qid,
                         "measure": "ndcg@10", "value": value, "evaluated_at": now})
        for measure, value in {"ndcg@10": 0.61 + 0.1 * m, "recall@100": 0.9 + 0.05 * m}.items():
            rows.append({"dataset": "sample", "method": method, "split": "test", "query_id": "all",
                         "measure": measure, "value": value, "evaluated_at": now})
        pq.write_table(pa.Table.from_pylist(rows, schema=schemas.METRICS),
                       cache_dir / "metrics" / f"sample.{method}.test.parquet")
        pq.write_table(pa.Table.from_pylist(runs, schema=schemas.RUN),
                       cache_dir / "runs" / f"sample.{method}.test.run.parquet")
    return cache_dir


def fill_query_log(index_dir: Path) -> QueryLog:
    """A few days of searches and clicks, as the Analytics page would find them."""
    log = QueryLog(index_dir)
    start = datetime(2026, 11, 20, 8, tzinfo=UTC)
    texts = ["bm25", "向量检索", "reciprocal rank fusion", "bm25", "qwertyuiop", "hnsw", "bm25", "向量检索"]
    for i in range(48):
        text = texts[i % len(texts)]
        ids = [] if text == "qwertyuiop" else [f"en-{n:03d}" for n in range(1, 11)]
        qid = log.log_query(text, ["bm25", "hybrid", "ltr"][i % 3], None, 5.0 + (i * 37) % 90, ids, len(ids),
                            ts=start + timedelta(hours=3 * i))
        if ids and i % 2 == 0:
            log.log_click(qid, ids[i % 3], i % 3 + 1, ts=start + timedelta(hours=3 * i, seconds=20))
    return log


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ui_index(sample_index, settings, tmp_path_factory) -> Path:
    return ranked_index(sample_index, settings, tmp_path_factory.mktemp("ui") / "index")


@pytest.fixture
def plain_index(sample_index, tmp_path) -> Path:
    """A fresh copy without a ranker and with an empty query log."""
    return copy_index(sample_index, tmp_path / "plain")


@pytest.fixture(scope="module")
def eval_cache(tmp_path_factory, ui_index) -> Path:
    doc_ids = pq.read_table(next((ui_index / "versions").glob("*/documents.parquet"))).column("doc_id").to_pylist()
    return write_evaluation(tmp_path_factory.mktemp("eval-cache"), doc_ids)


@pytest.fixture
def use_index(monkeypatch, eval_cache):
    def use(path: Path | str | None, cache: Path | None = eval_cache) -> None:
        if path is None:
            monkeypatch.delenv("SOUSUO_INDEX", raising=False)
        else:
            monkeypatch.setenv("SOUSUO_INDEX", str(path))
        monkeypatch.setenv("SOUSUO_CACHE_DIR", str(cache))

    return use


def run(page: str) -> AppTest:
    at = AppTest.from_file(str(PAGES[page]), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def search(at: AppTest, query: str, mode: str | None = None) -> AppTest:
    if mode:
        at.sidebar.radio(key="mode").set_value(mode)
    at.text_input(key="q").input(query)
    return rerun(at)


def html_blocks(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if getattr(m.proto, "allow_html", False)]


def titles(at: AppTest) -> list[str]:
    found = []
    for block in html_blocks(at):
        match = re.match(r'<div class="ss-title">\d+\. (.*)</div>$', block, re.S)
        if match:
            found.append(re.sub(r"</?mark>", "", match.group(1)))
    return found


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def assert_inert(at: AppTest) -> None:
    """Only the library's escaped HTML with <mark> (and the static CSS) reaches unsafe_allow_html."""
    for block in html_blocks(at):
        tags = {t.lower() for t in re.findall(r"<\s*(/?[a-zA-Z]+)", block)}
        assert tags <= ALLOWED_TAGS, (tags, block[:200])
        assert "<script" not in block.lower() and "onerror" not in block.replace("onerror=&", "")


# -- Search -----------------------------------------------------------------------------------------------


def test_search_page_opens_on_an_index_summary(use_index, ui_index):
    use_index(ui_index)
    at = run("search")
    assert "72 documents" in at.info[0].value
    assert at.sidebar.radio(key="mode").value == "ltr"  # hybrid + ranker is the default
    assert at.sidebar.radio(key="mode").options == ["BM25", "Dense", "Hybrid", "Hybrid + ranker"]


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid", "ltr"])
def test_english_query_finds_its_document_in_every_mode(use_index, ui_index, mode):
    use_index(ui_index)
    at = search(run("search"), "reciprocal rank fusion", mode)
    assert titles(at)[0] == "Reciprocal Rank Fusion for Hybrid Search"
    status = at.caption[0].value
    assert re.match(r"[\d,]+ results · \d+ ms · ", status), status
    assert not any("Showing hybrid results instead" in i.value for i in at.info)
    assert '<div class="ss-snippet">' in "".join(html_blocks(at))


def test_chinese_query_finds_its_document(use_index, ui_index):
    use_index(ui_index)
    at = search(run("search"), "向量检索")
    assert "向量检索入门" in titles(at)[0]
    assert any("<mark>向量</mark>" in block or "<mark>向量检索</mark>" in block for block in html_blocks(at))


def test_explanation_shows_branches_matched_terms_and_contributions(use_index, ui_index):
    use_index(ui_index)
    at = search(run("search"), "reciprocal rank fusion", "ltr")
    why = at.expander[0]
    assert why.label == "Why this result?"
    branches = why.dataframe[0].value
    assert list(branches.columns) == ["branch", "rank", "score"]
    assert {"bm25", "dense"} <= set(branches["branch"]) and branches["rank"].min() == 1
    assert any(m.value.startswith("**Matched terms:**") and "fusion" in m.value.lower() for m in why.markdown)
    assert any("model score" in c.value for c in why.caption)
    assert len(why.get("vega_lite_chart")) == 1  # contributions as a bar chart


def test_without_a_ranker_the_page_starts_in_hybrid_and_says_once_how_to_train_one(use_index, plain_index):
    use_index(plain_index)
    at = run("search")
    assert at.sidebar.radio(key="mode").value == "hybrid"
    at = search(at, "reciprocal rank fusion")
    assert titles(at)[0] == "Reciprocal Rank Fusion for Hybrid Search"
    assert not at.info and not at.error  # no notice on every query, and no internal paths
    told = [c.value for c in at.sidebar.caption if "sousuo train" in c.value]
    assert len(told) == 1 and str(plain_index) not in told[0]
    assert QueryLog(plain_index).queries()[0]["mode"] == "hybrid"


def test_a_query_whose_words_the_corpus_lacks_is_told_results_come_from_meaning(use_index, plain_index):
    use_index(plain_index)
    at = search(run("search"), "qzxv blorptang", "hybrid")
    notes = [i.value for i in at.info if "No words of this query occur in the corpus" in i.value]
    assert len(notes) == 1 and "results come from meaning" in notes[0]  # once, not once per result


def test_ltr_falls_back_to_hybrid_with_a_plain_notice_when_there_is_no_ranker(use_index, plain_index):
    use_index(plain_index)
    at = search(run("search"), "reciprocal rank fusion", "ltr")
    (notice,) = [i.value for i in at.info if "Showing hybrid results instead" in i.value]
    assert str(plain_index) not in notice and "/" not in notice
    assert "Hybrid" in at.caption[0].value and titles(at)[0] == "Reciprocal Rank Fusion for Hybrid Search"


def test_every_query_and_click_is_logged_with_its_position(use_index, plain_index):
    use_index(plain_index)
    at = search(run("search"), "inverted index", "bm25")
    shown = titles(at)
    at.button(key="open-2").click()
    rerun(at)
    log = QueryLog(plain_index)
    (query,) = log.queries()
    assert query["text"] == "inverted index" and query["mode"] == "bm25" and query["result_offset"] == 0
    assert len(query["result_ids"]) == len(shown) and query["result_count"] >= len(shown)
    (click,) = log.clicks()
    assert click["query_id"] == query["query_id"] and click["position"] == 2
    assert click["doc_id"] == query["result_ids"][1]
    assert at.button(key="open-2").label == "Close"  # the document is open below its result
    assert len(log.queries()) == 1  # reruns do not log the same search again


def test_pagination_moves_through_results(use_index, plain_index):
    use_index(plain_index)
    at = search(run("search"), "search index query", "bm25")
    first_page = titles(at)
    (pager,) = at.get("pagination")
    pager.set_value(2)
    rerun(at)
    assert "page 2 of" in at.caption[0].value
    assert html_blocks(at)[1].startswith('<div class="ss-title">11. ')
    assert not set(titles(at)) & set(first_page)
    assert [q["result_offset"] for q in QueryLog(plain_index).queries()] == [0, 10]


def test_filters_show_facet_counts_and_restrict_results(use_index, ui_index):
    use_index(ui_index)
    at = search(run("search"), "bm25", "bm25")
    langs = at.sidebar.multiselect(key="f_lang")
    assert langs.options == ["en (7)", "zh (6)"]  # 13 documents contain "bm25": the counts are the query's
    assert at.sidebar.multiselect(key="f_source").options == [
        "blog (5)", "docs (2)", "kb (2)", "news (0)", "paper-notes (4)"]
    langs.select("zh")
    rerun(at)
    assert at.caption[1].value.split(" · ")[1] == "zh"
    assert all(c.value.split(" · ")[1] == "zh" for c in at.caption if c.value.count(" · ") >= 4)
    at.sidebar.date_input(key="f_dates").set_value((date(2024, 1, 1), date(2025, 12, 31)))
    rerun(at)
    years = [int(c.value.split(" · ")[2][:4]) for c in at.caption if c.value.count(" · ") >= 4]
    assert years and all(2024 <= year <= 2025 for year in years)
    assert any("dated in this range" in c.value for c in at.sidebar.caption)


def test_autocomplete_offers_pinyin_completions_and_fills_the_box(use_index, ui_index):
    use_index(ui_index)
    at = search(run("search"), "xiangliang")
    (pills,) = at.get("button_group")
    assert "向量检索" in pills.options
    pills.set_value("向量检索")
    rerun(at)
    assert at.text_input(key="q").value == "向量检索"
    assert "向量检索入门" in titles(at)[0]
    at = search(at, "xljs")
    assert at.get("button_group")[0].options[0] == "向量检索"


def test_did_you_mean_offers_a_correction(use_index, ui_index):
    use_index(ui_index)
    at = search(run("search"), "retreival", "bm25")
    assert any("No documents match" in w.value for w in at.warning)
    fix = at.button(key="dym-retrieval")
    fix.click()
    rerun(at)
    assert at.text_input(key="q").value == "retrieval" and titles(at)


def test_chinese_did_you_mean_uses_pinyin(use_index, ui_index):
    use_index(ui_index)
    at = search(run("search"), "向亮检索", "bm25")
    assert at.button(key="dym-向量检索")


@pytest.mark.parametrize("query", [
    "x" * 10_000,
    "'; DROP TABLE documents; -- SELECT * FROM postings",
    "<script>alert('x')</script><img src=x onerror=alert(1)> **bold** [link](javascript:alert(1))",
    '"unbalanced (quote AND',
])
def test_hostile_queries_are_inert(use_index, plain_index, query):
    use_index(plain_index)
    at = search(run("search"), query, "bm25")
    assert_inert(at)
    for element in list(at.markdown) + list(at.caption) + list(at.warning) + list(at.info):
        if not getattr(element.proto, "allow_html", False):
            assert "<script>" not in element.value and "](javascript" not in element.value
    at = search(at, "reciprocal rank fusion", "bm25")  # the index is untouched
    assert titles(at)[0] == "Reciprocal Rank Fusion for Hybrid Search"


def test_html_and_script_inside_documents_are_escaped(use_index, tmp_path):
    corpus = tmp_path / "hostile.jsonl"
    corpus.write_text(json.dumps({
        "_id": "evil-1", "title": "<script>alert('title')</script> Evil title",
        "text": "Plain words then <img src=x onerror=alert(1)> and <b>bold</b> and <script>steal()</script> evil.",
        "source": "<i>src</i>", "tags": ["<b>tag</b>"], "published_at": "2024-01-01",
    }) + "\n")
    index = tmp_path / "hostile-index"
    build_index([corpus], index, Settings(cache_dir=tmp_path / "cache", dense=DenseConfig(enabled=False)))
    use_index(index)
    at = search(run("search"), "evil", "bm25")
    assert_inert(at)
    blocks = "".join(html_blocks(at))
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;" in blocks
    assert "&lt;b&gt;bold&lt;/b&gt;" in blocks and "<b>" not in blocks
    at.button(key="open-1").click()
    at = rerun(at)
    assert_inert(at)
    body = [m.value for m in at.markdown if "onerror" in m.value]
    assert body and all(not getattr(m.proto, "allow_html", False) for m in at.markdown if "onerror" in m.value)
    assert "\\<img" in body[0]  # shown as text, not as an image


@pytest.mark.parametrize("page", sorted(PAGES))
def test_missing_index_is_a_clear_message_on_every_page(use_index, tmp_path, page):
    use_index(tmp_path / "nowhere")
    at = run(page)
    message = (list(at.error) + list(at.warning))[0].value
    assert "does not exist" in message and "sousuo build" in message
    use_index(None)
    at = run(page)
    assert "No index is configured" in (list(at.error) + list(at.warning))[0].value


def test_unpublished_and_damaged_indexes_are_clear_messages(use_index, plain_index, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    use_index(empty)
    assert "no published index" in run("search").error[0].value
    (plain_index / "CURRENT").write_text("20990101T000000-gone\n")
    use_index(plain_index)
    assert "cannot be opened" in run("search").error[0].value
    version = list_versions(plain_index)[0]
    (plain_index / "CURRENT").write_text(version + "\n")
    (plain_index / "versions" / version / "documents.parquet").write_bytes(b"not parquet")
    at = run("search")
    assert "damaged" in at.error[0].value or "could not be read" in at.error[0].value


# -- Analytics --------------------------------------------------------------------------------------------


def test_analytics_without_searches_says_so(use_index, plain_index):
    use_index(plain_index)
    assert "No searches logged yet" in run("analytics").info[0].value


def test_analytics_charts_the_query_log(use_index, plain_index):
    fill_query_log(plain_index)
    use_index(plain_index)
    at = run("analytics")
    assert [m.label for m in at.metric] == ["Searches", "Clicks", "Zero-result rate", "Median latency"]
    assert at.metric[0].value == "48" and at.metric[2].value == "12.5%"
    subheaders = [s.value for s in at.subheader]
    assert subheaders[:4] == ["Top queries", "Zero-result queries", "Latency percentiles over time",
                              "Click-through rate by position"]
    assert len(charts(at)) >= 5
    top = at.dataframe[0].value
    assert top.iloc[0]["text"] == "bm25" and top.iloc[0]["searches"] == 18
    assert at.dataframe[1].value.iloc[0]["text"] == "qwertyuiop"
    ctr = [d.value for d in at.dataframe if "ctr" in d.value.columns][0]
    assert list(ctr["position"][:3]) == [1, 2, 3] and ctr["clicks"].sum() > 0
    at.button_group(key="bucket").set_value("day")
    at = rerun(at)
    latency = [d.value for d in at.dataframe if "p99_ms" in d.value.columns and "bucket" in d.value.columns][0]
    assert len(latency) == 7  # 48 searches 3 hours apart from 08:00: seven calendar days
    assert latency["searches"].sum() == 48


# -- Index ------------------------------------------------------------------------------------------------


@pytest.fixture
def two_versions(plain_index, tmp_path):
    first = current_version(plain_index)
    manifest, _ = build_index([SAMPLE], plain_index, Settings(cache_dir=tmp_path / "cache",
                                                               dense=DenseConfig(enabled=False)))
    return plain_index, first, manifest.version


def test_index_page_lists_versions_languages_and_top_terms(use_index, two_versions):
    index, first, second = two_versions
    use_index(index)
    at = run("index")
    versions = at.dataframe[0].value
    assert list(versions["version"]) == [first, second] and list(versions["published"]) == [False, True]
    assert {"docs", "terms", "build s", "dense model"} <= set(versions.columns)
    per_lang = [d.value for d in at.dataframe if "lang" in d.value.columns and "docs" in d.value.columns][0]
    assert set(per_lang["lang"]) == {"en", "zh"} and per_lang["docs"].sum() == 72
    top = [d.value for d in at.dataframe if list(d.value.columns) == ["term", "df", "cf"]][0]
    assert len(top) == 25 and top["df"].is_monotonic_decreasing
    assert len(charts(at)) >= 3


def test_index_page_says_which_encoder_auto_chose_and_why(use_index, sample_index):
    use_index(sample_index)
    told = [c.value for c in run("index").caption if "Encoder chosen by dense.encoder" in c.value]
    assert told and "budget" in told[0]


def test_index_page_tells_updates_from_full_builds(use_index, plain_index, tmp_path, settings):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text((SAMPLE / "corpus.jsonl").read_text(encoding="utf-8")
                      + '{"_id": "late", "text": "an update written after the build"}\n', encoding="utf-8")
    update_index([corpus], plain_index, settings)
    use_index(plain_index)
    at = run("index")
    versions = at.dataframe[0].value
    assert list(versions["kind of build"]) == ["full", "update +1 ~0 -0"]
    assert list(versions["ann update"]) == ["built", "in-place"]


def test_rollback_and_publish_wait_for_a_confirmation(use_index, two_versions):
    index, first, second = two_versions
    use_index(index)
    at = run("index")
    at.button(key="rollback").click()
    at = rerun(at)
    assert any("Roll back to version" in w.value for w in at.warning)
    assert current_version(index) == second  # nothing happens before the confirmation
    at.button(key="confirm_no").click()
    at = rerun(at)
    assert current_version(index) == second and not at.warning
    at.button(key="rollback").click()
    at = rerun(at)
    at.button(key="confirm_yes").click()
    at = rerun(at)
    assert current_version(index) == first
    assert any(f"Version {first} is now published" in s.value.replace("\\", "") for s in at.success)
    at.selectbox(key="chosen_version").set_value(second)
    at = rerun(at)
    at.button(key="publish").click()
    at = rerun(at)
    assert current_version(index) == first
    at.button(key="confirm_yes").click()
    rerun(at)
    assert current_version(index) == second


# -- Evaluation -------------------------------------------------------------------------------------------


def test_evaluation_charts_methods_and_compares_two_per_query(use_index, ui_index):
    use_index(ui_index)
    at = run("evaluation")
    assert len(charts(at)) >= 2
    pivot = at.dataframe[0].value
    assert list(pivot.columns) == ["bm25", "ltr"] and pivot.loc["sample", "ltr"] == pytest.approx(0.71)
    assert at.selectbox(key="method_a").value == "bm25" and at.selectbox(key="method_b").value == "ltr"
    assert any("ltr beats bm25 on" in c.value for c in at.caption)
    comparison = at.dataframe[1].value
    assert {"query", "A: bm25", "B: ltr", "B − A"} <= set(comparison.columns) and len(comparison) == 24
    at.selectbox(key="drill_query").set_value("q01")
    at = rerun(at)
    side_by_side = at.dataframe[2:4]
    assert len(side_by_side) == 2
    for frame in side_by_side:
        assert list(frame.value.columns) == ["rank", "doc_id", "title", "relevance", "score"]
        assert frame.value["relevance"].max() >= 1
    assert any("reciprocal rank fusion" in m.value for m in at.markdown)  # the query's text


def test_evaluation_without_results_says_how_to_get_them(use_index, ui_index, tmp_path):
    use_index(ui_index, cache=tmp_path / "empty-cache")
    assert "No evaluation results yet" in run("evaluation").info[0].value


# -- SQL --------------------------------------------------------------------------------------------------

DOCUMENTED = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "analysis.md").read_text(), re.S)


@pytest.mark.parametrize("n", range(len(DOCUMENTED)))
def test_every_documented_query_is_one_click_away(use_index, ui_index, n):
    use_index(ui_index)
    at = run("sql")
    at.button(key=f"example-{n}").click()
    at = rerun(at)
    assert at.text_area(key="sql").value.strip() == DOCUMENTED[n].strip()
    assert not at.error, [e.value for e in at.error]
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value.columns) > 0


@pytest.mark.parametrize("sql", ["DROP VIEW documents", "CREATE TABLE x AS SELECT 1",
                                 "COPY documents TO '/tmp/sousuo-leak.csv'", "SELECT 1; DELETE FROM documents"])
def test_writing_statements_are_refused_with_a_clear_message(use_index, ui_index, sql):
    use_index(ui_index)
    at = run("sql")
    at.text_area(key="sql").input(sql)
    at.button(key="run").click()
    at = rerun(at)
    assert at.error[0].value.startswith("Refused:") and "read-only" in at.error[0].value
    assert not at.dataframe


def test_bad_sql_is_a_message_not_a_traceback(use_index, ui_index):
    use_index(ui_index)
    at = run("sql")
    at.text_area(key="sql").input("SELEKT nonsense FROM nowhere")
    at.button(key="run").click()
    at = rerun(at)
    assert at.error[0].value.startswith("DuckDB:")


def test_the_ui_reads_new_clicks_into_its_click_graph_once_due(tmp_path, sample_index, settings):
    from app.common import refresh_click_graph_every
    from pipeline.index.querylog import QueryLog
    from pipeline.searcher import Searcher

    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    searcher = Searcher.open(index, settings)
    assert searcher.click_graph.empty
    log = QueryLog(index)
    log.log_click(log.log_query("hnsw", "hybrid", None, 1.0, ["en-015"], 1), "en-015", 1)
    refresh_click_graph_every(searcher, 3600)
    assert searcher.click_graph.empty  # not due yet
    refresh_click_graph_every(searcher, 0)
    assert not searcher.click_graph.empty
