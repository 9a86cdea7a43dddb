"""API keys, as in Kuzzle: long-lived tokens bound to a user, usable as `Bearer <key>`.

Only a key's SHA-256 fingerprint is stored, never the key: it is shown once, at creation. A key
is valid while its entry exists (the token checks find it by fingerprint through a unique
index), so deleting the entry revokes it. Searches run on a user's keys only (a handful),
in Python: Kuzzle's default query language (Elasticsearch's) and Koncorde's both apply.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from typing import TYPE_CHECKING, Any

from .. import errors
from ..storage import Storage

if TYPE_CHECKING:
    from .policy import User
    from .tokens import Tokens

APIKEYS = "security.apikeys"
APIKEY_PREFIX = "kapikey-"
# what a user may hold (a search reads them all); beyond, createApiKey is refused
MAX_KEYS_PER_USER = 1000
_WORD = re.compile(r"\w+")


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def serialize(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored key as Kuzzle shows it: `_id`, `_source` without the internal `jti`."""
    source = {k: v for k, v in doc["_source"].items() if k != "jti"}
    return {"_id": doc["_id"], "_source": source}


class ApiKeys:
    def __init__(self, storage: Storage, tokens: Tokens) -> None:
        self.storage = storage
        self.tokens = tokens

    async def create(self, user: User, expires_in: Any, description: Any,
                     key_id: str | None, *, max_ttl: float = -1) -> dict[str, Any]:
        """Create a key for `user`; the answer is the only one ever holding the token."""
        if description is None:
            raise errors.get("api.assert.missing_argument", "body.description")
        if not isinstance(description, str):
            raise errors.get("api.assert.invalid_type", "body.description", "string")
        if key_id is not None and (not isinstance(key_id, str) or not key_id):
            raise errors.get("api.assert.invalid_type", "_id", "non-empty string")
        if await self.storage.count(APIKEYS, {"equals": {"userId": user._id}}) >= \
                MAX_KEYS_PER_USER:
            raise errors.get("api.assert.size_limit",
                             f"at most {MAX_KEYS_PER_USER} API keys per user")
        if expires_in is None or expires_in == "":
            expires_in = -1  # Kuzzle's default: never expires
        ttl = self.tokens.ttl_of(expires_in, max_ttl)
        token = self.tokens.issue(user._id, ttl, type="apiKey")
        source = {
            "userId": user._id, "description": description,
            "expiresAt": -1 if token.expiresAt is None else token.expiresAt,
            "ttl": -1 if ttl is None else int(ttl * 1000),
            "fingerprint": fingerprint(token.jwt), "jti": token._id,
        }
        # Kuzzle's default id is the fingerprint; a random one says nothing of the key
        doc = await self.storage.create(APIKEYS, source, id=key_id or uuid.uuid4().hex,
                                        ttl=None if ttl is None else ttl + 1)
        out = serialize(doc)
        out["_source"]["token"] = token.jwt
        return out

    async def search(self, kuid: str, query: Any, lang: Any, from_: int,
                     size: int) -> dict[str, Any]:
        if query is None:
            query = {}
        if not isinstance(query, dict):
            raise errors.get("api.assert.invalid_type", "body", "object")
        if lang not in (None, "elasticsearch", "koncorde"):
            raise errors.get("api.assert.invalid_argument", "lang",
                             '"elasticsearch" or "koncorde"')
        match = koncorde_matcher(query) if lang == "koncorde" else es_matcher(query)
        found = await self.storage.search(APIKEYS, {"equals": {"userId": kuid}},
                                          size=MAX_KEYS_PER_USER)
        hits = [serialize(doc) for doc in found["hits"] if match(doc)]
        return {"hits": hits[from_:from_ + size], "total": len(hits)}

    async def delete(self, kuid: str, key_id: Any) -> dict[str, Any]:
        """Delete `kuid`'s key `key_id` (another user's is not found); refused at once here."""
        if not isinstance(key_id, str) or not key_id:
            raise errors.get("api.assert.missing_argument", "_id")
        try:
            doc = await self.storage.get(APIKEYS, key_id)
        except errors.NotFoundError:
            doc = None
        if doc is None or doc["_source"].get("userId") != kuid:
            raise errors.get("services.storage.not_found", key_id, "api-keys")
        jti = doc["_source"].get("jti")
        if isinstance(jti, str):
            self.tokens.forget(jti)
        with contextlib.suppress(errors.NotFoundError):  # deleted meanwhile: gone anyway
            await self.storage.delete(APIKEYS, key_id)
        if isinstance(jti, str):
            await self.tokens.tell_forgotten(jti)
        return {"_id": key_id}


# -- queries on a user's keys ---------------------------------------------------------------------

Matcher = Any  # Callable[[dict], bool]


def _bad(why: str) -> errors.GatewayError:
    return errors.get("services.storage.invalid_search_query", why)


def _value(doc: dict[str, Any], field: Any) -> tuple[bool, Any]:
    if not isinstance(field, str):
        raise _bad(f"invalid field name {field!r}")
    if field == "_id":
        return True, doc["_id"]
    value: Any = doc["_source"]
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _single(body: Any, keyword: str) -> tuple[str, Any]:
    if not isinstance(body, dict) or len(body) != 1:
        raise _bad(f'"{keyword}" takes an object with exactly one field')
    return next(iter(body.items()))


