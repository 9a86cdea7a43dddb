"""Security (SPEC 8.1): roles, profiles and users, rights on every request, rate limits,
createFirstAdmin, and what an attacker tries against them, seen over HTTP."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.security_helpers import (
    ANONYMOUS_ROLE,
    SECRET,
    bearer,
    closed_yaml,
    denied,
    error_id,
    fresh_second,
    login,
    query,
)
from tests.test_events import REC

PG_URL = os.environ.get("SANIC_GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SQLISH = ["'; DROP TABLE gateway_documents; --", '" OR 1=1 --', "admin'--"]


@pytest.fixture(params=["sqlite", "postgresql"])
async def storage_line(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A `storage:` line for gateway.yaml: the test's own SQLite file (the default), or a
    PostgreSQL schema of its own, dropped afterwards. List it before `serve` in a test's
    arguments, so that the gateway stops before the schema is dropped."""
    if request.param == "sqlite":
        yield ""
        return
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc}")
    await conn.close()
    schema = f"gw_sec_{uuid.uuid4().hex[:12]}"
    yield f"storage: {PG_URL}?schema={schema}"
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# -- the model: roles, profiles, users -------------------------------------------------------------

async def test_the_builtin_roles_and_profiles_always_exist_and_cannot_be_deleted(serve):
    served = await serve(closed_yaml())
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    for name in ("anonymous", "default", "admin"):
        role = await client.get(f"/roles/{name}", headers=admin)
        assert role.status_code == 200 and role.json()["result"]["_id"] == name
        profile = await client.get(f"/profiles/{name}", headers=admin)
        assert profile.json()["result"]["_source"]["policies"] == [{"roleId": name}]
        denied(await client.delete(f"/roles/{name}", headers=admin),
               400, "security.role.cannot_delete")
        denied(await client.delete(f"/profiles/{name}", headers=admin),
               400, "security.profile.cannot_delete")
    # the declared anonymous role replaced the open one
    anonymous = (await client.get("/roles/anonymous", headers=admin)).json()["result"]
    assert set(anonymous["_source"]["controllers"]) == {"auth", "server"}


async def test_declared_entries_are_created_and_updated_at_every_start(serve):
    first = await serve(closed_yaml().replace(f"jwt: {{secret: {SECRET}}}", "jwt: {}"))
    client = first.client
    admin = bearer(await login(client, "admin", "admin-password"))
    alice = (await client.get("/users/alice", headers=admin)).json()["result"]
    assert alice == {"_id": "alice", "_source": {"name": "Alice", "profileIds": ["readers"]}}
    # a user changed through the API, a token revoked, another kept
    r = await client.put("/users/alice/_update", headers=admin, json={"name": "Changed"})
    assert r.json()["result"]["_source"]["name"] == "Changed"
    revoked = await login(client, "alice", "alice-password")
    kept = await login(client, "alice", "alice-password")
    await client.post("/_logout", headers=bearer(revoked))
    # the gateway starts again on the same storage, its declaration changed
    second = await serve(closed_yaml(roles="""
    extra: {controllers: {server: {actions: {now: true}}}}
""").replace(f"jwt: {{secret: {SECRET}}}", "jwt: {}").replace("name: Alice", "name: Alicia"))
    client = second.client
    admin = bearer(await login(client, "admin", "admin-password"))
    alice = (await client.get("/users/alice", headers=admin)).json()["result"]
    assert alice["_source"] == {"name": "Alicia", "profileIds": ["readers"]}
    assert (await client.get("/roles/extra", headers=admin)).status_code == 200
    # the generated signing key and the revocations are kept in storage
    assert (await client.get("/_me", headers=bearer(kept))).json()["result"]["_id"] == "alice"
    denied(await client.get("/_me", headers=bearer(revoked)), 401, "security.token.invalid")
    assert await login(client, "alice", "alice-password")


