"""Security as the funnel sees it: authenticate every request, check its rights and rate.

Also owns what the auth and security controllers work on: the store (roles, profiles, users),
the tokens and the strategies. In cluster mode (`shared` set) the profile rate limits and the
login-attempt counters are counted in Redis for the whole cluster, locally while it is down.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

from .. import errors
from ..api import Action
from ..request import Request
from ..storage import Storage
from .apikeys import ApiKeys
from .declared import ungranted, user_entry
from .logins import FORGET_AFTER, LoginGuard
from .oauth import IssueToken, OAuthStrategy
from .policy import ANONYMOUS, User
from .rights import OPEN_ROLE, Rights, grants_everything
from .rights import where as located_at
from .store import PROTECTED, RESTRICTED_ROLES, SecurityStore
from .strategies import LocalStrategy, Strategies
from .tokens import Tokens
from .usernames import username_key

if TYPE_CHECKING:
    from ..cluster.counters import SharedCounters

log = logging.getLogger("sanic_gateway.security")


class RateCounter:
    """Requests per key in the current one-second window (Kuzzle's rate limiter)."""

    def __init__(self) -> None:
        self._second = 0
        self._counts: dict[str, int] = {}

    def hit(self, key: str) -> int:
        now = int(time.monotonic())
        if now != self._second:
            self._second = now
            self._counts = {}
        count = self._counts[key] = self._counts.get(key, 0) + 1
        return count


class Security:
    def __init__(self, storage: Storage, config: dict[str, Any],
                 issue: IssueToken | None = None) -> None:
        jwt = config["auth"]["jwt"]
        self.issue = issue
        self.providers = {name: spec["oauth2"]
                          for name, spec in (config["auth"].get("strategies") or {}).items()
                          if isinstance(spec, dict) and spec.get("oauth2")}
        self.storage = storage
        self.store = SecurityStore(storage)
        self.tokens = Tokens(storage, secret=jwt["secret"], algorithm=jwt["algorithm"],
                             expires_in=jwt["expires_in"], max_ttl=jwt["max_ttl"])
        self.strategies = Strategies()
        self.declared = config.get("security") or {}
        self.enabled_local = "local" in (config["auth"].get("strategies") or {})
        limits = config["limits"]
        self.login_limit = limits["login_attempts_per_second"]
        self.login_guard = LoginGuard(limits["login_failures_per_username"],
                                      limits["login_failure_delay"],
                                      limits["login_failure_max_delay"])
        self.apikeys = ApiKeys(storage, self.tokens)
        self._requests = RateCounter()
        self._logins = RateCounter()
        self.shared: SharedCounters | None = None  # cluster mode: counters in Redis

    async def start(self) -> None:
        """Tokens, the built-in roles and profiles, the strategies of the core. The declared
        entries come later (`apply_declared`), once plugins have registered their strategies
        and run their init: declared users may have credentials of a plugin strategy."""
        await self.tokens.start()
        await self.store.bootstrap()
        if self.enabled_local:
            local = LocalStrategy(self.storage)
            await local.setup()
            await self.strategies.register(local.strategy())
        for name, conf in self.providers.items():
            assert self.issue is not None, "OAuth providers need the gateway's login answer"
            provider = OAuthStrategy(name, conf, self.storage, self.store, self.issue)
            await self.strategies.register(provider.strategy())

    async def warn_if_open(self, controllers: Iterable[str] = ()) -> None:
        """Warn about an open gateway, or, closed, about a non-admin profile given a
        built-in role that allows everything (security included), and about `controllers`
        (the plugins') that no role grants."""
        if not await self.is_closed():
            log.warning("anonymous users may call every action, security included: declare "
                        "security.roles.anonymous in gateway.yaml, or create the first admin "
                        "with POST /_createFirstAdmin/<id>?reset")
            return
        open_roles = set()
        for role_id in PROTECTED:
            role = await self.store.get_role(role_id)
            if grants_everything(role["_source"]):
                open_roles.add(role_id)
        for profile in await self.store.all_profiles():
            if profile["_id"] == "admin":
                continue
            for policy in profile["_source"]["policies"]:
                if policy["roleId"] in open_roles:
                    log.warning("profile %r uses the built-in role %r, which allows every "
                                "action, security included: its users may create admins; "
                                "give the profile a role of its own", profile["_id"],
                                policy["roleId"])
        roles = [role["_source"] for role in await self.store.all_roles()]
        for name in ungranted(roles, controllers):
            log.warning("plugin controller %r: no role grants it and the gateway is closed, "
                        "so only admins may call it; grant it in a role (security.roles in "
                        "gateway.yaml)", name)

    async def is_closed(self) -> bool:
        """Closed: visitors (the anonymous role) cannot manage security."""
        anonymous, _ = await self.store.rights_of(["anonymous"])
        return not anonymous.allows("security", "createUser")

    async def apply_declared(self) -> None:
        """gateway.yaml's `security:` roles, profiles, then users: created or updated (the
        file was checked by `declared.check_declared` already). An error carries `declared`,
        the key path of the entry, for the start-up message. Then, if the gateway is closed,
        the built-in `default` role loses its open rights unless the file declares it."""
        where: tuple[str, ...] = ("security",)
        try:
            for role_id, body in (self.declared.get("roles") or {}).items():
                where = ("security", "roles", role_id)
                await self.store.put_role(role_id, body)
            for profile_id, body in (self.declared.get("profiles") or {}).items():
                where = ("security", "profiles", profile_id)
                await self.store.put_profile(profile_id, body)
            for kuid, body in (self.declared.get("users") or {}).items():
                where = ("security", "users", kuid)
                content, credentials = user_entry(kuid, body)
                await self.store.replace_user(kuid, content)
                for name, values in credentials.items():
                    where = ("security", "users", kuid, "credentials", name)
                    await self.set_credentials(None, name, kuid, values)
        except errors.GatewayError as exc:
            exc.declared = (*where, *located_at(exc))  # type: ignore[attr-defined]
            raise
        await self.restrict_default()

    async def restrict_default(self) -> None:
        """Kuzzle's restricted rights for `default` (those createFirstAdmin with `reset`
        gives) when the gateway is closed: every user without a profile of its own, and every
        first OAuth login, has it. Only the untouched `*:*` role is replaced; a role declared
        in gateway.yaml or changed through the API stays as it is."""
        if "default" in (self.declared.get("roles") or {}) or not await self.is_closed():
            return
        role = await self.store.get_role("default")
        if role["_source"] == OPEN_ROLE:
            await self.store.put_role("default", RESTRICTED_ROLES["default"])
            log.info("the gateway is closed: the built-in role 'default' gets the restricted "
                     "rights of a new Kuzzle (declare security.roles.default to choose them)")

    async def set_credentials(self, request: Request | None, name: str, kuid: str,
                              credentials: Any) -> dict[str, Any]:
        """Create or update `kuid`'s credentials for strategy `name`, validated first; the
        check and the write are one storage transaction."""
        strategy = self.strategies.get(name)
        exists = await strategy.call("exists", request, kuid)
        await strategy.call("validate", request, credentials, kuid, exists)
        if strategy.prepare is not None:
            credentials = await strategy.prepare(credentials)
        async with self.storage.transaction():
            exists = await strategy.call("exists", request, kuid)
            method = "update" if exists else "create"
            return await strategy.call(method, request, credentials, kuid) or {}

    # -- the funnel's interface ---------------------------------------------------------------

    def authorize(self, request: Request, action: Action,
                  check_rights: bool = True) -> Awaitable[None] | None:
        """Authenticate `request` and check it may run `action` (rights, then rate limit).

        Raises 401/403/429. Returns None when everything was known without I/O, the common
        case (a cached token and cached rights), else an awaitable doing the rest: the request
        path then costs no coroutine and no storage round-trip.
        """
        jwt = request.input.jwt
        if jwt:
            token = self.tokens.cached(jwt)
            found = self.store.cached_rights(token.userId) if token is not None else None
            if found is None:
                return self._authorize_slowly(request, action, check_rights)
            request.context.token = token
        else:
            found = self.store.cached_rights(ANONYMOUS._id)
            if found is None:
                return self._authorize_slowly(request, action, check_rights)
        request.context.user = found[0]
        if check_rights:
            return self._check(request, action, *found)
        return None

    async def _authorize_slowly(self, request: Request, action: Action,
                                check_rights: bool) -> None:
        jwt = request.input.jwt
        kuid = ANONYMOUS._id
        if jwt:
            token = await self.tokens.verify(jwt)
            request.context.token = token
            kuid = token.userId
        try:
            found = await self.store.user_rights(kuid)
        except errors.NotFoundError:
            raise errors.get("security.token.invalid") from None
        request.context.user = found[0]
        if check_rights:
            pending = self._check(request, action, *found)
            if pending is not None:
                await pending

    def _check(self, request: Request, action: Action, user: User, rights: Rights,
               rate: int) -> Awaitable[None] | None:
        """Raise 401/403/429; an awaitable when the rate is counted in Redis."""
        resource = request.input.resource
        if not rights.allows(action.controller, action.name, resource.index,
                             resource.collection):
            if user._id == ANONYMOUS._id:
                raise errors.get("security.rights.unauthorized", action.controller, action.name)
            raise errors.get("security.rights.forbidden", action.controller, action.name,
                             user._id)
        if not rate or (action.controller == "auth" and action.name == "logout"
                        and user._id != ANONYMOUS._id):
            return None
        if self.shared is not None and self.shared.usable:
            return self._check_shared_rate(user._id, rate)
        if self._requests.hit(user._id) > rate:
            raise errors.get("api.process.too_many_requests")
        return None

    async def _check_shared_rate(self, kuid: str, rate: int) -> None:
        assert self.shared is not None
        count = await self.shared.hit(kuid)
        if count is None:  # Redis went away meanwhile
            count = self._requests.hit(kuid)
        if count > rate:
            raise errors.get("api.process.too_many_requests")

    def check_login_rate(self, request: Request) -> None:
        """`limits.login_attempts_per_second` per connection, as in Kuzzle (over HTTP, a
        keep-alive connection is one connection; the address is not the key: every user
        behind one proxy would share it)."""
        if not self.login_limit:
            return
        if self._logins.hit(request.context.connection.id) > self.login_limit:
            request.response.set_header("Retry-After", "1")
            raise errors.get("api.process.too_many_logins_requests")

    async def login_started(self, request: Request, username: Any) -> bytes | None:
        """Count a login attempt on `username` (the brute-force defence, `LoginGuard`); 429
        with Retry-After while it is locked. Returns the key to pass to `login_succeeded`."""
        if not isinstance(username, str) or not username or len(username) > 1024:
            return None
        # a 16-byte digest: an entry costs the same whatever the username's length
        key = hashlib.blake2b(username_key(username).encode(), digest_size=16).digest()
        wait = None
        guard = self.login_guard
        if self.shared is not None and guard.free and self.shared.usable:
            wait = await self.shared.login_attempt(key, guard.free, guard.delay,
                                                   guard.max_delay, FORGET_AFTER)
        if wait is None:
            wait = guard.attempt(key)
        if wait > 0:
            request.response.set_header("Retry-After", LoginGuard.retry_after(wait))
            raise errors.get("api.process.too_many_logins_requests")
        return key

    async def login_succeeded(self, key: bytes | None) -> None:
        if key is not None:
            self.login_guard.succeeded(key)
            if self.shared is not None:
                await self.shared.login_succeeded(key)

    async def rights_for(self, kuid: str) -> Rights:
        _, rights, _ = await self.store.user_rights(kuid)
        return rights
