"""OAuth2 / OpenID Connect providers declared in gateway.yaml, on Authlib.

Authlib has no Sanic client, so this is a small one on its framework-neutral pieces
(`BaseApp`, `AsyncOAuth2Mixin`, `AsyncOpenIDMixin`, httpx's `AsyncOAuth2Client`), as its
Starlette integration is built. The difference: what a browser session would keep between the
redirect and the callback (state, PKCE verifier, nonce) is kept in storage, used once, so that
any worker or node may receive the callback.

Flows, all on the `auth:login` action of strategy `<name>`:
- `GET /_login/<name>`: 302 to the provider, with `state`, PKCE (S256) and, for OIDC, a nonce;
- `GET /_login/<name>?code=...&state=...`: the code is exchanged, the ID token checked (issuer,
  audience, expiry, signature by JWKS, nonce) or userinfo read, the user found or created, and
  the answer is a local login's (or a 302 to `success_redirect` with the token in the fragment);
- `POST /_login/<name>` with `{"id_token"}` or `{"access_token"}` (native clients): checked with
  the provider (JWKS or userinfo) and answered the same way.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx2
from authlib.integrations.base_client import BaseApp, OAuthError
from authlib.integrations.base_client.async_app import AsyncOAuth2Mixin
from authlib.integrations.base_client.async_openid import AsyncOpenIDMixin
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken, IDToken
from joserfc.errors import JoseError

from .. import errors
from ..request import Request
from ..storage import Storage
from .store import SecurityStore
from .strategies import Strategy

log = logging.getLogger("sanic_gateway.oauth")

STATES = "oauth.states"
STATE_TTL = 600.0  # seconds a user has to come back from the provider


class ProviderApp(AsyncOAuth2Mixin, AsyncOpenIDMixin, BaseApp):
    """Authlib's async OAuth2 + OpenID client app, with no web framework attached."""

    client_cls = AsyncOAuth2Client


# answers a login for (request, strategy name, kuid, token lifetime)
IssueToken = Callable[[Request, str, str, float | None], Awaitable[dict[str, Any]]]


