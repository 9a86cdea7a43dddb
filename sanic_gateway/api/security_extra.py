"""The security controller's actions for searching (two languages, mappings, scroll cursors),
deleting many at once, checking rights of others and the smaller Kuzzle actions; mixed into
`SecurityController`, whose helpers (`_create_user`, `delete_user`, ...) they reuse."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from .. import errors, inputs
from ..request import Request
from ..security import search
from ..security.policy import ANONYMOUS
from ..security.rights import check_role, check_role_api, role_api
from ..security.store import PROFILES, RESTRICTED_ROLES, ROLES, USERS, user_from
from ..storage.base import MAX_FROM, MAX_SIZE
from ..storage.es_query import after, translate
from .auth import strategy_arg, user_response

log = logging.getLogger("sanic_gateway.security")

SECURITY_COLLECTIONS = (USERS, PROFILES, ROLES)
RESTRICTED_PROFILE_IDS = ["default"]  # Kuzzle's security.restrictedProfileIds
MAX_WRITE = 200  # ids per mDelete*: Kuzzle's limits.documentsWriteCount
LOCAL_FIELDS = {"username"}  # what searchUsersByCredentials may query of local credentials


def flag(value: Any) -> bool:
    """A boolean argument; `?force` alone in a query string is true, as in Kuzzle."""
    return value in (True, "true", "1", "")


def id_list(request: Request) -> list[str]:
    """`body.ids`, or the `ids` argument (an array or a comma-separated string)."""
    ids = request.input.body.get("ids") if isinstance(request.input.body, dict) else None
    if ids is None:
        ids = request.input.args.get("ids")
        if isinstance(ids, str):
            ids = [i for i in ids.split(",") if i]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise errors.get("api.assert.invalid_type", "body.ids", "array of strings")
    return ids


class SecurityExtras:
    """Mixed into SecurityController (which provides `security`, `gateway` and helpers)."""

    security: Any
    gateway: Any

    def extra_actions(self) -> dict[str, Any]:
        return {
            "checkRights": (self.check_rights, [("post", "/_checkRights/:userId")]),
            "restrictDefaultRights": (self.restrict_default_rights, [
                ("post", "/_restrictDefaultRights")]),
            "createRestrictedUser": (self.create_restricted_user, [
                ("post", "/users/_createRestricted"), ("post", "/users/:_id/_createRestricted")]),
            "upsertUser": (self.upsert_user, [("post", "/users/:_id/_upsert")]),
            "revokeTokens": (self.revoke_tokens, [("delete", "/users/:_id/tokens")]),
            "refresh": (self.refresh, [("post", "/_security/:collection/_refresh")]),
            "mDeleteUsers": (self.m_delete_users, [("post", "/users/_mDelete")]),
            "mDeleteProfiles": (self.m_delete_profiles, [("post", "/profiles/_mDelete")]),
            "mDeleteRoles": (self.m_delete_roles, [("post", "/roles/_mDelete")]),
            "scrollUsers": (self.scroll_users, [("get", "/users/_scroll/:scrollId")]),
            "scrollProfiles": (self.scroll_profiles, [("get", "/profiles/_scroll/:scrollId")]),
            "searchUsersByCredentials": (self.search_users_by_credentials, [
                ("post", "/credentials/:strategy/users/_search")]),
            "getCredentialFields": (self.get_credential_fields, [
                ("get", "/credentials/:strategy/_fields")]),
            "getAllCredentialFields": (self.get_all_credential_fields, [
                ("get", "/credentials/_fields")]),
            "getUserMapping": (self.mapping_getter(USERS), [("get", "/users/_mapping")]),
            "updateUserMapping": (self.mapping_updater(USERS), [("put", "/users/_mapping")]),
            "getProfileMapping": (self.mapping_getter(PROFILES), [("get", "/profiles/_mapping")]),
            "updateProfileMapping": (self.mapping_updater(PROFILES),
                                     [("put", "/profiles/_mapping")]),
            "getRoleMapping": (self.mapping_getter(ROLES), [("get", "/roles/_mapping")]),
            "updateRoleMapping": (self.mapping_updater(ROLES), [("put", "/roles/_mapping")]),
        }

    # -- roles against the API ---------------------------------------------------------------

    def check_role_body(self, request: Request, role_id: Any, body: Any) -> None:
        """Kuzzle's refusal of roles naming unknown controllers or actions (`force` lets
        unknown plugin controllers and actions through)."""
        if isinstance(role_id, str) and isinstance(body, dict):
            check_role_api(role_id, check_role(role_id, body), role_api(self.gateway.api),
                           force=flag(request.input.args.get("force")))

    # -- users -------------------------------------------------------------------------------

    async def check_rights(self, request: Request) -> dict[str, bool]:
        kuid = request.input.args.get("userId")
        if not isinstance(kuid, str) or not kuid:
            raise errors.get("api.assert.missing_argument", "userId")
        body = request.input.body or {}
        for name in ("controller", "action"):
            if not isinstance(body.get(name), str):
                raise errors.get("api.assert.missing_argument", f"body.{name}")
        if kuid != ANONYMOUS._id:
            await self.security.store.get_user(kuid)
        rights = await self.security.rights_for(kuid)
        index, collection = body.get("index"), body.get("collection")
        return {"allowed": rights.allows(
            body["controller"], body["action"], index if isinstance(index, str) else None,
            collection if isinstance(collection, str) else None)}

    async def restrict_default_rights(self, request: Request) -> None:
        """What `createFirstAdmin?reset` does: the `anonymous` and `default` roles get
        Kuzzle's restricted rights."""
        for role_id, role in RESTRICTED_ROLES.items():
            await self.security.store.put_role(role_id, role)
        return None

    async def create_restricted_user(self, request: Request) -> dict[str, Any]:
        body = request.input.body or {}
        content = inputs.object_arg(body.get("content"), "body.content")
        inputs.object_arg(body.get("credentials"), "body.credentials")
        if "profileIds" in content:
            raise errors.get("api.assert.forbidden_argument", "body.content.profileIds")
        kuid = request.input.resource._id or uuid.uuid4().hex
        return await self._create_user(request, kuid,  # type: ignore[attr-defined]
                                       {**content, "profileIds": list(RESTRICTED_PROFILE_IDS)},
                                       body.get("credentials"))

    async def upsert_user(self, request: Request) -> dict[str, Any]:
        """Update the user's content; create it (with `default` under `content`) if absent."""
        kuid = request.input.resource._id
        if kuid is None:
            raise errors.get("api.assert.missing_argument", "_id")
        body = request.input.body or {}
        content = body.get("content")
        if not isinstance(content, dict):
            raise errors.get("api.assert.missing_argument", "body.content")
        if not isinstance(content.get("profileIds"), list):
            raise errors.get("api.assert.missing_argument", "body.content.profileIds")
        default = inputs.object_arg(body.get("default"), "body.default")
        inputs.object_arg(body.get("credentials"), "body.credentials")
        store = self.security.store
        try:
            return user_response(await store.update_user(kuid, content))
        except errors.NotFoundError as exc:
            if exc.id != "security.user.not_found":
                raise
        return await self._create_user(request, kuid,  # type: ignore[attr-defined]
                                       {**default, **content}, body.get("credentials"))

    async def revoke_tokens(self, request: Request) -> None:
        kuid = request.input.resource._id
        if kuid is None:
            raise errors.get("api.assert.missing_argument", "_id")
        await self.security.tokens.revoke_all(kuid)
        return None

    async def refresh(self, request: Request) -> None:
        """Kuzzle refreshes the Elasticsearch index; every write here is visible at once."""
        collection = request.input.resource.collection
        if collection not in SECURITY_COLLECTIONS:
            raise errors.get("api.assert.unexpected_argument", collection,
                             ", ".join(SECURITY_COLLECTIONS))
        return None

    # -- many deletions ----------------------------------------------------------------------

    async def _m_delete(self, request: Request, delete: Any) -> list[str]:
        """Kuzzle's mDelete*: the ids deleted; if some failed, a 206 PartialError listing the
        errors beside the result."""
        ids = id_list(request)
        if len(ids) > MAX_WRITE:
            raise errors.get("services.storage.write_limit_exceeded")
        done: list[str] = []
        failed: list[errors.GatewayError] = []
        for one in dict.fromkeys(ids):
            try:
                await delete(one)
                done.append(one)
            except errors.GatewayError as exc:
                failed.append(exc)
        if failed:
            partial = errors.get("services.storage.incomplete_delete",
                                 "; ".join(e.message for e in failed))
            partial.errors = failed  # type: ignore[attr-defined]
            request.error = partial
            request.response.status = partial.status
        return done

    async def m_delete_users(self, request: Request) -> list[str]:
        async def one(kuid: str) -> None:
            sub = Request({"_id": kuid}, parent=request)
            await self.delete_user(sub)  # type: ignore[attr-defined]
        return await self._m_delete(request, one)

    async def m_delete_profiles(self, request: Request) -> list[str]:
        return await self._m_delete(request, self.security.store.delete_profile)

    async def m_delete_roles(self, request: Request) -> list[str]:
        return await self._m_delete(request, self.security.store.delete_role)

    # -- searches ----------------------------------------------------------------------------

    async def run_search(self, request: Request, collection: str, query: Any,
                         *, scrolls: bool = True) -> dict[str, Any]:
        """A page of `collection` for `query` in the request's language, with `scrollId`
        when the request gives `scroll`."""
        args = request.input.args
        start = inputs.int_arg(args.get("from"), "from", 0, MAX_FROM)
        size = inputs.int_arg(args.get("size"), "size", 10, MAX_SIZE)
        lang = search.lang_of(args)
        sort = (request.input.body or {}).get("sort")
        storage = self.security.storage
        compiled = await search.compile_query(storage, collection, query, sort, lang)
        lang = "koncorde" if compiled is query else "elasticsearch"
        search_after = (request.input.body or {}).get("search_after")
        if search_after is not None:  # the SDK's next page of a sorted search
            compiled = after(compiled, sort, search_after)
        found = await storage.search(collection, compiled, from_=start, size=size, sort=sort)
        out = {"total": found["total"], "hits": found["hits"]}
        ttl = args.get("scroll")
        if scrolls and ttl is not None:
            seconds = search.scroll_ttl(ttl)
            out["scrollId"] = await search.open_scroll(storage, {
                "collection": collection, "query": query, "sort": sort,
                "lang": lang,
                "after": search_after,
                "offset": start + len(found["hits"]), "size": size, "total": found["total"],
            }, seconds)
        return out

    async def _scroll(self, request: Request, collection: str) -> dict[str, Any]:
        storage = self.security.storage
        scroll_id = request.input.args.get("scrollId")
        ttl = request.input.args.get("scroll")
        seconds = search.scroll_ttl(ttl) if ttl is not None else None
        state = await search.take_scroll(storage, scroll_id, collection)
        compiled = await search.compile_query(storage, collection, state["query"],
                                              state["sort"], state["lang"])
        if state.get("after") is not None:
            compiled = after(compiled, state["sort"], state["after"])
        found = await storage.search(collection, compiled, from_=state["offset"],
                                     size=state["size"], sort=state["sort"])
        state = {**state, "offset": state["offset"] + len(found["hits"]),
                 "total": found["total"], "ttl": seconds or state["ttl"]}
        if not found["hits"]:
            state["offset"] = state["total"]
        await search.keep_scroll(storage, scroll_id, state)
        return {"total": found["total"], "hits": found["hits"], "scrollId": scroll_id}

    async def scroll_users(self, request: Request) -> dict[str, Any]:
        out = await self._scroll(request, USERS)
        out["hits"] = [user_response(user_from(h)) for h in out["hits"]]
        return out

    async def scroll_profiles(self, request: Request) -> dict[str, Any]:
        return await self._scroll(request, PROFILES)

    async def search_users_by_credentials(self, request: Request) -> dict[str, Any]:
        """The local strategy searches its usernames; plugin strategies have no `search`
        method here, answered with Kuzzle's missing_optional_method, as a 400 rather than
        Kuzzle's 500: the client asked what this strategy cannot do, the server is fine."""
        strategy = self.security.strategies.get(strategy_arg(request))
        if strategy.name != "local" or strategy.owner is not None:
            error = errors.get("plugin.strategy.missing_optional_method", "search",
                               strategy.name)
            error.status = 400
            raise error
        args = request.input.args
        start = inputs.int_arg(args.get("from"), "from", 0, MAX_FROM)
        size = inputs.int_arg(args.get("size"), "size", 10, MAX_SIZE)
        body = request.input.body or {}
        query, lang = body.get("query"), search.lang_of(args)
        if lang == "koncorde" or (lang is None and search.looks_like_koncorde(query)):
            raise errors.get("api.assert.invalid_argument", "lang",
                             '"elasticsearch" (credentials are searched with its language)')
        compiled = translate(query, LOCAL_FIELDS.__contains__)
        sort = body.get("sort")
        for key in search._sort_fields(sort):
            if key not in LOCAL_FIELDS and key != "_id":
                raise errors.get("services.storage.invalid_search_query",
                                 f"sort: field {key!r} cannot be sorted on")
        from ..security.strategies import LocalStrategy
        found = await self.security.storage.search(LocalStrategy.COLLECTION, compiled,
                                                   from_=start, size=size, sort=sort)
        return {"total": found["total"], "hits": [
            {"kuid": h["_id"], "username": h["_source"].get("username")} for h in found["hits"]]}

    # -- credentials fields and mappings -----------------------------------------------------

    async def get_credential_fields(self, request: Request) -> list[str]:
        return list(self.security.strategies.get(strategy_arg(request)).fields)

    async def get_all_credential_fields(self, request: Request) -> dict[str, list[str]]:
        return {s.name: list(s.fields) for s in self.security.strategies.all()}

    def mapping_getter(self, collection: str) -> Any:
        async def get(request: Request) -> dict[str, Any]:
            mapping = await search.get_mapping(self.security.storage, collection)
            return {"mapping": mapping.get("properties", {})}
        return get

    def mapping_updater(self, collection: str) -> Any:
        async def update(request: Request) -> dict[str, Any]:
            return await search.update_mapping(self.security.storage, collection,
                                               request.input.body)
        return update