async def test_roles_crud_and_search(serve):
    served = await serve(closed_yaml())
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    body = {"controllers": {"server": {"actions": {"now": True}}}}
    r = await client.post("/roles/timekeeper/_create", headers=admin, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"_id": "timekeeper", "_source": body}
    again = await client.post("/roles/timekeeper/_create", headers=admin, json=body)
    assert again.status_code >= 400
    assert (await client.get("/roles/timekeeper", headers=admin)).json()["result"]["_source"] \
        == body
    r = await client.put("/roles/timekeeper/_update", headers=admin, json={
        "controllers": {"server": {"actions": {"now": True, "info": True}}}})
    assert r.json()["result"]["_source"]["controllers"]["server"]["actions"] == {
        "now": True, "info": True}
    r = await client.put("/roles/other", headers=admin, json=body)  # createOrReplace
    assert r.status_code == 200
    found = (await client.post("/roles/_search", headers=admin,
                               json={"controllers": ["server"]})).json()["result"]
    assert {h["_id"] for h in found["hits"]} >= {"timekeeper", "other", "anonymous"}
    assert "reader" not in {h["_id"] for h in found["hits"]}
    page = (await client.post("/roles/_search?size=1&from=1", headers=admin,
                              json={})).json()["result"]
    assert len(page["hits"]) == 1 and page["total"] >= 6
    m = (await client.post("/roles/_mGet", headers=admin,
                           json={"ids": ["other", "nope"]})).json()["result"]
    assert [h["_id"] for h in m["hits"]] == ["other"]
    denied(await client.get("/roles/nope", headers=admin), 404, "security.role.not_found")
    # bad rights are refused, naming the path
    bad = await client.put("/roles/bad", headers=admin,
                           json={"controllers": {"server": {"actions": {"now": "yes"}}}})
    denied(bad, 400, "security.role.invalid_rights")
    assert "controllers.server.actions.now" in bad.json()["error"]["message"]
    # in use by a profile: 412; unused: deleted
    await client.put("/profiles/keepers", headers=admin,
                     json={"policies": [{"roleId": "timekeeper"}]})
    denied(await client.delete("/roles/timekeeper", headers=admin), 412, "security.role.in_use")
    r = await client.delete("/roles/other", headers=admin)
    assert r.json()["result"] == {"_id": "other"}
    denied(await client.get("/roles/other", headers=admin), 404, "security.role.not_found")


async def test_profiles_crud_and_search(serve):
    served = await serve(closed_yaml())
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    body = {"policies": [{"roleId": "reader", "restrictedTo": [{"index": "books"}]}],
            "rateLimit": 5}
    r = await client.post("/profiles/bookish/_create", headers=admin, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"_id": "bookish", "_source": body}
    got = (await client.get("/profiles/bookish", headers=admin)).json()["result"]
    assert got["_source"]["rateLimit"] == 5
    r = await client.put("/profiles/bookish/_update", headers=admin, json={"rateLimit": 7})
    assert r.json()["result"]["_source"] == {**body, "rateLimit": 7}
    found = (await client.post("/profiles/_search", headers=admin,
                               json={"roles": ["reader"]})).json()["result"]
    assert sorted(h["_id"] for h in found["hits"]) == ["bookish", "readers"]
    m = (await client.post("/profiles/_mGet", headers=admin,
                           json={"ids": ["bookish", "admin"]})).json()["result"]
    assert [h["_id"] for h in m["hits"]] == ["bookish", "admin"]
    rights = (await client.get("/profiles/bookish/_rights", headers=admin)).json()["result"]
    assert {"controller": "rec/api", "action": "echo", "index": "books", "collection": "*",
            "value": "allowed"} in rights["hits"]
    for bad in ({"policies": [{"roleId": "nope"}]}, {"policies": []},
                {"policies": [{"roleId": "reader"}], "rateLimit": -1},
                {"policies": [{"roleId": "reader", "extra": 1}]}):
        r = await client.put("/profiles/bad", headers=admin, json=bad)
        assert r.status_code in (400, 404), (bad, r.text)
    denied(await client.get("/profiles/bad", headers=admin), 404, "security.profile.not_found")
    denied(await client.delete("/profiles/readers", headers=admin),
           412, "security.profile.in_use")
    assert (await client.delete("/profiles/bookish", headers=admin)).status_code == 200
    denied(await client.get("/profiles/bookish", headers=admin),
           404, "security.profile.not_found")


async def test_users_crud_search_and_strategies(serve):
    served = await serve(closed_yaml())
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    r = await client.post("/users/bob/_create", headers=admin, json={
        "content": {"profileIds": ["readers"], "name": "Bob", "age": 40},
        "credentials": {"local": {"username": "bob", "password": "bob-password"}}})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"_id": "bob", "_source": {
        "name": "Bob", "age": 40, "profileIds": ["readers"]}}
    denied(await client.post("/users/bob/_create", headers=admin, json={
        "content": {"profileIds": ["readers"]}}), 412, "security.user.already_exists")
    # no id: one is made
    made = await client.post("/users/_create", headers=admin,
                             json={"content": {"profileIds": ["default"]}})
    assert len(made.json()["result"]["_id"]) >= 16
    # a user needs existing profiles
    denied(await client.post("/users/carl/_create", headers=admin, json={
        "content": {"profileIds": []}}), 400, "security.user.no_profile")
    denied(await client.post("/users/carl/_create", headers=admin, json={
        "content": {"profileIds": ["nope"]}}), 404, "security.profile.not_found")
    # bad credentials: the user is not created either
    r = await client.post("/users/carl/_create", headers=admin, json={
        "content": {"profileIds": ["readers"]},
        "credentials": {"local": {"username": "alice", "password": "x"}}})
    denied(r, 412, "security.credentials.username_taken")
    denied(await client.get("/users/carl", headers=admin), 404, "security.user.not_found")

    assert (await login(client, "bob", "bob-password"))
    r = await client.put("/users/bob/_update", headers=admin, json={"age": 41})
    assert r.json()["result"]["_source"] == {"name": "Bob", "age": 41, "profileIds": ["readers"]}
    r = await client.put("/users/bob/_replace", headers=admin,
                         json={"profileIds": ["readers"], "nick": "B"})
    assert r.json()["result"]["_source"] == {"nick": "B", "profileIds": ["readers"]}
    denied(await client.put("/users/ghost/_replace", headers=admin,
                            json={"profileIds": ["readers"]}), 404, "security.user.not_found")

    found = (await client.post("/users/_search", headers=admin, json={
        "query": {"equals": {"nick": "B"}}})).json()["result"]
    assert found["total"] == 1 and found["hits"][0]["_id"] == "bob"
    every = (await client.post("/users/_search?size=100", headers=admin, json={})).json()
    assert every["result"]["total"] == 4  # admin, alice, bob and the one without an id
    m = (await client.post("/users/_mGet", headers=admin,
                           json={"ids": ["bob", "ghost", "alice"]})).json()["result"]
    assert [h["_id"] for h in m["hits"]] == ["bob", "alice"]

    strategies = (await client.get("/users/bob/_strategies", headers=admin)).json()["result"]
    assert strategies == {"strategies": ["local"], "total": 1}

    r = await client.delete("/users/bob", headers=admin)
    assert r.json()["result"] == {"_id": "bob"}
    denied(await client.get("/users/bob", headers=admin), 404, "security.user.not_found")
    # the credentials went with the user: the username is free again, the login fails
    denied(await client.post("/_login/local", json={"username": "bob",
                                                   "password": "bob-password"}),
           401, "plugin.strategy.missing_user")
    denied(await client.delete("/users/bob", headers=admin), 404, "security.user.not_found")


