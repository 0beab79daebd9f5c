"""The official elasticsearch (9.x) and opensearch-py clients, unmodified, against `sousuo api` over real HTTP:
every item of the supported query DSL subset, the response shapes, and the errors."""

from __future__ import annotations

import elasticsearch
import elasticsearch.helpers
import httpx
import numpy as np
import opensearchpy
import opensearchpy.helpers
import pytest
from api_support import INDEX_NAME, api_settings, running, served_copy

from pipeline.searcher import Searcher


@pytest.fixture(scope="module")
def api(sample_index, settings, tmp_path_factory):
    index = served_copy(sample_index, settings, tmp_path_factory.mktemp("api-es"))
    with running(api_settings(settings, index)) as url:
        yield url, Searcher.open(index, settings)


class Client:
    """One interface over both clients; errors come back as (status, Elasticsearch error type)."""

    def __init__(self, kind: str, url: str):
        self.kind = kind
        if kind == "elasticsearch":
            self.client = elasticsearch.Elasticsearch(url, request_timeout=60)
        else:
            self.client = opensearchpy.OpenSearch(hosts=[url], timeout=60)

    def search(self, body: dict, index: str = INDEX_NAME) -> dict:
        return dict(self.client.search(index=index, body=body))

    def ids(self, body: dict) -> list[str]:
        return [hit["_id"] for hit in self.search(body)["hits"]["hits"]]

    def error(self, call) -> tuple[int, str]:
        try:
            call()
        except elasticsearch.ApiError as error:
            return error.meta.status, _type(error.body)
        except opensearchpy.TransportError as error:
            return error.status_code, _type(error.info)
        raise AssertionError("the request did not fail")


def _type(body) -> str | None:
    """The Elasticsearch error type; None for a body that is not an error (a document that was not found)."""
    return body.get("error", {}).get("type") if isinstance(body, dict) else None


@pytest.fixture(params=["elasticsearch", "opensearch"])
def client(request, api) -> Client:
    return Client(request.param, api[0])


def native(api, **params) -> dict:
    return httpx.get(f"{api[0]}/v1/search", params=params, timeout=60).json()


def sources(response: dict) -> list[dict]:
    return [hit["_source"] for hit in response["hits"]["hits"]]


def test_the_root_reports_elasticsearch_8_or_later(client):
    info = dict(client.client.info())
    assert int(info["version"]["number"].split(".")[0]) >= 8
    assert client.client.ping()


def test_match_scores_equal_the_native_api(client, api):
    response = client.search({"query": {"match": {"text": "inverted index"}}, "size": 5})
    expected = native(api, q="inverted index", k=5)
    assert [(h["_id"], round(h["_score"], 6)) for h in response["hits"]["hits"]] == \
        [(r["doc_id"], r["score"]) for r in expected["results"]]
    assert response["hits"]["total"] == {"value": expected["total_matches"], "relation": "eq"}
    assert {"took", "timed_out", "_shards"} <= set(response)
    assert response["hits"]["hits"][0]["_index"] == INDEX_NAME


def test_match_operator_and_requires_every_word(client):
    any_word = client.search({"query": {"match": {"text": "inverted index"}}, "size": 100})
    every_word = client.search({"query": {"match": {"text": {"query": "inverted index", "operator": "and"}}},
                                "size": 100})
    assert 0 < every_word["hits"]["total"]["value"] < any_word["hits"]["total"]["value"]
    for source in sources(every_word):
        text = (source["title"] + " " + source["body"]).lower()
        assert "invert" in text and "index" in text


def test_minimum_should_match_counts_words(client):
    def total(msm) -> int:
        body = {"query": {"match": {"text": {"query": "inverted index fusion", "minimum_should_match": msm}}}}
        return client.search(body)["hits"]["total"]["value"]

    every = client.search({"query": {"match": {"text": {"query": "inverted index fusion", "operator": "and"}}}})
    assert total("1") > total("2") >= total(3)
    assert total("100%") == every["hits"]["total"]["value"]


