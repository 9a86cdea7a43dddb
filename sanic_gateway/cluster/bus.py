"""The cluster's message bus and membership, over Redis (pub/sub, a hash, atomic scripts).

Every server process (each worker of each node) is one member with its own `node_id`. Messages
go through two pub/sub channels per member: the broadcast channel every member listens to and
its own channel (`send(..., to=[ids])`). Pub/sub delivers at most once: what is published while
Redis is down, or while a member is reconnecting, is lost, which is why `on_reconnect` exists:
a member that reconnects re-publishes its state (storage stays the truth for security).

Membership: each member writes its description with a heartbeat time (Redis' own clock, so
members on machines whose clocks differ agree) into one hash, every `heartbeat` seconds, and
reads the hash back; a member whose beat is older than `node_timeout` is dropped (killed with -9,
frozen, cut off), one that stops cleanly says so at once. While Redis is unreachable nothing is
judged: membership resumes, with a grace of `node_timeout`, once it is back.

One supervising task keeps the subscription and the heartbeat alive; it reconnects by itself.
`send` never raises: with Redis down it logs once per outage and returns False. A command
Redis does not answer within `command_timeout` (a hung server, a black-holed network) is an
outage too: the member is degraded at once, and sends and shared counters stop waiting on Redis
until a heartbeat gets through again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("sanic_gateway.cluster")

Handler = Callable[[str, dict[str, Any]], Any]
# what is worth retrying: Redis gone, refusing, timing out, or answering garbage
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError, ConnectionError)
JOINED, LEFT = "cluster:joined", "cluster:left"  # the bus's own topics
RETRY_DELAY = 0.5  # seconds between two reconnection attempts


def _gone_here(described: Any) -> bool:
    """Whether a member described as running on this host has no process any more (a worker
    killed, whose replacement is starting): no need to wait for its heartbeat to time out."""
    if not isinstance(described, dict) or described.get("host") != socket.gethostname():
        return False
    pid = described.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        return False
    return False


class ClusterStartError(Exception):
    """Redis cannot be reached when the server starts: the message is the line shown."""


class Cluster:
    def __init__(self, url: str, *, prefix: str = "sanic-gateway", heartbeat: float = 1.0,
                 node_timeout: float = 3.0, command_timeout: float = 1.0) -> None:
        self.url = url
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.node_timeout = max(node_timeout, 2 * heartbeat)
        self.node_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.command_timeout = command_timeout
        self.redis: aioredis.Redis = aioredis.from_url(
            url, socket_timeout=command_timeout, socket_connect_timeout=command_timeout,
            health_check_interval=0, retry_on_timeout=False,
            # no silent reconnection: a lost connection is an outage the supervisor handles
            # (a pub/sub connection re-subscribed behind our back would hide lost messages)
            retry=Retry(NoBackoff(), 0))
        # bus messages: the same, but timed by `send` itself (asyncio.timeout), because
        # redis-py's socket_timeout writes each command from a task of its own, one turn of
        # the loop later; sent at once, a notification leaves for the other members before
        # this member spends milliseconds writing it to its own subscribers
        self._sender: aioredis.Redis = aioredis.from_url(
            url, socket_timeout=None, socket_connect_timeout=command_timeout,
            health_check_interval=0,
            retry_on_timeout=False, retry=Retry(NoBackoff(), 0))
        self.healthy = False
        self._gone: list[str] = []  # dead workers of this host the others must be told of
        self.on_member_joined: list[Callable[[str], Any]] = []
        self.on_member_left: list[Callable[[str], Any]] = []
        self.on_reconnect: list[Callable[[], Any]] = []
        # each returns a dict merged into this member's description at every heartbeat
        self.describers: list[Callable[[], dict[str, Any]]] = []
        self.started_at = time.time()
        self._handlers: dict[str, list[Handler]] = {}
        self._members: dict[str, dict[str, Any]] = {}  # node id -> description (self included)
        self._broadcast = self.key("bus", "all")
        self._own = self.key("bus", "node", self.node_id)
        self._members_key = self.key("members")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._outage_logged = False
        self._grace_until = 0.0  # Redis clock: no member is judged dead before
        self._background: set[asyncio.Task[Any]] = set()

    def key(self, *parts: str) -> str:
        """A Redis key of this cluster: `<prefix>:part:part`."""
        return ":".join((self.prefix, *parts))

    # -- messages ----------------------------------------------------------------------------

    def on(self, topic: str, handler: Handler) -> None:
        """Call `handler(sender_node_id, payload)` (sync or async) for each message on
        `topic` sent by another member. Handlers run in arrival order; keep them short."""
        self._handlers.setdefault(topic, []).append(handler)

    async def send(self, topic: str, payload: dict[str, Any],
                   to: Iterable[str] | None = None) -> bool:
        """Publish `payload` (JSON-serializable) on `topic` to every other member (`to` None)
        or to those members. False (logged once per outage) when Redis cannot take it, and
        at once while this member is degraded: a silent Redis would hold every sender for
        `command_timeout`, and what is sent meanwhile is resynchronised on recovery."""
        if not self.healthy:
            return False
        data = orjson.dumps({"s": self.node_id, "t": topic, "p": payload})
        sender = self._sender
        try:
            async with asyncio.timeout(self.command_timeout):
                if to is None:
                    await sender.publish(self._broadcast, data)
                else:
                    targets = [t for t in to if t != self.node_id]
                    if len(targets) == 1:
                        await sender.publish(self.key("bus", "node", targets[0]), data)
                    elif targets:
                        async with sender.pipeline(transaction=False) as pipe:
                            for target in targets:
                                pipe.publish(self.key("bus", "node", target), data)
                            await pipe.execute()
        except REDIS_ERRORS as exc:
            self.failed(exc)
            return False
        return True

    def failed(self, exc: BaseException) -> None:
        """A Redis command failed (refused, or not answered within `command_timeout`): this
        member is degraded at once, so that what can do without Redis (the counters) stops
        waiting on it, until the supervisor's next beat gets through. Said once per outage."""
        self.healthy = False
        if not self._outage_logged:
            self._outage_logged = True
            log.warning("cluster: Redis %s unreachable (%s: %s); serving on with what does "
                        "not need it, retrying", self.safe_url, type(exc).__name__, exc)

    @property
    def safe_url(self) -> str:
        from ..api.serverinfo import without_credentials

        return without_credentials(self.url)

    async def _dispatch(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            sender, topic, payload = message["s"], message["t"], message["p"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("cluster: a malformed message was ignored")
            return
        if sender == self.node_id:
            return
        if topic == LEFT:  # the sender itself, or a dead worker of the sender's host
            node = payload.get("node") if isinstance(payload, dict) else None
            if isinstance(node, str) and node != self.node_id:
                self._drop(node, "its process is gone (told by a member of its host)")
            elif node is None:
                self._drop(sender)
        elif topic == JOINED and isinstance(payload, dict):
            self._add(sender, payload)
        for handler in self._handlers.get(topic, ()):
            try:
                out = handler(sender, payload)
                if inspect.isawaitable(out):
                    await out
            except Exception:
                log.exception("cluster: handler of %r failed", topic)

    # -- membership --------------------------------------------------------------------------

    def members(self) -> dict[str, dict[str, Any]]:
        """Live members, this one included: node id -> description (host, pid, started and
        what `describers` add: protocols, connection counts...)."""
        members = dict(self._members)
        members[self.node_id] = self.describe()
        return members

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(),
                                "started": int(self.started_at * 1000)}
        for describer in self.describers:
            try:
                info.update(describer())
            except Exception:
                log.exception("cluster: a member description failed")
        return info

    def _add(self, node: str, info: dict[str, Any]) -> None:
        if node == self.node_id:
            return
        known = node in self._members
        self._members[node] = info
        if not known:
            log.info("cluster: member %s joined", node)
            self._fire(self.on_member_joined, node)

    def _drop(self, node: str, why: str | None = None) -> None:
        """`node` left (it said so), or is dropped (`why`: a warning)."""
        if self._members.pop(node, None) is not None:
            if why is None:
                log.info("cluster: member %s left", node)
            else:
                log.warning("cluster: member %s dropped: %s", node, why)
            self._fire(self.on_member_left, node)

    def _fire(self, callbacks: list[Callable[..., Any]], *args: Any) -> None:
        for callback in callbacks:
            try:
                out = callback(*args)
                if inspect.isawaitable(out):
                    task = asyncio.ensure_future(out)
                    self._background.add(task)
                    task.add_done_callback(self._finished)
            except Exception:
                log.exception("cluster: a membership callback failed")

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster: a membership callback failed", exc_info=task.exception())

    async def _beat(self) -> None:
        """Write this member's beat, read everyone's, drop the silent ones."""
        info = self.describe()
        seconds, micros = await self.redis.time()
        now = seconds + micros / 1e6
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._members_key, self.node_id,
                      orjson.dumps({"beat": now, "timeout": self.node_timeout, "info": info}))
            pipe.hgetall(self._members_key)
            entries = (await pipe.execute())[1]
        seen = set()
        dead = []
        gone: list[tuple[str, Any]] = []
        for raw_id, raw in entries.items():
            node = raw_id.decode()
            if node == self.node_id:
                continue
            try:
                entry = orjson.loads(raw)
                beat, described = float(entry["beat"]), entry["info"]
                # each member is judged by its own timeout: members may beat at other paces
                timeout = float(entry.get("timeout", self.node_timeout))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                dead.append(raw_id)
                continue
            if now - beat > timeout:
                if now >= self._grace_until:
                    dead.append(raw_id)
                continue
            if _gone_here(described):  # a crashed worker of this host: dropped at once
                dead.append(raw_id)
                gone.append((node, described.get("pid")))
                continue
            seen.add(node)
            self._add(node, described)
        if dead:
            await self.redis.hdel(self._members_key, *dead)
        # the others cannot see that pid: they are told (at start, once this member joined)
        for node, pid in gone:
            why = f"its process (pid {pid} on this host) is gone"
            if node in self._members:
                self._drop(node, why)
            else:  # a replacement starting: never counted it
                log.warning("cluster: member %s dropped: %s", node, why)
            self._gone.append(node)
        while self._gone and self.healthy:
            await self.send(LEFT, {"node": self._gone.pop()})
        if now >= self._grace_until:
            for node in [n for n in self._members if n not in seen]:
                self._drop(node, "silent for longer than its node_timeout")

    # -- life --------------------------------------------------------------------------------

    async def reach(self) -> None:
        """ClusterStartError if Redis cannot be reached; nothing is joined yet. The gateway
        asks before opening storage, so that a start refused for Redis writes nothing."""
        try:
            await self.redis.ping()
        except REDIS_ERRORS as exc:
            await self._close()
            raise self._unreachable(exc) from exc

    async def start(self) -> None:
        """Connect (ClusterStartError if Redis cannot be reached), join, then keep the
        subscription and the heartbeat alive in the background."""
        try:
            await self.redis.ping()
            pubsub = await self._subscribe()
            await self._beat()
        except REDIS_ERRORS as exc:
            await self._close()
            raise self._unreachable(exc) from exc
        self.healthy = True
        await self.send(JOINED, self.describe())
        while self._gone:
            await self.send(LEFT, {"node": self._gone.pop()})
        self._task = asyncio.get_running_loop().create_task(self._supervise(pubsub))

    def _unreachable(self, exc: BaseException) -> ClusterStartError:
        return ClusterStartError(f"cluster.redis {self.safe_url}: cannot connect: "
                                 f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        """Leave: the others drop this member at once."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *REDIS_ERRORS):
                await self._task
            self._task = None
        with contextlib.suppress(*REDIS_ERRORS):
            if self.healthy:
                await self.redis.hdel(self._members_key, self.node_id)
                await self.send(LEFT, {})
        for task in list(self._background):
            task.cancel()
        self.healthy = False
        await self._close()

    async def _close(self) -> None:
        for client in (self.redis, self._sender):
            with contextlib.suppress(*REDIS_ERRORS):
                await client.aclose()

    async def _subscribe(self) -> aioredis.client.PubSub:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._broadcast, self._own)
        except BaseException:
            await pubsub.aclose()
            raise
        return pubsub

    async def _supervise(self, pubsub: aioredis.client.PubSub | None) -> None:
        """Read messages and beat; on a failure, mark unhealthy and reconnect until it works,
        then fire on_reconnect."""
        while not self._stopping:
            try:
                if pubsub is None:
                    # connections opened before the outage are dead: none is used again
                    await self.redis.connection_pool.disconnect()
                    await self._sender.connection_pool.disconnect()
                    pubsub = await self._subscribe()
                    self._grace_until = time.time() + self.node_timeout  # refined below
                    seconds, _ = await self.redis.time()
                    self._grace_until = seconds + self.node_timeout
                    await self._beat()
                    self.healthy = True
                    self._outage_logged = False
                    log.warning("cluster: Redis %s reachable again", self.safe_url)
                    await self.send(JOINED, self.describe())
                    self._fire(self.on_reconnect)
                await self._serve(pubsub)
            except asyncio.CancelledError:
                if pubsub is not None:
                    with contextlib.suppress(*REDIS_ERRORS):
                        await pubsub.aclose()
                raise
            except REDIS_ERRORS as exc:
                self.healthy = False
                self.failed(exc)
                if pubsub is not None:
                    with contextlib.suppress(*REDIS_ERRORS):
                        await pubsub.aclose()
                    pubsub = None
                await asyncio.sleep(RETRY_DELAY)
            except Exception:  # a bug: say it, then go on as after an outage
                log.exception("cluster: bus failure")
                self.healthy = False
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                    pubsub = None
                await asyncio.sleep(RETRY_DELAY)

    async def _serve(self, pubsub: aioredis.client.PubSub) -> None:
        """Dispatch messages as they come; beat every `heartbeat` seconds."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat
        while True:
            wait = max(0.0, next_beat - loop.time())
            message = await pubsub.get_message(timeout=wait)
            if message is not None and message.get("type") == "message":
                await self._dispatch(message["data"])
            if loop.time() >= next_beat:
                await self._beat()
                if not self.healthy:  # a command failed meanwhile (a message may be lost)
                    self._recovered()
                next_beat = loop.time() + self.heartbeat

    def _recovered(self) -> None:
        """Commands failed while the subscription held: as after a reconnection, the others'
        news may be lost, so caches are dropped and state announced again."""
        self.healthy = True
        if self._outage_logged:
            self._outage_logged = False
            log.warning("cluster: Redis %s reachable again", self.safe_url)
        self._fire(self.on_reconnect)
