"""`sousuo api` over real HTTP: the native /v1 API, operator endpoints, limits and safety, live version swap
under load, and several worker processes."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from api_support import (
    INDEX_NAME,
    ROOT,
    SAMPLE,
    api_settings,
    free_port,
    running,
    served_copy,
    wait_ready,
)
from pydantic import SecretStr

from pipeline.config import Settings
from pipeline.constants import MAX_QUERY_CHARS, SEARCH_MODES
from pipeline.eval.beir import BeirDataset
from pipeline.index.build import build_index
from pipeline.index.querylog import QueryLog
from pipeline.index.store import publish
from pipeline.rank.training import train_from_judgments
from pipeline.searcher import Searcher
from pipeline.serving.api.app import create_app

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def index(sample_index, settings, tmp_path_factory):
    return served_copy(sample_index, settings, tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def url(index, settings):
    with running(api_settings(settings, index)) as base:
        yield base


def get(url: str, path: str, **params) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params, timeout=60)


@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_search_answers_in_every_mode_with_the_served_version(url, mode):
    response = get(url, "/v1/search", q="向量检索", mode=mode, k=3)
    body = response.json()
    assert response.status_code == 200 and body["mode"] == mode and len(body["results"]) == 3
    assert body["version"] == response.headers["X-Sousuo-Version"]


def test_get_and_post_search_agree(url):
    posted = httpx.post(f"{url}/v1/search", json={"q": "inverted index", "k": 4, "lang": ["en"]}, timeout=60).json()
    got = get(url, "/v1/search", q="inverted index", k=4, lang="en").json()
    assert [r["doc_id"] for r in posted["results"]] == [r["doc_id"] for r in got["results"]]


def test_search_filters_pages_and_explains(url):
    first = get(url, "/v1/search", q="检索", k=4, lang="zh", explain="true").json()
    assert all(r["lang"] == "zh" and r["explanation"] for r in first["results"])
    second = get(url, "/v1/search", q="检索", k=2, offset=2, lang="zh").json()
    assert [r["doc_id"] for r in second["results"]] == [r["doc_id"] for r in first["results"][2:]]


def test_suggest_completes_pinyin_initials(url):
    suggestions = get(url, "/v1/suggest", q="xljs").json()["suggestions"]
    assert "向量检索" in [s["text"] for s in suggestions]


def test_did_you_mean_corrects_a_misspelling(url):
    assert "inverted" in get(url, "/v1/did-you-mean", q="invertd").json()["corrections"]


def test_a_document_by_id_and_an_unknown_one(url):
    assert get(url, "/v1/documents/en-001").json()["title"].startswith("How an inverted index")
    missing = get(url, "/v1/documents/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "index_not_found"


def test_similar_documents_exclude_the_document_itself(url, index, settings):
    body = get(url, "/v1/documents/zh-011/similar", k=5).json()
    ids = [r["doc_id"] for r in body["results"]]
    assert len(ids) == 5 and "zh-011" not in ids and body["terms"]
    reader = Searcher.open(index, settings).reader
    nearest, _ = reader.dense.rank(reader.dense.doc_vector(reader.doc_ids.index("zh-011")), 2)
    assert reader.doc_ids[nearest[1]] in ids  # the closest other vector is among them: dense neighbours count


def test_impressions_clicks_and_logged_searches_reach_the_query_log(url, index):
    log = QueryLog(index)
    before = log.count()
    query_id = httpx.post(f"{url}/v1/impressions", json={"query": "bm25", "result_ids": ["en-003", "en-004"]},
                          timeout=30).json()["query_id"]
    assert httpx.post(f"{url}/v1/clicks", json={"query_id": query_id, "doc_id": "en-004", "position": 2},
                      timeout=30).status_code == 201
    logged = get(url, "/v1/search", q="bm25", log="true").json()
    after = log.count()
    assert after == {"queries": before["queries"] + 2, "clicks": before["clicks"] + 1} and logged["query_id"]


def test_versions_lists_the_served_one(url):
    body = get(url, "/v1/versions").json()
    assert body["served"] == body["published"] and [v["version"] for v in body["versions"] if v["published"]]


def test_health_readiness_openapi_and_docs(url):
    assert get(url, "/healthz").json() == {"status": "ok"}
    assert get(url, "/readyz").json()["documents"] == 72
    assert "/v1/search" in get(url, "/openapi.json").json()["paths"]
    assert get(url, "/docs").status_code == 200


def test_metrics_count_requests_latency_by_mode_errors_and_the_served_version(url):
    get(url, "/v1/search", q="index", mode="bm25")
    get(url, "/v1/documents/nope")
    text = get(url, "/metrics").text
    assert 'sousuo_api_requests_total{method="GET",route="/v1/search",status="200"}' in text
    assert 'sousuo_api_search_seconds_bucket{le="0.01",mode="bm25"}' in text
    assert 'sousuo_api_errors_total{type="index_not_found"}' in text
    version = get(url, "/readyz").json()["version"]
    assert f'sousuo_api_served_version{{version="{version}"}} 1.0' in text
    assert "sousuo_api_served_documents 72.0" in text


def test_unknown_fields_and_wrong_types_are_400s_naming_the_field(url):
    unknown = httpx.post(f"{url}/v1/search", json={"q": "x", "colour": "red"}, timeout=30)
    assert unknown.status_code == 400 and unknown.json()["error"]["fields"][0]["field"] == "body.colour"
    wrong = httpx.post(f"{url}/v1/search", json={"q": "x", "k": "ten"}, timeout=30)
    assert wrong.status_code == 400 and wrong.json()["error"]["fields"][0]["field"] == "body.k"
    broken = httpx.post(f"{url}/v1/search", content=b'{"q": ', headers={"content-type": "application/json"},
                        timeout=30)
    assert broken.status_code == 400


def test_query_string_parameters_are_validated_and_named_like_body_fields(url):
    unknown = get(url, "/v1/search", q="x", colour="red")
    assert unknown.status_code == 400 and unknown.json()["error"]["fields"][0]["field"] == "query.colour"
    wrong = get(url, "/v1/search", q="x", k="ten")
    assert wrong.status_code == 400 and wrong.json()["error"]["fields"][0]["field"] == "query.k"
    assert get(url, "/v1/suggest", q="x", limit=0).json()["error"]["fields"][0]["field"] == "query.limit"


def test_repeated_query_parameters_fill_list_filters(url):
    def ids(tags) -> set[str]:
        return {r["doc_id"] for r in get(url, "/v1/search", q="index", k=50, tag=tags).json()["results"]}

    bm25, ranking = ids("bm25"), ids("ranking")
    assert bm25 != ranking and ids(["bm25", "ranking"]) == bm25 | ranking


def test_openapi_documents_the_query_parameters_of_get_routes(url):
    parameters = get(url, "/openapi.json").json()["paths"]["/v1/search"]["get"]["parameters"]
    assert {"q", "mode", "k", "tag", "since"} <= {p["name"] for p in parameters if p["in"] == "query"}


def test_caps_on_query_length_and_result_window(url):
    assert get(url, "/v1/search", q="a" * (MAX_QUERY_CHARS + 1)).status_code == 400
    assert get(url, "/v1/search", q="index", k=10, offset=9_995).status_code == 400


def test_binds_to_loopback_and_keeps_cors_off_by_default(url):
    assert Settings().api.host == "127.0.0.1"
    response = httpx.get(f"{url}/healthz", headers={"Origin": "https://example.com"}, timeout=30)
    assert "access-control-allow-origin" not in response.headers


def test_cors_answers_only_the_configured_origins(index, settings):
    from fastapi.testclient import TestClient

    app = create_app(api_settings(settings, index, cors_origins=["https://app.example"]))
    with TestClient(app) as client:
        allowed = client.get("/healthz", headers={"Origin": "https://app.example"})
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers


@pytest.fixture(scope="module")
def guarded(index, settings):
    """A server with an API key, a small body cap and a timeout no real search meets."""
    guarded_settings = api_settings(settings, index, max_body_bytes=2_000, timeout_s=0.001)
    guarded_settings = guarded_settings.model_copy(update={"api_key": SecretStr(KEY)})
    with running(guarded_settings) as base:
        yield base


def test_without_the_key_every_route_is_401_in_its_own_shape(guarded):
    native = httpx.get(f"{guarded}/v1/versions", timeout=30)
    assert native.status_code == 401 and native.json()["error"]["type"] == "security_exception"
    es = httpx.post(f"{guarded}/{INDEX_NAME}/_search", json={}, headers={"X-API-Key": "wrong"}, timeout=30)
    assert es.status_code == 401 and es.json()["error"]["root_cause"][0]["type"] == "security_exception"
    assert httpx.get(f"{guarded}/healthz", timeout=30).status_code == 401
    assert httpx.get(f"{guarded}/v1/versions", headers={"X-API-Key": KEY}, timeout=30).status_code == 200


def test_the_elasticsearch_client_sends_the_key(guarded):
    import elasticsearch

    client = elasticsearch.Elasticsearch(guarded, api_key=KEY, request_timeout=30)
    assert client.indices.get_mapping(index=INDEX_NAME)[INDEX_NAME]["mappings"]


def test_a_body_over_the_cap_is_400(guarded):
    response = httpx.post(f"{guarded}/v1/search", json={"q": "x" * 3_000}, headers={"X-API-Key": KEY}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["type"] == "request_too_large"


def test_a_search_past_the_timeout_answers_timed_out(guarded):
    headers = {"X-API-Key": KEY}
    native = httpx.get(f"{guarded}/v1/search", params={"q": "向量检索", "mode": "ltr"}, headers=headers, timeout=30)
    assert native.status_code == 504 and native.json()["error"]["type"] == "timeout"
    es = httpx.post(f"{guarded}/{INDEX_NAME}/_search", headers=headers, timeout=30, json={
        "knn": {"field": "v", "k": 3, "query_vector_builder": {"text_embedding": {"model_text": "向量检索 " * 50}}}})
    assert es.status_code == 200 and es.json()["timed_out"] is True
    assert httpx.get(f"{guarded}/readyz", headers=headers, timeout=30).status_code == 200  # the worker is free


def test_work_run_on_a_thread_past_the_timeout_answers_timed_out(guarded):
    # Similar documents have no search stages to check a deadline at; they run on a thread that the timeout
    # answers for, and the worker stays free.
    headers = {"X-API-Key": KEY}
    response = httpx.get(f"{guarded}/v1/documents/en-001/similar", params={"k": 100}, headers=headers, timeout=30)
    assert response.status_code == 504 and response.json()["error"]["type"] == "timeout"
    assert httpx.get(f"{guarded}/readyz", headers=headers, timeout=30).status_code == 200


# -- live version swap ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_versions(index, settings, tmp_path_factory):
    """The served version and a smaller one built beside it (cached embeddings), unpublished."""
    subset = tmp_path_factory.mktemp("subset") / "corpus.jsonl"
    subset.write_text("".join((SAMPLE / "corpus.jsonl").read_text().splitlines(keepends=True)[:60]))
    first = Searcher.open(index, settings).reader.version.manifest.version
    second = build_index([subset], index, settings, publish_version=False)[0].version
    return first, second


def expected_results(index, settings, versions, query: str) -> dict[str, list[tuple[str, float]]]:
    out = {}
    for version in versions:
        hits = Searcher.open(index, settings, version).search(query, 5, with_snippets=False).hits
        out[version] = [(h.doc_id, round(h.score, 6)) for h in hits]
    return out


def test_a_publish_is_served_within_a_second_and_the_old_version_is_freed(index, settings, two_versions):
    first, second = two_versions
    app = create_app(api_settings(settings, index))
    with running(api_settings(settings, index), app) as base:
        old = weakref.ref(app.state.served.current)
        publish(index, second)
        published = time.monotonic()
        while get(base, "/readyz").json()["version"] != second:
            assert time.monotonic() - published < 1.0
            time.sleep(0.02)
        gc.collect()
        assert old() is None
    publish(index, first)


def test_swapping_versions_under_load_fails_no_request_and_mixes_none(index, settings, two_versions):
    first, second = two_versions
    query = "index search"
    expected = expected_results(index, settings, two_versions, query)
    assert expected[first] != expected[second]
    failures, seen = [], []
    stop = threading.Event()

    def client_loop(es: bool) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                if es:
                    response = client.post(f"/{INDEX_NAME}/_search", json={"query": {"match": {"text": query}},
                                                                           "size": 5, "_source": False})
                else:
                    response = client.get("/v1/search", params={"q": query, "k": 5, "snippets": "false"})
                if response.status_code != 200:
                    failures.append(response.status_code)
                    continue
                body = response.json()
                rows = [(h["_id"], round(h["_score"], 6)) for h in body["hits"]["hits"]] if es else \
                    [(r["doc_id"], r["score"]) for r in body["results"]]
                version = response.headers["X-Sousuo-Version"]
                seen.append(version)
                if rows != expected[version]:
                    failures.append(f"{version}: {rows}")

    with running(api_settings(settings, index)) as base, ThreadPoolExecutor(4) as pool:
        loops = [pool.submit(client_loop, i % 2 == 0) for i in range(4)]
        for i in range(10):
            publish(index, second if i % 2 == 0 else first)
            time.sleep(0.3)
        stop.set()
        for loop in loops:
            loop.result()
    publish(index, first)
    assert failures == [] and {first, second} <= set(seen)


def test_a_newly_published_ranker_is_picked_up(index, settings, url):
    before = get(url, "/v1/versions").json()["ranker"]
    searcher = Searcher.open(index, settings)
    tuned = searcher.settings.model_copy(update={"ranker": searcher.settings.ranker.model_copy(update={"seed": 99})})
    ranker = train_from_judgments(Searcher.open(index, tuned).reader, BeirDataset.load(SAMPLE),
                                  searcher.fusion_weights, "test")
    assert ranker.card.model_id != before
    deadline = time.monotonic() + 1.0
    while get(url, "/v1/versions").json()["ranker"] != ranker.card.model_id:
        assert time.monotonic() < deadline
        time.sleep(0.02)


# -- several workers ---------------------------------------------------------------------------------------


def test_two_workers_share_the_query_log_and_sum_their_metrics(index, settings):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOUSUO_CACHE_DIR": str(settings.cache_dir)}
    server = subprocess.Popen([sys.executable, "-m", "flows.cli", "api", "--index", str(index), "--port", str(port),
                               "--workers", "2", "--name", INDEX_NAME], env=env, cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout=180)
        before = QueryLog(index).count()["clicks"]

        def click(i: int) -> int:
            return httpx.post(f"{base}/v1/clicks", json={"query_id": f"q{i}", "doc_id": "en-001", "position": 1},
                              timeout=60).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(click, range(40))) == {201}
        assert QueryLog(index).count()["clicks"] == before + 40
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        assert 'sousuo_api_requests_total{method="POST",route="/v1/clicks",status="201"} 40.0' in metrics
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_error_types_are_snake_case_names_with_acronyms_kept_whole(url):
    assert get(url, "/v1/nope").json()["error"] == {"type": "http_exception", "message": "Not Found"}
    not_utf8 = httpx.post(f"{url}/v1/search", content=b'{"q": "\xff"}', headers={"content-type": "application/json"},
                          timeout=30)
    assert not_utf8.status_code == 400 and not_utf8.json()["error"]["type"] == "http_exception"
