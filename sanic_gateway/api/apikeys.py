"""The security controller's API key actions (any user's keys, for administrators): kept
apart from security.py, which registers them with its other actions."""

from __future__ import annotations

from typing import Any

from .. import errors
from ..request import Request
from .auth import search_keys


def user_id_arg(request: Request) -> str:
    kuid = request.input.args.get("userId")
    if kuid is None or kuid == "":
        raise errors.get("api.assert.missing_argument", "userId")
    if not isinstance(kuid, str):
        raise errors.get("api.assert.invalid_type", "userId", "string")
    return kuid


class SecurityApiKeys:
    """security:createApiKey, searchApiKeys, deleteApiKey with Kuzzle's routes."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def actions(self) -> dict[str, Any]:
        return {
            "createApiKey": (self.create_api_key, [
                ("post", "/users/:userId/api-keys/_create")]),
            "searchApiKeys": (self.search_api_keys, [
                ("post", "/users/:userId/api-keys/_search")]),
            "deleteApiKey": (self.delete_api_key, [
                ("delete", "/users/:userId/api-keys/:_id")]),
        }

    async def create_api_key(self, request: Request) -> dict[str, Any]:
        security = self.core.security
        user = await security.store.get_user(user_id_arg(request))
        return await security.apikeys.create(
            user, request.input.args.get("expiresIn"),
            (request.input.body or {}).get("description"), request.input.resource._id)

    async def search_api_keys(self, request: Request) -> dict[str, Any]:
        return await search_keys(self.core.security, request, user_id_arg(request))

    async def delete_api_key(self, request: Request) -> dict[str, Any]:
        kuid = user_id_arg(request)
        return await self.core.security.apikeys.delete(kuid, request.input.resource._id)
