"""The Elasticsearch query DSL subset, compiled to the engine's terms: a clause tree over an assembled query text,
a metadata filter mask and the fields searched, plus the request's dense, fusion, paging and output options.

Anything outside the subset raises EsError, which the API answers with Elasticsearch's 400 error body."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from ...constants import MAX_K, MAX_QUERY_CHARS
from ...errors import QuerySyntaxError
from ...search.facets import CALENDAR_INTERVALS, FACET_FIELDS
from ...search.filters import Filters
from ...search.query import MAX_NESTING, Bool, Node, Phrase, Term, parse_query
from ...search.reader import IndexReader
from ...text.analysis import maximal_spans

TEXT_FIELDS = ("title", "body", "text")  # `text` is the catch-all field: title then body
ANY_FIELD = ("*", "_all")  # the configured fields and boosts (bm25.field_boosts)
# field → Filters attribute. `region` only filters: the native API's region lift has no Elasticsearch counterpart,
# so a `should` term on it adds no score, as on the other keyword fields.
KEYWORD_FIELDS = {"source": "sources", "lang": "langs", "tags": "tags", "region": "regions"}
DATE_FIELD = "published_at"
SOURCE_FIELDS = ("title", "body", "url", "source", "lang", "published_at", "tags")
OPTIONAL_SOURCE_FIELDS = ("region",)  # in `_source` only where the document has one
HIGHLIGHT_FIELDS = ("title", "body")
DEFAULT_SIZE = 10
DEFAULT_TRACK_TOTAL_HITS = 10_000
# Between two clauses' texts in the assembled query: a line break yields no token and ends every word.
_SEPARATOR = "\n"

REQUEST_KEYS = {"query", "knn", "retriever", "rescore", "from", "size", "sort", "_source", "highlight",
                "track_total_hits", "explain", "aggs", "aggregations", "timeout", "search_after"}


class EsError(Exception):
    """A request outside the subset or malformed: answered with Elasticsearch's error body and `status`."""

    def __init__(self, type_: str, reason: str, status: int = 400):
        super().__init__(reason)
        self.type = type_
        self.reason = reason
        self.status = status


def parsing(reason: str) -> EsError:
    return EsError("parsing_exception", reason)


@dataclass
class Compiled:
    """A compiled query clause: text clauses give a node, metadata clauses a mask; match_all gives neither."""

    node: Node | None = None
    mask: np.ndarray | None = None


@dataclass
class QuerySpec:
    """A whole `query`: the assembled text with its clause tree (None: match_all), filter mask and fields."""

    text: str
    tree: Bool | None
    allowed: np.ndarray | None
    field_boosts: dict[str, float] | None
    best_field: bool


@dataclass
class KnnSpec:
    vector: np.ndarray | None  # query_vector
    text: str | None  # or the text of a query_vector_builder, encoded with the index's encoder
    k: int
    allowed: np.ndarray | None


@dataclass
class RrfSpec:
    standard: QuerySpec
    knn: KnnSpec
    rank_constant: int
    rank_window_size: int


@dataclass
class HighlightSpec:
    fields: dict[str, dict]  # field → its fragment_size, number_of_fragments, pre_tags, post_tags
    pre_tags: list[str]
    post_tags: list[str]
    fragment_size: int = 100
    number_of_fragments: int = 5


@dataclass
class AggSpec:
    kind: str  # terms | date_histogram
    field: str
    size: int = 10
    interval: str = "month"


@dataclass
class EsSearch:
    query: QuerySpec | None = None
    knn: KnnSpec | None = None
    rrf: RrfSpec | None = None
    ltr_model: str | None = None
    from_: int = 0
    size: int = DEFAULT_SIZE
    sort_date: str | None = None  # asc | desc when sorted by published_at
    sort_doc: bool = False  # index order (`"sort": "_doc"`), the order a scroll reads everything in
    search_after: list | None = None  # the `sort` values of the last hit of the previous page
    tiebreak: bool = False  # in a point in time: date sort values end with the ordinal that breaks ties
    source: tuple[list[str], list[str]] | bool = True  # (includes, excludes) or on/off
    highlight: HighlightSpec | None = None
    track_total_hits: int | bool = DEFAULT_TRACK_TOTAL_HITS
    explain: bool = False
    aggs: dict[str, AggSpec] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.sort_date is None and not self.sort_doc


