"""Kuzzle's default search language for security objects: a subset of Elasticsearch's Query DSL.

`translate` checks a query (`match_all`, `term`, `terms`, `match`, `ids`, `range`, `exists`,
`bool`) and gives an `EsQuery` that storage compiles with the backend's SQL, like a Koncorde
filter. Elasticsearch's meaning is kept where SQL can hold it: `term`, `terms` and `match`
find a value inside arrays, also through arrays of objects (`policies.roleId`); `match` is
exact (the security mappings hold keywords: no text analysis); `exists` ignores nulls; `bool`'s
`should` only matters alone or with `minimum_should_match` (it scores otherwise). Depth and
number of clauses have the bounds of Koncorde filters. With `fields` (the collection's
mapping), a field it does not allow holds nothing, as an unmapped field in Elasticsearch: a
clause on it matches no document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sanic_gateway import errors

from .base import (
    MAX_FILTER_CLAUSES,
    MAX_FILTER_DEPTH,
    CompiledQuery,
    Dialect,
    _scalar,
    compile_filter,
    parse_field,
    parse_sort,
    storable_text,
)

Node = tuple[Any, ...]
KONCORDE_ONLY = frozenset({
    "equals", "in", "missing", "and", "or", "not", "geoBoundingBox", "geoDistance",
    "geoDistanceRange", "geoPolygon", "regexp", "select"})
ES_KEYWORDS = frozenset({
    "match_all", "match_none", "term", "terms", "match", "ids", "range", "exists", "bool"})
_RANGE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_BOOL_KEYS = frozenset({"must", "filter", "should", "must_not", "minimum_should_match", "boost"})


def _invalid(what: str) -> errors.GatewayError:
    return errors.get("services.storage.invalid_search_query", what)


def looks_like_koncorde(query: Any) -> bool:
    """True for a filter whose top keyword only Koncorde has (`equals`, `and`, ...)."""
    return isinstance(query, dict) and len(query) == 1 and next(iter(query)) in KONCORDE_ONLY


class EsQuery(CompiledQuery):
    """A checked query, compiled on demand for one backend's dialect."""

    def __init__(self, tree: Node) -> None:
        self.tree = tree

    def sql(self, dialect: Dialect) -> str:
        return _sql(self.tree, dialect)


def after(query: Any, sort: Any, values: Any) -> EsQuery:
    """`query` (an EsQuery or a Koncorde filter) limited to the documents sorted after
    `values` (Elasticsearch's `search_after`: one value per sort key, numbers or strings)."""
    keys = parse_sort(sort)
    if not keys:
        raise errors.get("api.assert.invalid_argument", "body.search_after",
                         "used with body.sort")
    if not isinstance(values, list) or len(values) != len(keys) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
        raise errors.get("api.assert.invalid_argument", "body.search_after",
                         "one number or string per sort key")
    values = [_scalar(v, "search_after") for v in values]
    branches: list[Node] = []
    for i, (path, desc) in enumerate(keys):
        op = "<" if desc else ">"
        same = [("eq", keys[j][0], values[j]) for j in range(i)]
        branches.append(("and", [*same, ("cmp", path, op, values[i])]))
    base = query.tree if isinstance(query, EsQuery) else ("koncorde", query)
    return EsQuery(("and", [base, ("or", branches)]))


def translate(query: Any, fields: Callable[[str], bool] | None = None) -> EsQuery:
    """`query` (None or `{}`: everything) checked and translated; errors are 400s."""
    return EsQuery(_Translator(fields).node(query, 1))


