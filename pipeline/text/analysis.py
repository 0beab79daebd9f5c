"""One analyzer for documents and queries: normalisation, Chinese segmentation, English stemming, stopwords."""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cache, cached_property
from itertools import pairwise

import numpy as np

from ..config import AnalyzerConfig

# CJK ideographs (basic, extension A, compatibility, extensions B–F).
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2EBEF))
CJK_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_RANGES)
# A Latin-script word: word characters that are not CJK. Dots join identifiers and decimals
# (`3.14`, `node.js`, `x86_64`), and `c++` / `c#` keep their suffix.
_WORD = rf"[^\W{CJK_CLASS}]"
TOKEN_PATTERN = re.compile(rf"(?P<cjk>[{CJK_CLASS}]+)|(?P<word>{_WORD}+(?:\.{_WORD}+)*(?:\+\+|#)?)")
CJK_PATTERN = re.compile(f"[{CJK_CLASS}]")
CJK_RUN_SPLIT = re.compile(f"([{CJK_CLASS}]+)")
# A lone surrogate (half of a UTF-16 pair) is a valid `str` character that no encoder, OpenCC included, accepts.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_LATIN_LETTER = re.compile("[A-Za-z]")
# Half-open code point ranges whose odd-numbered buckets are A–Z, a–z, kana, CJK ext. A, CJK, Hangul,
# CJK compatibility and CJK ext. B–F.
_SCRIPT_BOUNDS = np.array([0x41, 0x5B, 0x61, 0x7B, 0x3040, 0x3100, 0x3400, 0x4DC0, 0x4E00, 0xA000, 0xAC00, 0xD7B0,
                           0xF900, 0xFB00, 0x20000, 0x2EBF0], dtype=np.uint32)

ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such
    than that the their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom why will with you your yours yourself
    yourselves""".split()
)

# stopwords-iso's Chinese list also holds numerals and calendar words (年, 日, 九), which carry
# meaning in questions about dates and counts, so those are kept as terms.
_KEEP_CHINESE = set("零一二三四五六七八九十百千万亿两年月日号区") | {"第一", "第二"}


def _chinese_stopwords(to_simplified) -> frozenset[str]:
    import stopwordsiso

    words = set()
    for word in stopwordsiso.stopwords("zh"):
        word = to_simplified(unicodedata.normalize("NFKC", word))
        if CJK_PATTERN.search(word) and word not in _KEEP_CHINESE and not any(c.isdigit() for c in word):
            words.add(word)
    return frozenset(words)


@dataclass(slots=True)
class AnalyzedText:
    """Terms of one text, each with its position and its [start, end) character span in the original text.

    Positions count words for Latin script and characters for CJK, so stopwords leave gaps and the
    overlapping words of search-mode segmentation share the position of their first character:
    a phrase matches when its terms sit at the same relative positions in the document.
    """

    terms: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.terms)

    def within(self, start: int, end: int) -> AnalyzedText:
        """The terms whose span lies inside [start, end) of the text: one clause of an analyzed query."""
        keep = [i for i, (s, e) in enumerate(zip(self.starts, self.ends)) if start <= s and e <= end]
        return AnalyzedText([self.terms[i] for i in keep], [self.positions[i] for i in keep],
                            [self.starts[i] for i in keep], [self.ends[i] for i in keep])

    def maximal(self) -> list[tuple[str, int]]:
        """(term, position) of the terms no longer term covers: search-mode sub-words of 中华人民共和国 drop out."""
        return [(self.terms[i], self.positions[i]) for i in maximal_spans(self.starts, self.ends)]


def replace_lone_surrogates(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it encodes as UTF-8; lengths are unchanged."""
    return _LONE_SURROGATE.sub("\ufffd", text)


_UNSEEN = object()
# Words whose terms an analyzer remembers, and how long they may be: past the count the memory starts again, and
# longer words (rare in text, and the way hostile input would fill it) are not kept, so it stays a few megabytes.
_ALPHA_TERMS_KEPT = 1 << 18
_MEMO_WORD_CHARS = 32
# Kinds of character for offset-exact normalisation (see Analyzer._char_kind).
_COMBINES, _EXPANDS = 1, 2


