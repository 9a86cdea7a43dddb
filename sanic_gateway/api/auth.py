"""The core `auth` controller: login, tokens, the current user and their own credentials."""

from __future__ import annotations

from typing import Any

from plugin_specs import hookimpl

from .. import errors
from ..request import Request
from ..security.policy import ANONYMOUS, User
from .base import Controller, CoreController, controller

# the keys of a user's content that only the security controller may change
PROTECTED_CONTENT = ("_id", "profileIds", "kuid")


def strategy_arg(request: Request) -> str:
    name = request.input.args.get("strategy")
    if name is None or name == "":
        raise errors.get("api.assert.missing_argument", "strategy")
    if not isinstance(name, str):
        raise errors.get("api.assert.invalid_type", "strategy", "string")
    return name


def current_user(request: Request) -> User:
    user = request.context.user
    if user is None or user._id == ANONYMOUS._id:
        raise errors.get("security.rights.unauthorized", request.input.controller,
                         request.input.action)
    return user


def user_response(user: User, strategies: list[str] | None = None) -> dict[str, Any]:
    out = user.to_dict()
    if strategies is not None:
        out["strategies"] = strategies
    return out


class AuthController(CoreController):
    @hookimpl
    def api_controllers(self) -> list[Controller]:
        return [controller("auth", {
            "login": (self.login, [("post", "/_login/:strategy"), ("get", "/_login/:strategy")]),
            "logout": (self.logout, [("post", "/_logout")]),
            "checkToken": (self.check_token, [("post", "/_checkToken")]),
            "refreshToken": (self.refresh_token, [("post", "/_refreshToken")]),
            "getCurrentUser": (self.get_current_user, [("get", "/_me"), ("get", "/users/_me")]),
            "getMyRights": (self.get_my_rights,
                            [("get", "/_me/_rights"), ("get", "/users/_me/_rights")]),
            "getStrategies": (self.get_strategies, [("get", "/strategies")]),
            "updateSelf": (self.update_self, [("put", "/_me"), ("put", "/_updateSelf")]),
            "createMyCredentials": (self.create_my_credentials, [
                ("post", "/_me/credentials/:strategy/_create"),
                ("post", "/credentials/:strategy/_me/_create")]),
            "updateMyCredentials": (self.update_my_credentials, [
                ("put", "/_me/credentials/:strategy/_update"),
                ("put", "/credentials/:strategy/_me/_update")]),
            "credentialsExist": (self.credentials_exist, [
                ("get", "/_me/credentials/:strategy/_exists"),
                ("get", "/credentials/:strategy/_me/_exists")]),
            "validateMyCredentials": (self.validate_my_credentials, [
                ("post", "/_me/credentials/:strategy/_validate"),
                ("post", "/credentials/:strategy/_me/_validate")]),
            "deleteMyCredentials": (self.delete_my_credentials, [
                ("delete", "/_me/credentials/:strategy"),
                ("delete", "/credentials/:strategy/_me")]),
            "getMyCredentials": (self.get_my_credentials, [
                ("get", "/_me/credentials/:strategy"),
                ("get", "/credentials/:strategy/_me")]),
        })]

    # -- tokens ------------------------------------------------------------------------------

    async def login(self, request: Request) -> Any:
        security = self.security
        strategy = security.strategies.get(strategy_arg(request))
        args = request.input.args
        if not (strategy.login is not None and "state" in args):
            # an OAuth callback is not an attempt: its one-time state already guards it
            security.check_login_rate(request)
        ttl = security.tokens.ttl_of(request.input.args.get("expiresIn"))
        if strategy.login is not None:  # strategies with their own flow (OAuth redirects)
            return await strategy.login(request, ttl)
        credentials = request.input.body if isinstance(request.input.body, dict) else {}
        verified = await strategy.verify(request, credentials)
        if isinstance(verified, dict):
            raise errors.get("plugin.strategy.missing_user", verified["message"])
        return await self.issue_for(request, strategy.name, verified, ttl)

    async def issue_for(self, request: Request, strategy: str, kuid: str,
                        ttl: float | None) -> dict[str, Any]:
        """Fire auth:strategyAuthenticated for `kuid` and answer like a login."""
        try:
            user = await self.security.store.get_user(kuid)
        except errors.NotFoundError:
            raise errors.get("plugin.strategy.unknown_kuid", strategy, kuid) from None
        outcome = await self.gateway.bus.trigger("auth:strategyAuthenticated",
                                                 {"strategy": strategy, "content": user})
        user = outcome.get("content", user) if isinstance(outcome, dict) else user
        token = self.security.tokens.issue(user._id, ttl)
        return {"_id": user._id, "jwt": token.jwt, "expiresAt": token.expiresAt,
                "ttl": token.ttl}

    async def logout(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        tokens = self.security.tokens
        if request.input.args.get("global") in (True, "true", "1"):
            await tokens.revoke_all(user._id)
        if request.context.token is not None:
            await tokens.revoke(request.context.token)
        return {"acknowledged": True}

    async def check_token(self, request: Request) -> dict[str, Any]:
        token = (request.input.body or {}).get("token")
        if token is None or token == "":  # as in Kuzzle: no token is the anonymous user's
            return {"valid": True, "kuid": ANONYMOUS._id, "expiresAt": -1}
        if not isinstance(token, str):
            raise errors.get("api.assert.invalid_type", "body.token", "string")
        try:
            verified = await self.security.tokens.verify(token)
            await self.security.store.get_user(verified.userId)
        except errors.GatewayError as exc:
            return {"valid": False, "state": exc.message}
        return {"valid": True, "kuid": verified.userId, "expiresAt": verified.expiresAt}

    async def refresh_token(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        token = request.context.token
        if token is None:
            raise errors.get("security.token.refresh_forbidden", "This token")
        tokens = self.security.tokens
        ttl = tokens.ttl_of(request.input.args.get("expiresIn"))
        fresh = tokens.issue(user._id, ttl)
        await tokens.revoke(token)
        return {"_id": user._id, "jwt": fresh.jwt, "expiresAt": fresh.expiresAt,
                "ttl": fresh.ttl}

    # -- the current user ----------------------------------------------------------------------

    async def get_current_user(self, request: Request) -> dict[str, Any]:
        user = request.context.user or ANONYMOUS
        names = []
        for strategy in self.security.strategies.all():
            if user._id != ANONYMOUS._id and await strategy.call("exists", request, user._id):
                names.append(strategy.name)
        return user_response(user, names)

    async def get_my_rights(self, request: Request) -> dict[str, Any]:
        user = request.context.user or ANONYMOUS
        rights = await self.security.rights_for(user._id)
        return {"hits": rights.describe(), "total": len(rights.describe())}

    async def get_strategies(self, request: Request) -> list[str]:
        return self.security.strategies.names()

    async def update_self(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        changes = request.input.body
        if not isinstance(changes, dict) or not changes:
            raise errors.get("api.assert.body_required")
        for key in PROTECTED_CONTENT:
            if key in changes:
                raise errors.get("api.assert.forbidden_argument", f"body.{key}")
        updated = await self.security.store.update_user(user._id, changes)
        return user_response(updated)

    # -- the current user's credentials -----------------------------------------------------

    async def create_my_credentials(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        strategy = self.security.strategies.get(strategy_arg(request))
        if await strategy.call("exists", request, user._id):
            raise errors.get("security.credentials.already_exist", user._id, strategy.name)
        await strategy.call("validate", request, request.input.body, user._id, False)
        return await strategy.call("create", request, request.input.body, user._id) or {}

    async def update_my_credentials(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        strategy = self.security.strategies.get(strategy_arg(request))
        if not await strategy.call("exists", request, user._id):
            raise errors.get("security.credentials.not_found", strategy.name, user._id)
        await strategy.call("validate", request, request.input.body, user._id, True)
        return await strategy.call("update", request, request.input.body, user._id) or {}

    async def credentials_exist(self, request: Request) -> bool:
        user = current_user(request)
        strategy = self.security.strategies.get(strategy_arg(request))
        return bool(await strategy.call("exists", request, user._id))

    async def validate_my_credentials(self, request: Request) -> bool:
        user = current_user(request)
        strategy = self.security.strategies.get(strategy_arg(request))
        exists = await strategy.call("exists", request, user._id)
        return bool(await strategy.call("validate", request, request.input.body, user._id,
                                        bool(exists)))

    async def delete_my_credentials(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        strategy = self.security.strategies.get(strategy_arg(request))
        if not await strategy.call("exists", request, user._id):
            raise errors.get("security.credentials.not_found", strategy.name, user._id)
        await strategy.call("delete", request, user._id)
        return {"acknowledged": True}

    async def get_my_credentials(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        strategy = self.security.strategies.get(strategy_arg(request))
        if not await strategy.call("exists", request, user._id):
            raise errors.get("security.credentials.not_found", strategy.name, user._id)
        return await strategy.get_info(request, user._id)
