"""Search semantics on the sample corpus: boolean operators, phrases, filters, snippets and hostile input."""

from datetime import datetime

import pytest
from conftest import SAMPLE

from pipeline.errors import QuerySyntaxError
from pipeline.ingest.ingest import ingest
from pipeline.search.query import Bool, Phrase, Term, parse_query
from pipeline.searcher import Filters
from pipeline.text.analysis import Analyzer


@pytest.fixture(scope="module")
def docs():
    return ingest([SAMPLE]).documents.to_pylist()


@pytest.fixture(scope="module")
def doc_terms(docs):
    analyzer = Analyzer()
    return {d["doc_id"]: set(analyzer.terms(d["title"])) | set(analyzer.terms(d["body"])) for d in docs}


def ids(response):
    return {hit.doc_id for hit in response.hits}


def everything(searcher, query, **kwargs):
    return searcher.search(query, k=1000, **kwargs)


def test_parser_builds_lucene_style_clauses():
    assert parse_query('a "b c" -d') == Bool(should=[Term("a"), Phrase("b c")], must_not=[Term("d")])
    assert parse_query("a AND b OR c") == Bool(should=[Bool(must=[Term("a"), Term("b")]), Term("c")])
    assert parse_query("+a NOT (b c)") == Bool(must=[Term("a")], must_not=[Bool(should=[Term("b"), Term("c")])])


@pytest.mark.parametrize("query", ["(a b", "a)", "NOT", "a AND"])
def test_malformed_syntax_is_a_clear_error(query):
    with pytest.raises(QuerySyntaxError):
        parse_query(query)


def test_plain_words_match_any_term(sample_searcher, doc_terms):
    expected = {d for d, terms in doc_terms.items() if terms & {"hnsw", "dropout"}}
    assert ids(everything(sample_searcher, "HNSW dropout")) == expected


def test_and_requires_every_term(sample_searcher, doc_terms):
    expected = {d for d, terms in doc_terms.items() if {"bm25", "rank"} <= terms}
    assert expected and ids(everything(sample_searcher, "BM25 AND rank")) == expected


def test_not_and_minus_exclude(sample_searcher, doc_terms):
    expected = {d for d, terms in doc_terms.items() if "bm25" in terms and "fusion" not in terms}
    assert ids(everything(sample_searcher, "BM25 NOT fusion")) == expected
    assert ids(everything(sample_searcher, "BM25 -fusion")) == expected


def test_phrase_matches_words_in_order_only(sample_searcher):
    assert {"en-001", "en-002", "en-006"} <= ids(everything(sample_searcher, '"inverted index"'))
    assert ids(everything(sample_searcher, '"index inverted"')) == set()


def test_chinese_phrase_matches_across_traditional_and_simplified(sample_searcher):
    found = ids(everything(sample_searcher, '"向量檢索"'))
    assert "zh-011" in found and "zh-033" in found


def test_ranking_puts_the_title_match_first(sample_searcher):
    assert sample_searcher.search("reciprocal rank fusion", k=1).hits[0].doc_id == "en-018"
    assert sample_searcher.search("倒排索引 原理", k=1).hits[0].doc_id == "zh-001"


def test_filters_on_source_lang_tags_and_dates(sample_searcher, docs):
    by_id = {d["doc_id"]: d for d in docs}
    start, end = datetime(2022, 1, 1), datetime(2024, 12, 31)
    filters = Filters(langs=("zh",), sources=("blog", "kb"), since=start, until=end)
    results = everything(sample_searcher, "索引 检索 向量 模型 搜索", filters=filters)
    assert results.hits
    for hit in results.hits:
        doc = by_id[hit.doc_id]
        assert doc["lang"] == "zh" and doc["source"] in {"blog", "kb"}
        assert start <= doc["published_at"].replace(tzinfo=None) <= end
    tagged = everything(sample_searcher, "search retrieval index", filters=Filters(tags=("bm25",)))
    assert tagged.hits and all("bm25" in by_id[h.doc_id]["tags"] for h in tagged.hits)


def test_snippets_highlight_chinese_matches_in_the_original_script(sample_searcher):
    hit = sample_searcher.search("向量检索", k=5).hits
    traditional = next(h for h in hit if h.doc_id == "zh-033")
    assert "<mark>向量</mark>" in traditional.snippet or "<mark>向量檢索</mark>" in traditional.snippet
    assert "檢索" in traditional.snippet


def test_snippets_escape_html_from_documents(tmp_path, settings):
    from pipeline.index.build import build_index
    from pipeline.searcher import Searcher

    corpus = tmp_path / "evil.jsonl"
    corpus.write_text('{"_id": "x", "title": "<b>t</b>", "text": "<script>alert(1)</script> payload here"}\n')
    build_index([corpus], tmp_path / "index", settings)
    hit = Searcher.open(tmp_path / "index", settings).search("payload script").hits[0]
    assert hit.snippet.startswith("&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt;")
    assert hit.title_html == "&lt;b&gt;t&lt;/b&gt;"


@pytest.mark.parametrize(
    "query, matches",
    [("x" * 10_000, 0), ('"unterminated phrase', 0), ("", 0), ("   ", 0), ("\x00\ufffd", 0), ("-", 0),
     ("'; DROP TABLE documents; --", None)],
)
def test_hostile_queries_are_searched_as_words(sample_searcher, query, matches):
    response = sample_searcher.search(query)
    if matches is not None:
        assert response.total_matches == matches
    assert len(response.hits) == min(10, response.total_matches)
    assert {hit.doc_id for hit in response.hits} <= set(sample_searcher.doc_ids)


@pytest.mark.parametrize("query", ["((((", "NOT NOT NOT", "a)"])
def test_hostile_syntax_is_a_syntax_error(sample_searcher, query):
    with pytest.raises(QuerySyntaxError):
        sample_searcher.search(query)


def test_pagination_returns_the_next_slice(sample_searcher):
    first = sample_searcher.search("search index", k=10)
    second = sample_searcher.search("search index", k=5, offset=5)
    assert [h.doc_id for h in second.hits] == [h.doc_id for h in first.hits[5:10]]


def test_each_clause_knows_where_it_stands_in_the_query():
    text = '+向量 "inverted index" -fusion'
    tree = parse_query(text)
    spans = [text[c.start : c.end] for c in (*tree.must, *tree.should, *tree.must_not)]
    assert spans == ["向量", "inverted index", "fusion"]


def test_nesting_beyond_the_cap_is_a_syntax_error_not_a_crash():
    with pytest.raises(QuerySyntaxError, match="nested deeper than 32"):
        parse_query("(" * 333 + "a" + ")" * 333)
    assert parse_query("(" * 32 + "a" + ")" * 32).should


def test_a_since_later_than_until_is_an_error_not_an_empty_result():
    from datetime import UTC, datetime

    from pipeline.errors import InputError
    from pipeline.search.filters import Filters

    with pytest.raises(InputError, match="later than until"):
        Filters(since=datetime(2024, 5, 1), until=datetime(2024, 1, 1, tzinfo=UTC))
    assert Filters(since=datetime(2024, 1, 1), until=datetime(2024, 1, 1, tzinfo=UTC))