async def test_user_rights_and_my_rights_shapes(serve):
    served = await serve(closed_yaml(profiles="""
    bookish:
      policies: [{roleId: reader, restrictedTo: [{index: books, collections: [scifi, poetry]}]}]
""", users="""
    both: {profileIds: [readers, bookish]}
"""))
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    alice = bearer(await login(client, "alice", "alice-password"))
    rights = (await client.get("/users/alice/_rights", headers=admin)).json()["result"]
    expected = [
        {"controller": "auth", "action": "*", "index": "*", "collection": "*",
         "value": "allowed"},
        {"controller": "rec/api", "action": "echo", "index": "*", "collection": "*",
         "value": "allowed"},
    ]
    assert sorted(rights["hits"], key=str) == sorted(expected, key=str)
    assert rights["total"] == 2
    mine = (await client.get("/_me/_rights", headers=alice)).json()["result"]
    assert mine == rights
    assert (await client.get("/users/_me/_rights", headers=alice)).json()["result"] == rights
    # a user with two profiles: each rule once per index/collection it applies to
    both = (await client.get("/users/both/_rights", headers=admin)).json()["result"]
    echo = sorted((h["index"], h["collection"]) for h in both["hits"]
                  if h["controller"] == "rec/api")
    assert echo == [("*", "*"), ("books", "poetry"), ("books", "scifi")]
    assert both["total"] == len(both["hits"])
    # the anonymous user's rights are those of the anonymous role
    anon = (await client.get("/_me/_rights")).json()["result"]
    assert {(h["controller"], h["action"]) for h in anon["hits"]} == {
        ("auth", "login"), ("auth", "checkToken"), ("auth", "getCurrentUser"),
        ("auth", "getMyRights"), ("auth", "getStrategies"), ("server", "now")}
    denied(await client.get("/users/nobody/_rights", headers=admin),
           404, "security.user.not_found")


async def test_rights_of_several_roles(serve):
    served = await serve(closed_yaml(roles="""
    nope: {controllers: {"rec/api": {actions: {echo: false}}}}
""", profiles="""
    mixed: {policies: [{roleId: nope}, {roleId: reader}]}
    again: {policies: [{roleId: reader}]}
""", users="""
    mix: {profileIds: [mixed, again, readers], credentials: {local: {username: mix, password: mp}}}
"""))
    client = served.client
    mix = bearer(await login(client, "mix", "mp"))
    # a user may do what any of its roles allows
    assert (await client.post("/_/rec/echo", headers=mix, json={})).status_code == 200
    rights = (await client.get("/_me/_rights", headers=mix)).json()["result"]
    echo = [h["value"] for h in rights["hits"] if h["controller"] == "rec/api"]
    # as in Kuzzle: a rule shared by several profiles is listed once; rules that disagree
    # are both listed
    assert sorted(echo) == ["allowed", "denied"]
    assert rights["total"] == len(rights["hits"]) == 3


# -- rights on every request --------------------------------------------------------------------

