"""Autocomplete (prefix, pinyin, initials, past queries) and "did you mean" (edit distance, pinyin)."""

import pytest

from pipeline.index.querylog import QueryLog
from pipeline.serving.suggest import (
    Suggester,
    edit_distance,
    pinyin_initials,
    pinyin_matches,
    pinyin_syllables,
    suggester_for,
)

TERMS = {"向量": 13, "检索": 10, "索引": 8, "倒排": 5, "retrieval": 9, "reciprocal": 3, "rank": 13, "ranking": 6,
         "fusion": 4, "hnsw": 5}
PHRASES = {"向量检索": 5, "向量数据库": 3, "倒排索引": 5, "reciprocal rank": 3}


@pytest.fixture(scope="module")
def suggester():
    return Suggester(TERMS, PHRASES)


def texts(suggestions):
    return [s.text for s in suggestions]


def test_pinyin_of_chinese_traditional_and_mixed_text():
    assert pinyin_syllables("向量检索") == ("xiang", "liang", "jian", "suo")
    assert pinyin_syllables("向量檢索") == ("xiang", "liang", "jian", "suo")
    assert pinyin_syllables("jieba 中文分词") == ("jieba", "zhong", "wen", "fen", "ci")
    assert pinyin_initials("向量检索") == "xljs"


@pytest.mark.parametrize("typed", ["xiangliang", "xljs", "xiangljs", "xlianGjians".lower(), "x"])
def test_pinyin_matches_full_initials_and_mixed(typed):
    assert pinyin_matches(typed, ("xiang", "liang", "jian", "suo"))


@pytest.mark.parametrize("typed", ["liang", "xiangliangjiansuox", "xjl", ""])
def test_pinyin_must_follow_the_syllables_from_the_first(typed):
    assert not pinyin_matches(typed, ("xiang", "liang", "jian", "suo"))


def test_edit_distance_counts_transpositions_once():
    assert edit_distance("retreival", "retrieval", 2) == 1
    assert edit_distance("kitten", "sitting", 3) == 3
    assert edit_distance("kitten", "sitting", 2) == 3  # over the limit: limit + 1
    assert edit_distance("abc", "abc", 0) == 0


def test_full_pinyin_offers_the_chinese_term_and_phrases(suggester):
    assert texts(suggester.complete("xiangliang")) == ["向量", "向量检索", "向量数据库"]
    assert texts(suggester.complete("xiang liang")) == ["向量", "向量检索", "向量数据库"]
    assert {s.via for s in suggester.complete("xiangliang")} == {"pinyin"}


def test_initials_and_mixed_pinyin_offer_the_phrase(suggester):
    assert texts(suggester.complete("xljs")) == ["向量检索"]
    assert texts(suggester.complete("xiangljs")) == ["向量检索"]
    assert texts(suggester.complete("dpsy")) == ["倒排索引"]


def test_chinese_and_english_prefixes(suggester):
    assert texts(suggester.complete("向量")) == ["向量检索", "向量数据库"]
    assert texts(suggester.complete("rec")) == ["reciprocal", "reciprocal rank"]
    assert texts(suggester.complete("ra")) == ["rank", "ranking"]
    assert texts(suggester.complete("ra", limit=1)) == ["rank"]


def test_the_last_word_of_a_longer_input_is_completed(suggester):
    assert texts(suggester.complete("reciprocal ra")) == ["reciprocal rank", "reciprocal ranking"]
    assert texts(suggester.complete("hnsw 向")) == ["hnsw 向量"]


def test_popular_past_queries_come_first_also_by_pinyin(suggester):
    with_log = suggester.with_queries([("hnsw efsearch", 3), ("向量检索 入门", 2), ("", 9)])
    assert texts(with_log.complete("hn")) == ["hnsw efsearch", "hnsw"]
    assert texts(with_log.complete("xl")) == ["向量检索 入门", "向量", "向量检索", "向量数据库"]
    assert [s.kind for s in with_log.complete("xl")] == ["query", "term", "phrase", "phrase"]
    assert texts(with_log.complete("")) == ["hnsw efsearch", "向量检索 入门"]
    assert texts(suggester.complete("hn")) == ["hnsw"]  # the original is unchanged