def json_object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise parsing(f"[{where}] expects an object, got {type(value).__name__}")
    return value


def _known(body: dict, allowed: set[str] | tuple[str, ...], where: str) -> None:
    for key in body:
        if key not in allowed:
            raise parsing(f"[{where}] query does not support [{key}]")


def _single(body, where: str) -> tuple[str, object]:
    body = json_object(body, where)
    if len(body) != 1:
        raise parsing(f"[{where}] expects exactly one field, got {sorted(body) or 'none'}")
    return next(iter(body.items()))


def keyword_value(value, where: str) -> str:
    """A term's value as the keyword it is compared with, as Elasticsearch reads it: a string as it is, a number or a
    boolean as JSON writes it. A null, an object, a list or a non-finite number is refused: `str` would make them
    "None", "{...}" or "nan", which a document's keyword could equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    raise parsing(f"[{where}] values are strings, numbers or booleans, got {value!r}")


def integer_value(value, where: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("-").isdigit():
        raise parsing(f"[{where}] expects an integer, got {value!r}")
    if int(value) < low:
        raise EsError("illegal_argument_exception", f"[{where}] must be {low} or more, got {value}")
    return int(value)


def _boost(value, where: str) -> float:
    """A boost: a finite number, 0 or more; a NaN or infinite one makes scores that JSON answers as null."""
    try:
        boost = float(value)
    except (TypeError, ValueError):
        raise parsing(f"[{where}] boost must be a number, got {value!r}") from None
    if not math.isfinite(boost) or boost < 0:
        raise parsing(f"[{where}] boost must be a finite number, 0 or more, got {value!r}")
    return boost


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def minimum_should_match(value, optional: int) -> int:
    """Elasticsearch's minimum_should_match (3, -1, "75%", "-25%") against `optional` clauses."""
    text = str(value).strip()
    match = re.fullmatch(r"(-?)(\d+)(%?)", text)
    if match is None or isinstance(value, bool):
        raise parsing(f"[minimum_should_match] supports an integer or a percentage, not {value!r}")
    negative, number, percent = match.group(1) == "-", int(match.group(2)), match.group(3) == "%"
    count = math.floor(optional * number / 100) if percent else number
    required = optional - count if negative else count
    return max(0, min(optional, required))


def parse_date(value, where: str) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise parsing(f"[{where}] epoch milliseconds {value} are outside years 1 to 9999") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise parsing(f"[{where}] expects an ISO date or epoch milliseconds (date math is not supported), got {value!r}")


def _shift(node: Node, offset: int, length: int) -> Node:
    """A parsed clause tree moved `offset` characters into the assembled text."""
    if isinstance(node, Bool):
        return Bool([_shift(c, offset, length) for c in node.must], [_shift(c, offset, length) for c in node.should],
                    [_shift(c, offset, length) for c in node.must_not], node.minimum_should_match)
    end = length if node.end is None else node.end
    return type(node)(node.text, node.start + offset, end + offset)