async def test_anonymous_denied_is_401_and_a_user_denied_is_403(serve):
    served = await serve(closed_yaml())
    client = served.client
    r = await client.post("/users/x/_create", json={"content": {"profileIds": ["admin"]}})
    denied(r, 401, "security.rights.unauthorized")
    assert r.json()["error"]["message"] == (
        'Unauthorized: authentication required to execute the action "security:createUser".')
    alice = bearer(await login(client, "alice", "alice-password"))
    r = await client.post("/users/x/_create", headers=alice,
                          json={"content": {"profileIds": ["admin"]}})
    denied(r, 403, "security.rights.forbidden")
    assert "alice" in r.json()["error"]["message"]
    # what anonymous may do still works
    assert (await client.get("/_now")).status_code == 200
    denied(await client.get("/_serverInfo"), 401, "security.rights.unauthorized")
    # the same through POST /_query
    r = await query(client, controller="security", action="getUser", _id="admin")
    denied(r, 401, "security.rights.unauthorized")
    r = await query(client, alice["Authorization"][7:], controller="security",
                    action="getUser", _id="admin")
    denied(r, 403, "security.rights.forbidden")
    admin = bearer(await login(client, "admin", "admin-password"))
    denied(await client.get("/users/x", headers=admin), 404, "security.user.not_found")


async def test_rights_on_plugin_controllers(serve):
    served = await serve(closed_yaml())
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    # the reader role allows rec/api:echo only
    ok = await client.post("/_/rec/echo", headers=alice, json={"x": 1})
    assert ok.status_code == 200 and ok.json()["result"]["body"] == {"x": 1}
    denied(await client.get("/_/rec/sync", headers=alice), 403, "security.rights.forbidden")
    denied(await client.post("/_/rec/echo", json={}), 401, "security.rights.unauthorized")
    denied(await client.get("/_plugin/rec/sync"), 401, "security.rights.unauthorized")
    r = await query(client, alice["Authorization"][7:], controller="rec/api", action="echoSync")
    denied(r, 403, "security.rights.forbidden")
    admin = bearer(await login(client, "admin", "admin-password"))
    assert (await client.get("/_/rec/sync", headers=admin)).status_code == 200


async def test_a_denied_request_never_reaches_the_action_nor_its_pipes(serve):
    served = await serve(closed_yaml(plugins=f"""
  watch:
    module: {REC}
    pipes:
      "rec/api:beforeEchoSync": trace
    hooks:
      "request:onUnauthorized": hook_trace
"""))
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    await client.get("/_/rec/sync", headers=alice)
    await client.get("/_/rec/sync")
    seen = served.plugin("watch").seen
    for _ in range(100):  # hooks run in the background
        if seen.count("hook request:onUnauthorized") == 2:
            break
        await asyncio.sleep(0.01)
    assert seen.count("hook request:onUnauthorized") == 2
    assert "rec/api:beforeEchoSync" not in seen


async def test_restricted_to_an_index_and_collections(serve):
    served = await serve(closed_yaml(profiles="""
    bookish:
      policies:
        - {roleId: reader, restrictedTo: [{index: books, collections: [scifi]}, {index: news}]}
""", users="""
    bo: {profileIds: [bookish], credentials: {local: {username: bo, password: bo-password}}}
"""))
    client = served.client
    bo = bearer(await login(client, "bo", "bo-password"))

    async def echo(**args: str) -> int:
        return (await client.post("/_/rec/echo", params=args, headers=bo, json={})).status_code

    assert await echo(index="books", collection="scifi") == 200
    assert await echo(index="news", collection="anything") == 200
    assert await echo(index="news") == 200
    assert await echo(index="books", collection="poetry") == 403
    assert await echo(index="music", collection="scifi") == 403
    assert await echo(index="music") == 403
    # as in Kuzzle: a policy restricted to collections does not cover the whole index
    assert await echo(index="books") == 403
    # an action that names no index is not restricted (Kuzzle's rule)
    assert await echo() == 200


# -- rate limits ---------------------------------------------------------------------------------

async def test_a_profiles_rate_limit(serve):
    served = await serve(closed_yaml(profiles="""
    slow: {policies: [{roleId: reader}], rateLimit: 2}
""", users="""
    sam: {profileIds: [slow], credentials: {local: {username: sam, password: sam-password}}}
"""))
    client = served.client
    sam = bearer(await login(client, "sam", "sam-password"))
    alice = bearer(await login(client, "alice", "alice-password"))
    await fresh_second()
    assert (await client.post("/_/rec/echo", headers=sam, json={})).status_code == 200
    assert (await client.get("/_me", headers=sam)).status_code == 200
    r = await client.post("/_/rec/echo", headers=sam, json={})
    denied(r, 429, "api.process.too_many_requests")
    # other users are not affected, and logout is never limited for a logged-in user
    for _ in range(5):
        assert (await client.post("/_/rec/echo", headers=alice, json={})).status_code == 200
    assert (await client.get("/_now")).status_code == 200
    # the next second, sam may go on
    await fresh_second()
    assert (await client.post("/_/rec/echo", headers=sam, json={})).status_code == 200
    assert (await client.post("/_/rec/echo", headers=sam, json={})).status_code == 200
    assert (await client.post("/_logout", headers=sam)).status_code == 200


