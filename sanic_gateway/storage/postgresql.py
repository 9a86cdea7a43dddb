"""The server backend: PostgreSQL through an asyncpg pool, documents in a JSONB column.

Several gateways may share the database: every statement that must be atomic is one statement
(upserts, `UPDATE ... body || changes`, `DELETE ... RETURNING`), and schema creation runs under
an advisory lock so that processes starting together do not trip over each other's DDL.
A `transaction()` keeps one pooled connection for its block; the storage calls made inside it
use that connection, each in a savepoint, so that a refused write does not abort the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

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

SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TABLE = "gateway_documents"
POOL_MIN, POOL_MAX = 1, 10
CONNECT_TIMEOUT = 10.0
# Any constant: serializes the DDL of gateways starting at the same time.
DDL_LOCK_KEY = 0x5A6E_6761


class PostgresDialect(Dialect):
    """`#>` with bound text[] paths; JSONB comparisons keep the JSON types apart."""

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def _value(self, path: list[str]) -> str:
        return f"(body #> {self.bind(path)}::text[])"

    def equals(self, path: list[str], value: Scalar) -> str:
        # JSONB equality: 1 = 1.0, "1" <> 1, true <> 1.
        return f"COALESCE({self._value(path)} = {self.bind(json.dumps(value))}::jsonb, false)"

    def in_(self, path: list[str], values: list[Scalar]) -> str:
        return (f"COALESCE({self._value(path)} IN (SELECT jsonb_array_elements("
                f"{self.bind(json.dumps(values))}::jsonb)), false)")

    def exists(self, path: list[str]) -> str:
        return f"{self._value(path)} IS NOT NULL"

    def compare(self, path: list[str], op: str, value: str | int | float) -> str:
        # CASE, not AND: PostgreSQL does not promise to test the type first.
        if isinstance(value, str):
            compared = (f"(body #>> {self.bind(path)}::text[]) COLLATE \"C\" "
                        f"{op} {self.bind(value)}::text")
            kind = "string"
        else:
            compared = f"{self._value(path)} {op} {self.bind(json.dumps(value))}::jsonb"
            kind = "number"
        return (f"COALESCE(CASE WHEN jsonb_typeof({self._value(path)}) = '{kind}' "
                f"THEN {compared} END, false)")

    def ids(self, values: list[str]) -> str:
        return f"id = ANY({self.bind(values)}::text[])"

    def any_equals(self, path: list[str], values: list[Scalar]) -> str:
        # lax JSONPath: accessors and the filter unwrap arrays; `==` keeps JSON types apart
        # (segments match FIELD_RE: no quote to escape)
        jsonpath = "$" + "".join(f'."{part}"' for part in path) + " ? (@ == $v[*])"
        return (f"jsonb_path_exists(body, {self.bind(jsonpath)}::jsonpath, "
                f"jsonb_build_object('v', {self.bind(json.dumps(values))}::jsonb))")

    def sort_key(self, path: list[str]) -> list[str]:
        # JSONB's own order puts strings before numbers and compares strings by locale.
        rank = (f"CASE jsonb_typeof({self._value(path)}) WHEN 'number' THEN 1 "
                "WHEN 'string' THEN 2 WHEN 'boolean' THEN 3 WHEN 'array' THEN 4 "
                "WHEN 'object' THEN 4 END")
        text = (f"(CASE WHEN jsonb_typeof({self._value(path)}) = 'string' "
                f"THEN body #>> {self.bind(path)}::text[] END) COLLATE \"C\"")
        return [rank, text, self._value(path)]


_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.PostgresConnectionError,
                      asyncpg.exceptions.OperatorInterventionError, asyncpg.InterfaceError)


class _OneLinePoolWarnings(logging.Filter):
    """asyncpg's pool logs each failed attempt to restore its connections with a traceback,
    about every second while the server is down: one line instead, at most every 30 s."""

    INTERVAL = 30.0

    def __init__(self) -> None:
        super().__init__()
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        now = time.monotonic()
        if now - self._last < self.INTERVAL:
            return False
        self._last = now
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLinePoolWarnings())


def _is_down(exc: BaseException) -> bool:
    return isinstance(exc, _CONNECTION_ERRORS) and not isinstance(exc, asyncpg.DataError)


def _unavailable(exc: BaseException) -> errors.GatewayError:
    return errors.get("services.storage.unavailable",
                      f"PostgreSQL: {type(exc).__name__}: {exc}")


def _rowcount(status: str) -> int:
    """asyncpg answers "DELETE 3" / "UPDATE 1": the count is the last word."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresStorage(Storage):
    backend = "postgresql"
    dialect = PostgresDialect

    def __init__(self, dsn: str, schema: str | None = None) -> None:
        super().__init__()
        if schema is not None and not SCHEMA_RE.fullmatch(schema):
            raise ValueError(f"invalid storage schema {schema!r}: letters, digits and '_', "
                             "not starting with a digit")
        self.dsn = dsn
        self.schema = schema
        self.table = f'"{schema}".{TABLE}' if schema else TABLE
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> PostgresStorage:
        """Create the pool, then the schema, table and indexes if absent."""
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=POOL_MIN, max_size=POOL_MAX, timeout=CONNECT_TIMEOUT)
        except Exception as exc:
            if _is_down(exc) or isinstance(exc, asyncpg.PostgresError):
                raise _unavailable(exc) from exc
            raise
        try:
            async with self._acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK_KEY)
                if self.schema:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(f"""
                    CREATE TABLE IF NOT EXISTS {self.table} (
                        seq BIGINT GENERATED BY DEFAULT AS IDENTITY,
                        collection TEXT NOT NULL,
                        id TEXT NOT NULL,
                        body JSONB NOT NULL,
                        expires_at DOUBLE PRECISION,
                        PRIMARY KEY (collection, id)
                    );
                    CREATE INDEX IF NOT EXISTS {TABLE}_seq ON {self.table} (collection, seq);
                    CREATE INDEX IF NOT EXISTS {TABLE}_expires ON {self.table} (expires_at)
                        WHERE expires_at IS NOT NULL;
                """)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> None:
        async with self._acquire() as conn:
            await conn.fetchval("SELECT 1")

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (the task's transaction's, if any, alone); a lost server
        becomes services.storage.unavailable, a unique index's refusal DuplicateValue."""
        tx = self._current_tx()
        if tx is None and self._pool is None:
            raise errors.get("services.storage.unavailable", "PostgreSQL: storage is closed")
        try:
            if tx is not None:
                async with tx.lock:
                    yield tx.conn
            else:
                async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:  # type: ignore[union-attr]
                    yield conn
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateValue(exc.constraint_name) from None
        except Exception as exc:
            if _is_down(exc):
                raise _unavailable(exc) from exc
            raise

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a transaction (a savepoint inside `transaction()`); purges expired
        entries now and then first."""
        async with self._acquire() as conn:
            if self._purge_due():
                await conn.execute(f"DELETE FROM {self.table} WHERE expires_at <= $1",
                                   time.time())
            async with conn.transaction():
                yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        tx = self._current_tx()
        if tx is not None:  # nested: a savepoint of the enclosing transaction
            savepoint = tx.conn.transaction()
            async with tx.lock:
                await savepoint.start()
            try:
                yield
            except BaseException:
                async with tx.lock:
                    await savepoint.rollback()
                raise
            async with tx.lock:
                await savepoint.commit()
            return
        async with self._acquire() as conn:
            outer = conn.transaction()
            await outer.start()
            tx = Transaction(conn)
            token = self._tx.set(tx)
            try:
                yield
            except BaseException:
                async with tx.lock:
                    tx.active = False
                    with contextlib.suppress(Exception):
                        await outer.rollback()
                raise
            finally:
                self._tx.reset(token)
            async with tx.lock:
                tx.active = False
                await outer.commit()

    async def ensure_unique(self, collection: str, field: str) -> bool:
        check_unique(collection, field)
        name = unique_index_name(self.table, collection, field)
        self._unique[name] = (collection, field)
        # Both names are checked (no quote can occur): they can be spliced into the DDL.
        sql = (f'CREATE UNIQUE INDEX IF NOT EXISTS "{name}" ON {self.table} '
               f"((body ->> '{field}')) WHERE collection = '{collection}'")
        try:
            async with self._acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK_KEY)
                await conn.execute(sql)
        except DuplicateValue:
            return False
        return True

    async def _drop_expired(self, conn: asyncpg.Connection, collection: str, id: str) -> None:
        await conn.execute(f"DELETE FROM {self.table} WHERE collection = $1 AND id = $2 "
                           "AND expires_at <= $3", collection, id, time.time())

    # -- primitives ------------------------------------------------------------------------------

    async def _create(self, collection: str, id: str, body: str,
                      expires_at: float | None) -> bool:
        async with self._write() as conn:
            await self._drop_expired(conn, collection, id)
            inserted = await conn.fetchval(
                f"INSERT INTO {self.table} (collection, id, body, expires_at) "
                "VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (collection, id) DO NOTHING "
                "RETURNING true", collection, id, body, expires_at)
            return bool(inserted)

    async def _create_or_replace(self, collection: str, id: str, body: str,
                                 expires_at: float | None) -> bool:
        async with self._write() as conn:
            await self._drop_expired(conn, collection, id)
            # xmax = 0 only on a freshly inserted row: tells insert from update in one statement.
            return bool(await conn.fetchval(
                f"INSERT INTO {self.table} (collection, id, body, expires_at) "
                "VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (collection, id) DO UPDATE "
                "SET body = EXCLUDED.body, expires_at = EXCLUDED.expires_at "
                "RETURNING (xmax = 0)", collection, id, body, expires_at))

    async def _get_many(self, collection: str, ids: list[str]) -> dict[str, Any]:
        d = self.dialect()
        sql = (f"SELECT id, body FROM {self.table} "
               f"WHERE {self._where(d, collection, None)} AND {d.ids(ids)}")
        async with self._acquire() as conn:
            return {r["id"]: r["body"] for r in await conn.fetch(sql, *d.params)}

    async def _update(self, collection: str, id: str, changes: str) -> Any:
        d = self.dialect()
        sql = (f"UPDATE {self.table} SET body = body || {d.bind(changes)}::jsonb "
               f"WHERE {self._where(d, collection, None)} AND id = {d.bind(id)} RETURNING body")
        async with self._write() as conn:
            return await conn.fetchval(sql, *d.params)

    async def _replace(self, collection: str, id: str, body: str) -> bool:
        d = self.dialect()
        sql = (f"UPDATE {self.table} SET body = {d.bind(body)}::jsonb "
               f"WHERE {self._where(d, collection, None)} AND id = {d.bind(id)}")
        async with self._write() as conn:
            return _rowcount(await conn.execute(sql, *d.params)) == 1

    async def _delete(self, collection: str, id: str) -> bool:
        d = self.dialect()
        sql = (f"DELETE FROM {self.table} "
               f"WHERE {self._where(d, collection, None)} AND id = {d.bind(id)}")
        async with self._write() as conn:
            return _rowcount(await conn.execute(sql, *d.params)) == 1

    async def _take(self, collection: str, id: str) -> Any:
        async with self._write() as conn:
            row = await conn.fetchrow(
                f"DELETE FROM {self.table} WHERE collection = $1 AND id = $2 "
                "RETURNING body, expires_at", collection, id)
        if row is None or (row["expires_at"] is not None and row["expires_at"] <= time.time()):
            return None
        return row["body"]

    async def _search(self, collection: str, query: Any, from_: int, size: int,
                      sort: SortKeys) -> tuple[int, Rows]:
        d = self.dialect()
        where = self._where(d, collection, query)
        count_params = list(d.params)
        order = self._order_by(d, sort)
        sql = (f"SELECT id, body FROM {self.table} WHERE {where} ORDER BY {order} "
               f"LIMIT {d.bind(size)} OFFSET {d.bind(from_)}")
        in_tx = self._current_tx() is not None
        async with self._acquire() as conn, (
                contextlib.nullcontext() if in_tx
                else conn.transaction(isolation="repeatable_read", readonly=True)):
            # One snapshot for both statements: the total matches the hits (a transaction
            # of the caller's keeps its own snapshot rules).
            total = await conn.fetchval(f"SELECT COUNT(*) FROM {self.table} WHERE {where}",
                                        *count_params)
            rows = await conn.fetch(sql, *d.params) if size else []
        return total, [(r["id"], r["body"]) for r in rows]

    async def _count(self, collection: str, query: Any) -> int:
        d = self.dialect()
        sql = f"SELECT COUNT(*) FROM {self.table} WHERE {self._where(d, collection, query)}"
        async with self._acquire() as conn:
            return int(await conn.fetchval(sql, *d.params))

    async def _find_unique(self, collection: str, field: str, value: str,
                           ) -> tuple[str, Any] | None:
        async with self._acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT id, body FROM {self.table} WHERE collection = '{collection}' AND "
                f"(body ->> '{field}') = $1 AND (expires_at IS NULL OR expires_at > $2) LIMIT 1",
                value, time.time())
        return None if row is None else (row["id"], row["body"])

    async def _delete_by_query(self, collection: str, query: Any) -> int:
        d = self.dialect()
        sql = f"DELETE FROM {self.table} WHERE {self._where(d, collection, query)}"
        async with self._write() as conn:
            return _rowcount(await conn.execute(sql, *d.params))