class QueryCompiler:
    """Compiles the `query` clauses of one request against one index version."""

    def __init__(self, reader: IndexReader):
        self.reader = reader
        self.text = ""
        self.fields: dict[str, float] = {}
        self.field_types: set[str] = set()  # best_fields / most_fields as named
        self.depth = 0  # clauses open around the one being compiled

    # -- the assembled text ---------------------------------------------------------------------------

    def _span(self, text: str) -> tuple[int, int]:
        start = len(self.text) + (len(_SEPARATOR) if self.text else 0)
        self.text = (self.text + _SEPARATOR if self.text else "") + text
        if len(self.text) > MAX_QUERY_CHARS:
            raise EsError("illegal_argument_exception", f"query text longer than {MAX_QUERY_CHARS} characters")
        return start, start + len(text)

    def _words(self, text: str) -> list[Term]:
        """One leaf per word of `text`, as the index's analyzer segments it."""
        start, _ = self._span(text)
        analyzed = self.reader.analyzer.analyze(text)
        keep = maximal_spans(analyzed.starts, analyzed.ends)
        return [Term(text[analyzed.starts[i]:analyzed.ends[i]], start + analyzed.starts[i], start + analyzed.ends[i])
                for i in keep]

    def _field(self, name: str, boost: float = 1.0) -> None:
        if name in ANY_FIELD:
            for configured, weight in self.reader.field_boosts.items():
                self.fields[configured] = max(self.fields.get(configured, 0.0), weight * boost)
            return
        if name not in TEXT_FIELDS:
            raise EsError("query_shard_exception", f"field [{name}] is not searchable; text fields: "
                                                   f"{', '.join(TEXT_FIELDS)}")
        self.fields[name] = max(self.fields.get(name, 0.0), boost)

    # -- clauses --------------------------------------------------------------------------------------

    def compile(self, clause) -> Compiled:
        kind, body = _single(clause, "query")
        method = getattr(self, f"_{kind}", None) if kind in QUERY_KINDS else None
        if method is None:
            raise parsing(f"unknown query [{kind}]; supported: {', '.join(QUERY_KINDS)}")
        # The cap of the query syntax's parentheses: the clause tree is walked recursively when searching.
        if self.depth >= MAX_NESTING:
            raise parsing(f"[{kind}] query clauses nested deeper than {MAX_NESTING} levels")
        self.depth += 1
        try:
            return method(body)
        finally:
            self.depth -= 1

    def _match_all(self, body) -> Compiled:
        _known(json_object(body, "match_all"), ("boost",), "match_all")
        return Compiled()

    def _match(self, body) -> Compiled:
        name, spec = _single(body, "match")
        spec = spec if isinstance(spec, dict) else {"query": spec}
        _known(spec, ("query", "operator", "minimum_should_match", "boost"), "match")
        self._field(name, _boost(spec.get("boost", 1.0), "match"))
        return Compiled(self._words_clause(spec, "match"))

    def _words_clause(self, spec: dict, where: str) -> Node:
        if "query" not in spec or isinstance(spec["query"], dict | list):
            raise parsing(f"[{where}] requires a [query] text")
        text = str(spec["query"])
        operator = str(spec.get("operator", "or")).lower()
        if operator not in ("or", "and"):
            raise parsing(f"[{where}] operator is [or] or [and], not [{spec['operator']}]")
        if operator == "and":
            start, end = self._span(text)
            return Bool(must=[Term(text, start, end)])  # a word leaf requires every word it holds
        words = self._words(text)
        required = None
        if "minimum_should_match" in spec:
            required = minimum_should_match(spec["minimum_should_match"], len(words))
        return Bool(should=list(words), minimum_should_match=required)

    def _match_phrase(self, body) -> Compiled:
        name, spec = _single(body, "match_phrase")
        spec = spec if isinstance(spec, dict) else {"query": spec}
        _known(spec, ("query", "boost", "slop"), "match_phrase")
        if int(spec.get("slop", 0)) != 0:
            raise parsing("[match_phrase] supports slop 0 only")
        self._field(name, _boost(spec.get("boost", 1.0), "match_phrase"))
        start, end = self._span(str(spec.get("query", "")))
        return Compiled(Phrase(self.text[start:end], start, end))

    def _multi_match(self, body) -> Compiled:
        spec = json_object(body, "multi_match")
        _known(spec, ("query", "fields", "type", "operator", "minimum_should_match", "boost"), "multi_match")
        kind = spec.get("type", "best_fields")
        if kind not in ("best_fields", "most_fields", "phrase"):
            raise parsing(f"[multi_match] type is best_fields, most_fields or phrase, not [{kind}]")
        for name in _list(spec.get("fields", ["*"])):
            field_name, _, boost = str(name).partition("^")
            self._field(field_name, _boost(boost or 1.0, f"multi_match.fields.{name}")
                        * _boost(spec.get("boost", 1.0), "multi_match"))
        if kind == "phrase":
            start, end = self._span(str(spec.get("query", "")))
            return Compiled(Phrase(self.text[start:end], start, end))
        self.field_types.add(kind)
        return Compiled(self._words_clause(spec, "multi_match"))

    def _query_string(self, body) -> Compiled:
        spec = json_object(body, "query_string")
        _known(spec, ("query", "default_field", "fields", "default_operator", "boost"), "query_string")
        if str(spec.get("default_operator", "or")).lower() != "or":
            raise parsing("[query_string] default_operator OR only; write AND or + in the query")
        for name in _list(spec.get("fields", spec.get("default_field", "*"))):
            field_name, _, boost = str(name).partition("^")
            self._field(field_name, _boost(boost or 1.0, f"query_string.fields.{name}"))
        text = str(spec.get("query", ""))
        try:
            tree = parse_query(text)
        except QuerySyntaxError as error:
            raise EsError("query_shard_exception", f"Failed to parse query [{text}]: {error}") from None
        start, _ = self._span(text)
        return Compiled(_shift(tree, start, len(text)))

    def _bool(self, body) -> Compiled:
        spec = json_object(body, "bool")
        _known(spec, ("must", "should", "must_not", "filter", "minimum_should_match", "boost"), "bool")
        ones = np.ones(self.reader.n_docs, dtype=bool)
        mask = ones.copy()
        must: list[Node] = []
        must_not: list[Node] = []
        should: list[Node] = []
        should_masks: list[np.ndarray] = []
        for occur in ("must", "filter"):
            for clause in _list(spec.get(occur, [])):
                part = self.compile(clause)
                if part.node is not None:
                    must.append(part.node)
                if part.mask is not None:
                    mask &= part.mask
        for clause in _list(spec.get("must_not", [])):
            part = self.compile(clause)
            if part.node is not None:
                must_not.append(part.node)
            mask &= ~(ones if part.mask is None and part.node is None else
                      part.mask if part.mask is not None else np.zeros_like(ones))
        for clause in _list(spec.get("should", [])):
            part = self.compile(clause)
            if part.node is not None:
                should.append(part.node)
            else:
                should_masks.append(ones if part.mask is None else part.mask)
        if should and should_masks:
            raise parsing("[bool] should mixes text and metadata clauses; put metadata clauses in a nested bool")
        has_required = bool(spec.get("must") or spec.get("filter"))
        required = None
        if "minimum_should_match" in spec:
            required = minimum_should_match(spec["minimum_should_match"], len(should) + len(should_masks))
        elif has_required and (should or should_masks):
            required = 0  # Elasticsearch: with must or filter clauses, should clauses only add to the score
        if should_masks:
            needed = 1 if required is None else required
            if needed:
                mask &= np.sum(should_masks, axis=0) >= needed
        node = None
        if must or should or must_not:
            node = Bool(must, should, must_not, required if should else None)
        return Compiled(node, None if mask.all() else mask)

    def _term(self, body) -> Compiled:
        name, value = _single(body, "term")
        if isinstance(value, dict):
            _known(value, ("value", "boost"), "term")
            value = value.get("value")
        if isinstance(value, list | dict):
            raise parsing(f"[term] takes one value; for several use [terms], got {value!r}")
        return Compiled(mask=self._keyword_mask(name, [value], "term"))

    def _terms(self, body) -> Compiled:
        spec = dict(json_object(body, "terms"))
        spec.pop("boost", None)
        name, values = _single(spec, "terms")
        if not isinstance(values, list):
            raise parsing("[terms] expects a list of values")
        return Compiled(mask=self._keyword_mask(name, values, "terms"))

    def _keyword_mask(self, name: str, values: list, where: str) -> np.ndarray:
        if name not in KEYWORD_FIELDS:
            raise parsing(f"[{where}] works on {', '.join(KEYWORD_FIELDS)}; use range for {DATE_FIELD} "
                          f"and match for text, not [{name}]")
        if not values:
            return np.zeros(self.reader.n_docs, dtype=bool)
        return self.reader.metadata.mask(Filters(**{KEYWORD_FIELDS[name]: tuple(keyword_value(v, where)
                                                                               for v in values)}))

    def _range(self, body) -> Compiled:
        name, spec = _single(body, "range")
        if name != DATE_FIELD:
            raise parsing(f"[range] works on {DATE_FIELD}, not [{name}]")
        spec = json_object(spec, "range")
        _known(spec, ("gte", "gt", "lte", "lt", "boost"), "range")
        tick = timedelta(microseconds=1)  # the index stores microseconds: gt t is gte t + 1 µs
        since = until = None
        if "gte" in spec or "gt" in spec:
            since = parse_date(spec.get("gte", spec.get("gt")), "range")
            since = since + tick if "gt" in spec else since
        if "lte" in spec or "lt" in spec:
            until = parse_date(spec.get("lte", spec.get("lt")), "range")
            until = until - tick if "lt" in spec else until
        if since is not None and until is not None and since > until:  # an empty range matches nothing, as in ES
            return Compiled(mask=np.zeros(self.reader.n_docs, dtype=bool))
        return Compiled(mask=self.reader.metadata.mask(Filters(since=since, until=until)))

    def _exists(self, body) -> Compiled:
        spec = json_object(body, "exists")
        _known(spec, ("field", "boost"), "exists")
        name = spec.get("field")
        if name not in (*KEYWORD_FIELDS, DATE_FIELD):
            raise parsing(f"[exists] works on {', '.join((*KEYWORD_FIELDS, DATE_FIELD))}, not [{name}]")
        return Compiled(mask=self.reader.metadata.present(name))


