"""API keys through HTTP: auth:* for one's own keys, security:* for any user's (Kuzzle's
routes, arguments and answers); keys are stored hashed, usable as Bearer, revoked at once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest

from sanic_gateway.security.apikeys import APIKEYS, es_matcher, koncorde_matcher
from tests.security_helpers import (
    SECRET,
    bearer,
    closed_yaml,
    denied,
    login,
    payload_of,
    query,
)
from tests.test_security import storage_line  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


async def test_create_use_search_delete_own_key(storage_line, serve):  # noqa: F811
    served = await serve(closed_yaml(storage=storage_line))
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    r = await client.post("/api-keys/_create", headers=alice,
                          json={"description": "Sigfox callback"})
    assert r.status_code == 200, r.text
    created = r.json()["result"]
    source = created["_source"]
    token = source["token"]
    assert token.startswith("kapikey-")
    assert source["userId"] == "alice" and source["description"] == "Sigfox callback"
    assert source["expiresAt"] == -1 and source["ttl"] == -1  # never expires by default
    assert source["fingerprint"] == hashlib.sha256(token.encode()).hexdigest()
    assert set(source) == {"userId", "description", "expiresAt", "ttl", "fingerprint", "token"}
    # the SDK reads the user from the JWT's `_id`, as Kuzzle's
    assert payload_of(token[len("kapikey-"):])["_id"] == "alice"

    # a Bearer key is the user
    me = await client.get("/_me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["result"]["_id"] == "alice"
    r = await client.post("/_checkToken", json={"token": token})
    assert r.json()["result"] == {"valid": True, "kuid": "alice", "expiresAt": -1}

    # stored hashed: the token is nowhere in storage
    stored = await served.gateway.storage.get(APIKEYS, created["_id"])
    assert token not in json.dumps(stored) and token[len("kapikey-"):] not in json.dumps(stored)

    # listed without the token
    r = await client.post("/api-keys/_search", headers=alice, json={})
    assert r.status_code == 200, r.text
    found = r.json()["result"]
    assert found["total"] == 1
    assert found["hits"][0]["_id"] == created["_id"]
    assert "token" not in found["hits"][0]["_source"]
    assert token not in r.text

    # deleted: refused at once, even though it was just verified (cached)
    assert (await client.get("/_me", headers=bearer(token))).status_code == 200
    r = await client.delete(f"/api-keys/{created['_id']}", headers=alice)
    assert r.status_code == 200 and r.json()["result"] == {"_id": created["_id"]}
    denied(await client.get("/_me", headers=bearer(token)), 401, "security.token.invalid")
    r = await client.post("/_checkToken", json={"token": token})
    assert r.json()["result"]["valid"] is False
    # and from storage too, once the cache forgets (another process)
    served.gateway.security.tokens._revoked.clear()
    served.gateway.security.tokens._verified.clear()
    denied(await client.get("/_me", headers=bearer(token)), 401, "security.token.invalid")
    r = await client.post("/api-keys/_search", headers=alice, json={})
    assert r.json()["result"] == {"hits": [], "total": 0}


async def test_create_arguments_and_errors(serve):
    served = await serve(closed_yaml())
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    # _id and expiresIn (milliseconds, or a duration)
    before = time.time() * 1000
    r = await client.post("/api-keys/_create?_id=my-key&expiresIn=60000&refresh=wait_for",
                          headers=alice, json={"description": "short"})
    assert r.status_code == 200, r.text
    source = r.json()["result"]["_source"]
    assert r.json()["result"]["_id"] == "my-key"
    assert source["ttl"] == 60000
    assert before + 58_000 <= source["expiresAt"] <= time.time() * 1000 + 60_000
    r = await client.post("/api-keys/_create?expiresIn=2h", headers=alice,
                          json={"description": "two hours"})
    assert r.json()["result"]["_source"]["ttl"] == 7_200_000
    # the same _id twice
    r = await client.post("/api-keys/_create?_id=my-key", headers=alice,
                          json={"description": "again"})
    denied(r, 400, "services.storage.document_already_exists")
    # description is required, a string
    denied(await client.post("/api-keys/_create", headers=alice, json={}), 400,
           "api.assert.missing_argument")
    denied(await client.post("/api-keys/_create", headers=alice, json={"description": 3}),
           400, "api.assert.invalid_type")
    denied(await client.post("/api-keys/_create?expiresIn=soon", headers=alice,
                             json={"description": "x"}),
           400, "security.token.invalid_expiration")
    # anonymous has no keys
    denied(await client.post("/api-keys/_create", json={"description": "x"}), 401,
           "security.rights.unauthorized")
    # another user's key is not found (nor deleted)
    admin = bearer(await login(client, "admin", "admin-password"))
    denied(await client.delete("/api-keys/my-key", headers=admin), 404,
           "services.storage.not_found")
    denied(await client.delete("/api-keys/nope", headers=alice), 404,
           "services.storage.not_found")
    r = await client.post("/api-keys/_search", headers=admin, json={})
    assert r.json()["result"]["total"] == 0
    # other protocols: the same through /_query
    r = await query(client, (await login(client, "alice", "alice-password")),
                    controller="auth", action="searchApiKeys", body={}, size=1)
    assert r.json()["result"]["total"] == 2 and len(r.json()["result"]["hits"]) == 1


async def test_expired_key_is_refused(serve):
    served = await serve(closed_yaml())
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    r = await client.post("/api-keys/_create?expiresIn=1000", headers=alice,
                          json={"description": "brief"})
    token = r.json()["result"]["_source"]["token"]
    assert (await client.get("/_me", headers=bearer(token))).status_code == 200
    await asyncio.sleep(2.1)  # the key's `exp` is in whole seconds: wait it out
    r = await client.get("/_me", headers=bearer(token))
    assert r.status_code == 401
    assert r.json()["error"]["id"] in ("security.token.expired", "security.token.invalid")


async def test_search_languages(serve):
    served = await serve(closed_yaml())
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    for i, text in enumerate(["Sigfox callback", "CI deploy", "sigfox backup"]):
        r = await client.post(f"/api-keys/_create?_id=k{i}", headers=alice,
                              json={"description": text})
        assert r.status_code == 200

    async def ids(body, **params):
        r = await client.post("/api-keys/_search", headers=alice, json=body, params=params)
        assert r.status_code == 200, r.text
        return sorted(hit["_id"] for hit in r.json()["result"]["hits"])

    # Elasticsearch's query DSL, Kuzzle's default
    assert await ids({"match": {"description": "SIGFOX"}}) == ["k0", "k2"]
    assert await ids({"term": {"description": "CI deploy"}}) == ["k1"]
    assert await ids({"ids": {"values": ["k0", "k1"]}}) == ["k0", "k1"]
    assert await ids({"bool": {"must_not": [{"match": {"description": "sigfox"}}]}}) == ["k1"]
    assert await ids({"match_all": {}}) == ["k0", "k1", "k2"]
    # Koncorde's
    assert await ids({"equals": {"description": "CI deploy"}}, lang="koncorde") == ["k1"]
    assert await ids({"not": {"equals": {"_id": "k0"}}}, lang="koncorde") == ["k1", "k2"]
    # pages: total counts every match
    r = await client.post("/api-keys/_search?from=1&size=1", headers=alice, json={})
    assert r.json()["result"]["total"] == 3 and len(r.json()["result"]["hits"]) == 1
    # refused queries
    denied(await client.post("/api-keys/_search", headers=alice, json={"regexp": {}}), 400,
           "services.storage.invalid_search_query")
    denied(await client.post("/api-keys/_search?lang=sql", headers=alice, json={}), 400,
           "api.assert.invalid_argument")


def test_matchers_directly():
    doc = {"_id": "a", "_source": {"description": "Hello World", "ttl": 5, "userId": "u"}}
    assert es_matcher({"range": {"ttl": {"gte": 5}}})(doc)
    assert not es_matcher({"range": {"ttl": {"gt": 5}}})(doc)
    assert es_matcher({"exists": {"field": "ttl"}})(doc)
    assert not es_matcher({"exists": "nope"})(doc)
    assert es_matcher({"terms": {"userId": ["x", "u"]}})(doc)
    assert es_matcher({"bool": {"should": [{"term": {"ttl": 1}}, {"term": {"ttl": 5}}]}})(doc)
    assert not es_matcher({"bool": {"should": [{"term": {"ttl": 1}}]}})(doc)
    assert koncorde_matcher({"and": [{"in": {"ttl": [5]}}, {"missing": "x"}]})(doc)
    assert koncorde_matcher({"or": [{"equals": {"ttl": 1}}, {"exists": "description"}]})(doc)
    assert koncorde_matcher({"bool": {"must": [{"equals": {"ttl": 5}}]}})(doc)
    assert not koncorde_matcher({"equals": {"ttl": "5"}})(doc)  # types are not mixed


async def test_keys_survive_logout_but_not_user_deletion(serve):
    served = await serve(closed_yaml(users="""
    bob:
      profileIds: [readers]
      credentials: {local: {username: bob, password: bob-password}}
