"""MQTT: an embedded broker (amqtt) speaking Kuzzle's MQTT protocol through the entry point.

A client publishes a JSON request on `Kuzzle/request`; the gateway executes it and publishes the
response envelope on `Kuzzle/response` to that client only (other clients subscribed to
`Kuzzle/response` never see it). Notifications are published on the channel's topic, with
`room` = the channel: `notify` to one client, `broadcast` to every client that joined it.
With `allow_pubsub: false` (the default) a client may publish only requests; with `true` the
broker also routes plain publish/subscribe between clients, except on the response topic and on
live channel topics (so that nobody can forge a response or a notification).

Each client runs at most `max_in_flight` requests at once; with that many received and not
answered, its socket is not read until one ends (`PacedReader`, which also closes the
connection of a client sending a packet over `max_packet_size` before reading it). Each client
has a bounded send queue: a client that stops reading is disconnected when its queue is full,
and never holds up the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from amqtt.adapters import StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.mqtt.publish import PublishPacket

from .. import errors
from ..request import ClientConnection
from .http import dumps
from .mqtt_broker import PLUGIN_PATH, GatewayBridge
from .mqtt_reader import PacedReader

if TYPE_CHECKING:
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
    from amqtt.session import Session

log = logging.getLogger("sanic_gateway.mqtt")

REQUEST_TOPIC = "Kuzzle/request"
RESPONSE_TOPIC = "Kuzzle/response"
SEND_QUEUE = 1000  # messages waiting for one slow client before it is disconnected
MAX_IN_FLIGHT = 100  # requests of one client running at once; more wait their turn
MAX_REQUEST_SIZE = 1048576  # bytes, as server.max_request_size
# packets up to this much over max_request_size are read, and answered with a 413 envelope
PACKET_OVERHEAD = 65536
STOP_TIMEOUT = 10.0  # seconds given to requests in flight when the protocol stops


async def _settle(value: Any) -> Any:
    """Entry point and protocol methods may be plain or async, as in Kuzzle's contract."""
    return await value if inspect.isawaitable(value) else value


class _Client:
    """One connected MQTT client: its gateway connection, broker handler and send queue."""

    __slots__ = ("changed", "channels", "client_id", "connection", "handler", "pending", "queue",
                 "sender", "session", "slots", "unsettled")

    def __init__(self, client_id: str, session: Session, handler: BrokerProtocolHandler,
                 connection: ClientConnection, max_in_flight: int) -> None:
        self.client_id = client_id
        self.session = session
        self.handler = handler
        self.connection = connection
        self.channels: set[str] = set()
        self.queue: deque[bytes] = deque()  # PUBLISH packets not yet written
        self.sender: asyncio.Task[None] | None = None
        self.slots = asyncio.Semaphore(max_in_flight)  # requests running at once
        self.pending = 0  # requests received and not answered yet (running or waiting a slot)
        self.changed = asyncio.Event()  # set when `pending` or amqtt's queue shrinks
        self.unsettled = 0  # packets read since the loop last turned (see MqttProtocol._pace)

    def waiting(self) -> int:
        """Requests received and not answered, and messages amqtt read but did not hand on."""
        return self.pending + self.session.delivered_message_queue.qsize()


