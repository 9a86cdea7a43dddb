"""The storage interface shared by both backends, and the filter compiler they both use.

Validation and encoding live here, once, so that SQLite and PostgreSQL accept and reject exactly
the same inputs; a backend only supplies SQL (its `Dialect`) and the few primitives in `Storage`.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

from sanic_gateway import errors

Doc = dict[str, Any]
Scalar = str | int | float | bool | None
# (path, descending) pairs; a None path is the document id.
SortKeys = list[tuple[list[str] | None, bool]]
Rows = list[tuple[str, Any]]

MAX_SIZE = 10_000
# The largest `from`: the largest integer every JSON client reads exactly (and SQL's 64 bits hold).
MAX_FROM = 2**53 - 1
# A filter's nesting (`{"not": {"equals": ...}}` is 2) and its number of clauses (every
# keyword object). Beyond ~30 levels SQLite's parser overflows and beyond ~1000 clauses its
# expression tree does: refused as a bad query (400) rather than met as a storage error (503).
MAX_FILTER_DEPTH = 16
MAX_FILTER_CLAUSES = 256
MAX_ID_LENGTH = 512
# Field names come from API users and end up in SQL (as bound JSON paths): keep them boring.
FIELD_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
COLLECTION_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# A field with a unique index: a top-level key, spliced into DDL, so stricter than FIELD_RE.
UNIQUE_FIELD_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# How often (seconds) a write also purges every expired entry; reads hide them meanwhile.
PURGE_INTERVAL = 60.0

_RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class Dialect(ABC):
    """The SQL of one backend for each filter leaf; it also collects the bound parameters.

    A fresh Dialect is made for each statement: parameters are numbered in the order `bind` is
    called, so the backend binds its own values (collection, now) through it too.
    """

    def __init__(self) -> None:
        self.params: list[Any] = []

    @abstractmethod
    def bind(self, value: Any) -> str:
        """Add a parameter; return its placeholder."""

    @abstractmethod
    def equals(self, path: list[str], value: Scalar) -> str:
        """True when the value at `path` has the same JSON type and value (never NULL)."""

    def in_(self, path: list[str], values: list[Scalar]) -> str:
        """True when `equals` holds for one of `values`; backends bind the list at once."""
        return "(" + " OR ".join(self.equals(path, v) for v in values) + ")"

    @abstractmethod
    def exists(self, path: list[str]) -> str:
        """True when `path` is present (a JSON null counts as present)."""

    @abstractmethod
    def compare(self, path: list[str], op: str, value: str | int | float) -> str:
        """`path <op> value` for a value of the same JSON type (number or string), else false."""

    @abstractmethod
    def ids(self, values: list[str]) -> str:
        """True when the document id is one of `values`."""

    @abstractmethod
    def sort_key(self, path: list[str]) -> list[str]:
        """ORDER BY expressions for the value at `path`, the same order on every backend:
        by type first (numbers, strings, booleans, arrays and objects; null and missing last),
        then by value (strings byte-wise)."""

    true = "1 = 1"
    false = "1 = 0"


def _invalid(what: str) -> errors.GatewayError:
    return errors.get("services.storage.invalid_search_query", what)


def parse_field(name: Any, where: str) -> list[str]:
    """A dotted field name as path segments, or an invalid_search_query error."""
    if not isinstance(name, str) or not FIELD_RE.fullmatch(name):
        raise _invalid(f"{where}: invalid field name {name!r} (letters, digits, '_', '-', '.')")
    parts = name.split(".")
    if any(not part for part in parts):
        raise _invalid(f"{where}: invalid field name {name!r} (empty path segment)")
    return parts


def storable_text(text: str) -> bool:
    """PostgreSQL text and JSONB refuse NUL characters, UTF-8 refuses lone surrogates: refuse
    them on both backends alike."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, str):
        if not storable_text(value):
            raise _invalid(f"{where}: strings cannot hold NUL characters or lone surrogates")
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise _invalid(f"{where}: numbers must be finite")
        # SQLite binds 64-bit integers only; JSON makes huge ones doubles anyway.
        return float(value) if isinstance(value, int) and abs(value) >= 2**63 else value
    raise _invalid(f"{where}: expected a scalar (string, number, boolean or null), "
                   f"got {type(value).__name__}")


def _single(body: Any, keyword: str) -> tuple[str, Any]:
    if not isinstance(body, dict) or len(body) != 1:
        raise _invalid(f'"{keyword}" takes an object with exactly one field')
    return next(iter(body.items()))


