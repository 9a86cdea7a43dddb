"""The auth controller (SPEC 8.2, 8.3): logins, tokens and what forging them gets an attacker,
the local strategy's credentials, login brute force, and strategies written as plugins."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import httpx
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import OctKey

from sanic_gateway.config import ConfigError, load_config
from sanic_gateway.gateway import Gateway, PluginStartError
from tests.conftest import write_files
from tests.security_helpers import (
    SECRET,
    bearer,
    claims,
    closed_yaml,
    denied,
    fresh_second,
    hmac_token,
    login,
    payload_of,
    query,
    unsigned_token,
)

# -- login and the token's life ------------------------------------------------------------------


async def test_login_answers_kuzzles_token_shape(serve):
    served = await serve(closed_yaml())
    client = served.client
    before = time.time() * 1000
    r = await client.post("/_login/local", json={"username": "alice",
                                                 "password": "alice-password"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["controller"] == "auth" and body["action"] == "login"
    result = body["result"]
    assert set(result) == {"_id", "jwt", "expiresAt", "ttl"}
    assert result["_id"] == "alice"
    # one hour by default (exp is whole seconds)
    assert before + 3600_000 - 1500 <= result["expiresAt"] <= time.time() * 1000 + 3600_000
    assert 3600_000 - 1500 <= result["ttl"] <= 3600_000
    # the token is a JWS signed with the configured key, algorithm pinned to HS256
    decoded = jose_jwt.decode(result["jwt"], OctKey.import_key(SECRET), algorithms=["HS256"])
    assert decoded.header["alg"] == "HS256"
    assert decoded.claims["sub"] == "alice"
    assert decoded.claims["exp"] * 1000 == result["expiresAt"]
    # the same through POST /_query, with a duration
    r = await query(client, controller="auth", action="login", strategy="local",
                    expiresIn="10s", body={"username": "alice", "password": "alice-password"})
    assert r.status_code == 200
    assert 8_500 <= r.json()["result"]["ttl"] <= 10_000
    # milliseconds, as in Kuzzle
    r = await client.post("/_login/local?expiresIn=60000",
                          json={"username": "alice", "password": "alice-password"})
    assert 58_500 <= r.json()["result"]["ttl"] <= 60_000
    # -1: a token that never expires (no max_ttl configured)
    r = await client.post("/_login/local?expiresIn=-1",
                          json={"username": "alice", "password": "alice-password"})
    # Kuzzle's -1 for "never"
    assert r.json()["result"]["expiresAt"] == -1 and r.json()["result"]["ttl"] == -1
    assert "exp" not in payload_of(r.json()["result"]["jwt"])
    me = await client.get("/_me", headers=bearer(r.json()["result"]["jwt"]))
    assert me.status_code == 200


async def test_failed_logins(serve):
    served = await serve(closed_yaml())
    client = served.client
    for body in ({"username": "alice", "password": "wrong"},
                 {"username": "nobody", "password": "alice-password"},
                 {"username": "alice"}, {"password": "alice-password"}, {},
                 {"username": ["alice"], "password": {"$ne": ""}},
                 {"username": "alice", "password": ""}):
        r = await client.post("/_login/local", json=body)
        denied(r, 401, "plugin.strategy.missing_user")
        assert "alice-password" not in r.text
    denied(await client.post("/_login/local"), 401, "plugin.strategy.missing_user")
    denied(await client.post("/_login/ldap", json={}), 400,
           "security.credentials.unknown_strategy")
    denied(await query(client, controller="auth", action="login", body={}),
           400, "api.assert.missing_argument")
    creds = {"username": "alice", "password": "alice-password"}
    for odd in ("soon", 10**30, 1e300, True, [1], {"s": 1}, "1e999", "-5", -5):
        r = await query(client, controller="auth", action="login", strategy="local",
                        expiresIn=odd, body=creds)
        denied(r, 400, "security.token.invalid_expiration")
    denied(await client.post("/_login/local?expiresIn", json=creds),
           400, "security.token.invalid_expiration")
    # a number in a string is milliseconds too, as in Kuzzle
    r = await client.post("/_login/local?expiresIn=1500.5", json=creds)
    assert 0 <= r.json()["result"]["ttl"] <= 1501


async def test_a_token_of_any_type_is_refused_cleanly(serve):
    served = await serve(closed_yaml())
    for jwt in (123, ["a"], {"sub": "admin"}, True, "a.b.c", "..", "é.é.é", "x" * 100_000,
                "eyJhbGciOiJIUzI1NiJ9.e30.", "Bearer x"):
        r = await query(served.client, jwt=jwt, controller="server", action="now")
        denied(r, 401, "security.token.invalid")
    assert (await query(served.client, jwt="", controller="server",
                        action="now")).status_code == 200  # no token: the anonymous user


async def test_max_ttl_caps_what_a_login_may_ask(serve):
    served = await serve(closed_yaml().replace(
        f"jwt: {{secret: {SECRET}}}", f"jwt: {{secret: {SECRET}, expires_in: 1m, max_ttl: 1h}}"))
    client = served.client
    creds = {"username": "alice", "password": "alice-password"}
    r = await client.post("/_login/local", json=creds)
    assert 58_500 <= r.json()["result"]["ttl"] <= 60_000
    for too_long in ("2h", "-1", "7200000"):
        denied(await client.post(f"/_login/local?expiresIn={too_long}", json=creds),
               400, "security.token.ttl_exceeded")
    assert (await client.post("/_login/local?expiresIn=1h", json=creds)).status_code == 200


async def test_get_current_user_and_strategies(serve):
    served = await serve(closed_yaml())
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    for path in ("/_me", "/users/_me"):
        me = (await client.get(path, headers=alice)).json()["result"]
        assert me == {"_id": "alice", "_source": {"name": "Alice", "profileIds": ["readers"]},
                      "strategies": ["local"]}
    anonymous = (await client.get("/_me")).json()["result"]
    assert anonymous == {"_id": "-1", "_source": {"profileIds": ["anonymous"]},
                         "strategies": []}
    assert (await client.get("/strategies")).json()["result"] == ["local"]


async def test_check_token(serve):
    served = await serve(closed_yaml())
    client = served.client
    jwt = await login(client, "alice", "alice-password")
    r = await client.post("/_checkToken", json={"token": jwt})
    result = r.json()["result"]
    assert result["valid"] is True and result["kuid"] == "alice"
    assert result["expiresAt"] == payload_of(jwt)["exp"] * 1000
    for bad, state in (("nope", "Invalid token."),
                       (hmac_token(claims("alice", exp=int(time.time()) - 5), SECRET),
                        "Token expired"),
                       (unsigned_token(claims("alice")), "Invalid token.")):
        r = await client.post("/_checkToken", json={"token": bad})
        assert r.status_code == 200
        assert r.json()["result"] == {"valid": False, "state": state}
    await client.post("/_logout", headers=bearer(jwt))
    r = await client.post("/_checkToken", json={"token": jwt})
    assert r.json()["result"]["valid"] is False
    # as in Kuzzle, no token is the anonymous user's token
    anonymous = (await client.post("/_checkToken", json={})).json()["result"]
    assert anonymous == {"valid": True, "kuid": "-1", "expiresAt": -1}
    denied(await client.post("/_checkToken", json={"token": 42}), 400, "api.assert.invalid_type")


async def test_logout_revokes_only_that_token_unless_global(serve):
    served = await serve(closed_yaml())
    client = served.client
    first, second, third = [await login(client, "alice", "alice-password") for _ in range(3)]
    r = await client.post("/_logout", headers=bearer(first))
    assert r.status_code == 200 and r.json()["result"] == {"acknowledged": True}
    denied(await client.get("/_me", headers=bearer(first)), 401, "security.token.invalid")
    assert (await client.get("/_me", headers=bearer(second))).status_code == 200
    r = await client.post("/_logout?global", headers=bearer(second))
    assert r.status_code == 200
    for jwt in (second, third):
        denied(await client.get("/_me", headers=bearer(jwt)), 401, "security.token.invalid")
    # a new login works again
    fresh = await login(client, "alice", "alice-password")
    assert (await client.get("/_me", headers=bearer(fresh))).status_code == 200
    # visitors have nothing to log out from
    denied(await client.post("/_logout"), 401, "security.rights.unauthorized")
    # the revocation is stored: a second gateway on the same storage refuses the token too
    assert await served.gateway.security.tokens.storage.exists(
        "tokens.revoked", payload_of(first)["jti"])


async def test_refresh_token(serve):
    served = await serve(closed_yaml())
    client = served.client
    old = await login(client, "alice", "alice-password")
    r = await client.post("/_refreshToken?expiresIn=30s", headers=bearer(old))
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert set(result) == {"_id", "jwt", "expiresAt", "ttl"}
    assert result["_id"] == "alice" and result["jwt"] != old
    assert 28_500 <= result["ttl"] <= 30_000
    assert (await client.get("/_me", headers=bearer(result["jwt"]))).status_code == 200
    denied(await client.get("/_me", headers=bearer(old)), 401, "security.token.invalid")
    denied(await client.post("/_refreshToken"), 401, "security.rights.unauthorized")


async def test_a_token_expires(serve):
    served = await serve(closed_yaml())
    client = served.client
    r = await client.post("/_login/local?expiresIn=1s",
                          json={"username": "alice", "password": "alice-password"})
    jwt = r.json()["result"]["jwt"]
    expires_at = r.json()["result"]["expiresAt"] / 1000
    if expires_at - time.time() > 0.3:  # exp is whole seconds: it may already be over
        assert (await client.get("/_me", headers=bearer(jwt))).status_code == 200
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.05)
    denied(await client.get("/_me", headers=bearer(jwt)), 401, "security.token.expired")
    denied(await client.post("/_refreshToken", headers=bearer(jwt)),
           401, "security.token.expired")


# -- forged tokens ---------------------------------------------------------------------------------

async def test_forged_tokens_are_refused_and_change_nothing(serve):
    served = await serve(closed_yaml())
    client = served.client
    real = await login(client, "alice", "alice-password")
    head, payload, signature = real.split(".")
    as_admin = claims("admin")
    forged = {
        "alg none": unsigned_token(as_admin),
        "alg None": unsigned_token(as_admin, alg="None"),
        "alg none with a signature": unsigned_token(as_admin) + signature,
        "HS256 with another key": jose_jwt.encode(
            {"alg": "HS256"}, as_admin, OctKey.import_key("another-key-" + "x" * 40),
            algorithms=["HS256"]),
        "HS512 header, HS256 signature": hmac_token(as_admin, SECRET, header_alg="HS512"),
        "HS512 with the right key": hmac_token(as_admin, SECRET, header_alg="HS512",
                                               digest=hashlib.sha512),
        "HS384 with the right key": hmac_token(as_admin, SECRET, header_alg="HS384",
                                               digest=hashlib.sha384),
        "tampered payload": ".".join(
            [head, hmac_token(claims("admin"), SECRET).split(".")[1], signature]),
        "kuid changed in place": ".".join(
            [head, hmac_token({**payload_of(real), "sub": "admin"}, "k").split(".")[1],
             signature]),
        "empty signature": f"{head}.{payload}.",
        "two parts": f"{head}.{payload}",
        "garbage": "not.a.token",
        "no sub": hmac_token({"jti": "x", "iat": int(time.time())}, SECRET),
        "no jti": hmac_token({"sub": "admin", "iat": int(time.time())}, SECRET),
        "numeric sub": hmac_token(claims(1), SECRET),  # type: ignore[arg-type]
        "unknown user": hmac_token(claims("nobody"), SECRET),
    }
    for name, token in forged.items():
        r = await client.post("/users/mallory/_create", headers=bearer(token), json={
            "content": {"profileIds": ["admin"]},
            "credentials": {"local": {"username": "mallory", "password": "mallory-pw"}}})
        denied(r, 401, "security.token.invalid")
        r = await query(client, token, controller="security", action="updateUser", _id="alice",
                        body={"profileIds": ["admin"]})
        assert r.status_code == 401, name
        checked = (await client.post("/_checkToken", json={"token": token})).json()["result"]
        assert checked["valid"] is False, name
    # an expired token signed with the right key
    expired = hmac_token(claims("admin", exp=int(time.time()) - 1), SECRET)
    denied(await client.post("/users/mallory/_create", headers=bearer(expired), json={
        "content": {"profileIds": ["admin"]}}), 401, "security.token.expired")
    # what a real token of the same key looks like is accepted (the forging above is honest)
    good = hmac_token(claims("admin"), SECRET)
    assert (await client.get("/users/alice", headers=bearer(good))).status_code == 200
    # nothing changed
    admin = bearer(await login(client, "admin", "admin-password"))
    denied(await client.get("/users/mallory", headers=admin), 404, "security.user.not_found")
    alice = (await client.get("/users/alice", headers=admin)).json()["result"]
    assert alice["_source"]["profileIds"] == ["readers"]
    denied(await client.post("/_login/local", json={"username": "mallory",
                                                   "password": "mallory-pw"}),
           401, "plugin.strategy.missing_user")


async def test_revoked_and_deleted_users_tokens_are_refused(serve):
    served = await serve(closed_yaml(users="""
    bob: {profileIds: [readers], credentials: {local: {username: bob, password: bob-password}}}