def test_multi_match_boosts_a_field_and_best_fields_takes_the_best(client):
    query = "inverted index"
    best = client.search({"query": {"multi_match": {"query": query, "fields": ["title^3", "body"]}}})
    most = client.search({"query": {"multi_match": {"query": query, "fields": ["title^3", "body"],
                                                    "type": "most_fields"}}})
    assert "index" in best["hits"]["hits"][0]["_source"]["title"].lower()
    best_scores = {h["_id"]: h["_score"] for h in best["hits"]["hits"]}
    for hit in most["hits"]["hits"]:
        if hit["_id"] in best_scores:
            assert hit["_score"] >= best_scores[hit["_id"]] - 1e-9


def test_match_phrase_keeps_the_words_together(client):
    response = client.search({"query": {"match_phrase": {"text": "inverted index"}}, "size": 50})
    assert response["hits"]["total"]["value"] > 0
    for source in sources(response):
        assert "inverted index" in (source["title"] + " " + source["body"]).lower()


def test_query_string_is_the_project_syntax(client, api):
    query = '"inverted index" -fusion'
    response = client.search({"query": {"query_string": {"query": query}}, "size": 5})
    expected = native(api, q=query, k=5)
    assert [(h["_id"], round(h["_score"], 6)) for h in response["hits"]["hits"]] == \
        [(r["doc_id"], r["score"]) for r in expected["results"]]


def test_bool_combines_text_and_metadata_clauses(client):
    body = {"query": {"bool": {
        "must": [{"match": {"text": "index"}}],
        "should": [{"match": {"title": "inverted"}}],
        "must_not": [{"term": {"lang": "zh"}}],
        "filter": [{"terms": {"source": ["kb", "blog"]}}],
    }}, "size": 50}
    response = client.search(body)
    assert response["hits"]["total"]["value"] > 0
    for source in sources(response):
        assert source["lang"] != "zh" and source["source"] in ("kb", "blog")


def test_bool_minimum_should_match_over_should_clauses(client):
    clauses = [{"match": {"text": "inverted"}}, {"match": {"text": "index"}}, {"match": {"text": "fusion"}}]
    one = client.search({"query": {"bool": {"should": clauses}}})["hits"]["total"]["value"]
    two = client.search({"query": {"bool": {"should": clauses, "minimum_should_match": 2}}})["hits"]["total"]["value"]
    assert one > two > 0


def test_term_terms_range_and_exists_filter_metadata(client):
    zh = client.search({"query": {"term": {"lang": "zh"}}, "size": 100})
    assert zh["hits"]["total"]["value"] > 0 and all(s["lang"] == "zh" for s in sources(zh))
    tagged = client.search({"query": {"terms": {"tags": ["ann", "bm25"]}}, "size": 100})
    assert all({"ann", "bm25"} & set(s["tags"]) for s in sources(tagged))
    recent = client.search({"query": {"range": {"published_at": {"gte": "2023-01-01", "lt": "2024-01-01"}}},
                            "size": 100})
    assert recent["hits"]["total"]["value"] > 0
    assert all(s["published_at"].startswith("2023") for s in sources(recent))
    dated = client.search({"query": {"exists": {"field": "published_at"}}, "size": 0})
    assert dated["hits"]["total"]["value"] == sum(1 for s in sources(client.search({"size": 100}))
                                                  if s["published_at"])


def test_match_all_returns_every_document(client, api):
    response = client.search({"query": {"match_all": {}}, "size": 3})
    assert response["hits"]["total"]["value"] == api[1].reader.n_docs
    assert len(response["hits"]["hits"]) == 3


def test_knn_with_a_vector_equals_knn_with_text(client, api):
    vector = api[1].reader.encode_query("向量检索").tolist()
    by_vector = client.ids({"knn": {"field": "vector", "query_vector": vector, "k": 5, "num_candidates": 20}})
    by_text = client.ids({"knn": {"field": "vector", "k": 5, "query_vector_builder": {
        "text_embedding": {"model_text": "向量检索"}}}})
    assert by_vector == by_text and len(by_text) == 5


def test_knn_vector_of_the_wrong_dimension_is_refused(client):
    assert client.error(lambda: client.search({"knn": {"field": "vector", "query_vector": [0.1, 0.2], "k": 3}})) == \
        (400, "illegal_argument_exception")