async def test_the_least_limited_profile_wins(serve):
    served = await serve(closed_yaml(profiles="""
    slow: {policies: [{roleId: reader}], rateLimit: 1}
    fast: {policies: [{roleId: reader}], rateLimit: 0}
""", users="""
    duo: {profileIds: [slow, fast], credentials: {local: {username: duo, password: duo-pass}}}
"""))
    client = served.client
    duo = bearer(await login(client, "duo", "duo-pass"))
    await fresh_second()
    for _ in range(4):
        assert (await client.post("/_/rec/echo", headers=duo, json={})).status_code == 200


# -- createFirstAdmin and the open gateway -------------------------------------------------------

async def test_until_an_admin_exists_everything_is_allowed_then_reset_closes(serve, caplog):
    caplog.set_level(logging.WARNING, "sanic_gateway.security")
    served = await serve(f"limits: {{login_attempts_per_second: 100}}\nplugins:\n"
                         f"  rec: {{module: '{REC}', controllers: {{api: {{echo: echo}}}}}}\n")
    assert "anonymous users may call every action" in caplog.text
    client = served.client
    assert (await client.get("/_adminExists")).json()["result"] == {"exists": False}
    # the open gateway: a visitor may manage security
    r = await client.post("/users/early/_create", json={
        "content": {"profileIds": ["default"]},
        "credentials": {"local": {"username": "early", "password": "early-password"}}})
    assert r.status_code == 200, r.text
    # createFirstAdmin: the profile is not the caller's choice (as in Kuzzle)
    r = await client.post("/_createFirstAdmin/boss?reset", json={
        "content": {"name": "Boss", "profileIds": ["default"]},
        "credentials": {"local": {"username": "boss", "password": "boss-password"}}})
    denied(r, 400, "api.assert.forbidden_argument")
    assert (await client.get("/_adminExists")).json()["result"] == {"exists": False}
    r = await client.post("/_createFirstAdmin/boss?reset", json={
        "content": {"name": "Boss"},
        "credentials": {"local": {"username": "boss", "password": "boss-password"}}})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"_id": "boss", "_source": {"name": "Boss",
                                                            "profileIds": ["admin"]}}
    denied(await client.get("/_adminExists"), 401, "security.rights.unauthorized")
    # closed: visitors may log in and little else
    denied(await client.post("/users/late/_create", json={"content": {"profileIds": ["admin"]}}),
           401, "security.rights.unauthorized")
    denied(await client.post("/_/rec/api/echo"), 404, "network.http.url_not_found")
    denied(await query(client, controller="rec/api", action="echo"),
           401, "security.rights.unauthorized")
    assert (await client.get("/_now")).status_code == 200
    denied(await client.post("/_createFirstAdmin/other", json={}),
           401, "security.rights.unauthorized")
    # the default role is restricted too
    early = bearer(await login(client, "early", "early-password"))
    assert (await client.get("/_me", headers=early)).status_code == 200
    denied(await client.get("/users/boss", headers=early), 403, "security.rights.forbidden")
    # the admin may do everything, but not make a second first admin
    boss = bearer(await login(client, "boss", "boss-password"))
    assert (await client.get("/users/early", headers=boss)).status_code == 200
    assert (await client.get("/_adminExists", headers=boss)).json()["result"] == {"exists": True}
    denied(await client.post("/_createFirstAdmin/again", headers=boss, json={}),
           412, "api.process.admin_exists")
    denied(await client.get("/users/again", headers=boss), 404, "security.user.not_found")


async def test_create_first_admin_without_reset_leaves_the_default_roles_open(serve):
    served = await serve("limits: {login_attempts_per_second: 100}\n")
    client = served.client
    r = await client.post("/_createFirstAdmin", json={
        "credentials": {"local": {"username": "root", "password": "root-password"}}})
    assert r.status_code == 200
    kuid = r.json()["result"]["_id"]
    assert r.json()["result"]["_source"]["profileIds"] == ["admin"]
    # as in Kuzzle: without `reset`, anonymous keeps its rights...
    assert (await client.get(f"/users/{kuid}")).status_code == 200
    # ...but there is one first admin only
    denied(await client.post("/_createFirstAdmin/second", json={}),
           412, "api.process.admin_exists")
    admin = bearer(await login(client, "root", "root-password"))
    assert (await client.get("/_me", headers=admin)).json()["result"]["_id"] == kuid


async def test_declaring_the_anonymous_role_closes_the_gateway(serve, caplog):
    caplog.set_level(logging.WARNING, "sanic_gateway.security")
    served = await serve(f"security:\n  roles:\n    anonymous: {ANONYMOUS_ROLE}\n")
    assert "anonymous users may call every action" not in caplog.text
    client = served.client
    assert (await client.get("/_adminExists")).status_code == 401
    denied(await client.post("/_createFirstAdmin/boss?reset", json={}),
           401, "security.rights.unauthorized")
    denied(await client.post("/users/x/_create", json={"content": {"profileIds": ["admin"]}}),
           401, "security.rights.unauthorized")
    assert (await client.get("/_now")).status_code == 200


async def test_a_declared_admin_user_counts_as_the_first_admin(serve):
    served = await serve(closed_yaml())
    admin = bearer(await login(served.client, "admin", "admin-password"))
    denied(await served.client.post("/_createFirstAdmin/x", headers=admin, json={}),
           412, "api.process.admin_exists")