def test_nothing_to_complete(suggester):
    assert suggester.complete("zzzz") == []
    assert suggester.complete("") == []
    assert texts(suggester.complete("x" * 10_000)) == []


def test_did_you_mean_corrects_english_by_edit_distance(suggester):
    assert suggester.did_you_mean("retreival") == ["retrieval"]
    assert suggester.did_you_mean("recipocal rank fusoin") == ["reciprocal rank fusion"]
    assert suggester.did_you_mean("Retreival") == ["retrieval"]


def test_did_you_mean_reads_unknown_latin_words_as_pinyin(suggester):
    assert suggester.did_you_mean("xiangliang") == ["向量"]
    assert suggester.did_you_mean("xljs") == ["向量检索"]
    assert suggester.did_you_mean("xiangliang jiansuo") == ["向量检索"]


def test_did_you_mean_replaces_chinese_homophones(suggester):
    assert suggester.did_you_mean("向亮检索") == ["向量检索"]
    assert suggester.did_you_mean("倒排所引") == ["倒排索引"]
    assert suggester.did_you_mean("hnsw 向亮") == ["hnsw 向量"]


def test_nothing_to_correct(suggester):
    assert suggester.did_you_mean("reciprocal rank fusion") == []
    assert suggester.did_you_mean("向量检索") == []
    assert suggester.did_you_mean("qzxwv") == []
    assert suggester.did_you_mean("") == []
    assert suggester.did_you_mean("'; DROP TABLE documents; --") == []


# -- on the sample index ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_suggester(sample_searcher):
    return suggester_for(sample_searcher.reader)


def test_sample_index_offers_the_phrase_for_pinyin_and_initials(sample_suggester):
    assert "向量检索" in texts(sample_suggester.complete("xiangliang"))
    assert texts(sample_suggester.complete("xljs"))[0] == "向量检索"
    assert texts(sample_suggester.complete("daopai"))[:2] == ["倒排", "倒排索引"]


def test_sample_index_shows_english_terms_in_their_surface_form(sample_suggester):
    assert texts(sample_suggester.complete("recip"))[:2] == ["reciprocal", "reciprocal rank"]
    assert "retrieval" in texts(sample_suggester.complete("retr"))
    assert not any(s.text == "retriev" for s in sample_suggester.complete("retr", limit=20))


def test_sample_index_did_you_mean(sample_suggester):
    assert sample_suggester.did_you_mean("retreival") == ["retrieval"]
    assert sample_suggester.did_you_mean("recipocal rank fusoin")[0] == "reciprocal rank fusion"
    assert sample_suggester.did_you_mean("向亮检索") == ["向量检索"]
    assert sample_suggester.did_you_mean("倒排所引的原理") == ["倒排索引的原理"]


def test_popular_queries_come_from_the_query_log(sample_suggester, tmp_path):
    log = QueryLog(tmp_path)
    for _ in range(3):
        log.log_query("hnsw efsearch recall", "bm25", None, 5.0, ["en-015"], 4)
    log.log_query("hnsw zzzz", "bm25", None, 5.0, [], 0)  # found nothing: not offered
    popular = [(row["text"], row["searches"]) for row in log.top_queries(min_results=1)]
    completions = sample_suggester.with_queries(popular).complete("hns")
    assert completions[0].text == "hnsw efsearch recall" and completions[0].kind == "query"
    assert "hnsw zzzz" not in texts(completions)


# -- did-you-mean speaks only when something is likely wrong ------------------------------------------------


def test_a_well_formed_chinese_question_keeps_its_function_words():
    """是由 (shi you) sounds like 石油 (petroleum), but it is a phrase of stopwords, not a typo."""
    suggester = Suggester({"石油": 40, "公司": 30, "合作": 20, "开发": 20, "魔兽": 3})
    assert suggester.did_you_mean("《暗黑破坏神》是由哪两个公司合作开发的？") == []


