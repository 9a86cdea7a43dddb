"""Authentication strategies: the built-in `local` one and those plugins declare or add.

Every strategy has Kuzzle's method set: `exists, create, update, delete,
validate, verify` (required), `getInfo, getById, afterRegister` (optional). The gateway calls
them as `exists(request, kuid)`, `create(request, credentials, kuid)`,
`update(request, credentials, kuid)`, `delete(request, kuid)`,
`validate(request, credentials, kuid, is_update)`, `verify(request, **credentials)` (returns the
kuid, or `{"message": why}`), `getInfo(request, kuid)`, `getById(request, id)`,
`afterRegister(strategy)`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..events import as_async
from ..plugin_threads import PluginThreads
from ..storage import Storage
from ..storage.base import storable_text
from .passwords import hash_password, verify_password
from .rights import located
from .usernames import check_username, username_key

log = logging.getLogger("sanic_gateway.security")
MAX_FIELD = 1024  # characters of a username or password

REQUIRED = ("exists", "create", "update", "delete", "validate", "verify")
OPTIONAL = ("getInfo", "getById", "afterRegister")
# how the gateway calls each method (verify gets the credentials as keyword arguments)
CALLS = {
    "exists": "exists(request, kuid)", "create": "create(request, credentials, kuid)",
    "update": "update(request, credentials, kuid)", "delete": "delete(request, kuid)",
    "validate": "validate(request, credentials, kuid, is_update)",
    "verify": "verify(request, **credentials)", "getInfo": "getInfo(request, kuid)",
    "getById": "getById(request, id)", "afterRegister": "afterRegister(strategy)",
}
ARITY = {method: call.count(",") + 1 for method, call in CALLS.items()}
ARITY["verify"] = 1


@dataclass
class Strategy:
    """A named strategy: its credential fields and its methods as coroutine functions."""

    name: str
    methods: dict[str, Callable[..., Any]]
    fields: list[str] = field(default_factory=list)
    owner: str | None = None  # the plugin that registered it; None: the core
    # strategies with a flow of their own (OAuth redirects) answer auth:login themselves
    login: Callable[..., Any] | None = None
    # prepare(credentials): slow work on new credentials (hashing) done before the gateway's
    # transaction; what it returns is given to `create`/`update` instead
    prepare: Callable[..., Any] | None = None

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self.methods[method](*args, **kwargs)

    async def verify(self, request: Any, credentials: dict[str, Any]) -> str | dict[str, Any]:
        if self.fields:
            credentials = {k: v for k, v in credentials.items() if k in self.fields}
        result = await self.call("verify", request, **credentials)
        if isinstance(result, str) and result:
            return result
        if isinstance(result, dict) and isinstance(result.get("message"), str):
            return result
        raise errors.get("plugin.strategy.invalid_verify_resolve", self.name,
                         type(result).__name__)

    async def get_info(self, request: Any, kuid: str) -> dict[str, Any]:
        if "getInfo" not in self.methods:
            return {}
        return await self.call("getInfo", request, kuid) or {}


def check_signature(method: str, fn: Callable[..., Any]) -> str | None:
    """Why `fn` cannot be called as strategy method `method`, or None if it can."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        if method == "verify":
            params = signature.parameters.values()
            takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
            signature.bind(None, **({"_probe": None} if takes_kwargs else {}))
        else:
            signature.bind(*([None] * ARITY[method]))
    except TypeError:
        return f"{method}{signature} cannot be called as {CALLS[method]}"
    return None


def strategy_from_callables(name: str, methods: dict[str, Callable[..., Any]],
                            fields: list[str] | None = None, owner: str | None = None,
                            threads: PluginThreads | None = None) -> Strategy:
    """Build a Strategy from plain or async callables, checking Kuzzle's required set. Plain
    methods run in `threads`, the plugins' bounded pool (a login then never waits for them)."""
    for method in REQUIRED:
        if method not in methods:
            raise errors.get("plugin.strategy.missing_method", name, method)
    unknown = set(methods) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise errors.get("plugin.strategy.missing_method", name,
                         f"unknown method(s) {', '.join(sorted(unknown))}")
    for method, fn in methods.items():
        problem = check_signature(method, fn)
        if problem:
            raise errors.get("plugin.runtime.unexpected_error", f"strategy {name!r}: {problem}")
    wrapped = {m: as_async(fn, threads) for m, fn in methods.items()}
    return Strategy(name, wrapped, list(fields or []), owner)


