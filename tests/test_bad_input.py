"""Input of the wrong type or shape, sent as an attacker would: each is a 400 (or, for a login,
a 401) in the JSON envelope, never a 500 or a 503, nothing is stored, and the gateway keeps
answering everyone. On SQLite and PostgreSQL wherever storage is involved."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from sanic_gateway import inputs
from sanic_gateway.errors import GatewayError
from sanic_gateway.inputs import MAX_DEPTH
from sanic_gateway.storage.base import MAX_FILTER_CLAUSES, MAX_FILTER_DEPTH
from tests.security_helpers import bearer, closed_yaml, login
from tests.test_security import storage_line  # noqa: F401  (fixture)

NOTHING = object()


def nested(levels: int, leaf: Any = 1) -> Any:
    """`levels` objects inside each other around `leaf` (nested(2) == {"a": {"a": 1}})."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def nested_filter(levels: int) -> dict[str, Any]:
    """A filter `levels` deep cycling through not/and/or: the shape SQLite chokes on soonest."""
    leaf = {"range": {"age": {"gt": 1, "lt": 5}}}
    query: dict[str, Any] = leaf
    for i in range(levels - 1):
        keyword = ("not", "and", "or")[i % 3]
        query = {"not": query} if keyword == "not" else {keyword: [leaf, query]}
    return query


def q(**request: Any) -> dict[str, Any]:
    return request


@dataclass
class Attack:
    name: str
    verb: str
    path: str
    status: int
    error: str
    body: Any = NOTHING  # JSON, or bytes sent as they are
    headers: dict[str, Any] = field(default_factory=dict)


USER = {"profileIds": ["default"]}
GOOD_CREDS = {"local": {"username": "mallory", "password": "mallory-password"}}

