"""A custom protocol to copy: newline-delimited JSON over TCP.

Each line a client sends is one API request (`{"controller": ..., "action": ..., "requestId":
...}`, as over WebSocket); each answer is one line: the response envelope, with `room` =
`requestId`. Notifications are lines too, with `room` = the channel. Try it:

    printf '{"controller":"server","action":"now"}\\n' | nc 127.0.0.1 7513

Enabled in gateway.yaml under `server.protocols.ndjson` (`module:` this class, `port:`). The
gateway calls `init(entry_point, context)` at start and `stop()` at shutdown; everything else
goes through `entry_point`: declare connections, build and execute requests, remove
connections. The five other methods are the gateway asking this protocol to deliver messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("handlers.ndjson")

MAX_BUFFERED = 1 << 20  # bytes waiting for a client that does not read: beyond, it is dropped


class NdjsonProtocol:
    def __init__(self) -> None:
        self.entry_point: Any = None
        self.server: asyncio.Server | None = None
        self.port: int | None = None
        self.writers: dict[str, asyncio.StreamWriter] = {}  # connection id -> socket
        self.channels: dict[str, set[str]] = {}  # channel -> connection ids
        self.tasks: set[asyncio.Task[None]] = set()

    async def init(self, entry_point: Any, context: Any) -> None:
        self.entry_point = entry_point
        self.context = context
        self.log = context.log
        config = entry_point.config  # this protocol's section of gateway.yaml
        max_size = context.config["server"]["max_request_size"]
        self.server = await asyncio.start_server(
            self.on_client, config.get("host", "127.0.0.1"), int(config.get("port", 7513)),
            limit=max_size, reuse_port=True)  # reuse_port: each worker process listens too
        self.port = self.server.sockets[0].getsockname()[1]
        self.log.info("ndjson protocol listening on port %d", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.tasks:  # answer the requests in flight
            await asyncio.wait(self.tasks, timeout=5)
        for writer in list(self.writers.values()):
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?",)
        connection = self.context.ClientConnection("ndjson", [str(peer[0])], {})
        self.entry_point.new_connection(connection)
        self.writers[connection.id] = writer
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # a line over max_request_size
                    self.send(connection.id, self.error(
                        self.context.errors.get("network.http.request_too_large"), None))
                    break
                if not line:
                    break
                if line.strip():
                    self.on_line(connection, line)
        except ConnectionError:
            pass
        finally:
            del self.writers[connection.id]
            self.entry_point.remove_connection(connection.id)  # also leaves every channel
            writer.close()

    def on_line(self, connection: Any, line: bytes) -> None:
        try:  # the raw JSON goes through the same input checks as HTTP's
            request = self.entry_point.request(line, connection)
        except self.context.errors.GatewayError as exc:  # not JSON, not an object...: 400
            self.send(connection.id, self.error(exc, None))
            return
        task = asyncio.get_running_loop().create_task(self.execute(connection.id, request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def execute(self, connection_id: str, request: Any) -> None:
        envelope = await self.entry_point.execute(request)  # the same envelope as HTTP
        envelope["room"] = envelope["requestId"]
        self.send(connection_id, envelope)

    def error(self, error: Any, request_id: str | None) -> dict[str, Any]:
        envelope = self.entry_point.error_envelope(error, request_id)
        envelope["room"] = envelope["requestId"]
        return envelope

    def send(self, connection_id: str, message: dict[str, Any]) -> None:
        self.write(connection_id, self.entry_point.dumps(message) + b"\n")

    def write(self, connection_id: str, line: bytes) -> None:
        writer = self.writers.get(connection_id)
        if writer is None or writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            self.log.warning("ndjson connection %s does not read: disconnected", connection_id)
            writer.transport.abort()
            return
        writer.write(line)

    # -- what the gateway asks of every protocol ---------------------------------------------

    def join_channel(self, channel: str, connection_id: str) -> None:
        self.channels.setdefault(channel, set()).add(connection_id)

    def leave_channel(self, channel: str, connection_id: str) -> None:
        members = self.channels.get(channel, set())
        members.discard(connection_id)
        if not members:
            self.channels.pop(channel, None)

    def notify(self, channels: list[str], connection_id: str, payload: dict[str, Any]) -> None:
        for channel in channels:
            self.send(connection_id, {**payload, "room": channel})

    def broadcast(self, channels: list[str], payload: dict[str, Any]) -> None:
        for channel in channels:
            members = self.channels.get(channel)
            if members:  # serialized once per channel, whatever the number of members
                line = self.entry_point.dumps({**payload, "room": channel}) + b"\n"
                for connection_id in tuple(members):
                    self.write(connection_id, line)

    def disconnect(self, connection_id: str) -> None:
        writer = self.writers.get(connection_id)
        if writer is not None:
            writer.close()
