"""WebSocket on the HTTP port, path `/`, written against the protocol interface only.

A frame is a Kuzzle request (JSON with `requestId`, `controller`, `action`, `jwt`, ...); its
answer is the envelope HTTP would send plus `room` = `requestId`. Requests of one connection
run concurrently (at most `max_in_flight`; beyond, the connection is not read until one ends).

Sanic accepts the HTTP upgrade; the connection is then served by a small asyncio protocol over
the `websockets` library's sans-I/O ServerProtocol (parsing, unmasking, close handshake, size
limit, pings), as Kuzzle serves it with uWebSockets: frames are handled as they arrive and
answers written at once, with no task or lock per message. Outgoing text frames are framed here
(`text_frame`: a server frame is unmasked, and no extension is negotiated, so its bytes are the
same for every client): a notification to a channel is serialized and framed once, then the
same bytes are written to each subscriber's socket. Writes are corked for one turn of the event
loop (as uWebSockets does): what a connection is sent while the loop runs its ready callbacks
goes out in one write at the end of the turn, so a burst of notifications (several publishes
handled in one turn, a batch from another cluster member) costs one system call per
connection, not one per frame. Sends never wait on a client: when its socket
buffer is full, messages wait in a queue of at most `send_queue`; a client that stops reading
fills it and is disconnected (close code 1011, as Kuzzle), costing the others nothing.
`idle_timeout`: a connection silent for half of it is pinged, and closed if still silent after
the other half. On shutdown, requests in flight are answered, then connections closed (1001).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from sanic import Sanic
from sanic.response import HTTPResponse
from websockets.datastructures import Headers
from websockets.frames import Opcode
from websockets.http11 import Request as HandshakeRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from .. import errors
from ..request import ClientConnection, Request
from .base import Protocol
from .entrypoint import EntryPoint

log = logging.getLogger("sanic_gateway.protocols.websocket")
# The websockets library logs every frame at DEBUG: frames carry tokens and passwords, so its
# logger stays at WARNING whatever the root level (--dev included); it also says "connection
# open" at INFO for every client.
_frames_log = logging.getLogger("sanic_gateway.protocols.websocket.frames")
_frames_log.setLevel(logging.WARNING)

PING = b'{"p":1}'
TOO_SLOW = "too much backpressure: client is too slow"
SHUTDOWN_GRACE = 10.0  # seconds given to requests in flight when the server stops


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, unfragmented server text frame carrying `payload` (UTF-8)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


PONG = text_frame(b'{"p":2}')


class _Connection(asyncio.Protocol):
    """One WebSocket connection once upgraded: framing in, framing out, its send queue."""

    def __init__(self, owner: WebSocketProtocol, transport: Any, ws: ServerProtocol,
                 connection: ClientConnection, http_protocol: Any) -> None:
        self.owner = owner
        self.transport = transport
        self.ws = ws
        self.connection = connection
        self.http_protocol = http_protocol  # Sanic's, told when the socket goes away
        self.queue: collections.deque[bytes] = collections.deque()  # frames
        self.corked: list[bytes] | None = None  # frames of this turn of the loop
        self.paused = False
        self.closed = False
        self.seen = True  # data received since the last idle check
        self.pinged = False
        self.fragments: list[bytes] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.reading_paused = False
        self.backlog: collections.deque[bytes] = collections.deque()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.seen = True
        ws = self.ws
        ws.receive_data(data)
        for frame in ws.events_received():
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    self._message(frame.data)
                else:
                    self.fragments = [frame.data]
            elif opcode is Opcode.CONT:
                self.fragments.append(frame.data)
                if frame.fin:
                    message, self.fragments = b"".join(self.fragments), []
                    self._message(message)
            elif opcode is Opcode.PONG:
                self.pinged = False
        self._flush_protocol()

    def _message(self, data: bytes) -> None:
        # at max_in_flight, reading is paused; what one read already brought waits here
        if self.reading_paused or self.backlog:
            self.backlog.append(data)
        else:
            self.owner.on_message(self, data)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        queue = self.queue
        while queue and not self.paused and not self.closed:
            self._write(queue.popleft())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.queue.clear()
        self.corked = None
        self.owner.on_closed(self)
        if not self.done.done():
            self.done.set_result(None)
        try:
            self.http_protocol.connection_lost(exc)  # Sanic cleans up its side
        except Exception:
            log.debug("sanic connection_lost", exc_info=True)

    # -- sending -----------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Send a text frame (`text_frame`) at the end of this turn of the loop, or queue it
        while the socket is full; a full queue means the client does not read: it is
        disconnected. (Paused, nothing is corked: pausing happens in a write, after uncork.)"""
        if self.closed:
            return
        if self.paused:
            if len(self.queue) < self.owner.send_queue:
                self.queue.append(frame)
            else:
                self.owner.too_slow(self)
        elif self.corked is not None:
            self.corked.append(frame)
        else:
            self.corked = [frame]
            self.owner.cork(self)

    def uncork(self) -> None:
        """Write what this turn of the loop sent, in one write."""
        frames, self.corked = self.corked, None
        if frames and not self.closed:
            self._write(frames[0] if len(frames) == 1 else b"".join(frames))

    def _write(self, frame: bytes) -> None:
        if self.ws.state is State.OPEN:  # not after a close frame (ours or the client's)
            self.transport.write(frame)

    def _flush_protocol(self) -> None:
        """Write what the WebSocket protocol produced (answers, pongs, close frames); close
        the socket when the protocol says the connection is over."""
        if self.corked:  # frames sent before come first
            self.uncork()
        out = self.ws.data_to_send()
        if out:
            eof = out[-1] == b""
            data = b"".join(out)
            if data:
                self.transport.write(data)
            if eof or self.ws.state is State.CLOSED:
                self.transport.close()
        elif self.ws.state is State.CLOSED:
            self.transport.close()

    def close(self, code: int, reason: str) -> None:
        """Send a close frame and close the socket (what is buffered is still sent)."""
        if self.closed:
            return
        if self.corked:
            self.uncork()
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
            out = b"".join(self.ws.data_to_send())
            if out:
                self.transport.write(out)
        self.transport.close()

    def abort(self) -> None:
        self.queue.clear()
        self.corked = None
        self.transport.abort()