# -- attacks -------------------------------------------------------------------------------------

async def test_privilege_escalation_through_update_self_is_refused(serve):
    served = await serve(closed_yaml())
    client = served.client
    jwt = await login(client, "alice", "alice-password")
    alice = bearer(jwt)
    attempts = [{"profileIds": ["admin"]}, {"_id": "admin"}, {"kuid": "admin"},
                {"profileIds": ["admin"], "name": "Mallory"}]
    for body in attempts:
        for path in ("/_me", "/_updateSelf"):
            r = await client.put(path, headers=alice, json=body)
            denied(r, 400, "api.assert.forbidden_argument")
        r = await query(client, jwt, controller="auth", action="updateSelf", body=body)
        denied(r, 400, "api.assert.forbidden_argument")
    # nested or oddly named keys change nothing either
    for body in ({"_source": {"profileIds": ["admin"]}}, {"content": {"profileIds": ["admin"]}}):
        r = await client.put("/_me", headers=alice, json=body)
        assert r.status_code == 200
        assert r.json()["result"]["_source"]["profileIds"] == ["readers"]
    # the query string cannot carry a profile either
    r = await client.put("/_me?profileIds=admin", headers=alice, json={"name": "Alice"})
    assert r.json()["result"]["_source"]["profileIds"] == ["readers"]
    me = (await client.get("/_me", headers=alice)).json()["result"]
    assert me["_id"] == "alice" and me["_source"]["profileIds"] == ["readers"]
    assert me["_source"]["name"] == "Alice"
    denied(await client.post("/users/x/_create", headers=alice,
                             json={"content": {"profileIds": ["admin"]}}),
           403, "security.rights.forbidden")
    # nor through the security controller or createFirstAdmin
    denied(await client.put("/users/alice/_update", headers=alice,
                            json={"profileIds": ["admin"]}), 403, "security.rights.forbidden")
    denied(await client.post("/_createFirstAdmin/alice2?reset", headers=alice, json={}),
           403, "security.rights.forbidden")
    admin = bearer(await login(client, "admin", "admin-password"))
    assert (await client.get("/users/alice", headers=admin)).json()["result"]["_source"][
        "profileIds"] == ["readers"]
    denied(await client.get("/users/alice2", headers=admin), 404, "security.user.not_found")


async def test_the_anonymous_user_cannot_be_given_a_profile(serve):
    served = await serve(closed_yaml())
    client = served.client
    jwt = await login(client, "admin", "admin-password")
    content = {"profileIds": ["admin"]}
    r = await query(client, jwt, controller="security", action="createUser", _id="-1",
                    body={"content": content})
    denied(r, 400, "api.assert.invalid_argument")
    for action in ("updateUser", "replaceUser"):
        r = await query(client, jwt, controller="security", action=action, _id="-1",
                        body=content)
        denied(r, 404, "security.user.not_found")
    denied(await client.post("/users/x/_create", json={"content": content}),
           401, "security.rights.unauthorized")
    assert (await client.get("/_me")).json()["result"]["_source"] == {
        "profileIds": ["anonymous"]}


async def test_another_users_credentials_are_out_of_reach(serve):
    served = await serve(closed_yaml())
    client = served.client
    jwt = await login(client, "alice", "alice-password")
    alice = bearer(jwt)
    # admin's username with alice's password
    denied(await client.post("/_login/local", json={"username": "admin",
                                                   "password": "alice-password"}),
           401, "plugin.strategy.missing_user")
    # taking over admin's username
    r = await client.put("/_me/credentials/local/_update", headers=alice,
                         json={"username": "admin", "password": "mine-now"})
    denied(r, 412, "security.credentials.username_taken")
    r = await client.post("/_me/credentials/local/_validate", headers=alice,
                          json={"username": "admin", "password": "mine-now"})
    denied(r, 412, "security.credentials.username_taken")
    # smuggling a kuid in the credentials
    r = await client.put("/_me/credentials/local/_update", headers=alice,
                         json={"password": "x", "kuid": "admin"})
    denied(r, 400, "security.credentials.rejected")
    # the admin-side credentials actions
    for verb, path, body in (
        ("get", "/credentials/local/admin", None),
        ("put", "/credentials/local/admin/_update", {"password": "mine-now"}),
        ("delete", "/credentials/local/admin", None),
        ("post", "/credentials/local/admin/_create", {"username": "a2", "password": "p"}),
        ("get", "/credentials/local/admin/_byId", None),
    ):
        r = await client.request(verb, path, headers=alice, json=body)
        denied(r, 403, "security.rights.forbidden")
    # nothing changed: both still log in with their own passwords, as themselves
    admin_jwt = await login(client, "admin", "admin-password")
    me = (await client.get("/_me", headers=bearer(admin_jwt))).json()["result"]
    assert me["_id"] == "admin"
    assert (await login(client, "alice", "alice-password"))
    info = (await client.get("/_me/credentials/local", headers=alice)).json()["result"]
    assert info == {"username": "alice", "kuid": "alice"}


