"""One collection of the storage, as given to a plugin (`context.accessors.storage`, SPEC 9)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sanic_gateway import errors

from .base import Doc, Storage, check_collection

# No dots: "plugin.<name>.<collection>" must never reach another plugin's or the gateway's space.
PLUGIN_PART_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class Repository:
    """The storage methods bound to one collection, so a holder cannot name another."""

    def __init__(self, storage: Storage, collection: str) -> None:
        self.storage = storage
        self.collection = check_collection(collection)

    @classmethod
    def for_plugin(cls, storage: Storage, plugin_name: str, collection: str) -> Repository:
        """The private collection `plugin.<plugin_name>.<collection>` of a plugin."""
        for name, value in (("plugin", plugin_name), ("collection", collection)):
            if not isinstance(value, str) or not PLUGIN_PART_RE.fullmatch(value):
                raise errors.get("services.storage.invalid_argument", name,
                                 "a name made of letters, digits, '_' and '-'")
        return cls(storage, f"plugin.{plugin_name}.{collection}")

    def __repr__(self) -> str:
        return f"Repository({self.collection!r}, {self.storage.backend})"

    async def create(self, body: Doc, id: str | None = None, *,
                     ttl: float | None = None) -> Doc:
        return await self.storage.create(self.collection, body, id, ttl=ttl)

    async def create_or_replace(self, id: str, body: Doc, *, ttl: float | None = None) -> Doc:
        return await self.storage.create_or_replace(self.collection, id, body, ttl=ttl)

    async def get(self, id: str) -> Doc:
        return await self.storage.get(self.collection, id)

    async def m_get(self, ids: Sequence[str]) -> list[Doc]:
        return await self.storage.m_get(self.collection, ids)

    async def exists(self, id: str) -> bool:
        return await self.storage.exists(self.collection, id)

    async def update(self, id: str, changes: Doc) -> Doc:
        return await self.storage.update(self.collection, id, changes)

    async def replace(self, id: str, body: Doc) -> Doc:
        return await self.storage.replace(self.collection, id, body)

    async def delete(self, id: str) -> None:
        await self.storage.delete(self.collection, id)

    async def search(self, query: Doc | None = None, from_: int = 0, size: int = 10,
                     sort: Any = None) -> Doc:
        return await self.storage.search(self.collection, query, from_=from_, size=size,
                                         sort=sort)

    async def count(self, query: Doc | None = None) -> int:
        return await self.storage.count(self.collection, query)
