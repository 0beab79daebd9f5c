"""Query syntax: words, "quoted phrases", AND / OR / NOT, +required, -excluded and parentheses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_QUERY_CHARS = 2_000


class QuerySyntaxError(ValueError):
    """The query cannot be parsed; the message says where."""


@dataclass(frozen=True)
class Term:
    text: str


@dataclass(frozen=True)
class Phrase:
    text: str


@dataclass
class Bool:
    """Lucene-style clause set: every `must` matches, no `must_not` matches, and — when there is no
    `must` — at least one `should` matches. Scoring sums over must and should."""

    must: list[Node] = field(default_factory=list)
    should: list[Node] = field(default_factory=list)
    must_not: list[Node] = field(default_factory=list)


Node = Term | Phrase | Bool

_LEXER = re.compile(r'\s*(?:(?P<phrase>"[^"]*"?)|(?P<open>\()|(?P<close>\))|(?P<word>[^\s()"]+))')
_OPERATORS = {"AND", "OR", "NOT"}


def _lex(text: str) -> list[tuple[str, str]]:
    tokens = []
    for match in _LEXER.finditer(text):
        kind = match.lastgroup
        if kind is None:
            continue
        value = match.group(kind)
        if kind == "phrase":
            tokens.append(("phrase", value.strip('"')))
        elif kind == "word" and value in _OPERATORS:
            tokens.append(("op", value))
        elif kind == "word" and len(value) > 1 and value[0] in "+-":
            tokens.append(("prefix", value[0]))
            tokens.append(("word", value[1:]))
        else:
            tokens.append((kind, value))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
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
        kind, value = self.take()
        if kind == "open":
            inner = self.parse_clauses(depth + 1)
            if self.peek() != ("close", ")"):
                raise QuerySyntaxError("missing ')' in query")
            self.take()
            return inner
        if kind == "phrase":
            return Phrase(value)
        if kind in ("word", "op", "prefix"):
            return Term(value)
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
    return Bool(should=[Term(text[:MAX_QUERY_CHARS])])
