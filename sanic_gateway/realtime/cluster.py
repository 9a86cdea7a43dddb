"""Realtime across the members of a cluster: rooms known everywhere, notifications routed.

Every member keeps the filter of every room of the cluster in its engine, and knows which
members have subscribers in each room, with how many and which notifications their channels
want (document scopes, user events). A notification is matched once, on the member where it
happens (the publisher's, or a plugin's): that member delivers it to its own subscribers and
sends it, with the matching room ids, only to the members whose channels want it; those deliver
it to their subscribers without matching it again. A member with no matching room gets no
message.

The room table is replicated two ways: each member keeps its own rooms in a Redis hash written
before every change it announces on the bus (`rt:state`, versioned), so a member starting, or
coming back after Redis was restarted, reads the others' hashes; what the bus lost meanwhile is
re-published (`rt:full`) on reconnection. Versions make the order of hash reads and bus
messages irrelevant: a member's state is replaced by a snapshot only if the snapshot is newer.

`notify:document` / `notify:user` pipes run where the notification is delivered: on each member
with subscribers, once per notification (as on one node, where they run once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .. import errors
from ..cluster.bus import REDIS_ERRORS
from .rooms import Joined, Left, Room, Rooms

if TYPE_CHECKING:
    from ..cluster import Cluster
    from .service import Realtime

log = logging.getLogger("sanic_gateway.realtime")

# bus topics
STATE, FULL, HELLO, NOTIFY = "rt:state", "rt:full", "rt:hello", "rt:notify"
VERSION = "_v"  # the field of a member's room hash holding the version it was written at
OUTBOX_LIMIT = 100_000  # notifications waiting for Redis; more are dropped (said once)
RETRY_DELAY = 0.5
SYNC_WAIT = 1.0  # longest a subscription waits for the others to be told

_WANTS = {"all": "io", "in": "i", "out": "o", "none": ""}


@dataclass(slots=True)
class RemoteRoom:
    """A room as one other member holds it."""

    index: str
    collection: str
    count: int
    scopes: str  # document scopes its channels want: "i" (in), "o" (out)
    users: str  # user events its channels want


class ClusterRooms(Rooms):
    """`Rooms` of this member plus those of the other members: `count` and `list` answer for
    the cluster, `add`/`remove` give cluster-wide counts; channels stay this member's."""

    def __init__(self) -> None:
        super().__init__()
        self.remote: dict[str, dict[str, RemoteRoom]] = {}  # room id -> member -> room
        self.by_member: dict[str, set[str]] = {}  # member -> room ids
        self.changed: set[str] = set()  # local rooms to announce
        self.on_change: Any = None  # called when `changed` gets a room

    # -- what the controller sees

    def exists(self, room_id: str) -> bool:
        return room_id in self._rooms or room_id in self.remote

    def room(self, room_id: str) -> Room | None:
        room = self._rooms.get(room_id)
        if room is None and room_id in self.remote:
            some = next(iter(self.remote[room_id].values()))
            return Room(some.index, some.collection)
        return room

    def elsewhere(self, room_id: str) -> bool:
        return room_id in self.remote

    def remote_count(self, room_id: str) -> int:
        held = self.remote.get(room_id)
        return sum(r.count for r in held.values()) if held else 0

    def add(self, index: str, collection: str, channel: Any, connection_id: str,
            volatile: dict[str, Any]) -> Joined:
        joined = super().add(index, collection, channel, connection_id, volatile)
        self._changed(channel.room_id)
        return Joined(joined.room_created, joined.subscribed,
                      joined.count + self.remote_count(channel.room_id))

    def remove(self, connection_id: str, room_id: str) -> Left:
        left = super().remove(connection_id, room_id)
        self._changed(room_id)
        return Left(left.index, left.collection, left.volatile, left.channels,
                    left.count + self.remote_count(room_id), left.room_removed)

    def count(self, room_id: str) -> int:
        room = self._rooms.get(room_id)
        if room is None and room_id not in self.remote:
            raise errors.get("core.realtime.room_not_found", room_id)
        return (len(room.members) if room is not None else 0) + self.remote_count(room_id)

    def list(self) -> dict[str, dict[str, dict[str, int]]]:
        out = super().list()
        for room_id, held in self.remote.items():
            some = next(iter(held.values()))
            rooms = out.setdefault(some.index, {}).setdefault(some.collection, {})
            rooms[room_id] = rooms.get(room_id, 0) + sum(r.count for r in held.values())
        return out

    def _changed(self, room_id: str) -> None:
        self.changed.add(room_id)
        if self.on_change is not None:
            self.on_change()

    # -- routing

    def members_for_document(self, room_ids: list[str], scope: str) -> dict[str, list[str]]:
        """Member -> the matched rooms it holds with a channel wanting `scope`."""
        want = scope[:1]
        out: dict[str, list[str]] = {}
        remote = self.remote
        for room_id in room_ids:
            held = remote.get(room_id)
            if held:
                for member, room in held.items():
                    if want in room.scopes:
                        out.setdefault(member, []).append(room_id)
        return out

    def members_for_user(self, room_id: str, user: str) -> list[str]:
        want = user[:1]
        return [m for m, r in self.remote.get(room_id, {}).items() if want in r.users]

    # -- this member's rooms, as announced

    def entry(self, room_id: str, engine: Any) -> dict[str, Any] | None:
        """What the others learn of a local room (None: this member no longer holds it)."""
        room = self._rooms.get(room_id)
        normalized = engine.get(room_id) if room is not None else None
        if room is None or normalized is None:
            return None
        scopes = "".join(sorted({w for c in room.channels.values() for w in _WANTS[c.scope]}))
        users = "".join(sorted({w for c in room.channels.values() for w in _WANTS[c.users]}))
        return {"i": room.index, "c": room.collection, "f": normalized.filter,
                "n": len(room.members), "s": scopes, "u": users}

    def local_ids(self) -> list[str]:
        return list(self._rooms)