def check_local_credentials(credentials: Any, is_update: bool) -> None:
    """The rules of `local` credentials that need no storage; `check` applies them to the
    credentials gateway.yaml declares. The error carries the field (rights.where)."""
    if not isinstance(credentials, dict):
        raise errors.get("security.credentials.rejected", "expected {username, password}")
    extra = set(credentials) - {"username", "password"}
    if extra:
        raise located(errors.get("security.credentials.rejected",
                                 f"unexpected field(s) {', '.join(sorted(map(str, extra)))}"),
                      sorted(extra, key=str)[0])
    for name in ("username", "password"):
        value = credentials.get(name)
        if value is None and is_update:
            continue
        if not isinstance(value, str) or not value.strip():
            raise located(errors.get("security.credentials.rejected",
                                     f"'{name}' must be a non-empty string"), name)
        if len(value) > MAX_FIELD:
            raise located(errors.get("security.credentials.rejected",
                                     f"'{name}' is too long"), name)
    if credentials.get("username") is not None:
        try:
            check_username(credentials["username"])
        except errors.GatewayError as exc:
            raise located(exc, "username") from None


def username_taken(username: str) -> errors.GatewayError:
    """As Kuzzle's local strategy says it: 412, in the asker's spelling, naming no account."""
    return located(errors.get("security.credentials.username_taken", username), "username")


class PreHashed(str):
    """A password already hashed by `LocalStrategy.prepare`; JSON input can never be one."""


class LocalStrategy:
    """`local`: username and password, the password kept as an Argon2id hash.

    A credentials document is `{username, key, password}`: `key` is the username as compared
    (`usernames.username_key`), unique in storage, so that neither two creations at once nor a
    rename can give two accounts one username.
    """

    COLLECTION = "credentials.local"
    KEY = "key"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def strategy(self) -> Strategy:
        return Strategy("local", {
            "exists": self.exists, "create": self.create, "update": self.update,
            "delete": self.delete, "validate": self.validate, "verify": self.verify,
            "getInfo": self.get_info, "getById": self.get_by_id,
        }, ["username", "password"], prepare=self.prepare)

    async def setup(self) -> None:
        """The unique index on username keys, and keys for credentials written before them."""
        if not await self.storage.ensure_unique(self.COLLECTION, self.KEY):
            log.error("local credentials: duplicate usernames in storage prevent their unique "
                      "index; usernames are not guaranteed unique")
        await migrate_keys(self)

    async def _by_key(self, key: str) -> dict[str, Any] | None:
        return await self.storage.find_unique(self.COLLECTION, self.KEY, key)

    async def exists(self, request: Any, kuid: str) -> bool:
        return await self.storage.exists(self.COLLECTION, kuid)

    async def validate(self, request: Any, credentials: Any, kuid: str, is_update: bool) -> bool:
        """As Kuzzle's local strategy, which also tells that a username is taken (412)."""
        check_local_credentials(credentials, is_update)
        username = credentials.get("username")
        if username is not None:
            owner = await self._by_key(username_key(username))
            if owner is not None and owner["_id"] != kuid:
                raise username_taken(username)
        return True

    async def prepare(self, credentials: Any) -> Any:
        """The credentials with the password hashed now, before a transaction: the hash costs
        tens of milliseconds, which must not be spent holding the storage."""
        if isinstance(credentials, dict) and isinstance(credentials.get("password"), str):
            hashed = PreHashed(await hash_password(credentials["password"]))
            return {**credentials, "password": hashed}
        return credentials

    async def _hashed(self, password: str) -> str:
        return password if isinstance(password, PreHashed) else await hash_password(password)

    async def create(self, request: Any, credentials: dict[str, Any], kuid: str,
                     ) -> dict[str, Any]:
        username = check_username(credentials["username"])
        doc = {"username": username, self.KEY: username_key(username),
               "password": await self._hashed(credentials["password"])}
        try:
            await self.storage.create(self.COLLECTION, doc, id=kuid)
        except errors.GatewayError as exc:
            raise self._refusal(exc, kuid, username) from None
        return {"username": username, "kuid": kuid}

    async def update(self, request: Any, credentials: dict[str, Any], kuid: str,
                     ) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        username = credentials.get("username")
        if username:
            changes.update(username=check_username(username), key=username_key(username))
        if credentials.get("password"):
            changes["password"] = await self._hashed(credentials["password"])
        try:
            doc = await self.storage.update(self.COLLECTION, kuid, changes)
        except errors.GatewayError as exc:
            raise self._refusal(exc, kuid, username) from None
        return {"username": doc["_source"]["username"], "kuid": kuid}

    def _refusal(self, exc: errors.GatewayError, kuid: str, username: Any) -> errors.GatewayError:
        """The storage's refusal as the strategy's error: a taken username says no more than
        validate does (no owner, no stored form)."""
        if exc.id == "services.storage.duplicate_value":
            return username_taken(username)
        if exc.id == "services.storage.document_already_exists":
            return errors.get("security.credentials.already_exist", kuid, "local")
        if exc.id == "services.storage.not_found":
            return errors.get("security.credentials.not_found", "local", kuid)
        return exc

    async def delete(self, request: Any, kuid: str) -> None:
        try:
            await self.storage.delete(self.COLLECTION, kuid)
        except errors.NotFoundError:
            raise errors.get("security.credentials.not_found", "local", kuid) from None

    async def verify(self, request: Any, username: Any = None, password: Any = None,
                     **_: Any) -> str | dict[str, str]:
        """The kuid whose username (compared as `username_key`) and password match."""
        failed = {"message": "wrong username or password"}
        if (not isinstance(username, str) or not isinstance(password, str)
                or len(username) > MAX_FIELD or not storable_text(username)):
            await verify_password(None, "")  # the same cost as a real attempt
            return failed
        found = await self._by_key(username_key(username))
        hashed = found["_source"]["password"] if found else None
        if await verify_password(hashed, password) and found is not None:
            return found["_id"]
        return failed

    async def get_info(self, request: Any, kuid: str) -> dict[str, Any]:
        try:
            doc = await self.storage.get(self.COLLECTION, kuid)
        except errors.NotFoundError:
            raise errors.get("security.credentials.not_found", "local", kuid) from None
        return {"username": doc["_source"]["username"], "kuid": kuid}

    async def get_by_id(self, request: Any, username: str) -> dict[str, Any]:
        found = None
        if isinstance(username, str) and storable_text(username):
            found = await self._by_key(username_key(username))
        if found is None:
            raise errors.get("security.credentials.not_found", "local", username)
        return {"username": found["_source"]["username"], "kuid": found["_id"]}


