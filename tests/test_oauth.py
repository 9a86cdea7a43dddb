"""OAuth2 / OpenID Connect providers declared in gateway.yaml, against a real
provider: oauth2-mock-server (tests/oidc/provider.mjs) on loopback, driven through its
`POST /_mode` switch. The browser is an httpx client following redirects."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import queue
import shutil
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sanic_gateway.config import ConfigError, load_config
from tests.security_helpers import ANONYMOUS_ROLE, SECRET, bearer, denied, login
from tests.test_cli import cli

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_JS = ROOT / "tests" / "oidc" / "provider.mjs"
CLIENT_ID = "gateway-client"

NODE = shutil.which("node")
if NODE is None:
    pytest.skip("node is not installed: the OpenID provider of these tests is a Node program "
                "(install Node 20, then `npm install` at the repository root)",
                allow_module_level=True)
if not (ROOT / "node_modules" / "oauth2-mock-server").is_dir():
    pytest.skip("node_modules/oauth2-mock-server is missing: run `npm install` at the "
                "repository root", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The issuer URL of a running oauth2-mock-server, for the whole module."""
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([NODE, str(PROVIDER_JS), str(free_port())], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:  # also keeps the pipe drained while the provider runs
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            line = "(nothing in 30 s)"
        if not line.startswith("READY "):
            pytest.fail(f"the OpenID provider did not start: {line!r}\n{log.read_text()}")
        yield line.split()[1]
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def set_mode(issuer: str, mode: str = "normal", sub: str | None = None,
             azp: str | None = None) -> None:
    body: dict[str, Any] = {"mode": mode}
    if sub is not None:
        body["sub"] = sub
    if azp is not None:
        body["azp"] = azp
    r = httpx.post(f"{issuer}/_mode", json=body, timeout=5)
    assert r.status_code == 200 and r.json()["mode"] == mode, r.text


@pytest.fixture(autouse=True)
def normal_mode(provider: str) -> None:
    set_mode(provider, "normal", "user-1")


# -- the gateway -------------------------------------------------------------------------------

def oauth_yaml(issuer: str, strategies: str | None = None, *, client_id: str = CLIENT_ID,
               extra_oauth2: str = "") -> str:
    """A closed gateway with an admin (local) and the `mock` provider (discovery), whose new
    users get the `readers` profile."""
    if strategies is None:
        strategies = f"""
    mock:
      oauth2:
        server_metadata_url: {issuer}/.well-known/openid-configuration
        client_id: {client_id}
        client_secret: gateway-secret
        profiles: [readers]
{textwrap.indent(textwrap.dedent(extra_oauth2), " " * 8)}"""
    return f"""
limits:
  login_attempts_per_second: 100
auth:
  jwt: {{secret: {SECRET}}}
  strategies:
    local: {{}}
{strategies}
security:
  roles:
    anonymous: {ANONYMOUS_ROLE}
    reader:
      controllers: {{auth: {{actions: {{"*": true}}}}}}
  profiles:
    readers: {{policies: [{{roleId: reader}}]}}
  users:
    admin:
      profileIds: [admin]
      credentials: {{local: {{username: admin, password: admin-password}}}}
"""


def browser(served: Any, **kwargs: Any) -> httpx.AsyncClient:
    """A client that follows the redirects between the gateway and the provider."""
    return httpx.AsyncClient(base_url=served.url, follow_redirects=True, timeout=10, **kwargs)


async def browser_login(served: Any, strategy: str = "mock") -> httpx.Response:
    async with browser(served) as client:
        return await client.get(f"/_login/{strategy}")


async def callback_url(served: Any, strategy: str = "mock") -> str:
    """Through the provider up to (not including) the callback: the URL the provider sends
    the browser back to, with code and state."""
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        r = await client.get(f"/_login/{strategy}")
        assert r.status_code == 302, r.text
        r = await client.get(r.headers["location"])
        assert r.status_code == 302, r.text
        return r.headers["location"]


async def user_count(served: Any) -> int:
    admin = bearer(await login(served.client, "admin", "admin-password"))
    r = await served.client.post("/users/_search?size=100", headers=admin, json={})
    assert r.status_code == 200, r.text
    return r.json()["result"]["total"]


async def states(served: Any) -> int:
    return await served.gateway.storage.count("oauth.states")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# -- the browser flow -----------------------------------------------------------------------------

async def test_browser_flow_creates_the_user_then_finds_it_again(serve, provider):
    served = await serve(oauth_yaml(provider))
    assert await user_count(served) == 1
    r = await browser_login(served)
    assert r.status_code == 200, r.text
    # the answer of a local login, at the callback URL
    assert urlsplit(str(r.url)).path == "/_login/mock"
    assert {"code", "state"} <= set(query_of(str(r.url)))
    result = r.json()["result"]
    assert set(result) == {"_id", "jwt", "expiresAt", "ttl"}
    kuid = result["_id"]
    assert kuid not in ("user-1", "admin")
    me = await served.client.get("/_me", headers=bearer(result["jwt"]))
    assert me.status_code == 200, me.text
    me = me.json()["result"]
    assert me["_id"] == kuid
    assert me["_source"] == {"email": "user-1@example.test", "name": "User user-1",
                             "profileIds": ["readers"]}
    assert me["strategies"] == ["mock"]
    # its rights are those of its profile: auth:* and nothing else
    rights = (await served.client.get("/_me/_rights", headers=bearer(result["jwt"]))).json()
    assert {(h["controller"], h["action"]) for h in rights["result"]["hits"]
            if h["value"] == "allowed"} == {("auth", "*")}
    denied(await served.client.post("/users/_search", headers=bearer(result["jwt"]), json={}),
           403, "security.rights.forbidden")
    assert await user_count(served) == 2
    assert await states(served) == 0  # the state was used
    # the second login finds the same user
    again = await browser_login(served)
    assert again.status_code == 200, again.text
    assert again.json()["result"]["_id"] == kuid
    assert await user_count(served) == 2
    # another account of the provider is another user
    set_mode(provider, "normal", "user-2")
    other = await browser_login(served)
    assert other.status_code == 200, other.text
    assert other.json()["result"]["_id"] not in (kuid, "user-2")
    assert await user_count(served) == 3


async def test_the_redirect_to_the_provider(serve, provider):
    served = await serve(oauth_yaml(provider))
    r = await served.client.get("/_login/mock")
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(f"{provider}/authorize?")
    params = query_of(location)
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == f"{served.url}/_login/mock"
    assert params["scope"] == "openid email profile"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 20 and len(params["nonce"]) >= 20
    # the state is kept in storage (any node may receive the callback), with what the
    # callback needs; the challenge is the S256 of the kept verifier
    saved = (await served.gateway.storage.get("oauth.states", params["state"]))["_source"]
    assert saved["strategy"] == "mock"
    assert saved["redirect_uri"] == params["redirect_uri"]
    assert saved["nonce"] == params["nonce"]
    digest = hashlib.sha256(saved["code_verifier"].encode()).digest()
    assert params["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    # each redirect has its own state, verifier and nonce
    second = query_of((await served.client.get("/_login/mock")).headers["location"])
    assert {second["state"], second["nonce"], second["code_challenge"]}.isdisjoint(
        {params["state"], params["nonce"], params["code_challenge"]})
    assert await states(served) == 2
    # nothing but a redirect: no user, no token
    assert r.json()["result"] == {"url": location}
    assert await user_count(served) == 1


async def test_the_token_lifetime_asked_at_the_redirect_is_kept_for_the_callback(serve,
                                                                                 provider):
    served = await serve(oauth_yaml(provider))
    async with browser(served) as client:
        r = await client.get("/_login/mock?expiresIn=60s")
    assert r.status_code == 200, r.text
    assert 58_000 <= r.json()["result"]["ttl"] <= 60_000


async def test_state_replayed_made_up_or_missing(serve, provider):
    served = await serve(oauth_yaml(provider))
    url = await callback_url(served)
    first = await served.client.get(url)
    assert first.status_code == 200, first.text
    kuid = first.json()["result"]["_id"]
    # the same callback again: the state was used
    denied(await served.client.get(url), 401, "security.oauth.invalid_state")
    # a fresh code with a made-up state, or no state at all
    url = await callback_url(served)
    code = query_of(url)["code"]
    denied(await served.client.get("/_login/mock", params={"code": code, "state": "made-up"}),
           401, "security.oauth.invalid_state")
    denied(await served.client.get("/_login/mock", params={"code": code}),
           401, "security.oauth.invalid_state")
    denied(await served.client.get("/_login/mock", params={"code": code, "state": ""}),
           401, "security.oauth.invalid_state")
    # the real state still works (the failures above did not use it)
    r = await served.client.get(url)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["_id"] == kuid
    assert await user_count(served) == 2


async def test_a_state_expires(serve, provider, monkeypatch):
    from sanic_gateway.security import oauth
    monkeypatch.setattr(oauth, "STATE_TTL", 0.3)
    served = await serve(oauth_yaml(provider))
    url = await callback_url(served)
    await asyncio.sleep(0.5)
    denied(await served.client.get(url), 401, "security.oauth.invalid_state")
    assert await user_count(served) == 1


# -- what goes wrong at the provider ---------------------------------------------------------------

@pytest.mark.parametrize(("mode", "status", "error", "message"), [
    ("wrong_audience", 401, "security.oauth.invalid_token", "'aud'"),
    # an ID token for someone else, even if it names this client as its authorized party
    ({"mode": "wrong_audience", "azp": CLIENT_ID}, 401, "security.oauth.invalid_token",
     "'aud'"),
    ("expired", 401, "security.oauth.invalid_token", "expired"),
    ("bad_signature", 401, "security.oauth.invalid_token", "bad_signature"),
    ("denied", 401, "security.oauth.denied", "the user said no"),
    ("token_error", 401, "security.oauth.exchange_failed", "invalid_grant"),
], ids=["wrong_audience", "wrong_audience_azp", "expired", "bad_signature", "denied",
        "token_error"])
async def test_provider_failures_create_no_user_and_issue_no_token(serve, provider, mode,
                                                                   status, error, message):
    served = await serve(oauth_yaml(provider))
    if isinstance(mode, dict):
        set_mode(provider, mode["mode"], "victim", azp=mode["azp"])
    else:
        set_mode(provider, mode, "victim")
    r = await browser_login(served)
    denied(r, status, error)
    assert message in r.json()["error"]["message"]
    assert "jwt" not in r.text
    assert await user_count(served) == 1
    assert await served.gateway.storage.count("credentials.oauth.mock") == 0
    assert await states(served) == 0  # used, even by a failure: no second try with it
    # the same provider, once it behaves, logs the user in
    set_mode(provider, "normal")
    assert (await browser_login(served)).status_code == 200
    assert await user_count(served) == 2


async def test_no_id_token_falls_back_to_userinfo(serve, provider):
    served = await serve(oauth_yaml(provider))
    set_mode(provider, "no_id_token", "user-1")
    r = await browser_login(served)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    me = (await served.client.get("/_me", headers=bearer(result["jwt"]))).json()["result"]
    assert me["_source"]["email"] == "user-1@example.test"
    # the same user as through the ID token
    set_mode(provider, "normal")
    assert (await browser_login(served)).json()["result"]["_id"] == result["_id"]
    assert await user_count(served) == 2


def down_strategy(url: str, timeout: str = "") -> str:
    return f"""
    down:
      oauth2:
        server_metadata_url: {url}/.well-known/openid-configuration
        client_id: {CLIENT_ID}
        {f"timeout: {timeout}" if timeout else ""}
"""


async def test_provider_down(serve, provider):
    closed = f"http://127.0.0.1:{free_port()}"
    served = await serve(oauth_yaml(provider).replace(
        "security:", down_strategy(closed) + "security:", 1))
    for attempt in (served.client.get("/_login/down"),
                    served.client.post("/_login/down", json={"id_token": "x.y.z"}),
                    served.client.post("/_login/down", json={"access_token": "abc"})):
        denied(await attempt, 503, "security.oauth.provider_unavailable")
    assert await states(served) == 0
    assert await user_count(served) == 1
    # the other provider is not affected
    assert (await browser_login(served)).status_code == 200


@contextlib.asynccontextmanager
async def silent_server():
    """A TCP server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_provider_slow_discovery(serve, provider):
    async with silent_server() as slow:
        served = await serve(oauth_yaml(provider).replace(
            "security:", down_strategy(slow, "500ms") + "security:", 1))
        started = time.monotonic()
        denied(await served.client.get("/_login/down"), 503,
               "security.oauth.provider_unavailable")
        assert time.monotonic() - started < 1.5
        assert await states(served) == 0


async def test_provider_slow_at_the_code_exchange(serve, provider):
    """Discovery is fine, the token endpoint hangs: the callback fails in time, the state is
    used, nobody is logged in."""
    async with silent_server() as slow:
        served = await serve(oauth_yaml(provider, f"""
    slowtoken:
      oauth2:
        authorize_url: {provider}/authorize
        access_token_url: {slow}/token
        jwks_uri: {provider}/jwks
        issuer: {provider}
        client_id: {CLIENT_ID}
        timeout: 500ms
"""))
        url = await callback_url(served, "slowtoken")
        started = time.monotonic()
        denied(await served.client.get(url), 503, "security.oauth.provider_unavailable")
        assert time.monotonic() - started < 1.5
        assert await states(served) == 0
        assert await user_count(served) == 1


# -- native clients: a token in the body ----------------------------------------------------------

async def provider_tokens(issuer: str, client_id: str = CLIENT_ID) -> dict[str, Any]:
    """Tokens straight from the provider's token endpoint, as a native app gets them: its ID
    token's audience is `client_id`."""
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{issuer}/token", data={
            "grant_type": "password", "username": "someone", "client_id": client_id,
            "scope": "openid email profile"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_native_id_token_and_access_token(serve, provider):
    served = await serve(oauth_yaml(provider))
    tokens = await provider_tokens(provider)
    r = await served.client.post("/_login/mock", json={"id_token": tokens["id_token"]})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert set(result) == {"_id", "jwt", "expiresAt", "ttl"}
    me = (await served.client.get("/_me", headers=bearer(result["jwt"]))).json()["result"]
    assert me["_source"] == {"email": "user-1@example.test", "name": "User user-1",
                             "profileIds": ["readers"]}
    # the browser flow and the access token find the same user
    assert (await browser_login(served)).json()["result"]["_id"] == result["_id"]
    r = await served.client.post("/_login/mock", json={"access_token": tokens["access_token"]})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["_id"] == result["_id"]
    # through /_query too, with a lifetime
    r = await served.client.post("/_query", json={
        "controller": "auth", "action": "login", "strategy": "mock", "expiresIn": "30s",
        "body": {"id_token": tokens["id_token"]}})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["_id"] == result["_id"]
    assert 28_000 <= r.json()["result"]["ttl"] <= 30_000
    assert await user_count(served) == 2
    assert await states(served) == 0  # no redirect was started


def forged(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return ".".join((part(header), part(claims),
                     base64.urlsafe_b64encode(signature).rstrip(b"=").decode()))


async def test_native_tokens_refused(serve, provider):
    served = await serve(oauth_yaml(provider))
    real = (await provider_tokens(provider))["id_token"]
    claims = json.loads(base64.urlsafe_b64decode(real.split(".")[1] + "=="))
    assert claims["aud"] == CLIENT_ID and claims["iss"] == provider
    now = int(time.time())
    claims.update(sub="forger", iat=now, exp=now + 600)
    kid = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))["kid"]
    header_and_claims = forged({"alg": "HS256", "kid": kid}, claims).rsplit(".", 1)[0]
    hs256 = hmac.new(b"gateway-secret", header_and_claims.encode(), hashlib.sha256).digest()
    refused = [
        "garbage", "a.b.c", "",
        forged({"alg": "none"}, claims),  # unsigned
        header_and_claims + "." + base64.urlsafe_b64encode(hs256).rstrip(b"=").decode(),
        real[:-6] + ("AAAAAA" if not real.endswith("AAAAAA") else "BBBBBB"),  # bad signature
        (await provider_tokens(provider, "someone-else"))["id_token"],  # another audience
    ]
    for token in refused:
        r = await served.client.post("/_login/mock", json={"id_token": token})
        if token == "":
            denied(r, 400, "security.oauth.missing_token")
        else:
            denied(r, 401, "security.oauth.invalid_token")
    set_mode(provider, "expired")
    expired = (await provider_tokens(provider))["id_token"]
    denied(await served.client.post("/_login/mock", json={"id_token": expired}),
           401, "security.oauth.invalid_token")
    # no token at all
    for body in ({}, {"token": real}, {"id_token": 42}, {"access_token": ["x"]}):
        denied(await served.client.post("/_login/mock", json=body),
               400, "security.oauth.missing_token")
    denied(await served.client.post("/_login/mock"), 400, "security.oauth.missing_token")
    assert await user_count(served) == 1
    assert await served.gateway.storage.count("credentials.oauth.mock") == 0


# -- several providers, and who a provider's user is -------------------------------------------

def two_providers(issuer: str) -> str:
    return oauth_yaml(issuer, f"""
    mock:
      oauth2:
        server_metadata_url: {issuer}/.well-known/openid-configuration
        client_id: {CLIENT_ID}
        profiles: [readers]
    other:
      oauth2:
        server_metadata_url: {issuer}/.well-known/openid-configuration
        client_id: other-client
        client_secret: other-secret
        scope: openid email
        profiles: [default]
""")


async def test_two_providers_at_once(serve, provider):
    served = await serve(two_providers(provider))
    assert (await served.client.get("/strategies")).json()["result"] == ["local", "mock",
                                                                          "other"]
    r = await served.client.get("/_login/other")
    assert query_of(r.headers["location"])["client_id"] == "other-client"
    one = await browser_login(served, "mock")
    two = await browser_login(served, "other")
    assert one.status_code == 200 and two.status_code == 200, (one.text, two.text)
    # the same `sub` at both: two users, each known to its own strategy only
    kuid1, kuid2 = one.json()["result"]["_id"], two.json()["result"]["_id"]
    assert kuid1 != kuid2
    me1 = (await served.client.get("/_me", headers=bearer(one.json()["result"]["jwt"]))).json()
    me2 = (await served.client.get("/_me", headers=bearer(two.json()["result"]["jwt"]))).json()
    assert me1["result"]["strategies"] == ["mock"]
    assert me2["result"]["strategies"] == ["other"]
    assert me1["result"]["_source"]["profileIds"] == ["readers"]
    assert me2["result"]["_source"]["profileIds"] == ["default"]
    assert await user_count(served) == 3
    # a state of one is not a state of the other
    url = await callback_url(served, "mock")
    denied(await served.client.get(url.replace("/_login/mock", "/_login/other")),
           401, "security.oauth.invalid_state")
    # an ID token for one client is not one for the other
    token = (await provider_tokens(provider, CLIENT_ID))["id_token"]
    denied(await served.client.post("/_login/other", json={"id_token": token}),
           401, "security.oauth.invalid_token")
    r = await served.client.post("/_login/mock", json={"id_token": token})
    assert r.json()["result"]["_id"] == kuid1


async def test_a_provider_account_named_like_a_local_user_is_not_that_user(serve, provider):
    served = await serve(oauth_yaml(provider))
    set_mode(provider, "normal", "admin")
    r = await browser_login(served)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["_id"] != "admin"
    me = (await served.client.get("/_me", headers=bearer(result["jwt"]))).json()["result"]
    assert me["_source"]["profileIds"] == ["readers"]
    denied(await served.client.post("/users/_search", headers=bearer(result["jwt"]), json={}),
           403, "security.rights.forbidden")
    # natively too
    token = (await provider_tokens(provider))["id_token"]
    r = await served.client.post("/_login/mock", json={"id_token": token})
    assert r.json()["result"]["_id"] == result["_id"]
    # the local admin is untouched
    admin = bearer(await login(served.client, "admin", "admin-password"))
    me = (await served.client.get("/_me", headers=admin)).json()["result"]
    assert me["_source"] == {"profileIds": ["admin"]} and me["strategies"] == ["local"]


async def test_a_first_login_on_a_closed_gateway_cannot_touch_security(serve, provider):
    """The provider gives no profile: the user gets `default`, which a closed gateway keeps
    out of the security controller (it used to be `*:*`, a back door to admin)."""
    served = await serve(oauth_yaml(provider, f"""
    mock:
      oauth2:
        server_metadata_url: {provider}/.well-known/openid-configuration
        client_id: {CLIENT_ID}
        client_secret: gateway-secret
"""))
    set_mode(provider, "normal", "newcomer")
    r = await browser_login(served)
    assert r.status_code == 200, r.text
    jwt = bearer(r.json()["result"]["jwt"])
    me = (await served.client.get("/_me", headers=jwt)).json()["result"]
    assert me["_source"]["profileIds"] == ["default"]
    denied(await served.client.post("/users/mine/_create", headers=jwt, json={
        "content": {"profileIds": ["admin"]},
        "credentials": {"local": {"username": "mine", "password": "mine-password"}}}),
        403, "security.rights.forbidden")
    denied(await served.client.put("/roles/anonymous/_update", headers=jwt,
                                   json={"controllers": {"*": {"actions": {"*": True}}}}),
           403, "security.rights.forbidden")
    denied(await served.client.post("/users/_search", headers=jwt, json={}),
           403, "security.rights.forbidden")


async def test_success_redirect(serve, provider):
    target = f"http://127.0.0.1:{free_port()}/done"
    served = await serve(oauth_yaml(provider, extra_oauth2=f"success_redirect: {target}"))
    url = await callback_url(served)
    r = await served.client.get(url)
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(target + "#")
    fragment = {k: v[0] for k, v in parse_qs(urlsplit(location).fragment).items()}
    assert set(fragment) == {"jwt", "expiresAt", "_id"}
    me = await served.client.get("/_me", headers=bearer(fragment["jwt"]))
    assert me.status_code == 200 and me.json()["result"]["_id"] == fragment["_id"]
    # native clients still get JSON
    token = (await provider_tokens(provider))["id_token"]
    r = await served.client.post("/_login/mock", json={"id_token": token})
    assert r.status_code == 200 and r.json()["result"]["_id"] == fragment["_id"]
    # a failure is not redirected with a token
    set_mode(provider, "bad_signature")
    r = await served.client.get(await callback_url(served))
    denied(r, 401, "security.oauth.invalid_token")
    assert "location" not in r.headers


async def test_explicit_endpoints_without_discovery(serve, provider):
    served = await serve(oauth_yaml(provider, f"""
    mock:
      oauth2:
        authorize_url: {provider}/authorize
        access_token_url: {provider}/token
        userinfo_url: {provider}/userinfo
        jwks_uri: {provider}/jwks
        issuer: {provider}
        client_id: {CLIENT_ID}
        client_secret: gateway-secret
        profiles: [readers]
    plain:
      oauth2:
        authorize_url: {provider}/authorize
        access_token_url: {provider}/token
        userinfo_url: {provider}/userinfo
        client_id: plain-client
        scope: email profile
        kuid_claim: email
    nojwks:
      oauth2:
        authorize_url: {provider}/authorize
        access_token_url: {provider}/token
        userinfo_url: {provider}/userinfo
        client_id: {CLIENT_ID}
    otherissuer:
      oauth2:
        authorize_url: {provider}/authorize
        access_token_url: {provider}/token
        jwks_uri: {provider}/jwks
        issuer: https://issuer.example
        client_id: {CLIENT_ID}
"""))
    r = await browser_login(served)
    assert r.status_code == 200, r.text
    kuid = r.json()["result"]["_id"]
    tokens = await provider_tokens(provider)
    for body in ({"id_token": tokens["id_token"]}, {"access_token": tokens["access_token"]}):
        r = await served.client.post("/_login/mock", json=body)
        assert r.status_code == 200 and r.json()["result"]["_id"] == kuid, r.text
    # the issuer is checked: an ID token from another issuer is refused
    set_mode(provider, "wrong_audience")
    denied(await browser_login(served), 401, "security.oauth.invalid_token")
    set_mode(provider, "normal")
    # plain OAuth2 (no openid scope): userinfo names the user, by its email here
    r = await served.client.get("/_login/plain")
    assert "nonce" not in query_of(r.headers["location"])
    r = await browser_login(served, "plain")
    assert r.status_code == 200, r.text
    plain = r.json()["result"]
    assert plain["_id"] != kuid
    found = await served.gateway.storage.get("credentials.oauth.plain", "user-1@example.test")
    assert found["_source"]["kuid"] == plain["_id"]
    assert await user_count(served) == 3
    # OpenID scope but no jwks_uri: the ID token cannot be checked, userinfo names the user
    r = await browser_login(served, "nojwks")
    assert r.status_code == 200, r.text
    denied(await served.client.post("/_login/nojwks", json={"id_token": tokens["id_token"]}),
           401, "security.oauth.invalid_token")
    r = await served.client.post("/_login/nojwks",
                                 json={"access_token": tokens["access_token"]})
    assert r.status_code == 200, r.text
    assert await user_count(served) == 4
    # the configured issuer is checked
    denied(await browser_login(served, "otherissuer"), 401, "security.oauth.invalid_token")
    r = await served.client.post("/_login/otherissuer", json={"id_token": tokens["id_token"]})
    denied(r, 401, "security.oauth.invalid_token")
    assert "'iss'" in r.json()["error"]["message"]
    # no userinfo endpoint: an access token cannot be checked
    denied(await served.client.post("/_login/otherissuer",
                                    json={"access_token": tokens["access_token"]}),
           401, "security.oauth.invalid_token")
    assert await user_count(served) == 4


async def test_strategies_lists_the_providers(serve, provider):
    served = await serve(oauth_yaml(provider))
    r = await served.client.get("/strategies")
    assert r.status_code == 200 and r.json()["result"] == ["local", "mock"]
    # their credentials come from the provider, not from the API
    admin = bearer(await login(served.client, "admin", "admin-password"))
    denied(await served.client.post("/credentials/mock/admin/_create", headers=admin,
                                    json={"sub": "x"}), 400, "security.credentials.rejected")


# -- gateway.yaml ---------------------------------------------------------------------------------

def test_check_reports_provider_mistakes_by_line_and_path(tmp_path):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        auth:
          strategies:
            local: {}
            nameless:
              oauth2:
                server_metadata_url: https://issuer.example/.well-known/openid-configuration
                client_secrte: x
            badurl:
              oauth2:
                server_metadata_url: not a url
                client_id: b
            nowhere:
              oauth2:
                client_id: c
                authorize_url: https://issuer.example/authorize
            noblock: {}
            odd:
              oauth2:
                client_id: e
                authorize_url: https://issuer.example/authorize
                access_token_url: ftp://issuer.example/token
                jwks_uri: https://issuer.example/jwks
                timeout: soon
                profiles: []
                kuid_claim: ""
                success_redirect: /relative
    """))
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    err = done.stderr
    assert "Traceback" not in err
    expected = [
        "gateway.yaml:5: auth.strategies.nameless.oauth2.client_id: missing 'client_id'",
        "gateway.yaml:7: auth.strategies.nameless.oauth2.client_secrte: unknown key "
        "'client_secrte' (did you mean 'client_secret'?)",
        "gateway.yaml:10: auth.strategies.badurl.oauth2.server_metadata_url: malformed URL "
        "'not a url'",
        "gateway.yaml:13: auth.strategies.nowhere.oauth2: give 'server_metadata_url' (OpenID "
        "discovery) or the endpoints: missing 'access_token_url', 'userinfo_url (or jwks_uri)'",
        "gateway.yaml:16: auth.strategies.noblock: a strategy other than 'local' needs an "
        "'oauth2:' block",
        "gateway.yaml:21: auth.strategies.odd.oauth2.access_token_url: malformed URL "
        "'ftp://issuer.example/token'",
        "gateway.yaml:22: auth.strategies.odd.oauth2.jwks_uri: give 'issuer' with 'jwks_uri': "
        "ID tokens are checked against it",
        "gateway.yaml:23: auth.strategies.odd.oauth2.timeout: invalid duration 'soon'",
        "gateway.yaml:24: auth.strategies.odd.oauth2.profiles: min length is 1",
        "gateway.yaml:25: auth.strategies.odd.oauth2.kuid_claim: empty values not allowed",
        "gateway.yaml:26: auth.strategies.odd.oauth2.success_redirect: malformed URL "
        "'/relative'",
    ]
    for line in expected:
        assert line in err, f"{line}\n--- not in ---\n{err}"
    assert f"{len(expected)} error(s)" in err


def test_a_valid_provider_passes_check_and_the_secret_comes_from_the_environment(tmp_path):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        auth:
          strategies:
            github:
              oauth2:
                authorize_url: https://github.com/login/oauth/authorize
                access_token_url: https://github.com/login/oauth/access_token
                userinfo_url: https://api.github.com/user
                client_id: ${GITHUB_CLIENT_ID}
                client_secret: ${GITHUB_CLIENT_SECRET}
                scope: read:user user:email
                kuid_claim: id
    """))
    done = cli("check", cwd=tmp_path, env={"GITHUB_CLIENT_ID": "id",
                                           "GITHUB_CLIENT_SECRET": "secret"})
    assert done.returncode == 0, done.stderr
    config = load_config(tmp_path / "gateway.yaml", env={"GITHUB_CLIENT_ID": "id",
                                                          "GITHUB_CLIENT_SECRET": "s"})
    github = config.data["auth"]["strategies"]["github"]["oauth2"]
    assert github["client_secret"] == "s" and github["profiles"] == ["default"]
    assert github["timeout"] == 10.0 and github["kuid_claim"] == "id"
    # without the variables: an error naming them, no secret in the file
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "gateway.yaml", env={})
    assert "GITHUB_CLIENT_ID" in str(info.value)