QUERY_KINDS = ("match_all", "match", "match_phrase", "multi_match", "query_string", "bool", "term", "terms", "range",
               "exists")


def compile_query(reader: IndexReader, clause) -> QuerySpec:
    compiler = QueryCompiler(reader)
    part = compiler.compile(clause)
    if len(compiler.field_types) > 1:
        raise parsing("[multi_match] best_fields and most_fields in one request are not supported")
    node = part.node
    if node is not None and not isinstance(node, Bool):
        node = Bool(should=[node])
    fields = compiler.fields or None
    return QuerySpec(compiler.text, node, part.mask, fields, compiler.field_types == {"best_fields"})


def _filter_mask(reader: IndexReader, clauses) -> np.ndarray | None:
    """A knn or retriever `filter`: metadata clauses only."""
    if clauses is None:
        return None
    spec = compile_query(reader, {"bool": {"filter": _list(clauses)}})
    if spec.tree is not None:
        raise parsing("[knn] filter takes metadata clauses (term, terms, range, exists, bool) only")
    return spec.allowed


def compile_knn(reader: IndexReader, body, size: int) -> KnnSpec:
    spec = json_object(body, "knn")
    _known(spec, ("field", "query_vector", "query_vector_builder", "k", "num_candidates", "filter", "boost"), "knn")
    k = integer_value(spec.get("k", size), "knn.k", 1)
    if "num_candidates" in spec and integer_value(spec["num_candidates"], "knn.num_candidates", 1) < k:
        raise EsError("illegal_argument_exception", "[num_candidates] cannot be less than [k]")
    if not reader.has_dense:
        raise EsError("illegal_argument_exception", "this index has no dense vectors: build it with the dense branch")
    vector = text = None
    if "query_vector" in spec:
        values = spec["query_vector"]
        dim = reader.dense.manifest.dim
        if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
            raise parsing("[knn] query_vector is a list of numbers")
        if len(values) != dim:
            raise EsError("illegal_argument_exception",
                          f"the query vector has a different number of dimensions [{len(values)}] than the "
                          f"index vectors [{dim}]")
        with np.errstate(over="ignore"):
            vector = np.asarray(values, dtype=np.float32)
        if not np.isfinite(vector).all():  # NaN, or past float32 (1e308): no neighbour has a score
            raise parsing("[knn] query_vector holds a number that is not a finite 32-bit float")
        vector = vector / max(float(np.linalg.norm(vector.astype(np.float64))), 1e-12)
    elif "query_vector_builder" in spec:
        builder = json_object(spec["query_vector_builder"], "query_vector_builder")
        _known(builder, ("text_embedding",), "query_vector_builder")
        embedding = json_object(builder.get("text_embedding"), "text_embedding")
        _known(embedding, ("model_text", "model_id"), "text_embedding")
        if "model_id" in embedding and embedding["model_id"] != reader.dense.manifest.model_id:
            raise EsError("illegal_argument_exception", f"this index's vectors come from model "
                                                        f"[{reader.dense.manifest.model_id}]")
        text = str(embedding.get("model_text", ""))[:MAX_QUERY_CHARS]
    else:
        raise parsing("[knn] requires [query_vector] or [query_vector_builder]")
    return KnnSpec(vector, text, min(k, MAX_K), _filter_mask(reader, spec.get("filter")))


