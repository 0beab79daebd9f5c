"""The analyzer: one pipeline for documents and queries, in Chinese, English and both at once."""

import pytest

from pipeline.text.analysis import Analyzer, detect_language
from pipeline.config import AnalyzerConfig


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer()


def spans(analyzer, text):
    analyzed = analyzer.analyze(text)
    return [(term, text[start:end]) for term, start, end in zip(analyzed.terms, analyzed.starts, analyzed.ends)]


def test_full_width_letters_and_digits_fold_to_ascii(analyzer):
    assert analyzer.terms("ＡＢＣ１２３") == ["abc123"]


def test_case_is_folded(analyzer):
    assert analyzer.terms("BM25 Bm25 bm25") == ["bm25", "bm25", "bm25"]


def test_traditional_chinese_matches_simplified(analyzer):
    assert analyzer.terms("向量檢索") == analyzer.terms("向量检索")


def test_chinese_is_segmented_in_search_mode(analyzer):
    terms = analyzer.terms("中华人民共和国")
    assert "中华人民共和国" in terms and "共和国" in terms and "人民" in terms


def test_english_is_stemmed(analyzer):
    assert analyzer.terms("running networks") == ["run", "network"]


def test_stopwords_are_removed_in_both_languages(analyzer):
    assert analyzer.terms("the index of the corpus") == ["index", "corpus"]
    assert "的" not in analyzer.terms("搜索的结果")


def test_mixed_text_is_handled_in_one_pass(analyzer):
    assert spans(analyzer, "基于Transformer的BM25召回") == [
        ("transform", "Transformer"),
        ("bm25", "BM25"),
        ("召回", "召回"),
    ]


def test_numbers_and_identifiers_are_kept_whole(analyzer):
    terms = analyzer.terms("set max_seq_length to 3.14 on x86_64 with C++")
    assert {"max_seq_length", "3.14", "x86_64", "c++"} <= set(terms)


def test_identifier_parts_are_added_beside_the_identifier(analyzer):
    assert {"max", "seq", "length"} <= set(analyzer.terms("max_seq_length"))


def test_spans_point_into_the_original_text_even_when_normalisation_changes_length(analyzer):
    assert spans(analyzer, "ﬁle Straße ＢＭ２５") == [("file", "ﬁle"), ("strass", "Straße"), ("bm25", "ＢＭ２５")]


def test_positions_count_stopwords_so_phrases_keep_their_gaps(analyzer):
    analyzed = analyzer.analyze("state of the art")
    assert list(zip(analyzed.terms, analyzed.positions)) == [("state", 0), ("art", 3)]


def test_search_mode_subwords_share_the_position_of_their_first_character(analyzer):
    analyzed = analyzer.analyze("中华人民")
    positions = dict(zip(analyzed.terms, analyzed.positions))
    assert positions["中华"] == 0 and positions["人民"] == 2


def test_jieba_and_rjieba_segmenters_agree_on_common_words():
    text = "倒排索引和向量检索"
    assert set(Analyzer(AnalyzerConfig(segmenter="jieba")).terms(text)) == set(Analyzer().terms(text))


def test_configuration_fingerprint_changes_with_any_setting():
    assert AnalyzerConfig().fingerprint() != AnalyzerConfig(stem_english=False).fingerprint()
    assert AnalyzerConfig().fingerprint() == AnalyzerConfig().fingerprint()


@pytest.mark.parametrize(
    ("text", "lang"),
    [("hello world", "en"), ("向量检索", "zh"), ("基于Transformer的BM25召回", "zh"), ("12345", "und"),
     ("ひらがなとカタカナ", "ja")],
)
def test_language_is_detected_from_script(text, lang):
    assert detect_language(text) == lang
