"""Searching users, profiles and roles as Kuzzle does: its two query languages, the mappings
that say which fields can be searched, and scroll cursors.

Mappings are kept in storage in Elasticsearch's format (Kuzzle's defaults until updated). A
query in Kuzzle's default language (Elasticsearch's) finds values only in the fields its
collection's mapping declares (in any with `dynamic: "true"`): as in Kuzzle, a clause on another
field matches nothing, and sorting on one is refused. Koncorde filters (`lang=koncorde`) are not
restricted.

A scroll cursor is a storage entry expiring after its duration (at most MAX_SCROLL): it keeps
the query and the position, and each `scroll*` call reads the next page of live data (not a
snapshot, as Elasticsearch's is). It is gone once the last page is read. At most MAX_CURSORS
live at once.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from .. import errors
from ..storage import Storage
from ..storage.es_query import looks_like_koncorde, translate

MAPPINGS = "gateway.mappings"
SCROLLS = "gateway.scrolls"
MAX_SCROLL = 60.0  # seconds: Kuzzle's default maxScrollDuration ("1m")
MAX_CURSORS = 10_000  # live cursors at once (all users); beyond, 503 until some expire
_TTL_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 0.001}
_DYNAMIC = ("true", "false", "strict")
_FIELD_KEYS = frozenset({"type", "properties", "dynamic", "fields", "index", "ignore_above",
                         "null_value", "format", "analyzer"})

DEFAULT_MAPPINGS: dict[str, dict[str, Any]] = {  # Kuzzle's
    "users": {"dynamic": "false", "properties": {"profileIds": {"type": "keyword"}}},
    "profiles": {"dynamic": "false", "properties": {
        "tags": {"type": "keyword"},
        "policies": {"properties": {
            "roleId": {"type": "keyword"},
            "restrictedTo": {"type": "nested", "properties": {
                "index": {"type": "keyword"}, "collections": {"type": "keyword"}}}}}}},
    "roles": {"dynamic": "false", "properties": {
        "tags": {"type": "keyword"},
        "controllers": {"dynamic": "false", "properties": {}}}},
}


async def get_mapping(storage: Storage, collection: str) -> dict[str, Any]:
    """`{dynamic, _meta?, properties}` of a security collection."""
    try:
        return (await storage.get(MAPPINGS, collection))["_source"]
    except errors.NotFoundError:
        return copy.deepcopy(DEFAULT_MAPPINGS[collection])


async def update_mapping(storage: Storage, collection: str, body: Any) -> dict[str, Any]:
    """Merge new properties as Elasticsearch does: fields are added, never retyped."""
    if not isinstance(body, dict) or not body:
        raise errors.get("api.assert.body_required")
    for key in body:
        if key not in ("properties", "dynamic", "_meta"):
            raise errors.get("services.storage.invalid_mapping", key,
                             " Allowed: properties, dynamic, _meta.")
    dynamic = body.get("dynamic")
    if dynamic is not None and str(dynamic).lower() not in _DYNAMIC:
        raise errors.get("services.storage.invalid_mapping", "dynamic",
                         f' Expected one of: {", ".join(_DYNAMIC)}.')
    current = await get_mapping(storage, collection)
    properties = body.get("properties", {})
    _check_properties(properties, "properties")
    merged = _merge(current.get("properties", {}), properties, "")
    out: dict[str, Any] = {"dynamic": str(dynamic).lower() if dynamic is not None
                           else current.get("dynamic", "false"), "properties": merged}
    meta = body.get("_meta", current.get("_meta"))
    if meta is not None:
        if not isinstance(meta, dict):
            raise errors.get("services.storage.invalid_mapping", "_meta", " Expected an object.")
        out["_meta"] = meta
    await storage.create_or_replace(MAPPINGS, collection, out)
    return out


def _check_properties(properties: Any, where: str, depth: int = 0) -> None:
    if not isinstance(properties, dict) or depth > 8:
        raise errors.get("services.storage.invalid_mapping", where, " Expected an object "
                         "of fields (at most 8 levels).")
    for name, spec in properties.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise errors.get("services.storage.invalid_mapping", f"{where}.{name}",
                             " Field names are letters, digits, '_' and '-'.")
        if not isinstance(spec, dict) or set(spec) - _FIELD_KEYS or not (
                isinstance(spec.get("type"), str) or "properties" in spec):
            raise errors.get("services.storage.invalid_mapping", f"{where}.{name}",
                             " Expected {type: ...} or {properties: {...}}.")
        if "properties" in spec:
            _check_properties(spec["properties"], f"{where}.{name}.properties", depth + 1)


def _merge(current: dict[str, Any], new: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = copy.deepcopy(current)
    for name, spec in new.items():
        old = out.get(name)
        if old is None:
            out[name] = copy.deepcopy(spec)
            continue
        if old.get("type", "object") != spec.get("type", "object"):
            raise errors.get("services.storage.cannot_change_mapping", prefix + name)
        if "properties" in spec:
            out[name] = {**old, "properties": _merge(old.get("properties", {}),
                                                     spec["properties"], f"{prefix}{name}.")}
    return out


def mapped_fields(mapping: dict[str, Any]) -> set[str] | None:
    """The dotted names a query may use; None: any (dynamic mapping)."""
    if str(mapping.get("dynamic", "false")).lower() == "true":
        return None
    found: set[str] = set()
    stack = [("", mapping.get("properties") or {})]
    while stack:
        prefix, properties = stack.pop()
        for name, spec in properties.items():
            found.add(prefix + name)
            if isinstance(spec, dict) and isinstance(spec.get("properties"), dict):
                stack.append((f"{prefix}{name}.", spec["properties"]))
    return found


def lang_of(args: dict[str, Any]) -> str | None:
    """The `lang` argument: "elasticsearch" (the default), "koncorde", or None if absent."""
    lang = args.get("lang")
    if lang is None:
        return None
    if lang not in ("elasticsearch", "koncorde"):
        raise errors.get("api.assert.invalid_argument", "lang",
                         '"elasticsearch" or "koncorde"')
    return lang


async def compile_query(storage: Storage, collection: str, query: Any, sort: Any,
                        lang: str | None) -> Any:
    """The query to give storage.search: a Koncorde filter as it is, an Elasticsearch query
    translated under the mapping. Without `lang`, a filter whose top keyword only Koncorde
    has (`equals`, `and`, ...) is taken as Koncorde, as earlier gateway versions did."""
    if lang == "koncorde" or (lang is None and looks_like_koncorde(query)):
        return query
    if query is not None and not isinstance(query, dict):
        raise errors.get("api.assert.invalid_type", "body.query", "object")
    fields = mapped_fields(await get_mapping(storage, collection))
    allowed = None if fields is None else fields.__contains__
    for key in _sort_fields(sort):
        if allowed is not None and key != "_id" and not allowed(key):
            raise errors.get("services.storage.invalid_search_query",
                             f"sort: no mapping found for field {key!r}")
    return translate(query, allowed)


def _sort_fields(sort: Any) -> list[str]:
    items = sort if isinstance(sort, list) else [sort] if sort is not None else []
    return [item if isinstance(item, str) else next(iter(item)) for item in items
            if isinstance(item, str) or (isinstance(item, dict) and len(item) == 1)]


def scroll_ttl(value: Any) -> float:
    """A duration in Elasticsearch's syntax ("30s", "1m", "500ms", or milliseconds)."""
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) \
        else ""
    match = _TTL_RE.fullmatch(text)
    if not match:
        raise errors.get("api.assert.invalid_argument", "scroll",
                         'a duration such as "30s", "1m" or "500ms"')
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_SCROLL:
        raise errors.get("services.storage.scroll_duration_too_great", text)
    if seconds <= 0:
        raise errors.get("api.assert.invalid_argument", "scroll", "a positive duration")
    return seconds