def compile_retriever(reader: IndexReader, body, size: int) -> tuple[QuerySpec | None, KnnSpec | None, RrfSpec | None]:
    kind, spec = _single(body, "retriever")
    spec = json_object(spec, kind)
    if kind == "standard":
        _known(spec, ("query", "filter"), "standard")
        return _standard(reader, spec), None, None
    if kind == "knn":
        return None, compile_knn(reader, spec, size), None
    if kind != "rrf":
        raise parsing(f"unknown retriever [{kind}]; supported: standard, knn, rrf")
    _known(spec, ("retrievers", "rank_constant", "rank_window_size"), "rrf")
    standard = knn = None
    for child in _list(spec.get("retrievers", [])):
        child_kind, child_spec = _single(child, "retrievers")
        if child_kind == "standard" and standard is None:
            _known(json_object(child_spec, "standard"), ("query", "filter"), "standard")
            standard = _standard(reader, child_spec)
        elif child_kind == "knn" and knn is None:
            knn = compile_knn(reader, child_spec, size)
        else:
            raise parsing("[rrf] fuses one standard and one knn retriever")
    if standard is None or knn is None:
        raise parsing("[rrf] fuses one standard and one knn retriever")
    return None, None, RrfSpec(standard, knn, integer_value(spec.get("rank_constant", 60), "rank_constant", 1),
                               integer_value(spec.get("rank_window_size", max(size, 100)), "rank_window_size", 1))


