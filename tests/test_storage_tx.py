"""Storage transactions and unique fields, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio

import pytest

from sanic_gateway.errors import GatewayError
from sanic_gateway.storage import Storage

from . import test_storage as _base
from .test_storage import Opener

# the fixtures of test_storage: one fresh database per test, on each backend
open_url = _base.open_url
storage = _base.storage


class Boom(Exception):
    pass


async def test_transaction_commits_everything(storage: Storage) -> None:
    async with storage.transaction():
        await storage.create("c", {"n": 1}, id="a")
        await storage.create("d", {"n": 2}, id="b")
        # reads inside see the transaction's own writes
        assert (await storage.get("c", "a"))["_source"] == {"n": 1}
        assert (await storage.search("d", None))["total"] == 1
    assert await storage.exists("c", "a") and await storage.exists("d", "b")


async def test_transaction_rolls_back_everything_on_error(storage: Storage) -> None:
    await storage.create("c", {"n": 0}, id="kept")
    with pytest.raises(Boom):
        async with storage.transaction():
            await storage.create("c", {"n": 1}, id="a")
            await storage.update("c", "kept", {"n": 9})
            await storage.delete("c", "kept")
            raise Boom
    assert not await storage.exists("c", "a")
    assert (await storage.get("c", "kept"))["_source"] == {"n": 0}
    # the storage is usable afterwards
    await storage.create("c", {"n": 2}, id="after")


async def test_uncommitted_writes_are_invisible_elsewhere(open_url: Opener) -> None:
    first, second = await open_url(), await open_url()
    entered, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with first.transaction():
            await first.create("c", {}, id="a")
            entered.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await entered.wait()
    if first.backend == "postgresql":  # SQLite's other connection waits for the lock instead
        assert not await second.exists("c", "a")
    release.set()
    await task
    assert await second.exists("c", "a")


async def test_a_refused_write_does_not_abort_the_transaction(storage: Storage) -> None:
    await storage.create("c", {}, id="taken")
    async with storage.transaction():
        with pytest.raises(GatewayError) as exc:
            await storage.create("c", {}, id="taken")
        assert exc.value.id == "services.storage.document_already_exists"
        await storage.create("c", {}, id="next")  # PostgreSQL would say "transaction aborted"
    assert await storage.exists("c", "next")


async def test_nested_transactions_are_savepoints(storage: Storage) -> None:
    async with storage.transaction():
        await storage.create("c", {}, id="outer")
        with pytest.raises(Boom):
            async with storage.transaction():
                await storage.create("c", {}, id="inner")
                raise Boom
        async with storage.transaction():
            await storage.create("c", {}, id="inner2")
    assert [h["_id"] for h in (await storage.search("c", None))["hits"]] == ["outer", "inner2"]


async def test_tasks_started_inside_share_the_transaction(storage: Storage) -> None:
    with pytest.raises(Boom):
        async with storage.transaction():
            await asyncio.gather(*(storage.create("c", {"i": i}, id=f"d{i}") for i in range(10)))
            assert await storage.count("c") == 10
            raise Boom
    assert await storage.count("c") == 0


async def test_other_calls_wait_or_proceed_and_transactions_serialize(storage: Storage) -> None:
    """Concurrent transactions each read-then-write a counter: none is lost on SQLite (one at a
    time); on PostgreSQL each is consistent and all complete."""
    await storage.create("c", {"n": 0}, id="counter")

    async def add(i: int) -> None:
        async with storage.transaction():
            await storage.create("c", {"i": i}, id=f"row{i}")
            await storage.update("c", "counter", {"last": i})

    await asyncio.gather(*(add(i) for i in range(20)))
    assert await storage.count("c") == 21


async def test_unique_field(storage: Storage) -> None:
    assert await storage.ensure_unique("people", "key")
    assert await storage.ensure_unique("people", "key")  # idempotent
    await storage.create("people", {"key": "bob"}, id="1")
    await storage.create("people", {"name": "no key"}, id="2")
    await storage.create("people", {"name": "no key either"}, id="3")
    await storage.create("others", {"key": "bob"}, id="1")  # another collection: free
    for attempt in (
        storage.create("people", {"key": "bob"}, id="4"),
        storage.create_or_replace("people", "2", {"key": "bob"}),
        storage.update("people", "3", {"key": "bob"}),
        storage.replace("people", "3", {"key": "bob"}),
    ):
        with pytest.raises(GatewayError) as exc:
            await attempt
        assert exc.value.id == "services.storage.duplicate_value"
        assert exc.value.status == 412
        assert "bob" not in exc.value.message  # the value is not echoed
    assert not await storage.exists("people", "4")
    # its own value again is fine, and a freed value can be taken
    await storage.update("people", "1", {"key": "bob", "x": 1})
    await storage.update("people", "1", {"key": "robert"})
    await storage.update("people", "3", {"key": "bob"})


async def test_unique_field_under_concurrency(storage: Storage) -> None:
    await storage.ensure_unique("people", "key")
    results = await asyncio.gather(
        *(storage.create("people", {"key": "same"}, id=f"p{i}") for i in range(10)),
        return_exceptions=True)
    assert sum(1 for r in results if isinstance(r, dict)) == 1
    assert all(r.id == "services.storage.duplicate_value"
               for r in results if isinstance(r, GatewayError))
    assert await storage.count("people") == 1


async def test_unique_field_inside_a_transaction_rolls_back_cleanly(storage: Storage) -> None:
    await storage.ensure_unique("people", "key")
    await storage.create("people", {"key": "bob"}, id="bob")
    with pytest.raises(GatewayError):
        async with storage.transaction():
            await storage.create("users", {}, id="second-bob")
            await storage.create("people", {"key": "bob"}, id="second-bob")
    assert not await storage.exists("users", "second-bob")


async def test_unique_field_refused_over_existing_duplicates(storage: Storage) -> None:
    await storage.create("people", {"key": "dup"}, id="1")
    await storage.create("people", {"key": "dup"}, id="2")
    assert await storage.ensure_unique("people", "key") is False
    await storage.create("people", {"key": "dup"}, id="3")  # nothing was changed


async def test_unique_field_survives_reopen(open_url: Opener) -> None:
    first = await open_url()
    await first.ensure_unique("people", "key")
    await first.create("people", {"key": "k"}, id="1")
    await first.close()
    again = await open_url()  # an older process that never declared the field: still refused
    with pytest.raises(GatewayError) as exc:
        await again.create("people", {"key": "k"}, id="2")
    assert exc.value.id == "services.storage.duplicate_value"


@pytest.mark.parametrize("collection, field", [
    ("people", "a.b"), ("people", "x'); DROP TABLE t; --"), ("pe'ople", "key"), ("people", ""),
])
async def test_unique_field_names_are_checked(storage: Storage, collection: str,
                                              field: str) -> None:
    with pytest.raises(GatewayError) as exc:
        await storage.ensure_unique(collection, field)
    assert exc.value.id == "services.storage.invalid_argument"


async def test_find_unique(storage: Storage) -> None:
    await storage.ensure_unique("people", "key")
    await storage.create("people", {"key": "bob", "n": 1}, id="b")
    await storage.create("people", {"key": "gone"}, id="g", ttl=0.05)
    await storage.create("others", {"key": "ann"}, id="a")
    assert await storage.find_unique("people", "key", "bob") == {
        "_id": "b", "_source": {"key": "bob", "n": 1}}
    assert await storage.find_unique("people", "key", "ann") is None  # another collection
    assert await storage.find_unique("people", "key", "BOB") is None  # exact: callers normalize
    assert await storage.find_unique("people", "key", "a\x00b") is None
    await asyncio.sleep(0.1)
    assert await storage.find_unique("people", "key", "gone") is None  # expired
    async with storage.transaction():
        await storage.update("people", "b", {"key": "robert"})
        assert (await storage.find_unique("people", "key", "robert"))["_id"] == "b"
    with pytest.raises(GatewayError):
        await storage.find_unique("people", "a.b", "x")
