"""Realtime across cluster members as users meet it: real `sanic-gateway run` processes sharing
the machine's Redis (a key prefix of each test's own) and PostgreSQL (a schema of each test's
own, dropped after), WebSocket clients and Kuzzle's JS SDK subscribing on one member and
publishing on another."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from tests.cluster_nodes import Nodes, nodes_fixture, pg_schema_url
from tests.test_cluster import node_ids
from tests.test_realtime_api import call, next_message, nothing_more
from tests.test_run import drop_schema

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "kuzzle_sdk" / "realtime_scenario.js"

YAML = """\
    storage: "{storage}"
    cluster: {{redis: "{redis}", prefix: "{prefix}", heartbeat: 200ms, node_timeout: 1s}}
"""
PAID = {"equals": {"status": "paid"}}


nodes = nodes_fixture(YAML)


def ws(base: str) -> str:
    return base.replace("http://", "ws://") + "/"


def subscribe(**extra: Any) -> dict[str, Any]:
    return {"controller": "realtime", "action": "subscribe", "index": "shop",
            "collection": "orders", "body": PAID, **extra}


def publish(base: str, body: dict[str, Any], _id: str | None = None) -> None:
    r = httpx.post(f"{base}/shop/orders/_publish", json=body,
                   params={"_id": _id} if _id else None)
    assert r.status_code == 200, r.text


def cluster_metrics(base: str) -> dict[str, int]:
    r = httpx.get(f"{base}/_metrics")
    assert r.status_code == 200, r.text
    return r.json()["result"]["realtime"]["cluster"]


def count(base: str, room_id: str) -> int | None:
    r = httpx.post(f"{base}/_query", json={"controller": "realtime", "action": "count",
                                           "body": {"roomId": room_id}})
    return r.json()["result"]["count"] if r.status_code == 200 else None


async def within(seconds: float, check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_kuzzle_sdk_subscribes_on_a_and_publishes_on_b(nodes: Nodes) -> None:
    """Kuzzle's SDK: client a on member A, client b on member B, the same room; user
    notifications with the cluster-wide count, documents across, count on either member."""
    a, b = nodes.start(), nodes.start()
    ports = [base.rsplit(":", 1)[1] for base in (a, b)]
    proc = await asyncio.create_subprocess_exec(
        "node", str(SCENARIO), *ports, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    steps = {e["step"]: e for e in map(json.loads, out.decode().splitlines())}
    ok = {name: entry["value"] for name, entry in steps.items() if entry["ok"]}
    assert "connect" in ok, (steps, err.decode())
    assert ok["subscribe"] == "string" and ok["same room"] is True, steps
    joined = ok["user in"]  # a on A hears b come in on B, with b's volatile
    assert joined["type"] == "user" and joined["user"] == "in", steps
    assert joined["result"] == {"count": 2} and joined["volatile"]["who"] == "b"
    assert ok["count"] == 2  # asked on B: A's subscriber counted
    [document] = ok["document"]  # published on B, the matching one only
    assert document["type"] == "document" and document["action"] == "publish"
    assert document["scope"] == "in" and document["event"] == "publish"
    assert document["index"] == "shop" and document["collection"] == "orders"
    assert document["result"]["_id"] == "o-1"
    assert document["result"]["_source"]["status"] == "paid"
    assert len(ok["document to b"]) == 1
    assert ok["scope out and none"] == [0, 0]
    [left] = ok["user out"]  # b leaves on B: a on A hears it, count 1
    assert left["user"] == "out" and left["result"] == {"count": 1}
    assert ok["count after"] == 1


async def test_notifications_go_only_to_members_holding_a_matching_room(nodes: Nodes) -> None:
    a, b, c = nodes.start(), nodes.start(), nodes.start()
    async with connect(ws(a)) as on_a, connect(ws(b)) as on_b, connect(ws(c)) as on_c:
        room = (await call(on_b, **subscribe()))["result"]["roomId"]
        other = await call(on_c, **subscribe(body={"equals": {"status": "new"}}))
        assert other["status"] == 200
        publish(a, {"status": "paid", "total": 3}, "o-1")
        note = await next_message(on_b)
        assert note["type"] == "document" and note["action"] == "publish"
        assert note["scope"] == "in" and note["result"]["_id"] == "o-1"
        assert note["result"]["_source"]["total"] == 3 and note["room"].startswith(room)
        assert note["index"] == "shop" and note["collection"] == "orders"
        assert note["node"] != "" and note["protocol"] == "http"
        await nothing_more(on_c)
        await nothing_more(on_a)
        # the routing: A sent one notification message, to B; C, whose room does not
        # match, received nothing
        assert cluster_metrics(a)["forwarded"] == 1
        assert cluster_metrics(b)["received"] == 1
        assert cluster_metrics(c)["received"] == 0
        # a member holding only a channel that does not want the scope is not sent it either
        out_only = await call(on_a, **subscribe(scope="out"))
        assert out_only["result"]["roomId"] == room
        publish(c, {"status": "paid"})
        assert (await next_message(on_b))["type"] == "document"
        await nothing_more(on_a)
        assert cluster_metrics(c)["forwarded"] == 1 and cluster_metrics(a)["received"] == 0


async def test_count_and_list_answer_for_the_cluster_and_a_killed_member_leaves(
        nodes: Nodes) -> None:
    a, b, c = nodes.start(), nodes.start(), nodes.start()
    async with connect(ws(a)) as on_a, connect(ws(b)) as on_b, connect(ws(b)) as on_b2:
        room = (await call(on_a, **subscribe()))["result"]["roomId"]
        assert (await call(on_b, **subscribe()))["result"]["roomId"] == room
        assert (await call(on_b2, **subscribe()))["status"] == 200
        assert await within(5, lambda: all(count(x, room) == 3 for x in (a, b, c)))
        listed = httpx.get(f"{c}/_listSubscriptions").json()["result"]
        assert listed == {"shop": {"orders": {room: 3}}}

        nodes.procs[1].send_signal(signal.SIGKILL)  # B, with 2 subscribers, dies
        nodes.procs[1].wait(timeout=10)
        assert await within(5, lambda: count(a, room) == 1 and count(c, room) == 1)
        assert httpx.get(f"{c}/_listSubscriptions").json()["result"] == \
            {"shop": {"orders": {room: 1}}}
        publish(c, {"status": "paid"})  # still delivered, and nothing sent to the dead
        assert (await next_message(on_a))["type"] == "document"
        await call(on_a, controller="realtime", action="unsubscribe", body={"roomId": room})
        assert await within(5, lambda: count(c, room) is None)  # the room is gone everywhere
        r = httpx.post(f"{c}/_query", json={"controller": "realtime", "action": "count",
                                            "body": {"roomId": room}})
        assert r.json()["error"]["id"] == "core.realtime.room_not_found"


async def test_join_a_room_held_by_another_member_and_users_notifications(
        nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()
    async with connect(ws(a)) as on_a, connect(ws(b)) as on_b:
        room = (await call(on_a, **subscribe(users="all")))["result"]["roomId"]
        joined = await call(on_b, controller="realtime", action="join", body={"roomId": room},
                            volatile={"who": "b"})
        assert joined["status"] == 200 and joined["result"]["roomId"] == room
        note = await next_message(on_a)
        assert note["type"] == "user" and note["user"] == "in"
        assert note["result"] == {"count": 2} and note["volatile"] == {"who": "b"}
        publish(a, {"status": "paid"})
        assert (await next_message(on_b))["type"] == "document"
        assert (await next_message(on_a))["type"] == "document"
        await on_b.close()  # B's subscriber goes: A's hears it
        note = await next_message(on_a)
        assert note["user"] == "out" and note["result"] == {"count": 1}


async def ws_on_each_worker(base: str) -> tuple[dict[int, ClientConnection], list[Any]]:
    """One WebSocket connection per worker (found by the pid server:info answers with). The
    workers accept from one shared socket: whichever wakes first takes a connection, so on a
    busy machine one worker can take dozens in a row."""
    found: dict[int, ClientConnection] = {}
    spare = []
    for _ in range(300):
        client = await connect(ws(base))
        info = await call(client, controller="server", action="info")
        pid = info["result"]["serverInfo"]["kuzzle"]["pid"]
        if pid in found:
            spare.append(client)
            if len(spare) > 10:
                await spare.pop(0).close()
        else:
            found[pid] = client
        if len(found) == 2:
            break
    return found, spare


async def test_a_subscriber_on_one_worker_gets_a_publish_made_through_another(
        nodes: Nodes) -> None:
    base = nodes.start("--workers", "2")
    assert await within(5, lambda: len(node_ids(base)) == 2)
    found, spare = await ws_on_each_worker(base)
    try:
        assert len(found) == 2, "the kernel gave every connection to one worker"
        one, two = found.values()
        assert (await call(one, **subscribe()))["status"] == 200
        answer = await call(two, controller="realtime", action="publish", index="shop",
                            collection="orders", body={"status": "paid", "n": 1})
        assert answer["result"] == {"published": True}
        note = await next_message(one)
        assert note["type"] == "document" and note["result"]["_source"]["n"] == 1
        pids = list(found)
        assert note["node"].split(":")[1] == str(pids[1])  # made by the other worker
    finally:
        for client in (*found.values(), *spare):
            await client.close()


class PrivateRedis:
    """A redis-server of the test's own (nothing saved): restarting it loses everything."""

    def __init__(self, tmp_path: Path) -> None:
        from tests.test_cli import free_port

        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1"], cwd=self.tmp_path, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[tuple[Nodes, PrivateRedis]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed")
    server = PrivateRedis(tmp_path)
    server.start()
    storage = pg_schema_url()
    made = Nodes(tmp_path, storage, server.url, yaml=YAML)
    try:
        yield made, server
    finally:
        made.close()
        server.stop()
        drop_schema(storage)