def test_knn_filter_applies_to_the_neighbours(client):
    body = {"knn": {"field": "vector", "k": 5, "filter": {"term": {"lang": "en"}},
                    "query_vector_builder": {"text_embedding": {"model_text": "向量检索"}}}}
    assert all(s["lang"] == "en" for s in sources(client.search(body)))


def test_rrf_retriever_fuses_standard_and_knn(client):
    body = {"retriever": {"rrf": {"retrievers": [
        {"standard": {"query": {"match": {"text": "向量检索"}}}},
        {"knn": {"field": "vector", "k": 10, "query_vector_builder": {"text_embedding": {"model_text": "向量检索"}}}},
    ], "rank_constant": 60}}, "size": 5}
    hits = client.search(body)["hits"]["hits"]
    assert len(hits) == 5 and hits[0]["_score"] <= 2 / 61 + 1e-9
    assert [h["_score"] for h in hits] == sorted((h["_score"] for h in hits), reverse=True)


def test_learning_to_rank_rescore_equals_native_ltr(client, api):
    model_id = api[1].ranker.card.model_id
    body = {"query": {"match": {"text": "vector search"}}, "size": 5,
            "rescore": {"window_size": 100, "learning_to_rank": {"model_id": model_id}}}
    expected = native(api, q="vector search", k=5, mode="ltr")
    assert [(h["_id"], round(h["_score"], 6)) for h in client.search(body)["hits"]["hits"]] == \
        [(r["doc_id"], r["score"]) for r in expected["results"]]
    unknown = {**body, "rescore": {"learning_to_rank": {"model_id": "no-such-model"}}}
    assert client.error(lambda: client.search(unknown))[0] == 404


def test_from_and_size_page_through_the_ranking(client):
    query = {"match": {"text": "search"}}
    first_four = client.ids({"query": query, "size": 4})
    assert client.ids({"query": query, "from": 2, "size": 2}) == first_four[2:]


def test_a_window_past_10000_is_refused(client):
    assert client.error(lambda: client.search({"query": {"match_all": {}}, "from": 9_995, "size": 10})) == \
        (400, "illegal_argument_exception")


def test_sort_by_published_at(client):
    response = client.search({"query": {"match": {"text": "search"}}, "sort": [{"published_at": "desc"}],
                              "size": 10})
    dates = [hit["sort"][0] for hit in response["hits"]["hits"]]
    assert dates == sorted(dates, reverse=True) and response["hits"]["hits"][0]["_score"] is None


def test_source_includes_and_excludes(client):
    only = sources(client.search({"query": {"match_all": {}}, "_source": {"includes": ["title", "lang"]}}))
    assert all(set(s) == {"title", "lang"} for s in only)
    without = sources(client.search({"query": {"match_all": {}}, "_source": {"excludes": ["body"]}}))
    assert all("body" not in s and "title" in s for s in without)


def test_highlight_tags_fragment_size_and_count(client):
    body = {"query": {"match": {"text": "index"}}, "size": 3, "highlight": {
        "pre_tags": ["[["], "post_tags": ["]]"], "fields": {"body": {"fragment_size": 40, "number_of_fragments": 2}}}}
    for hit in client.search(body)["hits"]["hits"]:
        fragments = hit["highlight"]["body"]
        assert 1 <= len(fragments) <= 2
        assert all("[[" in f and "]]" in f and len(f.replace("[[", "").replace("]]", "")) <= 40 for f in fragments)


def test_track_total_hits(client):
    query = {"match": {"text": "search"}}
    assert "total" not in client.search({"query": query, "track_total_hits": False})["hits"]
    capped = client.search({"query": query, "track_total_hits": 2})["hits"]["total"]
    assert capped == {"value": 2, "relation": "gte"}


def test_explain_returns_an_explanation_per_hit(client):
    for hit in client.search({"query": {"match": {"text": "index"}}, "explain": True, "size": 2})["hits"]["hits"]:
        assert hit["_explanation"]["value"] == pytest.approx(hit["_score"])
        assert hit["_explanation"]["details"]