"""))
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    revoked = await login(client, "alice", "alice-password")
    await client.post("/_logout", headers=bearer(revoked))
    for _ in range(2):  # from the cache and from storage alike
        denied(await client.put("/_me", headers=bearer(revoked), json={"name": "Eve"}),
               401, "security.token.invalid")
        served.gateway.security.tokens._revoked.clear()
    assert (await client.get("/users/alice", headers=admin)).json()["result"]["_source"][
        "name"] == "Alice"
    bob = await login(client, "bob", "bob-password")
    assert (await client.delete("/users/bob", headers=admin)).status_code == 200
    denied(await client.get("/_me", headers=bearer(bob)), 401, "security.token.invalid")
    # a new user with the same kuid does not inherit the old tokens
    r = await client.post("/users/bob/_create", headers=admin, json={
        "content": {"profileIds": ["admin"]}})
    assert r.status_code == 200
    denied(await client.get("/users/alice", headers=bearer(bob)), 401, "security.token.invalid")


# -- brute force -----------------------------------------------------------------------------------

async def test_login_attempts_are_throttled_per_connection(serve):
    """limits.login_attempts_per_second counts per connection, as Kuzzle: one keep-alive
    connection (this client's) is one connection. (The per-username defence is off here; see
    tests/test_kuzzle_auth.py.)"""
    served = await serve(closed_yaml(logins_per_second=2,
                                     limits="  login_failures_per_username: 0"))
    client = served.client
    await fresh_second()
    statuses = []
    for guess in ("123456", "password", "alice", "alice-password"):
        r = await client.post("/_login/local", json={"username": "alice", "password": guess})
        statuses.append((r.status_code, r.json()["error"] and r.json()["error"]["id"]))
    assert statuses[:2] == [(401, "plugin.strategy.missing_user")] * 2
    # the third attempt of the second is refused before any password is checked: even the
    # right one
    assert statuses[2:] == [(429, "api.process.too_many_logins_requests")] * 2
    assert r.headers["retry-after"] == "1"
    # through /_query, on the same connection: still refused
    r = await query(client, controller="auth", action="login", strategy="local",
                    body={"username": "alice", "password": "alice-password"})
    denied(r, 429, "api.process.too_many_logins_requests")
    # other actions are not concerned
    assert (await client.get("/_now")).status_code == 200
    # another connection from the same address is not concerned either
    async with httpx.AsyncClient(base_url=served.url) as other:
        jwt = await login(other, "alice", "alice-password")
    # the next second the account works as before: no lock-out, nothing changed
    await fresh_second()
    jwt = await login(client, "alice", "alice-password")
    me = (await client.get("/_me", headers=bearer(jwt))).json()["result"]
    assert me["_source"] == {"name": "Alice", "profileIds": ["readers"]}


# -- the local strategy's credentials --------------------------------------------------------------

async def test_my_credentials(serve):
    served = await serve(closed_yaml(users="""
    nocreds: {profileIds: [readers]}
