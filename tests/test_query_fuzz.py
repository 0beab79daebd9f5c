"""Fuzzed queries: the parser and the searcher raise nothing but the documented syntax error, whatever they get."""

import random

import pytest

from pipeline.errors import QuerySyntaxError
from pipeline.search.filters import Filters
from pipeline.search.query import parse_query

# Pieces a hostile or careless user types: operators, quotes, brackets of several widths, prefixes, scripts,
# combining marks, lone surrogates (undecodable bytes), control characters and very long words.
PIECES = [
    "AND", "OR", "NOT", "and", "(", ")", "((", "))", '"', '""', "+", "-", "+-", "--", "*", "?", ":", "\\",
    "（", "）", "“", "”", "＂", "　", " ", "  ", "\t", "\n", "\x00", "\x7f", "\ufeff", "\u200b", "\u0301",
    "\ud800", "\udfff", "\udc80", "\U0001f600", "ﬁ", "ｶﾞｽ", "ガス", "倒排索引", "向量檢索", "中华人民共和国",
    "bm25", "C++", "max_seq_length", "3.14", "HNSW", "inverted", "index", "x" * 300, "é", "ß", "İ", "ǅ",
    "<script>", "'; DROP TABLE documents; --", "%s", "{}", "\u202e", "עברית", "العربية", "한국어",
]
SEED = 20261203


def fuzzed_queries(n: int, seed: int = SEED):
    rng = random.Random(seed)
    for _ in range(n):
        yield "".join(rng.choice(PIECES) + rng.choice(["", " ", ""]) for _ in range(rng.randint(0, 12)))


def deeply_nested(depth: int) -> str:
    return "(" * depth + "a" + ")" * depth


def parse_all(queries) -> tuple[int, int]:
    parsed = refused = 0
    for query in queries:
        try:
            parse_query(query)
            parsed += 1
        except QuerySyntaxError as error:
            assert "\n" not in str(error)  # one line, whatever the input
            refused += 1
    return parsed, refused


def search_all(searcher, queries, modes) -> int:
    searched = 0
    for query in queries:
        for mode in modes:
            try:
                response = searcher.search(query, k=5, mode=mode)
            except QuerySyntaxError:
                continue
            assert len(response.hits) <= 5
            searched += 1
    return searched


def test_the_parser_takes_a_few_thousand_fuzzed_queries():
    parsed, refused = parse_all(fuzzed_queries(5_000))
    assert parsed + refused == 5_000 and parsed > 0 and refused > 0


def test_nesting_is_capped_not_a_recursion_error():
    assert parse_all([deeply_nested(d) for d in (1, 32, 33, 333, 100_000)]) == (2, 3)


def test_the_searcher_takes_fuzzed_queries_in_bm25_mode(sample_searcher):
    assert search_all(sample_searcher, fuzzed_queries(300, seed=7), ["bm25"]) > 0


def test_fuzzed_queries_in_the_hybrid_and_learned_modes(sample_searcher):
    assert search_all(sample_searcher, fuzzed_queries(20, seed=11), ["dense", "hybrid"]) > 0


@pytest.mark.parametrize("value", ["\ud800", "ok\udcff"])
def test_a_filter_value_that_is_not_unicode_is_refused_clearly(value):
    from pipeline.errors import InputError

    with pytest.raises(InputError, match="is not valid Unicode"):
        Filters(sources=(value,))


@pytest.mark.slow
def test_the_parser_takes_a_hundred_thousand_fuzzed_queries():
    parsed, refused = parse_all(fuzzed_queries(100_000, seed=SEED + 1))
    assert parsed + refused == 100_000


@pytest.mark.slow
def test_the_searcher_takes_ten_thousand_fuzzed_queries(sample_searcher):
    assert search_all(sample_searcher, fuzzed_queries(10_000, seed=SEED + 2), ["bm25"]) > 0
