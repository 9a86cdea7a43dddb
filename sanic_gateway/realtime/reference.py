"""A plain recursive evaluator of one filter against one document.

Slow on purpose and obvious: it walks the filter as written (no normal form, no index). The tests
check the engine against it on random filters and documents. Leaf conditions come from the same
validation code; the combination logic is independent.
"""

from __future__ import annotations

from typing import Any

from . import conditions as C
from .geo import convert_geopoint
from .standardize import standardize
from .values import MISSING, flatten, is_number, is_scalar, js_string, truthy, utf8_safe


def matches(filter_: Any, document: dict[str, Any], id: str | None = None) -> bool:
    """Whether the (valid) filter matches the document."""
    doc = dict(flatten(document))
    if id is not None:
        doc["_id"] = id
    return _eval(filter_ or {}, doc, False)


def _eval(filter_: dict[str, Any], doc: dict[str, Any], negated: bool) -> bool:
    if not filter_:
        return not negated
    keyword, body = next(iter(filter_.items()))
    if keyword == "and":
        results = (_eval(child, doc, negated) for child in body)
        return any(results) if negated else all(results)
    if keyword == "or":
        results = (_eval(child, doc, negated) for child in body)
        return all(results) if negated else any(results)
    if keyword == "not":
        return _eval(body, doc, not negated)
    if keyword == "bool":
        parts: list[dict[str, Any]] = []
        must = body.get("must", [])
        parts.extend([must] if isinstance(must, dict) else must)
        if "must_not" in body:
            parts.append({"not": {"or": body["must_not"]}})
        if "should" in body:
            parts.append({"or": body["should"]})
        if "should_not" in body:
            parts.append({"not": {"and": body["should_not"]}})
        return _eval({"and": parts}, doc, negated)
    if keyword == "in":
        field, values = next(iter(body.items()))
        return _eval({"or": [{"equals": {field: v}} for v in values]}, doc, negated)
    if keyword == "ids":
        return _eval({"or": [{"equals": {"_id": v}} for v in body["values"]]}, doc, negated)
    if keyword == "missing":
        return _eval({"exists": body}, doc, not negated)
    if keyword == "nothing":
        return negated
    node = standardize(filter_)
    return _leaf(node[1], doc, negated)


def _same(a: Any, b: Any) -> bool:
    """SameValueZero on JSON scalars: booleans equal only booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b and (a is None) == (b is None) and isinstance(a, str) == isinstance(b, str)


def _leaf(cond: C.Condition, doc: dict[str, Any], negated: bool) -> bool:
    value = doc.get(cond.field, MISSING)
    keyword = cond.keyword
    if keyword == "equals":
        expected = cond.json["equals"][cond.field]
        ok = value is not MISSING and is_scalar(value) and _same(value, expected)
    elif keyword == "exists":
        array, expected = cond.value
        if not array:
            ok = value is not MISSING
        else:
            ok = isinstance(value, list) and is_scalar(expected) and any(
                is_scalar(item) and _same(item, expected) for item in value)
    elif keyword == "range":
        ok = is_number(value) and all(
            _compare(value, name, bound)
            for name, bound in cond.json["range"][cond.field].items())
    elif keyword == "regexp":
        if value is MISSING:
            ok = False
        elif isinstance(value, str):
            ok = cond.regexp.search(utf8_safe(value)) is not None
        elif negated:  # Koncorde's `not regexp` tests the string form of other values
            return cond.regexp.search(utf8_safe(js_string(value))) is None
        else:
            ok = False
    elif keyword == "geospatial":
        if not truthy(value):
            ok = False
        else:
            point = convert_geopoint(value)
            if point is None:
                return False  # neither the condition nor its negation
            ok = cond.shape is not None and cond.shape.contains(*point)
    else:  # pragma: no cover - every leaf keyword is handled above
        raise ValueError(keyword)
    return ok != negated


def _compare(value: float, name: str, bound: float) -> bool:
    if name == "gt":
        return value > bound
    if name == "gte":
        return value >= bound
    if name == "lt":
        return value < bound
    return value <= bound