"""))
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    for prefix in ("/_me/credentials/local", "/credentials/local/_me"):
        assert (await client.get(f"{prefix}/_exists", headers=alice)).json()["result"] is True
    assert (await client.get("/_me/credentials/local", headers=alice)).json()["result"] == {
        "username": "alice", "kuid": "alice"}
    r = await client.post("/_me/credentials/local/_validate", headers=alice,
                          json={"username": "alice", "password": "x"})
    assert r.json()["result"] is True
    denied(await client.post("/_me/credentials/local/_validate", headers=alice,
                             json={"username": "", "password": "x"}),
           400, "security.credentials.rejected")
    denied(await client.post("/_me/credentials/local/_create", headers=alice,
                             json={"username": "alice2", "password": "x"}),
           412, "security.credentials.already_exist")
    # a new password: the old one stops working
    r = await client.put("/_me/credentials/local/_update", headers=alice,
                         json={"password": "new-password"})
    assert r.json()["result"] == {"username": "alice", "kuid": "alice"}
    denied(await client.post("/_login/local", json={"username": "alice",
                                                   "password": "alice-password"}),
           401, "plugin.strategy.missing_user")
    assert await login(client, "alice", "new-password")
    # a new username
    await client.put("/credentials/local/_me/_update", headers=alice,
                     json={"username": "alicia"})
    assert await login(client, "alicia", "new-password")
    # deleted: no login, then created again
    r = await client.delete("/_me/credentials/local", headers=alice)
    assert r.json()["result"] == {"acknowledged": True}
    assert (await client.get("/_me/credentials/local/_exists", headers=alice)).json()[
        "result"] is False
    denied(await client.get("/_me/credentials/local", headers=alice),
           404, "security.credentials.not_found")
    denied(await client.delete("/_me/credentials/local", headers=alice),
           404, "security.credentials.not_found")
    denied(await client.put("/_me/credentials/local/_update", headers=alice,
                            json={"password": "x"}), 404, "security.credentials.not_found")
    denied(await client.post("/_login/local", json={"username": "alicia",
                                                   "password": "new-password"}),
           401, "plugin.strategy.missing_user")
    r = await client.post("/_me/credentials/local/_create", headers=alice,
                          json={"username": "alice", "password": "again"})
    assert r.status_code == 200 and r.json()["result"] == {"username": "alice", "kuid": "alice"}
    assert await login(client, "alice", "again")
    # the unknown strategy, and visitors
    denied(await client.get("/_me/credentials/nope/_exists", headers=alice),
           400, "security.credentials.unknown_strategy")
    # an anonymous role allowing them would still find no user to act on
    denied(await client.get("/_me/credentials/local"), 401, "security.rights.unauthorized")


async def test_credentials_of_any_user_for_an_admin(serve):
    served = await serve(closed_yaml(users="""
    nocreds: {profileIds: [readers]}