async def migrate_keys(local: LocalStrategy) -> None:
    """Give a `key` to local credentials written by versions without one, oldest first. Two
    usernames that are now one (same key, e.g. `Bob` and `bob`, or duplicates made by a race):
    the oldest keeps it, the others are logged and cannot log in until given another
    username with security:updateCredentials. Never fails the start for that."""
    storage, skipped = local.storage, 0
    while True:
        page = await storage.search(local.COLLECTION, {"missing": local.KEY}, from_=skipped,
                                    size=500)
        if not page["hits"]:
            return
        for hit in page["hits"]:
            username = hit["_source"].get("username")
            if not isinstance(username, str):
                skipped += 1
                continue
            key = username_key(username)
            try:
                await storage.update(local.COLLECTION, hit["_id"], {local.KEY: key})
            except errors.GatewayError as exc:
                if exc.id != "services.storage.duplicate_value":
                    raise
                skipped += 1
                owner = await local._by_key(key)
                log.warning(
                    "local credentials: user %r has the username %r, the same as user %r's "
                    "once case and Unicode forms are ignored; %r cannot log in until given "
                    "another username (security:updateCredentials)", hit["_id"], username,
                    owner["_id"] if owner else "?", hit["_id"])


class Strategies:
    """The strategies of a running gateway, by name; plugins may add and remove their own."""

    def __init__(self) -> None:
        self._all: dict[str, Strategy] = {}

    def names(self) -> list[str]:
        return list(self._all)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._all

    def all(self) -> list[Strategy]:
        return list(self._all.values())

    def get(self, name: Any) -> Strategy:
        strategy = self._all.get(name) if isinstance(name, str) else None
        if strategy is None:
            raise errors.get("security.credentials.unknown_strategy", name)
        return strategy

    async def register(self, strategy: Strategy) -> None:
        if strategy.name in self._all:
            raise errors.get("plugin.strategy.already_exists", strategy.name)
        self._all[strategy.name] = strategy
        if "afterRegister" in strategy.methods:
            await strategy.call("afterRegister", strategy)

    def unregister(self, name: str, owner: str | None) -> None:
        strategy = self._all.get(name)
        if strategy is None:
            raise errors.get("plugin.strategy.strategy_not_found", name)
        if strategy.owner != owner:
            raise errors.get("plugin.strategy.unauthorized_removal", name)
        del self._all[name]
