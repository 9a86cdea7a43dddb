"""The core `security` controller: roles, profiles, users and their credentials (admin side)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from plugin_specs import hookimpl

from .. import errors, inputs
from ..request import Request
from ..security.store import PROFILES, RESTRICTED_ROLES, ROLES, USERS, user_from
from ..security.strategies import Strategy
from ..storage.base import MAX_FROM, MAX_SIZE
from .apikeys import SecurityApiKeys
from .auth import strategy_arg, user_response
from .base import Controller, CoreController, controller

log = logging.getLogger("sanic_gateway.security")

FIRST_ADMIN_LOCK = ("gateway.locks", "createFirstAdmin")


async def undo_credentials(request: Request, kuid: str, created: list[Strategy]) -> None:
    """After a failed user creation, as Kuzzle does: delete the credentials that plugin
    strategies created. Those kept in the gateway's storage went with the transaction; this
    reaches those a strategy keeps elsewhere (its own database, a remote service)."""
    for strategy in created:
        if strategy.owner is None:
            continue
        try:
            if await strategy.call("exists", request, kuid):
                await strategy.call("delete", request, kuid)
        except Exception:
            log.exception("strategy %s: could not delete the credentials of user %r, whose "
                          "creation failed", strategy.name, kuid)


def doc_id(request: Request, required: bool = True) -> str | None:
    value = request.input.resource._id
    if value is None and required:
        raise errors.get("api.assert.missing_argument", "_id")
    return value


def body_of(request: Request) -> dict[str, Any]:
    body = request.input.body
    if not isinstance(body, dict) or not body:
        raise errors.get("api.assert.body_required")
    return body


def paging(request: Request) -> tuple[int, int]:
    args = request.input.args
    return (inputs.int_arg(args.get("from"), "from", 0, MAX_FROM),
            inputs.int_arg(args.get("size"), "size", 10, MAX_SIZE))


class SecurityController(CoreController):
    @hookimpl
    def api_controllers(self) -> list[Controller]:
        return [controller("security", {
            "createFirstAdmin": (self.create_first_admin, [
                ("post", "/_createFirstAdmin"), ("post", "/_createFirstAdmin/:_id")]),
            # users
            "createUser": (self.create_user, [
                ("post", "/users/_create"), ("post", "/users/:_id/_create")]),
            "getUser": (self.get_user, [("get", "/users/:_id")]),
            "mGetUsers": (self.m_get_users, [("post", "/users/_mGet")]),
            "updateUser": (self.update_user, [("put", "/users/:_id/_update")]),
            "replaceUser": (self.replace_user, [("put", "/users/:_id/_replace")]),
            "deleteUser": (self.delete_user, [("delete", "/users/:_id")]),
            "searchUsers": (self.search_users, [("post", "/users/_search")]),
            "getUserRights": (self.get_user_rights, [("get", "/users/:_id/_rights")]),
            "getUserStrategies": (self.get_user_strategies, [("get", "/users/:_id/_strategies")]),
            # roles
            "createRole": (self.create_role, [("post", "/roles/:_id/_create")]),
            "createOrReplaceRole": (self.create_or_replace_role, [("put", "/roles/:_id")]),
            "getRole": (self.get_role, [("get", "/roles/:_id")]),
            "mGetRoles": (self.m_get_roles, [("post", "/roles/_mGet")]),
            "updateRole": (self.update_role, [("put", "/roles/:_id/_update")]),
            "deleteRole": (self.delete_role, [("delete", "/roles/:_id")]),
            "searchRoles": (self.search_roles, [("post", "/roles/_search")]),
            # profiles
            "createProfile": (self.create_profile, [("post", "/profiles/:_id/_create")]),
            "createOrReplaceProfile": (self.create_or_replace_profile,
                                       [("put", "/profiles/:_id")]),
            "getProfile": (self.get_profile, [("get", "/profiles/:_id")]),
            "mGetProfiles": (self.m_get_profiles, [("post", "/profiles/_mGet")]),
            "updateProfile": (self.update_profile, [("put", "/profiles/:_id/_update")]),
            "deleteProfile": (self.delete_profile, [("delete", "/profiles/:_id")]),
            "searchProfiles": (self.search_profiles, [("post", "/profiles/_search")]),
            "getProfileRights": (self.get_profile_rights, [("get", "/profiles/:_id/_rights")]),
            # credentials of any user
            "createCredentials": (self.create_credentials, [
                ("post", "/credentials/:strategy/:_id/_create")]),
            "updateCredentials": (self.update_credentials, [
                ("put", "/credentials/:strategy/:_id/_update")]),
            "hasCredentials": (self.has_credentials, [
                ("get", "/credentials/:strategy/:_id/_exists")]),
            "validateCredentials": (self.validate_credentials, [
                ("post", "/credentials/:strategy/:_id/_validate")]),
            "deleteCredentials": (self.delete_credentials, [
                ("delete", "/credentials/:strategy/:_id")]),
            "getCredentials": (self.get_credentials, [("get", "/credentials/:strategy/:_id")]),
            "getCredentialsById": (self.get_credentials_by_id, [
                ("get", "/credentials/:strategy/:_id/_byId")]),
            **SecurityApiKeys(self).actions(),
        })]

    # -- users -------------------------------------------------------------------------------

    async def _create_user(self, request: Request, kuid: str, content: Any,
                           credentials: Any) -> dict[str, Any]:
        """Create the user and its credentials in one storage transaction: all or nothing,
        even if the process dies midway (see `undo_credentials` for strategies storing
        elsewhere)."""
        credentials = credentials or {}
        if not isinstance(credentials, dict):
            raise errors.get("api.assert.invalid_type", "body.credentials", "object")
        strategies = {name: self.security.strategies.get(name) for name in credentials}
        for name, strategy in strategies.items():
            await strategy.call("validate", request, credentials[name], kuid, False)
        credentials = dict(credentials)  # the request's body stays as it came
        for name, strategy in strategies.items():  # slow work (hashing) before the transaction
            if strategy.prepare is not None:
                credentials[name] = await strategy.prepare(credentials[name])
        created: list[Strategy] = []
        try:
            async with self.security.storage.transaction():
                user = await self.security.store.create_user(kuid, content)
                for name, strategy in strategies.items():
                    await strategy.call("create", request, credentials[name], kuid)
                    created.append(strategy)
        except Exception:
            await undo_credentials(request, kuid, created)
            raise
        return user_response(user)

    async def create_first_admin(self, request: Request) -> dict[str, Any]:
        """The first admin, once: a short-lived lock in storage makes two simultaneous calls
        (on any worker or node) give one admin and one 412."""
        body = request.input.body or {}
        inputs.object_arg(body.get("content"), "body.content")
        inputs.object_arg(body.get("credentials"), "body.credentials")
        storage = self.security.storage
        try:
            await storage.create(FIRST_ADMIN_LOCK[0], {}, id=FIRST_ADMIN_LOCK[1], ttl=30)
        except errors.BadRequestError:
            raise errors.get("api.process.admin_exists") from None
        try:
            return await self._create_first_admin(request)
        finally:
            await storage.delete(*FIRST_ADMIN_LOCK)

    async def _create_first_admin(self, request: Request) -> dict[str, Any]:
        store = self.security.store
        if await store.admin_exists():
            raise errors.get("api.process.admin_exists")
        body = request.input.body or {}
        kuid = doc_id(request, required=False) or uuid.uuid4().hex
        content = body.get("content") or {}  # checked by create_first_admin
        if "profileIds" in content:  # as in Kuzzle: the first admin's profile is not a choice
            raise errors.get("api.assert.forbidden_argument", "body.content.profileIds")
        content = {**content, "profileIds": ["admin"]}
        out = await self._create_user(request, kuid, content, body.get("credentials"))
        if request.input.args.get("reset") in (True, "true", "1"):
            for role_id, role in RESTRICTED_ROLES.items():
                await store.put_role(role_id, role)
        return out

    async def create_user(self, request: Request) -> dict[str, Any]:
        body = body_of(request)
        inputs.object_arg(body.get("content"), "body.content")
        inputs.object_arg(body.get("credentials"), "body.credentials")
        kuid = doc_id(request, required=False) or uuid.uuid4().hex
        return await self._create_user(request, kuid, body.get("content"),
                                       body.get("credentials"))

    async def get_user(self, request: Request) -> dict[str, Any]:
        return user_response(await self.security.store.get_user(doc_id(request)))

    async def m_get_users(self, request: Request) -> dict[str, Any]:
        return await self._m_get(request, USERS)

    async def update_user(self, request: Request) -> dict[str, Any]:
        changes = body_of(request)
        if "_id" in changes:
            raise errors.get("api.assert.forbidden_argument", "body._id")
        return user_response(await self.security.store.update_user(doc_id(request), changes))

    async def replace_user(self, request: Request) -> dict[str, Any]:
        kuid = doc_id(request)
        await self.security.store.get_user(kuid)
        return user_response(await self.security.store.replace_user(kuid, body_of(request)))

    async def delete_user(self, request: Request) -> dict[str, Any]:
        kuid = doc_id(request)
        store, security = self.security.store, self.security
        await store.get_user(kuid)
        async with security.storage.transaction():  # no user left without its credentials
            for strategy in security.strategies.all():
                if await strategy.call("exists", request, kuid):
                    await strategy.call("delete", request, kuid)
            await store.delete_user(kuid)
        await security.tokens.revoke_all(kuid)
        return {"_id": kuid}

    async def search_users(self, request: Request) -> dict[str, Any]:
        start, size = paging(request)
        query = (request.input.body or {}).get("query")
        found = await self.security.storage.search(USERS, query, from_=start, size=size)
        return {"total": found["total"],
                "hits": [user_response(user_from(hit)) for hit in found["hits"]]}

    async def get_user_rights(self, request: Request) -> dict[str, Any]:
        user = await self.security.store.get_user(doc_id(request))
        rights = await self.security.rights_for(user._id)
        hits = rights.describe()
        return {"hits": hits, "total": len(hits)}

    async def get_user_strategies(self, request: Request) -> dict[str, Any]:
        kuid = doc_id(request)
        await self.security.store.get_user(kuid)
        names = [s.name for s in self.security.strategies.all()
                 if await s.call("exists", request, kuid)]
        return {"strategies": names, "total": len(names)}

    # -- roles -------------------------------------------------------------------------------

    async def create_role(self, request: Request) -> dict[str, Any]:
        return await self.security.store.put_role(doc_id(request), body_of(request),
                                                  create=True)

    async def create_or_replace_role(self, request: Request) -> dict[str, Any]:
        return await self.security.store.put_role(doc_id(request), body_of(request))

    async def get_role(self, request: Request) -> dict[str, Any]:
        return await self.security.store.get_role(doc_id(request))

    async def m_get_roles(self, request: Request) -> dict[str, Any]:
        return await self._m_get(request, ROLES)

    async def update_role(self, request: Request) -> dict[str, Any]:
        return await self.security.store.update_role(doc_id(request), body_of(request))

    async def delete_role(self, request: Request) -> dict[str, Any]:
        await self.security.store.delete_role(doc_id(request))
        return {"_id": doc_id(request)}

    async def search_roles(self, request: Request) -> dict[str, Any]:
        """Roles with rules on any of `body.controllers` (all roles without it)."""
        start, size = paging(request)
        wanted = inputs.string_list((request.input.body or {}).get("controllers"),
                                    "body.controllers")
        roles = await self.security.store._all(ROLES)
        if wanted:
            roles = [r for r in roles if set(wanted) & set(r["_source"]["controllers"])]
        return {"total": len(roles), "hits": roles[start:start + size]}

    # -- profiles ----------------------------------------------------------------------------

    async def create_profile(self, request: Request) -> dict[str, Any]:
        return await self.security.store.put_profile(doc_id(request), body_of(request),
                                                     create=True)

    async def create_or_replace_profile(self, request: Request) -> dict[str, Any]:
        return await self.security.store.put_profile(doc_id(request), body_of(request))

    async def get_profile(self, request: Request) -> dict[str, Any]:
        return await self.security.store.get_profile(doc_id(request))

    async def m_get_profiles(self, request: Request) -> dict[str, Any]:
        return await self._m_get(request, PROFILES)

    async def update_profile(self, request: Request) -> dict[str, Any]:
        return await self.security.store.update_profile(doc_id(request), body_of(request))

    async def delete_profile(self, request: Request) -> dict[str, Any]:
        await self.security.store.delete_profile(doc_id(request))
        return {"_id": doc_id(request)}

    async def search_profiles(self, request: Request) -> dict[str, Any]:
        """Profiles using any of `body.roles` (all profiles without it)."""
        start, size = paging(request)
        wanted = set(inputs.string_list((request.input.body or {}).get("roles"), "body.roles"))
        profiles = await self.security.store._all(PROFILES)
        if wanted:
            profiles = [p for p in profiles
                        if wanted & {pol["roleId"] for pol in p["_source"]["policies"]}]
        return {"total": len(profiles), "hits": profiles[start:start + size]}

    async def get_profile_rights(self, request: Request) -> dict[str, Any]:
        profile = await self.security.store.get_profile(doc_id(request))
        rights, _ = await self.security.store.rights_of([profile["_id"]])
        hits = rights.describe()
        return {"hits": hits, "total": len(hits)}

    async def _m_get(self, request: Request, collection: str) -> dict[str, Any]:
        ids = (request.input.body or {}).get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise errors.get("api.assert.invalid_type", "body.ids", "array of strings")
        hits = await self.security.storage.m_get(collection, ids)
        if collection == USERS:
            hits = [user_response(user_from(h)) for h in hits]
        return {"hits": hits, "total": len(hits)}

    # -- credentials -------------------------------------------------------------------------

    async def _user_strategy(self, request: Request) -> tuple[str, Any]:
        kuid = doc_id(request)
        await self.security.store.get_user(kuid)
        return kuid, self.security.strategies.get(strategy_arg(request))

    async def create_credentials(self, request: Request) -> dict[str, Any]:
        kuid, strategy = await self._user_strategy(request)
        if await strategy.call("exists", request, kuid):
            raise errors.get("security.credentials.already_exist", kuid, strategy.name)
        await strategy.call("validate", request, request.input.body, kuid, False)
        return await strategy.call("create", request, request.input.body, kuid) or {}

    async def update_credentials(self, request: Request) -> dict[str, Any]:
        kuid, strategy = await self._user_strategy(request)
        if not await strategy.call("exists", request, kuid):
            raise errors.get("security.credentials.not_found", strategy.name, kuid)
        await strategy.call("validate", request, request.input.body, kuid, True)
        return await strategy.call("update", request, request.input.body, kuid) or {}

    async def has_credentials(self, request: Request) -> bool:
        kuid, strategy = await self._user_strategy(request)
        return bool(await strategy.call("exists", request, kuid))

    async def validate_credentials(self, request: Request) -> bool:
        kuid, strategy = await self._user_strategy(request)
        exists = await strategy.call("exists", request, kuid)
        return bool(await strategy.call("validate", request, request.input.body, kuid,
                                        bool(exists)))

    async def delete_credentials(self, request: Request) -> dict[str, Any]:
        kuid, strategy = await self._user_strategy(request)
        if not await strategy.call("exists", request, kuid):
            raise errors.get("security.credentials.not_found", strategy.name, kuid)
        await strategy.call("delete", request, kuid)
        return {"acknowledged": True}

    async def get_credentials(self, request: Request) -> dict[str, Any]:
        kuid, strategy = await self._user_strategy(request)
        if not await strategy.call("exists", request, kuid):
            raise errors.get("security.credentials.not_found", strategy.name, kuid)
        return await strategy.get_info(request, kuid)

    async def get_credentials_by_id(self, request: Request) -> dict[str, Any]:
        strategy = self.security.strategies.get(strategy_arg(request))
        if "getById" not in strategy.methods:
            return {}
        return await strategy.call("getById", request, doc_id(request)) or {}