def check_filter_size(query: Any) -> None:
    """Refuse a filter nested deeper than MAX_FILTER_DEPTH or with more than MAX_FILTER_CLAUSES
    clauses, before compiling it (iteratively: no recursion on a hostile input)."""
    stack = [(query, 1)]
    clauses = 0
    while stack:
        node, depth = stack.pop()
        clauses += 1
        if clauses > MAX_FILTER_CLAUSES:
            raise _invalid(f"more than {MAX_FILTER_CLAUSES} clauses")
        if depth > MAX_FILTER_DEPTH:
            raise _invalid(f"nested deeper than {MAX_FILTER_DEPTH} levels")
        if not isinstance(node, dict) or len(node) != 1:
            continue
        keyword, body = next(iter(node.items()))
        if keyword in ("and", "or") and isinstance(body, list):
            if len(body) > MAX_FILTER_CLAUSES:
                raise _invalid(f"more than {MAX_FILTER_CLAUSES} clauses")
            stack.extend((sub, depth + 1) for sub in body)
        elif keyword == "not":
            stack.append((body, depth + 1))


def _matchable(value: Any) -> bool:
    """False for a string no document can hold (storage refuses them): it matches nothing."""
    return not isinstance(value, str) or storable_text(value)


def compile_filter(query: Any, dialect: Dialect) -> str:
    """Translate a Koncorde-style filter into a SQL boolean expression (never NULL).

    Values are always bound; field names, already restricted by FIELD_RE, are bound too (as
    JSON paths). Never NULL matters for "not": NOT of a NULL would hide documents.
    """
    check_filter_size(query)
    return _compile(query, dialect)


