"""The room table of the other members, as one member applies it: versions order bus messages
and Redis snapshots, routing follows what each member's channels want, a member leaving takes
its rooms (and their filters) away. A real engine and the machine's Redis (a key prefix of the
test's own)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from sanic_gateway.cluster import Cluster
from sanic_gateway.config import load_config
from sanic_gateway.gateway import Gateway
from sanic_gateway.realtime.cluster import FULL, STATE, VERSION, ClusterRealtime, ClusterRooms
from sanic_gateway.realtime.rooms import Channel
from tests.cluster_nodes import REDIS_URL

PAID = {"equals": {"status": "paid"}}


@pytest.fixture
async def member(tmp_path: Path) -> AsyncIterator[ClusterRealtime]:
    (tmp_path / "gateway.yaml").write_text('storage: "sqlite:///:memory:"\n')
    gateway = Gateway.build(load_config(tmp_path / "gateway.yaml"))
    cluster = Cluster(REDIS_URL, prefix=f"test-{uuid.uuid4().hex[:10]}")  # not started
    rooms = ClusterRooms()
    gateway.realtime.rooms = rooms
    yield ClusterRealtime(gateway.realtime, rooms, cluster)
    keys = [key async for key in cluster.redis.scan_iter(f"{cluster.prefix}:*")]
    if keys:
        await cluster.redis.delete(*keys)
    await cluster.redis.aclose()


def entry(sync: ClusterRealtime, count: int, scopes: str = "io", users: str = "") -> tuple:
    normalized = sync.engine.normalize("shop", "orders", PAID)
    return normalized.id, {"i": "shop", "c": "orders", "f": normalized.filter, "n": count,
                           "s": scopes, "u": users}


async def test_announcements_apply_in_version_order(member: ClusterRealtime) -> None:
    sync, rooms = member, member.rooms
    room, held = entry(sync, 2)
    await sync._apply(STATE, "m1", {"v": 2, "r": {room: held}})
    assert rooms.count(room) == 2 and sync.engine.exists(room)
    assert sync.engine.test("shop", "orders", {"status": "paid"}) == [room]
    await sync._apply(STATE, "m1", {"v": 1, "r": {room: None}})  # older: ignored
    assert rooms.count(room) == 2
    assert rooms.list() == {"shop": {"orders": {room: 2}}}
    await sync._apply(STATE, "m2", {"v": 1, "r": {room: entry(sync, 3, "o", "io")[1]}})
    assert rooms.count(room) == 5
    # routing: documents "in" to m1 only (m2's channels want "out"); user events to m2 only
    assert rooms.members_for_document([room], "in") == {"m1": [room]}
    assert rooms.members_for_document([room], "out") == {"m1": [room], "m2": [room]}
    assert rooms.members_for_user(room, "in") == ["m2"]
    await sync._apply(FULL, "m1", {"v": 3, "r": {}})  # m1 holds nothing any more
    assert rooms.count(room) == 3
    await sync._apply("left", "m2", None)  # m2 gone: the room and its filter with it
    assert not rooms.exists(room) and not sync.engine.exists(room)
    assert sync.engine.test("shop", "orders", {"status": "paid"}) == []


async def test_a_redis_snapshot_replaces_older_state_only(member: ClusterRealtime) -> None:
    sync, rooms = member, member.rooms
    room, held = entry(sync, 4)
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.hset(sync._hash("m1"), mapping={room: orjson.dumps(held), VERSION: 5})
        await sync._apply(STATE, "m1", {"v": 7, "r": {room: {**held, "n": 1}}})
        await sync._apply("snapshot", "m1", None)  # version 5 < 7: what the bus said stays
        assert rooms.count(room) == 1
        await client.hset(sync._hash("m1"), mapping={room: orjson.dumps(held), VERSION: 9})
        await sync._apply("snapshot", "m1", None)
        assert rooms.count(room) == 4
        await sync._apply(STATE, "m1", {"v": 8, "r": {room: None}})  # older than the snapshot
        assert rooms.count(room) == 4
    finally:
        await client.aclose()


async def test_local_and_remote_subscribers_add_up_and_a_shared_filter_stays(
        member: ClusterRealtime) -> None:
    sync, rooms = member, member.rooms
    room, held = entry(sync, 2)
    await sync._apply(STATE, "m1", {"v": 1, "r": {room: held}})
    joined = rooms.add("shop", "orders", Channel(room), "c1", {})
    assert joined.count == 3 and joined.room_created  # created here, counted cluster-wide
    assert rooms.entry(room, sync.engine)["n"] == 1  # what this member announces: its own
    left = rooms.remove("c1", room)
    assert left.room_removed and left.count == 2 and rooms.elsewhere(room)
    assert rooms.entry(room, sync.engine) is None  # announced as gone from this member
    assert rooms.changed == {room}