def _standard(reader: IndexReader, spec: dict) -> QuerySpec:
    query = compile_query(reader, spec.get("query", {"match_all": {}}))
    extra = _filter_mask(reader, spec.get("filter"))
    if extra is not None:
        query = replace(query, allowed=extra if query.allowed is None else query.allowed & extra)
    return query


def _source(value) -> tuple[list[str], list[str]] | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return [value], []
    if isinstance(value, list):
        return [str(v) for v in value], []
    spec = json_object(value, "_source")
    _known(spec, ("includes", "include", "excludes", "exclude"), "_source")
    return ([str(v) for v in _list(spec.get("includes", spec.get("include", [])))],
            [str(v) for v in _list(spec.get("excludes", spec.get("exclude", [])))])


def _sort(value) -> tuple[str | None, bool]:
    """(the published_at direction, index order): (None, False) is score order."""
    keys = _list(value)
    first = keys[0] if keys else "_score"
    if isinstance(first, str):
        name, order = first, "desc" if first == "_score" else "asc"
    else:
        name, order = _single(first, "sort")
        if isinstance(order, dict):
            _known(order, ("order",), "sort")
            order = order.get("order", "desc" if name == "_score" else "asc")
    if order not in ("asc", "desc"):
        raise parsing(f"[sort] order is asc or desc, not [{order}]")
    if name == "_score":
        if order != "desc":
            raise EsError("illegal_argument_exception", "[_score] sorts descending only here")
        return None, False
    if name == "_doc":
        if order != "asc":
            raise EsError("illegal_argument_exception", "[_doc] sorts ascending only")
        return None, True
    if name != DATE_FIELD:
        raise EsError("illegal_argument_exception", f"sort by _score, _doc or {DATE_FIELD}, not [{name}]")
    return order, False