def test_terms_and_date_histogram_aggregations(client):
    response = client.search({"query": {"match_all": {}}, "size": 0, "aggs": {
        "langs": {"terms": {"field": "lang"}},
        "years": {"date_histogram": {"field": "published_at", "calendar_interval": "year"}},
    }})
    total = response["hits"]["total"]["value"]
    langs = response["aggregations"]["langs"]
    assert sum(b["doc_count"] for b in langs["buckets"]) + langs["sum_other_doc_count"] == total
    assert {b["key"] for b in langs["buckets"]} == {"en", "zh"}
    years = response["aggregations"]["years"]["buckets"]
    assert years and all(b["key_as_string"].endswith("-01-01T00:00:00.000Z") for b in years)


def test_msearch_answers_each_search(client):
    searches = [{"index": INDEX_NAME}, {"query": {"match": {"text": "index"}}, "size": 1},
                {"index": INDEX_NAME}, {"query": {"match": {"text": "向量"}}, "size": 2}]
    responses = dict(client.client.msearch(body=searches))["responses"]
    assert [len(r["hits"]["hits"]) for r in responses] == [1, 2]


def test_count_equals_the_search_total(client):
    query = {"match": {"text": "index"}}
    assert client.client.count(index=INDEX_NAME, body={"query": query})["count"] == \
        client.search({"query": query})["hits"]["total"]["value"]


def test_get_a_document_by_id(client):
    doc = dict(client.client.get(index=INDEX_NAME, id="en-001"))
    assert doc["found"] and doc["_source"]["title"].startswith("How an inverted index")
    assert client.error(lambda: client.client.get(index=INDEX_NAME, id="no-such-doc"))[0] == 404


def test_mapping_and_cat_indices(client, api):
    mapping = dict(client.client.indices.get_mapping(index=INDEX_NAME))
    assert mapping[INDEX_NAME]["mappings"]["properties"]["published_at"]["type"] == "date"
    rows = list(client.client.cat.indices(format="json"))
    assert rows[0]["index"] == INDEX_NAME and int(rows[0]["docs.count"]) == api[1].reader.n_docs


def test_an_unknown_index_is_index_not_found(client):
    assert client.error(lambda: client.search({"query": {"match_all": {}}}, index="nope")) == \
        (404, "index_not_found_exception")


def test_outside_the_subset_is_a_400_in_elasticsearch_shape(client):
    assert client.error(lambda: client.search({"query": {"fuzzy": {"title": "indx"}}})) == (400, "parsing_exception")
    assert client.error(lambda: client.search({"query": {"match": {"title": {"query": "x", "fuzziness": 2}}}})) == \
        (400, "parsing_exception")
    assert client.error(lambda: client.search({"query": {"match_all": {}}, "suggest": {}}))[0] == 400


def test_query_and_knn_together_are_hybrid(client):
    body = {"query": {"match": {"text": "向量检索"}}, "size": 3,
            "knn": {"field": "vector", "k": 10, "query_vector_builder": {"text_embedding": {"model_text": "向量检索"}}}}
    hits = client.search(body)["hits"]["hits"]
    assert len(hits) == 3 and np.all(np.diff([h["_score"] for h in hits]) <= 0)


