"""End to end in a real headless Chromium: the UI served by `app/launch.py` on the sample index.

Chromium is Debian's `chromium` package at /usr/bin/chromium (the Makefile installs it); Playwright only drives
it, so `playwright install` is never needed. Screenshots go to tests/artifacts/ (ignored by git) and one per
page to docs/img/ for docs/ui.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, free_port
from test_app import fill_query_log, ranked_index, write_evaluation

from pipeline.index.querylog import QueryLog

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_IMG = ROOT / "docs" / "img"
SLOW = 180_000  # ms: the first hybrid query loads the encoder, and the machine may be busy
BOX = "Search in English"


def settle(page) -> None:
    """Wait until the app has finished its run: no running indicator, no spinner."""
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").first.wait_for(state="hidden", timeout=SLOW)
    page.locator("[data-testid='stSpinner']").first.wait_for(state="hidden", timeout=SLOW)
    page.wait_for_timeout(1_200)  # let charts and fonts settle


def shoot(page, name: str, docs: bool = False) -> None:
    settle(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    # docs/ui.md's screenshots are refreshed on request only, so `make test` leaves the tree clean.
    if docs and os.environ.get("SOUSUO_UPDATE_SCREENSHOTS"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / f"{name}.png")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's package with `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    sync_api.expect.set_options(timeout=SLOW)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(browser, sample_index, settings, tmp_path_factory):
    """The UI on a free port against a copy of the sample index (with a ranker, a query log and eval results)."""
    from app import launch

    root = tmp_path_factory.mktemp("browser")
    ranked = ranked_index(sample_index, settings, root / "ranked")
    index = root / "index"
    shutil.copytree(ranked, index, ignore=shutil.ignore_patterns("querylog"))
    fill_query_log(index)
    doc_ids = pq.read_table(next((index / "versions").glob("*/documents.parquet"))).column("doc_id").to_pylist()
    cache = write_evaluation(root / "cache", doc_ids)
    port = free_port()
    env = launch.environment(index)
    env["SOUSUO_CACHE_DIR"] = str(cache)
    log_path = root / "streamlit.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(launch.command(index, port), env=env, cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"the UI exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the UI did not answer on {url}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, index
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_command_serves_on_localhost_without_usage_stats():
    from app import launch

    argv = launch.command("/some/index", 8555)
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("app/Search.py")
    for flag, value in [("--server.headless", "true"), ("--server.address", "127.0.0.1"),
                        ("--browser.gatherUsageStats", "false"), ("--server.port", "8555")]:
        assert argv[argv.index(flag) + 1] == value
    assert launch.environment("/some/index")["SOUSUO_INDEX"] == "/some/index"


def test_search_in_english_and_chinese_with_explanations_and_pinyin_autocomplete(browser, served):
    from playwright.sync_api import expect

    url, index = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(SLOW)
    page.goto(url, wait_until="domcontentloaded")
    box = page.get_by_placeholder(BOX)
    box.wait_for()
    titles = page.locator(".ss-title")

    # English, with the default mode (hybrid + ranker).
    box.fill("reciprocal rank fusion")
    box.press("Enter")
    expect(titles.first).to_contain_text("Reciprocal Rank Fusion for Hybrid Search")
    expect(page.get_by_text("Showing hybrid results instead")).to_have_count(0)
    page.get_by_text("Why this result?").first.click()
    expect(page.get_by_text("Found by").first).to_be_visible()
    expect(page.get_by_text("Top feature contributions").first).to_be_visible()
    expect(page.locator(".st-key-hit-1 [data-testid='stVegaLiteChart']").first).to_be_visible()
    shoot(page, "search", docs=True)

    # A click on a result is logged with its position.
    page.locator(".st-key-open-1 button").first.click()
    expect(page.locator(".st-key-open-1 button").first).to_contain_text("Close")
    clicks = [c for c in QueryLog(index).clicks() if c["position"] == 1 and c["doc_id"] == "en-018"]
    assert clicks

    # Chinese.
    box.fill("向量检索")
    box.press("Enter")
    expect(titles.first).to_contain_text("向量检索入门")
    shoot(page, "search-zh", docs=True)

    # Autocomplete from a pinyin prefix, then pick the suggestion.
    box.fill("")
    box.press_sequentially("xiangliang", delay=40)
    suggestion = page.get_by_role("radio", name="向量检索", exact=True)
    expect(suggestion).to_be_visible()
    shoot(page, "autocomplete", docs=True)
    suggestion.click()
    expect(box).to_have_value("向量检索")
    expect(titles.first).to_contain_text("向量检索入门")
    page.close()


@pytest.mark.parametrize("path, heading, ready", [
    ("Analytics", "Top queries", "Click-through rate by position"),
    ("Index", "Versions", "Top terms by document frequency"),
    ("Evaluation", "Per-query comparison", "beats"),
])
def test_other_pages_render(browser, served, path, heading, ready):
    from playwright.sync_api import expect

    url, _ = served
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.set_default_timeout(SLOW)
    page.goto(f"{url}/{path}", wait_until="domcontentloaded")
    expect(page.get_by_text(heading, exact=True).first).to_be_visible()
    expect(page.get_by_text(ready).first).to_be_visible()
    expect(page.locator("[data-testid='stVegaLiteChart']").first).to_be_visible()
    expect(page.locator("[data-testid='stException']")).to_have_count(0)
    shoot(page, path.lower(), docs=True)
    page.close()


def test_sql_page_runs_an_example_and_refuses_writes(browser, served):
    from playwright.sync_api import expect

    url, _ = served
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(SLOW)
    page.goto(f"{url}/SQL", wait_until="domcontentloaded")
    page.locator(".st-key-example-0 button").first.click()
    expect(page.locator("[data-testid='stDataFrame']").first).to_be_visible()
    expect(page.locator("textarea")).to_contain_text("FROM terms")
    shoot(page, "sql", docs=True)
    editor = page.locator("textarea")
    editor.fill("DROP VIEW documents")
    editor.press("Control+Enter")
    page.wait_for_timeout(500)
    page.locator(".st-key-run button").first.click()
    expect(page.get_by_text("Refused:").first).to_be_visible()
    shoot(page, "sql-refused")
    page.close()
