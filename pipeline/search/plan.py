"""A query analyzed once into a plan: its clause tree with analyzed leaves, term ids, filter mask and vector.

Everything downstream (matching, recall branches, fusion, features, the ranker, highlights) reads the plan;
nothing analyzes the query again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..constants import MAX_QUERY_CHARS
from ..errors import InputError
from ..text.analysis import AnalyzedText
from .filters import Filters
from .query import Bool, Node, Phrase, parse_query, plain_query
from .reader import IndexReader


@dataclass(frozen=True)
class Leaf:
    """A word or phrase clause of the query with its slice of the query's analysis."""

    analyzed: AnalyzedText
    phrase: bool


@dataclass
class QueryPlan:
    text: str  # the query as searched (cut at MAX_QUERY_CHARS)
    analyzed: AnalyzedText  # the whole query, analyzed once
    tree: Bool  # the clause tree; its leaves are Leaf
    term_ids: list[int]  # known terms of the whole query, repeats kept (a repeated word weighs more in BM25)
    scored_terms: list[str]  # terms of the clauses that score (not under NOT), in clause order
    scored_ids: list[int]
    allowed: np.ndarray | None = None  # filter mask over documents
    vector: np.ndarray | None = None  # the query embedding, when a mode needs it
    # The fields words are matched and BM25-scored in, with their boosts; `bm25.field_boosts` unless the query
    # names fields. `best_field`: a document scores its best field's BM25 instead of the sum.
    field_boosts: dict[str, float] = field(default_factory=dict)
    best_field: bool = False
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def terms(self) -> list[str]:
        return self.analyzed.terms

    @property
    def distinct_ids(self) -> list[int]:
        return list(dict.fromkeys(self.term_ids))

    @property
    def is_plain(self) -> bool:
        """Only optional word clauses: documents match by score alone."""
        tree = self.tree
        return not tree.must and not tree.must_not and tree.minimum_should_match in (None, 1) and all(
            isinstance(c, Leaf) and not c.phrase for c in tree.should
        )

    def memo(self, key: tuple, compute: Callable[[], object]):
        """Compute a per-query value (a branch's dense scores, say) once, however many readers ask."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def term_lookup(self, n_terms: int) -> np.ndarray:
        """A boolean table over the vocabulary marking the query's terms."""

        def build() -> np.ndarray:
            lookup = np.zeros(n_terms, dtype=bool)
            lookup[np.asarray(self.distinct_ids, dtype=np.int64)] = True
            return lookup

        return self.memo(("lookup", n_terms), build)


def plan_query(
    reader: IndexReader,
    text: str,
    syntax: bool = True,
    filters: Filters | None = None,
    vector: np.ndarray | None = None,
    tree: Bool | None = None,
    allowed: np.ndarray | None = None,
    field_boosts: dict[str, float] | None = None,
    best_field: bool = False,
    analyzed: AnalyzedText | None = None,
) -> QueryPlan:
    """Parse, analyze once, look terms up once. With `syntax=False` operators and quotes are ordinary words.

    A caller that built the clause tree itself (the API's Elasticsearch DSL) passes `tree`, whose leaves index
    into `text`, and may pass a filter mask `allowed` (ANDed with `filters`) and the fields to search. A shard
    of a cluster is passed the coordinator's analysis of `text` in `analyzed`."""
    text = text[:MAX_QUERY_CHARS]
    if tree is None:
        tree = parse_query(text) if syntax else plain_query(text)
    if field_boosts is not None:
        unknown = set(field_boosts) - set(reader.version.inverted.fields)
        if unknown:
            raise InputError(f"unknown fields {sorted(unknown)}; searchable: {sorted(reader.version.inverted.fields)}")
    if filters:
        mask = reader.metadata.mask(filters)
        allowed = mask if allowed is None else mask & allowed
    analyzed = reader.analyzer.analyze(text) if analyzed is None else analyzed
    planned = _plan_node(tree, analyzed, len(text))
    scored: list[str] = []
    _collect_scored(planned, scored)
    return QueryPlan(
        text=text,
        analyzed=analyzed,
        tree=planned,
        term_ids=reader.known_ids(analyzed.terms),
        scored_terms=scored,
        scored_ids=reader.known_ids(scored),
        allowed=allowed,
        vector=vector,
        field_boosts=dict(reader.field_boosts if field_boosts is None else field_boosts),
        best_field=best_field,
    )


def _plan_node(node: Node, analyzed: AnalyzedText, length: int):
    if isinstance(node, Bool):
        return Bool(
            must=[_plan_node(c, analyzed, length) for c in node.must],
            should=[_plan_node(c, analyzed, length) for c in node.should],
            must_not=[_plan_node(c, analyzed, length) for c in node.must_not],
            minimum_should_match=node.minimum_should_match,
        )
    end = length if node.end is None else node.end
    return Leaf(analyzed.within(node.start, end), isinstance(node, Phrase))


def _collect_scored(node, out: list[str]) -> None:
    """Terms of the clauses that add to the score: must, then should, never must_not."""
    if isinstance(node, Leaf):
        out.extend(node.analyzed.terms)
        return
    for clause in node.must:
        _collect_scored(clause, out)
    for clause in node.should:
        _collect_scored(clause, out)