class MqttProtocol:
    """The built-in MQTT protocol, written against the protocol interface like any other.

    Reads from `entry_point.config`: `enabled`, `port` (1883; 0 picks a free one, then read
    `.port`), `allow_pubsub` (false), and optionally `host` and `max_request_size` (default:
    `server.host` and `server.max_request_size` from `context.config`, else 127.0.0.1 and
    1 MB), `max_packet_size` (max_request_size + 64 KB), `send_queue` (1000 messages) and
    `max_in_flight` (100 requests per client).

    The listening socket is the protocol's own (amqtt's `external` listener): it is opened with
    SO_REUSEPORT, so that each worker process serves MQTT on the same port, as the example
    ndjson protocol does. Requests go through the entry point's `request` (the input checks
    of every protocol), `execute`, `error_envelope` and `dumps`, as on the other protocols.
    """

    name = "mqtt"
    serializes_envelopes = True  # results go to JSON at once (see EntryPoint)

    def __init__(self) -> None:
        self.entry_point: Any = None
        self.context: Any = None
        self.config: dict[str, Any] = {}
        self.request_topic = REQUEST_TOPIC
        self.response_topic = RESPONSE_TOPIC
        self.allow_pubsub = False
        self.send_queue = SEND_QUEUE
        self.max_in_flight = MAX_IN_FLIGHT
        self.max_request_size = MAX_REQUEST_SIZE
        self.max_packet_size = MAX_REQUEST_SIZE + PACKET_OVERHEAD
        self.broker: Broker | None = None
        self.server: asyncio.Server | None = None
        self.port: int | None = None  # the bound port, once started (`port: 0` picks a free one)
        self._clients: dict[str, _Client] = {}  # by MQTT client id
        self._connections: dict[str, _Client] = {}  # by gateway connection id
        self._channels: dict[str, set[str]] = {}  # channel -> connection ids
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    # -- protocol interface --------------------------------------------------------------------

    async def init(self, entry_point: Any, context: Any = None) -> bool:
        """Start the broker. Returns False, starting nothing, when the protocol is disabled."""
        self.entry_point, self.context = entry_point, context
        self.config = config = dict(getattr(entry_point, "config", None) or {})
        if config.get("enabled") is False:
            return False
        self.allow_pubsub = bool(config.get("allow_pubsub", False))
        server = _server_section(context)
        self.send_queue = int(config.get("send_queue") or SEND_QUEUE)
        self.max_in_flight = int(config.get("max_in_flight") or MAX_IN_FLIGHT)
        self.max_request_size = int(config.get("max_request_size")
                                    or server.get("max_request_size") or MAX_REQUEST_SIZE)
        self.max_packet_size = int(config.get("max_packet_size")
                                   or self.max_request_size + PACKET_OVERHEAD)
        host = str(config.get("host") or server.get("host") or "127.0.0.1")
        port = int(config.get("port", 1883))
        _quiet_amqtt()
        broker = Broker({
            # connections come from our own socket (below), handed over by `_connected`
            "listeners": {"default": {"type": "external"}},
            "plugins": {PLUGIN_PATH: {}},
        })
        for plugin in broker.plugins_manager.plugins:
            if isinstance(plugin, GatewayBridge):
                plugin.protocol = self
        await broker.start()
        self.broker = broker
        try:
            self.server = await asyncio.start_server(self._connected, host, port,
                                                     reuse_port=True)
        except OSError as exc:
            await self._stop_broker()
            raise OSError(exc.errno, f"MQTT cannot listen on {host}:{port}: {exc.strerror} "
                                     "(server.protocols.mqtt.port)") from None
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("MQTT on %s:%d (allow_pubsub: %s)", host, self.port,
                 "true" if self.allow_pubsub else "false")
        return True

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """A TCP client: amqtt runs its MQTT session (our plugin sees it connect, publish...)."""
        broker = self.broker
        if broker is None or self._stopping:
            writer.close()
            return
        try:
            await broker.external_connected(PacedReader(reader, writer, self.max_packet_size),
                                            StreamWriterAdapter(writer), "default")
        except Exception:
            log.exception("MQTT: a client session failed")
            writer.close()

    def broadcast(self, channels: list[str], payload: Any) -> None:
        """Send `payload` on each channel's topic to every client that joined it."""
        for channel in channels:
            members = self._channels.get(channel)
            if not members:
                continue
            packet = _publish_packet(channel, dumps({**payload, "room": channel}))  # once for all
            for connection_id in tuple(members):
                client = self._connections.get(connection_id)
                if client is not None:
                    self._send(client, packet)

    def notify(self, channels: list[str], connection_id: str, payload: Any) -> None:
        """Send `payload` on each channel's topic to one client."""
        client = self._connections.get(connection_id)
        if client is None:
            return
        for channel in channels:
            self._send(client, _publish_packet(channel, dumps({**payload, "room": channel})))

    def join_channel(self, channel: str, connection_id: str) -> None:
        client = self._connections.get(connection_id)
        if client is None:
            return
        client.channels.add(channel)
        members = self._channels.get(channel)
        if members is None:
            members = self._channels[channel] = set()
            if self.broker is not None:  # a message retained there earlier would pass for ours
                self.broker.retained_messages.pop(channel, None)
        members.add(connection_id)

    def leave_channel(self, channel: str, connection_id: str) -> None:
        client = self._connections.get(connection_id)
        if client is not None:
            client.channels.discard(channel)
        members = self._channels.get(channel)
        if members is not None:
            members.discard(connection_id)
            if not members:
                del self._channels[channel]

    def disconnect(self, connection_id: str) -> None:
        """Close a client's network connection; `remove_connection` follows when it is gone."""
        client = self._connections.get(connection_id)
        if client is not None:
            self._spawn(client.handler.handle_connection_closed())

    async def stop(self) -> None:
        """Stop listening, answer requests in flight, then close every client."""
        if self.broker is None:
            return
        self._stopping = True
        if self.server is not None:
            self.server.close()
        try:
            await asyncio.wait_for(self._idle.wait(), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("MQTT stop: %d request(s) still running after %ss", self._in_flight,
                        STOP_TIMEOUT)
        senders = [c.sender for c in self._clients.values() if c.sender is not None]
        if senders:
            await asyncio.wait(senders, timeout=STOP_TIMEOUT)
        await self._stop_broker()
        if self.server is not None:
            await self.server.wait_closed()
            self.server = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in list(self._clients.values()):
            await self._remove(client)

    shutdown = stop

    async def _stop_broker(self) -> None:
        broker, self.broker = self.broker, None
        if broker is not None:
            await broker.shutdown()

    # -- rules, used by the broker plugin -------------------------------------------------------

    def may_publish(self, topic: str) -> bool:
        """Whether a client may publish on `topic` (a request, or pub/sub when allowed)."""
        if topic == self.request_topic:
            return True
        if not self.allow_pubsub or "#" in topic or "+" in topic:
            return False
        return topic != self.response_topic and topic not in self._channels

    def may_subscribe(self, topic: str) -> bool:
        """Anything but the request topic (nobody reads others' requests) and wildcards."""
        return topic != self.request_topic and "#" not in topic and "+" not in topic

    # -- broker events ---------------------------------------------------------------------------

    async def client_connected(self, client_id: str, session: Session) -> None:
        if self.broker is None:
            return
        handler = self.broker.sessions[client_id][1]
        previous = self._clients.get(client_id)
        if previous is not None:  # the same client id connected again: the new one wins
            if previous.handler is not handler:  # amqtt leaves the old one open (clean session)
                self._spawn(previous.handler.handle_connection_closed())
            await self._remove(previous)
        ips = [session.remote_address] if session.remote_address else []
        connection = ClientConnection(self.name, ips, {}, misc={"client_id": client_id})
        client = _Client(client_id, session, handler, connection, self.max_in_flight)
        self._clients[client_id] = client
        self._connections[connection.id] = client
        reader = handler.reader
        if isinstance(reader, PacedReader):
            reader.client_id = client_id
            reader.pace = lambda: self._pace(client)
        try:
            await _settle(self.entry_point.new_connection(connection))
        except Exception:
            log.exception("MQTT: new_connection failed for %r", connection)

    async def client_disconnected(self, client_id: str, session: Session) -> None:
        client = self._clients.get(client_id)
        # a late event from a connection that was replaced must not remove its successor
        if client is not None and client.session is session and _closed(client.handler):
            await self._remove(client)

    def message_received(self, client_id: str) -> None:
        """amqtt handed on one of the client's messages: its reader may go on."""
        client = self._clients.get(client_id)
        if client is not None:
            client.changed.set()

    async def handle_request(self, client_id: str, data: bytes | bytearray) -> None:
        """Execute one request published on the request topic; answer its sender only."""
        client = self._clients.get(client_id)
        if client is None:
            log.warning("MQTT: request from an unknown client %r ignored", client_id)
            return
        self._in_flight += 1
        self._idle.clear()
        client.pending += 1
        try:
            async with client.slots:
                body = self.entry_point.dumps(await self._execute(client, data))
            if client.connection.id in self._connections:
                self._send(client, _publish_packet(self.response_topic, body))
        finally:
            client.pending -= 1
            client.changed.set()
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _pace(self, client: _Client) -> None:
        """Before the client's next packet is read: wait while it has `max_in_flight`
        requests received and not answered. amqtt hands each packet read on in a task of its
        own, counted only once it ran: packets read since the last turn of the loop count
        until then, and a turn is given when they could reach the limit."""
        if client.waiting() + client.unsettled < self.max_in_flight:
            client.unsettled += 1
            return
        await asyncio.sleep(0)
        client.unsettled = 0
        while (client.waiting() >= self.max_in_flight
               and client.connection.id in self._connections):
            client.changed.clear()
            await client.changed.wait()
        client.unsettled = 1

    # -- internals -------------------------------------------------------------------------------

    async def _execute(self, client: _Client, data: bytes | bytearray) -> dict[str, Any]:
        """The response envelope for one published request; errors before the funnel
        (size, JSON, shape, shutting down) in the same envelope."""
        request_id = None
        try:
            if len(data) > self.max_request_size:
                raise errors.get("api.assert.size_limit",
                                 f"request over {self.max_request_size} bytes")
            try:  # the input checks of every protocol
                request = self.entry_point.request(bytes(data), client.connection)
            except errors.GatewayError:
                request_id = _request_id_of(data)  # so that the client can match the error
                raise
            request_id = request.id
            if self._stopping:
                raise errors.get("core.fatal.service_unavailable", "the gateway is shutting down")
            return await _settle(self.entry_point.execute(request))
        except errors.GatewayError as exc:
            return self.entry_point.error_envelope(exc, request_id)
        except Exception as exc:
            log.exception("MQTT: execute failed for request %s", request_id)
            return self.entry_point.error_envelope(exc, request_id)

    def _send(self, client: _Client, packet: bytes) -> None:
        if len(client.queue) >= self.send_queue:
            log.warning("MQTT client %s (%s) does not read: send queue full (%d), disconnecting",
                        client.client_id, client.connection.id, self.send_queue)
            client.queue.clear()
            self.disconnect(client.connection.id)
            return
        client.queue.append(packet)
        if client.sender is None:
            client.sender = asyncio.get_running_loop().create_task(self._drain(client))

    async def _drain(self, client: _Client) -> None:
        """Write a client's queue in order, all that waits in one write; then wait while the
        client's socket is full. (QoS 0 needs no broker state: amqtt's `mqtt_publish` would
        write and drain each packet alone, the main cost of a response.)"""
        queue, writer = client.queue, client.handler.writer
        try:
            while queue and writer is not None:
                data = b"".join(queue) if len(queue) > 1 else queue[0]
                queue.clear()
                writer.write(data)
                await writer.drain()
        except Exception as exc:  # the connection went away under us: its removal follows
            log.debug("MQTT: send to %s failed: %r", client.client_id, exc)
            queue.clear()
        finally:
            client.sender = None

    async def _remove(self, client: _Client) -> None:
        """Forget a client: its channels, its queue, then tell the entry point (once)."""
        connection_id = client.connection.id
        if self._connections.pop(connection_id, None) is None:
            return
        if self._clients.get(client.client_id) is client:
            del self._clients[client.client_id]
        for channel in tuple(client.channels):
            self.leave_channel(channel, connection_id)
        client.queue.clear()
        client.changed.set()  # a reader waiting for its turn reads the end of the stream
        try:
            await _settle(self.entry_point.remove_connection(connection_id))
        except Exception:
            log.exception("MQTT: remove_connection failed for %s", connection_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _publish_packet(topic: str, data: bytes) -> bytes:
    """A QoS 0 PUBLISH, as amqtt encodes it."""
    return bytes(PublishPacket.build(topic, data, None, False, 0, False).to_bytes())


def _request_id_of(data: bytes | bytearray) -> str | None:
    """The `requestId` of a refused request, when it is a JSON object with a string one."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    request_id = payload.get("requestId") if isinstance(payload, dict) else None
    return request_id if isinstance(request_id, str) else None


def _server_section(context: Any) -> Mapping[str, Any]:
    """`server` of the whole gateway.yaml, when the context carries it (`context.config`)."""
    config = getattr(context, "config", None)
    server = config.get("server") if isinstance(config, Mapping) else None
    return server if isinstance(server, Mapping) else {}


def _closed(handler: BrokerProtocolHandler) -> bool:
    writer = handler.writer
    return writer is None or bool(getattr(writer, "is_closed", False))


def _quiet_amqtt() -> None:
    """amqtt logs each connection at INFO and whole messages (requests carry `jwt`) at DEBUG,
    its state machines (`transitions`) every state change at INFO: keep them to warnings,
    unless their loggers were configured on purpose."""
    for name in ("amqtt", "transitions"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