# -- races and the user's life --------------------------------------------------------------------

async def test_one_state_one_login_even_at_once(serve, provider):
    served = await serve(oauth_yaml(provider))
    url = await callback_url(served)
    answers = await asyncio.gather(*(served.client.get(url) for _ in range(5)))
    assert sorted(r.status_code for r in answers) == [200, 401, 401, 401, 401]
    assert await user_count(served) == 2


async def test_first_logins_at_once_make_one_user(serve, provider):
    served = await serve(oauth_yaml(provider))
    set_mode(provider, "normal", "newcomer")
    token = (await provider_tokens(provider))["id_token"]
    answers = await asyncio.gather(*(
        served.client.post("/_login/mock", json={"id_token": token}) for _ in range(5)))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert len({r.json()["result"]["_id"] for r in answers}) == 1
    assert await user_count(served) == 2


async def test_the_users_credentials_and_its_deletion(serve, provider):
    served = await serve(oauth_yaml(provider))
    first = (await browser_login(served)).json()["result"]
    kuid = first["_id"]
    admin = bearer(await login(served.client, "admin", "admin-password"))
    r = await served.client.get(f"/users/{kuid}/_strategies", headers=admin)
    assert r.json()["result"] == {"strategies": ["mock"], "total": 1}
    r = await served.client.get(f"/credentials/mock/{kuid}", headers=admin)
    assert r.json()["result"] == {"id": "user-1", "email": "user-1@example.test",
                                  "name": "User user-1"}
    # deleted by an admin: its provider account is free, the next login makes a new user
    assert (await served.client.delete(f"/users/{kuid}", headers=admin)).status_code == 200
    assert await served.gateway.storage.count("credentials.oauth.mock") == 0
    denied(await served.client.get("/_me", headers=bearer(first["jwt"])), 401,
           "security.token.invalid")
    again = await browser_login(served)
    assert again.status_code == 200, again.text
    assert again.json()["result"]["_id"] != kuid
    assert await user_count(served) == 2


