"""The auth controller as Kuzzle's: login arguments from the query string, browser mode
(cookieAuth), createToken, checkRights, and login attempts counted per connection and per
username."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.security_helpers import bearer, closed_yaml, denied, login, query
from tests.test_security import storage_line  # noqa: F401  (fixture)

LOGIN = {"username": "alice", "password": "alice-password"}


# -- login from the query string ------------------------------------------------------------------

async def test_login_reads_credentials_from_the_query_string(serve):
    served = await serve(closed_yaml())
    client = served.client
    # the SDK's generic `query` over HTTP sends GET /_login/local?username=..&password=..
    r = await client.get("/_login/local", params={**LOGIN, "expiresIn": "1h"})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["_id"] == "alice" and 3_590_000 <= result["ttl"] <= 3_600_000
    assert (await client.get("/_me", headers=bearer(result["jwt"]))).status_code == 200
    # POST with the credentials in the query string and no body: the same
    r = await client.post("/_login/local", params=LOGIN)
    assert r.status_code == 200, r.text
    # wrong ones are refused the same way
    r = await client.get("/_login/local", params={"username": "alice", "password": "nope"})
    denied(r, 401, "plugin.strategy.missing_user")
    # a body wins over the query string
    r = await client.post("/_login/local", params={"username": "alice", "password": "nope"},
                          json=LOGIN)
    assert r.status_code == 200


# -- cookieAuth -----------------------------------------------------------------------------------

async def test_cookie_auth_login_use_check_refresh_logout(serve):
    served = await serve(closed_yaml())
    client = served.client
    r = await client.post("/_login/local?cookieAuth=true", json=LOGIN)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert "jwt" not in result and result["_id"] == "alice"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("authToken=ey")
    attributes = [part.strip() for part in cookie.split(";")]
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes)
    assert any(a.startswith("Expires=") for a in attributes)
    assert "Secure" not in attributes  # plain HTTP
    jwt = cookie.split(";")[0].split("=", 1)[1]
    # httpx keeps the cookie (as a browser would): requests carrying it are authenticated
    me = await client.get("/_me")
    assert me.status_code == 200 and me.json()["result"]["_id"] == "alice"
    # checkToken with cookieAuth checks the cookie's token
    r = await client.post("/_checkToken?cookieAuth=true")
    assert r.json()["result"]["valid"] is True and r.json()["result"]["kuid"] == "alice"
    # refreshToken with cookieAuth: a new cookie, no jwt in the body
    r = await client.post("/_refreshToken?cookieAuth=true")
    assert r.status_code == 200, r.text
    assert "jwt" not in r.json()["result"]
    fresh = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert fresh != jwt
    denied(await client.get("/_me", headers=bearer(jwt)), 401, "security.token.invalid")
    assert (await client.get("/_me")).json()["result"]["_id"] == "alice"
    # logout with cookieAuth: the cookie is cleared and its token revoked
    r = await client.post("/_logout?cookieAuth=true")
    assert r.status_code == 200, r.text
    cleared = r.headers["set-cookie"]
    assert cleared.startswith("authToken=null;") and "1970" in cleared
    denied(await client.get("/_me", headers=bearer(fresh)), 401, "security.token.invalid")
    r = await client.get("/_me")
    assert r.json()["result"]["_id"] == "-1"  # anonymous again


async def test_cookie_auth_details(serve):
    served = await serve(closed_yaml())
    async with httpx.AsyncClient(base_url=served.url) as client:
        # behind an HTTPS proxy, the cookie is Secure
        r = await client.post("/_login/local?cookieAuth", json=LOGIN,
                              headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in [a.strip() for a in r.headers["set-cookie"].split(";")]
        jwt = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        client.cookies.clear()
        # without cookieAuth, the answer is as usual
        r = await client.post("/_login/local", json=LOGIN)
        assert "set-cookie" not in r.headers and "jwt" in r.json()["result"]
        admin = await login(client, "admin", "admin-password")
        # an Authorization header wins over the cookie
        r = await client.get("/_me", headers={**bearer(admin), "Cookie": f"authToken={jwt}"})
        assert r.json()["result"]["_id"] == "admin"
        # a cookie among others is found; "null" is no token
        r = await client.get("/_me", headers={"Cookie": f"theme=dark; authToken={jwt}; x=1"})
        assert r.json()["result"]["_id"] == "alice"
        r = await client.get("/_me", headers={"Cookie": "authToken=null"})
        assert r.json()["result"]["_id"] == "-1"
        # a bad cookie on an ordinary request is a bad token
        denied(await client.get("/_me", headers={"Cookie": "authToken=garbage"}), 401,
               "security.token.invalid")
        # ...but does not prevent a login, nor checkToken/logout, in cookie mode
        r = await client.post("/_login/local?cookieAuth=true", json=LOGIN,
                              headers={"Cookie": "authToken=garbage"})
        assert r.status_code == 200, r.text
        r = await client.post("/_checkToken?cookieAuth=true",
                              headers={"Cookie": "authToken=garbage"})
        assert r.status_code == 200 and r.json()["result"]["valid"] is False
        # logout authenticates with the cookie (and revokes its token): a bad one is refused
        r = await client.post("/_logout?cookieAuth=true", headers={"Cookie": "authToken=garbage"})
        denied(r, 401, "security.token.invalid")
        # other protocols' form: /_query with the cookie
        r = await client.post("/_query", json={"controller": "auth", "action": "getCurrentUser"},
                              headers={"Cookie": f"authToken={jwt}"})
        assert r.json()["result"]["_id"] == "alice"


# -- createToken ----------------------------------------------------------------------------------

async def test_create_token(storage_line, serve):  # noqa: F811
    served = await serve(closed_yaml(storage=storage_line))
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    r = await client.post("/_createToken?expiresIn=60000", headers=alice)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert set(result) == {"expiresAt", "singleUse", "token", "ttl"}
    assert result["singleUse"] is False and 58_000 <= result["ttl"] <= 60_000
    assert result["expiresAt"] <= time.time() * 1000 + 60_000
    for _ in range(2):
        me = await client.get("/_me", headers=bearer(result["token"]))
        assert me.json()["result"]["_id"] == "alice"
    # singleUse: one request, then refused
    r = await client.post("/_createToken?singleUse=true", headers=alice)
    single = r.json()["result"]
    assert single["singleUse"] is True
    me = await client.get("/_me", headers=bearer(single["token"]))
    assert me.status_code == 200 and me.json()["result"]["_id"] == "alice"
    denied(await client.get("/_me", headers=bearer(single["token"])), 401,
           "security.token.invalid")
    # concurrent uses of one single-use token: only one succeeds
    single = (await client.post("/_createToken?singleUse", headers=alice)).json()["result"]
    answers = await asyncio.gather(*(client.get("/_me", headers=bearer(single["token"]))
                                     for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401, 401]
    # never without expiry; never anonymous
    denied(await client.post("/_createToken?expiresIn=-1", headers=alice), 400,
           "security.token.invalid_expiration")
    denied(await client.post("/_createToken"), 401, "security.rights.unauthorized")


# -- checkRights ----------------------------------------------------------------------------------

async def test_check_rights(serve):
    served = await serve(closed_yaml())
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))

    async def allowed(headers, payload):
        r = await client.post("/_checkRights", headers=headers, json=payload)
        assert r.status_code == 200, r.text
        return r.json()["result"]["allowed"]

    assert await allowed(alice, {"controller": "auth", "action": "getCurrentUser"}) is True
    assert await allowed(alice, {"controller": "rec/api", "action": "echo"}) is True
    assert await allowed(alice, {"controller": "security", "action": "createUser"}) is False
    assert await allowed(alice, {"controller": "document", "action": "create", "index": "i",
                                 "collection": "c", "body": {}}) is False
    denied(await client.post("/_checkRights", headers=alice, json={"action": "x"}), 400,
           "api.assert.missing_argument")
    denied(await client.post("/_checkRights", headers=alice,
                             json={"controller": "auth", "action": 3}),
           400, "api.assert.missing_argument")
    denied(await client.post("/_checkRights", headers=alice), 400, "api.assert.body_required")
    r = await query(client, alice["Authorization"][7:], controller="auth",
                    action="checkRights", body={"controller": "auth", "action": "logout"})
    assert r.json()["result"] == {"allowed": True}


# -- login attempts -------------------------------------------------------------------------------

BRUTE = ("  login_failures_per_username: 3\n  login_failure_delay: 1s\n"
         "  login_failure_max_delay: 4s")


async def test_password_guessing_on_one_username_is_slowed(serve):
    """Whatever the connection: each guess on its own connection (no keep-alive), the
    per-connection limit never applies, the per-username one does."""
    served = await serve(closed_yaml(logins_per_second=1, limits=BRUTE))
    statuses = []
    for guess in ("123456", "password", "qwerty", "letmein", "alice-password"):
        async with httpx.AsyncClient(base_url=served.url) as fresh:
            r = await fresh.post("/_login/local",
                                 json={"username": "ALICE", "password": guess})
        statuses.append(r.status_code)
        last = r
    # three free failures, the fourth attempt proceeds and locks the username, then: 429,
    # even with the right password (nothing is checked while locked)
    assert statuses == [401, 401, 401, 401, 429]
    denied(last, 429, "api.process.too_many_logins_requests")
    assert last.headers["retry-after"] == "1"
    # another user is not concerned
    async with httpx.AsyncClient(base_url=served.url) as fresh:
        assert (await login(fresh, "admin", "admin-password"))
    # once the delay is over, one more attempt, then a doubled delay
    await asyncio.sleep(1.1)
    async with httpx.AsyncClient(base_url=served.url) as fresh:
        r = await fresh.post("/_login/local", json={"username": "alice", "password": "nope"})
        assert r.status_code == 401
        r = await fresh.post("/_login/local", json=LOGIN)
        denied(r, 429, "api.process.too_many_logins_requests")
        # the delay doubled (2s), counted from the attempt's start (checking a password
        # takes a while on a busy machine)
        assert r.headers["retry-after"] in ("1", "2")
    # then the right password works and resets the count
    await asyncio.sleep(2.1)
    async with httpx.AsyncClient(base_url=served.url) as fresh:
        assert await login(fresh, "alice", "alice-password")
    for _ in range(3):
        async with httpx.AsyncClient(base_url=served.url) as fresh:
            r = await fresh.post("/_login/local", json={"username": "alice", "password": "x"})
            assert r.status_code == 401


async def test_a_burst_of_guesses_is_counted_before_passwords_are_checked(serve):
    served = await serve(closed_yaml(logins_per_second=100, limits=BRUTE))
    burst = await asyncio.gather(*(
        served.client.post("/_login/local", json={"username": "alice", "password": f"g{i}"})
        for i in range(12)))
    codes = sorted(r.status_code for r in burst)
    assert codes == [401] * 4 + [429] * 8


async def test_many_users_logging_in_at_once_from_one_address_are_not_slowed(serve):
    """The default limits (1 login per second per connection): users behind one proxy or NAT,
    each on a connection of their own, all log in at once."""
    users = "".join(f"""
    user{i}:
      profileIds: [readers]
      credentials: {{local: {{username: user{i}, password: password-{i}}}}}""" for i in range(8))
    served = await serve(closed_yaml(logins_per_second=1, users=users))

    async def one(i: int) -> int:
        async with httpx.AsyncClient(base_url=served.url) as client:
            r = await client.post("/_login/local",
                                  json={"username": f"user{i}", "password": f"password-{i}"})
            return r.status_code

    assert await asyncio.gather(*(one(i) for i in range(8))) == [200] * 8
    # and each may mistype once without any effect on the others
    async def mistype(i: int) -> int:
        async with httpx.AsyncClient(base_url=served.url) as client:
            r = await client.post("/_login/local",
                                  json={"username": f"user{i}", "password": "typo"})
            return r.status_code

    assert await asyncio.gather(*(mistype(i) for i in range(8))) == [401] * 8
    assert await asyncio.gather(*(one(i) for i in range(8))) == [200] * 8


async def test_the_login_guard_is_bounded_and_can_be_disabled(serve):
    from sanic_gateway.security import logins

    guard = logins.LoginGuard(1, 1.0, 2.0)
    old = logins.MAX_ENTRIES
    logins.MAX_ENTRIES = 10
    try:
        for i in range(100):
            assert guard.attempt(f"user{i}") == 0
        assert len(guard._entries) <= 11
    finally:
        logins.MAX_ENTRIES = old
    assert guard.attempt("x") == 0 and guard.attempt("x") == 0  # the second locks
    assert 0.9 < guard.attempt("x") <= 1.0
    entry = guard._entries["x"]
    entry[1] = 0  # the lock is over: the next attempt proceeds and doubles the delay
    assert guard.attempt("x") == 0
    assert 1.9 < guard.attempt("x") <= 2.0
    entry[1] = 0
    assert guard.attempt("x") == 0
    assert 1.9 < guard.attempt("x") <= 2.0  # max_delay
    guard.succeeded("x")
    assert guard.attempt("x") == 0 and "x" in guard._entries
    off = logins.LoginGuard(0, 1.0, 2.0)
    assert all(off.attempt("x") == 0 for _ in range(50))