"""))
    client = served.client
    bob_jwt = await login(client, "bob", "bob-password")
    r = await client.post("/api-keys/_create", headers=bearer(bob_jwt),
                          json={"description": "ci"})
    key = r.json()["result"]["_source"]["token"]
    # logout with global revokes login tokens, not API keys (as in Kuzzle)
    assert (await client.post("/_logout?global", headers=bearer(bob_jwt))).status_code == 200
    denied(await client.get("/_me", headers=bearer(bob_jwt)), 401, "security.token.invalid")
    assert (await client.get("/_me", headers=bearer(key))).status_code == 200
    # logout with the key itself does not delete it either
    assert (await client.post("/_logout", headers=bearer(key))).status_code == 200
    assert (await client.get("/_me", headers=bearer(key))).status_code == 200
    # a key cannot be refreshed
    denied(await client.post("/_refreshToken", headers=bearer(key)), 401,
           "security.token.refresh_forbidden")
    # deleting the user deletes its keys; a new user of the same kuid does not inherit them
    admin = bearer(await login(client, "admin", "admin-password"))
    assert (await client.delete("/users/bob", headers=admin)).status_code == 200
    denied(await client.get("/_me", headers=bearer(key)), 401, "security.token.invalid")
    r = await client.post("/users/bob/_create", headers=admin,
                          json={"content": {"profileIds": ["readers"]}})
    assert r.status_code == 200
    denied(await client.get("/_me", headers=bearer(key)), 401, "security.token.invalid")
    r = await client.post("/users/bob/api-keys/_search", headers=admin, json={})
    assert r.json()["result"]["total"] == 0


async def test_a_login_token_is_no_key_and_a_key_no_login_token(serve):
    served = await serve(closed_yaml())
    client = served.client
    jwt = await login(client, "alice", "alice-password")
    # a login JWT with the key prefix: refused (its fingerprint is no key's)
    denied(await client.get("/_me", headers=bearer("kapikey-" + jwt)), 401,
           "security.token.invalid")
    r = await client.post("/api-keys/_create", headers=bearer(jwt), json={"description": "d"})
    key = r.json()["result"]["_source"]["token"]
    # a key without its prefix: refused
    denied(await client.get("/_me", headers=bearer(key[len("kapikey-"):])), 401,
           "security.token.invalid")


async def test_security_controller_manages_any_users_keys(serve):
    served = await serve(closed_yaml())
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    r = await client.post("/users/alice/api-keys/_create?_id=for-alice", headers=admin,
                          json={"description": "made by admin"})
    assert r.status_code == 200, r.text
    created = r.json()["result"]
    assert created["_id"] == "for-alice" and created["_source"]["userId"] == "alice"
    key = created["_source"]["token"]
    me = await client.get("/_me", headers=bearer(key))
    assert me.json()["result"]["_id"] == "alice"
    # alice sees it among hers
    alice = bearer(await login(client, "alice", "alice-password"))
    r = await client.post("/api-keys/_search", headers=alice, json={})
    assert [h["_id"] for h in r.json()["result"]["hits"]] == ["for-alice"]
    # search by user, without tokens
    r = await client.post("/users/alice/api-keys/_search", headers=admin,
                          json={"match": {"description": "admin"}})
    assert r.json()["result"]["total"] == 1 and key not in r.text
    r = await client.post("/users/admin/api-keys/_search", headers=admin, json={})
    assert r.json()["result"]["total"] == 0
    # errors: unknown user, the key of another user, missing userId (other protocols)
    denied(await client.post("/users/nobody/api-keys/_create", headers=admin,
                             json={"description": "x"}), 404, "security.user.not_found")
    denied(await client.delete("/users/admin/api-keys/for-alice", headers=admin), 404,
           "services.storage.not_found")
    denied(await query(client, admin["Authorization"][7:], controller="security",
                       action="createApiKey", body={"description": "x"}),
           400, "api.assert.missing_argument")
    # alice may not use the security controller's actions
    denied(await client.post("/users/alice/api-keys/_search", headers=alice, json={}), 403,
           "security.rights.forbidden")
    # deleted by the admin: refused at once
    r = await client.delete("/users/alice/api-keys/for-alice", headers=admin)
    assert r.status_code == 200 and r.json()["result"] == {"_id": "for-alice"}
    denied(await client.get("/_me", headers=bearer(key)), 401, "security.token.invalid")


async def test_keys_are_listed_in_the_public_api(serve):
    served = await serve(closed_yaml())
    api = (await served.client.get("/_publicApi")).json()
    if api["status"] != 200:  # closed gateway: ask as admin
        admin = bearer(await login(served.client, "admin", "admin-password"))
        api = (await served.client.get("/_publicApi", headers=admin)).json()
    routes = api["result"]
    assert routes["auth"]["createApiKey"]["http"] == [
        {"path": "/api-keys/_create", "url": "/api-keys/_create", "verb": "POST"}]
    assert routes["auth"]["deleteApiKey"]["http"][0]["verb"] == "DELETE"
    assert routes["security"]["searchApiKeys"]["http"][0]["path"] == (
        "/users/:userId/api-keys/_search")
    for action in ("createToken", "checkRights", "searchApiKeys"):
        assert action in routes["auth"]
    admin = bearer(await login(served.client, "admin", "admin-password"))
    paths = (await served.client.get("/_openapi", headers=admin)).json()["paths"]
    assert paths["/api-keys/{_id}"]["delete"]["summary"] == "auth:deleteApiKey"
    assert paths["/users/{userId}/api-keys/_create"]["post"]["summary"] == (
        "security:createApiKey")
    for path in ("/_createToken", "/_checkRights", "/_getConfig", "/_capabilities",
                 "/_metrics"):
        assert path in paths, path


@pytest.mark.parametrize("expires", ["-1", None])
async def test_keys_ignore_the_login_token_max_ttl(serve, expires):
    """As Kuzzle's default (security.apiKey.maxTTL -1): auth.jwt.max_ttl is for logins."""
    served = await serve(closed_yaml())
    served.gateway.security.tokens.max_ttl = 3600.0
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    params = {} if expires is None else {"expiresIn": expires}
    r = await client.post("/api-keys/_create", headers=alice, params=params,
                          json={"description": "long"})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["_source"]["expiresAt"] == -1


