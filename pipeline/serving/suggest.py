"""Autocomplete and "did you mean": prefix and pinyin completion, and spelling correction.

Completions come from three places:

* the term dictionary of an index, ranked by document frequency. English terms are stems, so each is shown
  in its most common surface form (`retriev` → "retrieval");
* two-word phrases that occur in at least `min_phrase_df` documents, such as 向量检索 or "reciprocal rank",
  because jieba splits 向量检索 into 向量 + 检索 and a search box should still offer the whole phrase;
* popular past queries from the query log (`QueryLog.top_queries(min_results=1)`), ranked first.

Chinese entries are also keyed by their pinyin (pypinyin): a typed string matches when it can be split into
non-empty prefixes of consecutive syllables, so the full pinyin (`xiangliang`), the initials (`xljs`) and any
mix (`xiangljs`) all offer 向量检索.

Spelling correction (`did_you_mean`) replaces English words missing from the dictionary with the closest
dictionary words by edit distance (Damerau–Levenshtein, 1 edit for words up to 5 letters, 2 beyond), reads
unknown Latin words as pinyin (`xiangliang` → 向量), and replaces Chinese runs with dictionary entries that
sound the same (向亮检索 → 向量检索).
"""

from __future__ import annotations

import bisect
import heapq
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache, reduce

import numpy as np

from ..index.postings import TEXT_FIELD
from ..search.reader import IndexReader
from ..text.analysis import (
    CJK_CLASS,
    CJK_PATTERN,
    TOKEN_PATTERN,
    Analyzer,
    maximal_spans,
)

MAX_INPUT_CHARS = 200  # completion and correction look at no more of a query than this
_PINYIN_INPUT = re.compile(r"^[a-z][a-z' ]*$")
_LATIN_WORD = re.compile(r"^[a-z][a-z0-9+#.\-]*$")
_LETTERS_ONLY = re.compile(r"^[^\W\d_]+$")
# A word joined to another by a hyphen or slash is part of a compound or a name (quasi-conical, β1/Ketel).
_JOINERS = {"-", "/"}
# Function words beyond the index's stopwords: a query's "anyone" or "whose" is never a typo, even where the
# corpus happens not to contain it, and "correcting" it to a content word ("alone") only misleads.
FUNCTION_WORDS = frozenset(
    """ain't almost already also although always among amongst another anybody anyhow anyone anything anyway
    anywhere aren't around became become becomes becoming beforehand behind beside besides beyond can't cannot
    could couldn't didn't doesn't don't done either else elsewhere enough etc even ever every everybody
    everyone everything everywhere except hadn't hasn't haven't hence hereby herein however isn't let's many
    may maybe might mine must mustn't neither never nevertheless nobody none noone nothing nowhere often
    onto otherwise ought perhaps please rather really seem seemed seeming seems shall shan't shouldn't
    since somebody somehow someone something sometime sometimes somewhat somewhere still thereby therefore
    therein thereupon though thus together toward towards unless unlike upon us wasn't weren't whatever
    whence whenever whereas whereby wherein whereupon wherever whether whichever whoever whole whose within
    without won't would wouldn't yet""".split()
)
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{CJK_CLASS}]) (?=[{CJK_CLASS}])")
# How often a word must occur in the segmenter's own dictionary (jieba's counts) to be taken for a word of the
# language: below it are the dictionary's many rare names and compounds, which a typo produces as easily.
MIN_CHINESE_WORD_COUNT = 10


@dataclass(frozen=True)
class Suggestion:
    text: str
    kind: str  # "query" (a past query), "phrase" or "term" (the dictionary)
    weight: float  # searches for a query, document frequency for the dictionary
    via: str  # "prefix" (typed text starts the entry) or "pinyin"


@dataclass(frozen=True)
class _Entry:
    text: str
    kind: str
    weight: float
    key: str  # normalized text: what a typed prefix is compared with
    syllables: tuple[str, ...] = ()  # pinyin, for entries with Chinese characters
    initials: str = ""
    full: str = ""  # the syllables joined