class _Translator:
    def __init__(self, fields: Callable[[str], bool] | None) -> None:
        self.fields = fields
        self.clauses = 0

    def field(self, name: Any, keyword: str) -> list[str] | None:
        """The field's path, None if the mapping leaves it out (nothing matches it)."""
        path = parse_field(name, keyword)
        if self.fields is not None and name != "_id" and not self.fields(name):
            return None
        return path

    def node(self, query: Any, depth: int) -> Node:
        self.clauses += 1
        if self.clauses > MAX_FILTER_CLAUSES:
            raise _invalid(f"more than {MAX_FILTER_CLAUSES} clauses")
        if depth > MAX_FILTER_DEPTH:
            raise _invalid(f"nested deeper than {MAX_FILTER_DEPTH} levels")
        if query is None or query == {}:
            return ("true",)
        if not isinstance(query, dict):
            raise _invalid(f"a query is an object, got {type(query).__name__}")
        if len(query) != 1:
            raise _invalid(f"a query has exactly one keyword, got {sorted(query)} "
                           '(combine them with "bool")')
        keyword, body = next(iter(query.items()))
        if keyword in KONCORDE_ONLY:
            raise errors.get("services.storage.unknown_query_keyword", keyword)
        if keyword not in ES_KEYWORDS:
            raise errors.get("services.storage.invalid_query_keyword", keyword)
        return getattr(self, f"k_{keyword}")(body, depth)

    def k_match_all(self, body: Any, depth: int) -> Node:
        return ("true",)

    def k_match_none(self, body: Any, depth: int) -> Node:
        return ("false",)

    def _one_field(self, body: Any, keyword: str) -> tuple[str, Any]:
        if not isinstance(body, dict):
            raise _invalid(f'"{keyword}" takes {{field: value}}')
        named = [k for k in body if k != "boost"]
        if len(named) != 1:
            raise _invalid(f'"{keyword}" takes exactly one field')
        return named[0], body[named[0]]

    def _values(self, path: list[str] | None, values: list[Any], keyword: str) -> Node:
        kept = [_scalar(v, keyword) for v in values
                if not isinstance(v, str) or storable_text(v)]
        return ("any", path, kept) if kept and path is not None else ("false",)

    def k_term(self, body: Any, depth: int) -> Node:
        name, value = self._one_field(body, "term")
        if isinstance(value, dict):
            if "value" not in value or set(value) - {"value", "boost"}:
                raise _invalid('"term" takes {field: value} or {field: {value: ...}}')
            value = value["value"]
        return self._values(self.field(name, "term"), [value], "term")

    def k_match(self, body: Any, depth: int) -> Node:
        name, value = self._one_field(body, "match")
        if isinstance(value, dict):
            if "query" not in value or set(value) - {"query", "boost", "operator"}:
                raise _invalid('"match" takes {field: value} or {field: {query: ...}}')
            value = value["query"]
        return self._values(self.field(name, "match"), [value], "match")

    def k_terms(self, body: Any, depth: int) -> Node:
        name, values = self._one_field(body, "terms")
        if not isinstance(values, list):
            raise _invalid('"terms" takes {field: [value, ...]}')
        return self._values(self.field(name, "terms"), values, "terms")

    def k_ids(self, body: Any, depth: int) -> Node:
        if not isinstance(body, dict) or set(body) - {"values", "boost"} or "values" not in body:
            raise _invalid('"ids" takes {"values": [id, ...]}')
        values = body["values"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _invalid('"ids.values" is an array of strings')
        values = [v for v in values if storable_text(v)]
        return ("ids", values) if values else ("false",)

    def k_range(self, body: Any, depth: int) -> Node:
        name, bounds = self._one_field(body, "range")
        path = self.field(name, "range")
        if not isinstance(bounds, dict):
            raise _invalid('"range" takes {field: {gt|gte|lt|lte: value}}')
        parts = []
        for op, value in bounds.items():
            if op in ("boost", "format"):
                continue
            if op not in _RANGE:
                raise _invalid(f'"range": unknown operator {op!r} (gt, gte, lt, lte)')
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise _invalid('"range" bounds are numbers or strings')
            parts.append((_RANGE[op], _scalar(value, "range")))
        if not parts:
            raise _invalid('"range" needs gt, gte, lt or lte')
        return ("range", path, parts) if path is not None else ("false",)

    def k_exists(self, body: Any, depth: int) -> Node:
        if not isinstance(body, dict) or set(body) - {"field", "boost"} or "field" not in body:
            raise _invalid('"exists" takes {"field": name}')
        path = self.field(body["field"], "exists")
        return ("exists", path) if path is not None else ("false",)

    def k_bool(self, body: Any, depth: int) -> Node:
        if not isinstance(body, dict) or set(body) - _BOOL_KEYS:
            extra = sorted(set(body) - _BOOL_KEYS) if isinstance(body, dict) else []
            raise _invalid(f'"bool" takes must, filter, should, must_not'
                           f'{" (not " + ", ".join(map(str, extra)) + ")" if extra else ""}')

        def clauses(key: str) -> list[Node]:
            value = body.get(key)
            if value is None:
                return []
            items = value if isinstance(value, list) else [value]
            if len(items) > MAX_FILTER_CLAUSES:
                raise _invalid(f"more than {MAX_FILTER_CLAUSES} clauses")
            return [self.node(item, depth + 1) for item in items]

        required = clauses("must") + clauses("filter")
        should = clauses("should")
        excluded = clauses("must_not")
        minimum = body.get("minimum_should_match")
        if minimum is not None and (isinstance(minimum, bool) or not isinstance(minimum, int)
                                    or minimum < 0):
            raise _invalid('"minimum_should_match" is a non-negative integer')
        if minimum is None:
            minimum = 0 if required or excluded else 1
        parts = list(required)
        if should and minimum:
            if minimum > len(should):
                return ("false",)
            if minimum > 1:
                raise _invalid('"minimum_should_match" above 1 is not supported')
            parts.append(("or", should))
        parts += [("not", node) for node in excluded]
        return ("and", parts) if parts else ("true",)


def _sql(node: Node, dialect: Dialect) -> str:
    kind = node[0]
    if kind == "true":
        return dialect.true
    if kind == "false":
        return dialect.false
    if kind in ("and", "or"):
        if not node[1]:
            return dialect.true if kind == "and" else dialect.false
        joiner = " AND " if kind == "and" else " OR "
        return "(" + joiner.join(_sql(n, dialect) for n in node[1]) + ")"
    if kind == "not":
        return f"NOT ({_sql(node[1], dialect)})"
    if kind == "any":
        return dialect.any_equals(node[1], node[2])
    if kind == "ids":
        return dialect.ids(node[1])
    if kind == "exists":
        return f"({dialect.exists(node[1])} AND NOT ({dialect.equals(node[1], None)}))"
    if kind == "koncorde":
        return f"({compile_filter(node[1], dialect)})"
    if kind in ("eq", "cmp"):
        path, value = node[1], node[-1]
        if path is None:  # the document id, the sort's own `_id`
            return f"id {'=' if kind == 'eq' else node[2]} {dialect.bind(value)}"
        if kind == "eq":
            return dialect.equals(path, value)
        return dialect.compare(path, node[2], value)
    if kind == "range":
        return "(" + " AND ".join(dialect.compare(node[1], op, value)
                                  for op, value in node[2]) + ")"
    raise AssertionError(kind)
