"""The document store (SPEC 9), every test on both backends: SQLite and PostgreSQL.

PostgreSQL is the server on this machine (override with SANIC_GATEWAY_TEST_POSTGRES); each test
gets its own schema, dropped afterwards. Tests on it are skipped if the server is unreachable.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from sanic_gateway.errors import GatewayError
from sanic_gateway.storage import Repository, Storage, open_storage

PG_URL = os.environ.get("SANIC_GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

Opener = Callable[[], Awaitable[Storage]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens (as often as asked) a storage on one fresh database; closes and drops it after."""
    opened: list[Storage] = []
    schema = f"gw_test_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/sub/dir/gateway.db"
    else:
        try:
            conn = await asyncpg.connect(PG_URL, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc}")
        await conn.close()
        url = f"{PG_URL}?schema={schema}"

    async def opener() -> Storage:
        storage = await open_storage(url)
        opened.append(storage)
        return storage

    yield opener
    for storage in opened:
        await storage.close()
    if request.param == "postgresql":
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
async def storage(open_url: Opener) -> Storage:
    return await open_url()


def error_id(exc_info: pytest.ExceptionInfo[GatewayError]) -> str:
    return exc_info.value.id


async def ids_of(storage: Storage, query: dict | None, **kwargs) -> list[str]:
    return [h["_id"] for h in (await storage.search("c", query, **kwargs))["hits"]]


# -- opening ---------------------------------------------------------------------------------------


async def test_backend_and_ping(storage: Storage) -> None:
    assert storage.backend in ("sqlite", "postgresql")
    await storage.ping()


async def test_open_twice_is_idempotent_and_shares_data(open_url: Opener) -> None:
    first = await open_url()
    await first.create("c", {"a": 1}, id="x")
    second = await open_url()
    assert (await second.get("c", "x"))["_source"] == {"a": 1}


async def test_closed_storage_is_unavailable(open_url: Opener) -> None:
    storage = await open_url()
    await storage.close()
    with pytest.raises(GatewayError) as exc:
        await storage.ping()
    assert error_id(exc) == "services.storage.unavailable"
    assert exc.value.status == 503


async def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new/folder/gw.db?schema=one"
    storage = await open_storage(url)
    try:
        await storage.create("users", {"name": "Ann"}, id="ann")
        await storage.create("users", {"name": "Bob"}, id="bob", ttl=60)
    finally:
        await storage.close()
    assert (tmp_path / "new" / "folder" / "gw.db").is_file()
    storage = await open_storage(url)
    try:
        assert (await storage.get("users", "ann"))["_source"] == {"name": "Ann"}
        assert await storage.count("users") == 2
    finally:
        await storage.close()
    other = await open_storage(f"sqlite:///{tmp_path}/new/folder/gw.db?schema=two")
    try:
        assert await other.count("users") == 0  # another prefix, another space
    finally:
        await other.close()


