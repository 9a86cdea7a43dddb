"""WebSocket (SPEC 7.2) on the HTTP port, path `/`, written against the protocol interface only.

A frame is a Kuzzle request (JSON with `requestId`, `controller`, `action`, `jwt`, ...); its
answer is the envelope HTTP would send plus `room` = `requestId`. Requests of one connection
run concurrently (at most `max_in_flight`; beyond, the connection is not read until one ends).

Sends never wait on a client: each connection has a queue of at most `send_queue` messages
waiting for its socket; a client that stops reading fills it and is disconnected (close code
1011, as Kuzzle), so a slow client costs the others nothing. `idle_timeout`: the server pings;
a client that answers nothing for that long is closed. On shutdown, requests in flight are
answered, then each connection is closed with code 1001.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from sanic import Sanic
from sanic.exceptions import ServerError
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed

from .. import errors
from ..request import ClientConnection, Request
from .base import Protocol
from .entrypoint import EntryPoint

log = logging.getLogger("sanic_gateway.protocols.websocket")

PING = '{"p":1}'
PONG = '{"p":2}'
TOO_SLOW = "too much backpressure: client is too slow"
SHUTDOWN_GRACE = 10.0  # seconds given to requests in flight when the server stops
_SEND_ERRORS = (ConnectionClosed, ServerError, ConnectionError, asyncio.CancelledError)


class _Client:
    """One WebSocket connection: its socket, send queue and requests in flight."""

    __slots__ = ("connection", "limit", "on_overflow", "queue", "room", "tasks", "writer",
                 "ws")

    def __init__(self, ws: WebsocketImplProtocol, connection: ClientConnection,
                 limit: int, on_overflow: Any) -> None:
        self.ws = ws
        self.connection = connection
        self.limit = limit
        self.on_overflow = on_overflow
        self.queue: collections.deque[str] = collections.deque()
        self.writer: asyncio.Task[None] | bool | None = None  # who is writing, if anyone
        self.tasks: set[asyncio.Task[None]] = set()
        self.room: asyncio.Event | None = None  # set when a request ends (max_in_flight)

    def send(self, text: str) -> None:
        """Queue `text`; the connection's writer sends it when the socket takes it."""
        if self.writer is not None or self.queue:
            self._enqueue(text)
            return
        self.queue.append(text)
        self.writer = asyncio.get_running_loop().create_task(self._drain())

    async def send_now(self, text: str) -> None:
        """From a task already running (a request's): write at once if nobody else writes."""
        if self.writer is not None or self.queue:
            self._enqueue(text)
            return
        self.writer = True
        try:
            await self.ws.send(text)
            while self.queue:
                await self.ws.send(self.queue.popleft())
        except _SEND_ERRORS:
            self.queue.clear()
        finally:
            self.writer = None

    def _enqueue(self, text: str) -> None:
        if len(self.queue) >= self.limit:
            self.on_overflow(self)
            return
        self.queue.append(text)

    async def _drain(self) -> None:
        try:
            while self.queue:
                await self.ws.send(self.queue.popleft())
        except _SEND_ERRORS:
            self.queue.clear()
        finally:
            self.writer = None

    async def flush(self, timeout: float) -> None:
        """Wait (at most `timeout`) until everything queued was handed to the socket."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self.queue or self.writer is not None) and loop.time() < deadline:
            await asyncio.sleep(0.01)


class WebSocketProtocol(Protocol):
    name = "websocket"

    def __init__(self) -> None:
        self.clients: dict[str, _Client] = {}
        self.channels: dict[str, set[str]] = {}
        self.entry_point: EntryPoint | None = None
        self.closing = False
        self.send_queue = 50
        self.max_in_flight = 100
        self.grace = SHUTDOWN_GRACE
        self.log = log

    # -- life --------------------------------------------------------------------------------

    def http_upgrades(self, app: Sanic, entry_point: EntryPoint) -> dict[str, Any]:
        """Served on the HTTP port at `/`. The server pings every idle_timeout/2 and drops a
        client whose pong does not come within idle_timeout/2."""
        idle = float(entry_point.config.get("idle_timeout") or 60.0)
        app.config.WEBSOCKET_PING_INTERVAL = idle / 2
        app.config.WEBSOCKET_PING_TIMEOUT = idle / 2
        return {"/": self.serve}

    def init(self, entry_point: EntryPoint, context: Any) -> None:
        self.entry_point = entry_point
        self.log = context.log
        self.send_queue = int(entry_point.config.get("send_queue") or 50)
        self.max_in_flight = int(entry_point.config.get("max_in_flight") or 100)
        timeout = context.config.get("limits", {}).get("request_timeout") or SHUTDOWN_GRACE
        self.grace = min(float(timeout), SHUTDOWN_GRACE)
        self.closing = False

    async def stop(self) -> None:
        """Answer requests in flight (new ones get 503), then close every connection (1001)."""
        self.closing = True
        clients = list(self.clients.values())
        pending = [task for client in clients for task in client.tasks]
        if pending:
            await asyncio.wait(pending, timeout=self.grace)
        await asyncio.gather(*(client.flush(1.0) for client in clients))
        await asyncio.gather(*(self._close(client, 1001, "server shutting down")
                               for client in clients))

    @staticmethod
    async def _close(client: _Client, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(client.ws.close(code, reason), 2.0)
        except (TimeoutError, *_SEND_ERRORS):
            client.ws.fail_connection(code, reason)

    # -- one connection ----------------------------------------------------------------------

    async def serve(self, request: Any, ws: WebsocketImplProtocol) -> None:
        entry_point = self.entry_point
        if entry_point is None or self.closing:
            await ws.close(1001, "server shutting down")
            return
        connection = ClientConnection(self.name, [request.ip], dict(request.headers))
        client = _Client(ws, connection, self.send_queue, self._too_slow)
        self.clients[connection.id] = client
        entry_point.new_connection(connection)
        try:
            while True:
                if len(client.tasks) >= self.max_in_flight:
                    client.room = asyncio.Event()
                    await client.room.wait()
                data = await ws.recv()
                if data is not None:
                    self._frame(client, data)
        except ConnectionClosed:
            pass
        finally:
            del self.clients[connection.id]
            entry_point.remove_connection(connection.id)  # leaves every channel too

    def _frame(self, client: _Client, data: str | bytes) -> None:
        if data == PING:
            client.send(PONG)
            return
        entry_point = self.entry_point
        assert entry_point is not None
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            error = errors.get("network.websocket.unexpected_error", f"malformed JSON: {exc}")
            client.send(self._error(error, None))
            return
        if isinstance(payload, dict) and payload.get("p") == 1 and len(payload) == 1:
            client.send(PONG)
            return
        request_id = payload.get("requestId") if isinstance(payload, dict) else None
        if self.closing:
            client.send(self._error(errors.get("core.fatal.service_unavailable",
                                               "the server is shutting down"), request_id))
            return
        try:
            request = entry_point.request(payload, client.connection)
        except errors.GatewayError as exc:
            client.send(self._error(exc, request_id if isinstance(request_id, str) else None))
            return
        task = asyncio.get_running_loop().create_task(self._run(client, request))
        client.tasks.add(task)
        task.add_done_callback(lambda done: self._done(client, done))

    @staticmethod
    def _done(client: _Client, task: asyncio.Task[None]) -> None:
        client.tasks.discard(task)
        if client.room is not None:
            client.room.set()
            client.room = None

    async def _run(self, client: _Client, request: Request) -> None:
        entry_point = self.entry_point
        assert entry_point is not None
        envelope = await entry_point.execute(request)
        envelope["room"] = envelope["requestId"]
        await client.send_now(entry_point.dumps(envelope).decode())

    def _error(self, error: errors.GatewayError, request_id: str | None) -> str:
        assert self.entry_point is not None
        envelope = self.entry_point.error_envelope(error, request_id)
        envelope["room"] = envelope["requestId"]
        return self.entry_point.dumps(envelope).decode()

    def _too_slow(self, client: _Client) -> None:
        if client.connection.id not in self.clients:
            return
        self.log.warning("websocket connection %s (%s): disconnected, %d messages waiting: "
                         "the client does not read", client.connection.id,
                         ", ".join(client.connection.ips), len(client.queue))
        client.queue.clear()
        client.ws.fail_connection(1011, TOO_SLOW)
        transport = client.ws.io_proto.transport if client.ws.io_proto else None
        if transport is not None:
            transport.abort()

    # -- the protocol contract ---------------------------------------------------------------

    def join_channel(self, channel: str, connection_id: str) -> None:
        if connection_id in self.clients:
            self.channels.setdefault(channel, set()).add(connection_id)

    def leave_channel(self, channel: str, connection_id: str) -> None:
        self._leave(channel, connection_id)

    def _leave(self, channel: str, connection_id: str) -> None:
        members = self.channels.get(channel)
        if members is not None:
            members.discard(connection_id)
            if not members:
                del self.channels[channel]

    def notify(self, channels: Sequence[str], connection_id: str,
               payload: dict[str, Any]) -> None:
        client = self.clients.get(connection_id)
        if client is None or self.entry_point is None:
            return
        for channel in channels:
            client.send(self.entry_point.dumps({**payload, "room": channel}).decode())

    def broadcast(self, channels: Sequence[str], payload: dict[str, Any]) -> None:
        if self.entry_point is None:
            return
        for channel in channels:
            members = self.channels.get(channel)
            if not members:
                continue
            text = self.entry_point.dumps({**payload, "room": channel}).decode()
            for connection_id in tuple(members):
                client = self.clients.get(connection_id)
                if client is not None:
                    client.send(text)

    def disconnect(self, connection_id: str) -> None:
        client = self.clients.get(connection_id)
        if client is not None:
            client.ws.fail_connection(1011, "Connection closed by remote host")