def normalize(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: how typed text and entries are compared."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def has_cjk(text: str) -> bool:
    return CJK_PATTERN.search(text) is not None


@lru_cache(maxsize=65_536)
def pinyin_syllables(text: str) -> tuple[str, ...]:
    """Toneless pinyin of each Chinese character; Latin words and digits are kept as their own 'syllables'."""
    from pypinyin import Style, lazy_pinyin

    out: list[str] = []
    for item in lazy_pinyin(text, style=Style.NORMAL):
        out.extend(re.findall(r"[a-z0-9]+", item.casefold()))
    return tuple(out)


# Sounds that speakers of many dialects, and pinyin typists, confuse: z/zh, c/ch, s/sh, n/l, an/ang, en/eng, in/ing.
_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"))
_FUZZY_FINALS = (("ang", "an"), ("eng", "en"), ("ing", "in"))


def fuzzy_syllable(syllable: str) -> str:
    """A syllable with the commonly confused sounds merged: `zhang` and `zan` both become `zan`."""
    for long, short in _FUZZY_INITIALS:
        if syllable.startswith(long):
            syllable = short + syllable[len(long):]
            break
    for long, short in _FUZZY_FINALS:
        if syllable.endswith(long):
            return syllable[: -len(long)] + short
    return syllable


def fuzzy_pinyin(syllables: tuple[str, ...]) -> str:
    return "".join(fuzzy_syllable(s) for s in syllables)


@lru_cache(maxsize=1)
def _chinese_word_counts() -> dict[str, int]:
    import jieba

    counts = {}
    with jieba.get_dict_file() as lines:
        for line in lines:
            word, count, *_ = line.decode("utf-8").split(" ")
            counts[word] = int(count)
    return counts


def is_chinese_word(term: str) -> bool:
    """Whether `term` is a common word of the language (jieba's dictionary): a query's 惠民 is not a typo, even
    where the corpus lacks it, any more than an English function word is."""
    return _chinese_word_counts().get(term, 0) >= MIN_CHINESE_WORD_COUNT


def pinyin_initials(text: str) -> str:
    return "".join(s[0] for s in pinyin_syllables(text))


def pinyin_matches(typed: str, syllables: tuple[str, ...]) -> bool:
    """Whether `typed` (letters only) splits into non-empty prefixes of consecutive syllables from the first.

    `xiangliang`, `xljs`, `xiangljs` and `xiangliangjians` all match (xiang, liang, jian, suo).
    """
    n = len(typed)

    @lru_cache(maxsize=None)
    def match(i: int, j: int) -> bool:
        if j == n:
            return True
        if i == len(syllables):
            return False
        syllable = syllables[i]
        for p in range(min(len(syllable), n - j), 0, -1):
            if syllable[:p] == typed[j : j + p] and match(i + 1, j + p):
                return True
        return False

    return bool(typed) and bool(syllables) and typed[0] == syllables[0][0] and match(0, 0)


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (adjacent transpositions count 1); `limit + 1` once it exceeds limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] | None = None
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if previous2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def _entry(text: str, kind: str, weight: float) -> _Entry:
    key = normalize(text)
    if has_cjk(key):
        syllables = pinyin_syllables(key)
        return _Entry(text, kind, float(weight), key, syllables, "".join(s[0] for s in syllables), "".join(syllables))
    return _Entry(text, kind, float(weight), key)


