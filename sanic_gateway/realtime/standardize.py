"""Validation of a filter and its rewriting into a tree of and/or/not over Conditions.

Every fault raises `api.assert.koncorde_dsl_error` (400) whose message starts with the path of the
fault inside the filter, e.g. `"and[1].range.age.gt": must be a number`; the error also carries
`path` and `keyword` attributes. Keywords and rules follow Koncorde 4.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

from .. import errors
from . import conditions as C
from . import geo
from .values import is_number, is_scalar, parse_float, parse_json_strict

try:  # RE2 (linear time, Koncorde's default engine) when installed, else Python's re
    import re2 as _re2

    _RE2_OPTIONS = _re2.Options()
    _RE2_OPTIONS.log_errors = False
    REGEXP_ENGINE = "re2"
except ImportError:  # pragma: no cover - depends on the installation
    _re2 = None
    REGEXP_ENGINE = "re"

# Tree nodes: ("and", [nodes]) ("or", [nodes]) ("not", node) ("lit", Condition) ("true",) ("false",)
Node = tuple[Any, ...]

KEYWORDS = (
    "and", "bool", "equals", "exists", "geoBoundingBox", "geoDistance", "geoDistanceRange",
    "geoPolygon", "ids", "in", "missing", "not", "nothing", "or", "range", "regexp",
)
UNSUPPORTED = ("match", "select")
_BOOL = ("must", "must_not", "should", "should_not")
_BBOX = ("top", "left", "bottom", "right")
_FLAGS = set("imsguy")


class FilterError(Exception):
    """Internal: raised with the path, turned into the catalogued error at the entry point."""

    def __init__(self, message: str, keyword: str, path: str) -> None:
        super().__init__(message)
        self.message = message
        self.keyword = keyword
        self.path = path


def standardize(filter_: Any) -> Node:
    """The filter as a tree; raises the gateway's 400 error naming the faulty path."""
    try:
        return _standardize(filter_, "")
    except FilterError as exc:
        text = f'"{exc.path}": {exc.message}' if exc.path else exc.message
        error = errors.get("api.assert.koncorde_dsl_error", text)
        error.path = exc.path  # type: ignore[attr-defined]
        error.keyword = exc.keyword  # type: ignore[attr-defined]
        raise error from None


# JavaScript escapes RE2 spells differently (node's re2 translates them the same way)
_JS_ESCAPES = re.compile(
    r"(?<!\\)((?:\\\\)*)\\(?:u\{([0-9a-fA-F]+)\}|u([0-9a-fA-F]{4})|c([A-Za-z]))")


def _translate(match: re.Match[str]) -> str:
    code = match.group(2) or match.group(3)
    if code is None:
        code = format(ord(match.group(4)) & 31, "x")
    return f"{match.group(1)}\\x{{{code}}}"


def compile_regexp(pattern: str, flags: str) -> Any:
    """The compiled expression (RE2 when available); raises ValueError when it cannot compile."""
    inline = "".join(sorted(set(flags) & set("ims")))
    source = f"(?{inline}){pattern}" if inline else pattern
    if _re2 is not None:
        source = _JS_ESCAPES.sub(_translate, source)
        try:
            return _re2.compile(source, _RE2_OPTIONS)
        except Exception as exc:  # re2 raises its own error type
            raise ValueError(_message(exc)) from None
    try:
        return re.compile(source)
    except re.error as exc:
        raise ValueError(str(exc)) from None


