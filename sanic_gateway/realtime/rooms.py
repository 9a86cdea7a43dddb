"""Rooms and subscriptions: who subscribed to which room, through which channels.

Everything the realtime controller knows about subscribers goes through `Rooms`, so that a
cluster can back it with a shared store (Redis) without touching the controller or the
protocols: a room is an index/collection and a filter's id; a subscription is a connection in
a room with its `volatile`; a channel is a room plus notification options (`scope`, `users`),
named as Kuzzle names it. Delivering to a channel's members stays the protocols' business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import errors

SCOPES = ("all", "in", "out", "none")
USERS = SCOPES
_USERS_DIGIT = {"all": "1", "in": "2", "out": "3", "none": "4"}
_SCOPE_DIGIT = {"all": "1", "in": "2", "out": "3", "none": ""}


@dataclass(frozen=True)
class Channel:
    """Notification options of a subscription; `name` = room id + a digest of the options."""

    room_id: str
    scope: str = "all"
    users: str = "none"

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise errors.get("core.realtime.invalid_scope")
        if self.users not in USERS:
            raise errors.get("core.realtime.invalid_users")

    @property
    def name(self) -> str:
        # Kuzzle's digest: users, cluster propagation (always on here), scope. Kuzzle writes
        # "3" for both users "out" and "none", merging their channels; "4" keeps them apart.
        return f"{self.room_id}-{_USERS_DIGIT[self.users]}1{_SCOPE_DIGIT[self.scope]}"

    def wants_document(self, scope: str) -> bool:
        return self.scope == "all" or self.scope == scope

    def wants_user(self, user: str) -> bool:
        return self.users == "all" or self.users == user


@dataclass
class Room:
    index: str
    collection: str
    members: set[str] = field(default_factory=set)  # connection ids
    channels: dict[str, Channel] = field(default_factory=dict)


@dataclass(frozen=True)
class Joined:
    """What `Rooms.add` did: a new room, a new subscriber, the room's size after."""

    room_created: bool
    subscribed: bool
    count: int


@dataclass(frozen=True)
class Left:
    """What `Rooms.remove` did: the subscription's volatile, channels it left, room state."""

    index: str
    collection: str
    volatile: dict[str, Any]
    channels: tuple[str, ...]
    count: int
    room_removed: bool


class Rooms:
    """In-process rooms. A cluster backend implements the same methods."""

    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}
        # connection id -> {room id: (volatile, channel names)}
        self._subscriptions: dict[str, dict[str, tuple[dict[str, Any], set[str]]]] = {}

    def exists(self, room_id: str) -> bool:
        return room_id in self._rooms

    def room(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def add(self, index: str, collection: str, channel: Channel, connection_id: str,
            volatile: dict[str, Any]) -> Joined:
        room = self._rooms.get(channel.room_id)
        created = room is None
        if room is None:
            room = self._rooms[channel.room_id] = Room(index, collection)
        room.channels.setdefault(channel.name, channel)
        subs = self._subscriptions.setdefault(connection_id, {})
        found = subs.get(channel.room_id)
        subscribed = found is None
        if found is None:
            subs[channel.room_id] = (volatile, {channel.name})
            room.members.add(connection_id)
        else:
            found[1].add(channel.name)
        return Joined(created, subscribed, len(room.members))

    def remove(self, connection_id: str, room_id: str) -> Left:
        """Raises `core.realtime.not_subscribed` if the connection is not in the room."""
        subs = self._subscriptions.get(connection_id)
        found = subs.pop(room_id, None) if subs is not None else None
        if found is None:
            raise errors.get("core.realtime.not_subscribed", connection_id, room_id)
        if not subs:
            del self._subscriptions[connection_id]
        room = self._rooms[room_id]
        room.members.discard(connection_id)
        removed = not room.members
        if removed:
            del self._rooms[room_id]
        return Left(room.index, room.collection, found[0], tuple(found[1]),
                    len(room.members), removed)

    def elsewhere(self, room_id: str) -> bool:
        """Whether other members of a cluster hold the room (never, on one node)."""
        return False

    def rooms_of(self, connection_id: str) -> list[str]:
        return list(self._subscriptions.get(connection_id, ()))

    def channels(self, room_id: str) -> list[Channel]:
        room = self._rooms.get(room_id)
        return list(room.channels.values()) if room is not None else []

    def count(self, room_id: str) -> int:
        """Subscribers of a room; raises `core.realtime.room_not_found`."""
        room = self._rooms.get(room_id)
        if room is None:
            raise errors.get("core.realtime.room_not_found", room_id)
        return len(room.members)

    def list(self) -> dict[str, dict[str, dict[str, int]]]:
        """Kuzzle's `realtime:list` shape: {index: {collection: {room id: subscribers}}}."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for room_id, room in self._rooms.items():
            out.setdefault(room.index, {}).setdefault(room.collection, {})[room_id] = \
                len(room.members)
        return out

    def metrics(self) -> dict[str, int]:
        return {"rooms": len(self._rooms), "subscriptions": len(self._subscriptions)}
