"""Documents split into overlapping passages of words and CJK characters, each prefixed by its title."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..text.analysis import TOKEN_PATTERN


@dataclass(frozen=True)
class Passage:
    doc_ord: int
    start: int  # character span of the body that the passage covers
    end: int
    text: str  # the title, a newline, then the body window


def unit_starts(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the units a window counts: Latin words and single CJK characters."""
    units = []
    for match in TOKEN_PATTERN.finditer(text):
        if match.lastgroup == "cjk":
            units.extend((i, i + 1) for i in range(match.start(), match.end()))
        else:
            units.append((match.start(), match.end()))
    return units


def split_passages(doc_ord: int, title: str, body: str, window: int, overlap: int) -> list[Passage]:
    """Windows of `window` units that overlap by `overlap`, each prefixed by the title; at least one per doc."""
    if overlap >= window:
        raise InputError(f"passage overlap {overlap} must be smaller than the window {window}")
    prefix = f"{title}\n" if title else ""
    units = unit_starts(body)
    if len(units) <= window:
        return [Passage(doc_ord, 0, len(body), (prefix + body).strip())]
    passages = []
    step = window - overlap
    for first in range(0, len(units), step):
        last = min(first + window, len(units)) - 1
        start, end = units[first][0], units[last][1]
        passages.append(Passage(doc_ord, start, end, prefix + body[start:end]))
        if last == len(units) - 1:
            break
    return passages