@contextlib.asynccontextmanager
async def html_server():
    """An HTTP server answering every request with a 200 HTML page (a portal, a proxy)."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n"
                     b"Connection: close\r\n\r\n<html></html>")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_provider_misconfigured_or_misbehaving(serve, provider):
    async with html_server() as html:
        served = await serve(oauth_yaml(provider, f"""
    missing:
      oauth2:
        server_metadata_url: {provider}/no-such-document
        client_id: {CLIENT_ID}
    html:
      oauth2:
        server_metadata_url: {html}/.well-known/openid-configuration
        client_id: {CLIENT_ID}
    htmljwks:
      oauth2:
        authorize_url: {provider}/authorize
        access_token_url: {provider}/token
        jwks_uri: {html}/jwks
        issuer: {provider}
        client_id: {CLIENT_ID}
    refusing:
      oauth2:
        authorize_url: {provider}/authorize
        access_token_url: {provider}/token
        userinfo_url: {provider}/no-such-userinfo
        client_id: {CLIENT_ID}
"""))
        for name in ("missing", "html"):
            denied(await served.client.get(f"/_login/{name}"), 503,
                   "security.oauth.provider_unavailable")
            denied(await served.client.post(f"/_login/{name}", json={"id_token": "a.b.c"}),
                   503, "security.oauth.provider_unavailable")
        denied(await browser_login(served, "htmljwks"), 503,
               "security.oauth.provider_unavailable")
        # userinfo refusing an access token (4xx): the token is refused
        r = await served.client.post("/_login/refusing", json={"access_token": "abc"})
        denied(r, 401, "security.oauth.invalid_token")
        assert "HTTP 404" in r.json()["error"]["message"]
        assert await user_count(served) == 1
        assert await states(served) == 0


async def test_a_head_request_keeps_no_state(serve, provider):
    served = await serve(oauth_yaml(provider))
    r = await served.client.head("/_login/mock")
    assert r.status_code == 200
    assert await states(served) == 0
