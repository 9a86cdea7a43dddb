"""Kuzzle's security controller through HTTP: the actions added for parity with Kuzzle 2.56, with
its routes, arguments, result shapes, error ids and statuses."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from sanic_gateway.config import ConfigError, load_config
from sanic_gateway.gateway import Gateway
from sanic_gateway.security import search
from sanic_gateway.security.rights import check_role_api, role_api
from sanic_gateway.security.store import RESTRICTED_ROLES
from sanic_gateway.storage.es_query import translate
from sanic_gateway.storage.sqlite import any_equals
from tests.security_helpers import bearer, closed_yaml, denied, login, query
from tests.test_security import storage_line  # noqa: F401  (fixture)
from tests.test_storage import open_url  # noqa: F401  (fixture)

# Kuzzle 2.56's lib/api/httpRoutes.js, for the actions this gateway added
KUZZLE_ROUTES = {
    ("post", "/_checkRights/:userId"): "checkRights",
    ("post", "/_restrictDefaultRights"): "restrictDefaultRights",
    ("post", "/users/_createRestricted"): "createRestrictedUser",
    ("post", "/users/:_id/_createRestricted"): "createRestrictedUser",
    ("post", "/users/:_id/_upsert"): "upsertUser",
    ("delete", "/users/:_id/tokens"): "revokeTokens",
    ("post", "/_security/:collection/_refresh"): "refresh",
    ("post", "/users/_mDelete"): "mDeleteUsers",
    ("post", "/profiles/_mDelete"): "mDeleteProfiles",
    ("post", "/roles/_mDelete"): "mDeleteRoles",
    ("get", "/users/_scroll/:scrollId"): "scrollUsers",
    ("get", "/profiles/_scroll/:scrollId"): "scrollProfiles",
    ("post", "/credentials/:strategy/users/_search"): "searchUsersByCredentials",
    ("get", "/credentials/:strategy/_fields"): "getCredentialFields",
    ("get", "/credentials/_fields"): "getAllCredentialFields",
    ("get", "/users/_mapping"): "getUserMapping",
    ("put", "/users/_mapping"): "updateUserMapping",
    ("get", "/profiles/_mapping"): "getProfileMapping",
    ("put", "/profiles/_mapping"): "updateProfileMapping",
    ("get", "/roles/_mapping"): "getRoleMapping",
    ("put", "/roles/_mapping"): "updateRoleMapping",
    ("get", "/users/_mGet"): "mGetUsers",
    ("post", "/users/_mGet"): "mGetUsers",
}


async def admin_client(serve: Any, **yaml: Any) -> tuple[httpx.AsyncClient, dict[str, str]]:
    served = await serve(closed_yaml(**yaml))
    client = served.client
    return client, bearer(await login(client, "admin", "admin-password"))


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.json()["error"] is None, response.text
    return response.json()["result"]


async def new_user(client: httpx.AsyncClient, admin: dict[str, str], kuid: str,
                   profiles: list[str], **content: Any) -> None:
    ok(await client.post(f"/users/{kuid}/_create", headers=admin, json={
        "content": {"profileIds": profiles, **content},
        "credentials": {"local": {"username": kuid, "password": f"{kuid}-password"}}}))


async def test_new_actions_have_kuzzles_routes_in_public_api_and_openapi(serve):
    client, admin = await admin_client(serve)
    public = ok(await client.get("/_publicApi", headers=admin))["security"]
    routes = {(h["verb"].lower(), h["path"]): name
              for name, entry in public.items() for h in entry.get("http", [])}
    missing = {k: v for k, v in KUZZLE_ROUTES.items() if routes.get(k) != v}
    assert missing == {}
    paths = (await client.get("/_openapi", headers=admin)).json()["paths"]
    assert paths["/users/_mapping"]["put"]["summary"] == "security:updateUserMapping"
    assert paths["/_checkRights/{userId}"]["post"]["summary"] == "security:checkRights"
    # static segments win over /users/:_id and /profiles/:_id
    assert "profileIds" in ok(await client.get("/users/_mapping", headers=admin))["mapping"]
    assert "policies" in ok(await client.get("/profiles/_mapping", headers=admin))["mapping"]
    assert ok(await client.get("/users/admin", headers=admin))["_id"] == "admin"


async def test_check_rights_of_another_user(serve):
    client, admin = await admin_client(serve)
    allowed = await client.post("/_checkRights/alice", headers=admin,
                                json={"controller": "rec/api", "action": "echo"})
    assert ok(allowed) == {"allowed": True}
    refused = await client.post("/_checkRights/alice", headers=admin,
                                json={"controller": "security", "action": "createUser"})
    assert ok(refused) == {"allowed": False}
    anonymous = await client.post("/_checkRights/-1", headers=admin,
                                  json={"controller": "auth", "action": "login"})
    assert ok(anonymous) == {"allowed": True}
    denied(await client.post("/_checkRights/nobody", headers=admin,
                             json={"controller": "auth", "action": "login"}),
           404, "security.user.not_found")
    denied(await client.post("/_checkRights/alice", headers=admin, json={"action": "login"}),
           400, "api.assert.missing_argument")
    alice = bearer(await login(client, "alice", "alice-password"))
    denied(await client.post("/_checkRights/admin", headers=alice,
                             json={"controller": "auth", "action": "login"}),
           403, "security.rights.forbidden")


async def test_restrict_default_rights(serve):
    served = await serve("auth: {jwt: {secret: a-test-secret-that-is-long-enough-0123456789}}\n")
    client = served.client
    # an open gateway: visitors may do anything, this included
    assert ok(await client.post("/_restrictDefaultRights")) is None
    denied(await client.post("/_restrictDefaultRights"), 401, "security.rights.unauthorized")
    assert ok(await client.get("/_now"))  # what Kuzzle's restricted anonymous role keeps
    store = served.gateway.security.store
    for role_id in ("anonymous", "default"):
        assert (await store.get_role(role_id))["_source"] == RESTRICTED_ROLES[role_id]


async def test_create_restricted_user_gets_the_default_profile(serve):
    client, admin = await admin_client(serve)
    created = ok(await client.post("/users/rita/_createRestricted", headers=admin, json={
        "content": {"name": "Rita"},
        "credentials": {"local": {"username": "rita", "password": "rita-password"}}}))
    assert created["_id"] == "rita"
    assert created["_source"] == {"profileIds": ["default"], "name": "Rita"}
    assert await login(client, "rita", "rita-password")
    generated = ok(await client.post("/users/_createRestricted", headers=admin, json={}))
    assert generated["_source"]["profileIds"] == ["default"] and generated["_id"]
    denied(await client.post("/users/x/_createRestricted", headers=admin,
                             json={"content": {"profileIds": ["admin"]}}),
           400, "api.assert.forbidden_argument")
    denied(await client.post("/users/rita/_createRestricted", headers=admin, json={}),
           412, "security.user.already_exists")


async def test_upsert_user_creates_then_updates(serve):
    client, admin = await admin_client(serve)
    body = {"content": {"profileIds": ["readers"], "nick": "U"}, "default": {"lang": "fr"},
            "credentials": {"local": {"username": "ursula", "password": "ursula-password"}}}
    created = ok(await client.post("/users/ursula/_upsert", headers=admin, json=body))
    assert created["_source"] == {"profileIds": ["readers"], "nick": "U", "lang": "fr"}
    assert await login(client, "ursula", "ursula-password")
    body["content"]["nick"] = "V"
    body["default"] = {"lang": "en"}
    updated = ok(await client.post("/users/ursula/_upsert", headers=admin, json=body))
    assert updated["_source"] == {"profileIds": ["readers"], "nick": "V", "lang": "fr"}
    denied(await client.post("/users/ursula/_upsert", headers=admin,
                             json={"content": {"nick": "W"}}),
           400, "api.assert.missing_argument")
    denied(await client.post("/users/ursula/_upsert", headers=admin,
                             json={"content": {"profileIds": ["nope"]}}),
           404, "security.profile.not_found")


async def test_revoke_tokens_and_refresh(serve):
    client, admin = await admin_client(serve)
    alice = bearer(await login(client, "alice", "alice-password"))
    assert ok(await client.get("/_me", headers=alice))["_id"] == "alice"
    r = await client.delete("/users/alice/tokens", headers=admin)
    assert ok(r) is None
    r = await client.get("/_me", headers=alice)
    assert r.status_code == 401, r.text
    assert ok(await client.post("/_security/users/_refresh", headers=admin)) is None
    r = await client.post("/_security/roles/_refresh", headers=admin)
    assert ok(r) is None and r.json()["collection"] == "roles"
    denied(await client.post("/_security/documents/_refresh", headers=admin),
           400, "api.assert.unexpected_argument")


async def test_m_delete_users_profiles_roles(serve):
    client, admin = await admin_client(serve)
    for kuid in ("d1", "d2", "d3"):
        await new_user(client, admin, kuid, ["readers"])
    assert ok(await client.post("/users/_mDelete", headers=admin,
                                json={"ids": ["d1", "d2"]})) == ["d1", "d2"]
    denied(await client.get("/users/d1", headers=admin), 404, "security.user.not_found")
    with pytest.raises(AssertionError):  # their credentials went with them
        await login(client, "d1", "d1-password")
    # some fail: Kuzzle's 206 PartialError beside the ids deleted
    r = await client.post("/users/_mDelete", headers=admin, json={"ids": ["d3", "ghost"]})
    assert r.status_code == 206, r.text
    assert r.json()["result"] == ["d3"]
    error = r.json()["error"]
    assert error["id"] == "services.storage.incomplete_delete" and error["status"] == 206
    assert error["count"] == 1 and error["errors"][0]["id"] == "security.user.not_found"
    denied(await client.post("/users/_mDelete", headers=admin,
                           json={"ids": [f"u{i}" for i in range(201)]}),
           413, "services.storage.write_limit_exceeded")
    denied(await client.post("/users/_mDelete", headers=admin, json={"ids": "d3"}),
           400, "api.assert.invalid_type")
    # roles and profiles: those in use stay
    for role in ("r1", "r2"):
        ok(await client.post(f"/roles/{role}/_create", headers=admin,
                             json={"controllers": {"auth": {"actions": {"login": True}}}}))
    ok(await client.post("/profiles/p1/_create", headers=admin,
                         json={"policies": [{"roleId": "r1"}]}))
    r = await client.post("/roles/_mDelete", headers=admin, json={"ids": ["r1", "r2"]})
    assert r.status_code == 206 and r.json()["result"] == ["r2"], r.text
    assert r.json()["error"]["errors"][0]["id"] == "security.role.in_use"
    assert ok(await client.post("/profiles/_mDelete", headers=admin, json={"ids": ["p1"]})) \
        == ["p1"]
    r = await client.post("/profiles/_mDelete", headers=admin, json={"ids": ["admin"]})
    assert r.status_code == 206 and r.json()["result"] == []
    assert r.json()["error"]["errors"][0]["id"] == "security.profile.cannot_delete"


async def test_searches_speak_elasticsearch_and_koncorde(storage_line, serve):  # noqa: F811
    client, admin = await admin_client(serve, storage=storage_line)
    await new_user(client, admin, "bob", ["readers", "default"], name="Bob", age=30)
    await new_user(client, admin, "carol", ["default"], name="Carol", age=40)

    async def users(body: dict[str, Any], **args: Any) -> list[str]:
        r = await client.post("/users/_search", headers=admin, json=body,
                              params={"size": 100, **args})
        return sorted(h["_id"] for h in ok(r)["hits"])

    assert await users({"query": {"term": {"profileIds": "readers"}}}) == ["alice", "bob"]
    assert await users({"query": {"terms": {"profileIds": ["admin", "default"]}}}) == [
        "admin", "bob", "carol"]
    assert await users({"query": {"match": {"profileIds": "admin"}}}) == ["admin"]
    assert await users({"query": {"ids": {"values": ["bob", "x"]}}}) == ["bob"]
    assert await users({"query": {"bool": {
        "must": {"term": {"profileIds": "default"}},
        "must_not": [{"term": {"profileIds": "readers"}}]}}}) == ["carol"]
    assert await users({"query": {"bool": {"should": [
        {"term": {"profileIds": "admin"}}, {"ids": {"values": ["carol"]}}]}}}) == [
        "admin", "carol"]
    assert await users({"query": {"exists": {"field": "profileIds"}}}) == [
        "admin", "alice", "bob", "carol"]
    assert await users({"query": {"match_all": {}}}) == ["admin", "alice", "bob", "carol"]
    # `name` and `age` are not in the users mapping: as in Kuzzle, they hold nothing
    assert await users({"query": {"term": {"name": "Bob"}}}) == []
    assert await users({"query": {"range": {"age": {"gte": 35}}}}) == []
    # Koncorde filters are not held to the mapping
    assert await users({"query": {"equals": {"name": "Bob"}}}, lang="koncorde") == ["bob"]
    denied(await client.post("/users/_search", headers=admin,
                             json={"query": {}, "sort": [{"age": "desc"}]}),
           400, "services.storage.invalid_search_query")
    mapping = {"properties": {"name": {"type": "keyword"}, "age": {"type": "integer"}}}
    ok(await client.put("/users/_mapping", headers=admin, json=mapping))
    assert await users({"query": {"term": {"name": "Bob"}}}) == ["bob"]
    assert await users({"query": {"range": {"age": {"gte": 35}}}}) == ["carol"]
    r = await client.post("/users/_search", headers=admin,
                          json={"query": {"exists": {"field": "age"}}, "sort": [{"age": "desc"}]})
    assert [h["_id"] for h in ok(r)["hits"]] == ["carol", "bob"]
    # search_after: the page after given sort values (Kuzzle's SDK pages sorted searches so)
    sort = [{"age": "desc"}, "_id"]
    r = await client.post("/users/_search", headers=admin, json={
        "query": {"exists": {"field": "age"}}, "sort": sort, "search_after": [40, "carol"]})
    assert [h["_id"] for h in ok(r)["hits"]] == ["bob"]
    r = await client.post("/users/_search", headers=admin, json={
        "sort": ["_id"], "search_after": ["alice"]}, params={"size": 2})
    assert [h["_id"] for h in ok(r)["hits"]] == ["bob", "carol"]
    r = await client.post("/users/_search", headers=admin, json={
        "query": {"equals": {"name": "Bob"}}, "sort": ["_id"], "search_after": ["a"]},
        params={"lang": "koncorde"})
    assert [h["_id"] for h in ok(r)["hits"]] == ["bob"]
    for bad in ({"search_after": ["x"]}, {"sort": ["_id"], "search_after": ["x", 1]},
                {"sort": ["_id"], "search_after": [None]}):
        denied(await client.post("/users/_search", headers=admin, json=bad),
               400, "api.assert.invalid_argument")
    # Koncorde, with lang (and, as before, without it when its keywords say so)
    koncorde = {"query": {"equals": {"name": "Carol"}}}
    assert await users(koncorde, lang="koncorde") == ["carol"]
    assert await users(koncorde) == ["carol"]
    assert await users({"query": {"and": [{"exists": "age"}, {"not": {"equals": {
        "name": "Bob"}}}]}}, lang="koncorde") == ["carol"]
    denied(await client.post("/users/_search", headers=admin, json=koncorde,
                             params={"lang": "elasticsearch"}),
           400, "services.storage.unknown_query_keyword")
    denied(await client.post("/users/_search", headers=admin,
                             json={"query": {"wildcard": {"name": "B*"}}}),
           400, "services.storage.invalid_query_keyword")
    denied(await client.post("/users/_search", headers=admin,
                             json={"query": {"term": {"a": 1, "b": 2}}}),
           400, "services.storage.invalid_search_query")
    denied(await client.post("/users/_search?lang=sql", headers=admin, json={}),
           400, "api.assert.invalid_argument")
    deep: dict[str, Any] = {"term": {"name": "x"}}
    for _ in range(20):
        deep = {"bool": {"must": [deep]}}
    denied(await client.post("/users/_search", headers=admin, json={"query": deep}),
           400, "services.storage.invalid_search_query")
    wide = {"bool": {"should": [{"term": {"name": str(i)}} for i in range(300)]}}
    denied(await client.post("/users/_search", headers=admin, json={"query": wide}),
           400, "services.storage.invalid_search_query")


async def test_profile_and_role_searches(storage_line, serve):  # noqa: F811
    client, admin = await admin_client(serve, storage=storage_line)
    ok(await client.post("/profiles/tagged/_create", headers=admin, json={
        "policies": [{"roleId": "reader"}, {"roleId": "default"}], "tags": ["ops"]}))

    async def ids(kind: str, body: dict[str, Any]) -> list[str]:
        r = await client.post(f"/{kind}/_search?size=100", headers=admin, json=body)
        return sorted(h["_id"] for h in ok(r)["hits"])

    assert await ids("profiles", {"query": {"term": {"policies.roleId": "reader"}}}) == [
        "readers", "tagged"]
    assert await ids("profiles", {"query": {"term": {"tags": "ops"}}}) == ["tagged"]
    assert await ids("profiles", {"roles": ["reader"]}) == ["readers", "tagged"]
    denied(await client.post("/profiles/_search", headers=admin,
                             json={"roles": ["reader"], "query": {}}),
           400, "api.assert.bad_request")
    # searchRoles by controllers counts roles granting through "*" (admin, default, ...)
    by_controller = await ids("roles", {"controllers": ["rec/api"]})
    assert "reader" in by_controller and "admin" in by_controller
    assert "anonymous" not in by_controller
    ok(await client.post("/roles/tagged/_create", headers=admin, json={
        "controllers": {"auth": {"actions": {"login": True}}}, "tags": ["ops"]}))
    assert await ids("roles", {"query": {"term": {"tags": "ops"}}}) == ["tagged"]
    denied(await client.post("/roles/_search", headers=admin,
                             json={"controllers": ["auth"], "query": {}}),
           400, "api.assert.bad_request")


async def test_scroll_users_and_profiles(serve):
    client, admin = await admin_client(serve)
    for i in range(5):
        await new_user(client, admin, f"s{i}", ["default"])
    first = ok(await client.post("/users/_search?size=3&scroll=10s", headers=admin, json={
        "query": {"term": {"profileIds": "default"}}}))
    assert first["total"] == 5 and len(first["hits"]) == 3 and first["scrollId"]
    seen = [h["_id"] for h in first["hits"]]
    second = ok(await client.get(f"/users/_scroll/{first['scrollId']}", headers=admin,
                                 params={"scroll": "10s"}))
    assert second["total"] == 5 and second["scrollId"] == first["scrollId"]
    seen += [h["_id"] for h in second["hits"]]
    assert sorted(seen) == [f"s{i}" for i in range(5)]
    assert "profileIds" in second["hits"][0]["_source"]
    # read to its end, the cursor is gone
    denied(await client.get(f"/users/_scroll/{first['scrollId']}", headers=admin),
           404, "services.storage.unknown_scroll_id")
    denied(await client.get("/users/_scroll/nope", headers=admin),
           404, "services.storage.unknown_scroll_id")
    denied(await client.post("/users/_search?scroll=2m", headers=admin, json={}),
           400, "services.storage.scroll_duration_too_great")
    denied(await client.post("/users/_search?scroll=soon", headers=admin, json={}),
           400, "api.assert.invalid_argument")
    profiles = ok(await client.post("/profiles/_search?size=1&scroll=5s", headers=admin,
                                    json={}))
    assert len(profiles["hits"]) == 1 and profiles["total"] >= 4
    # a profiles cursor is not a users cursor
    denied(await client.get(f"/users/_scroll/{profiles['scrollId']}", headers=admin),
           404, "services.storage.unknown_scroll_id")
    more = ok(await client.get(f"/profiles/_scroll/{profiles['scrollId']}", headers=admin))
    assert len(more["hits"]) == 1 and more["hits"][0]["_id"] != profiles["hits"][0]["_id"]


async def test_scroll_cursors_are_bounded(serve, monkeypatch):
    client, admin = await admin_client(serve)
    monkeypatch.setattr(search, "MAX_CURSORS", 1)
    first = ok(await client.post("/users/_search?size=1&scroll=5s", headers=admin, json={}))
    assert first["scrollId"]
    denied(await client.post("/users/_search?size=1&scroll=5s", headers=admin, json={}),
           503, "api.process.overloaded")
    # a search whose first page holds everything needs no cursor
    assert ok(await client.post("/users/_search?size=10&scroll=5s", headers=admin,
                                json={}))["scrollId"] is None
    ok(await client.get(f"/users/_scroll/{first['scrollId']}", headers=admin))  # the last page
    assert ok(await client.post("/users/_search?size=1&scroll=5s", headers=admin,
                                json={}))["scrollId"]


async def test_credentials_search_and_fields(serve):
    client, admin = await admin_client(serve)
    r = await client.post("/credentials/local/users/_search", headers=admin,
                          json={"query": {"term": {"username": "alice"}}})
    assert ok(r) == {"total": 1, "hits": [{"kuid": "alice", "username": "alice"}]}
    r = await client.post("/credentials/local/users/_search?size=10", headers=admin,
                          json={"sort": ["username"]})
    assert [h["username"] for h in ok(r)["hits"]] == ["admin", "alice"]
    assert "password" not in r.text
    # other fields of the credentials (the password hash) cannot be searched
    r = await client.post("/credentials/local/users/_search", headers=admin,
                          json={"query": {"exists": {"field": "password"}}})
    assert ok(r)["total"] == 0
    denied(await client.post("/credentials/local/users/_search", headers=admin,
                             json={"sort": ["password"]}),
           400, "services.storage.invalid_search_query")
    denied(await client.post("/credentials/nope/users/_search", headers=admin, json={}),
           400, "security.credentials.unknown_strategy")
    assert ok(await client.get("/credentials/local/_fields", headers=admin)) == [
        "username", "password"]
    denied(await client.get("/credentials/nope/_fields", headers=admin),
           400, "security.credentials.unknown_strategy")
    assert ok(await client.get("/credentials/_fields", headers=admin)) == {
        "local": ["username", "password"]}


async def test_mappings_are_kept_and_merged(storage_line, serve):  # noqa: F811
    client, admin = await admin_client(serve, storage=storage_line)
    assert ok(await client.get("/users/_mapping", headers=admin)) == {
        "mapping": {"profileIds": {"type": "keyword"}}}
    roles = ok(await client.get("/roles/_mapping", headers=admin))["mapping"]
    assert roles["tags"] == {"type": "keyword"}
    updated = ok(await client.put("/users/_mapping", headers=admin, json={
        "properties": {"name": {"type": "keyword"}}, "_meta": {"v": 1}}))
    assert updated == {"dynamic": "false", "_meta": {"v": 1}, "properties": {
        "profileIds": {"type": "keyword"}, "name": {"type": "keyword"}}}
    assert ok(await client.get("/users/_mapping", headers=admin))["mapping"]["name"] == {
        "type": "keyword"}
    denied(await client.put("/users/_mapping", headers=admin,
                            json={"properties": {"name": {"type": "integer"}}}),
           400, "services.storage.cannot_change_mapping")
    denied(await client.put("/users/_mapping", headers=admin, json={"settings": {}}),
           400, "services.storage.invalid_mapping")
    denied(await client.put("/users/_mapping", headers=admin,
                            json={"properties": {"x": "keyword"}}),
           400, "services.storage.invalid_mapping")
    ok(await client.put("/profiles/_mapping", headers=admin,
                        json={"properties": {"policies": {"properties": {
                            "note": {"type": "keyword"}}}}}))
    profiles = ok(await client.get("/profiles/_mapping", headers=admin))["mapping"]
    assert set(profiles["policies"]["properties"]) == {"roleId", "restrictedTo", "note"}
    # dynamic: every field searchable
    ok(await client.put("/roles/_mapping", headers=admin, json={"dynamic": "true"}))
    r = await client.post("/roles/_search", headers=admin,
                          json={"query": {"exists": {"field": "controllers.rec/api"}}})
    assert r.status_code == 400  # '/' is not a field name character
    r = await client.post("/roles/_search", headers=admin,
                          json={"query": {"exists": {"field": "controllers.auth"}}})
    assert "reader" in [h["_id"] for h in ok(r)["hits"]]


async def test_roles_name_existing_controllers_and_actions(serve):
    client, admin = await admin_client(serve)

    def role(controllers: dict[str, Any]) -> dict[str, Any]:
        return {"controllers": controllers}

    denied(await client.post("/roles/r/_create", headers=admin,
                             json=role({"nope": {"actions": {"*": True}}})),
           400, "security.role.unknown_controller")
    r = await client.put("/roles/r", headers=admin,
                         json=role({"auth": {"actions": {"logn": True}}}))
    denied(r, 400, "security.role.unknown_action")
    assert 'Did you mean "login"?' in r.json()["error"]["message"]
    denied(await client.post("/roles/r/_create", headers=admin,
                             json=role({"*": {"actions": {"login": True}}})),
           400, "security.role.unknown_action")
    denied(await client.post("/roles/r/_create", headers=admin,
                             json=role({"rec/api": {"actions": {"nope": True}}})),
           400, "security.role.unknown_action")
    # plugin controllers count; `force` lets unknown plugin names through, not core ones
    ok(await client.post("/roles/r/_create", headers=admin,
                         json=role({"rec/api": {"actions": {"echo": True, "echoSync": False}}})))
    ok(await client.put("/roles/later?force", headers=admin,
                        json=role({"other/api": {"actions": {"x": True}}})))
    ok(await client.put("/roles/later2", headers=admin, params={"force": "true"},
                        json=role({"rec/api": {"actions": {"notYet": True}}})))
    denied(await client.put("/roles/later3?force", headers=admin,
                            json=role({"auth": {"actions": {"logn": True}}})),
           400, "security.role.unknown_action")
    denied(await client.put("/roles/r/_update", headers=admin,
                            json=role({"server": {"actions": {"nope": True}}})),
           400, "security.role.unknown_action")
    r = await query(client, (await client.post("/_login/local", json={
        "username": "admin", "password": "admin-password"})).json()["result"]["jwt"],
        controller="security", action="createRole", _id="q",
        body=role({"nope": {"actions": {"*": True}}}))
    denied(r, 400, "security.role.unknown_controller")


def test_declared_roles_naming_unknown_controllers_fail_build_and_check(tmp_path: Path):
    text = closed_yaml(roles="    typo: {controllers: {\"rec/apj\": {actions: {echo: true}}}}\n"
                             "    typo2: {controllers: {\"rec/api\": {actions: {ecko: true}}}}")
    (tmp_path / "gateway.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        Gateway.build(load_config(tmp_path / "gateway.yaml"))
    message = str(caught.value)
    assert "security.roles.typo.controllers.rec/apj" in message
    assert "non-existing controller 'rec/apj'" in message and 'Did you mean "rec/api"' in message
    assert "security.roles.typo2.controllers.rec/api.actions.ecko" in message
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "typo:" in t)
    assert f"gateway.yaml:{line}:" in message
    done = subprocess.run([sys.executable, "-m", "sanic_gateway", "check", "--config",
                           str(tmp_path / "gateway.yaml")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "non-existing controller 'rec/apj'" in done.stdout + done.stderr
    assert "non-existing action 'ecko'" in done.stdout + done.stderr


async def test_profiles_and_roles_keep_extra_fields(serve):
    client, admin = await admin_client(serve)
    created = ok(await client.post("/profiles/tagged/_create", headers=admin, json={
        "policies": [{"roleId": "reader"}], "tags": ["a"], "description": "d"}))
    assert created["_source"]["tags"] == ["a"]
    got = ok(await client.get("/profiles/tagged", headers=admin))["_source"]
    assert got["tags"] == ["a"] and got["description"] == "d"
    ok(await client.put("/profiles/tagged/_update", headers=admin, json={"tags": ["b"]}))
    assert ok(await client.get("/profiles/tagged", headers=admin))["_source"]["tags"] == ["b"]
    ok(await client.post("/roles/tagged/_create", headers=admin, json={
        "controllers": {"auth": {"actions": {"login": True}}}, "tags": ["t"]}))
    assert ok(await client.get("/roles/tagged", headers=admin))["_source"]["tags"] == ["t"]


async def test_delete_profile_on_assigned_users(serve):
    client, admin = await admin_client(serve)
    ok(await client.post("/profiles/extra/_create", headers=admin,
                         json={"policies": [{"roleId": "reader"}]}))
    await new_user(client, admin, "both", ["readers", "extra"])
    await new_user(client, admin, "only", ["extra"])
    denied(await client.delete("/profiles/extra", headers=admin), 412,
           "security.profile.in_use")
    denied(await client.delete("/profiles/extra?onAssignedUsers=fail", headers=admin), 412,
           "security.profile.in_use")
    denied(await client.delete("/profiles/extra?onAssignedUsers=maybe", headers=admin), 400,
           "api.assert.invalid_argument")
    assert ok(await client.delete("/profiles/extra?onAssignedUsers=remove",
                                  headers=admin)) == {"_id": "extra"}
    denied(await client.get("/profiles/extra", headers=admin), 404,
           "security.profile.not_found")
    both = ok(await client.get("/users/both", headers=admin))["_source"]["profileIds"]
    only = ok(await client.get("/users/only", headers=admin))["_source"]["profileIds"]
    assert both == ["readers"] and only == ["anonymous"]
    # the rights follow at once
    jwt = bearer(await login(client, "only", "only-password"))
    denied(await client.post("/_plugin/rec/echo", headers=jwt, json={}), 403,
           "security.rights.forbidden")


async def test_anonymous_strategies_and_m_get_by_get(serve):
    client, admin = await admin_client(serve)
    assert ok(await client.get("/users/-1/_strategies", headers=admin)) == {
        "strategies": [], "total": 0}
    assert ok(await client.get("/users/alice/_strategies", headers=admin))["strategies"] == [
        "local"]
    r = ok(await client.get("/users/_mGet?ids=admin,alice,ghost", headers=admin))
    assert [h["_id"] for h in r["hits"]] == ["admin", "alice"]
    r = ok(await client.post("/users/_mGet", headers=admin, json={"ids": ["alice"]}))
    assert [h["_id"] for h in r["hits"]] == ["alice"]
    denied(await client.get("/users/_mGet", headers=admin), 400, "api.assert.invalid_type")


ROOT = Path(__file__).resolve().parent.parent
needs_sdk = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "kuzzle-sdk").is_dir(),
    reason="needs node and `npm ci` (kuzzle-sdk)")


@needs_sdk
@pytest.mark.parametrize("protocol", ["http", "websocket"])
async def test_kuzzle_sdk_security_methods(serve, protocol):
    # the SDK reads /_publicApi at connect, as a visitor (Kuzzle's anonymous role allows it)
    text = closed_yaml().replace("server: {actions: {now: true}}",
                                 "server: {actions: {now: true, publicApi: true}}")
    assert "publicApi: true" in text
    served = await serve(text)
    port = served.url.rsplit(":", 1)[1]
    proc = await asyncio.create_subprocess_exec(
        "node", str(ROOT / "tests" / "kuzzle_sdk" / "security_scenario.js"), port, protocol,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    steps = {e["step"]: e for e in map(json.loads, out.decode().splitlines())}
    assert "networkError" not in steps, steps
    value = {name: e["value"] for name, e in steps.items() if e["ok"]}
    error = {name: (e["error"]["status"], e["error"]["id"])
             for name, e in steps.items() if not e["ok"]}
    assert "login" in value, (steps, err.decode())
    assert value["checkRights allowed"] is True and value["checkRights denied"] is False
    assert error["checkRights unknown user"] == (404, "security.user.not_found")
    assert value["createRestrictedUser"] == ["default"]
    assert error["createRestrictedUser profileIds"] == (400, "api.assert.forbidden_argument")
    assert value["upsertUser"] == {"profileIds": ["readers"], "name": "Ursula", "lang": "fr"}
    assert value["getCredentialFields"] == ["username", "password"]
    assert value["getAllCredentialFields"] == {"local": ["username", "password"]}
    assert value["getUserMapping"] == {"mapping": {"profileIds": {"type": "keyword"}}}
    assert value["updateUserMapping"]["properties"]["name"] == {"type": "keyword"}
    assert value["searchUsers term"] == ["rita"]
    assert value["searchUsers koncorde"] == ["ursula"]
    assert error["searchUsers unknown keyword"] == (400, "services.storage.unknown_query_keyword")
    assert value["searchUsers scroll"] == ["alice", "rita", "ursula"]
    assert value["searchProfiles scroll"] == ["readers"]
    assert value["searchUsers sorted pages"] == ["ursula", "rita", "alice", "admin"]
    assert {"reader", "admin"} <= set(value["searchRoles controllers"])
    assert value["searchUsersByCredentials"] == [{"kuid": "rita", "username": "rita"}]
    assert value["createProfile tags"] == ["ops"]
    assert error["createRole unknown controller"] == (400, "security.role.unknown_controller")
    assert error["createRole unknown action"] == (400, "security.role.unknown_action")
    assert value["createRole force"] == "later"
    assert value["updateUser tagged"] == ["default", "tagged"]
    assert error["deleteProfile in use"] == (412, "security.profile.in_use")
    assert "deleteProfile remove" in value
    assert value["rita profiles"] == ["default"]
    assert value["getUserStrategies anonymous"] == []
    assert value["mGetUsers"] == ["admin", "alice"]
    assert "refresh" in value
    assert value["getRoleMapping"] == ["controllers", "tags"]
    assert value["getProfileMapping"] == ["policies", "tags"]
    assert value["revokeTokens"] is None
    assert value["mDeleteUsers"] == ["rita", "ursula"]
    assert error["mDeleteUsers partial"] == (206, "services.storage.incomplete_delete")
    assert value["mDeleteRoles"] == ["later"]


def test_built_in_restricted_roles_name_existing_actions(tmp_path: Path):
    """The rights `createFirstAdmin?reset` and `restrictDefaultRights` give pass the rule that
    every role must pass."""
    (tmp_path / "gateway.yaml").write_text(closed_yaml())
    gateway = Gateway.build(load_config(tmp_path / "gateway.yaml"))
    for role_id, body in RESTRICTED_ROLES.items():
        check_role_api(role_id, body, role_api(gateway.api))


# -- the Elasticsearch language on both backends ----------------------------------------------

TERM_DOCS = {
    "scalar": {"a": "x"}, "array": {"a": ["x", 1]}, "nested": {"a": [["x"]]},
    "deep": {"a": [[["x"]]]}, "object": {"a": {"k": "x"}}, "number": {"a": 1.0},
    "true": {"a": True}, "null": {"a": None}, "nulls": {"a": [None, False]},
    "digit": {"a": "1"}, "missing": {"b": "x"}, "objects": {"a": [{"k": "x"}]},
    "nested_objects": {"a": [[{"k": "x"}]]}, "object_arrays": {"a": [{"k": [["x"]]}]},
    "object_array": {"a": {"k": ["x"]}}, "mixed": {"a": [[1.0, None]]},
}


async def test_term_finds_values_in_arrays_alike_on_both_backends(open_url):  # noqa: F811
    """`term`/`terms` follow PostgreSQL's lax JSONPath (each step unwraps an array level, the
    comparison two); SQLite's SQL fast path (one key) and its gw_any_equals function
    (longer paths) must find the very same documents, JSON types kept apart."""
    storage = await open_url()
    for kuid, doc in TERM_DOCS.items():
        await storage.create("t", doc, id=kuid)
    found = {}
    for field in ("a", "a.k"):
        for values in (["x"], [1], [True], [False], [None], ["1"], [1, "x"], [None, "k"]):
            r = await storage.search("t", translate({"terms": {field: values}}), size=100)
            found[field, json.dumps(values)] = sorted(h["_id"] for h in r["hits"])
            expected = sorted(k for k, d in TERM_DOCS.items() if any_equals(
                json.dumps(d), json.dumps(field.split(".")), json.dumps(values)))
            assert found[field, json.dumps(values)] == expected, (field, values)
    assert found["a", '["x"]'] == ["array", "nested", "scalar"]
    assert found["a", "[1]"] == ["array", "mixed", "number"]
    assert found["a", "[null]"] == ["mixed", "null", "nulls"]
    assert found["a", '["1"]'] == ["digit"]
    assert found["a.k", '["x"]'] == ["object", "object_array", "object_arrays", "objects"]