class Suggester:
    """Completion and correction over one index's dictionary, plus popular past queries."""

    def __init__(
        self,
        terms: dict[str, float],
        phrases: dict[str, float] | None = None,
        known_terms: Iterable[str] | None = None,
        analyzer: Analyzer | None = None,
        queries: Iterable[tuple[str, float]] = (),
        support: Callable[[list[str], list[str]], float] | None = None,
        words: dict[str, float] | None = None,
    ):
        """`terms` and `phrases` map display text to weight (document frequency). `known_terms` is the index
        vocabulary (analyzed terms) that decides whether a query word needs correcting; by default the
        analyzed forms of `terms`. `support(replacement terms, other query terms)` says how well the corpus
        backs a correction, above 0 when it does (see `corpus_support`). `words` adds surface forms (with
        weights) to correct English words to."""
        self.analyzer = analyzer or Analyzer()
        # The same segmentation with stopwords kept: corrections must see 是由 to leave it alone.
        self._segmenter = Analyzer(self.analyzer.config.model_copy(update={"remove_stopwords": False}))
        self._support = support
        best: dict[str, _Entry] = {}
        for kind, table in (("term", terms), ("phrase", phrases or {})):
            for text, weight in table.items():
                if not text or weight <= 0:
                    continue
                entry = _entry(text, kind, weight)
                if entry.key not in best or best[entry.key].weight < entry.weight:
                    best[entry.key] = entry
        self._entries = sorted(best.values(), key=lambda e: (-e.weight, e.key))
        self._keys = sorted((e.key, i) for i, e in enumerate(self._entries))
        self._key_list = [k for k, _ in self._keys]
        self._pinyin_buckets: dict[str, list[_Entry]] = defaultdict(list)  # first letter → entries, heaviest first
        self._by_full_pinyin: dict[str, list[_Entry]] = defaultdict(list)
        self._by_initials: dict[str, list[_Entry]] = defaultdict(list)
        self._by_fuzzy_pinyin: dict[str, list[_Entry]] = defaultdict(list)
        for entry in self._entries:
            if entry.syllables:
                self._pinyin_buckets[entry.syllables[0][0]].append(entry)
                self._by_full_pinyin[entry.full].append(entry)
                self._by_initials[entry.initials].append(entry)
                self._by_fuzzy_pinyin[fuzzy_pinyin(entry.syllables)].append(entry)
        # Latin dictionary words for spelling correction, bucketed by length: every surface form the corpus
        # uses where known (a typo of "reduces" should come back as "reduces", not as the stem's commonest form).
        self._words: dict[str, float] = {}
        for entry in self._entries:
            if entry.kind == "term" and _LATIN_WORD.match(entry.key):
                self._words[entry.key] = max(self._words.get(entry.key, 0.0), entry.weight)
        for word, weight in (words or {}).items():
            key = normalize(word)
            if _LATIN_WORD.match(key):
                self._words[key] = max(self._words.get(key, 0.0), float(weight))
        self._words_by_length: dict[int, list[tuple[str, float]]] = defaultdict(list)
        for word, weight in self._words.items():
            self._words_by_length[len(word)].append((word, weight))
        self._cjk_texts = {e.key for e in self._entries if e.syllables}
        if known_terms is None:
            known: set[str] = set()
            for entry in self._entries:
                if entry.kind == "term":
                    known.update(self.analyzer.terms(entry.text))
            known_terms = known
        self._known = frozenset(known_terms)
        self._queries: list[_Entry] = []
        self.set_queries(queries)

    # -- construction ---------------------------------------------------------------------------------

    def set_queries(self, queries: Iterable[tuple[str, float]]) -> None:
        """Replace the past queries offered (text, searches), e.g. from `QueryLog.top_queries(min_results=1)`."""
        entries = {}
        for text, weight in queries:
            text = " ".join((text or "").split())[:MAX_INPUT_CHARS]
            if text and weight > 0:
                entry = _entry(text, "query", weight)
                if entry.key not in entries or entries[entry.key].weight < entry.weight:
                    entries[entry.key] = entry
        self._queries = sorted(entries.values(), key=lambda e: (-e.weight, e.key))

    def with_queries(self, queries: Iterable[tuple[str, float]]) -> Suggester:
        """A copy sharing this dictionary, offering these past queries."""
        copy = object.__new__(Suggester)
        copy.__dict__.update(self.__dict__)
        copy.set_queries(queries)
        return copy

    # -- completion ----------------------------------------------------------------------------------

    def complete(self, text: str, limit: int = 8) -> list[Suggestion]:
        """Up to `limit` completions of what was typed: past queries first, then dictionary entries by weight.

        With several words typed, the whole input is completed first, then its last word.
        Empty input offers the most popular past queries.
        """
        typed = normalize(text[:MAX_INPUT_CHARS])
        if not typed:
            return [Suggestion(e.text, e.kind, e.weight, "prefix") for e in self._queries[:limit]]
        out: dict[str, Suggestion] = {}

        def add(entry: _Entry, via: str, head: str = "") -> bool:
            full = head + entry.text
            key = normalize(full)
            if key != typed and key not in out and len(out) < limit:
                out[key] = Suggestion(full, entry.kind, entry.weight, via)
            return len(out) >= limit

        compact = typed.replace(" ", "").replace("'", "") if _PINYIN_INPUT.match(typed) else ""
        for entry in self._queries:
            if entry.key.startswith(typed):
                if add(entry, "prefix"):
                    break
            elif compact and entry.syllables and pinyin_matches(compact, entry.syllables):
                if add(entry, "pinyin"):
                    break
        for entry, via in self._dictionary_matches(typed, limit):
            if add(entry, via):
                break
        if " " in typed and len(out) < limit:
            head, last = typed.rsplit(" ", 1)
            if last:
                for entry, via in self._dictionary_matches(last, limit, kinds=("term",)):
                    joiner = "" if has_cjk(head[-1:]) and has_cjk(entry.text[:1]) else " "
                    if add(entry, via, head + joiner):
                        break
        return list(out.values())

    def _dictionary_matches(self, typed: str, limit: int, kinds=("term", "phrase")):
        """Dictionary entries starting with `typed` (heaviest first), then those whose pinyin matches it."""
        start = bisect.bisect_left(self._key_list, typed)
        end = start
        while end < len(self._key_list) and self._key_list[end].startswith(typed):
            end += 1
        matches = (self._entries[i] for _, i in self._keys[start:end])
        prefixed = heapq.nsmallest(limit * 2, (e for e in matches if e.kind in kinds), key=lambda e: (-e.weight, e.key))
        found = [(e, "prefix") for e in prefixed]
        if _PINYIN_INPUT.match(typed):
            compact = typed.replace(" ", "").replace("'", "")
            count = 0
            for entry in self._pinyin_buckets.get(compact[0], ()):
                if entry.kind in kinds and pinyin_matches(compact, entry.syllables):
                    found.append((entry, "pinyin"))
                    count += 1
                    if count >= limit * 2:
                        break
        return found

    # -- correction -----------------------------------------------------------------------------------

    def is_known(self, text: str) -> bool:
        """Whether every term of `text` is in the index vocabulary."""
        return all(term in self._known for term in self.analyzer.terms(text))

    def did_you_mean(self, query: str, limit: int = 3, force: bool = False) -> list[str]:
        """Corrected versions of `query`, best first; empty when there is nothing to correct.

        Only what is likely a typo is touched: an English word of letters only (no digits, no capitals after
        the first, not joined to another by - or /: those are names, codes and compounds) missing from the
        vocabulary, or a stretch of Chinese that segments into single characters or unknown words (not common
        words of the language: 惠民 stays) and is not only stopwords (是由 stays). A correction is kept only when
        the corpus backs it (`support`): its words occur together, and match the rest of the corrected query
        better than any document matched the query without it.
        With `force` (a query that matched nothing), Chinese words the vocabulary knows may be replaced too.
        """
        query = unicodedata.normalize("NFKC", query[:MAX_INPUT_CHARS])
        spans: list[tuple[int, int, list[str], tuple[int, int]]] = []  # window, options, suspect piece
        for match in TOKEN_PATTERN.finditer(query):
            token = match.group()
            if match.lastgroup == "cjk":
                reached = 0
                for start, end, kept in self._suspect_chinese(token, force):
                    # A typo can leave its word's other characters in a neighbouring piece (网球赛 → 网球筛: 网球 +
                    # 筛): the windows may reach one character into each neighbour, which they never change, and
                    # never into the previous suspect's windows.
                    low, high = max(reached, start - 1), min(len(token), end + 1)
                    reached = high
                    fixed = frozenset({*range(start - low), *(k + start - low for k in kept),
                                       *range(end - low, high - low)})
                    spans.append((match.start() + low, match.start() + high,
                                  _correct_chinese(self, token[low:high], fixed),
                                  (match.start() + start, match.start() + end)))
            elif _LETTERS_ONLY.match(token) and (token[1:].islower() or len(token) == 1) \
                    and not {query[match.start() - 1 : match.start()], query[match.end() : match.end() + 1]} \
                    & _JOINERS and token.casefold() not in FUNCTION_WORDS and not self.is_known(token.casefold()):
                spans.append((match.start(), match.end(), _correct_word(self, token.casefold()),
                              (match.start(), match.end())))
        spans = [(start, end, self._backed(query, start, end, options, piece))
                 for start, end, options, piece in spans]
        spans = [span for span in spans if span[2]]
        if not spans:
            return []
        variants = [[options[0] for *_, options in spans]]
        for i, (*_, options) in enumerate(spans):
            for option in options[1:]:
                variant = list(variants[0])
                variant[i] = option
                variants.append(variant)
        out: list[str] = []
        for variant in variants:
            text = _splice(query, [(s, e) for s, e, _ in spans], variant)
            if text != query and text not in out:
                out.append(text)
        return out[:limit]

    def _suspect_chinese(self, run: str, force: bool) -> list[tuple[int, int, frozenset[int]]]:
        """(start, end, kept) within `run` of the pieces that may be typos: each word the vocabulary lacks (a
        typo rarely survives segmentation as a known word), and each stretch of two or more single characters
        (what the segmenter leaves of a word it could not place) that is not all stopwords (a well-formed
        phrase's function words, 是由, 哪, are) and does not read as words of the vocabulary (写 + 话 as 写话).
        `kept` are the offsets, within the piece, of single-character stopwords (的, 是), which a correction must
        leave as they are: 邦的 is not 邦德.
        With `force`, known words are suspects too."""
        analyzed = self._segmenter.analyze(run)
        pieces = [(analyzed.terms[i], analyzed.starts[i], analyzed.ends[i])
                  for i in maximal_spans(analyzed.starts, analyzed.ends)]
        suspects: list[tuple[int, int, bool]] = []  # (start, end, whether a suspect on its own)
        singles: list[tuple[str, int, int]] = []

        def close_singles() -> None:
            if len(singles) >= 2 and any(self.analyzer.terms(term) for term, _, _ in singles) \
                    and (force or not self._reads_as_known_words(run, singles)):
                suspects.append((singles[0][1], singles[-1][2], True))
            elif len(singles) == 1 and self.analyzer.terms(singles[0][0]):
                suspects.append((singles[0][1], singles[0][2], False))
            singles.clear()

        for term, start, end in pieces:
            if len(term) == 1 and (not singles or singles[-1][2] == start):
                singles.append((term, start, end))
                continue
            close_singles()
            if len(term) == 1:
                singles.append((term, start, end))
            elif force or (term not in self._known and self.analyzer.terms(term) and not is_chinese_word(term)):
                suspects.append((start, end, True))
        close_singles()
        # A typo can split a word across two pieces (简化 → 践化: 有践 + 化儒略), or leave a character of it alone
        # beside an unknown word (柴鸡蛋 → 柴鸡旦: 柴鸡 + 旦): neighbours are one unit, and a lone character (not a
        # stopword) is a suspect only as part of one.
        merged: list[list] = []
        for start, end, alone in suspects:
            if merged and merged[-1][1] == start:
                merged[-1][1:] = [end, merged[-1][2] or alone]
            else:
                merged.append([start, end, alone])
        stopwords = {start for term, start, end in pieces if end - start == 1 and not self.analyzer.terms(term)}
        return [(start, end, frozenset(i - start for i in stopwords if start <= i < end))
                for start, end, alone in merged if alone]

    def _reads_as_known_words(self, run: str, singles: list[tuple[str, int, int]]) -> bool:
        """Whether every character of a stretch of single characters that is not a stopword lies in a word of
        2–4 characters of the stretch that the vocabulary knows: the segmenter split a word of the corpus in this
        context (看图写话 → 看图 + 写 + 话, where the corpus has 写话), and a typo rarely makes a word of the corpus."""
        start, end = singles[0][1], singles[-1][2]
        simplified = self.analyzer.normalize(run)
        if len(simplified) != len(run):
            simplified = run
        covered = set()
        for length in range(2, min(4, end - start) + 1):
            for i in range(start, end - length + 1):
                if simplified[i : i + length] in self._known:
                    covered.update(range(i, i + length))
        return all(s in covered for term, s, _ in singles if self.analyzer.terms(term))

    def _backed(self, query: str, start: int, end: int, options: list[str], piece: tuple[int, int]) -> list[str]:
        """The options for the window `query[start:end]` that the corpus backs (`support` of the terms each
        brings in, with the rest of the corrected query as context, above zero); without an index (`support`
        unset), plausibility alone decides. The terms brought in are those holding a changed character and every
        word the suspect `piece` now reads as: 忘华扇 → 忘华山 claims 忘 + 华山, which must then occur together.
        Chinese options keep their order of plausibility (`_correct_chinese`), which the backing, weighing IDF,
        would turn towards rare words (网右 → 网优 before 网游); English ones go by their backing."""
        if self._support is None:
            return options
        original = query[start:end]
        had = set(self.analyzer.terms(original))
        backing = {}
        for option in options:
            corrected = query[:start] + option + query[end:]
            analyzed = self.analyzer.analyze(corrected)
            inside = [t for t, s, e in zip(analyzed.terms, analyzed.starts, analyzed.ends)
                      if piece[0] <= s and e <= piece[1]] if len(option) == len(original) else []
            new = list(dict.fromkeys(t for t in self._changed_terms(query, start, end, option) + inside
                                     if t not in had))
            context = [t for t in analyzed.terms if t in self._known and t not in new]
            backing[option] = self._support(new, context) if new else 0
        backed = [o for o in options if backing[o] > 0]
        return backed if has_cjk(original) else sorted(backed, key=lambda o: -backing[o])

    def _changed_terms(self, query: str, start: int, end: int, option: str) -> list[str]:
        """The terms that hold a character `option` changed in `query[start:end]`. A Chinese window is read in
        its whole query (聚酶优品 → 聚美优品 brings in 聚美, which the window 聚美优 alone segments otherwise), and
        its unchanged neighbours, segmented anew (角 of 三角), are no evidence to ask the corpus for. Every term
        of `option`, when the lengths differ (a Latin word)."""
        original = query[start:end]
        if len(option) != len(original):
            return self.analyzer.terms(option)
        simplified = self.analyzer.normalize(original)
        if len(simplified) != len(original):
            simplified = original
        changed = {start + i for i, (a, b) in enumerate(zip(simplified, option)) if a != b}
        analyzed = self.analyzer.analyze(query[:start] + option + query[end:])
        return [t for t, s, e in zip(analyzed.terms, analyzed.starts, analyzed.ends)
                if any(s <= i < e for i in changed)]