def test_malformed_json_is_a_400_naming_the_problem(api):
    response = httpx.post(f"{api[0]}/{INDEX_NAME}/_search", content=b'{"query": ', timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "x_content_parse_exception"


def _scan(client: Client, **kwargs) -> list[dict]:
    helpers = elasticsearch.helpers if client.kind == "elasticsearch" else opensearchpy.helpers
    return list(helpers.scan(client.client, index=INDEX_NAME, **kwargs))


def test_scan_reads_every_match_once_in_pages(client, api):
    every = _scan(client, query={"query": {"match_all": {}}}, size=5)
    assert len(every) == len({hit["_id"] for hit in every}) == api[1].reader.n_docs
    matching = _scan(client, query={"query": {"match": {"text": "index"}}}, size=3)
    assert {hit["_id"] for hit in matching} == set(client.ids({"query": {"match": {"text": "index"}}, "size": 100}))


def test_a_scroll_reads_past_max_result_window_in_index_order_and_ends_there_in_score_order(api):
    from pipeline.serving.api.es_dsl import EsError, compile_search

    reader = api[1].reader
    deep = {"from": 20_000, "size": 10}
    assert compile_search(reader, {**deep, "sort": ["_doc"]}, scroll=True).size == 10
    assert compile_search(reader, deep, scroll=True).size == 0
    assert compile_search(reader, {"from": 9_995, "size": 10}, scroll=True).size == 5
    with pytest.raises(EsError, match="sorted by _doc or published_at reads past it"):
        compile_search(reader, {**deep, "sort": ["_doc"]})
    with pytest.raises(EsError, match="Batch size is too large"):
        compile_search(reader, {"size": 10_001, "sort": ["_doc"]}, scroll=True)


def test_a_scroll_id_of_another_version_or_of_nobody_is_refused(client):
    import base64

    from pipeline.serving.api.es import scroll_id

    stale = scroll_id("20000101T000000000000-000000", {"query": {"match_all": {}}}, {}, 0)
    assert client.error(lambda: client.client.scroll(scroll_id=stale, scroll="1m")) == \
        (404, "search_context_missing_exception")
    nested = base64.urlsafe_b64encode(b"[" * 100_000).decode()
    for forged in ("not-a-scroll", nested):
        assert client.error(lambda: client.client.scroll(scroll_id=forged, scroll="1m")) == \
            (400, "illegal_argument_exception")


def test_later_scroll_pages_carry_no_aggregations(api):
    client = elasticsearch.Elasticsearch(api[0], request_timeout=60)
    first = client.search(index=INDEX_NAME, scroll="1m", size=5, sort=["_doc"], query={"match_all": {}},
                          aggs={"langs": {"terms": {"field": "lang"}}})
    second = client.scroll(scroll_id=first["_scroll_id"], scroll="1m")
    assert "aggregations" in first and "aggregations" not in second and len(second["hits"]["hits"]) == 5


def test_search_after_and_points_in_time_are_refused_where_elasticsearch_refuses_them(api):
    from pipeline.serving.api.es import token

    client = elasticsearch.Elasticsearch(api[0], request_timeout=60)
    pit = client.open_point_in_time(index=INDEX_NAME, keep_alive="1m")["id"]
    refusals = [
        lambda: client.search(index=INDEX_NAME, scroll="1m", sort=["_doc"], search_after=[3]),
        lambda: client.search(index=INDEX_NAME, pit={"id": pit}, sort=["_doc"]),
        lambda: client.search(pit={"id": token({"version": ["nested"]})}, sort=["_doc"]),
    ]
    for refused in refusals:
        with pytest.raises(elasticsearch.ApiError) as caught:
            refused()
        assert caught.value.meta.status in (400, 404)


def test_mget_answers_each_id_in_order_found_or_not(client):
    docs = dict(client.client.mget(index=INDEX_NAME, body={"ids": ["zh-001", "no-such-doc", "en-001"]}))["docs"]
    assert [(d["_id"], d["found"]) for d in docs] == [("zh-001", True), ("no-such-doc", False), ("en-001", True)]
    other = dict(client.client.mget(body={"docs": [{"_index": "nope", "_id": "en-001"}]}))["docs"][0]
    assert other["error"]["type"] == "index_not_found_exception"


def test_existence_checks_of_the_index_and_its_documents(client):
    assert client.client.indices.exists(index=INDEX_NAME) and not client.client.indices.exists(index="nope")
    assert client.client.exists(index=INDEX_NAME, id="en-001") and not client.client.exists(index=INDEX_NAME, id="x")


def test_the_index_its_settings_and_the_cluster_health(client):
    index = dict(client.client.indices.get(index=INDEX_NAME))[INDEX_NAME]
    assert index["mappings"]["properties"]["title"]["type"] == "text"
    assert index["settings"]["index"]["max_result_window"] == "10000"
    assert dict(client.client.cluster.health())["status"] == "green"


def test_writes_are_refused_as_on_a_read_only_index(client):
    blocked = (403, "cluster_block_exception")
    assert client.error(lambda: client.client.index(index=INDEX_NAME, id="new", body={"text": "x"})) == blocked
    assert client.error(lambda: client.client.delete(index=INDEX_NAME, id="en-001")) == blocked
    assert client.error(lambda: client.client.indices.delete(index=INDEX_NAME)) == blocked
    assert client.error(lambda: client.client.bulk(body=[{"index": {"_index": INDEX_NAME}}, {"text": "x"}])) == \
        blocked
    assert client.client.exists(index=INDEX_NAME, id="en-001")


def test_api_names_and_probes_are_not_taken_for_indices(api):
    assert httpx.head(f"{api[0]}/healthz").status_code == httpx.head(f"{api[0]}/readyz").status_code == 200
    stats = httpx.get(f"{api[0]}/_stats").json()
    assert stats["error"]["type"] == "illegal_argument_exception" and "no handler found" in stats["error"]["reason"]


def test_an_index_whose_name_starts_like_the_api_docs_gets_elasticsearch_errors():
    from pipeline.serving.api.app import is_es_path

    assert is_es_path("/docsearch/_search") and is_es_path("/docs/_field_caps")
    assert not is_es_path("/docs") and not is_es_path("/openapi.json") and not is_es_path("/v1/search")


@pytest.mark.parametrize("sort", [["_doc"], [{"published_at": "desc"}], [{"published_at": "asc"}]])
def test_search_after_in_a_point_in_time_pages_through_every_match_once(api, sort):
    client = elasticsearch.Elasticsearch(api[0], request_timeout=60)
    pit = client.open_point_in_time(index=INDEX_NAME, keep_alive="1m")["id"]
    seen, after = [], None
    for _ in range(api[1].reader.n_docs + 1):
        page = client.search(pit={"id": pit, "keep_alive": "1m"}, query={"match_all": {}}, sort=sort, size=7,
                             **({"search_after": after} if after else {}))
        hits = page["hits"]["hits"]
        if not hits:
            break
        seen += [hit["_id"] for hit in hits]
        after = hits[-1]["sort"]
    assert len(seen) == len(set(seen)) == api[1].reader.n_docs
    assert client.close_point_in_time(id=pit)["succeeded"]


def test_search_after_needs_a_sort_that_orders_every_match(client):
    with pytest.raises((elasticsearch.ApiError, opensearchpy.TransportError), match="add such a \\[sort\\]"):
        client.search({"query": {"match_all": {}}, "search_after": [3]})


def test_date_sort_values_are_milliseconds_alone_outside_a_point_in_time(client):
    hits = client.search({"query": {"match_all": {}}, "sort": [{"published_at": "desc"}], "size": 3})["hits"]["hits"]
    assert all(len(hit["sort"]) == 1 for hit in hits)
    after = client.search({"query": {"match_all": {}}, "sort": [{"published_at": "desc"}], "size": 3,
                           "search_after": hits[-1]["sort"]})["hits"]["hits"]
    assert all(h["sort"][0] is None or h["sort"][0] < hits[-1]["sort"][0] for h in after)


def test_a_point_in_time_of_another_version_is_a_missing_context(api):
    from pipeline.serving.api.es import token

    client = elasticsearch.Elasticsearch(api[0], request_timeout=60)
    with pytest.raises(elasticsearch.NotFoundError, match="search_context_missing_exception"):
        client.search(pit={"id": token({"version": "20000101T000000000000-000000"})}, query={"match_all": {}},
                      sort=["_doc"])


def raw_search(api, body: bytes, route: str = f"/{INDEX_NAME}/_search", kind="application/json") -> httpx.Response:
    return httpx.post(f"{api[0]}{route}", content=body, timeout=60, headers={"content-type": kind})


def nested_bool(depth: int) -> bytes:
    """A query of `depth` bools, each holding the next in its must list (written out: json.dumps would recurse)."""
    return b'{"query":' + b'{"bool":{"must":[' * depth + b'{"match":{"text":"index"}}' + b']}}' * depth + b'}'


@pytest.mark.parametrize(("route", "body"), [
    (f"/{INDEX_NAME}/_search", nested_bool(2000)),
    (f"/{INDEX_NAME}/_count", nested_bool(2000)),
    ("/_msearch", b"{}\n" + b"[" * 100_000 + b"]" * 100_000 + b"\n"),
])
def test_json_nested_past_the_decoders_depth_is_a_400_not_a_500(api, route, body):
    response = raw_search(api, body, route, "application/x-ndjson" if "msearch" in route else "application/json")
    assert response.status_code == 400 and response.json()["error"]["type"] == "x_content_parse_exception"


def test_bool_queries_nested_deeper_than_the_cap_are_refused(api):
    assert raw_search(api, nested_bool(30)).status_code == 200
    response = raw_search(api, nested_bool(320))  # decodable JSON (960 levels); a RecursionError before the cap
    assert response.status_code == 400 and "nested deeper than" in response.json()["error"]["reason"]


@pytest.mark.parametrize("bound", [{"gte": 10**20}, {"gte": -10**20}, {"lte": 10**15}])
def test_a_range_bound_beyond_the_calendar_is_a_parsing_error(client, bound):
    assert client.error(lambda: client.search({"query": {"range": {"published_at": bound}}})) == \
        (400, "parsing_exception")


@pytest.mark.parametrize("highlight", [
    {"pre_tags": [1], "post_tags": [2], "fields": {"body": {}}},
    {"pre_tags": [], "fields": {"body": {}}},
    {"pre_tags": None, "fields": {"body": {}}},
    {"fields": {"body": {"pre_tags": [1]}}},
    {"fields": {"body": {"fragment_size": "abc"}}},
    {"fields": {"body": {"number_of_fragments": "x"}}},
])
def test_highlight_tags_and_options_of_the_wrong_type_are_400s(client, highlight):
    body = {"query": {"match": {"text": "index"}}, "highlight": highlight}
    assert client.error(lambda: client.search(body)) == (400, "parsing_exception")


def test_an_empty_rescore_list_is_a_parsing_error(client):
    body = {"query": {"match": {"text": "index"}}, "rescore": []}
    assert client.error(lambda: client.search(body)) == (400, "parsing_exception")


@pytest.mark.parametrize("boost", [b"NaN", b"Infinity", b"-1"])
def test_a_boost_that_is_negative_or_not_finite_is_refused_not_answered_with_null_scores(api, boost):
    body = b'{"query": {"match": {"text": {"query": "index", "boost": ' + boost + b'}}}}'
    response = raw_search(api, body)
    assert response.status_code == 400 and response.json()["error"]["type"] == "parsing_exception"


@pytest.mark.parametrize("value", [b"NaN", b"1e308"])
def test_a_query_vector_that_is_not_finite_is_refused(api, value):
    dim = api[1].reader.dense.manifest.dim
    body = b'{"knn": {"field": "vector", "k": 3, "query_vector": [' + b",".join([value] * dim) + b"]}}"
    response = raw_search(api, body)
    assert response.status_code == 400 and response.json()["error"]["type"] == "parsing_exception"


def test_loose_values_are_refused_not_read_another_way(client):
    assert client.error(lambda: client.search({"query": {"match_all": {}}, "explain": "false"})) == \
        (400, "parsing_exception")
    assert client.error(lambda: client.search({"query": {"term": {"lang": ["en"]}}})) == (400, "parsing_exception")


def test_an_empty_date_range_matches_nothing_as_in_elasticsearch(client):
    body = {"query": {"range": {"published_at": {"gt": "2023-01-01", "lt": "2023-01-01"}}}}
    assert client.search(body)["hits"]["total"]["value"] == 0


@pytest.fixture(scope="module")
def regioned(tmp_path_factory, settings):
    """A client over the sample corpus with regions: every third document in north, the next in south, the third
    in none; and the set of ids in each region."""
    import json

    from conftest import SAMPLE

    from pipeline.index.build import build_index

    folder = tmp_path_factory.mktemp("api-es-regions")
    lines = (SAMPLE / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    regions = {0: "north", 1: "south"}
    records = [{**json.loads(line), **({"region": regions[i % 3]} if i % 3 in regions else {})}
               for i, line in enumerate(lines)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    build_index([folder / "corpus.jsonl"], folder / "index", settings)
    by_region: dict[str | None, set[str]] = {}
    for record in records:
        by_region.setdefault(record.get("region"), set()).add(record["_id"])
    with running(api_settings(settings, folder / "index")) as url:
        yield Client("elasticsearch", url), by_region


def test_a_region_term_filter_keeps_only_that_regions_documents(regioned):
    client, by_region = regioned
    for query in ({"term": {"region": "north"}}, {"terms": {"region": ["north"]}},
                  {"bool": {"must": [{"match": {"text": "search"}}], "filter": [{"term": {"region": "north"}}]}}):
        response = client.search({"query": query, "size": 100})
        assert {hit["_id"] for hit in response["hits"]["hits"]} <= by_region["north"]
        assert response["hits"]["total"]["value"] > 0
    every = client.search({"query": {"term": {"region": "north"}}, "size": 100})
    assert {hit["_id"] for hit in every["hits"]["hits"]} == by_region["north"]
    both = client.ids({"query": {"terms": {"region": ["north", "south"]}}, "size": 100})
    assert set(both) == by_region["north"] | by_region["south"]


def test_must_not_region_and_exists_region_split_the_documents(regioned):
    client, by_region = regioned
    outside = client.ids({"query": {"bool": {"must_not": [{"term": {"region": "north"}}]}}, "size": 100})
    assert set(outside) == by_region["south"] | by_region[None]
    placed = client.ids({"query": {"exists": {"field": "region"}}, "size": 100})
    assert set(placed) == by_region["north"] | by_region["south"]


def test_an_unknown_region_matches_nothing_and_is_no_error(regioned):
    client, _ = regioned
    response = client.search({"query": {"term": {"region": "atlantis"}}})
    assert response["hits"]["total"]["value"] == 0 and response["hits"]["hits"] == []


def test_a_hit_carries_its_region_where_it_has_one(regioned):
    client, by_region = regioned
    hits = client.search({"query": {"match_all": {}}, "size": 100})["hits"]["hits"]
    for hit in hits:
        region = next(r for r, ids in by_region.items() if hit["_id"] in ids)
        assert hit["_source"].get("region") == region and ("region" in hit["_source"]) == (region is not None)
    only = sources(client.search({"query": {"term": {"region": "south"}}, "_source": ["region"]}))
    assert only and all(s == {"region": "south"} for s in only)
    assert client.client.indices.get_mapping(index=INDEX_NAME)[INDEX_NAME]["mappings"]["properties"]["region"] \
        == {"type": "keyword"}


def test_a_should_region_term_adds_no_score_the_lift_is_the_native_apis(regioned):
    client, _ = regioned
    plain = client.search({"query": {"bool": {"must": [{"match": {"text": "ranking documents"}}]}}})
    should = client.search({"query": {"bool": {"must": [{"match": {"text": "ranking documents"}}],
                                               "should": [{"term": {"region": "north"}}]}}})
    assert [(h["_id"], h["_score"]) for h in should["hits"]["hits"]] == \
        [(h["_id"], h["_score"]) for h in plain["hits"]["hits"]]


@pytest.mark.parametrize("query", [{"term": {"region": None}}, {"term": {"region": {"value": None}}},
                                   {"terms": {"region": ["north", None]}}, {"terms": {"region": [["north"]]}},
                                   {"terms": {"region": [{"name": "north"}]}}])
def test_a_null_list_or_object_region_value_is_refused_not_read_as_text(regioned, query):
    client, _ = regioned
    assert client.error(lambda: client.search({"query": query})) == (400, "parsing_exception")


def test_numbers_and_booleans_in_term_are_the_keywords_json_writes():
    from pipeline.serving.api.es_dsl import EsError, keyword_value

    assert [keyword_value(v, "term") for v in ("north", 7, 2.5, True, False)] == ["north", "7", "2.5", "true",
                                                                                  "false"]
    for value in (None, float("nan"), float("inf"), ["north"], {"value": "north"}):
        with pytest.raises(EsError):
            keyword_value(value, "term")
