"""The core `realtime` controller, Kuzzle's: subscribe, join, unsubscribe, count, list, publish.

Subscriptions belong to the connection that made them (`request.context.connection.id`), so
they need a connection that lives on: over HTTP (one request, one connection) `subscribe` and
`join` are refused with Kuzzle's `api.assert.unsupported_protocol`. Kuzzle's HTTP routes exist
for `list` and `publish` only.
"""

from __future__ import annotations

import time
from typing import Any

from plugin_specs import hookimpl

from .. import errors
from ..request import Request
from .base import Controller, CoreController, controller


def _resource(request: Request) -> tuple[str, str]:
    resource = request.input.resource
    for name in ("index", "collection"):
        value = getattr(resource, name)
        if value is None or value == "":
            raise errors.get("api.assert.missing_argument", name)
        if not isinstance(value, str):
            raise errors.get("api.assert.invalid_type", name, "string")
    return resource.index, resource.collection


def _room_id(request: Request) -> str:
    body = request.input.body
    if not isinstance(body, dict):
        raise errors.get("api.assert.body_required")
    room_id = body.get("roomId")
    if room_id is None:
        raise errors.get("api.assert.missing_argument", "body.roomId")
    if not isinstance(room_id, str):
        raise errors.get("api.assert.invalid_type", "body.roomId", "string")
    return room_id


def _option(request: Request, name: str, default: str) -> str:
    value = request.input.args.get(name)
    return default if value is None else value


class RealtimeController(CoreController):
    @hookimpl
    def api_controllers(self) -> list[Controller]:
        return [controller("realtime", {
            "subscribe": (self.subscribe, []),
            "join": (self.join, []),
            "unsubscribe": (self.unsubscribe, []),
            "count": (self.count, []),
            "list": (self.list, [("get", "/_listSubscriptions")]),
            "publish": (self.publish, [("post", "/:index/:collection/_publish")]),
        })]

    @property
    def realtime(self) -> Any:
        return self.gateway.realtime

    def _connection(self, request: Request, action: str) -> str:
        connection = request.context.connection
        if connection.id not in self.gateway.hub.connections:
            raise errors.get("api.assert.unsupported_protocol", connection.protocol,
                             f"realtime:{action}")
        return connection.id

    async def subscribe(self, request: Request) -> dict[str, str]:
        index, collection = _resource(request)
        connection_id = self._connection(request, "subscribe")
        user = request.context.user
        out = self.realtime.subscribe(
            connection_id, index, collection, request.input.body,
            scope=_option(request, "scope", "all"), users=_option(request, "users", "none"),
            volatile=request.input.volatile, kuid=getattr(user, "_id", None),
            protocol=request.context.protocol)
        if self.realtime.cluster is not None:  # answered once the other members know
            await self.realtime.cluster.synced()
        return out

    async def join(self, request: Request) -> dict[str, str]:
        room_id = _room_id(request)
        connection_id = self._connection(request, "join")
        cluster = self.realtime.cluster
        if cluster is not None and not self.realtime.rooms.exists(room_id):
            await cluster.find_room(room_id)  # made a moment ago on another member?
        out = self.realtime.join(
            connection_id, room_id, scope=_option(request, "scope", "all"),
            users=_option(request, "users", "none"), volatile=request.input.volatile,
            protocol=request.context.protocol)
        if self.realtime.cluster is not None:
            await self.realtime.cluster.synced()
        return out

    async def unsubscribe(self, request: Request) -> dict[str, str]:
        room_id = _room_id(request)
        self.realtime.unsubscribe(request.context.connection.id, room_id)
        return {"roomId": room_id}

    async def count(self, request: Request) -> dict[str, int]:
        return {"count": self.realtime.rooms.count(_room_id(request))}

    async def list(self, request: Request) -> dict[str, Any]:
        """Rooms of the index/collections the user may subscribe to."""
        rooms = self.realtime.rooms.list()
        user = request.context.user
        security = self.gateway.security
        kuid = getattr(user, "_id", None)
        if security is None or kuid is None:
            return rooms
        rights = await security.rights_for(kuid)
        return {index: kept for index, collections in rooms.items()
                if (kept := {c: r for c, r in collections.items()
                             if rights.allows("realtime", "subscribe", index, c)})}

    async def publish(self, request: Request) -> dict[str, bool]:
        index, collection = _resource(request)
        body = request.input.body
        if not isinstance(body, dict) or not body:
            raise errors.get("api.assert.body_required")
        user = request.context.user
        source = {**body, "_kuzzle_info": {"author": getattr(user, "_id", None),
                                           "createdAt": int(time.time() * 1000)}}
        _id = request.input.resource._id
        pending = self.realtime.publish(index, collection, source, _id, request={
            "requestId": request.id, "timestamp": int(request.timestamp * 1000),
            "volatile": request.input.volatile, "controller": "realtime",
            "protocol": request.context.protocol,
        })
        if pending is not None:
            await pending
        return {"published": True}