async def test_rooms_resynchronise_after_a_redis_restart(
        private_cluster: tuple[Nodes, PrivateRedis]) -> None:
    """A private Redis (nothing saved) restarted: the rooms are re-published, subscriptions
    made before keep working, and a member started afterwards learns them."""
    made, server = private_cluster
    a, b = made.start(), made.start()
    async with connect(ws(a)) as on_a:
        room = (await call(on_a, **subscribe()))["result"]["roomId"]
        assert await within(5, lambda: count(b, room) == 1)
        server.stop()
        server.start()  # empty: what the members knew of each other in Redis is gone

        def healthy() -> bool:
            r = httpx.get(f"{b}/_healthCheck")
            return r.json()["result"]["status"] == "green"
        assert await within(15, healthy)
        c = made.start()  # learns A's room from what A wrote again
        assert await within(10, lambda: count(c, room) == 1 and count(b, room) == 1)
        publish(b, {"status": "paid", "after": True})
        note = await next_message(on_a)
        assert note["result"]["_source"]["after"] is True
        publish(c, {"status": "paid", "from": "c"})
        assert (await next_message(on_a))["result"]["_source"]["from"] == "c"


STAMP_PLUGIN = '''
import os


class Plugin:
    def init(self, config, context):
        self.context = context

    async def on_document(self, notification):
        source = notification["result"]["_source"]
        if source.get("secret"):
            raise ValueError("not for subscribers")  # a pipe refusing it drops it
        source["piped_by"] = os.getpid()
        return notification

    def publish(self, request):
        self.context.accessors.realtime.publish("shop", "orders", {"status": "paid"}, "p-1")
        return os.getpid()
'''
PLUGIN_YAML = '''\
    plugins:
      stamp:
        module: stamp:Plugin
        pipes:
          notify:document: on_document
        controllers:
          rt: {publish: publish}
'''