SDK_SCENARIO = ROOT / "tests" / "kuzzle_sdk" / "auth_scenario.js"


@pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "node_modules" / "kuzzle-sdk")
                    .is_dir(), reason="needs node and `npm ci` (kuzzle-sdk)")
@pytest.mark.parametrize("protocol", ["http", "websocket"])
async def test_with_kuzzles_sdk(serve, protocol):
    """Kuzzle's JS SDK (over HTTP and WebSocket): auth and security API keys, checkRights,
    createToken, the login of its generic `query`, server info/capabilities/getConfig."""
    yaml_text = closed_yaml().replace(
        "server: {actions: {now: true}}", "server: {actions: {now: true, publicApi: true}}")
    served = await serve(yaml_text)
    port = served.url.rsplit(":", 1)[1]
    proc = await asyncio.create_subprocess_exec(
        "node", str(SDK_SCENARIO), port, protocol, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    steps = {entry["step"]: entry for entry in map(json.loads, out.decode().splitlines())}
    assert "connect" in steps and steps["connect"]["ok"], (steps, err.decode())
    ok = {name: entry["value"] for name, entry in steps.items() if entry["ok"]}
    failed = {name: entry["error"] for name, entry in steps.items() if not entry["ok"]}
    assert failed.pop("anonymous createApiKey")["id"] == "security.rights.unauthorized"
    assert failed.pop("checkRights missing")["id"] == "api.assert.missing_argument"
    assert failed.pop("reuse single token")["id"] == "security.token.invalid"
    assert failed.pop("deleteApiKey unknown")["id"] == "services.storage.not_found"
    assert failed.pop("use deleted key")["id"] == "security.token.invalid"
    assert failed.pop("security createApiKey unknown user")["id"] == "security.user.not_found"
    assert not failed, failed
    assert ok["query login"] == "string"
    assert ok["createApiKey"] == {"_id": "sdk-key", "userId": "alice", "expiresAt": -1,
                                  "token": "string"}
    assert ok["searchApiKeys"] == {"total": 1, "ids": ["sdk-key"], "tokens": 0}
    assert ok["searchApiKeys koncorde"] == 1
    assert ok["checkRights allowed"] is True and ok["checkRights denied"] is False
    assert ok["createToken"] is True and ok["use single token"] == "alice"
    assert ok["use api key"] == "alice" and ok["checkToken api key"] is True
    assert ok["security createApiKey"] == "alice"
    assert ok["security searchApiKeys"] == ["adm"]
    assert ok["server info"] == {"version": "string", "python": "string", "storage": "green"}
    assert ok["server capabilities"] == 100
    assert SECRET not in ok["server getConfig"] and "password" not in ok["server getConfig"]
