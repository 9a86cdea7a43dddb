"""What every protocol talks to: its EntryPoint, and the Hub they share.

A protocol declares its connections (`new_connection` / `remove_connection`), turns what a
client sent into a Request (`request(payload, connection)`) and runs it (`execute`): the same
funnel and the same envelope as HTTP, whichever protocol. The Hub knows which protocol owns each
connection and who listens on which channel, so `join_channel`, `notify`, `broadcast` (called by
plugins through `context.accessors.channels`, and by realtime) reach the right protocol, and a
connection that goes away leaves every channel.

The EntryPoint is also a read-only mapping of the protocol's own config section, and it is
`context.accessors.router` too: a protocol written the Kuzzle 1.x way (`init(config, context)`,
`router.execute(request, callback)`) loads unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import socket
import time
import types
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import access_log, errors, inputs
from ..api.base import Shared
from ..request import ClientConnection, Request, RequestContext, new_request_id
from .base import LoadedProtocol
from .http import _stack, dumps

if TYPE_CHECKING:
    from ..gateway import Gateway

log = logging.getLogger("sanic_gateway.protocols")

# Kuzzle sends server notifications (TokenExpired) on this channel.
SERVER_CHANNEL = "kuzzle:notification:server"
_MAX_DELAY = 86400.0 * 365  # call_later refuses absurd delays on some loops


class ProtocolStartError(Exception):
    def __init__(self, protocol: str, cause: BaseException) -> None:
        super().__init__(f"protocol {protocol!r}: init failed: {type(cause).__name__}: {cause}")
        self.protocol = protocol


class Hub:
    """Connections of every protocol, their channels and the tokens they used."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.protocols: dict[str, LoadedProtocol] = {}
        self.entry_points: dict[str, EntryPoint] = {}
        self.connections: dict[str, ClientConnection] = {}
        self.counts: dict[str, int] = {}  # open connections by protocol (metrics)
        self.owners: dict[str, str] = {}  # connection id -> protocol name
        self.channels: dict[str, set[str]] = {}  # channel -> connection ids
        # channel -> {protocol: members of that protocol}: a broadcast costs O(protocols)
        self.channel_owners: dict[str, dict[str, int]] = {}
        self.memberships: dict[str, set[str]] = {}  # connection id -> channels
        # connection id -> (token id, its expiry timer or None, the token)
        self.tokens: dict[str, tuple[str, asyncio.TimerHandle | None, Any]] = {}
        self.node = f"{socket.gethostname()}/{id(self)}"
        self._tasks: set[asyncio.Future[Any]] = set()
        self.stopped = False
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, set by start()
        # called with a connection id when it goes away or its token expires (realtime)
        self.on_leave: list[Callable[[str], None]] = []

    def add(self, protocol: LoadedProtocol) -> EntryPoint:
        self.protocols[protocol.name] = protocol
        entry_point = self.entry_points[protocol.name] = EntryPoint(self, protocol.name,
                                                                    protocol.spec)
        return entry_point

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """init(entry_point, context) of each protocol, in file order (awaited if async).
        Raises ProtocolStartError naming the protocol that failed."""
        self.stopped = False
        self.loop = asyncio.get_running_loop()
        for name, protocol in self.protocols.items():
            try:
                out = protocol.obj.init(self.entry_points[name], ProtocolContext(self, name))
                if inspect.isawaitable(out):
                    await out
            except Exception as exc:
                raise ProtocolStartError(name, exc) from exc

    async def stop(self) -> None:
        """Each protocol's optional `stop()`, last started first; then forget everything."""
        if self.stopped:
            return
        self.stopped = True
        for name, protocol in reversed(self.protocols.items()):
            stop = getattr(protocol.obj, "stop", None)
            if not callable(stop):
                continue
            try:
                out = stop()
                if inspect.isawaitable(out):
                    await out
            except Exception:
                log.exception("protocol %r: stop failed", name)
        for _, handle, _ in self.tokens.values():
            if handle is not None:
                handle.cancel()
        self.tokens.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- connections -------------------------------------------------------------------------

    def add_connection(self, protocol: str, connection: ClientConnection) -> None:
        if connection.id not in self.connections:
            self.counts[protocol] = self.counts.get(protocol, 0) + 1
        self.connections[connection.id] = connection
        self.owners[connection.id] = protocol
        self.gateway.bus.hook("connection:new", connection)

    def remove_connection(self, connection_id: str) -> None:
        if connection_id not in self.connections:
            return
        self._left(connection_id)
        connection = self.connections.pop(connection_id)
        for channel in self.memberships.pop(connection_id, ()):
            self._drop_member(channel, connection_id)
        owner = self.owners.pop(connection_id, None)
        if owner is not None:
            self.counts[owner] = self.counts.get(owner, 1) - 1
        token = self.tokens.pop(connection_id, None)
        if token is not None and token[1] is not None:
            token[1].cancel()
        self.gateway.bus.hook("connection:remove", connection)

    def disconnect(self, connection_id: str) -> bool:
        """Ask the owning protocol to close the connection."""
        protocol = self._owner(connection_id)
        if protocol is None:
            return False
        self._call(protocol, "disconnect", (connection_id,), {"connectionId": connection_id})
        return True

    # -- channels ----------------------------------------------------------------------------

    def join_channel(self, channel: str, connection_id: str) -> bool:
        """False when the connection is unknown (closed meanwhile)."""
        protocol = self._owner(connection_id)
        if protocol is None:
            return False
        members = self.channels.setdefault(channel, set())
        if connection_id not in members:
            members.add(connection_id)
            owners = self.channel_owners.setdefault(channel, {})
            owners[protocol.name] = owners.get(protocol.name, 0) + 1
        self.memberships.setdefault(connection_id, set()).add(channel)
        self._call(protocol, "join_channel", (channel, connection_id),
                   {"channel": channel, "connectionId": connection_id})
        return True

    def leave_channel(self, channel: str, connection_id: str) -> None:
        channels = self.memberships.get(connection_id)
        if not channels or channel not in channels:
            return
        channels.discard(channel)
        self._drop_member(channel, connection_id)

    def _drop_member(self, channel: str, connection_id: str) -> None:
        protocol = self._owner(connection_id)
        members = self.channels.get(channel)
        if members is not None and connection_id in members:
            members.discard(connection_id)
            if not members:
                del self.channels[channel]
            owners = self.channel_owners.get(channel)
            if owners is not None and protocol is not None:
                left = owners.get(protocol.name, 0) - 1
                if left > 0:
                    owners[protocol.name] = left
                else:
                    owners.pop(protocol.name, None)
                if not owners:
                    del self.channel_owners[channel]
        if protocol is not None:
            self._call(protocol, "leave_channel", (channel, connection_id),
                       {"channel": channel, "connectionId": connection_id})

    def members(self, channel: str) -> frozenset[str]:
        return frozenset(self.channels.get(channel, ()))

    def channels_of(self, connection_id: str) -> frozenset[str]:
        return frozenset(self.memberships.get(connection_id, ()))

    def notify(self, channels: Sequence[str], connection_id: str,
               payload: dict[str, Any]) -> bool:
        """Send `payload` to one connection, once per channel (`room` = the channel)."""
        protocol = self._owner(connection_id)
        if protocol is None:
            return False
        channels = list(channels)
        self._call(protocol, "notify", (channels, connection_id, payload),
                   {"channels": channels, "connectionId": connection_id, "payload": payload})
        return True

    def broadcast(self, channels: Sequence[str], payload: dict[str, Any]) -> None:
        """Send `payload` to every connection on each channel; each protocol is called once
        with the channels it has listeners on."""
        by_protocol: dict[str, list[str]] = {}
        for channel in channels:
            for owner in self.channel_owners.get(channel, ()):
                by_protocol.setdefault(owner, []).append(channel)
        for name, subset in by_protocol.items():
            self._call(self.protocols[name], "broadcast", (subset, payload),
                       {"channels": subset, "payload": payload})

    # -- tokens ------------------------------------------------------------------------------

    def track_token(self, connection_id: str, token: Any) -> None:
        """A token used on a live connection: when it expires the client gets Kuzzle's
        TokenExpired notification and the connection leaves its channels; when it is revoked
        (logout, revokeTokens, a deleted user or API key) it leaves them at once
        (`token_revoked`)."""
        if connection_id not in self.connections or token is None:
            return
        token_id = getattr(token, "_id", None)
        if token_id is None or getattr(token, "userId", None) == "-1":
            return
        if self.gateway.security.tokens.known_revoked(token_id):
            return  # the request was its logout
        current = self.tokens.get(connection_id)
        if current is not None:
            if current[0] == token_id:
                return
            if current[1] is not None:
                current[1].cancel()
        handle = None
        expires_at = getattr(token, "expiresAt", None)
        if expires_at and expires_at > 0:
            delay = min(max(0.0, expires_at / 1000 - time.time()), _MAX_DELAY)
            handle = asyncio.get_running_loop().call_later(
                delay, self._token_expired, connection_id, token_id)
        self.tokens[connection_id] = (token_id, handle, token)

    def _token_expired(self, connection_id: str, token_id: str) -> None:
        current = self.tokens.get(connection_id)
        if current is None or current[0] != token_id:
            return
        self.notify([SERVER_CHANNEL], connection_id, {
            "status": 200, "info": "This is an automated server notification",
            "message": "Authentication Token Expired", "type": "TokenExpired",
            "node": self.node,
        })
        self._unauthenticated(connection_id)

    def token_revoked(self, jti: str | None, kuid: str | None) -> None:
        """Token `jti`, or every token of user `kuid`, was revoked (here or on another
        member): the connections authenticated with it leave their rooms and channels, as
        Kuzzle's token manager does on a logout; the connections stay open. For `kuid`, each
        token is checked again, since a global logout keeps API keys."""
        for connection_id, (token_id, _, token) in list(self.tokens.items()):
            if jti is not None and token_id == jti:
                self._unauthenticated(connection_id)
            elif kuid is not None and getattr(token, "userId", None) == kuid:
                task = asyncio.ensure_future(self._recheck(connection_id, token))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _recheck(self, connection_id: str, token: Any) -> None:
        try:
            await self.gateway.security.tokens.verify(token.jwt)
        except errors.GatewayError:
            current = self.tokens.get(connection_id)
            if current is not None and current[0] == token._id:
                self._unauthenticated(connection_id)

    def _unauthenticated(self, connection_id: str) -> None:
        """The connection's token is no longer valid: it leaves every room and channel."""
        current = self.tokens.pop(connection_id, None)
        if current is not None and current[1] is not None:
            current[1].cancel()
        self._left(connection_id)
        for channel in list(self.memberships.get(connection_id, ())):
            self.leave_channel(channel, connection_id)

    def _left(self, connection_id: str) -> None:
        for callback in self.on_leave:
            try:
                callback(connection_id)
            except Exception:
                log.exception("connection %s: leaving failed", connection_id)

    # -- calling protocols -------------------------------------------------------------------

    def _owner(self, connection_id: str) -> LoadedProtocol | None:
        name = self.owners.get(connection_id)
        return None if name is None else self.protocols.get(name)

    def _call(self, protocol: LoadedProtocol, method: str, args: tuple[Any, ...],
              legacy: dict[str, Any]) -> None:
        """Call a protocol method (Kuzzle 1.x form: one data object); an async one runs as a
        task. A failure is logged, never raised to the caller (a plugin notifying)."""
        function = getattr(protocol.obj, method)
        try:
            out = function(legacy) if method in protocol.legacy else function(*args)
        except Exception:
            log.exception("protocol %r: %s failed", protocol.name, method)
            return
        if inspect.isawaitable(out):
            task = asyncio.ensure_future(out)
            self._tasks.add(task)
            task.add_done_callback(self._task_done(protocol.name, method))

    def _task_done(self, name: str, method: str) -> Callable[[asyncio.Future[Any]], None]:
        def done(task: asyncio.Future[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("protocol %r: %s failed", name, method, exc_info=task.exception())
        return done


class EntryPoint(Mapping[str, Any]):
    """One protocol's way into the gateway. As a mapping: the protocol's config section."""

    def __init__(self, hub: Hub, name: str, config: dict[str, Any]) -> None:
        self._hub = hub
        self.name = name
        self.config: dict[str, Any] = config
        # the built-in protocols serialize an envelope at once, and nothing else: a shared
        # result (api.base.Shared) reaches them as it is; a custom protocol gets a copy
        protocol = hub.protocols.get(name)
        self._serializes = bool(getattr(protocol.obj if protocol else None,
                                        "serializes_envelopes", False))

    # identity, not the mapping's content, makes two entry points equal
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    # the 1.x `init(config, context)` form reads its config from the first argument
    def __getitem__(self, key: str) -> Any:
        return self.config[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.config)

    def __len__(self) -> int:
        return len(self.config)

    # -- connections -------------------------------------------------------------------------

    def new_connection(self, connection: ClientConnection) -> None:
        """Declare a client connection (fires `connection:new`)."""
        self._hub.add_connection(self.name, connection)

    def remove_connection(self, connection_id: str) -> None:
        """The connection is gone: it leaves every channel (fires `connection:remove`)."""
        self._hub.remove_connection(connection_id)

    # -- requests ----------------------------------------------------------------------------

    def request(self, payload: Any, connection: ClientConnection,
                raw: bytes | str | None = None) -> Request:
        """A Request from what a client sent, through the input checks HTTP applies too
        (JSON, nesting, field types): `payload` is the raw JSON text (bytes or str), or the
        object a protocol decoded itself (then `raw`, its text, makes the nesting check
        cheap). Raises a 400 GatewayError."""
        if isinstance(payload, bytes | bytearray | memoryview | str):
            data = inputs.parse_request(bytes(payload) if not isinstance(payload, str)
                                        else payload)
        elif isinstance(payload, Mapping):
            data = inputs.check_request(dict(payload))
            inputs.check_depth(data, "request", raw, inputs.MAX_DEPTH + 1)
        else:
            raise errors.get("api.assert.invalid_body",
                             f"expected a JSON object, got {type(payload).__name__}")
        return Request(data, RequestContext(connection))

    def execute(self, request: Request | Mapping[str, Any],
                callback: Callable[[dict[str, Any]], Any] | None = None,
                ) -> Awaitable[dict[str, Any]]:
        """Run `request` through the funnel; the result is Kuzzle's response envelope (a
        dict, as HTTP sends it; WebSocket adds `room`). Await it, or give `callback` (the 1.x
        way: called with the envelope; a task is returned). `request` is a Request, or the 1.x
        object `{"payload", "connectionId", "protocol"?, "headers"?}`."""
        coroutine = self._execute(request)
        if callback is None:
            return coroutine
        task = asyncio.ensure_future(self._with_callback(coroutine, callback))
        self._hub._tasks.add(task)
        task.add_done_callback(self._hub._task_done(self.name, "execute callback"))
        return task

    async def _with_callback(self, coroutine: Awaitable[dict[str, Any]],
                             callback: Callable[[dict[str, Any]], Any]) -> None:
        out = callback(await coroutine)
        if inspect.isawaitable(out):
            await out

    async def _execute(self, request: Request | Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(request, Request):
            try:
                request = self._legacy_request(request)
            except errors.GatewayError as exc:
                return self.error_envelope(exc)
        gateway = self._hub.gateway
        if gateway.access_log:
            started = time.perf_counter()
            done = await gateway.funnel.execute(request)
            access_log.protocol_line(self.name, done, time.perf_counter() - started)
        else:
            done = await gateway.funnel.execute(request)
        connection = done.context.connection
        if done.context.token is not None and connection.id in self._hub.connections:
            self._hub.track_token(connection.id, done.context.token)
        error = done.error
        if not self._serializes and isinstance(done.result, Shared):
            done.result = done.result.thawed()
        return done.envelope(stack=_stack(error) if error is not None and gateway.dev else None)

    def _legacy_request(self, data: Mapping[str, Any]) -> Request:
        connection_id = data.get("connectionId")
        connection = self._hub.connections.get(connection_id) if connection_id else None
        if connection is None:
            connection = ClientConnection(data.get("protocol") or self.name, (),
                                          dict(data.get("headers") or {}))
        return self.request(data.get("payload"), connection)

    def error_envelope(self, error: BaseException, request_id: str | None = None,
                       ) -> dict[str, Any]:
        """The envelope of an error met before the funnel (a frame that is not JSON...),
        counted as a request without controller or action (server.metrics)."""
        error = errors.wrap(error)
        gateway = self._hub.gateway
        if gateway.stats is not None:
            gateway.stats.refused(error.status, self.name)
        stack = _stack(error) if gateway.dev else None
        return {
            "requestId": request_id or new_request_id(), "status": error.status,
            "error": error.to_dict(stack=stack), "controller": None, "action": None,
            "index": None, "collection": None, "volatile": None, "result": None,
        }

    def dumps(self, envelope: dict[str, Any]) -> bytes:
        """JSON bytes of an envelope; a result that cannot be serialized becomes Kuzzle's
        `plugin.controller.unserializable_response` error, as over HTTP."""
        try:
            return dumps(envelope)
        except TypeError as exc:
            log.error("request %s: unserializable result: %s", envelope.get("requestId"), exc)
            error = errors.get("plugin.controller.unserializable_response")
            return dumps({**envelope, "status": error.status, "error": error.to_dict(),
                          "result": None})

    # -- channels (routed to the protocol owning the connection) -----------------------------

    def join_channel(self, channel: str, connection_id: str) -> bool:
        return self._hub.join_channel(channel, connection_id)

    def leave_channel(self, channel: str, connection_id: str) -> None:
        self._hub.leave_channel(channel, connection_id)

    def notify(self, channels: Sequence[str], connection_id: str,
               payload: dict[str, Any]) -> bool:
        return self._hub.notify(channels, connection_id, payload)

    def broadcast(self, channels: Sequence[str], payload: dict[str, Any]) -> None:
        self._hub.broadcast(channels, payload)

    @property
    def connections(self) -> Iterable[str]:
        """Ids of this protocol's live connections."""
        return [cid for cid, owner in self._hub.owners.items() if owner == self.name]


class Channels:
    """`context.accessors.channels` (plugins) and `context.accessors.channels` (protocols):
    the channel plumbing realtime builds on. Each call reaches the protocol owning the
    connection; ids come from `request.context.connection.id`."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def join_channel(self, channel: str, connection_id: str) -> bool:
        """Add the connection to `channel`; False if the connection is gone (or is HTTP's,
        which lives for one request)."""
        return self._on_loop(self._hub.join_channel, channel, connection_id)

    def leave_channel(self, channel: str, connection_id: str) -> None:
        self._on_loop(self._hub.leave_channel, channel, connection_id)

    def notify(self, channels: Sequence[str], connection_id: str,
               payload: dict[str, Any]) -> bool:
        """Send `payload` to one connection, once per channel, with `room` = the channel."""
        return self._on_loop(self._hub.notify, channels, connection_id, payload)

    def broadcast(self, channels: Sequence[str], payload: dict[str, Any]) -> None:
        """Send `payload` to every connection listening on each channel."""
        self._on_loop(self._hub.broadcast, channels, payload)

    def members(self, channel: str) -> frozenset[str]:
        """Ids of the connections on `channel`."""
        return self._on_loop(self._hub.members, channel)

    def channels_of(self, connection_id: str) -> frozenset[str]:
        return self._on_loop(self._hub.channels_of, connection_id)

    def connection(self, connection_id: str) -> ClientConnection | None:
        return self._hub.connections.get(connection_id)

    def disconnect(self, connection_id: str) -> bool:
        """Ask the owning protocol to close the connection."""
        return self._on_loop(self._hub.disconnect, connection_id)

    def _on_loop(self, function: Callable[..., Any], *args: Any) -> Any:
        """Plain (sync) plugin functions run in worker threads: their calls are made on the
        server's event loop, the worker waiting for the outcome."""
        loop = self._hub.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            return function(*args)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as exc:
                future.set_exception(exc)
        loop.call_soon_threadsafe(run)
        return future.result(timeout=30)


class ProtocolContext:
    """The `context` of `init(entry_point, context)`: Kuzzle 2's names (`ClientConnection`,
    `Request`, `log`, `errors`) and Kuzzle 1.x's (`accessors.router`, `constructors`)."""

    def __init__(self, hub: Hub, name: str) -> None:
        from ..plugins.context import frozen

        entry_point = hub.entry_points[name]
        self.name = name
        self.config = frozen(hub.gateway.config.data)  # the whole gateway.yaml, read-only
        self.log = logging.getLogger(f"sanic_gateway.protocol.{name}")
        self.errors = errors
        self.ClientConnection = ClientConnection
        self.Request = Request
        self.RequestContext = RequestContext
        self.constructors = types.SimpleNamespace(
            ClientConnection=ClientConnection, Request=Request, RequestContext=RequestContext)
        self.accessors = types.SimpleNamespace(router=entry_point, channels=Channels(hub))
