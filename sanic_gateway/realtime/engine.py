"""The filter engine: rooms registered per index/collection, documents matched through indexes.

Each condition is stored once per collection and indexed by keyword and field (hash maps for
equals and array values, an interval tree for range, compiled expressions for regexp, a grid of
cells for geo). A document is flattened once, the indexes give the conditions it satisfies, and
a counter per conjunction ("subfilter") tells which are complete; a negated literal is satisfied
unless its condition matched. No filter is ever evaluated by walking its tree.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from .. import errors
from . import conditions as C
from .geo import GeoIndex, convert_geopoint
from .normalize import Conjunction, count_conditions, from_json, to_dnf, to_json
from .ranges import RangeIndex
from .standardize import FilterError, standardize
from .values import (
    FALSE_KEY,
    MISSING,
    TRUE_KEY,
    flatten,
    js_string,
    truthy,
    utf8_safe,
)


@dataclass(frozen=True)
class Normalized:
    """A validated filter in normal form, with the room id it gets in its index/collection."""

    index: str
    collection: str
    id: str
    filter: list[list[dict[str, Any]]]
    terms: tuple[Conjunction, ...] = field(repr=False, compare=False)


_NO_ROOMS: frozenset[str] = frozenset()


class _Condition:
    """A stored condition and the subfilters using it, by role.

    `rooms` are the rooms of the subfilter made of this literal alone (matched as soon as the
    condition is); `complex` says whether other subfilters use it, positively or negated.
    """

    __slots__ = ("complex", "cond", "high", "key", "low", "multi", "neg", "rooms", "single")

    def __init__(self, cond: C.Condition) -> None:
        self.cond = cond
        self.key = cond.key
        self.low = cond.low
        self.high = cond.high
        self.single: _Subfilter | None = None  # the subfilter made of this literal alone
        self.rooms: set[str] | frozenset[str] = _NO_ROOMS
        self.multi: set[_Subfilter] = set()  # subfilters holding it positively with others
        self.neg: set[_Subfilter] = set()  # subfilters holding it negated
        self.complex = False

    def update(self) -> None:
        self.rooms = self.single.rooms if self.single is not None else _NO_ROOMS
        self.complex = bool(self.multi or self.neg)

    def unused(self) -> bool:
        return self.single is None and not self.multi and not self.neg


class _Subfilter:
    __slots__ = ("has_negative", "positives", "rooms", "term")

    def __init__(self, term: Conjunction) -> None:
        self.term = term
        self.positives = sum(1 for _, negated in term if not negated)
        self.has_negative = self.positives != len(term)
        self.rooms: set[str] = set()


class _Exists:
    __slots__ = ("plain", "values")

    def __init__(self) -> None:
        self.plain: _Condition | None = None
        self.values: dict[Any, _Condition] = {}


class _Collection:
    """Indexes of one index/collection pair."""

    def __init__(self) -> None:
        self.conditions: dict[str, _Condition] = {}
        self.subfilters: dict[Conjunction, _Subfilter] = {}
        self.equals: dict[str, dict[Any, _Condition]] = {}
        self.exists: dict[str, _Exists] = {}
        self.ranges: dict[str, RangeIndex] = {}
        self.regexps: dict[str, dict[str, _Condition]] = {}
        self.geo: dict[str, GeoIndex] = {}
        self.always: set[_Subfilter] = set()  # subfilters without positive literal
        self.rooms = 0

    # -- storing

    def add(self, room_id: str, terms: tuple[Conjunction, ...]) -> None:
        self.rooms += 1
        for term in terms:
            sub = self.subfilters.get(term)
            if sub is None:
                sub = self.subfilters[term] = _Subfilter(term)
                self._link(sub)
            sub.rooms.add(room_id)

    def _link(self, sub: _Subfilter) -> None:
        if sub.positives == 0:
            self.always.add(sub)
        for cond, negated in sub.term:
            stored = self.conditions.get(cond.key)
            if stored is None:
                stored = self.conditions[cond.key] = _Condition(cond)
                self._index(stored)
            if negated:
                stored.neg.add(sub)
            elif len(sub.term) == 1:
                stored.single = sub
            else:
                stored.multi.add(sub)
            stored.update()

    def _index(self, stored: _Condition) -> None:
        cond = stored.cond
        kw, name = cond.keyword, cond.field
        if kw == "equals":
            self.equals.setdefault(name, {})[cond.value] = stored
        elif kw == "exists":
            entry = self.exists.setdefault(name, _Exists())
            array, value = cond.value
            if not array:
                entry.plain = stored
            else:
                entry.values[_array_key(value)] = stored
        elif kw == "range":
            self.ranges.setdefault(name, RangeIndex()).add(stored)
        elif kw == "regexp":
            self.regexps.setdefault(name, {})[cond.key] = stored
        elif kw == "geospatial":
            self.geo.setdefault(name, GeoIndex()).add(stored)

    def discard(self, room_id: str, terms: tuple[Conjunction, ...]) -> None:
        self.rooms -= 1
        for term in terms:
            sub = self.subfilters.get(term)
            if sub is None:
                continue
            sub.rooms.discard(room_id)
            if not sub.rooms:
                del self.subfilters[term]
                self._unlink(sub)

    def _unlink(self, sub: _Subfilter) -> None:
        self.always.discard(sub)
        for cond, _ in sub.term:
            stored = self.conditions[cond.key]
            if stored.single is sub:
                stored.single = None
            stored.multi.discard(sub)
            stored.neg.discard(sub)
            stored.update()
            if stored.unused():
                del self.conditions[cond.key]
                self._unindex(stored)

    def _unindex(self, stored: _Condition) -> None:
        cond = stored.cond
        kw, name = cond.keyword, cond.field
        if kw == "equals":
            _drop(self.equals, name, cond.value)
        elif kw == "exists":
            entry = self.exists[name]
            array, value = cond.value
            if not array:
                entry.plain = None
            else:
                entry.values.pop(_array_key(value), None)
            if entry.plain is None and not entry.values:
                del self.exists[name]
        elif kw == "range":
            index = self.ranges[name]
            index.remove(stored)
            if not index:
                del self.ranges[name]
        elif kw == "regexp":
            _drop(self.regexps, name, cond.key)
        elif kw == "geospatial":
            shapes = self.geo[name]
            shapes.remove(stored)
            if not shapes:
                del self.geo[name]

    # -- matching

    def match(self, doc: dict[str, Any]) -> list[str]:
        hits: list[_Condition] = []  # conditions the document satisfies
        kills: list[_Condition] = []  # conditions false, whose negation is false as well

        get = doc.get
        for name, table in self.equals.items():
            value = get(name, MISSING)  # MISSING is never a key
            if value.__class__ is bool:
                value = TRUE_KEY if value else FALSE_KEY
            try:
                stored = table.get(value)
            except TypeError:  # an object or an array never equals a scalar
                continue
            if stored is not None:
                hits.append(stored)

        if self.exists:
            self._match_exists(doc, hits)
        if self.ranges:
            for name, index in self.ranges.items():
                value = get(name)
                if value.__class__ is int or value.__class__ is float:
                    index.query(value, hits)  # removed conditions come with no rooms: harmless
        if self.regexps:
            self._match_regexps(doc, hits, kills)
        if self.geo:
            self._match_geo(doc, hits, kills)

        if not hits and not kills and not self.always:
            return []
        rooms: set[str] = set().union(*[stored.rooms for stored in hits])
        complex_hits = [stored for stored in hits if stored.complex]
        if not complex_hits and not kills and not self.always:
            return list(rooms)
        # one count per subfilter of how many of its positive literals hold (counted in C)
        counts = Counter(chain.from_iterable([stored.multi for stored in complex_hits]))
        killed: set[_Subfilter] = set().union(
            *[stored.neg for stored in complex_hits], *[stored.neg for stored in kills])
        for sub, count in counts.items():
            if count == sub.positives and not (sub.has_negative and sub in killed):
                rooms.update(sub.rooms)
        if self.always:
            for sub in self.always:
                if sub not in killed:
                    rooms.update(sub.rooms)
        return list(rooms)

    def _match_exists(self, doc: dict[str, Any], hits: list[Any]) -> None:
        exists = self.exists
        if len(doc) <= len(exists):
            names = [name for name in doc if name in exists]
        else:
            names = [name for name in exists if name in doc]
        for name in names:
            entry = exists[name]
            if entry.plain is not None:
                hits.append(entry.plain)
            value = doc[name]
            if entry.values and value.__class__ is list:
                seen = set()
                for item in value:
                    key = _array_key(item)
                    if key is None or key in seen:
                        continue
                    seen.add(key)
                    stored = entry.values.get(key)
                    if stored is not None:
                        hits.append(stored)

    def _match_regexps(self, doc: dict[str, Any], hits: list[Any], kills: list[Any]) -> None:
        for name, table in self.regexps.items():
            value = doc.get(name, MISSING)
            if value is MISSING:
                continue
            if isinstance(value, str):
                try:
                    found = [s for s in table.values() if s.cond.regexp.search(value)]
                except UnicodeEncodeError:  # lone surrogates: RE2 reads UTF-8 only
                    text = utf8_safe(value)
                    found = [s for s in table.values() if s.cond.regexp.search(text)]
                hits.extend(found)
            else:
                # Koncorde's `not regexp` tests the string form of a non-string value.
                text = utf8_safe(js_string(value))
                for stored in table.values():
                    if stored.neg and stored.cond.regexp.search(text):
                        kills.append(stored)

    def _match_geo(self, doc: dict[str, Any], hits: list[Any], kills: list[Any]) -> None:
        for name, shapes in self.geo.items():
            value = doc.get(name, MISSING)
            if not truthy(value):
                continue
            point = convert_geopoint(value)
            if point is None:
                # an unreadable point satisfies neither a geo condition nor its negation
                kills.extend(shapes.items.values())
                continue
            shapes.query(point[0], point[1], hits)


def _array_key(value: Any) -> Any:
    """Key of an array element; None for objects and arrays, which never equal anything."""
    cls = value.__class__
    if cls is bool:
        return TRUE_KEY if value else FALSE_KEY
    if cls is dict or cls is list:
        return None
    if value is None:
        return _NULL
    return value


_NULL = object()


def _drop(tables: dict[str, dict[Any, Any]], name: str, key: Any) -> None:
    table = tables[name]
    table.pop(key, None)
    if not table:
        del tables[name]


class Engine:
    """Validate, normalize, register and match Koncorde filters, per index and collection.

    `max_conditions` bounds the conditions a filter may hold (Koncorde's default: 50),
    `max_terms` the conjunctions of its normal form. `seed` (bytes) keys the room ids; without
    it ids are plain SHA-256 hashes, equal on every node.
    """

    def __init__(self, *, max_conditions: int = 50, max_terms: int = 256,
                 seed: bytes | None = None) -> None:
        self.max_conditions = max_conditions
        self.max_terms = max_terms
        self.seed = seed
        self._collections: dict[tuple[str, str], _Collection] = {}
        self._rooms: dict[str, Normalized] = {}

    # -- filters

    def validate(self, filter_: Any) -> None:
        """Raise `api.assert.koncorde_dsl_error` (400) naming the path of the fault, if any."""
        self._dnf(filter_)

    def normalize(self, index: str, collection: str, filter_: Any) -> Normalized:
        """The normal form and room id of a filter, without registering it."""
        return self._normalized(index, collection, self._dnf(filter_))

    def load(self, index: str, collection: str, form: list[list[dict[str, Any]]]) -> Normalized:
        """A normal form received from another node (`Normalized.filter`), ready for `store`.

        Its room id is the one the other node computed (with the same seed).
        """
        try:
            terms = from_json(form)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise ValueError(f"not a normal form: {exc}") from None
        return self._normalized(index, collection, terms)

    def _normalized(self, index: str, collection: str, terms: list[Conjunction]) -> Normalized:
        form = to_json(terms)
        payload = C.canonical({"collection": collection, "filter": form, "index": index})
        if self.seed is None:
            room_id = hashlib.sha256(payload.encode()).hexdigest()
        else:
            room_id = hmac.new(self.seed, payload.encode(), hashlib.sha256).hexdigest()
        return Normalized(index, collection, room_id, form, tuple(terms))

    def _dnf(self, filter_: Any) -> list[Conjunction]:
        tree = standardize(filter_)
        try:
            count = count_conditions(tree)
            if self.max_conditions and count > self.max_conditions:
                raise FilterError(
                    "Filter too complex: exceeds the configured maximum number of conditions "
                    f"(conditions: {count}, max: {self.max_conditions})", "", "")
            return to_dnf(tree, self.max_terms)
        except FilterError as exc:
            raise errors.get("api.assert.koncorde_dsl_error", exc.message) from None

    # -- rooms

    def register(self, index: str, collection: str, filter_: Any) -> str:
        """Store a filter (once: equivalent filters share the room) and return its room id."""
        return self.store(self.normalize(index, collection, filter_))

    def store(self, normalized: Normalized) -> str:
        if normalized.id not in self._rooms:
            key = (normalized.index, normalized.collection)
            coll = self._collections.get(key)
            if coll is None:
                coll = self._collections[key] = _Collection()
            coll.add(normalized.id, normalized.terms)
            self._rooms[normalized.id] = normalized
        return normalized.id

    def remove(self, room_id: str) -> bool:
        """Forget a room; False if it was unknown."""
        normalized = self._rooms.pop(room_id, None)
        if normalized is None:
            return False
        key = (normalized.index, normalized.collection)
        coll = self._collections[key]
        coll.discard(room_id, normalized.terms)
        if coll.rooms == 0:
            del self._collections[key]
        return True

    def exists(self, room_id: str) -> bool:
        return room_id in self._rooms

    has = exists
    __contains__ = exists

    def get(self, room_id: str) -> Normalized | None:
        return self._rooms.get(room_id)

    def __len__(self) -> int:
        return len(self._rooms)

    def rooms(self, index: str | None = None, collection: str | None = None) -> list[str]:
        """Room ids, optionally only those of one index (and collection)."""
        return [
            room_id for room_id, n in self._rooms.items()
            if (index is None or n.index == index)
            and (collection is None or n.collection == collection)
        ]

    def counts(self) -> dict[str, int]:
        """Sizes of the shared structures (rooms, conjunctions, distinct conditions)."""
        return {
            "rooms": len(self._rooms),
            "collections": len(self._collections),
            "subfilters": sum(len(c.subfilters) for c in self._collections.values()),
            "conditions": sum(len(c.conditions) for c in self._collections.values()),
        }

    # -- matching

    def test(self, index: str, collection: str, document: dict[str, Any],
             id: str | None = None) -> list[str]:
        """Room ids of `index/collection` whose filter matches the document.

        `id`, when given, is the document's `_id` (what the `ids` keyword tests).
        """
        coll = self._collections.get((index, collection))
        if coll is None or not isinstance(document, dict):
            return []
        doc = flatten(document)
        if id is not None:
            doc = dict(doc)
            doc["_id"] = id
        return coll.match(doc)


__all__ = ["Engine", "Normalized"]
