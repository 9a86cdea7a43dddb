"""The gateway's document store (SPEC 9): `open_storage(url)` picks the backend from the URL.

`sqlite:///relative/path`, `sqlite:////absolute/path`, `sqlite:///:memory:` (the default is
`sqlite:///./data/gateway.db`) or `postgresql://user@host:port/db` (`postgres://` too). An optional
`?schema=NAME` keeps several gateways (or tests) apart in one database: a PostgreSQL schema, a
table-name prefix on SQLite.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .base import Storage
from .repository import Repository

__all__ = ["Repository", "Storage", "open_storage"]


def _schema_param(query: str, url: str) -> tuple[str, str | None]:
    """The query string without its `schema` parameter, and that parameter."""
    pairs = parse_qsl(query, keep_blank_values=True)
    schemas = [v for k, v in pairs if k == "schema"]
    if len(schemas) > 1 or (schemas and not schemas[0]):
        raise ValueError(f"storage URL {url!r}: give at most one non-empty schema")
    return urlencode([(k, v) for k, v in pairs if k != "schema"]), (schemas or [None])[0]


async def open_storage(url: str) -> Storage:
    """Connect, creating the schema (tables, indexes) if absent; close() it when done."""
    scheme = url.partition(":")[0].lower() if isinstance(url, str) else ""
    if scheme == "sqlite":
        from .sqlite import SqliteStorage

        # Not urlsplit: it would take "sqlite:////abs" apart and put it back differently.
        rest, _, query = url[len("sqlite:"):].partition("?")
        query, schema = _schema_param(query, url)
        if query or not (rest.startswith("///") or rest in ("", "//")):
            raise ValueError(f"storage URL {url!r}: use sqlite:///path/to/db "
                             "(sqlite:////absolute/path, sqlite:///:memory:)")
        path = unquote(rest[3:])  # sqlite:////abs keeps its leading slash
        return await SqliteStorage(path or ":memory:", schema or "").open()
    if scheme in ("postgresql", "postgres"):
        from .postgresql import PostgresStorage

        parts = urlsplit(url)
        query, schema = _schema_param(parts.query, url)
        dsn = urlunsplit(parts._replace(query=query))
        return await PostgresStorage(dsn, schema).open()
    raise ValueError(f"unsupported storage URL {url!r}: use sqlite:///path/to/db or "
                     "postgresql://user@host:port/db")
