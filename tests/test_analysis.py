"""The analyzer: one pipeline for documents and queries, in Chinese, English and both at once."""

import pytest

from pipeline.config import AnalyzerConfig
from pipeline.text.analysis import Analyzer, detect_language


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


# -- normalisation is stable, offsets exact, and any str is safe ---------------------------------------------


def test_half_width_katakana_with_voiced_marks_matches_full_width_alone_and_in_text(analyzer):
    assert analyzer.terms("ｶﾞｽ") == analyzer.terms("ガス") == analyzer.terms("東京 ｶﾞｽ 会社")[1:2]


def test_spans_stay_exact_when_an_expanding_and_a_composing_character_cancel_out(analyzer):
    # ﬁ gains a character and ｶﾞ loses one: the text keeps its length but offsets shift in between.
    assert spans(analyzer, "ﬁ ｶﾞ river") == [("fi", "ﬁ"), ("ガ", "ｶﾞ"), ("river", "river")]


def test_combining_marks_compose_with_their_base_letter(analyzer):
    assert spans(analyzer, "cafe\u0301 café") == [("café", "cafe\u0301"), ("café", "café")]


@pytest.mark.parametrize("text", ["\ud800", "檢索\udfff", "a\udc80b 向量檢索", "\ud83d\ude00 emoji as two halves"])
def test_lone_surrogates_become_replacement_characters_and_never_raise(analyzer, text):
    analyzed = analyzer.analyze(text)
    assert analyzer.normalize(text).encode("utf-8")
    assert all(term.encode("utf-8") for term in analyzed.terms) and len(analyzed.ends) == len(analyzed.terms)
    assert detect_language(text) in {"zh", "en", "und"}


def test_traditional_to_simplified_converts_each_run_on_its_own(analyzer):
    assert analyzer.normalize("乾燥 乾隆") == analyzer.normalize("乾燥") + " " + analyzer.normalize("乾隆")


# Characters that stress normalisation: ligatures, full/half width, voiced marks, combining marks, Hangul jamo
# (conjoining and compatibility), ß and İ (case folding expands them), circled digits, squared words (㍱ → hpa),
# Traditional and Simplified Chinese, emoji, lone surrogates, plus separators.
LETTERS = list("abcXYZ019") + list("ﬁﬂßİＡｚ１ｶｷガ①㍱㌔각ㄱㅏ가ᅡᆨé檢索體中华人民共和国東京") + ["e\u0301", "\U0001F600"]
MARKS = ["\u0301", "\u0323", "\uff9e", "\uff9f", "\u3099"]
SEPARATORS = [" ", "，", "。", "\n", "-", "_", "."]
NO_STEM = Analyzer(AnalyzerConfig(stem_english=False))


def random_text(rng, n):
    pieces = []
    for _ in range(n):
        roll = rng.random()
        pieces.append(rng.choice(MARKS if roll < 0.1 else SEPARATORS if roll < 0.35 else
                                 ["\ud800", "\udc00"] if roll < 0.38 else LETTERS))
    return "".join(pieces)


def random_word(rng):
    """Letters and marks, starting with a letter (a mark at the start would belong to the text before)."""
    return rng.choice(LETTERS) + "".join(rng.choice(LETTERS + MARKS) for _ in range(rng.randrange(4)))


def test_every_terms_span_maps_back_to_text_that_normalises_to_contain_it():
    import random

    rng = random.Random(20240501)
    for _ in range(400):
        text = random_text(rng, rng.randrange(1, 40))
        analyzed = NO_STEM.analyze(text)
        for term, start, end in zip(analyzed.terms, analyzed.starts, analyzed.ends):
            assert 0 <= start < end <= len(text), (text, term)
            assert term in NO_STEM.normalize(text[start:end]), (text, term, text[start:end])


def test_a_words_terms_are_the_same_alone_and_surrounded_by_other_text():
    import random

    rng = random.Random(7)
    for _ in range(400):
        word = random_word(rng)
        before = random_text(rng, rng.randrange(10)) + rng.choice([" ", "，", "\n"])
        text = before + word + " " + random_text(rng, rng.randrange(10))
        alone = NO_STEM.analyze(word)
        within = NO_STEM.analyze(text).within(len(before), len(before) + len(word))
        shifted = [(t, s - len(before), e - len(before)) for t, s, e in zip(within.terms, within.starts, within.ends)]
        assert shifted == list(zip(alone.terms, alone.starts, alone.ends)), (text, word)
