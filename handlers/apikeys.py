"""An authentication strategy written as a plugin: log in with an API key.

gateway.yaml declares it under `plugins.apikeys.strategies.apikey` with Kuzzle's method set.
A user gets a key with `POST /credentials/apikey/<kuid>/_create` (admin) or
`POST /_me/credentials/apikey/_create` (themselves), body `{"key": "..."}`; then
`POST /_login/apikey` with `{"key": "..."}` answers a JWT like a local login.
Keys are kept as SHA-256 digests in the plugin's private storage, never in clear.
"""

from __future__ import annotations

import hashlib
from typing import Any


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStrategy:
    async def init(self, config: dict[str, Any], context: Any) -> None:
        self.min_length = int(config.get("min_length", 24))
        self.keys = context.accessors.storage.repository("keys")  # one document per user
        self.errors = context.errors

    async def exists(self, request: Any, kuid: str) -> bool:
        return await self.keys.exists(kuid)

    async def validate(self, request: Any, credentials: dict[str, Any], kuid: str,
                       is_update: bool) -> bool:
        key = credentials.get("key") if isinstance(credentials, dict) else None
        if not isinstance(key, str) or len(key) < self.min_length:
            raise self.errors.BadRequestError(
                f"an API key is a string of at least {self.min_length} characters",
                id="security.credentials.rejected")
        return True

    async def create(self, request: Any, credentials: dict[str, Any], kuid: str,
                     ) -> dict[str, Any]:
        await self.keys.create_or_replace(kuid, {"digest": digest(credentials["key"])})
        return {"kuid": kuid}

    async def update(self, request: Any, credentials: dict[str, Any], kuid: str,
                     ) -> dict[str, Any]:
        return await self.create(request, credentials, kuid)

    async def delete(self, request: Any, kuid: str) -> None:
        await self.keys.delete(kuid)

    async def verify(self, request: Any, key: Any = None, **_: Any) -> str | dict[str, str]:
        if isinstance(key, str):
            found = await self.keys.search({"equals": {"digest": digest(key)}}, size=1)
            if found["hits"]:
                return found["hits"][0]["_id"]
        return {"message": "unknown API key"}

    async def get_info(self, request: Any, kuid: str) -> dict[str, Any]:
        return {"kuid": kuid, "hasKey": await self.keys.exists(kuid)}
