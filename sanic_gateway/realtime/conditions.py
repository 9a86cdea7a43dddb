"""Elementary conditions: one keyword on one field, the unit that filters share.

Two filters that test `equals {city: "NYC"}` hold the same Condition (equal by `key`, a canonical
JSON text), so the engine stores and tests it once.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from . import geo
from .values import js_value, scalar_key


def canonical(obj: Any) -> str:
    """Stable JSON text (sorted keys): the identity of conditions and the input of room ids."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # what orjson refuses (lone surrogates): the standard library escapes it
        return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class Condition:
    """`keyword` is equals, exists, range, regexp, geospatial, everything or nothing."""

    __slots__ = ("field", "high", "json", "key", "keyword", "low", "regexp", "shape", "value")

    def __init__(self, keyword: str, field: str, json: dict[str, Any]) -> None:
        self.keyword = keyword
        self.field = field
        self.json = json
        self.key = canonical(json)
        self.value: Any = None
        self.low = -math.inf
        self.high = math.inf
        self.regexp: Any = None
        self.shape: geo.Shape | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __lt__(self, other: Condition) -> bool:
        return self.key < other.key

    def __repr__(self) -> str:
        return self.key


def equals(field: str, value: Any) -> Condition:
    value = js_value(value)
    cond = Condition("equals", field, {"equals": {field: value}})
    cond.value = scalar_key(value)
    return cond


def exists(field: str, array: bool = False, value: Any = None) -> Condition:
    value = js_value(value)
    cond = Condition("exists", field, {"exists": {"path": field, "array": array, "value": value}})
    cond.value = (array, value)
    return cond


def range_(field: str, bounds: dict[str, float]) -> Condition:
    bounds = {name: js_value(bound) for name, bound in bounds.items()}
    cond = Condition("range", field, {"range": {field: bounds}})
    for name, bound in bounds.items():
        if name == "gte":
            cond.low = float(bound)
        elif name == "gt":
            cond.low = math.nextafter(float(bound), math.inf)
        elif name == "lte":
            cond.high = float(bound)
        elif name == "lt":
            cond.high = math.nextafter(float(bound), -math.inf)
    return cond


def regexp(field: str, pattern: str, flags: str, compiled: Any) -> Condition:
    body = {"value": pattern, "flags": flags} if flags else {"value": pattern}
    cond = Condition("regexp", field, {"regexp": {field: body}})
    cond.regexp = compiled
    return cond


def geospatial(kind: str, field: str, description: Any, shape: geo.Shape) -> Condition:
    cond = Condition("geospatial", field, {"geospatial": {kind: {field: description}}})
    cond.shape = shape
    return cond


EVERYTHING = Condition("everything", "", {"everything": True})
NOTHING = Condition("nothing", "", {"nothing": True})