"""))
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    base = "/credentials/local/nocreds"
    assert (await client.get(f"{base}/_exists", headers=admin)).json()["result"] is False
    denied(await client.post(f"{base}/_validate", headers=admin, json={"username": "alice",
                                                                       "password": "x"}),
           412, "security.credentials.username_taken")
    r = await client.post(f"{base}/_create", headers=admin,
                          json={"username": "nc", "password": "nc-password"})
    assert r.json()["result"] == {"username": "nc", "kuid": "nocreds"}
    assert await login(client, "nc", "nc-password")
    assert (await client.get(base, headers=admin)).json()["result"] == {
        "username": "nc", "kuid": "nocreds"}
    assert (await client.get("/credentials/local/nc/_byId", headers=admin)).json()[
        "result"] == {"username": "nc", "kuid": "nocreds"}
    denied(await client.get("/credentials/local/zz/_byId", headers=admin),
           404, "security.credentials.not_found")
    await client.put(f"{base}/_update", headers=admin, json={"password": "changed"})
    assert await login(client, "nc", "changed")
    assert (await client.delete(base, headers=admin)).json()["result"] == {"acknowledged": True}
    denied(await client.get(base, headers=admin), 404, "security.credentials.not_found")
    denied(await client.get("/credentials/local/ghost/_exists", headers=admin),
           404, "security.user.not_found")


# -- strategies written as plugins -----------------------------------------------------------------

KEY_PLUGIN = """
    class Keys:
        async def init(self, config, context):
            self.context = context
            self.keys = {}
            self.seen = []

        def exists(self, request, kuid):  # a plain function: run in a thread
            return kuid in self.keys

        async def create(self, request, credentials, kuid):
            self.keys[kuid] = credentials["key"]
            return {"kuid": kuid}

        async def update(self, request, credentials, kuid):
            return await self.create(request, credentials, kuid)

        async def delete(self, request, kuid):
            del self.keys[kuid]

        async def validate(self, request, credentials, kuid, is_update):
            if not isinstance(credentials.get("key"), str) or len(credentials["key"]) < 8:
                raise self.context.errors.BadRequestError(
                    "a key has 8 characters or more", id="security.credentials.rejected")
            return True

        async def verify(self, request, key=None, **others):
            if others:
                return {"message": f"unexpected {sorted(others)}"}
            if key == "not-a-kuid":
                return 42
            if key == "a-ghost-key":
                return "ghost"
            for kuid, known in self.keys.items():
                if key == known:
                    return kuid
            return {"message": "unknown key"}

        async def get_info(self, request, kuid):
            return {"kuid": kuid, "hasKey": True}

        async def authenticated(self, payload):
            content = payload["content"]
            self.seen.append([payload["strategy"], content._id, content.profileIds])
            return payload

        # actions
        async def add_temp(self, request):
            methods = {m: getattr(self, m) for m in
                       ("exists", "create", "update", "delete", "validate", "verify")}
            await self.context.accessors.strategies.add("temp", {"methods": methods,
                                                                 "fields": ["key"]})
            return {"added": "temp"}

        async def add_broken(self, request):
            await self.context.accessors.strategies.add("broken", {"methods": {
                "exists": self.exists, "verify": self.verify}})

        async def remove(self, request):
            await self.context.accessors.strategies.remove(request.input.args["name"])
            return {"removed": request.input.args["name"]}

        async def seen_events(self, request):
            return self.seen