@pytest.mark.parametrize("evil", SQLISH)
async def test_sql_looking_input_everywhere_changes_nothing(storage_line, serve, evil):
    served = await serve(closed_yaml(storage=storage_line))
    client = served.client
    jwt = await login(client, "admin", "admin-password")
    admin = bearer(jwt)

    async def state() -> dict:
        users = (await client.post("/users/_search?size=100", headers=admin, json={}))
        roles = (await client.post("/roles/_search?size=100", headers=admin, json={}))
        profiles = (await client.post("/profiles/_search?size=100", headers=admin, json={}))
        return {"users": sorted(h["_id"] for h in users.json()["result"]["hits"]),
                "roles": sorted(h["_id"] for h in roles.json()["result"]["hits"]),
                "profiles": sorted(h["_id"] for h in profiles.json()["result"]["hits"])}

    before = await state()
    # as a username and a password that do not exist: a plain failed login
    for body in ({"username": evil, "password": evil}, {"username": "admin", "password": evil},
                 {"username": evil, "password": "admin-password"}):
        denied(await client.post("/_login/local", json=body), 401,
               "plugin.strategy.missing_user")
    # in search queries: as a field name it is refused, as a value it matches nothing
    for q in ({"equals": {evil: "x"}}, {"exists": evil}, {"range": {evil: {"gt": 1}}}):
        r = await client.post("/users/_search", headers=admin, json={"query": q})
        denied(r, 400, "services.storage.invalid_search_query")
    for q in ({"equals": {"name": evil}}, {"in": {"name": [evil, "x"]}},
              {"ids": {"values": [evil]}}, {"range": {"name": {"gte": evil}}},
              {"not": {"equals": {"name": evil}}}):
        r = await client.post("/users/_search", headers=admin, json={"query": q})
        assert r.status_code == 200, r.text
        assert all(h["_id"] in before["users"] for h in r.json()["result"]["hits"])
    # as arguments
    for params in ({"from": evil}, {"size": evil}):
        r = await client.post("/users/_search", params=params, headers=admin, json={})
        assert r.status_code == 400
    denied(await client.post("/_login/local", params={"expiresIn": evil},
                             json={"username": "alice", "password": "alice-password"}),
           400, "security.token.invalid_expiration")
    denied(await query(client, controller="auth", action="login", strategy=evil, body={}),
           400, "security.credentials.unknown_strategy")
    # as ids to read and delete
    for action in ("getUser", "deleteUser", "getRole", "deleteRole", "getProfile",
                   "deleteProfile", "getUserRights"):
        r = await query(client, jwt, controller="security", action=action, _id=evil)
        assert r.status_code == 404, (action, r.text)
    r = await query(client, jwt, controller="security", action="mGetUsers",
                    body={"ids": [evil, "admin"]})
    assert [h["_id"] for h in r.json()["result"]["hits"]] == ["admin"]
    assert await state() == before

    # as ids and credentials that are stored: they are data, kept as given
    r = await query(client, jwt, controller="security", action="createRole", _id=evil,
                    body={"controllers": {"auth": {"actions": {"*": True}}}})
    assert r.status_code == 200, r.text
    r = await query(client, jwt, controller="security", action="createProfile", _id=evil,
                    body={"policies": [{"roleId": evil}]})
    assert r.status_code == 200, r.text
    r = await query(client, jwt, controller="security", action="createUser", _id=evil,
                    body={"content": {"profileIds": [evil], "name": evil},
                          "credentials": {"local": {"username": evil, "password": evil}}})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"_id": evil, "_source": {"name": evil, "profileIds": [evil]}}
    evil_jwt = await login(client, evil, evil)
    me = (await client.get("/_me", headers=bearer(evil_jwt))).json()["result"]
    assert me["_id"] == evil and me["_source"]["profileIds"] == [evil]
    rights = (await query(client, jwt, controller="security", action="getUserRights",
                          _id=evil)).json()["result"]
    assert rights["hits"] == [{"controller": "auth", "action": "*", "index": "*",
                               "collection": "*", "value": "allowed"}]
    found = (await client.post("/users/_search", headers=admin, json={
        "query": {"equals": {"name": evil}}})).json()["result"]
    assert [h["_id"] for h in found["hits"]] == [evil]
    # the new user is a plain user: 403 on what its role does not allow
    denied(await client.get("/users/admin", headers=bearer(evil_jwt)),
           403, "security.rights.forbidden")
    # everything else is intact
    after = await state()
    assert after == {"users": sorted([*before["users"], evil]),
                     "roles": sorted([*before["roles"], evil]),
                     "profiles": sorted([*before["profiles"], evil])}
    assert await login(client, "alice", "alice-password")
    assert await login(client, "admin", "admin-password")
    # and it goes away cleanly
    for action in ("deleteUser", "deleteProfile", "deleteRole"):
        r = await query(client, jwt, controller="security", action=action, _id=evil)
        assert r.status_code == 200, (action, r.text)
    assert await state() == before


