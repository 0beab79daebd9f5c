"""Highlighted snippets from the forward index's character spans: the text is never re-tokenized."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..index.forward import ForwardField


@dataclass(frozen=True)
class Snippet:
    """A fragment of a stored field and the [start, end) spans inside it that matched the query."""

    text: str
    highlights: tuple[tuple[int, int], ...]
    truncated_left: bool = False
    truncated_right: bool = False
    start: int = 0  # where the fragment starts in the field's text

    def _render(self, escape, open_mark: str, close_mark: str) -> str:
        out, cursor = [], 0
        for start, end in self.highlights:
            out.append(escape(self.text[cursor:start]))
            out.append(open_mark + escape(self.text[start:end]) + close_mark)
            cursor = end
        out.append(escape(self.text[cursor:]))
        body = "".join(out)
        return ("…" if self.truncated_left else "") + body + ("…" if self.truncated_right else "")

    def html(self) -> str:
        """HTML-escaped fragment with <mark> around matches: safe to render whatever the document holds."""
        return self._render(html.escape, "<mark>", "</mark>")

    def plain(self, open_mark: str = "【", close_mark: str = "】") -> str:
        return self._render(lambda s: s, open_mark, close_mark)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def matched_spans(field: ForwardField, doc_ord: int, term_ids: set[int]) -> list[tuple[int, int, int]]:
    """(start, end, term_id) of every token of the document's field whose term is in `term_ids`."""
    window = field.doc_slice(doc_ord)
    ids = np.asarray(field.term_ids[window])
    if term_ids and len(ids):
        # A query has a handful of terms: membership by binary search beats np.isin's sort of both arrays 3×.
        wanted = np.fromiter(sorted(term_ids), dtype=ids.dtype, count=len(term_ids))
        at = np.minimum(np.searchsorted(wanted, ids), len(wanted) - 1)
        hits = np.flatnonzero(wanted[at] == ids)
    else:
        hits = np.zeros(0, dtype=np.int64)
    starts = np.asarray(field.starts[window])[hits]
    ends = np.asarray(field.ends[window])[hits]
    return list(zip(starts.tolist(), ends.tolist(), ids[hits].tolist()))


def make_snippet(text: str, spans: list[tuple[int, int, int]], width: int) -> Snippet:
    """The window of `width` characters that covers the most distinct matched terms."""
    if not text:
        return Snippet("", ())
    if not spans:
        return Snippet(text[:width], (), truncated_right=len(text) > width)
    spans = sorted(spans)
    best_start, best_score = spans[0][0], -1
    counts: Counter[int] = Counter()
    end_index = 0
    for start, _, term in spans:  # two pointers: O(n) over the matches of a long document
        while end_index < len(spans) and spans[end_index][1] <= start + width:
            counts[spans[end_index][2]] += 1
            end_index += 1
        if len(counts) > best_score:
            best_start, best_score = start, len(counts)
        if counts[term] > 0:
            counts[term] -= 1
            if counts[term] == 0:
                del counts[term]
    # Give the first match some left context, then snap to a word boundary where one is near.
    left = max(0, best_start - width // 4)
    space = text.rfind(" ", max(0, left - 12), left + 1)
    if space != -1 and left > 0:
        left = space + 1
    right = min(len(text), left + width)
    local = [(max(s, left) - left, min(e, right) - left) for s, e, _ in spans if s < right and e > left]
    return Snippet(text[left:right], tuple(_merge(local)), truncated_left=left > 0, truncated_right=right < len(text),
                   start=left)


def highlight_all(text: str, spans: list[tuple[int, int, int]]) -> Snippet:
    """The whole text (a title, say) with every match marked."""
    return Snippet(text, tuple(_merge([(s, e) for s, e, _ in spans])))