class OAuthStrategy:
    def __init__(self, name: str, conf: dict[str, Any], storage: Storage,
                 store: SecurityStore, issue: IssueToken) -> None:
        self.name = name
        self.conf = conf
        self.storage = storage
        self.store = store
        self.issue = issue
        self.credentials = f"credentials.oauth.{name}"  # provider user id -> kuid
        metadata = {k: v for k, v in (("userinfo_endpoint", conf.get("userinfo_url")),
                                      ("jwks_uri", conf.get("jwks_uri")),
                                      ("issuer", conf.get("issuer"))) if v}
        self.app = ProviderApp(
            framework=None, name=name,
            client_id=conf["client_id"], client_secret=conf.get("client_secret"),
            authorize_url=conf.get("authorize_url"),
            access_token_url=conf.get("access_token_url"),
            server_metadata_url=conf.get("server_metadata_url"),
            client_kwargs={"scope": conf["scope"], "code_challenge_method": "S256",
                           "timeout": conf["timeout"]},
            **metadata,
        )
        self.openid = "openid" in conf["scope"].split()

    def strategy(self) -> Strategy:
        return Strategy(self.name, {
            "exists": self.exists, "create": self.refuse, "update": self.refuse,
            "delete": self.delete, "validate": self.refuse, "verify": self.refuse,
            "getInfo": self.get_info,
        }, [], None, login=self.login)

    # -- auth:login ----------------------------------------------------------------------------

    async def login(self, request: Request, ttl: float | None) -> Any:
        args = request.input.args
        try:
            if "error" in args:
                await self._take_state(args.get("state"))
                raise errors.get("security.oauth.denied", self.name,
                                 args.get("error_description") or args["error"])
            if "code" in args:
                kuid, ttl = await self._callback(request, ttl)
            elif request.input.body or request.context.connection.misc.get("verb") == "POST":
                kuid = await self._native(request.input.body)
            elif request.context.connection.misc.get("verb") == "HEAD":
                return {}  # a HEAD gets no redirect: no state kept for it
            else:
                return await self._redirect(request, ttl)
        except (httpx2.TimeoutException, httpx2.TransportError, RuntimeError,
                json.JSONDecodeError) as exc:
            # RuntimeError: Authlib found no endpoint (discovery gave an incomplete document);
            # JSONDecodeError: discovery or JWKS answered something else than JSON
            log.warning("oauth %s: provider unavailable at %s: %s: %s", self.name,
                        self._tried(exc), type(exc).__name__, exc)
            raise errors.get("security.oauth.provider_unavailable", self.name,
                             f"{type(exc).__name__}: {exc}") from exc
        except httpx2.HTTPStatusError as exc:
            # discovery or JWKS failed (userinfo's 4xx are the token's fault: see _userinfo)
            log.warning("oauth %s: provider unavailable: HTTP %d from %s", self.name,
                        exc.response.status_code, self._tried(exc))
            raise errors.get("security.oauth.provider_unavailable", self.name,
                             f"HTTP {exc.response.status_code} from "
                             f"{exc.request.url.copy_with(query=None)}") from exc
        answer = await self.issue(request, self.name, kuid, ttl)
        target = self.conf.get("success_redirect")
        if target and request.input.args.get("code"):
            fragment = urlencode({"jwt": answer["jwt"], "expiresAt": answer["expiresAt"] or "",
                                  "_id": answer["_id"]})
            return self._redirect_response(request, f"{target}#{fragment}")
        return answer

    def _tried(self, exc: BaseException) -> str:
        """The URL a failed provider call went to (without its query), for the log."""
        try:
            return str(exc.request.url.copy_with(query=None))  # type: ignore[attr-defined]
        except (AttributeError, RuntimeError):  # no request attached: discovery's URL
            return str(self.conf.get("server_metadata_url") or self.conf.get("authorize_url"))

    async def _redirect(self, request: Request, ttl: float | None) -> Any:
        redirect_uri = self.redirect_uri(request)
        found = await self.app.create_authorization_url(redirect_uri)
        await self.storage.create(STATES, {
            "strategy": self.name, "redirect_uri": redirect_uri,
            "code_verifier": found.get("code_verifier"), "nonce": found.get("nonce"),
            "ttl": ttl,  # the token's lifetime asked for here (expiresIn), used at the callback
        }, id=found["state"], ttl=STATE_TTL)
        return self._redirect_response(request, found["url"])

    @staticmethod
    def _redirect_response(request: Request, url: str) -> dict[str, str]:
        request.response.status = 302
        request.response.set_header("Location", url)
        return {"url": url}

    async def _take_state(self, state: Any) -> dict[str, Any]:
        if not isinstance(state, str) or not state:
            raise errors.get("security.oauth.invalid_state")
        taken = await self.storage.take(STATES, state)
        if taken is None or taken["_source"].get("strategy") != self.name:
            raise errors.get("security.oauth.invalid_state")
        return taken["_source"]

    async def _callback(self, request: Request, ttl: float | None) -> tuple[str, float | None]:
        args = request.input.args
        saved = await self._take_state(args.get("state"))
        try:
            token = await self.app.fetch_access_token(
                redirect_uri=saved["redirect_uri"], code=args["code"],
                code_verifier=saved["code_verifier"])
        except OAuthError as exc:
            raise errors.get("security.oauth.exchange_failed", self.name,
                             exc.description or exc.error) from exc
        if self.openid and "id_token" in token and await self._has_jwks():
            claims = await self._id_token_claims(token, saved["nonce"], CodeIDToken)
        else:
            claims = await self._userinfo(token)
        return await self._user_for(claims), saved.get("ttl", ttl)

    async def _native(self, body: dict[str, Any]) -> str:
        if isinstance(body.get("id_token"), str) and body["id_token"]:
            claims = await self._id_token_claims({"id_token": body["id_token"]}, None, IDToken)
        elif isinstance(body.get("access_token"), str) and body["access_token"]:
            claims = await self._userinfo({"access_token": body["access_token"],
                                           "token_type": "Bearer"})
        else:
            raise errors.get("security.oauth.missing_token", self.name)
        return await self._user_for(claims)

    async def _id_token_claims(self, token: dict[str, Any], nonce: str | None,
                               claims_cls: type[IDToken]) -> dict[str, Any]:
        """Signature (JWKS), issuer, audience, expiry and nonce, checked by Authlib.

        The audience must name this client: Authlib's IDToken alone only asks for an `azp`
        when it does not, and accepts any `azp` equal to the client id (OIDC Core 3.1.3.7:
        the client MUST check that `aud` contains its client_id)."""
        metadata = await self.app.load_server_metadata()
        if not await self._has_jwks():
            raise errors.get("security.oauth.invalid_token", self.name,
                             "no jwks_uri to check an ID token with")
        await self.app.fetch_jwk_set()  # first, so that a failing provider is told apart
        options: dict[str, Any] = {"aud": {"essential": True, "values": [self.app.client_id]}}
        if metadata.get("issuer"):  # Authlib checks it only when given no options
            options["iss"] = {"essential": True, "values": [metadata["issuer"]]}
        try:
            claims = await self.app.parse_id_token(token, nonce, claims_options=options,
                                                   claims_cls=claims_cls, leeway=30)
        except (JoseError, ValueError) as exc:
            raise errors.get("security.oauth.invalid_token", self.name,
                             getattr(exc, "description", None) or str(exc) or
                             type(exc).__name__) from exc
        return dict(claims)

    async def _has_jwks(self) -> bool:
        """Whether ID tokens can be checked (else the code flow reads userinfo)."""
        metadata = await self.app.load_server_metadata()
        return bool(metadata.get("jwks_uri") or metadata.get("jwks"))

    async def _userinfo(self, token: dict[str, Any]) -> dict[str, Any]:
        metadata = await self.app.load_server_metadata()
        if not metadata.get("userinfo_endpoint"):
            raise errors.get("security.oauth.invalid_token", self.name,
                             "no userinfo endpoint to check an access token with")
        try:
            return dict(await self.app.userinfo(token=token))
        except OAuthError as exc:
            raise errors.get("security.oauth.invalid_token", self.name,
                             exc.description or exc.error) from exc
        except httpx2.HTTPStatusError as exc:
            if exc.response.status_code >= 500:
                raise
            raise errors.get("security.oauth.invalid_token", self.name,
                             f"userinfo answered HTTP {exc.response.status_code}") from exc

    async def _user_for(self, claims: dict[str, Any]) -> str:
        """The kuid mapped to the provider's user: created on first login, with the
        configured profiles. Never an existing user of another strategy: a provider account
        named "admin" does not become the local admin."""
        claim = self.conf["kuid_claim"]
        subject = claims.get(claim)
        if subject is None or subject == "":
            raise errors.get("security.oauth.missing_claim", self.name, claim)
        subject = str(subject)
        try:
            return (await self.storage.get(self.credentials, subject))["_source"]["kuid"]
        except errors.NotFoundError:
            pass
        kuid = uuid.uuid4().hex
        content = {k: claims[k] for k in ("email", "name", "preferred_username", "login")
                   if isinstance(claims.get(k), str)}
        try:  # the user and its mapping: both or neither, even if the process dies
            async with self.storage.transaction():
                await self.store.create_user(
                    kuid, {**content, "profileIds": self.conf["profiles"]})
                await self.storage.create(self.credentials, {"kuid": kuid, "claims": {
                    k: v for k, v in claims.items() if isinstance(v, str | int | float | bool)}},
                    id=subject)
        except errors.BadRequestError:  # another request created it meanwhile: use that one
            return (await self.storage.get(self.credentials, subject))["_source"]["kuid"]
        log.info("oauth %s: user %s created for %s=%s", self.name, kuid, claim, subject)
        return kuid

    def redirect_uri(self, request: Request) -> str:
        configured = self.conf.get("redirect_uri")
        if configured:
            return configured
        headers = request.context.connection.headers
        host = headers.get("host", "127.0.0.1")
        scheme = headers.get("x-forwarded-proto", "http")
        return f"{scheme}://{host}/_login/{self.name}"

    # -- the strategy methods ---------------------------------------------------------------

    async def exists(self, request: Any, kuid: str) -> bool:
        found = await self.storage.search(self.credentials, {"equals": {"kuid": kuid}}, size=1)
        return bool(found["hits"])

    async def delete(self, request: Any, kuid: str) -> None:
        await self.storage.delete_by_query(self.credentials, {"equals": {"kuid": kuid}})

    async def get_info(self, request: Any, kuid: str) -> dict[str, Any]:
        found = await self.storage.search(self.credentials, {"equals": {"kuid": kuid}}, size=1)
        if not found["hits"]:
            return {}
        claims = found["hits"][0]["_source"].get("claims", {})
        return {"id": found["hits"][0]["_id"],
                **{k: claims[k] for k in ("email", "name") if k in claims}}

    async def refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise provider_only(self.name)


def provider_only(name: str) -> errors.GatewayError:
    """Why credentials of provider `name` cannot be given (API or gateway.yaml)."""
    return errors.get("security.credentials.rejected",
                      f"{name} credentials come from the provider: log in with it")