def suggester_for(reader: IndexReader, max_docs: int = 20_000, max_chars: int = 4_000, min_phrase_df: int = 2,
                queries: Iterable[tuple[str, float]] = ()) -> Suggester:
    """The dictionary of an open index: its vocabulary with document frequencies, surface forms and
    phrases read from (up to `max_docs` of) its documents."""
    index = reader.version
    vocabulary = index.vocabulary.terms
    df = reader.postings(TEXT_FIELD).doc_frequencies()
    analyzer = reader.analyzer
    surfaces: dict[str, Counter] = defaultdict(Counter)
    phrase_df: Counter = Counter()
    documents = index.documents
    n = min(documents.num_rows, max_docs)
    titles = documents.column("title").slice(0, n).to_pylist()
    bodies = documents.column("body").slice(0, n).to_pylist()
    for title, body in zip(titles, bodies):
        seen: set[str] = set()
        for text in (title or "", (body or "")[:max_chars]):
            _scan(analyzer, text, surfaces, seen)
        phrase_df.update(seen)
    terms: dict[str, float] = {}
    for term_id, term in enumerate(vocabulary):
        weight = float(df[term_id]) if term_id < len(df) else 0.0
        if weight <= 0 or not _completable(term):
            continue
        display = surfaces[term].most_common(1)[0][0] if term in surfaces else term
        terms[display] = max(terms.get(display, 0.0), weight)
    phrases = {p: float(c) for p, c in phrase_df.items() if c >= min_phrase_df}
    words = {surface: float(count) for counter in surfaces.values() for surface, count in counter.items()}
    return Suggester(terms, phrases, known_terms=vocabulary, analyzer=analyzer, queries=queries,
                     support=corpus_support(reader), words=words)