"""

METHODS = """{exists: exists, create: create, update: update, delete: delete,
                  validate: validate, verify: verify, getInfo: get_info}"""


def key_plugins(module: str) -> str:
    return f"""
  keys:
    module: {module}:Keys
    strategies:
      key:
        fields: [key]
        methods: {METHODS}
    pipes:
      "auth:strategyAuthenticated": authenticated
    controllers:
      admin: {{addTemp: add_temp, addBroken: add_broken, remove: remove, seen: seen_events}}
  other:
    module: {module}:Keys
    controllers:
      admin: {{addTemp: add_temp, remove: remove}}
"""


def module_name() -> str:
    return f"keys_{uuid.uuid4().hex[:8]}"


async def test_a_plugin_strategy_logs_users_in(serve):
    module = module_name()
    served = await serve(closed_yaml(plugins=key_plugins(module)),
                         files={f"{module}.py": KEY_PLUGIN})
    client = served.client
    admin_jwt = await login(client, "admin", "admin-password")
    admin = bearer(admin_jwt)
    assert (await client.get("/strategies")).json()["result"] == ["local", "key"]
    denied(await client.post("/credentials/key/alice/_create", headers=admin,
                             json={"key": "short"}), 400, "security.credentials.rejected")
    r = await client.post("/credentials/key/alice/_create", headers=admin,
                          json={"key": "alice-api-key"})
    assert r.status_code == 200, r.text
    r = await client.post("/_login/key", json={"key": "alice-api-key"})
    assert r.status_code == 200, r.text
    alice = bearer(r.json()["result"]["jwt"])
    assert r.json()["result"]["_id"] == "alice"
    me = (await client.get("/_me", headers=alice)).json()["result"]
    assert me["_id"] == "alice" and me["strategies"] == ["local", "key"]
    assert (await client.get("/_me/credentials/key", headers=alice)).json()["result"] == {
        "kuid": "alice", "hasKey": True}
    # the pipe on auth:strategyAuthenticated saw the strategy and the user
    seen = (await query(client, admin_jwt, controller="keys/admin", action="seen")).json()
    assert ["key", "alice", ["readers"]] in seen["result"]
    assert ["local", "admin", ["admin"]] in seen["result"]
    # fields: only the declared ones reach verify
    r = await client.post("/_login/key", json={"key": "alice-api-key", "kuid": "admin"})
    assert r.status_code == 200 and r.json()["result"]["_id"] == "alice"
    denied(await client.post("/_login/key", json={"key": "wrong-key-123"}),
           401, "plugin.strategy.missing_user")
    # a strategy misbehaving is the plugin's fault: 500, named
    denied(await client.post("/_login/key", json={"key": "not-a-kuid"}),
           500, "plugin.strategy.invalid_verify_resolve")
    denied(await client.post("/_login/key", json={"key": "a-ghost-key"}),
           500, "plugin.strategy.unknown_kuid")
    # a deleted user loses its plugin credentials too
    await client.post("/users/bob/_create", headers=admin, json={
        "content": {"profileIds": ["readers"]}, "credentials": {"key": {"key": "bob-api-key"}}})
    assert (await client.post("/_login/key", json={"key": "bob-api-key"})).status_code == 200
    await client.delete("/users/bob", headers=admin)
    denied(await client.post("/_login/key", json={"key": "bob-api-key"}),
           401, "plugin.strategy.missing_user")


async def test_strategies_added_and_removed_at_run_time(serve):
    module = module_name()
    served = await serve(closed_yaml(plugins=key_plugins(module)),
                         files={f"{module}.py": KEY_PLUGIN})
    client = served.client
    jwt = await login(client, "admin", "admin-password")

    async def call(plugin: str, action: str, **args: str):
        return await query(client, jwt, controller=f"{plugin}/admin", action=action, **args)

    assert (await call("keys", "addTemp")).json()["result"] == {"added": "temp"}
    assert (await client.get("/strategies")).json()["result"] == ["local", "key", "temp"]
    denied(await call("keys", "addTemp"), 500, "plugin.strategy.already_exists")
    denied(await call("keys", "addBroken"), 500, "plugin.strategy.missing_method")
    assert "create" in (await call("keys", "addBroken")).json()["error"]["message"]
    # it works like a declared one
    admin = bearer(jwt)
    assert (await client.post("/credentials/temp/alice/_create", headers=admin,
                              json={"key": "temp-key-1234"})).status_code == 200
    assert (await client.post("/_login/temp", json={"key": "temp-key-1234"})).status_code == 200
    # another plugin may not remove it, nor the core's, nor a declared one
    for name in ("temp", "local", "key"):
        denied(await call("other", "remove", name=name),
               500, "plugin.strategy.unauthorized_removal")
    denied(await call("other", "remove", name="nope"), 404, "plugin.strategy.strategy_not_found")
    assert (await client.get("/strategies")).json()["result"] == ["local", "key", "temp"]
    # its owner may
    assert (await call("keys", "remove", name="temp")).status_code == 200
    assert (await client.get("/strategies")).json()["result"] == ["local", "key"]
    denied(await client.post("/_login/temp", json={"key": "temp-key-1234"}),
           400, "security.credentials.unknown_strategy")
    # the other plugin may add its own under the freed name
    assert (await call("other", "addTemp")).status_code == 200


def test_a_strategy_missing_a_method_is_a_config_error_naming_it(tmp_path):
    module = module_name()
    write_files(tmp_path, {f"{module}.py": KEY_PLUGIN, "gateway.yaml": f"""
