"""The core `auth` controller: login, tokens, the current user and their own credentials."""

from __future__ import annotations

from typing import Any

from plugin_specs import hookimpl

from .. import errors, inputs
from ..request import Request
from ..security import cookies
from ..security.cookies import COOKIE_ARG, send_token
from ..security.policy import ANONYMOUS, User
from ..security.tokens import API_KEY, Token
from ..storage.base import MAX_FROM, MAX_SIZE
from .base import Controller, CoreController, controller

# the keys of a user's content that only the security controller may change
PROTECTED_CONTENT = ("_id", "profileIds", "kuid")
# auth:login arguments that are not credentials (credentials may come in the query string)
LOGIN_ARGS = frozenset(("strategy", "expiresIn", "cookieAuth", "refresh", COOKIE_ARG))


def flag(value: Any) -> bool:
    """A boolean argument as Kuzzle reads it: true, or `?name`, `name=true`, `name=1`."""
    return value is True or value in ("true", "1", 1)


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


def expires_at(token: Token) -> int:
    """Kuzzle's `expiresAt`: milliseconds since the epoch, -1 for a token that never expires."""
    return -1 if token.expiresAt is None else token.expiresAt


def token_answer(token: Token) -> dict[str, Any]:
    return {"_id": token.userId, "jwt": token.jwt, "expiresAt": expires_at(token),
            "ttl": token.ttl}


def check_rights_payload(request: Request) -> dict[str, Any]:
    """The RequestPayload of checkRights (auth and security): controller and action strings."""
    payload = request.input.body
    if not isinstance(payload, dict) or not payload:
        raise errors.get("api.assert.body_required")
    for key in ("controller", "action"):
        if not isinstance(payload.get(key), str):
            raise errors.get("api.assert.missing_argument", f"body.{key}")
    for key in ("index", "collection"):
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise errors.get("api.assert.invalid_type", f"body.{key}", "string")
    return payload


class AuthController(CoreController):
    @hookimpl
    def api_controllers(self) -> list[Controller]:
        return [controller("auth", {
            "login": (self.login, [("post", "/_login/:strategy"), ("get", "/_login/:strategy")]),
            "logout": (self.logout, [("post", "/_logout")]),
            "checkToken": (self.check_token, [("post", "/_checkToken")]),
            "refreshToken": (self.refresh_token, [("post", "/_refreshToken")]),
            "createToken": (self.create_token, [("post", "/_createToken")]),
            "checkRights": (self.check_rights, [("post", "/_checkRights")]),
            "createApiKey": (self.create_api_key, [("post", "/api-keys/_create")]),
            "searchApiKeys": (self.search_api_keys, [("post", "/api-keys/_search")]),
            "deleteApiKey": (self.delete_api_key, [("delete", "/api-keys/:_id")]),
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
        ttl = security.tokens.ttl_of(args.get("expiresIn"))
        if strategy.login is not None:  # strategies with their own flow (OAuth redirects)
            return await strategy.login(request, ttl)
        body = request.input.body
        if isinstance(body, dict) and body:
            credentials = body
        else:  # as Kuzzle's strategies read them: the query string when there is no body
            credentials = {k: v for k, v in args.items() if k not in LOGIN_ARGS}
        attempt = await security.login_started(request, credentials.get("username"))
        verified = await strategy.verify(request, credentials)
        if isinstance(verified, dict):
            raise errors.get("plugin.strategy.missing_user", verified["message"])
        answer = await self.issue_for(request, strategy.name, verified, ttl)
        await security.login_succeeded(attempt)
        return send_token(request, answer)

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
        return token_answer(self.security.tokens.issue(user._id, ttl))

    async def logout(self, request: Request) -> dict[str, Any]:
        tokens = self.security.tokens
        user = current_user(request)
        if flag(request.input.args.get("cookieAuth")):
            request.response.set_header("Set-Cookie", cookies.clear_cookie(request))
        if flag(request.input.args.get("global")):
            await tokens.revoke_all(user._id, keep_api_keys=True)
        token = request.context.token
        if token is not None and token.type != API_KEY:  # an API key is deleted, not logged out
            await tokens.revoke(token)
        return {"acknowledged": True}

    async def check_token(self, request: Request) -> dict[str, Any]:
        args = request.input.args
        if flag(args.get("cookieAuth")):
            token = args.get(COOKIE_ARG) or request.input.jwt
        else:
            token = (request.input.body or {}).get("token")
            if token is None:
                token = args.get("token")
        if token is None or token == "":  # as in Kuzzle: no token is the anonymous user's
            return {"valid": True, "kuid": ANONYMOUS._id, "expiresAt": -1}
        if not isinstance(token, str):
            raise errors.get("api.assert.invalid_type", "body.token", "string")
        try:
            verified = await self.security.tokens.verify(token)
            await self.security.store.get_user(verified.userId)
        except errors.GatewayError as exc:
            return {"valid": False, "state": exc.message}
        return {"valid": True, "kuid": verified.userId, "expiresAt": expires_at(verified)}

    async def refresh_token(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        token = request.context.token
        if token is None:
            raise errors.get("security.token.refresh_forbidden", "This token")
        if token.type == API_KEY or token.expiresAt is None:  # as Kuzzle
            raise errors.get("security.token.refresh_forbidden",
                             "API Key" if token.type == API_KEY else "Token with infinite TTL")
        tokens = self.security.tokens
        ttl = tokens.ttl_of(request.input.args.get("expiresIn"))
        fresh = tokens.issue(user._id, ttl)
        await tokens.revoke(token)
        return send_token(request, token_answer(fresh))

    async def create_token(self, request: Request) -> dict[str, Any]:
        """A token for the current user, possibly single-use; never one without expiry."""
        user = current_user(request)
        args = request.input.args
        if str(args.get("expiresIn")) == "-1":
            raise errors.get("security.token.invalid_expiration", "cannot be infinite")
        tokens = self.security.tokens
        ttl = tokens.ttl_of(args.get("expiresIn"))
        if ttl is None:
            raise errors.get("security.token.invalid_expiration", "cannot be infinite")
        single_use = flag(args.get("singleUse"))
        token = (await tokens.issue_single_use(user._id, ttl) if single_use
                 else tokens.issue(user._id, ttl))
        return {"expiresAt": expires_at(token), "singleUse": single_use, "token": token.jwt,
                "ttl": token.ttl}

    async def check_rights(self, request: Request) -> dict[str, bool]:
        payload = check_rights_payload(request)
        user = request.context.user or ANONYMOUS
        rights = await self.security.rights_for(user._id)
        return {"allowed": rights.allows(payload["controller"], payload["action"],
                                         payload.get("index"), payload.get("collection"))}

    # -- API keys ----------------------------------------------------------------------------

    async def create_api_key(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        args = request.input.args
        return await self.security.apikeys.create(
            user, args.get("expiresIn"), (request.input.body or {}).get("description"),
            request.input.resource._id)

    async def search_api_keys(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        return await search_keys(self.security, request, user._id)

    async def delete_api_key(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        return await self.security.apikeys.delete(user._id, request.input.resource._id)

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


async def search_keys(security: Any, request: Request, kuid: str) -> dict[str, Any]:
    """searchApiKeys (auth and security): `body` is the query, `lang`, `from`, `size`."""
    args = request.input.args
    start = inputs.int_arg(args.get("from"), "from", 0, MAX_FROM)
    size = inputs.int_arg(args.get("size"), "size", 10, MAX_SIZE)
    return await security.apikeys.search(kuid, request.input.body, args.get("lang"), start,
                                         size)