def _message(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def _join(path: str, leaf: str) -> str:
    return f"{path}.{leaf}" if path else leaf


def _fail(message: str, keyword: str, path: str) -> NoReturn:
    raise FilterError(message, keyword, path)


MAX_DEPTH = 100  # path segments: every level of operands adds at least one


def _standardize(filter_: Any, path: str) -> Node:
    if filter_ is None or filter_ == {}:
        return ("true",)
    if path.count(".") > MAX_DEPTH:
        _fail("the filter is nested too deeply", "", path)
    if not isinstance(filter_, dict):
        _fail("a filter must be an object", "", path)
    if len(filter_) > 1:
        _fail(
            "Invalid filter syntax. Filters must have one keyword only "
            f"(got: {','.join(filter_)})", "", path)
    keyword = next(iter(filter_))
    where = _join(path, keyword)
    if keyword in UNSUPPORTED:
        _fail(f'the keyword "{keyword}" is not supported', keyword, where)
    handler = _HANDLERS.get(keyword)
    if handler is None:
        _fail("unknown keyword", keyword, where)
    return handler(filter_[keyword], where)


def _object(value: Any, keyword: str, path: str, *, properties: int | None = None,
            non_empty: bool = False, required: tuple[str, ...] = (),
            allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail("must be an object", keyword, path)
    if non_empty and not value:
        _fail("must be a non-empty object", keyword, path)
    if properties is not None and len(value) != properties:
        plural = "property" if properties == 1 else "properties"
        _fail(f"expected object to have exactly {properties} {plural}, got {len(value)}",
              keyword, path)
    for name in required:
        if name not in value:
            _fail(f'the property "{name}" is missing', keyword, path)
    if allowed is not None:
        for name in value:
            if name not in allowed:
                _fail(f'"{name}" is not an allowed attribute (allowed: {",".join(allowed)})',
                      keyword, path)
    return value


def _string(value: Any, keyword: str, path: str) -> str:
    if not isinstance(value, str):
        _fail("must be a string", keyword, path)
    if not value:
        _fail("cannot be empty", keyword, path)
    return value


def _array(value: Any, keyword: str, path: str, *, non_empty: bool = False,
           of_strings: bool = False) -> list[Any]:
    if not isinstance(value, list):
        _fail("must be an array", keyword, path)
    if non_empty and not value:
        _fail("cannot be empty", keyword, path)
    if of_strings and not all(isinstance(item, str) for item in value):
        _fail('must hold only values of type "string"', keyword, path)
    return value


def _equals(body: Any, path: str) -> Node:
    body = _object(body, "equals", path, properties=1)
    field, value = next(iter(body.items()))
    if not is_scalar(value):
        _fail("must either be a string, a number, a boolean, or null", "equals",
              _join(path, field))
    return ("lit", C.equals(field, value))


_ARRAY_FIELD = re.compile(r"(.*?[^\\])\[(.*)\]", re.DOTALL)


def _field_syntax(text: str, keyword: str, path: str) -> C.Condition:
    """`a.b.c` (a path) or `a.b["value"]` (a value in the array a.b)."""
    match = _ARRAY_FIELD.fullmatch(text)
    field, array, value = text, False, None
    if match:
        field, raw = match.group(1), match.group(2)
        array = True
        try:
            value = parse_json_strict(raw)
        except ValueError:
            _fail(f'contains an invalid array value ("{raw}")', keyword, path)
    field = re.sub(r"\\([\[\]])", r"\1", field)
    return C.exists(field, array, value)


def _exists(body: Any, path: str, keyword: str = "exists") -> Node:
    if isinstance(body, str):
        if not body:
            _fail("cannot test empty field name", keyword, path)
        return ("lit", _field_syntax(body, keyword, path))
    body = _object(body, keyword, path, properties=1, required=("field",))
    where = _join(path, "field")
    return ("lit", _field_syntax(_string(body["field"], keyword, where), keyword, where))


def _missing(body: Any, path: str) -> Node:
    return ("not", _exists(body, path, "missing"))


def _ids(body: Any, path: str) -> Node:
    body = _object(body, "ids", path, properties=1, required=("values",))
    values = _array(body["values"], "ids", _join(path, "values"), non_empty=True, of_strings=True)
    return ("or", [("lit", C.equals("_id", value)) for value in values])


def _in(body: Any, path: str) -> Node:
    body = _object(body, "in", path, properties=1)
    field, values = next(iter(body.items()))
    _array(values, "in", _join(path, field), non_empty=True, of_strings=True)
    return ("or", [("lit", C.equals(field, value)) for value in values])


def _range(body: Any, path: str) -> Node:
    body = _object(body, "range", path, properties=1)
    field, bounds = next(iter(body.items()))
    where = _join(path, field)
    bounds = _object(bounds, "range", where, non_empty=True, allowed=("gt", "gte", "lt", "lte"))
    low, high = -math.inf, math.inf
    has_low = has_high = False
    for name, value in bounds.items():
        if not is_number(value) or math.isnan(value):
            _fail("must be a number", "range", _join(where, name))
        if name in ("lt", "lte"):
            if has_high:
                _fail("only 1 upper boundary allowed", "range", where)
            has_high, high = True, value
        else:
            if has_low:
                _fail("only 1 lower boundary allowed", "range", where)
            has_low, low = True, value
    if high <= low:
        _fail("lower boundary must be strictly inferior to the upper one", "range", where)
    return ("lit", C.range_(field, bounds))


def _regexp(body: Any, path: str) -> Node:
    body = _object(body, "regexp", path, properties=1)
    field, spec = next(iter(body.items()))
    where = _join(path, field)
    flags = ""
    if isinstance(spec, str):
        pattern = spec
    elif isinstance(spec, dict):
        _object(spec, "regexp", where, non_empty=True, required=("value",),
                allowed=("flags", "value"))
        pattern = spec["value"]
        if not isinstance(pattern, str):
            _fail("must be a string", "regexp", _join(where, "value"))
        if spec.get("flags"):
            flags = _string(spec["flags"], "regexp", _join(where, "flags"))
            unknown = sorted(set(flags) - _FLAGS)
            if unknown or len(set(flags)) != len(flags):
                _fail(f'invalid flags "{flags}"', "regexp", _join(where, "flags"))
    else:
        _fail("must be either a string or a non-empty object", "regexp", where)
    try:
        compiled = compile_regexp(pattern, flags)
    except ValueError as exc:
        _fail(f'cannot parse regexp expression "/{pattern}/{flags}" ({exc})', "regexp", where)
    return ("lit", C.regexp(field, pattern, flags, compiled))


def _geo_bounding_box(body: Any, path: str) -> Node:
    body = _object(body, "geoBoundingBox", path, properties=1)
    field, spec = next(iter(body.items()))
    where = _join(path, field)
    if not isinstance(spec, dict):
        _fail("unrecognized geo-point format", "geoBoundingBox", where)
    bbox = geo.camel_case(spec)
    found: dict[str, float] = {}
    if all(isinstance(bbox.get(name), str) or is_number(bbox.get(name)) for name in _BBOX):
        for name in _BBOX:
            number = parse_float(bbox[name])
            if math.isnan(number):
                _fail("unrecognized geoBoundingBox format", "geoBoundingBox", where)
            found[name] = number
    elif bbox.get("topLeft") and bbox.get("bottomRight"):
        top_left = geo.convert_geopoint(bbox["topLeft"])
        bottom_right = geo.convert_geopoint(bbox["bottomRight"])
        if top_left is not None and bottom_right is not None:
            found = {"top": top_left[0], "left": top_left[1],
                     "bottom": bottom_right[0], "right": bottom_right[1]}
    if len(found) != 4:
        _fail("unrecognized geo-point format", "geoBoundingBox", where)
    if not found["bottom"] < found["top"]:
        _fail("the bottom latitude must be below the top one", "geoBoundingBox", where)
    if not found["left"] < found["right"]:
        _fail("the left longitude must be west of the right one", "geoBoundingBox", where)
    shape = geo.box(found["top"], found["left"], found["bottom"], found["right"])
    return ("lit", C.geospatial("geoBoundingBox", field, found, shape))


def _distance(value: Any, keyword: str, path: str) -> float:
    text = _string(value, keyword, path)
    try:
        return geo.convert_distance(text)
    except ValueError as exc:
        _fail(str(exc), keyword, path)


def _point(value: Any, keyword: str, path: str) -> tuple[float, float]:
    point = geo.convert_geopoint(value)
    if point is None:
        _fail("unrecognized point format", keyword, path)
    return point


def _geo_distance(body: Any, path: str) -> Node:
    body = _object(body, "geoDistance", path, properties=2, required=("distance",))
    radius = _distance(body["distance"], "geoDistance", _join(path, "distance"))
    field = next(name for name in body if name != "distance")
    lat, lon = _point(body[field], "geoDistance", _join(path, field))
    description = {"distance": radius, "lat": lat, "lon": lon}
    return ("lit", C.geospatial("geoDistance", field, description, geo.circle(lat, lon, radius)))


def _geo_distance_range(body: Any, path: str) -> Node:
    body = _object(body, "geoDistanceRange", path, properties=3, required=("from", "to"))
    inner = _distance(body["from"], "geoDistanceRange", _join(path, "from"))
    outer = _distance(body["to"], "geoDistanceRange", _join(path, "to"))
    if inner >= outer:
        _fail("inner radius must be smaller than outer radius", "geoDistanceRange", path)
    field = next(name for name in body if name not in ("from", "to"))
    lat, lon = _point(body[field], "geoDistanceRange", _join(path, field))
    description = {"from": inner, "lat": lat, "lon": lon, "to": outer}
    shape = geo.annulus(lat, lon, inner, outer)
    return ("lit", C.geospatial("geoDistanceRange", field, description, shape))


def _geo_polygon(body: Any, path: str) -> Node:
    body = _object(body, "geoPolygon", path, properties=1)
    field, spec = next(iter(body.items()))
    where = _join(path, field)
    spec = _object(spec, "geoPolygon", where, properties=1, required=("points",))
    points_path = _join(where, "points")
    raw = _array(spec["points"], "geoPolygon", points_path)
    if len(raw) < 3:
        _fail("at least 3 points are required to build a polygon", "geoPolygon", points_path)
    points = []
    for i, item in enumerate(raw):
        point = geo.convert_geopoint(item)
        if point is None:
            _fail("unrecognized point format", "geoPolygon", f"{points_path}[{i}]")
        points.append(point)
    description = [list(point) for point in points]
    return ("lit", C.geospatial("geoPolygon", field, description, geo.polygon(points)))


def _children(body: Any, keyword: str, path: str) -> list[Node]:
    items = _array(body, keyword, path, non_empty=True)
    out = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if not isinstance(item, dict) or not item:
            _fail("can only contain non-empty objects", keyword, where)
        out.append(_standardize(item, where))
    return out


def _and(body: Any, path: str) -> Node:
    return ("and", _children(body, "and", path))


def _or(body: Any, path: str) -> Node:
    return ("or", _children(body, "or", path))


def _not(body: Any, path: str) -> Node:
    _object(body, "not", path, properties=1)
    return ("not", _standardize(body, path))


def _bool(body: Any, path: str) -> Node:
    body = _object(body, "bool", path, non_empty=True, allowed=_BOOL)
    parts: list[Node] = []
    for name in _BOOL:
        if name not in body:
            continue
        value = body[name]
        where = _join(path, name)
        if name == "must" and isinstance(value, dict):
            value = [value]  # Koncorde accepts one object for must
        children = _children(value, "bool", where)
        if name == "must":
            parts.extend(children)
        elif name == "must_not":
            parts.append(("not", ("or", children)))
        elif name == "should":
            parts.append(("or", children))
        else:
            parts.append(("not", ("and", children)))
    return ("and", parts)


def _nothing(body: Any, path: str) -> Node:
    return ("false",)


_HANDLERS: dict[str, Callable[[Any, str], Node]] = {
    "and": _and, "bool": _bool, "equals": _equals, "exists": _exists,
    "geoBoundingBox": _geo_bounding_box, "geoDistance": _geo_distance,
    "geoDistanceRange": _geo_distance_range, "geoPolygon": _geo_polygon, "ids": _ids, "in": _in,
    "missing": _missing, "not": _not, "nothing": _nothing, "or": _or, "range": _range,
    "regexp": _regexp,
}
