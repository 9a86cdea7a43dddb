"""Kuzzle's browser mode (`cookieAuth`): the token travels in an HttpOnly `authToken` cookie.

With `cookieAuth: true`, login and refreshToken answer `Set-Cookie` instead of a `jwt` in the
body; requests carrying the cookie (and no Authorization header) are authenticated by it;
logout clears it. The cookie is `HttpOnly; SameSite=Strict; Path=/` as in Kuzzle, plus
`Secure` when the client came by HTTPS (`X-Forwarded-Proto` or `Forwarded: proto=` from the
proxy in front), which Kuzzle does not add.
"""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

from ..request import ClientConnection, Request

COOKIE = "authToken"
# the argument the HTTP protocol puts the cookie's token in for auth:login and checkToken with
# cookieAuth: those do not authenticate with it (an expired cookie must not prevent a login),
# checkToken checks it. (Kuzzle skips logout's too, then cannot revoke the token; here logout
# authenticates with the cookie, revokes its token and clears it.)
COOKIE_ARG = "_authCookie"
SKIP_VERIFICATION = frozenset(("login", "checkToken"))


def auth_cookie(header: str) -> str | None:
    """The `authToken` cookie's value in a Cookie header (Kuzzle's "null" is none)."""
    if COOKIE not in header:
        return None
    for part in header.split(";"):
        name, _, value = part.partition("=")
        if name.strip() == COOKIE:
            value = value.strip().strip('"')
            return value if value and value != "null" else None
    return None


def skips_verification(data: dict[str, Any]) -> bool:
    """auth:login/checkToken with cookieAuth: the cookie is theirs, not the caller's."""
    return (data.get("controller") == "auth" and data.get("action") in SKIP_VERIFICATION
            and data.get("cookieAuth") in (True, "true", "1", 1))


def is_https(connection: ClientConnection) -> bool:
    headers = connection.headers
    proto = headers.get("x-forwarded-proto") or ""
    if proto.split(",")[0].strip().lower() == "https":
        return True
    forwarded = (headers.get("forwarded") or "").lower()
    return "proto=https" in forwarded.split(",")[0].replace(" ", "")


def _cookie(request: Request, value: str, expires_ms: int | None) -> str:
    parts = [f"{COOKIE}={value}", "Path=/"]
    if expires_ms is not None:
        parts.append(f"Expires={formatdate(expires_ms / 1000, usegmt=True)}")
    parts += ["HttpOnly", "SameSite=Strict"]
    if is_https(request.context.connection):
        parts.append("Secure")
    return "; ".join(parts)


def send_token(request: Request, answer: dict[str, Any]) -> dict[str, Any]:
    """A login-like answer; with cookieAuth, its token goes in the cookie, not the body."""
    if request.input.args.get("cookieAuth") not in (True, "true", "1", 1):
        return answer
    expires = answer["expiresAt"]
    request.response.set_header("Set-Cookie", _cookie(
        request, answer["jwt"], None if expires in (None, -1) else expires))
    return {k: v for k, v in answer.items() if k != "jwt"}


def clear_cookie(request: Request) -> str:
    """Kuzzle's `authToken=null`, with an expiry in the past so that browsers drop it."""
    return _cookie(request, "null", 0)