async def test_credentials_never_leave_the_server(serve):
    served = await serve(closed_yaml())
    client = served.client
    jwt = await login(client, "admin", "admin-password")
    admin = bearer(jwt)
    alice = bearer(await login(client, "alice", "alice-password"))
    responses = [
        await client.post("/_login/local", json={"username": "alice",
                                                 "password": "alice-password"}),
        await client.post("/users/bob/_create", headers=admin, json={
            "content": {"profileIds": ["readers"]},
            "credentials": {"local": {"username": "bob", "password": "bob-password"}}}),
        await client.get("/_me", headers=alice),
        await client.get("/_me/credentials/local", headers=alice),
        await client.get("/_me/credentials/local/_exists", headers=alice),
        await client.put("/_me/credentials/local/_update", headers=alice,
                         json={"password": "alice-password-2"}),
        await client.get("/users/alice", headers=admin),
        await client.post("/users/_search", headers=admin, json={}),
        await client.post("/users/_mGet", headers=admin, json={"ids": ["alice", "bob"]}),
        await client.get("/credentials/local/alice", headers=admin),
        await client.get("/credentials/local/alice/_byId", headers=admin),
        await client.put("/credentials/local/bob/_update", headers=admin,
                         json={"password": "bob-password-2"}),
        await client.get("/users/alice/_strategies", headers=admin),
        await client.post("/_login/local", json={"username": "alice", "password": "wrong"}),
        await client.post("/users/bob/_create", headers=admin, json={
            "content": {"profileIds": ["readers"]},
            "credentials": {"local": {"username": "bob", "password": "bob-password"}}}),
    ]
    for r in responses:
        assert r.status_code < 500, r.text
        assert "$argon2" not in r.text
        for password in ("alice-password", "bob-password", "admin-password"):
            assert password not in r.text, r.text
        assert '"password"' not in r.text, r.text
    got = (await client.get("/credentials/local/alice/_byId", headers=admin)).json()["result"]
    assert got == {"username": "alice", "kuid": "alice"}
    # and nothing stores them in clear
    stored = await served.gateway.storage.search("credentials.local", None, size=100)
    for hit in stored["hits"]:
        assert hit["_source"]["password"].startswith("$argon2id$")


# -- PostgreSQL and SQLite alike -----------------------------------------------------------------

async def test_users_and_rights_end_to_end(storage_line, serve):
    served = await serve(closed_yaml(storage=storage_line))
    client = served.client
    assert served.gateway.storage.backend == ("postgresql" if storage_line else "sqlite")
    admin = bearer(await login(client, "admin", "admin-password"))
    r = await client.put("/roles/syncer", headers=admin,
                         json={"controllers": {"rec/api": {"actions": {"echoSync": True}},
                                               "auth": {"actions": {"*": True}}}})
    assert r.status_code == 200
    await client.put("/profiles/syncers", headers=admin,
                     json={"policies": [{"roleId": "syncer"}], "rateLimit": 0})
    r = await client.post("/users/sy/_create", headers=admin, json={
        "content": {"profileIds": ["syncers"]},
        "credentials": {"local": {"username": "sy", "password": "sy-password"}}})
    assert r.status_code == 200, r.text
    sy_jwt = await login(client, "sy", "sy-password")
    sy = bearer(sy_jwt)
    assert (await client.get("/_/rec/sync", headers=sy)).status_code == 200
    denied(await client.post("/_/rec/echo", headers=sy, json={}), 403, "security.rights.forbidden")
    # rights follow the profile as soon as it changes
    r = await client.put("/users/sy/_update", headers=admin, json={"profileIds": ["readers"]})
    assert r.status_code == 200
    assert (await client.post("/_/rec/echo", headers=sy, json={})).status_code == 200
    denied(await client.get("/_/rec/sync", headers=sy), 403, "security.rights.forbidden")
    # logout revokes, deleting the user ends its other tokens too
    other = await login(client, "sy", "sy-password")
    assert (await client.post("/_logout", headers=sy)).status_code == 200
    denied(await client.get("/_me", headers=sy), 401, "security.token.invalid")
    assert (await client.get("/_me", headers=bearer(other))).status_code == 200
    assert (await client.delete("/users/sy", headers=admin)).status_code == 200
    denied(await client.get("/_me", headers=bearer(other)), 401, "security.token.invalid")
    assert error_id(await client.post("/_login/local", json={
        "username": "sy", "password": "sy-password"})) == "plugin.strategy.missing_user"


async def test_simultaneous_create_first_admin_calls_make_one_admin(serve):
    served = await serve("plugins: {}\n")
    calls = [served.client.post(f"/_createFirstAdmin/admin{i}", json={
        "credentials": {"local": {"username": f"admin{i}", "password": "a-long-password"}}})
        for i in range(5)]
    answers = await asyncio.gather(*calls)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 412, 412, 412, 412], [r.text for r in answers]
    assert all(r.json()["error"]["id"] == "api.process.admin_exists"
               for r in answers if r.status_code == 412)
