"""The realtime controller over WebSocket and HTTP: subscribe, join, count, list, unsubscribe,
publish; document and user notifications, `scope` and `users`, rooms removed with their last
subscriber, events, `notify:*` pipes and plugins' accessors."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

MEMORY = 'storage: "sqlite:///:memory:"\n'


def ws_url(served: Any) -> str:
    return served.url.replace("http://", "ws://") + "/"


async def call(ws: ClientConnection, inbox: list[dict[str, Any]] | None = None,
               **frame: Any) -> dict[str, Any]:
    """Send a request, return its answer; notifications met meanwhile go to `inbox`."""
    frame.setdefault("requestId", f"r{time.monotonic_ns()}")
    await ws.send(json.dumps(frame))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("requestId") == frame["requestId"] and "type" not in message:
            return message
        if inbox is not None:
            inbox.append(message)


async def next_message(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def nothing_more(ws: ClientConnection) -> None:
    """No notification pending: a ping answered first proves it."""
    await ws.send('{"p":1}')
    assert await asyncio.wait_for(ws.recv(), 5) == '{"p":2}'


def subscribe(**extra: Any) -> dict[str, Any]:
    return {"controller": "realtime", "action": "subscribe", "index": "shop",
            "collection": "orders", **extra}


async def test_subscribe_publish_and_document_notification(serve) -> None:
    served = await serve(MEMORY)
    async with connect(ws_url(served)) as a, connect(ws_url(served)) as b:
        answer = await call(a, **subscribe(body={"equals": {"status": "paid"}}))
        assert answer["status"] == 200, answer
        room_id, channel = answer["result"]["roomId"], answer["result"]["channel"]
        assert channel.startswith(room_id + "-")
        # an equivalent filter written otherwise shares the room
        same = await call(b, **subscribe(body={"in": {"status": ["paid"]}}))
        assert same["result"] == {"roomId": room_id, "channel": channel}

        published = await call(b, controller="realtime", action="publish", index="shop",
                               collection="orders", _id="o-1", volatile={"why": "test"},
                               body={"status": "paid", "total": 3}, requestId="pub-1")
        assert published["result"] == {"published": True}
        note = await next_message(a)
        assert note["type"] == "document" and note["action"] == "publish"
        assert note["scope"] == "in" and note["event"] == "publish"
        assert note["room"] == channel and note["index"] == "shop"
        assert note["collection"] == "orders" and note["controller"] == "realtime"
        assert note["result"]["_id"] == "o-1"
        assert note["result"]["_source"]["status"] == "paid"
        assert note["result"]["_source"]["_kuzzle_info"]["author"] == "-1"
        assert note["volatile"] == {"why": "test"} and note["requestId"] == "pub-1"
        assert note["protocol"] == "websocket" and isinstance(note["timestamp"], int)

        # a document that does not match notifies nobody
        await call(b, controller="realtime", action="publish", index="shop",
                   collection="orders", body={"status": "new"})
        await nothing_more(a)


async def test_scope_users_count_list_unsubscribe_and_room_removal(serve) -> None:
    served = await serve(MEMORY)
    gateway = served.gateway
    async with connect(ws_url(served)) as a, connect(ws_url(served)) as b, \
            connect(ws_url(served)) as c:
        first = (await call(a, **subscribe(body={}, users="all")))["result"]
        room_id = first["roomId"]
        out_only = (await call(b, **subscribe(body={}, scope="out", users="none",
                                              volatile={"who": "b"})))["result"]
        assert out_only["roomId"] == room_id and out_only["channel"] != first["channel"]
        joined = await next_message(a)  # a hears b come in, b does not hear itself
        assert joined["type"] == "user" and joined["user"] == "in"
        assert joined["result"] == {"count": 2} and joined["volatile"] == {"who": "b"}
        assert joined["room"] == first["channel"] and joined["action"] == "subscribe"

        count = await call(c, controller="realtime", action="count", body={"roomId": room_id})
        assert count["result"] == {"count": 2}
        listed = await call(c, controller="realtime", action="list")
        assert listed["result"] == {"shop": {"orders": {room_id: 2}}}
        metrics = await call(c, controller="server", action="metrics")
        assert metrics["result"]["realtime"] == {"rooms": 1, "subscriptions": 2}

        await call(c, controller="realtime", action="publish", index="shop",
                   collection="orders", body={"x": 1})
        assert (await next_message(a))["type"] == "document"
        await nothing_more(b)  # scope "out": a publish ("in") is not for b

        # join: c enters the room by id, with its own options
        joined_c = await call(c, controller="realtime", action="join",
                              body={"roomId": room_id}, users="out")
        assert joined_c["result"]["roomId"] == room_id
        joined_note = await next_message(a)
        assert joined_note["result"] == {"count": 3} and joined_note["action"] == "join"

        left = await call(b, controller="realtime", action="unsubscribe",
                          body={"roomId": room_id})
        assert left["result"] == {"roomId": room_id}
        for ws in (a, c):
            note = await next_message(ws)
            assert note["user"] == "out" and note["result"] == {"count": 2}
        again = await call(b, controller="realtime", action="unsubscribe",
                           body={"roomId": room_id})
        assert again["status"] == 412 and again["error"]["id"] == "core.realtime.not_subscribed"

        await c.close()  # a closed connection leaves its rooms
        note = await next_message(a)
        assert note["user"] == "out" and note["result"] == {"count": 1}
        await a.close()
        for _ in range(100):
            if not gateway.realtime.rooms.exists(room_id):
                break
            await asyncio.sleep(0.02)
        assert not gateway.realtime.rooms.exists(room_id)
        assert not gateway.realtime.engine.exists(room_id)  # the filter went with it

        missing = await call(b, controller="realtime", action="count", body={"roomId": room_id})
        assert missing["status"] == 404 and missing["error"]["id"] == "core.realtime.room_not_found"


async def test_bad_arguments_and_http(serve) -> None:
    served = await serve(MEMORY)
    async with connect(ws_url(served)) as ws:
        bad_scope = await call(ws, **subscribe(body={}, scope="sideways"))
        assert bad_scope["status"] == 400
        assert bad_scope["error"]["id"] == "core.realtime.invalid_scope"
        bad_users = await call(ws, **subscribe(body={}, users=3))
        assert bad_users["error"]["id"] == "core.realtime.invalid_users"
        no_index = await call(ws, controller="realtime", action="subscribe", body={})
        assert no_index["error"]["id"] == "api.assert.missing_argument"
        bad_filter = await call(ws, **subscribe(body={"equals": {"a": 1, "b": 2}}))
        assert bad_filter["error"]["id"] == "api.assert.koncorde_dsl_error"
        no_room = await call(ws, controller="realtime", action="join", body={"roomId": "nope"})
        assert no_room["error"]["id"] == "core.realtime.room_not_found"
        no_body = await call(ws, controller="realtime", action="publish", index="i",
                             collection="c")
        assert no_body["error"]["id"] == "api.assert.body_required"

        # over HTTP: no connection that lives on, so no subscription (Kuzzle's error)
        response = await served.client.post("/_query", json=subscribe(body={}))
        body = response.json()
        assert body["error"]["id"] == "api.assert.unsupported_protocol", body
        assert "realtime:subscribe" in body["error"]["message"]
        # Kuzzle's HTTP routes for publish and list
        room = (await call(ws, **subscribe(body={})))["result"]
        response = await served.client.post("/shop/orders/_publish", json={"from": "http"})
        assert response.json()["result"] == {"published": True}
        note = await next_message(ws)
        assert note["result"]["_source"]["from"] == "http" and note["protocol"] == "http"
        response = await served.client.get("/_listSubscriptions")
        assert response.json()["result"] == {"shop": {"orders": {room["roomId"]: 1}}}


PIPES_YAML = MEMORY + '''
plugins:
  p:
    module: tests.plugins.realtime_plugin:Plugin
    pipes:
      notify:document: on_document
      notify:user: on_user
    hooks:
      room:new: on_hook
      room:remove: on_hook
      core:realtime:user:subscribe:after: on_hook
      core:realtime:user:unsubscribe:after: on_hook
    controllers:
      rt:
        subscribeMe: subscribe_me
        publishThread: publish_thread
        unregister: unregister
'''


async def test_pipes_events_and_plugin_accessors(serve) -> None:
    served = await serve(PIPES_YAML)
    plugin = served.plugin("p")
    async with connect(ws_url(served)) as ws:
        room = (await call(ws, **subscribe(body={})))["result"]
        inbox: list[dict[str, Any]] = []
        # pipes ran before the answer: the notification came first
        await call(ws, inbox, controller="realtime", action="publish", index="shop",
                   collection="orders", body={"a": 1})
        assert inbox[0]["result"]["_source"]["piped"] is True
        inbox.clear()
        await call(ws, inbox, controller="realtime", action="publish", index="shop",
                   collection="orders", body={"secret": 1})
        await nothing_more(ws)  # the pipe dropped it: neither before the answer nor after
        assert inbox == []

        mine = await call(ws, controller="p/rt", action="subscribeMe")
        assert mine["status"] == 200, mine
        vip = mine["result"]
        inbox.clear()
        thread = await call(ws, inbox, controller="p/rt", action="publishThread")
        assert thread["result"] is True, thread
        while len(inbox) < 2:
            inbox.append(await next_message(ws))
        got = {note["room"] for note in inbox}
        assert got == {room["channel"], vip["channel"]}
        done = await call(ws, controller="p/rt", action="unregister",
                          body={"roomId": vip["roomId"]})
        assert done["result"] is True
        assert not served.gateway.realtime.rooms.exists(vip["roomId"])
    for _ in range(100):
        if plugin.seen.count("room:remove") >= 2:
            break
        await asyncio.sleep(0.02)
    seen = plugin.seen
    assert seen.count("room:new") == 2 and seen.count("room:remove") == 2, seen

    # a piped user notification reaches the others, never the newcomer
    async with connect(ws_url(served)) as a, connect(ws_url(served)) as b:
        await call(a, **subscribe(body={}, users="all"))
        await call(b, **subscribe(body={}, users="all"))
        note = await next_message(a)
        assert note["user"] == "in" and note["piped"] is True
        await nothing_more(b)
    assert "core:realtime:user:subscribe:after" in seen
    assert "core:realtime:user:unsubscribe:after" in seen


async def test_rights_are_checked_and_list_shows_what_the_user_may_subscribe_to(serve) -> None:
    from tests.security_helpers import closed_yaml

    yaml = closed_yaml(
        roles="    watcher: {controllers: {auth: {actions: {'*': true}}, "
              "realtime: {actions: {subscribe: true, list: true}}}}\n",
        profiles="    shop: {policies: [{roleId: watcher, restrictedTo: [{index: shop}]}]}\n",
        users="    bob:\n      profileIds: [shop]\n"
              "      credentials: {local: {username: bob, password: bob-password}}\n")
    served = await serve(MEMORY + yaml)

    async def login(ws: ClientConnection, username: str, password: str) -> str:
        answer = await call(ws, controller="auth", action="login", strategy="local",
                            body={"username": username, "password": password})
        return answer["result"]["jwt"]

    async with connect(ws_url(served)) as anon, connect(ws_url(served)) as bob, \
            connect(ws_url(served)) as admin:
        denied = await call(anon, **subscribe(body={}))
        assert denied["status"] == 401 and denied["error"]["id"] == "security.rights.unauthorized"
        bob_jwt = await login(bob, "bob", "bob-password")
        admin_jwt = await login(admin, "admin", "admin-password")
        mine = await call(bob, **subscribe(body={}, jwt=bob_jwt))
        assert mine["status"] == 200, mine
        other = await call(bob, controller="realtime", action="subscribe", index="hr",
                           collection="salaries", body={}, jwt=bob_jwt)
        assert other["status"] == 403 and other["error"]["id"] == "security.rights.forbidden"
        theirs = await call(admin, controller="realtime", action="subscribe", index="hr",
                            collection="salaries", body={}, jwt=admin_jwt)
        assert theirs["status"] == 200
        published = await call(bob, controller="realtime", action="publish", index="shop",
                               collection="orders", body={"a": 1}, jwt=bob_jwt)
        assert published["status"] == 403  # bob's role does not give publish
        listed = await call(bob, controller="realtime", action="list", jwt=bob_jwt)
        assert listed["result"] == {"shop": {"orders": {mine["result"]["roomId"]: 1}}}
        everything = await call(admin, controller="realtime", action="list", jwt=admin_jwt)
        assert set(everything["result"]) == {"shop", "hr"}


async def test_an_expired_token_takes_the_connection_out_of_its_rooms(serve) -> None:
    from tests.security_helpers import closed_yaml

    served = await serve(MEMORY + closed_yaml(
        roles="    watcher: {controllers: {realtime: {actions: {'*': true}}}}\n",
        profiles="    watchers: {policies: [{roleId: watcher}]}\n",
        users="    carol:\n      profileIds: [watchers]\n"
              "      credentials: {local: {username: carol, password: carol-password}}\n"))
    realtime = served.gateway.realtime
    async with connect(ws_url(served)) as ws:
        login = await call(ws, controller="auth", action="login", strategy="local",
                           expiresIn="1s",
                           body={"username": "carol", "password": "carol-password"})
        jwt = login["result"]["jwt"]
        room = (await call(ws, **subscribe(body={}, jwt=jwt)))["result"]
        assert realtime.rooms.count(room["roomId"]) == 1
        expired = await next_message(ws, 10)
        assert expired["type"] == "TokenExpired"
        assert not realtime.rooms.exists(room["roomId"])


async def test_a_revoked_token_takes_its_connections_out_of_their_rooms(serve) -> None:
    """Logout (from another connection, from the same one, `global`) and revokeTokens: the
    connections authenticated with the token stop receiving notifications at once, as with
    Kuzzle's token manager; they stay open, and an API key survives a global logout."""
    import httpx

    from tests.security_helpers import closed_yaml

    served = await serve(MEMORY + closed_yaml(
        roles="    watcher: {controllers: {auth: {actions: {'*': true}}, "
              "realtime: {actions: {'*': true}}}}\n",
        profiles="    watchers: {policies: [{roleId: watcher}]}\n",
        users="    carol:\n      profileIds: [watchers]\n"
              "      credentials: {local: {username: carol, password: carol-password}}\n"))
    realtime = served.gateway.realtime

    async def login(ws: ClientConnection) -> str:
        answer = await call(ws, controller="auth", action="login", strategy="local",
                            body={"username": "carol", "password": "carol-password"})
        return answer["result"]["jwt"]

    async def publish(ws: ClientConnection, jwt: str) -> None:
        done = await call(ws, controller="realtime", action="publish", index="shop",
                          collection="orders", body={"a": 1}, jwt=jwt)
        assert done["status"] == 200, done

    async with connect(ws_url(served)) as watcher, connect(ws_url(served)) as publisher, \
            httpx.AsyncClient(base_url=served.url) as http:
        writer = await login(publisher)
        # 1. logout through HTTP with the watcher's token
        jwt = await login(watcher)
        room = (await call(watcher, **subscribe(body={}, jwt=jwt)))["result"]
        await publish(publisher, writer)
        assert (await next_message(watcher))["type"] == "document"
        out = await http.post("/_logout", headers={"Authorization": f"Bearer {jwt}"})
        assert out.status_code == 200
        assert not realtime.rooms.exists(room["roomId"])
        await publish(publisher, writer)
        await nothing_more(watcher)  # open, answering, and notified of nothing

        # 2. logout on the subscribed connection itself
        jwt = await login(watcher)
        await call(watcher, **subscribe(body={}, jwt=jwt))
        out = await call(watcher, controller="auth", action="logout", jwt=jwt)
        assert out["status"] == 200
        await publish(publisher, writer)
        await nothing_more(watcher)

        # 3. a global logout from elsewhere; an API key's connection keeps its rooms
        jwt = await login(watcher)
        await call(watcher, **subscribe(body={}, jwt=jwt))
        key = await call(publisher, controller="auth", action="createApiKey", jwt=writer,
                         body={"description": "watcher"})
        assert key["status"] == 200, key
        async with connect(ws_url(served)) as keyed:
            await call(keyed, **subscribe(body={}, jwt=key["result"]["_source"]["token"]))
            other = await login(publisher)
            out = await call(publisher, controller="auth", action="logout", jwt=other,
                             **{"global": True})
            assert out["status"] == 200
            for _ in range(100):
                if realtime.rooms.count(room["roomId"]) == 1:
                    break
                await asyncio.sleep(0.02)
            assert realtime.rooms.count(room["roomId"]) == 1  # the API key's connection
            inbox: list[dict[str, Any]] = []
            done = await call(keyed, inbox, controller="realtime", action="publish",
                              index="shop", collection="orders", body={"a": 1},
                              jwt=key["result"]["_source"]["token"])
            assert done["status"] == 200 and inbox[0]["type"] == "document", (done, inbox)
            await nothing_more(watcher)