def _correct_word(suggester: Suggester, word: str) -> list[str]:
    candidates: list[tuple[float, float, str]] = []
    if len(word) >= 3:
        # Two edits in five letters leave a different word (sharp → shai): one edit up to five letters, two
        # beyond, as Lucene's AUTO fuzziness.
        limit = 1 if len(word) <= 5 else 2
        for length in range(len(word) - limit, len(word) + limit + 1):
            for other, weight in suggester._words_by_length.get(length, ()):
                # A misspelling rarely changes both of the first two letters: a cheap filter first.
                if other[0] != word[0] and other[1:2] != word[1:2] and other[0] != word[1:2]:
                    continue
                distance = edit_distance(word, other, limit)
                if distance <= limit:
                    candidates.append((float(distance), -weight, other))
        # Only the nearest words (Norvig's corrector: a known word one edit away before any two away): a word the
        # corpus holds one edit from the typed one (coatmer: coatomer) is its likelier reading, even where the
        # rest of the query does not back it, than a commoner word two edits away that does (coated).
        nearest = min((distance for distance, *_ in candidates), default=0.0)
        candidates = [candidate for candidate in candidates if candidate[0] == nearest]
    if word.isalpha() and word.isascii():
        for entry in suggester._by_full_pinyin.get(word, [])[:3]:
            candidates.append((0.5, -entry.weight, entry.text))
        if len(word) >= 3:  # two letters are the initials of too many words, and more often a code (qm)
            for entry in suggester._by_initials.get(word, [])[:3]:
                candidates.append((1.5, -entry.weight, entry.text))
    best: dict[str, tuple] = {}
    for candidate in sorted(candidates):
        best.setdefault(candidate[2], candidate)
    return [text for *_, text in sorted(best.values())][:3]