@cache
def _composition_secondaries() -> frozenset[str]:
    """Characters that compose with the character before them although they are not combining marks: the second
    half of a canonical decomposition pair (Indic vowel signs, ﾞ's U+3099 …) and the Hangul vowel and final jamo."""
    found = set(map(chr, range(0x1161, 0x1176))) | set(map(chr, range(0x11A8, 0x11C3)))
    for point in range(0x20000):  # no canonical pair decomposes a character beyond plane 1
        parts = unicodedata.decomposition(chr(point)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            found.add(chr(int(parts[1], 16)))
    return frozenset(found)


@dataclass(slots=True)
class OffsetMap:
    """Maps offsets in normalised text back to the original: `chunks` are the (normalised start, normalised end,
    original start, original end) of the pieces that changed length; elsewhere characters correspond one to one."""

    chunks: list[tuple[int, int, int, int]]

    def _locate(self, position: int) -> tuple[int, int | None]:
        """(offset in the original of `position` between chunks, None) or (chunk start, chunk end) inside one."""
        i = bisect_right(self.chunks, position, key=lambda chunk: chunk[0]) - 1
        if i < 0:
            return position, None
        _, norm_end, start, end = self.chunks[i]
        if position < norm_end:
            return start, end
        return end + position - norm_end, None

    def start(self, position: int) -> int:
        return self._locate(position)[0]

    def end(self, position: int) -> int:
        """The original end offset of a span whose normalised end is `position` (exclusive)."""
        start, end = self._locate(position - 1)
        return start + 1 if end is None else end


def maximal_spans(starts: list[int], ends: list[int], reach: int | None = None) -> list[int]:
    """Indexes of the spans that no longer span covers; `reach` bounds the neighbours looked at to [i - reach, i + reach)
    (search-mode segmentation overlaps only nearby)."""
    out = []
    n = len(starts)
    for i, (start, end) in enumerate(zip(starts, ends)):
        low, high = (0, n) if reach is None else (max(0, i - reach), min(n, i + reach))
        covered = any(
            starts[j] <= start and end <= ends[j] and (ends[j] - starts[j]) > (end - start) for j in range(low, high)
        )
        if not covered:
            out.append(i)
    return out


class Analyzer:
    """Turns text into index terms; the same instance serves indexing and querying."""

    def __init__(self, config: AnalyzerConfig | None = None):
        self.config = config or AnalyzerConfig()
        self._kinds: dict[str, int] = {}

    @cached_property
    def _to_simplified(self):
        import opencc

        converter = opencc.OpenCC("t2s")
        return converter.convert

    @cached_property
    def _segment(self):
        if self.config.segmenter == "rjieba":
            import rjieba

            return lambda run: rjieba.tokenize(run, mode="search")
        import jieba

        jieba.setLogLevel(60)
        return lambda run: jieba.tokenize(run, mode="search")

    @cached_property
    def _stem(self):
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
        return stemmer.stemWord

    @cached_property
    def _alpha_terms(self) -> dict[str, str | None]:
        """Each alphabetic word's term (None for a stopword), as analyzed before: stemming a word costs ten times
        looking it up, and a corpus repeats its words."""
        return {}

    @cached_property
    def _stopwords(self) -> frozenset[str]:
        if not self.config.remove_stopwords:
            return frozenset()
        return ENGLISH_STOPWORDS | _chinese_stopwords(self._to_simplified)

    def normalize(self, text: str) -> str:
        """NFKC, case folding and Traditional → Simplified Chinese; safe for any `str` (lone surrogates become U+FFFD)."""
        return self._normalize_with_offsets(text)[0]

    def _normalize_with_offsets(self, text: str) -> tuple[str, OffsetMap | None]:
        """Normalised text, plus a map from its offsets to the original's where a character changed length.

        Text is normalised in pieces that cannot interact: a character with the marks that compose with it
        (ｶﾞ → ガ, e + ◌́ → é) is one piece, so a word normalises the same whatever surrounds it, and every term's span
        maps back to the characters it came from."""
        text = replace_lone_surrogates(text)
        complex_chars = set() if text.isascii() else {c for c in set(text) if self._char_kind(c)}
        if not complex_chars:
            # Every character normalises to exactly one and none composes: offsets are unchanged.
            return self._to_simplified_runs(self._fold(text)), None
        combining = "".join(re.escape(c) for c in complex_chars if self._char_kind(c) == _COMBINES)
        expanding = "".join(re.escape(c) for c in complex_chars if self._char_kind(c) == _EXPANDS)
        alternatives = ([f".?[{combining}]+"] if combining else []) + ([f"[{expanding}]"] if expanding else [])
        pieces, chunks, done, shift = [], [], 0, 0
        for match in re.finditer("|".join(alternatives), text, re.S):
            start, end = match.span()
            pieces.append(self._fold(text[done:start]))
            for low, high in self._independent_pieces(text, start, end):
                piece = self._fold(text[low:high])
                pieces.append(piece)
                chunks.append((low + shift, low + shift + len(piece), low, high))
                shift += len(piece) - (high - low)
            done = end
        pieces.append(self._fold(text[done:]))
        return self._to_simplified_runs("".join(pieces)), OffsetMap(chunks)

    def _independent_pieces(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """Split text[start:end] before each starter that does not compose with what precedes it (the space before
        ﾞ, the second of two final jamo), so a piece is exactly what normalisation treats as one."""
        bounds = [start]
        for i in range(start + 1, end):
            char = text[i]
            decomposed = unicodedata.normalize("NFKD", char) if self.config.nfkc else char
            if decomposed and unicodedata.combining(decomposed[0]):
                continue  # a mark may reorder with the marks before it: it stays in their piece
            if self._fold(text[bounds[-1] : i + 1]) == self._fold(text[bounds[-1] : i]) + self._fold(char):
                bounds.append(i)
        bounds.append(end)
        return list(pairwise(bounds))

    def _fold(self, text: str) -> str:
        if self.config.nfkc:
            text = unicodedata.normalize("NFKC", text)
        return text.casefold() if self.config.casefold else text

    def _char_kind(self, char: str) -> int:
        """0 for a character that folds to one character on its own; _COMBINES for one that may compose with the
        character before it; _EXPANDS for one that folds to zero or several characters."""
        kind = self._kinds.get(char)
        if kind is None:
            decomposed = unicodedata.normalize("NFKD", char) if self.config.nfkc else char
            if self.config.nfkc and decomposed and (unicodedata.combining(decomposed[0])
                                                    or decomposed[0] in _composition_secondaries()):
                kind = _COMBINES
            else:
                kind = _EXPANDS if len(self._fold(char)) != 1 else 0
            self._kinds[char] = kind
        return kind

    def _to_simplified_runs(self, text: str) -> str:
        """Traditional → Simplified one CJK run at a time, so a word converts the same whatever text surrounds it;
        a run whose conversion changes its length is converted character by character to keep offsets exact."""
        if not (self.config.traditional_to_simplified and CJK_PATTERN.search(text)):
            return text
        parts = CJK_RUN_SPLIT.split(text)  # text between runs, then a run, then text …
        runs = parts[1::2]
        # One OpenCC call for all runs: no dictionary phrase holds a newline, so none spans two runs.
        for i, (run, simplified) in enumerate(zip(runs, self._to_simplified("\n".join(runs)).split("\n"))):
            if len(simplified) != len(run):
                simplified = "".join(c if len(s := self._to_simplified(c)) != 1 else s for c in run)
            parts[2 * i + 1] = simplified
        return "".join(parts)

    def analyze(self, text: str) -> AnalyzedText:
        normalized, offsets = self._normalize_with_offsets(text)
        terms, positions, starts, ends = [], [], [], []
        stopwords = self._stopwords
        stem = self._stem if self.config.stem_english else str
        split_identifiers = self.config.split_identifiers
        alpha_terms = self._alpha_terms
        unit = 0
        # One loop appending to plain lists, with no call per word: this is the build's hottest code.
        for match in TOKEN_PATTERN.finditer(normalized):
            word = match.group()
            start = match.start()
            if match.lastgroup == "cjk":
                for piece, low, high in self._segment(word):
                    if piece not in stopwords:
                        terms.append(piece)
                        positions.append(unit + low)
                        starts.append(start + low)
                        ends.append(start + high)
                unit += len(word)
                continue
            term = alpha_terms.get(word, _UNSEEN)
            if term is _UNSEEN and word.isalpha():
                term = None if word in stopwords else stem(word)
                if len(word) <= _MEMO_WORD_CHARS:
                    if len(alpha_terms) >= _ALPHA_TERMS_KEPT:
                        alpha_terms.clear()
                    alpha_terms[word] = term
            if term is not _UNSEEN:
                if term is not None:
                    terms.append(term)
                    positions.append(unit)
                    starts.append(start)
                    ends.append(start + len(word))
            else:
                # Identifiers and numbers are kept whole; their alphabetic parts are added beside them.
                terms.append(word)
                positions.append(unit)
                starts.append(start)
                ends.append(start + len(word))
                if split_identifiers and ("_" in word or "." in word):
                    offset = start
                    for part in re.split(r"[_.]", word):
                        if part.isalpha() and part not in stopwords:
                            terms.append(stem(part))
                            positions.append(unit)
                            starts.append(offset)
                            ends.append(offset + len(part))
                        offset += len(part) + 1
            unit += 1
        if offsets is not None:
            starts = [offsets.start(s) for s in starts]
            ends = [offsets.end(e) for e in ends]
        return AnalyzedText(terms, positions, starts, ends)

    def terms(self, text: str) -> list[str]:
        return self.analyze(text).terms


def detect_language(text: str) -> str:
    """Script-based language guess: `zh`, `ja`, `ko`, `en`, or `und` when there are no letters."""
    if text.isascii():
        return "en" if _LATIN_LETTER.search(text) else "und"
    # One bucketing pass over the code points in numpy: ingest runs this on every record, and four regex scans
    # took most of an incremental update's time.
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    counts = np.bincount(np.searchsorted(_SCRIPT_BOUNDS, points, side="right"), minlength=len(_SCRIPT_BOUNDS) + 1)
    latin, kana, hangul = counts[1] + counts[3], counts[5], counts[11]
    cjk = counts[7] + counts[9] + counts[13] + counts[15]
    if kana and kana + cjk >= latin / 4:
        return "ja"
    if hangul and hangul >= latin / 4:
        return "ko"
    # One ideograph carries about as much as a short English word, hence the weighting.
    if cjk and cjk >= latin / 4:
        return "zh"
    if latin:
        return "en"
    return "und"