async def open_scroll(storage: Storage, state: dict[str, Any], ttl: float) -> str | None:
    """A cursor for the pages after the first (None when the first page holds all)."""
    if state["offset"] >= state["total"]:
        return None
    if await storage.count(SCROLLS) >= MAX_CURSORS:
        raise errors.get("api.process.overloaded")
    scroll_id = uuid.uuid4().hex
    await storage.create(SCROLLS, {**state, "ttl": ttl}, id=scroll_id, ttl=ttl)
    return scroll_id


async def take_scroll(storage: Storage, scroll_id: Any, kind: str) -> dict[str, Any]:
    """The cursor's state, taken (so two calls never read one page twice)."""
    if not isinstance(scroll_id, str) or not scroll_id or len(scroll_id) > 64:
        raise errors.get("services.storage.unknown_scroll_id")
    found = await storage.take(SCROLLS, scroll_id)
    if found is None:
        raise errors.get("services.storage.unknown_scroll_id")
    state = found["_source"]
    if state.get("collection") != kind:  # another kind's cursor: left as it was
        await keep_scroll(storage, scroll_id, state)
        raise errors.get("services.storage.unknown_scroll_id")
    return state


async def keep_scroll(storage: Storage, scroll_id: str, state: dict[str, Any]) -> None:
    if state["offset"] < state["total"]:
        await storage.create(SCROLLS, state, id=scroll_id, ttl=state["ttl"])