def _range(body: Any) -> Matcher:
    field, bounds = _single(body, "range")
    if not isinstance(bounds, dict) or not bounds:
        raise _bad('"range" takes {field: {gt|gte|lt|lte: value}}')
    checks = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
              "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
    for op in bounds:
        if op not in checks:
            raise _bad(f'"range": unknown operator {op!r}')

    def match(doc: dict[str, Any]) -> bool:
        found, value = _value(doc, field)
        if not found or isinstance(value, bool):
            return False
        for op, bound in bounds.items():
            same_kind = (isinstance(value, str) and isinstance(bound, str)) or (
                isinstance(value, int | float) and isinstance(bound, int | float)
                and not isinstance(bound, bool))
            if not same_kind or not checks[op](value, bound):
                return False
        return True
    return match


def _equals(field: str, expected: Any) -> Matcher:
    def match(doc: dict[str, Any]) -> bool:
        found, value = _value(doc, field)
        return found and value == expected and type(value) is type(expected)
    return match


def _exists(body: Any, keyword: str) -> Matcher:
    field = body.get("field") if isinstance(body, dict) else body
    if not isinstance(field, str):
        raise _bad(f'"{keyword}" takes a field name or {{"field": name}}')
    return lambda doc: _value(doc, field)[0]


def _ids(body: Any) -> Matcher:
    values = body.get("values") if isinstance(body, dict) else None
    if not isinstance(values, list):
        raise _bad('"ids" takes {"values": [id, ...]}')
    return lambda doc: doc["_id"] in values


def _list(body: Any, keyword: str) -> list[Any]:
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        return body
    raise _bad(f'"{keyword}" takes a query or a list of queries')


def es_matcher(query: Any) -> Matcher:
    """Elasticsearch's query DSL, the part that makes sense on API keys: match_all, term(s),
    match (any word, case-insensitive), ids, range, exists, bool."""
    if not query:
        return lambda doc: True
    if not isinstance(query, dict) or len(query) != 1:
        raise _bad("a query has exactly one keyword")
    keyword, body = next(iter(query.items()))
    if keyword == "match_all":
        return lambda doc: True
    if keyword == "term":
        field, value = _single(body, keyword)
        if isinstance(value, dict):
            value = value.get("value")
        return _equals(field, value)
    if keyword == "terms":
        field, values = _single(body, keyword)
        if not isinstance(values, list):
            raise _bad('"terms" takes {field: [values]}')
        return lambda doc: any(_equals(field, v)(doc) for v in values)
    if keyword == "match":
        field, text = _single(body, keyword)
        if isinstance(text, dict):
            text = text.get("query")
        words = set(_WORD.findall(str(text).lower()))

        def match(doc: dict[str, Any]) -> bool:
            found, value = _value(doc, field)
            return found and bool(words & set(_WORD.findall(str(value).lower())))
        return match
    if keyword == "ids":
        return _ids(body)
    if keyword == "range":
        return _range(body)
    if keyword == "exists":
        return _exists(body, keyword)
    if keyword == "bool":
        return _bool(body, es_matcher)
    raise _bad(f"unknown keyword {keyword!r}")


def koncorde_matcher(query: Any) -> Matcher:
    """Koncorde's filters (`lang=koncorde`): equals, in, exists, missing, range, ids, and, or,
    not, bool."""
    if not query:
        return lambda doc: True
    if not isinstance(query, dict) or len(query) != 1:
        raise _bad("a filter has exactly one keyword")
    keyword, body = next(iter(query.items()))
    if keyword == "equals":
        return _equals(*_single(body, keyword))
    if keyword == "in":
        field, values = _single(body, keyword)
        if not isinstance(values, list):
            raise _bad('"in" takes {field: [values]}')
        return lambda doc: any(_equals(field, v)(doc) for v in values)
    if keyword in ("exists", "missing"):
        present = _exists(body, keyword)
        return present if keyword == "exists" else (lambda doc: not present(doc))
    if keyword == "range":
        return _range(body)
    if keyword == "ids":
        return _ids(body)
    if keyword in ("and", "or"):
        parts = [koncorde_matcher(q) for q in _list(body, keyword)]
        if keyword == "and":
            return lambda doc: all(m(doc) for m in parts)
        return lambda doc: any(m(doc) for m in parts)
    if keyword == "not":
        inner = koncorde_matcher(body)
        return lambda doc: not inner(doc)
    if keyword == "bool":
        return _bool(body, koncorde_matcher)
    raise _bad(f"unknown keyword {keyword!r}")


def _bool(body: Any, sub: Any) -> Matcher:
    """`bool` (both languages): must and filter all match, must_not none, and at least
    `minimum_should_match` of should (default 1 when alone, else 0)."""
    if not isinstance(body, dict):
        raise _bad('"bool" takes an object')
    unknown = set(body) - {"must", "filter", "should", "must_not", "minimum_should_match"}
    if unknown:
        raise _bad(f'"bool": unknown clause(s) {sorted(unknown)}')
    must = [sub(q) for k in ("must", "filter") for q in _list(body.get(k, []), k)]
    should = [sub(q) for q in _list(body.get("should", []), "should")]
    must_not = [sub(q) for q in _list(body.get("must_not", []), "must_not")]
    least = body.get("minimum_should_match", 0 if must or not should else 1)
    if not isinstance(least, int) or isinstance(least, bool):
        raise _bad('"minimum_should_match" takes an integer')
    return lambda doc: (all(m(doc) for m in must) and not any(m(doc) for m in must_not)
                        and sum(1 for m in should if m(doc)) >= least)
