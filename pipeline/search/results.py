"""Result rows: a document's metadata, highlighted title and snippet, and the words it matched as written."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .reader import IndexReader
from .snippets import highlight_all, make_snippet, matched_spans

HIGHLIGHTED_FIELDS = ("title", "body")


@dataclass
class Hit:
    doc_ord: int
    doc_id: str
    score: float
    title: str
    snippet: str  # HTML-escaped, matches in <mark>
    title_html: str
    source: str | None
    lang: str | None
    published_at: datetime | None
    tags: list[str]
    matched_terms: list[str]
    explanation: dict | None = None
    reasons: list[str] | None = None  # why a behaviour channel found or lifted it, in plain words

    def to_json(self) -> dict:
        return {
            "doc_id": self.doc_id,
            "score": round(self.score, 6),
            "title": self.title,
            "snippet": self.snippet,
            "source": self.source,
            "lang": self.lang,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "tags": self.tags,
            "matched_terms": self.matched_terms,
            **({"explanation": self.explanation} if self.explanation is not None else {}),
            **({"reasons": self.reasons} if self.reasons else {}),
        }


@dataclass
class SearchResponse:
    query: str
    hits: list[Hit]
    total_matches: int
    took_ms: float
    query_terms: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "total_matches": self.total_matches,
            "took_ms": round(self.took_ms, 3),
            "query_terms": self.query_terms,
            "results": [hit.to_json() for hit in self.hits],
        }


def make_hit(reader: IndexReader, doc_ord: int, score: float, term_ids: set[int], with_snippets: bool) -> Hit:
    row = reader.metadata.row(doc_ord)
    title = row["title"] or ""
    body = row["body"] or ""
    snippet = title_html = ""
    matched: list[str] = []
    if with_snippets:
        spans = {name: matched_spans(reader.forward(name), doc_ord, term_ids) for name in HIGHLIGHTED_FIELDS}
        matched = surface_words({"title": title, "body": body}, spans)
        snippet = make_snippet(body, spans["body"], reader.settings.snippet.width_chars).html()
        title_html = highlight_all(title, spans["title"]).html()
    return Hit(
        doc_ord=doc_ord,
        doc_id=row["doc_id"],
        score=score,
        title=title,
        snippet=snippet,
        title_html=title_html,
        source=row["source"],
        lang=row["lang"],
        published_at=row["published_at"],
        tags=row["tags"] or [],
        matched_terms=matched,
    )


def matched_terms(reader: IndexReader, doc_ord: int, term_ids: set[int]) -> list[str]:
    """The words of the document that matched, as written there (`Networks`, not the stem `network`)."""
    texts = {name: reader.stored_text(name, doc_ord) for name in HIGHLIGHTED_FIELDS}
    spans = {name: matched_spans(reader.forward(name), doc_ord, term_ids) for name in HIGHLIGHTED_FIELDS}
    return surface_words(texts, spans)


def surface_words(texts: dict[str, str], spans: dict[str, list[tuple[int, int, int]]]) -> list[str]:
    """Distinct matched words in their written form, first occurrence first, one per term."""
    words, seen = [], set()
    for name, text in texts.items():
        for start, end, term_id in sorted(spans[name]):
            if term_id not in seen:
                seen.add(term_id)
                words.append(text[start:end])
    return words