class ClusterRealtime:
    """Ties `Realtime` to the cluster bus: replicates the room table, forwards notifications
    to the members that want them, delivers those sent by the others."""

    def __init__(self, realtime: Realtime, rooms: ClusterRooms, cluster: Cluster) -> None:
        self.realtime = realtime
        self.rooms = rooms
        self.cluster = cluster
        self.engine = realtime.engine
        self.version = 0  # of this member's announcements
        self.seen: dict[str, int] = {}  # member -> newest version applied
        self.full = False  # the whole table must be written and announced again
        self._wake_flush = asyncio.Event()
        self._inbox: deque[tuple[str, str, Any]] = deque()
        self._wake_inbox = asyncio.Event()
        self._outbox: dict[str, list[orjson.Fragment]] = {}
        self._outbox_size = 0
        self._dropped_logged = False
        self._wake_send = asyncio.Event()
        self._changes = 0  # local changes made / announced: subscriptions wait for the latter
        self._announced = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Future[Any]] = set()
        self._stopping = False
        self.forwarded = 0  # notification messages sent to / received from other members
        self.received = 0
        rooms.on_change = self._on_change

    def _hash(self, member: str) -> str:
        return self.cluster.key("rt", "rooms", member)

    # -- life

    async def start(self) -> None:
        """Listen, then read the rooms of every member already there (before serving)."""
        cluster = self.cluster
        cluster.on(STATE, lambda sender, payload: self._receive(STATE, sender, payload))
        cluster.on(FULL, lambda sender, payload: self._receive(FULL, sender, payload))
        cluster.on(HELLO, self._hello)
        cluster.on(NOTIFY, self._notified)
        cluster.on_member_left.append(lambda member: self._receive("left", member, None))
        cluster.on_member_joined.append(self._joined)
        cluster.on_reconnect.append(self._reconnected)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._flush_loop()), loop.create_task(self._inbox_loop()),
                       loop.create_task(self._send_loop())]
        done = loop.create_future()
        for member in cluster.members():
            if member != cluster.node_id:
                self._receive("snapshot", member, None)
        self._receive("ready", "", done)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done, 5.0)

    async def stop(self) -> None:
        """Forget this member's rooms in Redis (the others drop them when it leaves)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        # a Redis call may turn a cancellation into its own timeout error, which the loops
        # take for an outage: woken, they see _stopping and end
        for event in (self._wake_flush, self._wake_inbox, self._wake_send):
            event.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
        for _, future in self._waiters:
            if not future.done():
                future.set_result(None)
        if self.cluster.healthy:
            with contextlib.suppress(Exception):
                await self.cluster.redis.delete(self._hash(self.cluster.node_id))

    async def find_room(self, room_id: str) -> None:
        """A room this member does not know may have been created on another member a moment
        ago (its subscriber was answered once the hash was written, the bus message may
        still be on its way): read it from the others' hashes, where it is written first."""
        members = [m for m in self.cluster.members() if m != self.cluster.node_id]
        if not members or not self.cluster.healthy:
            return
        try:
            async with self.cluster.redis.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.hget(self._hash(member), room_id)
                found = await pipe.execute()
        except REDIS_ERRORS as exc:
            self.cluster.failed(exc)
            return
        for member, raw in zip(members, found, strict=True):
            if raw is not None:
                self._set(member, room_id, orjson.loads(raw))

    def _joined(self, member: str) -> None:
        # a member seen again after being dropped (cut off, not dead): it must announce its
        # rooms again, which a new member does at no cost (it has none yet)
        task = asyncio.ensure_future(self.cluster.send(HELLO, {}, to=[member]))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _hello(self, sender: str, payload: Any) -> None:
        self.full = True
        self._wake_flush.set()

    def _reconnected(self) -> None:
        """Redis came back: what the bus carried meanwhile is lost; write and announce this
        member's rooms again, read the others'."""
        self.full = True
        self._wake_flush.set()
        for member in self.cluster.members():
            if member != self.cluster.node_id:
                self._receive("snapshot", member, None)

    # -- announcing this member's rooms

    def _on_change(self) -> None:
        self._changes += 1
        self._wake_flush.set()

    async def synced(self) -> None:
        """Wait (at most SYNC_WAIT) until the others were told of this member's changes, so
        that a client subscribing here, then publishing on another member, is notified."""
        target = self._changes
        if self._announced >= target or not self.cluster.healthy:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), SYNC_WAIT)

    async def _flush_loop(self) -> None:
        while not self._stopping:
            await self._wake_flush.wait()
            self._wake_flush.clear()
            try:
                while self.full or self.rooms.changed:
                    await self._flush()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:  # Redis down: all of it again once it is back
                self.full = True
                self.cluster.failed(exc)
                await asyncio.sleep(RETRY_DELAY)
                self._wake_flush.set()
            except Exception:
                self.full = True
                log.exception("cluster: announcing rooms failed")
                await asyncio.sleep(RETRY_DELAY)
                self._wake_flush.set()

    async def _flush(self) -> None:
        changes = self._changes
        full = self.full
        if full:
            ids = self.rooms.local_ids()
            self.rooms.changed.clear()
        else:
            ids = list(self.rooms.changed)
            self.rooms.changed.clear()
        self.version += 1
        entries = {room_id: self.rooms.entry(room_id, self.engine) for room_id in ids}
        key = self._hash(self.cluster.node_id)
        kept = {room_id: orjson.dumps(e) for room_id, e in entries.items() if e is not None}
        gone = [room_id for room_id, e in entries.items() if e is None]
        try:
            async with self.cluster.redis.pipeline(transaction=True) as pipe:
                if full:
                    pipe.delete(key)
                elif gone:
                    pipe.hdel(key, *gone)
                pipe.hset(key, mapping={**kept, VERSION: self.version})
                await pipe.execute()
        except BaseException:
            if not full:
                self.rooms.changed.update(ids)
            raise
        if full:
            self.full = False
            sent = await self.cluster.send(FULL, {"v": self.version, "r": {
                room_id: e for room_id, e in entries.items() if e is not None}})
        else:
            sent = await self.cluster.send(STATE, {"v": self.version, "r": entries})
        if not sent:
            self.full = True
            raise ConnectionError("the bus did not take the room table")
        self._announced = changes
        if self._waiters:
            waiting = []
            for target, future in self._waiters:
                if target <= changes:
                    if not future.done():
                        future.set_result(None)
                else:
                    waiting.append((target, future))
            self._waiters = waiting

    # -- the others' rooms, applied in order

    def _receive(self, kind: str, member: str, payload: Any) -> None:
        self._inbox.append((kind, member, payload))
        self._wake_inbox.set()

    async def _inbox_loop(self) -> None:
        while not self._stopping:
            await self._wake_inbox.wait()
            self._wake_inbox.clear()
            while self._inbox:
                kind, member, payload = self._inbox.popleft()
                try:
                    await self._apply(kind, member, payload)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if isinstance(exc, REDIS_ERRORS):  # on_reconnect reads it again later
                        self.cluster.failed(exc)
                    else:
                        log.exception("cluster: applying %s of %s failed", kind, member)

    async def _apply(self, kind: str, member: str, payload: Any) -> None:
        if kind == "ready":
            if not payload.done():
                payload.set_result(None)
        elif kind == STATE:
            version = int(payload["v"])
            if version > self.seen.get(member, -1):
                self.seen[member] = version
                for room_id, entry in payload["r"].items():
                    self._set(member, room_id, entry)
        elif kind == FULL:
            self.seen[member] = int(payload["v"])
            self._replace(member, payload["r"])
        elif kind == "snapshot":
            raw = await self.cluster.redis.hgetall(self._hash(member))
            version = raw.pop(VERSION.encode(), None)
            if version is None or int(version) <= self.seen.get(member, -1):
                return  # nothing written yet, or older than what the bus brought
            self.seen[member] = int(version)
            self._replace(member, {k.decode(): orjson.loads(v) for k, v in raw.items()})
        elif kind == "left":
            self.seen.pop(member, None)
            self._replace(member, {})
            with contextlib.suppress(Exception):
                await self.cluster.redis.delete(self._hash(member))

    def _replace(self, member: str, entries: dict[str, Any]) -> None:
        for room_id in list(self.rooms.by_member.get(member, ())):
            if room_id not in entries:
                self._set(member, room_id, None)
        for room_id, entry in entries.items():
            self._set(member, room_id, entry)

    def _set(self, member: str, room_id: str, entry: dict[str, Any] | None) -> None:
        rooms = self.rooms
        if entry is None:
            held = rooms.remote.get(room_id)
            if held is None or held.pop(member, None) is None:
                return
            rooms.by_member.get(member, set()).discard(room_id)
            if not held:
                del rooms.remote[room_id]
                if rooms.room(room_id) is None:
                    self.engine.remove(room_id)
            return
        index, collection = entry["i"], entry["c"]
        if not self.engine.exists(room_id):
            try:
                normalized = self.engine.load(index, collection, entry["f"])
            except ValueError as exc:
                log.warning("cluster: room %s of %s ignored: %s", room_id, member, exc)
                return
            if normalized.id != room_id:  # another room id scheme (a different seed)
                log.warning("cluster: room %s of %s ignored: its filter gives room %s here",
                            room_id, member, normalized.id)
                return
            self.engine.store(normalized)
        rooms.remote.setdefault(room_id, {})[member] = RemoteRoom(
            index, collection, int(entry["n"]), entry.get("s", ""), entry.get("u", ""))
        rooms.by_member.setdefault(member, set()).add(room_id)

    # -- notifications

    def forward_document(self, room_ids: list[str], scope: str,
                         notification: dict[str, Any]) -> None:
        """To each member holding matched rooms whose channels want `scope`: those rooms."""
        routes = self.rooms.members_for_document(room_ids, scope)
        if len(routes) == 1:
            for member, rooms in routes.items():
                self.forward((member,), ["d", rooms, notification])
            return
        by_rooms: dict[tuple[str, ...], list[str]] = {}
        for member, rooms in routes.items():
            by_rooms.setdefault(tuple(rooms), []).append(member)
        for rooms, members in by_rooms.items():
            self.forward(members, ["d", list(rooms), notification])

    def forward(self, members: Any, item: list[Any]) -> None:
        """Queue `item` for `members` (one serialization, however many members)."""
        if self._outbox_size >= OUTBOX_LIMIT:
            if not self._dropped_logged:
                self._dropped_logged = True
                log.warning("cluster: notifications to other members dropped: %d wait for "
                            "Redis already", self._outbox_size)
            return
        data = orjson.Fragment(orjson.dumps(item))
        outbox = self._outbox
        for member in members:
            box = outbox.get(member)
            if box is None:
                outbox[member] = [data]
            else:
                box.append(data)
            self._outbox_size += 1
        self._wake_send.set()

    async def _send_loop(self) -> None:
        while not self._stopping:
            await self._wake_send.wait()
            self._wake_send.clear()
            while self._outbox:
                outbox, self._outbox = self._outbox, {}
                size, self._outbox_size = self._outbox_size, 0
                sends = [self.cluster.send(NOTIFY, {"m": items}, to=[member])
                         for member, items in outbox.items()]
                # one member (the usual case): sent in this step, so that the bus message
                # leaves before this member writes to its own subscribers (the writes were
                # scheduled after this wake-up); gather would start it a turn later
                await (sends[0] if len(sends) == 1 else asyncio.gather(*sends))
                self.forwarded += size
                self._dropped_logged = False

    def _notified(self, sender: str, payload: dict[str, Any]) -> None:
        realtime = self.realtime
        for item in payload.get("m", ()):
            self.received += 1
            try:
                if item[0] == "d":
                    realtime.deliver_document(item[1], item[2])
                else:
                    realtime.deliver_user(item[1], item[2], item[3])
            except Exception:
                log.exception("cluster: a notification from %s could not be delivered", sender)

    def metrics(self) -> dict[str, int]:
        return {"members": sum(1 for rooms in self.rooms.by_member.values() if rooms),
                "remoteRooms": len(self.rooms.remote),
                "forwarded": self.forwarded, "received": self.received}
