"""Which documents a query's clause tree matches: required words, phrases on positions, AND / OR / NOT."""

from __future__ import annotations

import numpy as np

from ..text.analysis import AnalyzedText
from .plan import Leaf, QueryPlan
from .query import Bool
from .reader import IndexReader


def match_mask(reader: IndexReader, plan: QueryPlan) -> np.ndarray:
    """Boolean mask over documents of those the clause tree matches, in the plan's fields."""
    return _evaluate(reader, plan.tree, list(plan.field_boosts))


def _evaluate(reader: IndexReader, node, fields: list[str]) -> np.ndarray:
    if isinstance(node, Leaf):
        if node.phrase:
            return _phrase_mask(reader, node.analyzed, fields)
        return _words_mask(reader, node.analyzed, fields)
    assert isinstance(node, Bool)
    mask = np.ones(reader.n_docs, dtype=bool)
    for clause in node.must:
        mask &= _evaluate(reader, clause, fields)
    required = node.minimum_should_match
    if required is None:
        required = 0 if node.must else 1
    if node.should and required > 0:
        matched = np.zeros(reader.n_docs, dtype=np.int32)
        for clause in node.should:
            matched += _evaluate(reader, clause, fields)
        mask &= matched >= required
    for clause in node.must_not:
        mask &= ~_evaluate(reader, clause, fields)
    return mask


def _words_mask(reader: IndexReader, analyzed: AnalyzedText, fields: list[str]) -> np.ndarray:
    """Documents holding every maximal word of the clause (中华人民共和国 itself, not each of its sub-words)."""
    ids = reader.vocabulary.lookup([term for term, _ in analyzed.maximal()])
    if any(i is None for i in ids):
        return np.zeros(reader.n_docs, dtype=bool)
    mask = np.ones(reader.n_docs, dtype=bool)
    for term_id in ids:
        mask &= _contains(reader, term_id, fields)
    return mask


def _contains(reader: IndexReader, term_id: int, fields: list[str]) -> np.ndarray:
    mask = np.zeros(reader.n_docs, dtype=bool)
    for field in fields:
        postings = reader.postings(field)
        mask[postings.docs[postings.span(term_id)]] = True
    return mask


def _phrase_mask(reader: IndexReader, analyzed: AnalyzedText, fields: list[str]) -> np.ndarray:
    """Documents where the clause's maximal words stand at the same relative positions as in the query."""
    parts = analyzed.maximal()
    ids = reader.vocabulary.lookup([term for term, _ in parts])
    mask = np.zeros(reader.n_docs, dtype=bool)
    if not parts or any(i is None for i in ids):
        return mask
    base = parts[0][1]
    offsets = [position - base for _, position in parts]
    for field in fields:
        postings = reader.postings(field)
        candidates = None
        spans = [postings.span(i) for i in ids]
        for span in spans:
            docs = np.asarray(postings.docs[span])
            candidates = docs if candidates is None else np.intersect1d(candidates, docs, assume_unique=True)
        for doc in candidates.tolist():
            if mask[doc]:
                continue
            starts = None
            for span, offset in zip(spans, offsets):
                docs = postings.docs[span]
                posting = span.start + int(np.searchsorted(docs, doc))
                here = np.asarray(postings.positions_of(posting)) - offset
                starts = here if starts is None else np.intersect1d(starts, here)
                if len(starts) == 0:
                    break
            mask[doc] = starts is not None and len(starts) > 0
    return mask
