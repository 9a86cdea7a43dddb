"""JWTs: issued at login, checked on every authenticated request, revoked at logout.

Signed with joserfc, Authlib's JOSE implementation (Authlib 1.7 deprecated its own
`authlib.jose` in its favour). The algorithm is pinned: a token whose header names another
algorithm, `none` included, is refused before its signature is even looked at. Revocations are
stored (so every worker and node sees them) and cached here for `RECHECK` seconds. In cluster
mode (`cluster.redis`) each revocation is also pushed to every other member at once (`peers`),
so `RECHECK` only matters while Redis is unreachable.

What this process caches is bounded (security/bounded.py): verified tokens and "not revoked"
answers by time (`RECHECK`) and by number; revocations it knows of until the token would have
expired anyway, and by number (storage keeps them all: a dropped entry costs one query).

Three kinds share the format: login tokens; API keys (`kapikey-` + JWT, as in Kuzzle: valid
while their stored fingerprint exists, see apikeys.py); single-use tokens (`auth:createToken`
with `singleUse`: a stored entry taken, atomically, by their first verification).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from .. import errors
from ..config.checks import MIN_SECRET_LENGTH
from ..storage import Storage
from .apikeys import APIKEY_PREFIX, APIKEYS, fingerprint
from .bounded import ExpiringSet, RecentMap

log = logging.getLogger("sanic_gateway.security")

SETTINGS = "gateway.settings"
REVOKED = "tokens.revoked"
REVOKED_BEFORE = "tokens.revoked_before"
SINGLE_USE = "tokens.single_use"
AUTH_TOKEN, API_KEY = "authToken", "apiKey"  # Kuzzle's token types
RECHECK = 1.0  # seconds a verified token is trusted before storage is asked again
VERIFIED_MAX = 10_000  # verified tokens kept (those used in the last RECHECK seconds at most)
CHECKED_MAX = 10_000  # "not revoked" answers kept, likewise
REVOKED_MAX = 100_000  # revocations kept here (the soonest to expire go first beyond)
# what a cluster member tells the others (topic, payload); see cluster/security.py
TOKEN_REVOKED, USER_TOKENS_REVOKED = "security:tokenRevoked", "security:userTokensRevoked"
Tell = Callable[[str, dict[str, Any]], Awaitable[Any]]
# the longest `expiresIn` a login may ask (100 years): beyond, `exp` stops being a sane number
MAX_EXPIRES_IN = 100 * 365 * 86400.0
_MILLISECONDS = re.compile(r"-?\d+(\.\d+)?")


@dataclass
class Token:
    """What `request.context.token` holds for an authenticated request."""

    _id: str  # the JWT's jti
    jwt: str
    userId: str
    expiresAt: int | None
    issuedAt: int
    type: str = AUTH_TOKEN  # or API_KEY
    singleUse: bool = False

    @property
    def ttl(self) -> int:
        return -1 if self.expiresAt is None else max(0, self.expiresAt - int(time.time() * 1000))

    def to_dict(self) -> dict[str, Any]:
        return {"_id": self._id, "userId": self.userId, "expiresAt": self.expiresAt,
                "ttl": self.ttl}


class Tokens:
    def __init__(self, storage: Storage, *, secret: str, algorithm: str, expires_in: float,
                 max_ttl: float) -> None:
        self.storage = storage
        self.algorithm = algorithm
        self.expires_in = expires_in
        self.max_ttl = max_ttl
        self._secret = secret
        self._key: OctKey | None = None
        # jti -> (None, when storage last said "not revoked")
        self._checked = RecentMap(RECHECK, CHECKED_MAX)
        self._verified = RecentMap(RECHECK, VERIFIED_MAX)  # raw JWT -> (Token, when verified)
        self._revoked = ExpiringSet(REVOKED_MAX)  # jti -> when the token expires
        self.peers: Tell | None = None  # cluster mode: tells the other members
        # called with (jti, None) when a token is revoked, (None, kuid) when all of a
        # user's are: live connections authenticated with them leave their rooms
        self.on_revoked: list[Callable[[str | None, str | None], None]] = []

    async def start(self) -> None:
        """Use the configured secret, or one generated once and kept in storage, so that
        tokens survive restarts and every worker signs with the same key."""
        secret = self._secret
        if not secret:
            try:
                doc = await self.storage.get(SETTINGS, "jwt_secret")
            except errors.NotFoundError:
                # created only if absent: members starting together end with the same key
                with contextlib.suppress(errors.BadRequestError):
                    await self.storage.create(SETTINGS, {"secret": secrets.token_urlsafe(48)},
                                              id="jwt_secret")
                doc = await self.storage.get(SETTINGS, "jwt_secret")
            secret = doc["_source"]["secret"]
        elif len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"auth.jwt.secret must be at least {MIN_SECRET_LENGTH} characters "
                             "(or empty: one is then generated and kept in storage)")
        self._key = OctKey.import_key(secret.encode())
        await self.storage.ensure_unique(APIKEYS, "fingerprint")

    def ttl_of(self, expires_in: Any, max_ttl: float | None = None) -> float | None:
        """Seconds a new token lives (None: forever), from a login's `expiresIn` argument:
        a number of milliseconds or a duration string, as in Kuzzle. `max_ttl`: the longest
        allowed (-1: none), `auth.jwt.max_ttl` unless given."""
        from ..config import parse_duration

        max_ttl = self.max_ttl if max_ttl is None else max_ttl
        if expires_in is None:
            seconds = self.expires_in
        else:
            try:
                if isinstance(expires_in, bool):
                    raise TypeError("a boolean is no duration")
                if (isinstance(expires_in, int | float)
                        or _MILLISECONDS.fullmatch(str(expires_in))):
                    seconds = float(expires_in) / 1000 if float(expires_in) != -1 else -1.0
                else:
                    seconds = parse_duration(expires_in, allow_unlimited=True)
            except (ValueError, TypeError) as exc:
                raise errors.get("security.token.invalid_expiration", expires_in) from exc
            if not math.isfinite(seconds) or seconds > MAX_EXPIRES_IN:
                raise errors.get("security.token.invalid_expiration", expires_in)
        if seconds == -1 or seconds < 0:
            if max_ttl > 0:
                raise errors.get("security.token.ttl_exceeded")
            if seconds != -1:
                raise errors.get("security.token.invalid_expiration", expires_in)
            return None
        if max_ttl > 0 and seconds > max_ttl:
            raise errors.get("security.token.ttl_exceeded")
        return seconds

    def issue(self, kuid: str, ttl: float | None, *, type: str = AUTH_TOKEN,
              single_use: bool = False) -> Token:
        """A new signed token (an API key's is prefixed, as in Kuzzle). `_id` is the same
        claim as Kuzzle's, which its SDK reads as the token's user."""
        assert self._key is not None, "Tokens.start() was not awaited"
        now = time.time()
        claims: dict[str, Any] = {"sub": kuid, "_id": kuid, "jti": uuid.uuid4().hex,
                                  "iat": round(now, 3)}
        if ttl is not None:
            claims["exp"] = int(now + ttl)
        if type == API_KEY:
            claims["typ"] = API_KEY
        if single_use:
            claims["su"] = True
        encoded = jwt.encode({"alg": self.algorithm, "typ": "JWT"}, claims, self._key,
                             algorithms=[self.algorithm])
        if type == API_KEY:
            encoded = APIKEY_PREFIX + encoded
        return Token(claims["jti"], encoded, kuid,
                     None if ttl is None else claims["exp"] * 1000, int(now * 1000), type,
                     single_use)

    async def issue_single_use(self, kuid: str, ttl: float) -> Token:
        """A token refused after its first verification (stored until it expires)."""
        token = self.issue(kuid, ttl, single_use=True)
        await self.storage.create_or_replace(SINGLE_USE, token._id, {"userId": kuid},
                                             ttl=max(1.0, ttl + 1))
        return token

    async def verify(self, encoded: str) -> Token:
        """The token's content, or 401 `security.token.invalid` / `security.token.expired`.

        A token verified less than RECHECK seconds ago is not decoded again (decoding is most
        of an authenticated request's cost); its expiry and local revocation still are checked.
        """
        token = self.cached(encoded)
        if token is not None:
            return token
        try:
            token = await self._decode(encoded)
        except errors.GatewayError as exc:
            if exc.status == 503:  # storage unreachable: what was verified lately still is
                known = self._last_known(encoded)
                if known is not None:
                    return known
            raise
        if token.singleUse:  # never cached: its one use is taken in storage, atomically
            if await self.storage.take(SINGLE_USE, token._id) is None:
                raise errors.get("security.token.invalid")
            return token
        self._verified.put(encoded, token, time.monotonic())
        return token

    def cached(self, encoded: Any) -> Token | None:
        """The token if it was verified less than RECHECK seconds ago (None: verify it); its
        expiry and this process's revocations are checked all the same."""
        if not isinstance(encoded, str):
            raise errors.get("security.token.invalid")
        found = self._verified.get(encoded)
        if found is None:
            return None
        token, checked_at = found
        if token._id in self._revoked:
            del self._verified[encoded]
            return None
        if time.monotonic() - checked_at >= RECHECK:  # kept: `_last_known` may use it
            return None
        if token.expiresAt is not None and token.expiresAt <= time.time() * 1000:
            raise errors.get("security.token.expired")
        return token

    def _last_known(self, encoded: str) -> Token | None:
        """A token verified before storage became unreachable, neither revoked here (nor,
        in cluster mode, by another member) nor expired since: trusted while storage is down,
        so that requests that do not need storage are still served."""
        found = self._verified.get(encoded)
        if found is None or found[0]._id in self._revoked:
            return None
        token = found[0]
        if token.expiresAt is not None and token.expiresAt <= time.time() * 1000:
            return None
        return token

    async def _decode(self, encoded: str) -> Token:
        assert self._key is not None, "Tokens.start() was not awaited"
        is_key = encoded.startswith(APIKEY_PREFIX)
        try:
            decoded = jwt.decode(encoded[len(APIKEY_PREFIX):] if is_key else encoded, self._key,
                                 algorithms=[self.algorithm])
        except (JoseError, ValueError, TypeError) as exc:
            raise errors.get("security.token.invalid") from exc
        claims = decoded.claims
        kuid, jti, iat = claims.get("sub"), claims.get("jti"), claims.get("iat")
        if (not isinstance(kuid, str) or not isinstance(jti, str)
                or not isinstance(iat, int | float)):
            raise errors.get("security.token.invalid")
        exp = claims.get("exp")
        if exp is not None and (not isinstance(exp, int | float) or exp <= time.time()):
            raise errors.get("security.token.expired")
        if is_key != (claims.get("typ") == API_KEY):  # a login token is no key, and back
            raise errors.get("security.token.invalid")
        kind = API_KEY if is_key else AUTH_TOKEN
        if is_key and not await self._key_exists(encoded, kuid, jti):
            raise errors.get("security.token.invalid")
        if await self.is_revoked(jti, kuid, iat, exp, kind):
            raise errors.get("security.token.invalid")
        return Token(jti, encoded, kuid, None if exp is None else int(exp) * 1000,
                     int(iat * 1000), kind, claims.get("su") is True)

    async def _key_exists(self, encoded: str, kuid: str, jti: str) -> bool:
        """An API key is valid while its stored entry (found by fingerprint) exists."""
        if jti in self._revoked:
            return False
        found = await self.storage.find_unique(APIKEYS, "fingerprint", fingerprint(encoded))
        return found is not None and found["_source"].get("userId") == kuid

    async def is_revoked(self, jti: str, kuid: str, iat: float, exp: float | None = None,
                         kind: str = AUTH_TOKEN) -> bool:
        """Whether token `jti` of `kuid` issued at `iat` (expiring at `exp`) is revoked."""
        if jti in self._revoked:
            return True
        now = time.monotonic()
        checked = self._checked.get(jti)
        if checked is not None and now - checked[1] < RECHECK:
            return False
        revoked = await self.storage.exists(REVOKED, jti)
        if not revoked:
            try:
                before = (await self.storage.get(REVOKED_BEFORE, kuid))["_source"]
                # logout with `global` keeps API keys (as Kuzzle); deleting the user does not
                limit = before.get("apikeys_before" if kind == API_KEY else "before")
                revoked = isinstance(limit, int | float) and iat <= limit
            except errors.NotFoundError:
                pass
        if revoked:
            self._revoked.add(jti, exp, time.time())
            self._checked.pop(jti, None)
        else:
            self._checked.put(jti, None, now)
            self._revoked.prune(time.time())
        return revoked

    async def revoke(self, token: Token) -> None:
        self._revoked.add(token._id, None if token.expiresAt is None else token.expiresAt / 1000,
                          time.time())
        self._checked.pop(token._id, None)
        self._verified.pop(token.jwt, None)
        ttl = None if token.expiresAt is None else max(1.0, token.ttl / 1000 + 1)
        await self.storage.create_or_replace(REVOKED, token._id, {"userId": token.userId},
                                             ttl=ttl)
        self.revoked(token._id, None)
        if self.peers is not None:
            await self.peers(TOKEN_REVOKED, {"jti": token._id, "exp": (
                None if token.expiresAt is None else token.expiresAt / 1000)})

    def revoked_elsewhere(self, jti: str, exp: float | None) -> None:
        """Another member revoked token `jti` (expiring at `exp`): refuse it here too."""
        self._revoked.add(jti, exp, time.time())
        self._checked.pop(jti, None)
        self.revoked(jti, None)

    def revoked_all_elsewhere(self, kuid: str) -> None:
        """Another member revoked every token of `kuid`: storage is asked again here."""
        self.clear()
        self.revoked(None, kuid)

    def revoked(self, jti: str | None, kuid: str | None) -> None:
        """Tell the listeners (`on_revoked`) that a token or a user's tokens were revoked."""
        for listener in self.on_revoked:
            try:
                listener(jti, kuid)
            except Exception:
                log.exception("a token revocation listener failed")

    def known_revoked(self, jti: str) -> bool:
        """Whether this process knows token `jti` is revoked (no storage asked)."""
        return jti in self._revoked

    def forget(self, jti: str) -> None:
        """Refuse token `jti` in this process from now on, cached verification included (a
        deleted API key); other processes see the storage within RECHECK seconds, or at once
        in cluster mode once `tell_forgotten` has been awaited."""
        now = time.time()
        self._revoked.add(jti, now + 60 * RECHECK, now)  # storage says it from then on
        self._checked.pop(jti, None)
        self.revoked(jti, None)

    async def tell_forgotten(self, jti: str) -> None:
        """Cluster mode: the other members forget token `jti` too."""
        if self.peers is not None:
            await self.peers(TOKEN_REVOKED, {"jti": jti, "exp": time.time() + 60 * RECHECK})

    def clear(self) -> None:
        """Drop every cached verification: each token is checked against storage again."""
        self._checked.clear()
        self._verified.clear()

    async def revoke_all(self, kuid: str, *, keep_api_keys: bool = False) -> None:
        """Every token of `kuid` issued until now: logout with `global` (API keys kept, as in
        Kuzzle), user deleted (API keys deleted too)."""
        self.clear()
        now = time.time()
        try:
            marks = dict((await self.storage.get(REVOKED_BEFORE, kuid))["_source"])
        except errors.NotFoundError:
            marks = {}
        marks["before"] = now
        if not keep_api_keys:
            marks["apikeys_before"] = now
            await self.storage.delete_by_query(APIKEYS, {"equals": {"userId": kuid}})
        await self.storage.create_or_replace(REVOKED_BEFORE, kuid, marks)
        self.clear()  # a check that started before the write must not be kept
        self.revoked(None, kuid)
        if self.peers is not None:
            await self.peers(USER_TOKENS_REVOKED, {"kuid": kuid})