ATTACKS = [
    # -- a whole request (/_query) with fields of the wrong type -------------------------------
    Attack("controller is a list", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller=["auth"], action="getCurrentUser")),
    Attack("controller is an object", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller={"auth": 1}, action="getCurrentUser")),
    Attack("action is a list", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="auth", action=["getCurrentUser"])),
    Attack("body is an array", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="rec/api", action="echo", body=[1, 2])),
    Attack("body is a string", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="rec/api", action="echo", body="text")),
    Attack("requestId is a number", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="server", action="now", requestId=5)),
    Attack("requestId is an object", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="server", action="now", requestId={"a": 1})),
    Attack("_id is a list", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="security", action="getUser", _id=["alice"])),
    Attack("index is a number", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="rec/api", action="echo", index=1)),
    Attack("volatile is an array", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="server", action="now", volatile=[1])),
    Attack("X-Kuzzle-Volatile is an array", "get", "/_now", 400, "api.assert.invalid_type",
           headers={"X-Kuzzle-Volatile": "[1]"}),
    Attack("jwt is a list: an invalid token, as any bad one", "post", "/_query", 401,
           "security.token.invalid", q(controller="server", action="now", jwt=["x"]),
           headers={"Authorization": ""}),
    Attack("the request is an array", "post", "/_query", 400, "api.assert.invalid_body",
           [{"controller": "server", "action": "now"}]),
    Attack("a route's body is an array", "post", "/_plugin/rec/echo", 400,
           "api.assert.invalid_body", [1]),
    Attack("repeated index in the query string", "post", "/_plugin/rec/echo?index=a&index=b",
           400, "api.assert.invalid_type", {}),
    Attack("strategy is a list", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="auth", action="login", strategy=["local"], body={})),
    # -- paging ------------------------------------------------------------------------------
    Attack("from=10**30", "post", f"/users/_search?from={10**30}", 400,
           "api.assert.invalid_argument", {}),
    Attack("from: 1e30", "post", "/_query", 400, "api.assert.invalid_argument",
           q(controller="security", action="searchUsers", body={}, **{"from": 1e30})),
    Attack("from: -1", "post", "/users/_search?from=-1", 400, "api.assert.invalid_argument",
           {}),
    Attack("from: 1.5", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="security", action="searchUsers", body={}, **{"from": 1.5})),
    Attack("from: [1]", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="security", action="searchUsers", body={}, **{"from": [1]})),
    Attack("from=x", "post", "/roles/_search?from=x", 400, "api.assert.invalid_type", {}),
    Attack("size=10001", "post", "/profiles/_search?size=10001", 400,
           "api.assert.invalid_argument", {}),
    Attack("size: true", "post", "/_query", 400, "api.assert.invalid_type",
           q(controller="security", action="searchUsers", body={}, size=True)),
    # -- role and profile searches -----------------------------------------------------------
    Attack("controllers: 5", "post", "/roles/_search", 400, "api.assert.invalid_type",
           {"controllers": 5}),
    Attack("controllers: [{}]", "post", "/roles/_search", 400, "api.assert.invalid_type",
           {"controllers": [{"a": 1}]}),
    Attack("controllers: a string", "post", "/roles/_search", 400, "api.assert.invalid_type",
           {"controllers": "auth"}),
    Attack("roles: 5", "post", "/profiles/_search", 400, "api.assert.invalid_type",
           {"roles": 5}),
    Attack("roles: [[1]]", "post", "/profiles/_search", 400, "api.assert.invalid_type",
           {"roles": [[1]]}),
    # -- filters -----------------------------------------------------------------------------
    Attack("a filter 400 deep", "post", "/users/_search", 400, "api.assert.too_deep",
           {"query": nested_filter(400)}),
    Attack(f"a filter {MAX_FILTER_DEPTH + 1} deep", "post", "/users/_search", 400,
           "services.storage.invalid_search_query",
           {"query": nested_filter(MAX_FILTER_DEPTH + 1)}),
    Attack("a filter 40 deep (SQLite's parser overflowed)", "post", "/users/_search", 400,
           "services.storage.invalid_search_query", {"query": nested_filter(40)}),
    Attack("a filter with 5000 branches", "post", "/users/_search", 400,
           "services.storage.invalid_search_query",
           {"query": {"or": [{"equals": {"a": i}} for i in range(5000)]}}),
    Attack(f"a filter with {MAX_FILTER_CLAUSES + 1} clauses", "post", "/users/_search", 400,
           "services.storage.invalid_search_query",
           {"query": {"and": [{"not": {"exists": "a"}}] * (MAX_FILTER_CLAUSES // 2)}}),
    # -- creating users ----------------------------------------------------------------------
    Attack("credentials: []", "post", "/users/mallory/_create", 400, "api.assert.invalid_type",
           {"content": USER, "credentials": []}),
    Attack("credentials: a string", "post", "/users/mallory/_create", 400,
           "api.assert.invalid_type", {"content": USER, "credentials": "local"}),
    Attack("content: []", "post", "/users/mallory/_create", 400, "api.assert.invalid_type",
           {"content": [], "credentials": GOOD_CREDS}),
    Attack("createFirstAdmin with credentials: []", "post", "/_createFirstAdmin/m", 400,
           "api.assert.invalid_type", {"credentials": []}),
    # -- nesting no response can carry -------------------------------------------------------
    Attack("user content nested 300 deep", "post", "/users/mallory/_create", 400,
           "api.assert.too_deep",
           {"content": {**USER, "x": nested(300)}, "credentials": GOOD_CREDS}),
    Attack(f"a body nested {MAX_DEPTH + 1} deep", "post", "/_plugin/rec/echo", 400,
           "api.assert.too_deep", nested(MAX_DEPTH + 1)),
    Attack(f"a /_query body nested {MAX_DEPTH + 1} deep", "post", "/_query", 400,
           "api.assert.too_deep", q(controller="rec/api", action="echo",
                                    body=nested(MAX_DEPTH + 1))),
    Attack("a /_query argument nested 200 deep", "post", "/_query", 400, "api.assert.too_deep",
           q(controller="rec/api", action="echo", x=[nested(199)])),
    Attack("a /_query volatile nested 200 deep", "post", "/_query", 400, "api.assert.too_deep",
           q(controller="server", action="now", volatile=nested(200))),
    Attack("X-Kuzzle-Volatile nested 200 deep", "get", "/_now", 400, "api.assert.too_deep",
           headers={"X-Kuzzle-Volatile": '{"a":' * 200 + "1" + "}" * 200}),
    # -- headers that are not UTF-8 ----------------------------------------------------------
    Attack("a header with a non-UTF-8 byte", "get", "/_now", 400,
           "network.http.invalid_header", headers={"X-Anything": b"caf\xe9"}),
    Attack("X-Kuzzle-Request-Id with a non-UTF-8 byte", "get", "/_now", 400,
           "network.http.invalid_header", headers={"X-Kuzzle-Request-Id": b"\xc3\x28"}),
    Attack("the same, on an unknown URL", "get", "/nothing/here", 404,
           "network.http.url_not_found", headers={"X-Kuzzle-Request-Id": b"\xff"}),
    # -- logins: a failed login, like any other ----------------------------------------------
    Attack("a NUL in a login username", "post", "/_login/local", 401,
           "plugin.strategy.missing_user", {"username": "ad\x00min", "password": "x"}),
    Attack("a lone surrogate escape in a login username", "post", "/_login/local", 400,
           "api.assert.invalid_body", b'{"username": "\\udc80", "password": "x"}'),
    Attack("a NUL in a login password", "post", "/_login/local", 401,
           "plugin.strategy.missing_user", {"username": "admin", "password": "a\x00"}),
]


async def send(client: httpx.AsyncClient, attack: Attack, jwt: str) -> httpx.Response:
    headers = {**bearer(jwt), **attack.headers}
    if isinstance(attack.body, bytes):
        return await client.request(attack.verb, attack.path, headers=headers,
                                    content=attack.body)
    if attack.body is NOTHING:
        return await client.request(attack.verb, attack.path, headers=headers)
    return await client.request(attack.verb, attack.path, headers=headers, json=attack.body)


def outcome(response: httpx.Response) -> tuple[int, str]:
    """(status, error id), checking the response is the JSON envelope whatever happened."""
    assert response.headers["content-type"] == "application/json", response.text
    envelope = response.json()
    assert envelope["status"] == response.status_code, response.text
    assert envelope["requestId"] == response.headers["x-kuzzle-request-id"]
    if response.status_code == 200:
        return 200, ""
    assert envelope["result"] is None, response.text
    return response.status_code, envelope["error"]["id"]


async def state(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, list[str]]:
    out = {}
    for kind in ("users", "roles", "profiles"):
        r = await client.post(f"/{kind}/_search?size=100", headers=admin, json={})
        assert r.status_code == 200, r.text
        out[kind] = sorted(h["_id"] for h in r.json()["result"]["hits"])
    return out


async def test_every_attack_is_refused_as_expected(storage_line, serve):  # noqa: F811
    served = await serve(closed_yaml(storage=storage_line))
    client = served.client
    jwt = await login(client, "admin", "admin-password")
    admin = bearer(jwt)
    before = await state(client, admin)
    wrong = []
    for attack in ATTACKS:
        response = await send(client, attack, jwt)
        try:
            got: Any = outcome(response)
        except (AssertionError, ValueError):
            got = f"not the envelope: {response.status_code} {response.text[:80]!r}"
        if got != (attack.status, attack.error):
            wrong.append(f"{attack.name}: expected {attack.status} {attack.error}, got {got}")
    assert wrong == []
    # nothing was stored, and every response that lists users, roles or profiles still works
    assert await state(client, admin) == before
    me = await client.get("/_me", headers=admin)
    assert me.status_code == 200 and me.json()["result"]["_id"] == "admin"
    assert (await client.get("/_now")).status_code == 200


async def test_a_refused_request_id_is_never_echoed(serve):
    served = await serve(closed_yaml())
    r = await served.client.get("/_now", headers={"X-Kuzzle-Request-Id": b"\xff\xfe"})
    assert r.status_code == 400
    assert r.headers["x-kuzzle-request-id"] == r.json()["requestId"]
    assert r.json()["requestId"].count("-") == 4  # a fresh one


@pytest.mark.parametrize("header", [b"X-Kuzzle-Request-Id: \xc3\x28", b"X-\xff: 1",
                                    b"Host: caf\xe9"])
async def test_a_header_sent_as_raw_bytes_gets_the_envelope(serve, header):
    """The same through a bare socket, without any client library in the way (names too)."""
    served = await serve(closed_yaml())
    host, port = served.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /_now HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n"
                 b"Connection: close\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), raw
    assert b"content-type: application/json" in head.lower(), raw
    assert b'"network.http.invalid_header"' in body, raw


async def test_nesting_up_to_the_limit_is_stored_and_answered(storage_line, serve):  # noqa: F811
    """What the door lets in, every response can carry: a user whose body is as deep as
    allowed is created, found, searched and listed."""
    served = await serve(closed_yaml(storage=storage_line))
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    content = {**USER, "x": nested(MAX_DEPTH - 2)}  # body -> content -> x: MAX_DEPTH levels
    r = await client.post("/users/deep/_create", headers=admin, json={"content": content})
    assert r.status_code == 200, r.text
    assert (await client.get("/users/deep", headers=admin)).status_code == 200
    r = await client.post("/users/_search", headers=admin, json={})
    assert r.status_code == 200 and "deep" in r.text
    r = await client.post("/_plugin/rec/echo", headers=admin, json=nested(MAX_DEPTH))
    assert r.status_code == 200, r.text
    r = await client.post("/_query", headers=admin, json={
        "controller": "rec/api", "action": "echo", "body": nested(MAX_DEPTH),
        "volatile": nested(MAX_DEPTH), "x": nested(MAX_DEPTH)})
    assert r.status_code == 200, r.text


async def test_filters_up_to_the_limits_work(storage_line, serve):  # noqa: F811
    served = await serve(closed_yaml(storage=storage_line))
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    for query in (nested_filter(MAX_FILTER_DEPTH),
                  {"or": [{"equals": {"a": i}} for i in range(MAX_FILTER_CLAUSES - 1)]},
                  {"in": {"a": list(range(5000))}}):
        r = await client.post("/users/_search", headers=admin, json={"query": query})
        assert r.status_code == 200, r.text[:300]


async def test_a_deep_note_is_refused_and_the_list_keeps_working(serve):
    """The example's notes plugin keeps notes in memory: one note nested ~300 deep used to
    break the notes list for everyone until a restart."""
    served = await serve(closed_yaml(
        roles="    noter: {controllers: {notes/notes: {actions: {'*': true}}}}",
        profiles="    noters: {policies: [{roleId: noter}, {roleId: reader}]}",
        users="""    nora:
      profileIds: [noters]
      credentials: {local: {username: nora, password: nora-password}}""",
        plugins="""  notes:
    module: handlers.notes:NotesPlugin
    pipes: {"notes/notes:beforeCreate": stamp}
    controllers: {notes: {create: create, list: list_notes}}
    routes:
      - {verb: post, url: /notes, controller: notes, action: create}
      - {verb: get, url: /notes, controller: notes, action: list}"""))
    client = served.client
    nora = bearer(await login(client, "nora", "nora-password"))
    r = await client.post("/_/notes/notes", headers=nora, json={"text": "hi", "x": nested(300)})
    assert (r.status_code, r.json()["error"]["id"]) == (400, "api.assert.too_deep")
    r = await client.put("/_me", headers=nora, json={"x": nested(300)})
    assert (r.status_code, r.json()["error"]["id"]) == (400, "api.assert.too_deep")
    assert (await client.post("/_/notes/notes", headers=nora, json={"text": "ok"})).is_success
    r = await client.get("/_/notes/notes", headers=nora)
    assert r.status_code == 200 and r.json()["result"]["total"] == 1
    assert (await client.get("/_me", headers=nora)).status_code == 200


# -- the shared functions, as another protocol would call them -----------------------------------

def test_depth_is_counted_in_objects_and_arrays():
    assert not inputs.too_deep(1, 0) and inputs.too_deep([], 0) and not inputs.too_deep([], 1)
    assert not inputs.too_deep(nested(MAX_DEPTH)) and inputs.too_deep(nested(MAX_DEPTH + 1))
    assert inputs.too_deep([1, [2, {"a": [nested(MAX_DEPTH - 2)]}]])
    # what the door lets in, with the envelope and a plugin's wrapping around it, serializes
    assert MAX_DEPTH + 20 < inputs.DUMP_LIMIT
    orjson.dumps({"result": {"hits": [{"_source": {"content": nested(MAX_DEPTH)}}]}})


@pytest.mark.parametrize("value, refused", [
    (nested(MAX_DEPTH), False), (nested(MAX_DEPTH + 1), True),
    ({"a": object(), "b": nested(10)}, False),  # not JSON: the walk decides
    ({"a": object(), "b": nested(MAX_DEPTH + 1)}, True),
    ((nested(MAX_DEPTH),), True), ({1: nested(MAX_DEPTH - 1)}, False),
])
def test_check_depth_without_raw_text(value, refused):
    try:
        inputs.check_depth(value, "body")
    except GatewayError as exc:
        assert refused and exc.id == "api.assert.too_deep"
    else:
        assert not refused


def test_parse_request_names_the_field_too_deep():
    raw = orjson.dumps({"controller": "server", "action": "now", "x": nested(MAX_DEPTH + 1)})
    with pytest.raises(GatewayError) as exc:
        inputs.parse_request(raw)
    assert exc.value.id == "api.assert.too_deep" and exc.value.props == ["x", str(MAX_DEPTH)]
    ok = inputs.parse_request(orjson.dumps({"controller": "c", "body": nested(MAX_DEPTH)}))
    assert ok["controller"] == "c"


@pytest.mark.parametrize("value, expected", [
    (None, 7), (5, 5), ("5", 5), (" 12 ", 12), (5.0, 5), (0, 0),
    ("-1", "api.assert.invalid_argument"), (-1, "api.assert.invalid_argument"),
    (10**30, "api.assert.invalid_argument"), (1e30, "api.assert.invalid_argument"),
    (1001, "api.assert.invalid_argument"),
    (True, "api.assert.invalid_type"), (1.5, "api.assert.invalid_type"),
    ("1e3", "api.assert.invalid_type"), ("9" * 40, "api.assert.invalid_type"),
    ("", "api.assert.invalid_type"), ([1], "api.assert.invalid_type"),
    (float("inf"), "api.assert.invalid_type"), ("\u0663", "api.assert.invalid_type"),
])
def test_int_arg(value, expected):
    try:
        got: Any = inputs.int_arg(value, "n", 7, 1000)
    except GatewayError as exc:
        got = exc.id
    assert got == expected