async def test_sqlite_memory_and_relative_urls(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    storage = await open_storage("sqlite:///:memory:")
    try:
        assert storage.backend == "sqlite"
        await storage.create("c", {}, id="a")
        assert await storage.exists("c", "a")
    finally:
        await storage.close()
    monkeypatch.chdir(tmp_path)
    storage = await open_storage("sqlite:///./data/gateway.db")
    await storage.close()
    assert (tmp_path / "data" / "gateway.db").is_file()


async def test_unsupported_url() -> None:
    with pytest.raises(ValueError, match="unsupported storage URL"):
        await open_storage("mysql://localhost/db")
    with pytest.raises(ValueError, match="schema"):
        await open_storage("sqlite:///:memory:?schema=bad;name")


async def test_postgres_down_is_unavailable() -> None:
    with pytest.raises(GatewayError) as exc:
        await open_storage("postgresql://postgres@127.0.0.1:1/test")
    assert error_id(exc) == "services.storage.unavailable"


# -- documents -------------------------------------------------------------------------------------


async def test_create_with_and_without_id(storage: Storage) -> None:
    created = await storage.create("users", {"name": "Ann"})
    assert len(created["_id"]) == 32 and int(created["_id"], 16) >= 0
    assert created["_source"] == {"name": "Ann"}
    assert await storage.create("users", {"name": "Bob"}, id="bob") == {
        "_id": "bob", "_source": {"name": "Bob"}}
    with pytest.raises(GatewayError) as exc:
        await storage.create("users", {"name": "Other"}, id="bob")
    assert error_id(exc) == "services.storage.document_already_exists"
    assert exc.value.status == 400
    # the same id in another collection is another document
    await storage.create("profiles", {"x": 1}, id="bob")
    assert (await storage.get("users", "bob"))["_source"] == {"name": "Bob"}


async def test_get_missing_and_exists(storage: Storage) -> None:
    with pytest.raises(GatewayError) as exc:
        await storage.get("users", "nobody")
    assert error_id(exc) == "services.storage.not_found"
    assert exc.value.status == 404
    assert not await storage.exists("users", "nobody")
    await storage.create("users", {}, id="somebody")
    assert await storage.exists("users", "somebody")


async def test_nested_and_unicode_bodies_round_trip(storage: Storage) -> None:
    body = {"s": "héllo ✓", "n": 1.5, "i": 2**40, "b": False, "z": None,
            "list": [1, "a", {"x": []}], "obj": {"deep": {"er": True}}}
    await storage.create("c", body, id="d")
    assert (await storage.get("c", "d"))["_source"] == body


async def test_invalid_arguments(storage: Storage) -> None:
    cases = [
        storage.create("c", ["not", "an", "object"]),  # type: ignore[arg-type]
        storage.create("c", {"x": float("nan")}),
        storage.create("c", {"x": object()}),
        storage.create("c", {}, id=""),
        storage.create("c", {}, id=123),  # type: ignore[arg-type]
        storage.create("c", {}, ttl=0),
        storage.create("bad collection", {}),
        storage.search("c", from_=-1),
        storage.search("c", sort=[{"a": "sideways"}]),
        storage.search("c", sort=["bad field"]),
        storage.m_get("c", "abc"),  # type: ignore[arg-type]
    ]
    for coro in cases:
        with pytest.raises(GatewayError) as exc:
            await coro
        assert error_id(exc) == "services.storage.invalid_argument", coro


async def test_create_or_replace(storage: Storage) -> None:
    first = await storage.create_or_replace("c", "a", {"v": 1})
    assert first == {"_id": "a", "_source": {"v": 1}, "created": True}
    second = await storage.create_or_replace("c", "a", {"w": 2})
    assert second == {"_id": "a", "_source": {"w": 2}, "created": False}
    assert (await storage.get("c", "a"))["_source"] == {"w": 2}


async def test_m_get_keeps_input_order(storage: Storage) -> None:
    for name in ("a", "b", "c"):
        await storage.create("c", {"n": name}, id=name)
    found = await storage.m_get("c", ["c", "missing", "a", "b"])
    assert [d["_id"] for d in found] == ["c", "a", "b"]
    assert [d["_source"]["n"] for d in found] == ["c", "a", "b"]
    assert await storage.m_get("c", []) == []


async def test_update_merges_top_level(storage: Storage) -> None:
    await storage.create("c", {"a": 1, "nested": {"x": 1, "y": 2}, "keep": True}, id="d")
    updated = await storage.update("c", "d", {"a": 2, "nested": {"x": 9}, "new": None})
    expected = {"a": 2, "nested": {"x": 9}, "keep": True, "new": None}
    assert updated == {"_id": "d", "_source": expected}
    assert (await storage.get("c", "d"))["_source"] == expected
    with pytest.raises(GatewayError) as exc:
        await storage.update("c", "missing", {"a": 1})
    assert error_id(exc) == "services.storage.not_found"


async def test_replace(storage: Storage) -> None:
    await storage.create("c", {"a": 1, "b": 2}, id="d")
    assert await storage.replace("c", "d", {"c": 3}) == {"_id": "d", "_source": {"c": 3}}
    assert (await storage.get("c", "d"))["_source"] == {"c": 3}
    with pytest.raises(GatewayError) as exc:
        await storage.replace("c", "missing", {"a": 1})
    assert error_id(exc) == "services.storage.not_found"
    assert not await storage.exists("c", "missing")


async def test_delete(storage: Storage) -> None:
    await storage.create("c", {}, id="d")
    assert await storage.delete("c", "d") is None
    assert not await storage.exists("c", "d")
    with pytest.raises(GatewayError) as exc:
        await storage.delete("c", "d")
    assert error_id(exc) == "services.storage.not_found"


# -- search ----------------------------------------------------------------------------------------


@pytest.fixture
async def people(storage: Storage) -> Storage:
    docs = {
        "ann": {"name": "Ann", "age": 31, "city": "Paris", "tags": ["a"],
                "content": {"name": "Ann A.", "level": 3}},
        "bob": {"name": "Bob", "age": 25, "city": "Lyon", "content": {"name": "Bob B.",
                                                                      "level": 1}},
        "cid": {"name": "Cid", "age": 40.5, "city": None, "content": {"level": 2}},
        "dan": {"name": "Dan", "age": "31", "active": True},
        "eve": {"name": "Eve", "age": 1, "active": False, "city": "Paris"},
    }
    for id, body in docs.items():
        await storage.create("c", body, id=id)
    await storage.create("other", {"name": "Ann", "age": 31}, id="zed")
    return storage


async def test_search_everything_in_creation_order(people: Storage) -> None:
    for query in (None, {}):
        result = await people.search("c", query)
        assert result["total"] == 5
        assert [h["_id"] for h in result["hits"]] == ["ann", "bob", "cid", "dan", "eve"]
    assert (await people.search("c"))["hits"][0]["_source"]["content"]["name"] == "Ann A."
    assert await people.count("c") == 5
    assert await people.count("empty") == 0


async def test_equals_keeps_json_types_apart(people: Storage) -> None:
    assert await ids_of(people, {"equals": {"name": "Ann"}}) == ["ann"]
    assert await ids_of(people, {"equals": {"age": 31}}) == ["ann"]
    assert await ids_of(people, {"equals": {"age": 31.0}}) == ["ann"]
    assert await ids_of(people, {"equals": {"age": "31"}}) == ["dan"]
    assert await ids_of(people, {"equals": {"age": 40.5}}) == ["cid"]
    assert await ids_of(people, {"equals": {"active": True}}) == ["dan"]
    assert await ids_of(people, {"equals": {"active": False}}) == ["eve"]
    assert await ids_of(people, {"equals": {"age": True}}) == []
    assert await ids_of(people, {"equals": {"city": None}}) == ["cid"]
    assert await ids_of(people, {"equals": {"nope": "Ann"}}) == []
    assert await ids_of(people, {"equals": {"tags": "a"}}) == []  # arrays are not scalars


async def test_nested_fields(people: Storage) -> None:
    assert await ids_of(people, {"equals": {"content.name": "Bob B."}}) == ["bob"]
    assert await ids_of(people, {"range": {"content.level": {"gte": 2}}}) == ["ann", "cid"]
    assert await ids_of(people, {"exists": "content.name"}) == ["ann", "bob"]
    assert await ids_of(people, {"missing": "content.level"}) == ["dan", "eve"]
    assert await ids_of(people, {"exists": "name.deeper"}) == []


async def test_in(people: Storage) -> None:
    assert await ids_of(people, {"in": {"name": ["Eve", "Ann", "Nobody"]}}) == ["ann", "eve"]
    assert await ids_of(people, {"in": {"age": [31, "31"]}}) == ["ann", "dan"]


async def test_exists_and_missing(people: Storage) -> None:
    assert await ids_of(people, {"exists": "city"}) == ["ann", "bob", "cid", "eve"]  # null too
    assert await ids_of(people, {"exists": {"field": "active"}}) == ["dan", "eve"]
    assert await ids_of(people, {"missing": "city"}) == ["dan"]
    assert await ids_of(people, {"missing": {"field": "active"}}) == ["ann", "bob", "cid"]


async def test_range(people: Storage) -> None:
    assert await ids_of(people, {"range": {"age": {"gt": 25}}}) == ["ann", "cid"]
    assert await ids_of(people, {"range": {"age": {"gte": 25, "lt": 40}}}) == ["ann", "bob"]
    assert await ids_of(people, {"range": {"age": {"lte": 1}}}) == ["eve"]
    assert await ids_of(people, {"range": {"age": {"gt": 40.1, "lte": 40.5}}}) == ["cid"]
    # strings compare as strings, never with numbers
    assert await ids_of(people, {"range": {"name": {"gte": "B", "lt": "D"}}}) == ["bob", "cid"]
    assert await ids_of(people, {"range": {"age": {"gte": "0"}}}) == ["dan"]


async def test_ids(people: Storage) -> None:
    assert await ids_of(people, {"ids": {"values": ["eve", "bob", "zed"]}}) == ["bob", "eve"]
    assert await ids_of(people, {"ids": {"values": []}}) == []


async def test_and_or_not(people: Storage) -> None:
    paris = {"equals": {"city": "Paris"}}
    assert await ids_of(people, {"and": [paris, {"range": {"age": {"gt": 10}}}]}) == ["ann"]
    assert await ids_of(people, {"or": [paris, {"equals": {"name": "Bob"}}]}) == [
        "ann", "bob", "eve"]
    # not keeps documents where the field is missing or of another type
    assert await ids_of(people, {"not": paris}) == ["bob", "cid", "dan"]
    assert await ids_of(people, {"not": {"range": {"age": {"gte": 25}}}}) == ["dan", "eve"]
    nested = {"and": [{"not": {"missing": "city"}},
                      {"or": [{"ids": {"values": ["cid"]}}, {"equals": {"age": 1}}]}]}
    assert await ids_of(people, nested) == ["cid", "eve"]
    assert await people.count("c", {"not": {}}) == 0


@pytest.mark.parametrize("query", [
    {"bogus": {"a": 1}},
    {"equals": {"a": 1}, "exists": "a"},
    {"equals": {"a": 1, "b": 2}},
    {"equals": {"a": {"nested": "object"}}},
    {"equals": {"a": [1]}},
    {"equals": "a"},
    {"in": {"a": []}},
    {"in": {"a": "notalist"}},
    {"range": {"a": {"between": 1}}},
    {"range": {"a": {"gt": True}}},
    {"range": {"a": {}}},
    {"exists": {"field": "a", "value": 1}},
    {"exists": 3},
    {"ids": ["a"]},
    {"ids": {"values": [1]}},
    {"and": []},
    {"or": {"equals": {"a": 1}}},
    {"not": [{"equals": {"a": 1}}]},
    {"and": [{"equals": {"a": 1}}, {"nope": 1}]},
    ["equals"],
    {"equals": {"a..b": 1}},
    {"equals": {".a": 1}},
    {"equals": {"": 1}},
])
async def test_invalid_queries(storage: Storage, query: object) -> None:
    for call in (storage.search("c", query), storage.count("c", query),  # type: ignore[arg-type]
                 storage.delete_by_query("c", query)):  # type: ignore[arg-type]
        with pytest.raises(GatewayError) as exc:
            await call
        assert error_id(exc) == "services.storage.invalid_search_query"
        assert exc.value.status == 400


async def test_sort_from_size(people: Storage) -> None:
    assert await ids_of(people, {"exists": "content"}, sort=[{"content.level": "desc"}]) == [
        "ann", "cid", "bob"]
    assert await ids_of(people, {"exists": "content"}, sort=["content.level"]) == [
        "bob", "cid", "ann"]
    assert await ids_of(people, None, sort=[{"name": {"order": "desc"}}]) == [
        "eve", "dan", "cid", "bob", "ann"]
    # missing values last, then creation order breaks ties
    assert await ids_of(people, None, sort=[{"content.level": "asc"}]) == [
        "bob", "cid", "ann", "dan", "eve"]
    by_city = await ids_of(people, None, sort=[{"city": "asc"}, {"_id": "desc"}])
    assert by_city[:3] == ["bob", "eve", "ann"]
    assert await ids_of(people, None, sort=[{"_id": "desc"}]) == [
        "eve", "dan", "cid", "bob", "ann"]
    page = await people.search("c", None, from_=1, size=2, sort=["name"])
    assert page["total"] == 5
    assert [h["_id"] for h in page["hits"]] == ["bob", "cid"]
    empty = await people.search("c", None, from_=10, size=2)
    assert empty == {"total": 5, "hits": []}
    zero = await people.search("c", {"equals": {"city": "Paris"}}, size=0)
    assert zero == {"total": 2, "hits": []}


async def test_size_is_capped(storage: Storage) -> None:
    await storage.create("c", {}, id="one")
    result = await storage.search("c", None, size=10**9)
    assert result["total"] == 1


async def test_count_and_delete_by_query(people: Storage) -> None:
    assert await people.count("c", {"equals": {"city": "Paris"}}) == 2
    assert await people.delete_by_query("c", {"equals": {"city": "Paris"}}) == 2
    assert await ids_of(people, None) == ["bob", "cid", "dan"]
    assert await people.delete_by_query("c", {"equals": {"city": "Paris"}}) == 0
    assert await people.delete_by_query("c", {}) == 3
    assert await people.count("other") == 1  # other collections untouched


async def test_truncate(people: Storage) -> None:
    await people.truncate("c")
    assert await people.count("c") == 0
    assert await people.count("other") == 1
    await people.create("c", {}, id="ann")  # the ids are free again


# -- injection -------------------------------------------------------------------------------------


INJECTIONS = ["x' OR '1'='1", "'; DROP TABLE gateway_documents; --", '"); DELETE FROM x; --',
              "$1", "?", "\\", "%s", "' || (SELECT 1) || '"]


async def test_injection_values_are_literal(storage: Storage) -> None:
    for i, value in enumerate(INJECTIONS):
        await storage.create("c", {"v": value, "n": {"v": value}}, id=value)
        await storage.create("c", {"v": f"other{i}"})
    for value in INJECTIONS:
        assert await ids_of(storage, {"equals": {"v": value}}) == [value]
        assert await ids_of(storage, {"equals": {"n.v": value}}) == [value]
        assert await ids_of(storage, {"in": {"v": [value]}}) == [value]
        assert await ids_of(storage, {"ids": {"values": [value]}}) == [value]
        assert (await storage.get("c", value))["_source"]["v"] == value
        assert (await storage.take("c", value))["_id"] == value  # type: ignore[index]
    assert await storage.count("c") == len(INJECTIONS)  # the table is still there
    assert await storage.count("c", {"range": {"v": {"gte": "x' OR '1'='1"}}}) == 0
    with pytest.raises(GatewayError):
        await storage.create("c' OR '1'='1", {"a": 1})


@pytest.mark.parametrize("field", [
    "a') OR 1=1 --", "a\" OR 1=1", "a'", "a b", "a;DROP TABLE x", "$.a", "a[0]", "a\n",
    "*", "a/b", "ü",
])
async def test_bad_field_names_are_rejected(storage: Storage, field: str) -> None:
    await storage.create("c", {"a": 1})
    queries = [{"equals": {field: 1}}, {"exists": field}, {"range": {field: {"gt": 0}}},
               {"in": {field: [1]}}, {"missing": {"field": field}}]
    for query in queries:
        with pytest.raises(GatewayError) as exc:
            await storage.search("c", query)
        assert error_id(exc) == "services.storage.invalid_search_query"
    with pytest.raises(GatewayError) as exc:
        await storage.search("c", None, sort=[{field: "asc"}])
    assert error_id(exc) == "services.storage.invalid_argument"
    assert await storage.count("c") == 1


async def test_field_names_with_dashes_and_underscores(storage: Storage) -> None:
    await storage.create("c", {"a-b": {"c_d": 1, "9": "nine"}}, id="d")
    assert await ids_of(storage, {"equals": {"a-b.c_d": 1}}) == ["d"]
    assert await ids_of(storage, {"equals": {"a-b.9": "nine"}}) == ["d"]


# -- expiry and take -------------------------------------------------------------------------------


async def test_ttl_expiry(storage: Storage) -> None:
    await storage.create("tokens", {"kuid": "u1"}, id="short", ttl=0.2)
    await storage.create_or_replace("tokens", "short2", {"kuid": "u2"}, ttl=0.2)
    await storage.create("tokens", {"kuid": "u1"}, id="long", ttl=60)
    await storage.create("tokens", {"kuid": "u1"}, id="forever")
    assert await storage.count("tokens") == 4
    assert await storage.exists("tokens", "short")
    await asyncio.sleep(0.3)
    assert not await storage.exists("tokens", "short")
    with pytest.raises(GatewayError):
        await storage.get("tokens", "short")
    assert await storage.m_get("tokens", ["short", "long", "short2"]) == [
        {"_id": "long", "_source": {"kuid": "u1"}}]
    assert await storage.count("tokens") == 2
    assert await storage.count("tokens", {"equals": {"kuid": "u1"}}) == 2
    assert await ids_of(storage, None) == []  # nothing in "c"
    result = await storage.search("tokens", {"equals": {"kuid": "u1"}})
    assert [h["_id"] for h in result["hits"]] == ["long", "forever"]
    assert result["total"] == 2
    for write in (storage.update("tokens", "short", {"a": 1}),
                  storage.replace("tokens", "short", {"a": 1}),
                  storage.delete("tokens", "short")):
        with pytest.raises(GatewayError) as exc:
            await write
        assert error_id(exc) == "services.storage.not_found"
    assert await storage.take("tokens", "short2") is None
    # an expired id is free again
    assert (await storage.create("tokens", {"new": 1}, id="short"))["_id"] == "short"
    assert (await storage.create_or_replace("tokens", "short2", {"n": 2}))["created"] is True
    assert await storage.delete_by_query("tokens", {}) == 4


async def test_update_keeps_ttl(storage: Storage) -> None:
    await storage.create("c", {"a": 1}, id="d", ttl=0.2)
    await storage.update("c", "d", {"b": 2})
    await storage.replace("c", "d", {"c": 3})
    await asyncio.sleep(0.3)
    assert not await storage.exists("c", "d")


async def test_take_is_one_time(storage: Storage) -> None:
    await storage.create("oauth.states", {"verifier": "v"}, id="state1")
    assert await storage.take("oauth.states", "state1") == {
        "_id": "state1", "_source": {"verifier": "v"}}
    assert await storage.take("oauth.states", "state1") is None
    assert not await storage.exists("oauth.states", "state1")
    assert await storage.take("oauth.states", "never") is None


async def test_concurrent_takes_only_one_wins(storage: Storage) -> None:
    for round in range(3):
        await storage.create("states", {"round": round}, id="s")
        results = await asyncio.gather(*(storage.take("states", "s") for _ in range(10)))
        winners = [r for r in results if r is not None]
        assert winners == [{"_id": "s", "_source": {"round": round}}]


async def test_concurrent_creates_same_id(storage: Storage) -> None:
    results = await asyncio.gather(*(storage.create("c", {"n": n}, id="same")
                                     for n in range(10)), return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(r.id == "services.storage.document_already_exists"  # type: ignore[union-attr]
               for r in results if not isinstance(r, dict))


async def test_concurrent_updates_all_land(storage: Storage) -> None:
    await storage.create("c", {}, id="d")
    await asyncio.gather(*(storage.update("c", "d", {f"k{n}": n}) for n in range(10)))
    assert (await storage.get("c", "d"))["_source"] == {f"k{n}": n for n in range(10)}


# -- repositories ----------------------------------------------------------------------------------


async def test_repository_methods(storage: Storage) -> None:
    repo = Repository(storage, "users")
    created = await repo.create({"name": "Ann"}, id="ann")
    assert created == {"_id": "ann", "_source": {"name": "Ann"}}
    assert (await repo.create({"name": "Anon"}))["_id"]
    assert (await repo.create_or_replace("bob", {"name": "Bob"}))["created"] is True
    assert (await repo.get("bob"))["_source"] == {"name": "Bob"}
    assert [d["_id"] for d in await repo.m_get(["bob", "ann"])] == ["bob", "ann"]
    assert (await repo.update("ann", {"age": 3}))["_source"] == {"name": "Ann", "age": 3}
    assert (await repo.replace("ann", {"x": 1}))["_source"] == {"x": 1}
    assert await repo.count() == 3
    assert await repo.count({"equals": {"name": "Bob"}}) == 1
    found = await repo.search({"exists": "name"}, size=1, sort=[{"name": "desc"}])
    assert found["total"] == 2 and found["hits"][0]["_id"] == "bob"
    await repo.delete("bob")
    assert not await repo.exists("bob")
    assert (await storage.get("users", "ann"))["_source"] == {"x": 1}


async def test_plugin_repositories_are_isolated(storage: Storage) -> None:
    audit = Repository.for_plugin(storage, "audit", "notes")
    other = Repository.for_plugin(storage, "other-plugin", "notes")
    assert audit.collection == "plugin.audit.notes"
    await audit.create({"text": "mine"}, id="n1")
    await storage.create("users", {"name": "admin"}, id="n1")
    assert await other.count() == 0
    with pytest.raises(GatewayError) as exc:
        await other.get("n1")
    assert error_id(exc) == "services.storage.not_found"
    assert await other.search() == {"total": 0, "hits": []}
    await other.create({"text": "theirs"}, id="n1")
    assert (await audit.get("n1"))["_source"] == {"text": "mine"}
    assert (await other.get("n1"))["_source"] == {"text": "theirs"}
    assert (await storage.get("users", "n1"))["_source"] == {"name": "admin"}
    await audit.delete("n1")
    assert await other.count() == 1


@pytest.mark.parametrize(("plugin", "collection"), [
    ("audit", "../users"), ("audit", "a.b"), ("a.b", "notes"), ("audit", ""),
    ("", "notes"), ("audit", "x y"), ("audit", None),
])
async def test_plugin_repository_names_are_checked(storage: Storage, plugin: str,
                                                   collection: str) -> None:
    with pytest.raises(GatewayError) as exc:
        Repository.for_plugin(storage, plugin, collection)
    assert error_id(exc) == "services.storage.invalid_argument"


async def test_sort_is_the_same_on_both_backends(storage: Storage) -> None:
    values = {"s1": "b", "n1": 10, "t": True, "s2": "B", "nul": None, "n2": 9.5, "f": False,
              "o": {"x": 1}, "s3": "a", "n3": -1}
    for id, value in values.items():
        await storage.create("c", {"v": value}, id=id)
    await storage.create("c", {}, id="missing")
    assert await ids_of(storage, None, sort=["v"], size=20) == [
        "n3", "n2", "n1", "s2", "s3", "s1", "f", "t", "o", "nul", "missing"]
    assert await ids_of(storage, None, sort=[{"v": "desc"}], size=20) == [
        "o", "t", "f", "s1", "s3", "s2", "n1", "n2", "n3", "nul", "missing"]


async def test_concurrent_opens_of_a_new_database(open_url: Opener) -> None:
    storages = await asyncio.gather(*(open_url() for _ in range(5)))
    await storages[0].create("c", {}, id="x")
    assert all([await s.exists("c", "x") for s in storages])


async def test_big_in_and_ids_lists(people: Storage) -> None:
    many = [f"id{n}" for n in range(40_000)]
    assert await ids_of(people, {"ids": {"values": [*many, "bob"]}}) == ["bob"]
    names = [f"name{n}" for n in range(40_000)]
    assert await ids_of(people, {"in": {"name": [*names, "Eve", 1, None, True]}}) == ["eve"]
    assert await ids_of(people, {"in": {"city": [None, "Lyon"]}}) == ["bob", "cid"]
    assert await ids_of(people, {"in": {"active": [True, False]}}) == ["dan", "eve"]
    assert await ids_of(people, {"in": {"age": [40.5, 25.0]}}) == ["bob", "cid"]
    assert len(await people.m_get("c", [*many, "ann"])) == 1


async def test_nul_characters_refused_alike(storage: Storage) -> None:
    for call in (storage.create("c", {"a": "x\x00y"}), storage.create("c", {"k\x00": 1}),
                 storage.create("c", {"a": "\ud800"}), storage.create("c", {}, id="a\x00"),
                 storage.update("c", "a", {"a": ["\x00"]})):
        with pytest.raises(GatewayError) as exc:
            await call
        assert error_id(exc) == "services.storage.invalid_argument"
    # no document holds such a string: equality with one matches nothing (a NUL in a login
    # name is a failed login), an order with one is still a bad query
    await storage.create("c", {"a": "x"}, id="x")
    assert await ids_of(storage, {"equals": {"a": "x\x00"}}) == []
    assert await ids_of(storage, {"not": {"equals": {"a": "x\x00"}}}) == ["x"]
    assert await ids_of(storage, {"in": {"a": ["x\x00", "\ud800"]}}) == []
    assert await ids_of(storage, {"in": {"a": ["x\x00", "x"]}}) == ["x"]
    with pytest.raises(GatewayError) as exc:
        await storage.search("c", {"range": {"a": {"gt": "x\x00"}}})
    assert error_id(exc) == "services.storage.invalid_search_query"
    await storage.create("c", {"a": "\\u0000 is fine"}, id="literal")
    assert (await storage.get("c", "literal"))["_source"] == {"a": "\\u0000 is fine"}
    assert await ids_of(storage, {"equals": {"a": "\\u0000 is fine"}}) == ["literal"]