MIN_SOLE_DOCS = 2  # documents that must hold a correction when nothing else of the query is matched
MAX_CHINESE_OPTIONS = 8  # single-window replacements per suspect piece handed to the corpus check
ENTRIES_PER_SOUND = 3  # dictionary entries tried per window and pronunciation, commonest first


def _correct_chinese(suggester: Suggester, run: str, kept: frozenset[int] = frozenset()) -> list[str]:
    """`run` with one window of 2–4 characters replaced by a dictionary entry that sounds the same (toneless
    pinyin) or similar (`fuzzy_syllable`). A typo picks the wrong character for a sound, so an entry must keep
    the window's other characters: it may change at most half of them (one of two or three), never those at
    the `kept` offsets, and fewer changes come first; then the same sound before a similar one, then commoner
    entries, then longer windows. Windows that are dictionary entries already are left alone."""
    simplified = suggester.analyzer.normalize(run)
    if len(simplified) != len(run):
        simplified = run
    options: list[tuple[int, int, float, int, str]] = []
    for length in range(min(4, len(simplified)), 1, -1):
        for i in range(len(simplified) - length + 1):
            piece = simplified[i : i + length]
            if piece in suggester._cjk_texts:
                continue
            syllables = pinyin_syllables(piece)
            for cost, table, key in ((0, suggester._by_full_pinyin, "".join(syllables)),
                                     (1, suggester._by_fuzzy_pinyin, fuzzy_pinyin(syllables))):
                found = 0
                for entry in table.get(key, ()):
                    if len(entry.key) != length or entry.key == piece:
                        continue
                    changed = [k for k in range(length) if entry.key[k] != piece[k]]
                    if len(changed) > max(1, length // 2) or any(i + k in kept for k in changed):
                        continue
                    fixed = simplified[:i] + entry.text + simplified[i + length:]
                    options.append((len(changed), cost, -entry.weight, -length, fixed))
                    found += 1
                    if found == ENTRIES_PER_SOUND:
                        break
    return list(dict.fromkeys(text for *_, text in sorted(options)))[:MAX_CHINESE_OPTIONS]


def corpus_support(reader: IndexReader) -> Callable[[list[str], list[str]], float]:
    """`support(terms, context)`: whether the corrected query matches clearly better than the original, and by
    how much. Above 0 only when some document holds all the `terms` the index knows (at least one; the
    segmenter's sub-words of a corrected phrase need not all be words of the corpus) and, with no `context`,
    when `MIN_SOLE_DOCS` do. For Chinese terms, such a document must hold more of the query's IDF weight, the new
    terms included, than the best document held without the correction (a rare corrected word counts for more
    than a common one; short titles rarely hold a third of a query's words, so none is asked). For Latin ones it
    must hold at least a third of the `context` terms and as many of the query's words, counting the corrected
    one, as the best document without it. Then that weight (count) over the former best's."""
    postings = reader.postings(TEXT_FIELD)
    idf = np.log1p(reader.n_docs / np.maximum(postings.doc_frequencies(), 1))

    def docs(term_id: int) -> np.ndarray:
        return postings.docs[postings.span(term_id)]

    def known(terms: list[str]) -> list[int]:
        """Vocabulary ids of the terms; a Chinese word the index does not hold whole counts as its characters
        where it holds each (jieba reads 封号 as one word in a query and as 封 + 号 in a title)."""
        out = []
        for term in terms:
            ids = reader.known_ids([term])
            if not ids and has_cjk(term) and len(characters := reader.known_ids(list(term))) == len(term):
                ids = characters
            out += ids
        return out

    def support(terms: list[str], context: list[str]) -> float:
        ids = sorted(set(known(terms)))
        if not ids:
            return 0.0
        together = reduce(np.intersect1d, [docs(t) for t in ids])
        others = sorted(set(known(context)) - set(ids))
        if not others:
            # Nothing else to match: one document holding a word (a name: 张希哲 → 张稀哲) may as well hold the
            # variant that was typed; two or more make the corrected word the likelier.
            return float(len(together) >= MIN_SOLE_DOCS)
        if not len(together):
            return 0.0
        held = np.zeros((len(others), len(together)), dtype=bool)
        for row, term in enumerate(others):
            held[row] = np.isin(together, docs(term))
        weights = idf[others]
        context_docs = np.concatenate([docs(t) for t in others])
        before = float(np.bincount(context_docs, weights=np.repeat(weights, [len(docs(t)) for t in others])).max())
        best_count = int(np.bincount(context_docs).max())
        if all(has_cjk(term) for term in terms):
            after = float(idf[ids].sum() + (weights @ held).max())
            return after / before if after > before else 0.0
        enough = held.sum(axis=0) * 3 >= len(others)
        if not enough.any():
            return 0.0
        # English corrections are often common words, whose IDF rarely outweighs a rarer query word their
        # documents lack: counted, such a document may lack one (SciFact: 72% restored counted, 66% weighed).
        most = int(held.sum(axis=0).max())
        return (1 + most) / best_count if 1 + most >= best_count else 0.0

    return support


def _splice(text: str, spans: list[tuple[int, int]], replacements: list[str]) -> str:
    out, cursor = [], 0
    for (start, end), replacement in zip(spans, replacements):
        out.append(text[cursor:start])
        out.append(replacement)
        cursor = end
    out.append(text[cursor:])
    joined = "".join(out)
    # A Latin word read as pinyin becomes Chinese: drop the space between two Chinese replacements.
    return _SPACE_BETWEEN_CJK.sub("", joined)


def _completable(term: str) -> bool:
    if has_cjk(term):
        return len(term) >= 2
    return len(term) >= 2 and not term.isdigit()


def _scan(analyzer: Analyzer, text: str, surfaces: dict[str, Counter], phrases: set[str]) -> None:
    """Count Latin surface forms per term, and collect the two-word phrases of one text."""
    if not text:
        return
    analyzed = analyzer.analyze(text)
    tokens = [(analyzed.terms[i], analyzed.starts[i], analyzed.ends[i])
              for i in maximal_spans(analyzed.starts, analyzed.ends, reach=12)]
    previous = None
    for term, start, end in tokens:
        surface = text[start:end]
        cjk = has_cjk(term)
        if not cjk and surface.isalpha():
            surfaces[term][surface.casefold()] += 1
        if previous is not None:
            p_term, p_start, p_end, p_cjk = previous
            if cjk and p_cjk and p_end == start:
                phrases.add(p_term + term)
            elif not cjk and not p_cjk and text[p_end:start] == " " and surface.isalpha() \
                    and text[p_start:p_end].isalpha():
                phrases.add(f"{text[p_start:p_end].casefold()} {surface.casefold()}")
        previous = (term, start, end, cjk)
