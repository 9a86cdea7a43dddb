"""What the security and auth tests share: a closed gateway.yaml, logins, forged tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import time
import uuid
from typing import Any

import httpx

from tests.test_events import REC

# a known signing key, so that tests can sign tokens the way the gateway does
SECRET = "a-test-secret-that-is-long-enough-0123456789"

ANONYMOUS_ROLE = (
    "{controllers: {auth: {actions: {login: true, checkToken: true, getCurrentUser: true, "
    "getMyRights: true, getStrategies: true}}, server: {actions: {now: true}}}}"
)

REC_PLUGIN = f"""
  rec:
    module: {REC}
    controllers:
      api: {{echo: echo, echoSync: echo_sync}}
    routes:
      - {{verb: post, url: /echo, controller: api, action: echo}}
      - {{verb: get, url: /sync, controller: api, action: echoSync}}
"""


def closed_yaml(*, roles: str = "", profiles: str = "", users: str = "", plugins: str = "",
                logins_per_second: int = 100, storage: str = "", extra: str = "",
                limits: str = "") -> str:
    """A gateway closed to visitors (anonymous may log in and little else) with an admin
    (admin / admin-password), alice (readers: auth:*, rec/api:echo) and the rec plugin."""
    return f"""
auth:
  jwt: {{secret: {SECRET}}}
limits:
  login_attempts_per_second: {logins_per_second}
{limits}
{storage}
security:
  roles:
    anonymous: {ANONYMOUS_ROLE}
    reader:
      controllers: {{auth: {{actions: {{"*": true}}}}, "rec/api": {{actions: {{echo: true}}}}}}
{roles}
  profiles:
    readers: {{policies: [{{roleId: reader}}]}}
{profiles}
  users:
    admin:
      profileIds: [admin]
      credentials: {{local: {{username: admin, password: admin-password}}}}
    alice:
      profileIds: [readers]
      content: {{name: Alice}}
      credentials: {{local: {{username: alice, password: alice-password}}}}
{users}
plugins:
{REC_PLUGIN}
{plugins}
{extra}
"""


def bearer(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


async def login(client: httpx.AsyncClient, username: str, password: str,
                **args: Any) -> str:
    r = await client.post("/_login/local", params=args,
                          json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["result"]["jwt"]


async def query(client: httpx.AsyncClient, jwt: str | None = None, **request: Any,
                ) -> httpx.Response:
    """POST /_query: a raw API request, as other protocols send it."""
    if jwt is not None:
        request["jwt"] = jwt
    return await client.post("/_query", json=request)


def error_id(response: httpx.Response) -> str | None:
    error = response.json()["error"]
    return error and error["id"]


def denied(response: httpx.Response, status: int, eid: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["id"] == eid, response.text
    assert response.json()["result"] is None


async def fresh_second() -> None:
    """Sleep until a new one-second window of the gateway's rate counters begins (they use
    time.monotonic, and the gateway runs in this process)."""
    now = time.monotonic()
    await asyncio.sleep(math.ceil(now) - now + 0.02)


# -- tokens made by hand ------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims(sub: str, **more: Any) -> dict[str, Any]:
    return {"sub": sub, "jti": uuid.uuid4().hex, "iat": int(time.time()), **more}


def unsigned_token(payload: dict[str, Any], alg: str = "none") -> str:
    return f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(payload)}."


def hmac_token(payload: dict[str, Any], key: str, header_alg: str = "HS256",
               digest: Any = hashlib.sha256) -> str:
    """A JWS whose header says `header_alg`, signed with HMAC-`digest` and `key`."""
    signing_input = f"{b64url_json({'alg': header_alg, 'typ': 'JWT'})}.{b64url_json(payload)}"
    signature = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def payload_of(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
