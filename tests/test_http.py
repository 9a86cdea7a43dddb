"""The HTTP protocol: core routes, plugin routes, the envelope, bad input."""

from __future__ import annotations

import json

from tests.test_events import rec_yaml

ENVELOPE_KEYS = {"requestId", "status", "error", "controller", "action", "index", "collection",
                 "volatile", "result"}


async def test_core_routes(serve):
    served = await serve(rec_yaml())
    client = served.client
    now = await client.get("/_now")
    assert now.status_code == 200
    assert set(now.json()) == ENVELOPE_KEYS
    assert now.json()["controller"] == "server" and now.json()["action"] == "now"
    assert isinstance(now.json()["result"]["now"], int)
    for path in ("/", "/_serverInfo"):
        info = (await client.get(path)).json()["result"]["serverInfo"]
        assert "rec" in info["kuzzle"]["plugins"]
        assert "rec/api" in info["kuzzle"]["api"]["routes"]
    health = await client.get("/_healthCheck")
    assert health.json()["result"]["status"] == "green"


async def test_public_api_lists_plugin_routes_in_kuzzles_shape(serve):
    served = await serve(rec_yaml())
    api = (await served.client.get("/_publicApi")).json()["result"]
    assert api["server"]["now"] == {
        "action": "now", "controller": "server",
        "http": [{"path": "/_now", "url": "/_now", "verb": "GET"}],
    }
    echo = api["rec/api"]["echo"]
    assert echo["controller"] == "rec/api" and echo["action"] == "echo"
    assert {"path": "/_plugin/rec/echo", "url": "/_plugin/rec/echo", "verb": "POST"} in echo["http"]
    assert {"path": "/_/rec/echo/:name", "url": "/_/rec/echo/:name", "verb": "GET"} in echo["http"]


async def test_openapi_describes_every_route(serve):
    served = await serve(rec_yaml())
    r = await served.client.get("/_openapi")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert "get" in doc["paths"]["/_now"]
    op = doc["paths"]["/_plugin/rec/echo/{name}"]["put"]
    assert op["parameters"][0]["name"] == "name"
    assert set(doc["paths"]["/_/rec/echo/{name}"]) >= {"get", "put", "patch", "delete"}


async def test_plugin_route_params_verbs_and_both_prefixes(serve):
    served = await serve(rec_yaml())
    for verb in ("get", "put", "patch", "delete"):
        for prefix in ("/_plugin/rec", "/_/rec"):
            r = await served.client.request(verb, f"{prefix}/echo/joe?limit=3&flag&x=1&x=2")
            assert r.status_code == 200, (verb, prefix, r.text)
            body = r.json()
            assert body["controller"] == "rec/api" and body["action"] == "echo"
            assert body["result"]["args"] == {"name": "joe", "limit": "3", "flag": True,
                                              "x": ["1", "2"]}
    head = await served.client.head("/_/rec/echo/joe")
    assert head.status_code == 200 and head.content == b""


async def test_inputs_go_where_kuzzle_puts_them(serve):
    served = await serve(rec_yaml())
    r = await served.client.post(
        "/_/rec/echo?index=books&collection=scifi&_id=42&other=yes",
        json={"title": "Dune"},
        headers={"X-Kuzzle-Volatile": '{"trace": 7}', "X-Kuzzle-Request-Id": "my-request"},
    )
    body = r.json()
    assert r.headers["X-Kuzzle-Request-Id"] == "my-request"
    assert body["requestId"] == "my-request"
    assert body["index"] == "books" and body["collection"] == "scifi"
    assert body["volatile"] == {"trace": 7}
    result = body["result"]
    assert result["resource"] == {"index": "books", "collection": "scifi", "_id": "42"}
    assert result["args"] == {"other": "yes"}
    assert result["body"] == {"title": "Dune"}
    assert result["jwt"] is None
    assert result["protocol"] == "http"


async def test_the_query_string_cannot_change_the_action(serve):
    served = await serve(rec_yaml())
    r = await served.client.post("/_/rec/echo?controller=server&action=now&body=x", json={})
    assert r.json()["controller"] == "rec/api"
    assert r.json()["result"]["body"] == {}


