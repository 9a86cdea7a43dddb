"""What a plugin receives in init(config, context)."""

from __future__ import annotations

import functools
import logging
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import errors
from ..protocols.entrypoint import Channels
from ..request import ClientConnection, Request, RequestContext
from ..security.strategies import strategy_from_callables
from ..storage import Repository

if TYPE_CHECKING:
    from ..gateway import Gateway


def frozen(value: Any) -> Any:
    """A read-only deep copy: mappings become MappingProxyType, lists tuples."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(frozen(v) for v in value)
    return value


class Accessors:
    """Ways for a plugin to act on the running gateway (absent in hook worker processes)."""

    def __init__(self, gateway: Gateway, plugin: str) -> None:
        self._gateway = gateway
        self._plugin = plugin
        self.storage = PluginStorage(gateway, plugin)
        self.strategies = PluginStrategies(gateway, plugin)
        # join_channel / leave_channel / notify / broadcast on any protocol's connections
        self.channels = Channels(gateway.hub)
        self.subscription = PluginSubscription(gateway, self.channels)
        self.realtime = PluginRealtime(gateway, self.channels)

    async def execute(self, request: Request | Mapping[str, Any]) -> Request:
        """Run an API request through the whole funnel, events included; return the Request
        with its result, or raise its error. As in Kuzzle, rights are not checked: the plugin
        is trusted (a token in the request still authenticates it)."""
        if not isinstance(request, Request):
            request = Request(dict(request), RequestContext(ClientConnection("internal")))
        done = await self._gateway.funnel.execute(request, check_rights=False)
        if done.error is not None:
            raise done.error
        return done

    async def trigger(self, event: str, payload: Any = None) -> Any:
        """Fire the custom event `plugin-<name>:<event>`; return the payload its pipes give back."""
        if ":" in event:
            raise errors.get("plugin.context.invalid_event", event)
        return await self._gateway.bus.trigger(f"plugin-{self._plugin}:{event}", payload)


class PluginSubscription:
    """`context.accessors.subscription`, Kuzzle 2's: subscribe a client connection (its id from
    `request.context.connection.id`) to a filter, or take it out of a room. Callable from
    async and plain (threaded) plugin functions alike."""

    def __init__(self, gateway: Gateway, channels: Channels) -> None:
        self._gateway = gateway
        self._channels = channels

    def register(self, connection_id: str, index: str, collection: str, filters: Any,
                 options: Mapping[str, Any] | None = None) -> dict[str, str]:
        """`options`: `scope`, `users`, `volatile`; returns `{roomId, channel}`."""
        options = options or {}
        connection = self._gateway.hub.connections.get(connection_id)
        return self._channels._on_loop(functools.partial(
            self._gateway.realtime.subscribe, connection_id, index, collection, filters,
            scope=options.get("scope") or "all", users=options.get("users") or "none",
            volatile=dict(options.get("volatile") or {}),
            protocol=getattr(connection, "protocol", None)))

    def unregister(self, connection_id: str, room_id: str, notify: bool = True) -> None:
        """Raises `core.realtime.not_subscribed` if the connection is not in the room."""
        self._channels._on_loop(functools.partial(
            self._gateway.realtime.unsubscribe, connection_id, room_id, notify=notify))


class PluginRealtime:
    """`context.accessors.realtime`: notify subscribers as `realtime:publish` does."""

    def __init__(self, gateway: Gateway, channels: Channels) -> None:
        self._gateway = gateway
        self._channels = channels

    def publish(self, index: str, collection: str, document: Mapping[str, Any],
                _id: str | None = None, volatile: Mapping[str, Any] | None = None) -> None:
        """A document notification (`action: "publish"`, `scope: "in"`) to the rooms whose
        filter matches `document`; delivered at once, or after `notify:document` pipes."""
        request = {"volatile": dict(volatile or {}), "controller": "realtime",
                   "protocol": "internal"}

        def run() -> None:
            pending = self._gateway.realtime.publish(index, collection, dict(document), _id,
                                                     request=request)
            if pending is not None:
                self._gateway.realtime.spawn(pending)
        self._channels._on_loop(run)


class PluginStorage:
    """`context.accessors.storage`: the plugin's private collections."""

    def __init__(self, gateway: Gateway, plugin: str) -> None:
        self._gateway = gateway
        self._plugin = plugin

    def repository(self, collection: str) -> Repository:
        """A Repository on `collection` of this plugin's own space."""
        storage = self._gateway.storage
        if storage is None:
            raise errors.get("services.storage.unavailable", "the gateway has not started")
        return Repository.for_plugin(storage, self._plugin, collection)

    __call__ = repository


class PluginStrategies:
    """`context.accessors.strategies`: add and remove authentication strategies at run time."""

    def __init__(self, gateway: Gateway, plugin: str) -> None:
        self._gateway = gateway
        self._plugin = plugin

    async def add(self, name: str, strategy: Mapping[str, Any]) -> None:
        """`strategy`: `{"methods": {"verify": callable, ...}, "fields": [...]}`, Kuzzle's
        method set; the methods are callables (plain or async)."""
        methods = dict(strategy.get("methods") or {})
        built = strategy_from_callables(name, methods, list(strategy.get("fields") or []),
                                        owner=self._plugin,
                                        threads=self._gateway.bus.threads)
        await self._gateway.security.strategies.register(built)

    async def remove(self, name: str) -> None:
        """Remove a strategy this plugin added (another plugin's: refused)."""
        self._gateway.security.strategies.unregister(name, self._plugin)


class PluginContext:
    """`config`, `secrets`, `log`, `errors`, `accessors`, `constructors`."""

    def __init__(self, gateway: Gateway | None, plugin: str,
                 secrets: Mapping[str, Any] | None = None) -> None:
        self.config = frozen(gateway.config.data) if gateway is not None else frozen({})
        # the vault's decrypted secrets, read-only; `{}` without a vault (as in Kuzzle)
        self.secrets = frozen(secrets or {})
        self.log = logging.getLogger(f"sanic_gateway.plugin.{plugin}")
        self.errors = errors
        self.accessors = Accessors(gateway, plugin) if gateway is not None else None
        self.constructors = types.SimpleNamespace(
            Request=Request, RequestContext=RequestContext, ClientConnection=ClientConnection,
            Repository=self.accessors.storage.repository if self.accessors else None,
        )


class WorkerContext:
    """What `init` receives in a hook worker process (`threads: N`): `config`, `secrets`,
    `log`, `errors`, `constructors`, and `accessors` None: there is no gateway in that process
    to act on (no storage, no API, no channels)."""

    def __init__(self, config: Mapping[str, Any], plugin: str,
                 secrets: Mapping[str, Any] | None = None) -> None:
        self.config = frozen(config)
        self.secrets = frozen(secrets or {})
        self.log = logging.getLogger(f"sanic_gateway.plugin.{plugin}")
        self.errors = errors
        self.accessors = None
        self.constructors = types.SimpleNamespace(
            Request=Request, RequestContext=RequestContext, ClientConnection=ClientConnection,
            Repository=None)