def _search_after(value, search: EsSearch) -> list:
    """The previous page's last `sort` values: [ordinal] in index order; by date [ms or null], with the ordinal
    after it in a point in time."""
    if search.scored:
        raise EsError("illegal_argument_exception",
                      "[search_after] pages in _doc or published_at order here; add such a [sort]")
    values = _list(value)
    lengths = (1,) if search.sort_doc else (1, 2)
    if len(values) not in lengths or any(isinstance(v, bool) or not isinstance(v, int | None) for v in values) \
            or (search.sort_doc or len(values) == 2) and values[-1] is None:
        raise EsError("illegal_argument_exception",
                      f"[search_after] takes the integer sort values of a hit of this sort, got {value!r}")
    return values


def _tags(value, where: str) -> list[str]:
    tags = _list(value)
    if not tags or not all(isinstance(tag, str) for tag in tags):
        raise parsing(f"[{where}] expects a string or a non-empty list of strings, got {value!r}")
    return tags


def _highlight_options(spec: dict, where: str) -> dict:
    """The options of `spec` present, checked: the search reads them as they are, past the parser's error handling."""
    checked = {name: _tags(spec[name], f"{where}.{name}") for name in ("pre_tags", "post_tags") if name in spec}
    if "fragment_size" in spec:
        checked["fragment_size"] = integer_value(spec["fragment_size"], f"{where}.fragment_size", 1)
    if "number_of_fragments" in spec:
        checked["number_of_fragments"] = integer_value(spec["number_of_fragments"], f"{where}.number_of_fragments")
    return checked


def _highlight(value) -> HighlightSpec:
    spec = json_object(value, "highlight")
    options = ("fragment_size", "number_of_fragments", "pre_tags", "post_tags")
    _known(spec, ("fields", "type", "require_field_match", *options), "highlight")
    fields: dict[str, dict] = {}
    raw = spec.get("fields", {})
    for entry in raw if isinstance(raw, list) else [raw]:
        for name, field_spec in json_object(entry, "highlight.fields").items():
            field_spec = json_object(field_spec or {}, f"highlight.fields.{name}")
            _known(field_spec, ("type", *options), f"highlight.fields.{name}")
            for target in (HIGHLIGHT_FIELDS if name in (*ANY_FIELD, "text") else (name,)):
                if target not in HIGHLIGHT_FIELDS:
                    raise parsing(f"[highlight] fields are {', '.join(HIGHLIGHT_FIELDS)}, not [{name}]")
                fields[target] = _highlight_options(field_spec, f"highlight.fields.{name}")
    overall = _highlight_options(spec, "highlight")
    return HighlightSpec(fields, overall.get("pre_tags", ["<em>"]), overall.get("post_tags", ["</em>"]),
                         overall.get("fragment_size", 100), overall.get("number_of_fragments", 5))


def _aggs(value) -> dict[str, AggSpec]:
    out = {}
    for name, spec in json_object(value, "aggs").items():
        spec = json_object(spec, name)
        kind, body = _single(spec, f"aggs.{name}")
        body = json_object(body, kind)
        if kind == "terms":
            _known(body, ("field", "size"), "terms")
            if body.get("field") not in FACET_FIELDS:
                raise parsing(f"[terms] aggregation on {', '.join(FACET_FIELDS)}, not [{body.get('field')}]")
            out[name] = AggSpec("terms", body["field"], integer_value(body.get("size", 10), "size", 1))
        elif kind == "date_histogram":
            _known(body, ("field", "calendar_interval", "interval", "format"), "date_histogram")
            if body.get("field") != DATE_FIELD:
                raise parsing(f"[date_histogram] on {DATE_FIELD}, not [{body.get('field')}]")
            interval = body.get("calendar_interval", body.get("interval", "month"))
            interval = {"1d": "day", "1w": "week", "1M": "month", "1q": "quarter", "1y": "year"}.get(interval, interval)
            if interval not in CALENDAR_INTERVALS:
                raise parsing(f"[date_histogram] calendar_interval is one of {', '.join(CALENDAR_INTERVALS)}")
            out[name] = AggSpec("date_histogram", DATE_FIELD, interval=interval)
        else:
            raise parsing(f"unknown aggregation [{kind}]; supported: terms, date_histogram")
    return out


