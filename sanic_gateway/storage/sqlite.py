"""The embedded backend: one SQLite file (or memory), nothing to install or run.

One aiosqlite connection in WAL mode, every statement behind one asyncio lock: a multi-statement
write must not interleave with another coroutine's statements on the same connection, and the
embedded case has little to gain from concurrency. `BEGIN IMMEDIATE` plus a busy timeout keep
writes correct when several processes share the file. A `transaction()` holds that lock for its
whole block; the storage calls made inside it use the connection directly, each in a savepoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from sanic_gateway import errors

from .base import (
    Dialect,
    DuplicateValue,
    Rows,
    Scalar,
    SortKeys,
    Storage,
    Transaction,
    check_unique,
    unique_index_name,
)

# DELETE ... RETURNING arrived in SQLite 3.35; take() uses a transaction before that.
HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
PREFIX_RE = re.compile(r"^[A-Za-z0-9_]+$")
BUSY_TIMEOUT_MS = 5000


class SqliteDialect(Dialect):
    """json_type/json_extract with bound JSON paths; json_type gives the strict JSON type."""

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return f"?{len(self.params)}"

    def _path(self, path: list[str]) -> str:
        # Segments match FIELD_RE (no quotes), and the path is bound, not spliced in.
        return self.bind("$" + "".join(f'."{part}"' for part in path))

    def _type(self, path: list[str]) -> str:
        return f"IFNULL(json_type(body, {self._path(path)}), '')"

    def equals(self, path: list[str], value: Scalar) -> str:
        if value is None:
            return f"{self._type(path)} = 'null'"
        if isinstance(value, bool):
            return f"{self._type(path)} = '{'true' if value else 'false'}'"
        types = "('text')" if isinstance(value, str) else "('integer', 'real')"
        return (f"({self._type(path)} IN {types} AND "
                f"json_extract(body, {self._path(path)}) = {self.bind(value)})")

    def in_(self, path: list[str], values: list[Scalar]) -> str:
        # Strings and numbers go as one bound JSON array each: no limit on bound variables.
        strings = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        parts = [self.equals(path, v) for v in dict.fromkeys(
            v for v in values if v is None or isinstance(v, bool))]
        for group, types in ((strings, "('text')"), (numbers, "('integer', 'real')")):
            if group:
                parts.append(f"({self._type(path)} IN {types} AND json_extract(body, "
                             f"{self._path(path)}) IN (SELECT value FROM json_each("
                             f"{self.bind(json.dumps(group))})))")
        return "(" + " OR ".join(parts) + ")"

    def exists(self, path: list[str]) -> str:
        return f"json_type(body, {self._path(path)}) IS NOT NULL"

    def compare(self, path: list[str], op: str, value: str | int | float) -> str:
        types = "('text')" if isinstance(value, str) else "('integer', 'real')"
        return (f"({self._type(path)} IN {types} AND "
                f"json_extract(body, {self._path(path)}) {op} {self.bind(value)})")

    def ids(self, values: list[str]) -> str:
        return f"id IN (SELECT value FROM json_each({self.bind(json.dumps(values))}))"

    def sort_key(self, path: list[str]) -> list[str]:
        rank = (f"CASE json_type(body, {self._path(path)}) WHEN 'integer' THEN 1 "
                "WHEN 'real' THEN 1 WHEN 'text' THEN 2 WHEN 'true' THEN 3 WHEN 'false' THEN 3 "
                "WHEN 'array' THEN 4 WHEN 'object' THEN 4 END")
        return [rank, f"json_extract(body, {self._path(path)})"]


def _unavailable(exc: BaseException) -> errors.GatewayError:
    return errors.get("services.storage.unavailable", f"SQLite: {exc}")


class SqliteStorage(Storage):
    backend = "sqlite"
    dialect = SqliteDialect

    def __init__(self, path: str, prefix: str = "") -> None:
        super().__init__()
        if prefix and not PREFIX_RE.fullmatch(prefix):
            raise ValueError(f"invalid storage schema {prefix!r}: letters, digits and '_' only")
        self.path = path
        self.table = f'"{prefix + "_" if prefix else ""}gateway_documents"'
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> SqliteStorage:
        """Connect and create the table and indexes if absent (idempotent)."""
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise _unavailable(exc) from exc
        db = self._db
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if self.path != ":memory:":
                await _retry_locked(lambda: db.execute("PRAGMA journal_mode = WAL"))
            await db.execute("PRAGMA synchronous = NORMAL")
            name = self.table.strip('"')
            await _retry_locked(lambda: db.executescript(f"""
                CREATE TABLE IF NOT EXISTS {self.table} (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    collection TEXT NOT NULL,
                    id TEXT NOT NULL,
                    body TEXT NOT NULL,
                    expires_at REAL,
                    UNIQUE (collection, id)
                );
                CREATE INDEX IF NOT EXISTS "{name}_seq" ON {self.table} (collection, seq);
                CREATE INDEX IF NOT EXISTS "{name}_expires" ON {self.table} (expires_at)
                    WHERE expires_at IS NOT NULL;
            """))
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def ping(self) -> None:
        await self._fetchone("SELECT 1", [])

    # -- plumbing --------------------------------------------------------------------------------

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise errors.get("services.storage.unavailable", "SQLite: storage is closed")
        return self._db

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, alone: the task's transaction's, else under the storage lock."""
        tx = self._current_tx()
        async with tx.lock if tx is not None else self._lock:
            yield tx.conn if tx is not None else self._conn()

    async def _fetchone(self, sql: str, params: list[Any]) -> Any:
        async with self._locked() as db:
            try:
                async with db.execute(sql, params) as cursor:
                    return await cursor.fetchone()
            except sqlite3.OperationalError as exc:
                raise _unavailable(exc) from exc

    async def _fetchall(self, sql: str, params: list[Any]) -> list[Any]:
        async with self._locked() as db:
            try:
                async with db.execute(sql, params) as cursor:
                    return list(await cursor.fetchall())
            except sqlite3.OperationalError as exc:
                raise _unavailable(exc) from exc

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction, alone on the connection (a savepoint inside `transaction()`);
        also purges expired entries now and then."""
        tx = self._current_tx()
        if tx is not None:
            async with tx.lock, _savepoint(tx.conn, "gw_write"):
                yield tx.conn
            return
        async with self._lock:
            db = self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _unavailable(exc) from exc
            try:
                if self._purge_due():
                    await db.execute(f"DELETE FROM {self.table} WHERE expires_at <= ?",
                                     [time.time()])
                yield db
            except sqlite3.IntegrityError as exc:
                await db.execute("ROLLBACK")
                raise _duplicate(exc) from None
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        tx = self._current_tx()
        if tx is not None:  # nested: a savepoint of the enclosing transaction
            async with _savepoint(tx.conn, "gw_tx", tx.lock):
                yield
            return
        async with self._lock:
            db = self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _unavailable(exc) from exc
            tx = Transaction(db)
            token = self._tx.set(tx)
            try:
                yield
            except BaseException:
                async with tx.lock:
                    tx.active = False
                    with contextlib.suppress(sqlite3.Error):
                        await db.execute("ROLLBACK")
                raise
            finally:
                self._tx.reset(token)
            async with tx.lock:
                tx.active = False
                try:
                    await db.execute("COMMIT")
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):
                        await db.execute("ROLLBACK")
                    raise _unavailable(exc) from exc

    async def ensure_unique(self, collection: str, field: str) -> bool:
        check_unique(collection, field)
        name = unique_index_name(self.table, collection, field)
        self._unique[name] = (collection, field)
        # Both names are checked (no quote can occur): they can be spliced into the DDL.
        sql = (f'CREATE UNIQUE INDEX IF NOT EXISTS "{name}" ON {self.table} '
               f"(json_extract(body, '$.{field}')) WHERE collection = '{collection}'")
        try:
            async with self._write() as db:
                await db.execute(sql)
        except DuplicateValue:
            return False
        return True

    async def _drop_expired(self, db: aiosqlite.Connection, collection: str, id: str) -> None:
        await db.execute(f"DELETE FROM {self.table} WHERE collection = ? AND id = ? "
                         "AND expires_at <= ?", [collection, id, time.time()])

    # -- primitives ------------------------------------------------------------------------------

    async def _create(self, collection: str, id: str, body: str,
                      expires_at: float | None) -> bool:
        async with self._write() as db:
            await self._drop_expired(db, collection, id)
            cursor = await db.execute(
                f"INSERT INTO {self.table} (collection, id, body, expires_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (collection, id) DO NOTHING",
                [collection, id, body, expires_at])
            return cursor.rowcount == 1

    async def _create_or_replace(self, collection: str, id: str, body: str,
                                 expires_at: float | None) -> bool:
        async with self._write() as db:
            await self._drop_expired(db, collection, id)
            cursor = await db.execute(
                f"UPDATE {self.table} SET body = ?, expires_at = ? "
                "WHERE collection = ? AND id = ?", [body, expires_at, collection, id])
            if cursor.rowcount:
                return False
            await db.execute(f"INSERT INTO {self.table} (collection, id, body, expires_at) "
                             "VALUES (?, ?, ?, ?)", [collection, id, body, expires_at])
            return True

    async def _get_many(self, collection: str, ids: list[str]) -> dict[str, Any]:
        d = self.dialect()
        sql = f"SELECT id, body FROM {self.table} WHERE {self._where(d, collection, None)} " \
              f"AND {d.ids(ids)}"
        return dict(await self._fetchall(sql, d.params))

    async def _update(self, collection: str, id: str, changes: str) -> Any:
        async with self._write() as db:
            d = self.dialect()
            where = f"{self._where(d, collection, None)} AND id = {d.bind(id)}"
            async with db.execute(f"SELECT body FROM {self.table} WHERE {where}",
                                  d.params) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return None
            # json_patch would merge recursively and drop nulls: a top-level merge is asked.
            merged = {**json.loads(row[0]), **json.loads(changes)}
            text = json.dumps(merged, separators=(",", ":"), ensure_ascii=False)
            await db.execute(f"UPDATE {self.table} SET body = ? WHERE collection = ? AND id = ?",
                             [text, collection, id])
            return text

    async def _replace(self, collection: str, id: str, body: str) -> bool:
        async with self._write() as db:
            d = self.dialect()
            sql = (f"UPDATE {self.table} SET body = {d.bind(body)} "
                   f"WHERE {self._where(d, collection, None)} AND id = {d.bind(id)}")
            cursor = await db.execute(sql, d.params)
            return cursor.rowcount == 1

    async def _delete(self, collection: str, id: str) -> bool:
        async with self._write() as db:
            d = self.dialect()
            sql = (f"DELETE FROM {self.table} "
                   f"WHERE {self._where(d, collection, None)} AND id = {d.bind(id)}")
            cursor = await db.execute(sql, d.params)
            return cursor.rowcount == 1

    async def _take(self, collection: str, id: str) -> Any:
        async with self._write() as db:
            key = [collection, id]
            if HAS_RETURNING:
                async with db.execute(f"DELETE FROM {self.table} WHERE collection = ? AND id = ? "
                                      "RETURNING body, expires_at", key) as cursor:
                    row = await cursor.fetchone()
            else:  # pragma: no cover - old SQLite: the write transaction makes it atomic
                async with db.execute(f"SELECT body, expires_at FROM {self.table} "
                                      "WHERE collection = ? AND id = ?", key) as cursor:
                    row = await cursor.fetchone()
                if row is not None:
                    await db.execute(f"DELETE FROM {self.table} WHERE collection = ? AND id = ?",
                                     key)
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return row[0]

    async def _search(self, collection: str, query: Any, from_: int, size: int,
                      sort: SortKeys) -> tuple[int, Rows]:
        d = self.dialect()
        where = self._where(d, collection, query)
        count_params = list(d.params)
        order = self._order_by(d, sort)
        sql = (f"SELECT id, body FROM {self.table} WHERE {where} ORDER BY {order} "
               f"LIMIT {d.bind(size)} OFFSET {d.bind(from_)}")
        async with self._locked() as db:
            # Both statements under one lock hold: no write slips between total and hits.
            try:
                async with db.execute(f"SELECT COUNT(*) FROM {self.table} WHERE {where}",
                                      count_params) as cursor:
                    (total,) = await cursor.fetchone()  # type: ignore[misc]
                rows = []
                if size:
                    async with db.execute(sql, d.params) as cursor:
                        rows = [tuple(r) for r in await cursor.fetchall()]
            except sqlite3.OperationalError as exc:
                raise _unavailable(exc) from exc
        return total, rows

    async def _count(self, collection: str, query: Any) -> int:
        d = self.dialect()
        sql = f"SELECT COUNT(*) FROM {self.table} WHERE {self._where(d, collection, query)}"
        row = await self._fetchone(sql, d.params)
        return int(row[0])

    async def _find_unique(self, collection: str, field: str, value: str,
                           ) -> tuple[str, Any] | None:
        row = await self._fetchone(
            f"SELECT id, body FROM {self.table} WHERE collection = '{collection}' AND "
            f"json_extract(body, '$.{field}') = ? AND (expires_at IS NULL OR expires_at > ?) "
            "LIMIT 1", [value, time.time()])
        return None if row is None else (row[0], row[1])

    async def _delete_by_query(self, collection: str, query: Any) -> int:
        d = self.dialect()
        sql = f"DELETE FROM {self.table} WHERE {self._where(d, collection, query)}"
        async with self._write() as db:
            cursor = await db.execute(sql, d.params)
            return cursor.rowcount


def _duplicate(exc: sqlite3.IntegrityError) -> DuplicateValue:
    """SQLite says "UNIQUE constraint failed: index 'name'"."""
    match = re.search(r"index '([^']+)'", str(exc))
    return DuplicateValue(match.group(1) if match else None)


@asynccontextmanager
async def _savepoint(db: aiosqlite.Connection, name: str,
                     lock: asyncio.Lock | None = None) -> AsyncIterator[None]:
    """A savepoint: undone alone when the block raises, the enclosing transaction goes on.
    With `lock`, only the savepoint statements take it (the block makes its own calls)."""
    async with lock or _NO_LOCK:
        await db.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException as exc:
        async with lock or _NO_LOCK:
            await db.execute(f"ROLLBACK TO {name}")
            await db.execute(f"RELEASE {name}")
        if isinstance(exc, sqlite3.IntegrityError):
            raise _duplicate(exc) from None
        raise
    async with lock or _NO_LOCK:
        await db.execute(f"RELEASE {name}")


class _NoLock:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


async def _retry_locked(run: Any, attempts: int = 50) -> Any:
    """Switching to WAL or creating the table while other processes open the same new file
    can fail at once with "database is locked" (the busy handler does not cover it): retry."""
    for attempt in range(attempts):
        try:
            return await run()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05)
    return None