def _compile(query: Any, dialect: Dialect) -> str:
    if query is None:
        return dialect.true
    if not isinstance(query, dict):
        raise _invalid(f"a filter is an object, got {type(query).__name__}")
    if not query:
        return dialect.true
    if len(query) != 1:
        raise _invalid(f"a filter has exactly one keyword, got {sorted(query)} "
                       '(combine them with "and")')
    keyword, body = next(iter(query.items()))
    if keyword == "equals":
        field, value = _single(body, keyword)
        path = parse_field(field, keyword)
        if not _matchable(value):  # e.g. a NUL in a login name: no match, not an error
            return dialect.false
        return dialect.equals(path, _scalar(value, keyword))
    if keyword == "in":
        field, values = _single(body, keyword)
        path = parse_field(field, keyword)
        if not isinstance(values, list) or not values:
            raise _invalid('"in" takes a non-empty array of values')
        values = [_scalar(v, keyword) for v in values if _matchable(v)]
        return dialect.in_(path, values) if values else dialect.false
    if keyword in ("exists", "missing"):
        if isinstance(body, dict):
            if set(body) != {"field"}:
                raise _invalid(f'"{keyword}" takes a field name or {{"field": name}}')
            body = body["field"]
        sql = dialect.exists(parse_field(body, keyword))
        return sql if keyword == "exists" else f"NOT ({sql})"
    if keyword == "range":
        field, bounds = _single(body, keyword)
        path = parse_field(field, keyword)
        if not isinstance(bounds, dict) or not bounds:
            raise _invalid('"range" takes {field: {gt|gte|lt|lte: value}}')
        parts = []
        for op, value in bounds.items():
            if op not in _RANGE_OPS:
                raise _invalid(f'"range": unknown operator {op!r} (gt, gte, lt, lte)')
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise _invalid('"range" bounds are numbers or strings')
            parts.append(dialect.compare(path, _RANGE_OPS[op], _scalar(value, keyword)))  # type: ignore[arg-type]
        return "(" + " AND ".join(parts) + ")"
    if keyword == "ids":
        if not isinstance(body, dict) or set(body) != {"values"}:
            raise _invalid('"ids" takes {"values": [id, ...]}')
        values = body["values"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _invalid('"ids.values" is an array of strings')
        values = [v for v in values if storable_text(v)]  # others cannot be ids anyway
        return dialect.ids(values) if values else dialect.false
    if keyword in ("and", "or"):
        if not isinstance(body, list) or not body:
            raise _invalid(f'"{keyword}" takes a non-empty array of filters')
        joiner = " AND " if keyword == "and" else " OR "
        return "(" + joiner.join(_compile(f, dialect) for f in body) + ")"
    if keyword == "not":
        if not isinstance(body, dict):
            raise _invalid('"not" takes a filter')
        return f"NOT ({_compile(body, dialect)})"
    raise _invalid(f"unknown keyword {keyword!r}")


def parse_sort(sort: Any) -> SortKeys:
    """`[{"field": "asc"}, "other", {"f": {"order": "desc"}}]` as (path, descending) pairs.

    The path is None for "_id", which sorts on the document id itself.
    """
    if sort is None:
        return []
    if isinstance(sort, str | dict):
        sort = [sort]
    if not isinstance(sort, list):
        raise _bad_sort()
    keys: SortKeys = []
    for item in sort:
        if isinstance(item, str):
            field, order = item, "asc"
        elif isinstance(item, dict) and len(item) == 1:
            field, order = next(iter(item.items()))
            if isinstance(order, dict) and set(order) == {"order"}:
                order = order["order"]
        else:
            raise _bad_sort()
        if not isinstance(order, str) or order.lower() not in ("asc", "desc"):
            raise _bad_sort()
        if not isinstance(field, str) or not FIELD_RE.fullmatch(field) or "" in field.split("."):
            raise _bad_sort()
        keys.append((None if field == "_id" else field.split("."), order.lower() == "desc"))
    return keys


def _bad_sort() -> errors.GatewayError:
    return errors.get("services.storage.invalid_argument", "sort",
                      'a list of "field" or {"field": "asc"|"desc"} (field: letters, digits, '
                      "'_', '-', '.')")


def _bad(name: str, expected: str) -> errors.GatewayError:
    return errors.get("services.storage.invalid_argument", name, expected)


def check_collection(collection: Any) -> str:
    if not isinstance(collection, str) or not COLLECTION_RE.fullmatch(collection):
        raise _bad("collection", "a name made of letters, digits, '_', '-' and '.'")
    return collection


def check_id(id: Any) -> str:
    if not isinstance(id, str) or not id or len(id) > MAX_ID_LENGTH or not storable_text(id):
        raise _bad("_id", f"a non-empty string of at most {MAX_ID_LENGTH} characters "
                          "(no NUL character)")
    return id


def encode_body(body: Any, name: str = "body") -> str:
    """JSON text of an object; NaN and Infinity refused since PostgreSQL's JSONB refuses them."""
    if not isinstance(body, dict):
        raise _bad(name, "an object")
    try:
        text = json.dumps(body, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise _bad(name, f"a JSON-serializable object ({exc})") from exc
    # json.dumps writes NUL as \u0000, which JSONB refuses; a literal "\\u0000" is fine.
    if ("\\u0000" in text and _has_nul(body)) or not storable_text(text):
        raise _bad(name, "an object whose strings hold no NUL character nor lone surrogate")
    return text


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def expiry(ttl: Any) -> float | None:
    """The absolute expiry time (epoch seconds) of a `ttl`, None for no expiry."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0 \
            or not math.isfinite(ttl):
        raise _bad("ttl", "a positive number of seconds")
    return time.time() + ttl


def check_page(from_: Any, size: Any) -> tuple[int, int]:
    if isinstance(from_, bool) or not isinstance(from_, int) or not 0 <= from_ <= MAX_FROM:
        raise _bad("from", f"an integer from 0 to {MAX_FROM}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _bad("size", "a non-negative integer")
    return from_, min(size, MAX_SIZE)


def hit(id: str, source: Any) -> Doc:
    return {"_id": id, "_source": json.loads(source) if isinstance(source, str) else source}


class DuplicateValue(Exception):
    """Raised by a backend primitive when a unique index refuses a write; `index` names it."""

    def __init__(self, index: str | None) -> None:
        super().__init__(index)
        self.index = index


class Transaction:
    """An open transaction: its connection, and a lock so that tasks started inside it
    (which inherit it) never send two statements on that connection at once."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()
        self.active = True


def unique_index_name(table: str, collection: str, field: str) -> str:
    """A stable, valid SQL identifier (at most 63 characters) for a unique index."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{collection}_{field}")[:24]
    digest = uuid.uuid5(uuid.NAMESPACE_OID, f"{table}/{collection}/{field}").hex[:10]
    return f"{re.sub(r'[^A-Za-z0-9_]+', '_', table).strip('_')[:20]}_u_{slug}_{digest}"


def check_unique(collection: str, field: str) -> None:
    check_collection(collection)
    if not isinstance(field, str) or not UNIQUE_FIELD_RE.fullmatch(field):
        raise _bad("field", "a top-level field name: letters, digits and '_'")


class Storage(ABC):
    """A JSON document store in collections; the gateway's only persistence (SPEC 9).

    Public methods validate and encode, then call the backend's `_`-primitives, which get
    checked collection names, ids, JSON text and expiry times. Expired entries are invisible to
    every read and purged lazily (at most every PURGE_INTERVAL seconds, on a write).

    `async with storage.transaction():` makes every storage call of the block (and of tasks it
    starts) one transaction: all of it is written, or none, even if the process dies.
    """

    backend: ClassVar[str]
    dialect: ClassVar[type[Dialect]]

    def __init__(self) -> None:
        self._last_purge = 0.0
        # The transaction of the running task, if any; one variable per storage object.
        self._tx: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar(
            f"storage_tx_{id(self)}", default=None)
        self._unique: dict[str, tuple[str, str]] = {}  # unique index name -> (collection, field)

    def _duplicate(self, exc: DuplicateValue, collection: str) -> errors.GatewayError:
        field = self._unique.get(exc.index or "", (collection, "a unique field"))[1]
        return errors.get("services.storage.duplicate_value", collection, field)

    def _current_tx(self) -> Transaction | None:
        tx = self._tx.get()
        return tx if tx is not None and tx.active else None

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[None]:
        """One transaction for the storage calls of the block; nested blocks are savepoints.

        Rolled back when the block raises. Tasks started inside share it (one statement at a
        time); nest blocks one after the other, not from concurrent tasks. On SQLite it holds
        the single connection: other storage calls wait until the block ends, so keep it short
        (no network calls, no password hashing in it).
        """

    @abstractmethod
    async def ensure_unique(self, collection: str, field: str) -> bool:
        """Make the storage refuse two documents of `collection` with the same string value in
        top-level `field` (documents without it are not concerned). Idempotent. False (and
        nothing changed) when existing documents already hold duplicates. A write breaking the
        rule raises services.storage.duplicate_value."""

    # -- lifecycle -------------------------------------------------------------------------------

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise services.storage.unavailable unless the database answers."""

    def _purge_due(self) -> bool:
        now = time.monotonic()
        if now - self._last_purge < PURGE_INTERVAL:
            return False
        self._last_purge = now
        return True

    # -- documents -------------------------------------------------------------------------------

    async def create(self, collection: str, body: Doc, id: str | None = None, *,
                     ttl: float | None = None) -> Doc:
        """Add a document; its id is a new uuid4 hex unless given (then it must be free)."""
        check_collection(collection)
        id = uuid.uuid4().hex if id is None else check_id(id)
        text = encode_body(body)
        try:
            created = await self._create(collection, id, text, expiry(ttl))
        except DuplicateValue as exc:
            raise self._duplicate(exc, collection) from None
        if not created:
            raise errors.get("services.storage.document_already_exists", id, collection)
        return hit(id, text)

    async def create_or_replace(self, collection: str, id: str, body: Doc, *,
                                ttl: float | None = None) -> Doc:
        """Write a document whatever was there; `created` tells whether it is new."""
        check_collection(collection)
        check_id(id)
        text = encode_body(body)
        try:
            created = await self._create_or_replace(collection, id, text, expiry(ttl))
        except DuplicateValue as exc:
            raise self._duplicate(exc, collection) from None
        return {**hit(id, text), "created": created}

    async def get(self, collection: str, id: str) -> Doc:
        check_collection(collection)
        check_id(id)
        found = await self._get_many(collection, [id])
        if id not in found:
            raise errors.get("services.storage.not_found", id, collection)
        return hit(id, found[id])

    async def m_get(self, collection: str, ids: Sequence[str]) -> list[Doc]:
        """The documents found among `ids`, in the order asked; missing ones are left out."""
        check_collection(collection)
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise _bad("ids", "an array of ids")
        ids = [check_id(i) for i in ids]
        found = await self._get_many(collection, list(dict.fromkeys(ids))) if ids else {}
        return [hit(i, found[i]) for i in ids if i in found]

    async def exists(self, collection: str, id: str) -> bool:
        check_collection(collection)
        check_id(id)
        return bool(await self._get_many(collection, [id]))

    async def update(self, collection: str, id: str, changes: Doc) -> Doc:
        """Merge `changes` at the top level (each key replaces the stored one); keeps the TTL."""
        check_collection(collection)
        check_id(id)
        try:
            source = await self._update(collection, id, encode_body(changes, "changes"))
        except DuplicateValue as exc:
            raise self._duplicate(exc, collection) from None
        if source is None:
            raise errors.get("services.storage.not_found", id, collection)
        return hit(id, source)

    async def replace(self, collection: str, id: str, body: Doc) -> Doc:
        """Replace an existing document's body (keeps its position and TTL)."""
        check_collection(collection)
        check_id(id)
        text = encode_body(body)
        try:
            replaced = await self._replace(collection, id, text)
        except DuplicateValue as exc:
            raise self._duplicate(exc, collection) from None
        if not replaced:
            raise errors.get("services.storage.not_found", id, collection)
        return hit(id, text)

    async def delete(self, collection: str, id: str) -> None:
        check_collection(collection)
        check_id(id)
        if not await self._delete(collection, id):
            raise errors.get("services.storage.not_found", id, collection)

    async def take(self, collection: str, id: str) -> Doc | None:
        """Get and delete in one atomic step, for one-time entries (OAuth states): of several
        concurrent takes only one gets the document. None if missing or expired."""
        check_collection(collection)
        check_id(id)
        source = await self._take(collection, id)
        return None if source is None else hit(id, source)

    # -- queries ---------------------------------------------------------------------------------

    async def find_unique(self, collection: str, field: str, value: str) -> Doc | None:
        """The live document whose unique `field` (see `ensure_unique`) equals `value`, found
        through its index: a login stays one index look-up however many users there are."""
        check_unique(collection, field)
        if not isinstance(value, str) or not storable_text(value):
            return None
        row = await self._find_unique(collection, field, value)
        return None if row is None else hit(row[0], row[1])

    async def search(self, collection: str, query: Doc | None = None, *, from_: int = 0,
                     size: int = 10, sort: Any = None) -> Doc:
        """`{"total", "hits"}`: the matches (default order: creation), `size` capped at 10000."""
        check_collection(collection)
        from_, size = check_page(from_, size)
        keys = parse_sort(sort)
        total, rows = await self._search(collection, query, from_, size, keys)
        return {"total": total, "hits": [hit(i, s) for i, s in rows]}

    async def count(self, collection: str, query: Doc | None = None) -> int:
        check_collection(collection)
        return await self._count(collection, query)

    async def delete_by_query(self, collection: str, query: Doc | None) -> int:
        """Delete the matches (`{}` or None: all); return how many were deleted."""
        check_collection(collection)
        return await self._delete_by_query(collection, query)

    async def truncate(self, collection: str) -> None:
        check_collection(collection)
        await self._delete_by_query(collection, None)

    # -- backend primitives ----------------------------------------------------------------------

    @abstractmethod
    async def _create(self, collection: str, id: str, body: str,
                      expires_at: float | None) -> bool:
        """Insert unless a live document has this id (an expired one is replaced)."""

    @abstractmethod
    async def _create_or_replace(self, collection: str, id: str, body: str,
                                 expires_at: float | None) -> bool:
        """Upsert; True when no live document had this id."""

    @abstractmethod
    async def _get_many(self, collection: str, ids: list[str]) -> dict[str, Any]:
        """Live documents among `ids`: {id: source (dict or JSON text)}."""

    @abstractmethod
    async def _update(self, collection: str, id: str, changes: str) -> Any:
        """Merged source, or None when there is no live document."""

    @abstractmethod
    async def _replace(self, collection: str, id: str, body: str) -> bool: ...

    @abstractmethod
    async def _delete(self, collection: str, id: str) -> bool: ...

    @abstractmethod
    async def _take(self, collection: str, id: str) -> Any:
        """Delete and return the live document's source, or None."""

    @abstractmethod
    async def _search(self, collection: str, query: Any, from_: int, size: int,
                      sort: SortKeys) -> tuple[int, Rows]:
        ...

    @abstractmethod
    async def _count(self, collection: str, query: Any) -> int: ...

    @abstractmethod
    async def _find_unique(self, collection: str, field: str, value: str,
                           ) -> tuple[str, Any] | None:
        """(id, source) of the live document with this value in a unique field; the SQL must
        match the index's expression and condition (names are checked: spliced as literals)."""

    @abstractmethod
    async def _delete_by_query(self, collection: str, query: Any) -> int: ...

    # -- SQL helpers for the backends ------------------------------------------------------------

    def _where(self, dialect: Dialect, collection: str, query: Any) -> str:
        """`collection = ? AND live AND <filter>`: the WHERE clause of every read."""
        return (f"collection = {dialect.bind(collection)} AND "
                f"{self._live(dialect)} AND ({compile_filter(query, dialect)})")

    @staticmethod
    def _live(dialect: Dialect) -> str:
        return f"(expires_at IS NULL OR expires_at > {dialect.bind(time.time())})"

    @staticmethod
    def _order_by(dialect: Dialect, sort: SortKeys) -> str:
        """Requested keys (missing values last), then creation order as the tie-breaker."""
        parts = []
        for path, desc in sort:
            for expr in ["id"] if path is None else dialect.sort_key(path):
                parts.append(f"{expr} {'DESC' if desc else 'ASC'} NULLS LAST")
        parts.append("seq ASC")
        return ", ".join(parts)
