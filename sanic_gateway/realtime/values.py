"""JavaScript value rules the filter language depends on, in one place.

Koncorde runs on JavaScript: `true` is not `1`, `parseFloat("12abc")` is 12, a `not regexp` tests a
number through its string form. These helpers give Python the same answers.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MISSING: Any = object()


class _BoolKey:
    """A hashable stand-in for a boolean, so that `True` and `1` are different keys."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "true" if self.value else "false"


TRUE_KEY = _BoolKey(True)
FALSE_KEY = _BoolKey(False)
SCALARS = (str, int, float, bool, type(None))


def is_scalar(value: Any) -> bool:
    """JSON scalar: string, number, boolean or null."""
    return isinstance(value, SCALARS)


def is_number(value: Any) -> bool:
    """A JavaScript number: int or float, never a boolean."""
    cls = value.__class__
    return cls is int or cls is float


def js_value(value: Any) -> Any:
    """One spelling per JavaScript number: integral floats as ints (1.0 is 1, -0.0 is 0), and
    integers too large for 64 bits as floats (JavaScript has only doubles)."""
    cls = value.__class__
    if cls is float and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if cls is int and abs(value) >= 2**63:
        return float(value)
    return value


def scalar_key(value: Any) -> Any:
    """Key under which a scalar is stored, equal exactly when JavaScript's SameValueZero says so."""
    if value is True:
        return TRUE_KEY
    if value is False:
        return FALSE_KEY
    return value


def truthy(value: Any) -> bool:
    """JavaScript truthiness (objects and arrays are truthy even when empty)."""
    if value is MISSING or value is None or value is False:
        return False
    if isinstance(value, (dict, list)):
        return True
    return bool(value)


_FLOAT_PREFIX = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


def parse_float(value: Any) -> float:
    """JavaScript's `Number.parseFloat`: the longest numeric prefix of the string, else NaN."""
    if is_number(value):
        return float(value)
    text = js_string(value).lstrip(" \t\n\r\v\f\u00a0\ufeff")
    match = _FLOAT_PREFIX.match(text)
    if not match:
        return math.nan
    return float(match.group(0).replace("Infinity", "inf"))


def js_string(value: Any) -> str:
    """JavaScript's `String(value)` for JSON values."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            sign = "-" if exponent.startswith("-") else "+"
            text = f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
        return text
    if isinstance(value, list):
        return ",".join("" if item is None else js_string(item) for item in value)
    return "[object Object]"


def utf8_safe(text: str) -> str:
    """The text RE2 can read: lone surrogates (valid in JSON, not in UTF-8) replaced."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def parse_json_strict(text: str) -> Any:
    """JSON.parse: no NaN/Infinity literals, which Python's json would accept."""

    def refuse(name: str) -> Any:
        raise ValueError(f"invalid JSON literal {name}")

    return json.loads(text, parse_constant=refuse)


def flatten(document: dict[str, Any]) -> dict[str, Any]:
    """Koncorde's view of a document: every nested object also reachable by its dotted path.

    Arrays are not entered. A document without nested objects is returned as it is.
    """
    for value in document.values():
        if value.__class__ is dict:
            break
    else:
        return document
    out: dict[str, Any] = {}
    _flatten_into(out, document, "")
    return out


def _flatten_into(out: dict[str, Any], obj: dict[str, Any], prefix: str) -> None:
    for key, value in obj.items():
        path = prefix + key
        out[path] = value
        if value.__class__ is dict:
            _flatten_into(out, value, path + ".")