async def test_a_bearer_token_reaches_the_request_as_jwt(serve):
    served = await serve(rec_yaml())
    login = await served.client.post("/_login/local", json={})
    assert login.status_code == 401  # no such user: nothing to log in with
    r = await served.client.post("/_/rec/echo", json={},
                                 headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    assert r.json()["error"]["id"] == "security.token.invalid"


async def test_request_id_is_made_when_absent(serve):
    served = await serve(rec_yaml())
    r = await served.client.get("/_now")
    assert r.headers["X-Kuzzle-Request-Id"] == r.json()["requestId"]
    assert len(r.json()["requestId"]) >= 32


async def test_query_takes_a_raw_request(serve):
    served = await serve(rec_yaml())
    r = await served.client.post("/_query", json={
        "controller": "rec/api", "action": "echo", "index": "i", "_id": "7", "foo": "bar",
        "body": {"b": 1}, "requestId": "q1", "volatile": {"v": 1}})
    body = r.json()
    assert r.status_code == 200
    assert body["requestId"] == "q1"
    assert body["result"]["args"] == {"foo": "bar"}
    assert body["result"]["resource"]["_id"] == "7"
    assert body["result"]["body"] == {"b": 1}
    now = await served.client.post("/_query", json={"controller": "server", "action": "now"})
    assert "now" in now.json()["result"]


async def test_query_unknown_controller_and_action(serve):
    served = await serve(rec_yaml())
    r = await served.client.post("/_query", json={"controller": "nope", "action": "x"})
    assert r.status_code == 404
    assert r.json()["error"]["id"] == "api.process.controller_not_found"
    r = await served.client.post("/_query", json={"controller": "server", "action": "nope"})
    assert r.json()["error"]["id"] == "api.process.action_not_found"


async def test_malformed_json_is_a_400_and_the_server_goes_on(serve):
    served = await serve(rec_yaml())
    for path in ("/_/rec/echo", "/_query"):
        r = await served.client.post(path, content=b'{"broken": ',
                                     headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"]["id"] == "api.assert.invalid_body"
    r = await served.client.post("/_/rec/echo", content=b"[1, 2]")
    assert r.status_code == 400
    r = await served.client.post("/_/rec/echo", json={}, headers={"X-Kuzzle-Volatile": "{nope"})
    assert r.status_code == 400
    assert r.json()["error"]["id"] == "network.http.volatile_parse_failed"
    assert (await served.client.get("/_now")).status_code == 200


async def test_body_over_max_request_size_is_a_413(serve):
    served = await serve(rec_yaml() + "\nserver:\n  max_request_size: 1KB\n")
    r = await served.client.post("/_/rec/echo", content=json.dumps({"x": "y" * 2000}))
    assert r.status_code == 413
    assert r.json()["error"]["id"] == "network.http.request_too_large"
    small = await served.client.post("/_/rec/echo", json={"x": "y" * 100})
    assert small.status_code == 200


async def test_unknown_url_is_a_404_envelope(serve):
    served = await serve(rec_yaml())
    r = await served.client.get("/nothing/here", headers={"X-Kuzzle-Request-Id": "r404"})
    assert r.status_code == 404
    assert r.json()["error"]["id"] == "network.http.url_not_found"
    assert r.json()["requestId"] == "r404"
    r = await served.client.post("/_now")
    assert r.status_code == 404


async def test_an_action_may_set_response_headers(serve):
    served = await serve(rec_yaml())
    r = await served.client.get("/_/rec/header")
    assert r.headers["X-Custom"] == "yes"


async def test_an_unserializable_result_is_a_clear_500(serve):
    served = await serve(rec_yaml())
    r = await served.client.get("/_/rec/unserializable")
    assert r.status_code == 500
    assert r.json()["error"]["id"] == "plugin.controller.unserializable_response"


def test_response_headers_encoded_as_sanic_does():
    """The gateway's faster header encoding gives exactly Sanic's bytes, CR/LF/NUL removed."""
    from sanic.response import HTTPResponse as SanicResponse

    from sanic_gateway.protocols.http import HTTPResponse

    headers = {"X-Kuzzle-Request-Id": "abc", "X-Plugin": "a\r\nSet-Cookie: evil=1",
               "X-Nul": "x\x00y", "X-Number": 42, "X-Accent": "café",
               "X-Bad\r\nName": "v", "content-length": 12}
    ours = HTTPResponse(b"{}", headers=dict(headers), content_type="application/json")
    theirs = SanicResponse(b"{}", headers=dict(headers), content_type="application/json")
    assert list(ours.processed_headers) == list(theirs.processed_headers)
    assert (b"X-Plugin", b"aSet-Cookie: evil=1") in list(ours.processed_headers)


async def test_a_header_set_by_a_plugin_cannot_split_the_response(serve):
    served = await serve("""
        plugins:
          h:
            module: hdr:Hdr
            controllers: {api: {go: go}}
            routes: [{verb: get, url: /go, controller: api, action: go}]
    """, files={"hdr.py": """
        class Hdr:
            async def go(self, request):
                request.response.set_header("X-Echo", "ok\\r\\nX-Injected: 1")
                return {}
    """})
    response = await served.client.get("/_/h/go")
    assert response.status_code == 200
    assert response.headers["x-echo"] == "okX-Injected: 1"
    assert "x-injected" not in response.headers


def test_request_ids_drawn_after_a_fork_differ_from_the_parents():
    """Ids come from a pool of CSPRNG bytes: a forked worker must not reuse its parent's."""
    import os

    from sanic_gateway.request import new_request_id

    new_request_id()  # the pool is filled now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next id, leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child and child != new_request_id()