plugins:
  keys:
    module: {module}:Keys
    strategies:
      key:
        methods: {{exists: exists, create: create, update: update, delete: delete,
                  validate: validate}}
      other:
        methods: {{exists: exists, create: create, update: update, delete: delete,
                  validate: validate, verify: verfy}}
      odd:
        methods: {{exists: exists, create: create, update: update, delete: delete,
                  validate: validate, verify: seen_events, getInfo: get_info}}
"""})
    with pytest.raises(ConfigError) as info:
        Gateway.build(load_config(tmp_path / "gateway.yaml"))
    text = str(info.value)
    assert "plugins.keys.strategies.key.methods: missing required key 'verify'" in text
    # once the schema is satisfied, the functions themselves are checked
    write_files(tmp_path, {"gateway.yaml": f"""
plugins:
  keys:
    module: {module}:Keys
    strategies:
      other:
        methods: {{exists: exists, create: create, update: update, delete: delete,
                  validate: validate, verify: verfy}}
      odd:
        methods: {{exists: exists, create: create, update: update, delete: delete,
                  validate: validate, verify: verify, getInfo: seen_events,
                  getById: authenticated}}
"""})
    with pytest.raises(ConfigError) as info:
        Gateway.build(load_config(tmp_path / "gateway.yaml"))
    text = str(info.value)
    assert "plugins.keys.strategies.other.methods.verify: no function 'verfy'" in text
    assert "did you mean 'verify'?" in text
    assert "plugins.keys.strategies.odd.methods.getInfo" in text
    assert "cannot be called as getInfo(request, kuid)" in text
    assert "plugins.keys.strategies.odd.methods.getById" in text
    assert "cannot be called as getById(request, id)" in text


async def test_declared_users_may_have_plugin_strategy_credentials(serve):
    module = module_name()
    served = await serve(closed_yaml(plugins=key_plugins(module), users="""
    robot:
      profileIds: [readers]
      credentials: {key: {key: robot-api-key}}
"""), files={f"{module}.py": KEY_PLUGIN})
    r = await served.client.post("/_login/key", json={"key": "robot-api-key"})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["_id"] == "robot"


async def test_a_plugin_strategy_named_like_another_stops_the_start(tmp_path):
    module = module_name()
    write_files(tmp_path, {f"{module}.py": KEY_PLUGIN, "gateway.yaml": f"""
plugins:
  keys:
    module: {module}:Keys
    strategies:
      local:
        methods: {METHODS}
"""})
    gateway = Gateway.build(load_config(tmp_path / "gateway.yaml"))
    with pytest.raises(PluginStartError, match=r"plugin 'keys'.*Strategy .local. already exists"):
        await gateway.start()
    assert gateway.storage is None
