"""Query syntax: words, "quoted phrases", AND / OR / NOT, +required, -excluded and parentheses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..constants import MAX_QUERY_CHARS
from ..errors import QuerySyntaxError

# Deeper nesting than any person writes; the cap keeps hostile input from exhausting the stack.
MAX_NESTING = 32


@dataclass(frozen=True)
class Term:
    """Words matched in any order; [start, end) is where they stand in the query text."""

    text: str
    start: int = field(default=0, compare=False)
    end: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Phrase:
    """Words matched at consecutive positions; [start, end) is where they stand in the query text."""

    text: str
    start: int = field(default=0, compare=False)
    end: int | None = field(default=None, compare=False)


@dataclass
class Bool:
    """Lucene-style clause set: every `must` matches, no `must_not` matches, and — when there is no
    `must` — at least one `should` matches. Scoring sums over must and should.

    The query syntax builds these; so does the Elasticsearch DSL of the API, with leaves whose [start, end)
    index into the text it assembles from its clauses."""

    must: list[Node] = field(default_factory=list)
    should: list[Node] = field(default_factory=list)
    must_not: list[Node] = field(default_factory=list)
    # At least this many `should` clauses match (Elasticsearch's minimum_should_match); None: the rule above.
    minimum_should_match: int | None = None


Node = Term | Phrase | Bool

_LEXER = re.compile(r'\s*(?:(?P<phrase>"[^"]*"?)|(?P<open>\()|(?P<close>\))|(?P<word>[^\s()"]+))')
_OPERATORS = {"AND", "OR", "NOT"}


Token = tuple[str, str, int, int]  # kind, value, [start, end) in the query text


def _lex(text: str) -> list[Token]:
    tokens = []
    for match in _LEXER.finditer(text):
        kind = match.lastgroup
        if kind is None:
            continue
        value, start, end = match.group(kind), match.start(kind), match.end(kind)
        if kind == "phrase":
            inner_end = end - 1 if len(value) > 1 and value.endswith('"') else end
            tokens.append(("phrase", value.strip('"'), start + 1, inner_end))
        elif kind == "word" and value in _OPERATORS:
            tokens.append(("op", value, start, end))
        elif kind == "word" and len(value) > 1 and value[0] in "+-":
            tokens.append(("prefix", value[0], start, start + 1))
            tokens.append(("word", value[1:], start + 1, end))
        else:
            tokens.append((kind, value, start, end))
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        """(kind, value) of the next token."""
        return self.tokens[self.index][:2] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse_clauses(self, depth: int = 0) -> Bool:
        """A list of clauses joined by juxtaposition or OR; AND binds tighter than either."""
        node = Bool()
        while (token := self.peek()) is not None:
            if token == ("close", ")"):
                if depth == 0:
                    raise QuerySyntaxError("unbalanced ')' in query")
                break
            if token == ("op", "OR"):
                self.take()
                continue
            occur, clause = self.parse_unary(depth)
            while self.peek() == ("op", "AND"):
                self.take()
                occur_right, right = self.parse_unary(depth)
                clause = _conjunction((occur, clause), (occur_right, right))
                occur = "should"
            getattr(node, occur).append(clause)
        return node

    def parse_unary(self, depth: int) -> tuple[str, Node]:
        token = self.peek()
        if token is None:
            raise QuerySyntaxError("query ends where a term was expected")
        if token in (("op", "NOT"), ("prefix", "-")):
            self.take()
            return "must_not", self.parse_atom(depth)
        if token == ("prefix", "+"):
            self.take()
            return "must", self.parse_atom(depth)
        return "should", self.parse_atom(depth)

    def parse_atom(self, depth: int) -> Node:
        if self.peek() is None:
            raise QuerySyntaxError("query ends where a term was expected")
        kind, value, start, end = self.take()
        if kind == "open":
            if depth >= MAX_NESTING:
                raise QuerySyntaxError(f"parentheses nested deeper than {MAX_NESTING} levels")
            inner = self.parse_clauses(depth + 1)
            if self.peek() != ("close", ")"):
                raise QuerySyntaxError("missing ')' in query")
            self.take()
            return inner
        if kind == "phrase":
            return Phrase(value, start, end)
        if kind in ("word", "op", "prefix"):
            return Term(value, start, end)
        raise QuerySyntaxError(f"unexpected {value!r} in query")


def _conjunction(left: tuple[str, Node], right: tuple[str, Node]) -> Bool:
    node = Bool()
    for occur, clause in (left, right):
        if isinstance(clause, Bool) and occur != "must_not" and clause.should == [] and clause.must:
            node.must.extend(clause.must)
            node.must_not.extend(clause.must_not)
        else:
            (node.must_not if occur == "must_not" else node.must).append(clause)
    return node


def parse_query(text: str) -> Bool:
    """Parse user syntax into a clause tree. Plain words with no operators become `should` clauses."""
    text = text[:MAX_QUERY_CHARS]
    return _Parser(_lex(text)).parse_clauses()


def plain_query(text: str) -> Bool:
    """Treat the whole text as words, ignoring operator syntax: for evaluation queries written as prose."""
    text = text[:MAX_QUERY_CHARS]
    return Bool(should=[Term(text, 0, len(text))])