def compile_search(reader: IndexReader, body: dict, params: dict[str, str] | None = None,
                   scroll: bool = False, in_pit: bool = False) -> EsSearch:
    """A `_search` body (and URL parameters from, size, q) against one index version. A `scroll` may page past
    max_result_window in index or date order, which sort every match; in score order it ends there."""
    body = json_object(body or {}, "search")
    params = params or {}
    for key in body:
        if key not in REQUEST_KEYS:
            raise parsing(f"unknown key [{key}] in the search request; supported: {', '.join(sorted(REQUEST_KEYS))}")
    search = EsSearch()
    search.from_ = integer_value(params.get("from", body.get("from", 0)), "from")
    search.size = integer_value(params.get("size", body.get("size", DEFAULT_SIZE)), "size")
    if "q" in params:
        body = {**body, "query": {"query_string": {"query": params["q"]}}}
    if "retriever" in body:
        if "query" in body or "knn" in body:
            raise parsing("[retriever] cannot be used with [query] or [knn]")
        search.query, search.knn, search.rrf = compile_retriever(reader, body["retriever"], search.size)
    else:
        if "query" in body:
            search.query = compile_query(reader, body["query"])
        if "knn" in body:
            search.knn = compile_knn(reader, body["knn"], search.size)
    if "rescore" in body:
        rescorers = _list(body["rescore"])
        if not rescorers:
            raise parsing("[rescore] expects a rescorer object, got an empty list")
        rescore = json_object(rescorers[0], "rescore")
        _known(rescore, ("window_size", "learning_to_rank"), "rescore")
        ltr = json_object(rescore.get("learning_to_rank"), "learning_to_rank")
        _known(ltr, ("model_id", "params"), "learning_to_rank")
        if search.query is None or search.rrf is not None:
            raise parsing("[rescore] re-ranks the results of a [query]")
        search.ltr_model = str(ltr.get("model_id") or "")
    if "sort" in body:
        search.sort_date, search.sort_doc = _sort(body["sort"])
    search.tiebreak = in_pit
    if "search_after" in body:
        search.search_after = _search_after(body["search_after"], search)
        if search.from_:
            raise EsError("illegal_argument_exception", "[from] parameter must be set to 0 when [search_after] is used")
    if search.size > MAX_K:
        raise EsError("illegal_argument_exception",
                      f"Batch size is too large, size must be less than or equal to: [{MAX_K}] but was "
                      f"[{search.size}]. This limit is the index's max_result_window.")
    if scroll and search.scored:  # a scroll in score order ends at the window
        search.size = max(0, min(search.size, MAX_K - search.from_))
    elif search.from_ + search.size > MAX_K and not scroll:
        raise EsError("illegal_argument_exception",
                      f"Result window is too large, from + size must be less than or equal to: [{MAX_K}] but was "
                      f"[{search.from_ + search.size}]. This limit is the index's max_result_window; a scroll "
                      "sorted by _doc or published_at reads past it.")
    if "_source" in body:
        search.source = _source(body["_source"])
    if "highlight" in body:
        search.highlight = _highlight(body["highlight"])
    if "track_total_hits" in body:
        value = body["track_total_hits"]
        search.track_total_hits = value if isinstance(value, bool) else integer_value(value, "track_total_hits")
    search.explain = body.get("explain", False)
    if not isinstance(search.explain, bool):  # "false" would be truthy
        raise parsing(f"[explain] expects true or false, got {search.explain!r}")
    if "aggs" in body or "aggregations" in body:
        search.aggs = _aggs(body.get("aggs", body.get("aggregations")))
    return search
