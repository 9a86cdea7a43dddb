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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..events import as_async
from ..storage import Storage
from .passwords import hash_password, verify_password
from .rights import located

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
                            ) -> Strategy:
    """Build a Strategy from plain or async callables, checking Kuzzle's required set."""
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
    return Strategy(name, {m: as_async(fn) for m, fn in methods.items()}, list(fields or []),
                    owner)


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
        if len(value) > 1024:
            raise located(errors.get("security.credentials.rejected",
                                     f"'{name}' is too long"), name)


def username_taken(username: str) -> errors.GatewayError:
    return located(errors.get("security.credentials.rejected",
                              f"username {username!r} is already used"), "username")


class LocalStrategy:
    """`local`: username and password, the password kept as an Argon2id hash."""

    COLLECTION = "credentials.local"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def strategy(self) -> Strategy:
        return Strategy("local", {
            "exists": self.exists, "create": self.create, "update": self.update,
            "delete": self.delete, "validate": self.validate, "verify": self.verify,
            "getInfo": self.get_info, "getById": self.get_by_id,
        }, ["username", "password"])

    async def _by_username(self, username: str) -> dict[str, Any] | None:
        hits = await self.storage.search(self.COLLECTION, {"equals": {"username": username}},
                                         size=1)
        return hits["hits"][0] if hits["hits"] else None

    async def exists(self, request: Any, kuid: str) -> bool:
        return await self.storage.exists(self.COLLECTION, kuid)

    async def validate(self, request: Any, credentials: Any, kuid: str, is_update: bool) -> bool:
        check_local_credentials(credentials, is_update)
        username = credentials.get("username")
        if username is not None:
            owner = await self._by_username(username)
            if owner is not None and owner["_id"] != kuid:
                raise username_taken(username)
        return True

    async def create(self, request: Any, credentials: dict[str, Any], kuid: str,
                     ) -> dict[str, Any]:
        if await self.storage.exists(self.COLLECTION, kuid):
            raise errors.get("security.credentials.already_exist", kuid, "local")
        doc = {"username": credentials["username"],
               "password": await hash_password(credentials["password"])}
        await self.storage.create(self.COLLECTION, doc, id=kuid)
        return {"username": doc["username"], "kuid": kuid}

    async def update(self, request: Any, credentials: dict[str, Any], kuid: str,
                     ) -> dict[str, Any]:
        try:
            current = (await self.storage.get(self.COLLECTION, kuid))["_source"]
        except errors.NotFoundError:
            raise errors.get("security.credentials.not_found", "local", kuid) from None
        changes = {}
        if credentials.get("username"):
            changes["username"] = credentials["username"]
        if credentials.get("password"):
            changes["password"] = await hash_password(credentials["password"])
        await self.storage.update(self.COLLECTION, kuid, changes)
        return {"username": changes.get("username", current["username"]), "kuid": kuid}

    async def delete(self, request: Any, kuid: str) -> None:
        try:
            await self.storage.delete(self.COLLECTION, kuid)
        except errors.NotFoundError:
            raise errors.get("security.credentials.not_found", "local", kuid) from None

    async def verify(self, request: Any, username: Any = None, password: Any = None,
                     **_: Any) -> str | dict[str, str]:
        failed = {"message": "wrong username or password"}
        if not isinstance(username, str) or not isinstance(password, str):
            await verify_password(None, "")  # the same cost as a real attempt
            return failed
        found = await self._by_username(username)
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
        found = await self._by_username(username)
        if found is None:
            raise errors.get("security.credentials.not_found", "local", username)
        return {"username": username, "kuid": found["_id"]}


class Strategies:
    """The strategies of a running gateway, by name; plugins may add and remove their own."""

    def __init__(self) -> None:
        self._all: dict[str, Strategy] = {}

    def names(self) -> list[str]:
        return list(self._all)

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