def test_a_chinese_typo_inside_a_question_is_still_corrected():
    suggester = Suggester({"目前": 40, "唯一": 30, "报纸": 20})
    assert suggester.did_you_mean("哪一家报纸是目嵌唯一的") == ["哪一家报纸是目前唯一的"]


def test_similar_pinyin_corrects_what_homophones_miss():
    suggester = Suggester({"自然": 40, "资源": 30, "牛奶": 20, "价格": 10})
    assert suggester.did_you_mean("字然资源") == ["自然资源"]  # zì rán, a homophone
    assert suggester.did_you_mean("流奶价格") == ["牛奶价格"]  # liú for niú: n and l sound alike to many


def test_a_word_the_index_knows_is_never_replaced_by_one_that_sounds_like_it():
    suggester = Suggester({"自然": 40, "资源": 30, "自燃": 2})
    assert suggester.did_you_mean("自燃资源") == []


def test_function_words_names_and_codes_are_never_corrected():
    suggester = Suggester({"alone": 30, "rpl32": 5, "ucp1": 5, "copi": 4, "mice": 9})
    assert suggester.did_you_mean("has anyone studied this") == []  # anyone is a function word
    assert suggester.did_you_mean("Bcp1 binds Rpl23") == []  # digits: a gene name, not a typo
    assert suggester.did_you_mean("COPX coats") == []  # capitals after the first letter: an acronym
    assert suggester.did_you_mean("β1/Mice binds") == []  # joined by a slash: part of a name
    assert suggester.did_you_mean("mise-like") == []  # joined by a hyphen: part of a compound
    assert suggester.did_you_mean("mise like") == ["mice like"]


def test_a_correction_needs_the_corpus_to_back_it_with_the_query_s_other_words():
    """`support` scores how many of the query's other words occur with the correction; 0 is no backing at all."""
    together = {"retriev": 2, "retrial": 1}  # retrieval occurs with "dense" in the corpus; retrial alone
    terms = {"retrieval": 9, "retrial": 9, "dense": 5}
    backed = Suggester(terms, support=lambda words, context: together.get(words[0], 0))
    assert backed.did_you_mean("dense retrival") == ["dense retrieval", "dense retrial"]  # one edit from each
    assert backed.did_you_mean("dense retreival") == ["dense retrieval"]  # retrial is two edits away
    assert Suggester(terms, support=lambda words, context: 0).did_you_mean("dense retreival") == []


def test_sample_index_leaves_real_queries_alone(sample_searcher, sample_suggester):
    from pipeline.eval.beir import BeirDataset

    from conftest import SAMPLE

    queries = BeirDataset.load(SAMPLE).queries.values()
    assert [q for q in queries if sample_suggester.did_you_mean(q)] == []


def test_a_stopword_between_unknown_characters_is_left_as_it_is():
    """邦的 (bāng de) sounds like 邦德 (Bond), but 的 is a stopword in a stretch of single characters."""
    suggester = Suggester({"邦德": 40, "农业": 30})
    assert suggester.did_you_mean("萨克森邦的农业") == []


def test_a_chinese_correction_keeps_all_but_one_character_of_a_short_window():
    """务士 (wù shì) sounds like 五十 (fifty) and like 武士 (samurai); a typo picks one wrong character, so only
    武士, which keeps 士, is offered, however much commoner 五十 is."""
    suggester = Suggester({"日本": 50, "五十": 400, "武士": 5})
    assert suggester.did_you_mean("日本务士") == ["日本武士"]


def test_a_typo_whose_word_straddles_a_known_neighbour_is_corrected():
    """网球赛 → 网球筛 segments as 网球 + 筛 + 和: the window reaches into 网球 for 球赛, and leaves 网 as it is."""
    suggester = Suggester({"网球": 30, "球赛": 20, "奥运会": 30})
    assert suggester.did_you_mean("网球筛和奥运会") == ["网球赛和奥运会"]