class WebSocketProtocol(Protocol):
    name = "websocket"
    serializes_envelopes = True  # results go to JSON at once (see EntryPoint)

    def __init__(self) -> None:
        self.clients: dict[str, _Connection] = {}
        self.channels: dict[str, set[str]] = {}
        self.entry_point: EntryPoint | None = None
        self.closing = False
        self.send_queue = 50
        self.max_in_flight = 100
        self.max_size = 1 << 20
        self.idle_timeout = 60.0
        self.grace = SHUTDOWN_GRACE
        self.log = log
        self._idle_task: asyncio.Task[None] | None = None
        self._corked: list[_Connection] = []  # connections with frames of this turn

    # -- life --------------------------------------------------------------------------------

    def http_upgrades(self, app: Sanic, entry_point: EntryPoint) -> dict[str, Any]:
        """WebSocket upgrades on the HTTP port, at `/` (a plain GET there is HTTP's)."""
        self.max_size = int(app.config.WEBSOCKET_MAX_SIZE)
        return {"/": self.upgrade}

    def init(self, entry_point: EntryPoint, context: Any) -> None:
        self.entry_point = entry_point
        self.log = context.log
        config = entry_point.config
        self.send_queue = int(config.get("send_queue") or 50)
        self.max_in_flight = int(config.get("max_in_flight") or 100)
        self.idle_timeout = float(config.get("idle_timeout") or 60.0)
        timeout = context.config.get("limits", {}).get("request_timeout") or SHUTDOWN_GRACE
        self.grace = min(float(timeout), SHUTDOWN_GRACE)
        self.closing = False
        self._idle_task = asyncio.get_running_loop().create_task(self._watch_idle())

    async def stop(self) -> None:
        """Answer requests in flight (new ones get 503), then close every connection (1001)."""
        self.closing = True
        if self._idle_task is not None:
            self._idle_task.cancel()
            self._idle_task = None
        clients = list(self.clients.values())
        pending = [task for client in clients for task in client.tasks]
        if pending:
            await asyncio.wait(pending, timeout=self.grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while any(c.queue for c in clients) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for client in clients:
            client.close(1001, "server shutting down")
        if clients:
            await asyncio.wait([c.done for c in clients], timeout=2.0)

    async def _watch_idle(self) -> None:
        """One timer for all connections: silent for idle_timeout/2 -> pinged; still silent
        idle_timeout/2 later -> closed."""
        half = self.idle_timeout / 2
        while True:
            await asyncio.sleep(half)
            for client in list(self.clients.values()):
                if client.seen:
                    client.seen = False
                elif client.pinged:
                    self.log.info("websocket connection %s: idle timeout", client.connection.id)
                    client.close(1001, "idle timeout")
                elif client.ws.state is State.OPEN:
                    client.pinged = True
                    client.ws.send_ping(b"idle")
                    client._flush_protocol()

    def cork(self, client: _Connection) -> None:
        """`client` has frames to write at the end of this turn of the loop."""
        if not self._corked:
            asyncio.get_running_loop().call_soon(self._uncork)
        self._corked.append(client)

    def _uncork(self) -> None:
        corked, self._corked = self._corked, []
        for client in corked:
            client.uncork()

    # -- upgrade -----------------------------------------------------------------------------

    async def upgrade(self, request: Any) -> HTTPResponse | None:
        """Accept the upgrade, then serve the socket until it closes."""
        entry_point = self.entry_point
        if entry_point is None or self.closing:
            return HTTPResponse(b"server shutting down", status=503)
        # state OPEN: Sanic parsed the HTTP request; the protocol parses frames from now on
        ws = ServerProtocol(max_size=self.max_size, logger=_frames_log, state=State.OPEN)
        handshake = ws.accept(HandshakeRequest(request.path, Headers(request.headers.items())))
        if handshake.status_code != 101:
            return HTTPResponse(handshake.body, status=handshake.status_code,
                                headers=dict(handshake.headers.raw_items()))
        transport = request.transport
        http_protocol = transport.get_protocol()
        connection = ClientConnection(self.name, [request.ip], dict(request.headers))
        client = _Connection(self, transport, ws, connection, http_protocol)
        transport.set_protocol(client)
        transport.write(handshake.serialize())
        transport.resume_reading()  # Sanic pauses reading while a handler runs
        self.clients[connection.id] = client
        entry_point.new_connection(connection)
        await client.done
        return None

    # -- frames ------------------------------------------------------------------------------

    def on_message(self, client: _Connection, data: bytes) -> None:
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
        if type(payload) is dict and payload.get("p") == 1 and len(payload) == 1:
            client.send(PONG)
            return
        request_id = payload.get("requestId") if type(payload) is dict else None
        if not isinstance(request_id, str):
            request_id = None
        if self.closing:
            client.send(self._error(errors.get("core.fatal.service_unavailable",
                                               "the server is shutting down"), request_id))
            return
        try:
            request = entry_point.request(payload, client.connection, data)
        except errors.GatewayError as exc:
            client.send(self._error(exc, request_id))
            return
        task = asyncio.get_running_loop().create_task(self._run(client, request))
        client.tasks.add(task)
        task.add_done_callback(lambda done: self._done(client, done))
        if len(client.tasks) >= self.max_in_flight and not client.reading_paused:
            client.reading_paused = True
            client.transport.pause_reading()

    def _done(self, client: _Connection, task: asyncio.Task[None]) -> None:
        client.tasks.discard(task)
        if not client.reading_paused or client.closed:
            return
        client.reading_paused = False
        backlog = client.backlog
        while backlog and not client.reading_paused:
            self.on_message(client, backlog.popleft())
        if not client.reading_paused:
            client.transport.resume_reading()

    async def _run(self, client: _Connection, request: Request) -> None:
        entry_point = self.entry_point
        assert entry_point is not None
        envelope = await entry_point.execute(request)
        envelope["room"] = envelope["requestId"]
        client.send(text_frame(entry_point.dumps(envelope)))

    def _error(self, error: errors.GatewayError, request_id: str | None) -> bytes:
        assert self.entry_point is not None
        envelope = self.entry_point.error_envelope(error, request_id)
        envelope["room"] = envelope["requestId"]
        return text_frame(self.entry_point.dumps(envelope))

    def on_closed(self, client: _Connection) -> None:
        connection_id = client.connection.id
        if self.clients.pop(connection_id, None) is not None and self.entry_point is not None:
            self.entry_point.remove_connection(connection_id)  # leaves every channel too

    def too_slow(self, client: _Connection) -> None:
        self.log.warning("websocket connection %s (%s): disconnected, %d messages waiting: "
                         "the client does not read", client.connection.id,
                         ", ".join(client.connection.ips), len(client.queue))
        client.ws.fail(1011, TOO_SLOW)
        client.abort()

    # -- the protocol contract ---------------------------------------------------------------

    def join_channel(self, channel: str, connection_id: str) -> None:
        if connection_id in self.clients:
            self.channels.setdefault(channel, set()).add(connection_id)

    def leave_channel(self, channel: str, connection_id: str) -> None:
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
            client.send(text_frame(self.entry_point.dumps({**payload, "room": channel})))

    def broadcast(self, channels: Sequence[str], payload: dict[str, Any]) -> None:
        if self.entry_point is None:
            return
        for channel in channels:
            members = self.channels.get(channel)
            if not members:
                continue
            frame = text_frame(self.entry_point.dumps({**payload, "room": channel}))
            clients = self.clients
            for connection_id in tuple(members):
                client = clients.get(connection_id)
                if client is not None:
                    client.send(frame)

    def disconnect(self, connection_id: str) -> None:
        client = self.clients.get(connection_id)
        if client is not None:
            client.close(1011, "Connection closed by remote host")