async def test_a_plugin_notification_crosses_and_pipes_run_where_it_is_delivered(
        nodes: Nodes) -> None:
    yaml = nodes.tmp_path / "gateway.yaml"
    yaml.write_text(yaml.read_text() + textwrap.dedent(PLUGIN_YAML))
    (nodes.tmp_path / "stamp.py").write_text(STAMP_PLUGIN)
    a, b = nodes.start(), nodes.start()
    async with connect(ws(a)) as on_a:
        assert (await call(on_a, **subscribe()))["status"] == 200
        pid_a = (await call(on_a, controller="server", action="info"))[
            "result"]["serverInfo"]["kuzzle"]["pid"]
        r = httpx.post(f"{b}/_query", json={"controller": "stamp/rt", "action": "publish"})
        assert r.status_code == 200, r.text
        pid_b = r.json()["result"]
        note = await next_message(on_a)
        assert note["type"] == "document" and note["result"]["_id"] == "p-1"
        assert note["protocol"] == "internal"
        assert note["result"]["_source"]["piped_by"] == pid_a != pid_b
        publish(b, {"status": "paid", "secret": 1})  # A's pipe drops it for A's subscribers
        publish(b, {"status": "paid", "last": 1})
        last = await next_message(on_a)
        assert last["result"]["_source"].get("last") == 1, last


async def test_a_logout_on_one_member_takes_the_subscriber_on_another_out_of_its_rooms(
        nodes: Nodes) -> None:
    with (nodes.tmp_path / "gateway.yaml").open("a") as config:
        config.write(textwrap.dedent("""\
            auth: {jwt: {secret: a-cluster-test-secret-of-32-characters}}
            security:
              users:
                watcher:
                  profileIds: [admin]
                  credentials: {local: {username: watcher, password: watcher-password}}
            """))
    a, b = nodes.start(), nodes.start()
    login = httpx.post(f"{a}/_login/local",
                       json={"username": "watcher", "password": "watcher-password"})
    jwt = login.json()["result"]["jwt"]
    auth = {"Authorization": f"Bearer {jwt}"}
    async with connect(ws(a)) as on_a:
        room = (await call(on_a, **subscribe(jwt=jwt)))["result"]["roomId"]
        r = httpx.post(f"{b}/shop/orders/_publish", json={"status": "paid"}, headers=auth)
        assert r.status_code == 200, r.text
        assert (await next_message(on_a))["type"] == "document"
        assert httpx.post(f"{b}/_logout", headers=auth).status_code == 200
        other = httpx.post(f"{b}/_login/local",
                           json={"username": "watcher", "password": "watcher-password"})
        fresh = {"Authorization": f"Bearer {other.json()['result']['jwt']}"}
        assert await within(2, lambda: httpx.post(
            f"{b}/_query", headers=fresh, json={"controller": "realtime", "action": "count",
                                                "body": {"roomId": room}}).status_code == 404)
        r = httpx.post(f"{b}/shop/orders/_publish", json={"status": "paid"}, headers=fresh)
        assert r.status_code == 200, r.text
        await nothing_more(on_a)  # still open, and notified of nothing
