"""The cluster bus on the machine's Redis (a key prefix of each test's own): messages between
members, membership, Redis unreachable."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from sanic_gateway.cluster import Cluster, ClusterStartError
from tests.test_cli import free_port

REDIS_URL = os.environ.get("SANIC_GATEWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def members() -> AsyncIterator[Callable[..., Cluster]]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    made: list[Cluster] = []

    def make(**options: float) -> Cluster:
        cluster = Cluster(REDIS_URL, prefix=prefix, **options)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.stop()
    client = aioredis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_messages_reach_the_others_not_the_sender(members: Callable[..., Cluster]) -> None:
    a, b, c = members(), members(), members()
    got: dict[str, list[tuple[str, dict]]] = {"a": [], "b": [], "c": []}
    for name, member in (("a", a), ("b", b), ("c", c)):
        member.on("greet", lambda sender, payload, name=name: got[name].append((sender, payload)))

    async def async_handler(sender: str, payload: dict) -> None:
        got["b"].append(("async", payload))

    b.on("greet", async_handler)
    for member in (a, b, c):
        await member.start()
    assert len({a.node_id, b.node_id, c.node_id}) == 3
    assert await a.send("greet", {"n": 1})
    assert await a.send("greet", {"n": 2}, to=[c.node_id])
    await until(lambda: len(got["c"]) == 2 and len(got["b"]) == 2)
    assert got["a"] == []
    assert got["b"] == [(a.node_id, {"n": 1}), ("async", {"n": 1})]
    assert got["c"] == [(a.node_id, {"n": 1}), (a.node_id, {"n": 2})]
    assert a.key("x", "y") == f"{a.prefix}:x:y"


async def test_membership_join_leave_and_silent_members(members: Callable[..., Cluster]) -> None:
    a = members(heartbeat=0.1, node_timeout=0.5)
    b = members(heartbeat=0.1, node_timeout=0.5)
    joined: list[str] = []
    left: list[str] = []
    a.on_member_joined.append(joined.append)
    a.on_member_left.append(left.append)
    await a.start()
    await b.start()
    await until(lambda: b.node_id in a.members() and a.node_id in b.members())
    assert joined == [b.node_id]
    info = a.members()[b.node_id]
    assert info["pid"] == os.getpid() and "host" in info and "started" in info
    await b.stop()  # a clean stop is seen at once
    await until(lambda: left == [b.node_id], timeout=0.5)
    assert set(a.members()) == {a.node_id}

    c = members(heartbeat=0.1, node_timeout=0.5)
    await c.start()
    await until(lambda: c.node_id in a.members())
    assert c._task is not None
    c._task.cancel()  # c goes silent, as a process killed with -9 would
    await until(lambda: c.node_id in left, timeout=3)
    assert c.node_id not in a.members()


async def test_unreachable_redis_at_start_is_one_clear_error() -> None:
    port = free_port()
    cluster = Cluster(f"redis://user:secret@127.0.0.1:{port}/0")
    with pytest.raises(ClusterStartError) as caught:
        await cluster.start()
    message = str(caught.value)
    assert message.startswith(f"cluster.redis redis://127.0.0.1:{port}/0: cannot connect")
    assert "secret" not in message
    assert await cluster.send("x", {}) is False  # never raises


async def test_shared_counters_rank_concurrent_hits_once_each(
        members: Callable[..., Cluster]) -> None:
    from sanic_gateway.cluster.counters import SharedCounters

    a, b = members(), members()
    await a.start()
    await b.start()
    counters = [SharedCounters(a), SharedCounters(b)]
    ranks = await asyncio.gather(*(counters[i % 2].hit("bob") for i in range(50)))
    assert sorted(ranks) == list(range(1, 51))  # batched, yet every request has its own rank
    assert await counters[0].hit("alice") == 1
    await asyncio.sleep(1.1)  # the window is one second
    assert await counters[1].hit("bob") == 1

    key = b"\x01" * 16
    waits = [await counters[i % 2].login_attempt(key, 2, 1.0, 4.0, 900.0) for i in range(3)]
    assert waits[:2] == [0.0, 0.0] and waits[2] == 0.0  # the third failure sets the lock
    locked = await counters[1].login_attempt(key, 2, 1.0, 4.0, 900.0)
    assert locked is not None and 0 < locked <= 1.0
    await counters[0].login_succeeded(key)
    assert await counters[1].login_attempt(key, 2, 1.0, 4.0, 900.0) == 0.0

    # Redis unreachable: None, and the caller counts locally
    gone = SharedCounters(Cluster(f"redis://127.0.0.1:{free_port()}/0"))
    assert await gone.hit("bob") is None
    assert await gone.login_attempt(key, 2, 1.0, 4.0, 900.0) is None
    await gone.cluster.redis.aclose()