def test_two_pinyin_initials_are_not_read_as_a_chinese_word():
    suggester = Suggester({"全面": 40, "全面发展": 10})
    assert suggester.did_you_mean("qm") == []  # the initials of too many words, and more often a code
    assert suggester.did_you_mean("qmfz") == ["全面发展"]


def test_a_common_word_of_the_language_is_not_a_typo_where_the_corpus_lacks_it():
    """惠民 (a county) sounds like 惠明, which the corpus holds; 惠民 is in the segmenter's dictionary, so it stays."""
    suggester = Suggester({"滨州": 30, "天气": 30, "惠明": 5})
    assert suggester.did_you_mean("滨州惠民天气") == []


def test_two_edits_in_five_letters_make_another_word():
    suggester = Suggester({"shai": 5, "shapes": 3})
    assert suggester.did_you_mean("sharp") == []  # two edits from shai: a word of its own, not a typo of it
    assert suggester.did_you_mean("shaeps") == ["shapes"]  # one edit in six letters


@pytest.fixture(scope="module")
def short_titles(tmp_path_factory):
    """A corpus of short titles, as QBQTC's, where a query's words rarely occur all together."""
    import json

    from pipeline.config import DenseConfig, Settings
    from pipeline.index.build import build_index
    from pipeline.searcher import Searcher

    root = tmp_path_factory.mktemp("titles")
    titles = ["聚美优品 官网", "聚美优品 折扣", "本田 雅阁 报价", "华山 旅游 攻略", "华山 门票", "忘 记 密码", "张稀哲 进球",
              "柳州 螺蛳粉", "柳州 天气", "资源 下载"]
    (root / "titles.jsonl").write_text("".join(json.dumps({"_id": str(i), "title": "", "text": text}, ensure_ascii=False)
                                               + "\n" for i, text in enumerate(titles)))
    settings = Settings(cache_dir=root / "cache", dense=DenseConfig(enabled=False))
    build_index([root / "titles.jsonl"], root / "index", settings)
    return suggester_for(Searcher.open(root / "index", settings).reader)


def test_a_chinese_window_is_read_in_its_whole_query(short_titles):
    """聚酶优品 → 聚美优品 brings in 聚美, a word only the whole query shows (the window 聚美优 reads otherwise)."""
    assert short_titles.did_you_mean("聚酶优品") == ["聚美优品"]


def test_a_correction_matched_nowhere_else_needs_two_documents(short_titles):
    assert short_titles.did_you_mean("张希哲") == []  # 张稀哲 is in one title: as likely a name of its own
    assert short_titles.did_you_mean("浏州") == ["柳州"]  # in two


def test_the_words_a_corrected_piece_reads_as_must_occur_together(short_titles):
    """忘华扇 → 忘华山 reads as 忘 + 华山, which no title holds together."""
    assert short_titles.did_you_mean("忘华扇") == []


def test_single_characters_that_read_as_a_word_of_the_corpus_are_not_a_typo():
    """In 看图写话 the segmenter leaves 写 + 话, which the index holds as the word 写话: not a typo of 写花."""
    terms = {"看图": 30, "写花": 8, "名字": 20}
    known = {*terms, "写话", "写", "话", "花", "有", "什么", "好"}
    assert Suggester(terms, known_terms=known).did_you_mean("看图写话有什么好名字") == []
    assert Suggester(terms, known_terms=known - {"写话"}).did_you_mean("看图写话有什么好名字") == ["看图写花有什么好名字"]


def test_a_word_one_edit_away_is_the_likelier_reading_than_one_two_edits_away():
    """coatmer is one edit from coatomer, which the corpus holds but the query's other words do not back, and two
    from the commoner coated, which they do: the nearer word is the likelier reading, so nothing is offered."""
    suggester = Suggester({"coatomer": 1, "coated": 40, "lipid": 30}, support=lambda words, context: float("coat" in words))
    assert suggester.did_you_mean("coatmer lipid") == []
    assert suggester.did_you_mean("coaed lipid") == ["coated lipid"]  # one edit: the nearest is backed
