"""Roles, profiles and users kept in storage, checked on write, cached for the request path.

Cached rights are read again after RECHECK seconds; in cluster mode every change is also pushed
to the other members, which drop their cache at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .. import errors
from ..storage import Storage
from ..storage.es_query import translate
from .policy import ANONYMOUS, User
from .rights import OPEN_ROLE, Rights, check_profile, check_role, policy_from
from .tokens import Tell

ROLES, PROFILES, USERS = "roles", "profiles", "users"
PROTECTED = ("anonymous", "default", "admin")  # the built-in roles and profiles
# Kuzzle's restricted rights for the built-in roles: given by createFirstAdmin with `reset`,
# and to `default` at start when the gateway is closed and gateway.yaml does not declare it
RESTRICTED_ROLES = {
    "anonymous": {"controllers": {
        "auth": {"actions": {"checkToken": True, "getCurrentUser": True, "getMyRights": True,
                             "login": True, "getStrategies": True}},
        "server": {"actions": {"publicApi": True, "openapi": True, "now": True,
                               "healthCheck": True}},
    }},
    "default": {"controllers": {
        "auth": {"actions": {"checkToken": True, "getCurrentUser": True, "getMyRights": True,
                             "logout": True, "updateSelf": True, "refreshToken": True,
                             "getStrategies": True, "createMyCredentials": True,
                             "updateMyCredentials": True, "credentialsExist": True,
                             "validateMyCredentials": True, "deleteMyCredentials": True,
                             "getMyCredentials": True}},
        "server": {"actions": {"publicApi": True, "openapi": True, "now": True,
                               "healthCheck": True}},
    }},
}
RECHECK = 1.0  # seconds a cached user/rights pair is trusted before storage is read again
SECURITY_CHANGED = "security:changed"  # what a cluster member tells the others


def user_from(doc: dict[str, Any]) -> User:
    source = dict(doc["_source"])
    profile_ids = source.pop("profileIds", [])
    return User(doc["_id"], list(profile_ids), source)


class SecurityStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._cache: dict[str, tuple[float, User, Rights, int]] = {}
        self._refreshing: dict[str, asyncio.Task[Any]] = {}
        self.peers: Tell | None = None  # cluster mode: tells the other members

    def forget(self) -> None:
        """Drop cached rights (another member changed users, roles or profiles)."""
        self._cache.clear()

    async def changed(self) -> None:
        """A user, role or profile changed: drop cached rights here, and on every other
        member in cluster mode (`peers`)."""
        self._cache.clear()
        if self.peers is not None:
            await self.peers(SECURITY_CHANGED, {})

    async def bootstrap(self) -> None:
        """The roles and profiles anonymous, default and admin always exist."""
        for name in PROTECTED:
            if not await self.storage.exists(ROLES, name):
                await self.storage.create_or_replace(ROLES, name, OPEN_ROLE)
            if not await self.storage.exists(PROFILES, name):
                await self.storage.create_or_replace(
                    PROFILES, name, {"policies": [{"roleId": name}], "rateLimit": 0})

    # -- roles -------------------------------------------------------------------------------

    async def put_role(self, role_id: str, body: Any, *, create: bool = False,
                       ) -> dict[str, Any]:
        check_id(role_id, "role")
        body = check_role(role_id, body)
        if create:
            doc = await self.storage.create(ROLES, body, id=role_id)
        else:
            doc = await self.storage.create_or_replace(ROLES, role_id, body)
        await self.changed()
        return {"_id": doc["_id"], "_source": body}

    async def get_role(self, role_id: str) -> dict[str, Any]:
        try:
            return await self.storage.get(ROLES, role_id)
        except errors.NotFoundError:
            raise errors.get("security.role.not_found", role_id) from None

    async def update_role(self, role_id: str, changes: Any) -> dict[str, Any]:
        current = (await self.get_role(role_id))["_source"]
        merged = {**current, **(changes or {})}
        return await self.put_role(role_id, merged)

    async def delete_role(self, role_id: str) -> None:
        if role_id in PROTECTED:
            raise errors.get("security.role.cannot_delete")
        await self.get_role(role_id)
        if await self.storage.count(PROFILES, translate({"term": {"policies.roleId": role_id}})):
            raise errors.get("security.role.in_use", role_id)
        await self.storage.delete(ROLES, role_id)
        await self.changed()

    # -- profiles ----------------------------------------------------------------------------

    async def put_profile(self, profile_id: str, body: Any, *, create: bool = False,
                          ) -> dict[str, Any]:
        check_id(profile_id, "profile")
        body = check_profile(profile_id, body)
        for policy in body["policies"]:
            await self.get_role(policy["roleId"])
        body = {"rateLimit": 0, **body}
        if create:
            doc = await self.storage.create(PROFILES, body, id=profile_id)
        else:
            doc = await self.storage.create_or_replace(PROFILES, profile_id, body)
        await self.changed()
        return {"_id": doc["_id"], "_source": body}

    async def get_profile(self, profile_id: str) -> dict[str, Any]:
        try:
            return await self.storage.get(PROFILES, profile_id)
        except errors.NotFoundError:
            raise errors.get("security.profile.not_found", profile_id) from None

    async def update_profile(self, profile_id: str, changes: Any) -> dict[str, Any]:
        current = (await self.get_profile(profile_id))["_source"]
        return await self.put_profile(profile_id, {**current, **(changes or {})})

    async def delete_profile(self, profile_id: str, *, remove_from_users: bool = False,
                             ) -> None:
        """Refused while users have the profile, unless `remove_from_users`: then it is taken
        from them (a user left without profile gets `anonymous`, as in Kuzzle), all in one
        transaction."""
        if profile_id in PROTECTED:
            raise errors.get("security.profile.cannot_delete")
        await self.get_profile(profile_id)
        holders = await self._all(USERS, translate({"term": {"profileIds": profile_id}}))
        if holders and not remove_from_users:
            raise errors.get("security.profile.in_use", profile_id)
        async with self.storage.transaction():
            for user in holders:
                left = [p for p in user["_source"]["profileIds"] if p != profile_id]
                await self.storage.update(USERS, user["_id"],
                                          {"profileIds": left or ["anonymous"]})
            await self.storage.delete(PROFILES, profile_id)
        await self.changed()

    # -- users -------------------------------------------------------------------------------

    async def _check_user(self, kuid: str, content: Any) -> dict[str, Any]:
        content = check_user(kuid, content)
        for profile_id in content["profileIds"]:
            await self.get_profile(profile_id)
        return content

    async def create_user(self, kuid: str, content: Any) -> User:
        content = await self._check_user(kuid, content)
        try:
            doc = await self.storage.create(USERS, content, id=kuid)
        except errors.BadRequestError:
            raise errors.get("security.user.already_exists", kuid) from None
        await self.changed()
        return user_from(doc)

    async def replace_user(self, kuid: str, content: Any) -> User:
        content = await self._check_user(kuid, content)
        doc = await self.storage.create_or_replace(USERS, kuid, content)
        await self.changed()
        return user_from(doc)

    async def get_user(self, kuid: str) -> User:
        try:
            return user_from(await self.storage.get(USERS, kuid))
        except errors.NotFoundError:
            raise errors.get("security.user.not_found", kuid) from None

    async def update_user(self, kuid: str, changes: dict[str, Any]) -> User:
        user = await self.get_user(kuid)
        merged = {**user.content, "profileIds": user.profileIds, **changes}
        return await self.replace_user(kuid, merged)

    async def delete_user(self, kuid: str) -> None:
        await self.get_user(kuid)
        await self.storage.delete(USERS, kuid)
        await self.changed()

    async def all_roles(self) -> list[dict[str, Any]]:
        return await self._all(ROLES)

    async def all_profiles(self) -> list[dict[str, Any]]:
        return await self._all(PROFILES)

    async def admin_exists(self) -> bool:
        return bool(await self.storage.count(USERS, translate({"term": {"profileIds": "admin"}})))

    # -- rights ------------------------------------------------------------------------------

    def cached_rights(self, kuid: str) -> tuple[User, Rights, int] | None:
        """What `user_rights` last found, without waiting: the request path's way in.

        Past RECHECK seconds the entry is still answered, and one refresh from storage starts
        in the background (changes made by other workers or nodes arrive that way); a user
        gone from storage is dropped then. None: nothing cached, call `user_rights`.
        """
        cached = self._cache.get(kuid)
        if cached is None:
            return None
        if time.monotonic() - cached[0] >= RECHECK and kuid not in self._refreshing:
            task = asyncio.get_running_loop().create_task(self._refresh(kuid))
            self._refreshing[kuid] = task
        return cached[1], cached[2], cached[3]

    async def _refresh(self, kuid: str) -> None:
        try:
            await self.user_rights(kuid, fresh=True)
        except errors.GatewayError as exc:
            if exc.status != 503:  # deleted user: forget, the next request will say
                self._cache.pop(kuid, None)
            # storage unreachable: the last rights known stay until it is back
        except Exception:
            self._cache.pop(kuid, None)
        finally:
            self._refreshing.pop(kuid, None)

    async def user_rights(self, kuid: str, *, fresh: bool = False,
                          ) -> tuple[User, Rights, int]:
        """The user, its rights and its rate limit (0: unlimited), cached for RECHECK s."""
        now = time.monotonic()
        cached = self._cache.get(kuid)
        if not fresh and cached is not None and now - cached[0] < RECHECK:
            return cached[1], cached[2], cached[3]
        user = ANONYMOUS if kuid == ANONYMOUS._id else await self.get_user(kuid)
        rights, rate = await self.rights_of(user.profileIds)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[kuid] = (now, user, rights, rate)
        return user, rights, rate

    async def rights_of(self, profile_ids: list[str]) -> tuple[Rights, int]:
        policies, limits = [], []
        for profile_id in profile_ids:
            try:
                profile = (await self.storage.get(PROFILES, profile_id))["_source"]
            except errors.NotFoundError:
                continue  # a deleted profile grants nothing
            limits.append(profile.get("rateLimit", 0))
            for policy in profile["policies"]:
                try:
                    role = (await self.storage.get(ROLES, policy["roleId"]))["_source"]
                except errors.NotFoundError:
                    continue
                policies.append(policy_from(policy["roleId"], role, policy.get("restrictedTo")))
        # as in Kuzzle: the most permissive profile wins, and 0 (unlimited) beats any limit
        rate = 0 if not limits or 0 in limits else max(limits)
        return Rights(policies), rate

    async def _all(self, collection: str, query: Any = None) -> list[dict[str, Any]]:
        out, start = [], 0
        while True:
            page = await self.storage.search(collection, query, from_=start, size=1000)
            out += page["hits"]
            start += len(page["hits"])
            if not page["hits"] or start >= page["total"]:
                return out


def check_user(kuid: Any, content: Any) -> dict[str, Any]:
    """A user's id and content, checked without storage (its profiles must also exist)."""
    check_id(kuid, "user")
    if kuid == ANONYMOUS._id:
        raise errors.get("api.assert.invalid_argument", "_id", "any id but -1 (anonymous)")
    if not isinstance(content, dict):
        raise errors.get("api.assert.invalid_type", "content", "object")
    profile_ids = content.get("profileIds")
    if (not isinstance(profile_ids, list) or not profile_ids
            or not all(isinstance(p, str) for p in profile_ids)):
        raise errors.get("security.user.no_profile", kuid)
    return content


def check_id(value: Any, kind: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 256 or value.startswith("_"):
        raise errors.get("api.assert.invalid_argument", "_id",
                         f"a {kind} id: a non-empty string not starting with '_'")
