"""Subscriptions and notifications: the realtime controller's and plugins' one way in.

Filters go to the engine (one entry per room), subscribers to `Rooms`, delivery to the Hub's
`join_channel` / `leave_channel` / `broadcast`, which reach whichever protocol owns each
connection. A notification is built once and broadcast once per set of channels: protocols
serialize it once per channel. `notify:document` / `notify:user` pipes may change it, or drop it
by raising (a pipe returning None leaves it unchanged, as for every pipe).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from .. import errors
from .engine import Engine
from .rooms import Channel, Rooms

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..events import EventBus
    from ..protocols.entrypoint import Hub
    from .cluster import ClusterRealtime

log = logging.getLogger("sanic_gateway.realtime")
# a document notification's `event`, from its action (Kuzzle's); other actions are writes
_EVENTS = {"publish": "publish", "delete": "delete", "mDelete": "delete",
           "deleteByQuery": "delete"}


class Realtime:
    """Rooms, subscriptions and notifications of one gateway. `rooms` may be any backend
    with `Rooms`' methods (a shared one, for a cluster)."""

    def __init__(self, hub: Hub, bus: EventBus, engine: Engine | None = None,
                 rooms: Rooms | None = None) -> None:
        self.hub = hub
        self.bus = bus
        self.engine = engine or Engine()
        self.rooms = rooms or Rooms()
        self._tasks: set[asyncio.Future[Any]] = set()
        self.cluster: ClusterRealtime | None = None  # set by join_cluster
        self._notify_document = bus.event("notify:document")
        self._notify_user = bus.event("notify:user")
        hub.on_leave.append(self.remove_connection)

    async def join_cluster(self, cluster: Cluster) -> None:
        """Cluster mode: rooms shared with the other members (before any subscription)."""
        from .cluster import ClusterRealtime, ClusterRooms

        rooms = ClusterRooms()
        self.rooms = rooms
        self.hub.node = cluster.node_id  # notifications say which member they come from
        self.cluster = ClusterRealtime(self, rooms, cluster)
        await self.cluster.start()

    async def leave_cluster(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = None

    def prepare(self) -> None:
        """Compile the notification pipes again (after listeners were set)."""
        self._notify_document = self.bus.event("notify:document")
        self._notify_user = self.bus.event("notify:user")

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, connection_id: str, index: str, collection: str, filters: Any, *,
                  scope: str = "all", users: str = "none", volatile: dict[str, Any] | None = None,
                  kuid: str | None = None, protocol: str | None = None,
                  ) -> dict[str, str] | None:
        """Register the filter (its room is shared with equivalent filters) and subscribe the
        connection; returns `{roomId, channel}`, or None if the connection is gone (Kuzzle's
        answer: no subscription is left behind for a closed connection)."""
        normalized = self.engine.normalize(index, collection, filters)
        room_id = normalized.id
        channel = Channel(room_id, scope, users)  # validates the options first
        if connection_id not in self.hub.connections:
            return None
        if not self.rooms.exists(room_id):
            self.engine.store(normalized)
        out = self._join(channel, index, collection, connection_id, volatile or {}, protocol)
        self.bus.hook("core:realtime:user:subscribe:after", {
            "roomId": room_id, "connectionId": connection_id, "index": index,
            "collection": collection, "filters": normalized.filter, "kuid": kuid,
        })
        return out

    def join(self, connection_id: str, room_id: str, *, scope: str = "all",
             users: str = "none", volatile: dict[str, Any] | None = None,
             protocol: str | None = None) -> dict[str, str] | None:
        room = self.rooms.room(room_id)
        if room is None:
            raise errors.get("core.realtime.room_not_found", room_id)
        if connection_id not in self.hub.connections:
            return None
        return self._join(Channel(room_id, scope, users), room.index, room.collection,
                          connection_id, volatile or {}, protocol, "join")

    def _join(self, channel: Channel, index: str, collection: str, connection_id: str,
              volatile: dict[str, Any], protocol: str | None,
              action: str = "subscribe") -> dict[str, str]:
        joined = self.rooms.add(index, collection, channel, connection_id, volatile)
        if joined.room_created:
            self.bus.hook("room:new", {"index": index, "collection": collection,
                                       "roomId": channel.room_id})
        if joined.subscribed:  # the others hear of it, not the newcomer
            self._user_notification(channel.room_id, "in", joined.count, index, collection,
                                    action, volatile, protocol, connection_id)
        self.hub.join_channel(channel.name, connection_id)
        return {"roomId": channel.room_id, "channel": channel.name}

    def unsubscribe(self, connection_id: str, room_id: str, *, notify: bool = True) -> None:
        """Raises `core.realtime.not_subscribed`. The last subscriber leaving removes the
        room and its filter."""
        left = self.rooms.remove(connection_id, room_id)
        for name in left.channels:
            self.hub.leave_channel(name, connection_id)
        if left.room_removed:
            if not self.rooms.elsewhere(room_id):
                self.engine.remove(room_id)
            self.bus.hook("room:remove", room_id)
        if notify and left.count:  # subscribers left (on this member or another)
            protocol = getattr(self.hub.connections.get(connection_id), "protocol", None)
            self._user_notification(room_id, "out", left.count, left.index, left.collection,
                                    "unsubscribe", left.volatile, protocol)
        self.bus.hook("core:realtime:user:unsubscribe:after", {
            "room": {"id": room_id, "index": left.index, "collection": left.collection},
            "subscription": {"roomId": room_id, "connectionId": connection_id,
                             "index": left.index, "collection": left.collection},
        })

    def remove_connection(self, connection_id: str) -> None:
        """A connection went away (or its token expired): it leaves every room."""
        for room_id in self.rooms.rooms_of(connection_id):
            try:
                self.unsubscribe(connection_id, room_id)
            except errors.GatewayError:
                log.exception("connection %s: cannot leave room %s", connection_id, room_id)

    # -- notifications -----------------------------------------------------------------------

    def publish(self, index: str, collection: str, source: dict[str, Any],
                _id: str | None = None, *, action: str = "publish", scope: str = "in",
                request: dict[str, Any] | None = None) -> Awaitable[None] | None:
        """Notify the rooms whose filter matches `source`. `request` gives the notification's
        `requestId`, `volatile`, `controller`, `protocol`, `timestamp` (ms)."""
        room_ids = self.engine.test(index, collection, source, _id)
        if not room_ids:
            return None
        info = request or {}
        notification = {
            "type": "document", "status": 200, "action": action, "scope": scope,
            "result": {"_id": _id, "_source": source}, "node": self.hub.node,
            "event": _EVENTS.get(action, "write"),
            "requestId": info.get("requestId"),
            "timestamp": info.get("timestamp") or int(time.time() * 1000),
            "volatile": info.get("volatile") or {}, "index": index, "collection": collection,
            "controller": info.get("controller", "realtime"), "protocol": info.get("protocol"),
        }
        channels = [c.name for room_id in room_ids for c in self.rooms.channels(room_id)
                    if c.wants_document(scope)]
        if self.cluster is not None:
            self.cluster.forward_document(room_ids, scope, notification)
        return self._dispatch(self._notify_document, channels, notification)

    def deliver_document(self, room_ids: list[str], notification: dict[str, Any]) -> None:
        """A notification another member matched: to this member's subscribers of `room_ids`."""
        scope = notification.get("scope")
        channels = [c.name for room_id in room_ids for c in self.rooms.channels(room_id)
                    if c.wants_document(scope)]
        out = self._dispatch(self._notify_document, channels, notification)
        if out is not None:
            self.spawn(out)

    def deliver_user(self, room_id: str, user: str, notification: dict[str, Any]) -> None:
        channels = [c.name for c in self.rooms.channels(room_id) if c.wants_user(user)]
        out = self._dispatch(self._notify_user, channels, notification)
        if out is not None:
            self.spawn(out)

    def _user_notification(self, room_id: str, user: str, count: int, index: str,
                           collection: str, action: str, volatile: dict[str, Any],
                           protocol: str | None, newcomer: str | None = None) -> None:
        channels = [c.name for c in self.rooms.channels(room_id) if c.wants_user(user)]
        cluster = self.cluster
        members = cluster.rooms.members_for_user(room_id, user) if cluster is not None else None
        if not channels and not members:
            return
        notification = {
            "type": "user", "status": 200, "user": user, "result": {"count": count},
            "node": self.hub.node, "timestamp": int(time.time() * 1000),
            "volatile": volatile, "index": index, "collection": collection,
            "controller": "realtime", "action": action, "protocol": protocol,
        }
        if cluster is not None and members:
            cluster.forward(members, ["u", room_id, user, notification])
        out = self._dispatch(self._notify_user, channels, notification, newcomer)
        if out is not None:
            self.spawn(out)

    def spawn(self, awaitable: Any) -> None:
        """Run a piped notification without waiting for it."""
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, event: Any, channels: list[str], notification: dict[str, Any],
                  skip: str | None = None) -> Awaitable[None] | None:
        """Broadcast now, or after the event's pipes when some listen. `skip`: a connection
        that must not get it (a newcomer, who has joined its channel once pipes are done)."""
        if not channels:
            return None
        if not event.active:
            self.hub.broadcast(channels, notification)
            return None
        return self._piped(event, channels, notification, skip)

    async def _piped(self, event: Any, channels: list[str], notification: dict[str, Any],
                     skip: str | None) -> None:
        try:
            changed = await event.fire(notification)
        except Exception as exc:  # a pipe refusing it: the notification is dropped
            log.info("%s: notification dropped: %s", event.name, exc)
            return
        if not changed:
            return
        mine = set(self.hub.channels_of(skip)) if skip is not None else ()
        shared = [c for c in channels if c not in mine]
        if shared:
            self.hub.broadcast(shared, changed)
        for channel in channels:  # rare: the newcomer's own channel, one member at a time
            if channel in mine:
                for member in self.hub.members(channel) - {skip}:
                    self.hub.notify([channel], member, changed)

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = self.rooms.metrics()
        if self.cluster is not None:
            out["cluster"] = self.cluster.metrics()
        return out

