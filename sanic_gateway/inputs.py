"""The door every protocol's input passes: JSON parsing, nesting and type checks of a request.

Every protocol (HTTP today; WebSocket, MQTT and custom ones alike) turns what it receives into
the `data` of `Request(data, context)` through these functions, so that all of them refuse the
same inputs with the same 400 before anything runs or is stored:

- `parse_request(raw)`: a whole API request sent as one JSON object (`POST /_query`, a
  WebSocket or MQTT message): parsed, nesting bounded, fields typed.
- `loads(raw, name)`: one JSON value of a request (the HTTP body, `X-Kuzzle-Volatile`).
- `check_request(data)`: the field types of a request a protocol assembled itself from
  values it got through `loads` (or checked with `check_depth`).

They raise catalogued 400s; the protocol answers them in its own error envelope, without
building a Request (HTTP: `HttpAdapter.error_response`).

Why nesting is bounded: responses are serialized by orjson, which refuses more than 254 levels.
A body nested ~300 deep was accepted and stored, then every response containing it (the user's
`/_me`, searches, lists) failed. MAX_DEPTH leaves room for the envelope and whatever a plugin
wraps around stored values (`{"result": {"hits": [{"_source": ...}]}}` is 5 levels).
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from . import errors

# Objects and arrays one value (body, volatile, one argument) may nest; see the module docstring.
MAX_DEPTH = 100

# `jwt` is not among them: a token of any other type is an invalid token (401), as any bad one
_STRING_FIELDS = ("controller", "action", "index", "collection", "_id", "requestId")
_OBJECT_FIELDS = ("body", "volatile")
_DIGITS = re.compile(r"-?[0-9]{1,32}")


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when `value` nests more than `limit` objects/arrays (a scalar nests 0, `{}` 1).

    Breadth-first and iterative: no recursion limit to hit, whatever the input."""
    level = [value]
    depth = 0
    while level:
        below: list[Any] = []
        found = False
        for item in level:
            if isinstance(item, dict):
                below.extend(item.values())
                found = True
            elif isinstance(item, list | tuple):
                below.extend(item)
                found = True
        if not found:
            return False
        depth += 1
        if depth > limit:
            return True
        level = below
    return False


def _dump_limit() -> int:
    """The deepest nesting orjson serializes (254 in orjson 3), measured once at import."""
    low, high = 1, 4096
    while low < high:
        middle = (low + high + 1) // 2
        value: Any = 0
        for _ in range(middle):
            value = [value]
        try:
            orjson.dumps(value)
            low = middle
        except orjson.JSONEncodeError:
            high = middle - 1
    return low


DUMP_LIMIT = _dump_limit()


def _may_be_deep(raw: bytes | str | None, limit: int) -> bool:
    """False when `raw` JSON surely nests at most `limit` levels: each level opens a bracket,
    so fewer brackets than that (in strings too: it only overestimates) settle it in C."""
    if raw is None:
        return True
    if isinstance(raw, str):
        return raw.count("{") + raw.count("[") > limit
    return raw.count(b"{") + raw.count(b"[") > limit


def _deeper(value: Any, limit: int, parsed: bool) -> bool:
    """Whether `value` nests more than `limit` levels, asked of orjson itself (in C, ~15 times
    faster than walking a large body in Python): wrapped in DUMP_LIMIT - limit lists, it
    serializes only if it nests at most `limit`. A refusal is certain for what orjson parsed;
    anything else (a type orjson cannot dump) is settled by the walk."""
    wrapped = value
    for _ in range(DUMP_LIMIT - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return parsed or too_deep(value, limit)
    return False


def check_depth(value: Any, name: str, raw: bytes | str | None = None,
                limit: int = MAX_DEPTH) -> None:
    """Refuse (400 api.assert.too_deep) a value nested deeper than `limit`. `raw`, the JSON
    text `value` was parsed from by orjson, lets the usual small input skip the check."""
    if _may_be_deep(raw, limit) and _deeper(value, limit, raw is not None):
        raise errors.get("api.assert.too_deep", name, limit)


def loads(raw: bytes | str, name: str = "body",
          error_id: str = "api.assert.invalid_body") -> Any:
    """One JSON value of a request: `error_id` (a 400) if malformed, too_deep if nested
    beyond MAX_DEPTH."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.get(error_id, f"malformed JSON: {exc}") from None
    check_depth(value, name, raw)
    return value


def check_request(data: Any) -> dict[str, Any]:
    """`data` for `Request(data, context)`, checked: an object whose reserved fields have
    their types (strings; `body` and `volatile` objects; absent or null is fine), as Kuzzle's
    Request asserts. Plugins are promised a dict body; the router, strings."""
    if not isinstance(data, dict):
        raise errors.get("api.assert.invalid_body",
                         f"expected a JSON object, got {type(data).__name__}")
    for key in _STRING_FIELDS:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise errors.get("api.assert.invalid_type", key, "string")
    for key in _OBJECT_FIELDS:
        value = data.get(key)
        if value is not None and not isinstance(value, dict):
            raise errors.get("api.assert.invalid_type", key, "object")
    return data


def parse_request(raw: bytes | str) -> dict[str, Any]:
    """A whole API request sent as one JSON object (`POST /_query`, a WebSocket or MQTT
    message). Its fields sit one level down, so each may nest MAX_DEPTH levels."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.get("api.assert.invalid_body", f"malformed JSON: {exc}") from None
    if _may_be_deep(raw, MAX_DEPTH + 1) and _deeper(data, MAX_DEPTH + 1, True):
        name = "request"
        if isinstance(data, dict):  # name the culprit; only on this rare path
            name = next((k for k, v in data.items() if _deeper(v, MAX_DEPTH, True)), name)
        raise errors.get("api.assert.too_deep", name, MAX_DEPTH)
    return check_request(data)


# -- arguments of actions ------------------------------------------------------------------------

def int_arg(value: Any, name: str, default: int, maximum: int, minimum: int = 0) -> int:
    """An integer argument: an int, an integral float (JSON `10.0`) or a decimal string (query
    strings); 400 invalid_type for anything else, invalid_argument outside [minimum, maximum]."""
    if value is None:
        return default
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.get("api.assert.invalid_type", name, "integer")
    if not minimum <= value <= maximum:
        raise errors.get("api.assert.invalid_argument", name,
                         f"an integer from {minimum} to {maximum}")
    return value


def string_list(value: Any, name: str) -> list[str]:
    """An optional array of strings (absent or null: empty)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.get("api.assert.invalid_type", name, "array of strings")
    return value


def object_arg(value: Any, name: str) -> dict[str, Any]:
    """An optional object (absent or null: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.get("api.assert.invalid_type", name, "object")
    return value
