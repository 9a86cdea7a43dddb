"""The Sanic app of a Gateway: protocols installed, plugins started with the server, and
`serve()`, which runs one worker on a socket the command line already bound."""

from __future__ import annotations

import gc
import itertools
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from sanic import Sanic

from . import __version__, drain, logs
from .config import load_config
from .connections import protocol_for
from .gateway import Gateway, PluginStartError, StartError
from .protocols.http import GatewayErrorHandler, HttpAdapter

log = logging.getLogger("sanic_gateway")
_names = itertools.count(1)

EXIT_CONFIG = 2  # usage, config and startup errors (port in use, storage unreachable, ...)
EXIT_INIT = 1  # a plugin's init raised


def create_app(gateway: Gateway, name: str | None = None) -> Sanic:
    """A Sanic app serving `gateway`. Each call makes a new, uniquely named app."""
    adapter = HttpAdapter(gateway)
    app = Sanic(name or f"sanic_gateway_{next(_names)}",
                error_handler=GatewayErrorHandler(adapter), configure_logging=False)
    server = gateway.config.data["server"]
    limits = gateway.config.data["limits"]
    app.config.REQUEST_MAX_SIZE = server["max_request_size"]
    app.config.WEBSOCKET_MAX_SIZE = server["max_request_size"]
    app.config.REQUEST_TIMEOUT = server.get("request_timeout", 30.0)
    app.config.KEEP_ALIVE_TIMEOUT = server.get("keep_alive_timeout", 15.0)
    app.config.RESPONSE_TIMEOUT = limits.get("request_timeout", 60.0)
    app.config.ACCESS_LOG = False  # ours (access_log.py): Sanic's has no request id nor user
    app.config.MOTD = False
    app.config.AUTO_EXTEND = False
    app.ctx.gateway = gateway
    app.ctx.start_error = None
    upgrades = {}  # protocols served on the HTTP port (WebSocket): path -> upgrade(request)
    for name, protocol in gateway.hub.protocols.items():
        http_upgrades = getattr(protocol.obj, "http_upgrades", None)
        if callable(http_upgrades):
            upgrades.update(http_upgrades(app, gateway.hub.entry_points[name]))
    app.ctx.max_connections = server.get("max_connections", 0)
    app.ctx.on_ready = None  # set by serve(): tells the supervisor this worker is ready
    app.ctx.summary = True  # log what is served once ready (the supervisor does it instead)
    app.ctx.url = None
    adapter.install(app, enabled=server["protocols"]["http"]["enabled"], upgrades=upgrades)

    @app.before_server_start
    async def start_plugins(app: Sanic) -> None:
        try:
            await gateway.start()
        except StartError as exc:
            app.ctx.start_error = exc
            log.error("%s", exc, exc_info=exc.__cause__ if gateway.dev else None)
            app.stop()
            raise
        logs.register_secret(gateway_secret(gateway))

    @app.after_server_start
    async def ready(app: Sanic) -> None:
        if app.ctx.url is None:  # not run by serve(): embedded, or in tests
            return
        settle_heap()
        if app.ctx.summary:
            log.info("%s", summary(gateway, app.ctx.url, 1))
        if app.ctx.on_ready is not None:
            app.ctx.on_ready()

    @app.before_server_stop
    async def stop_protocols(app: Sanic) -> None:
        await gateway.stop_protocols()

    @app.after_server_stop
    async def stop_plugins(app: Sanic) -> None:
        await gateway.stop()

    return app


def gateway_secret(gateway: Gateway) -> str | None:
    """The JWT signing key in use (configured or generated and stored), to keep out of logs."""
    security = gateway.security
    tokens = getattr(security, "tokens", None)
    key = getattr(tokens, "_key", None)
    try:
        return key.raw_value.decode() if key is not None else None
    except (AttributeError, UnicodeDecodeError):
        return None


GC_YOUNG_THRESHOLD = 7000  # allocations between two young collections (Python's default: 700)


def settle_heap() -> None:
    """Once started: what exists now (Sanic, plugins, config, caches) lives as long as the
    process, so it leaves the garbage collector's view (`gc.freeze`) and full collections stop
    walking it again and again; young collections run ten times less often. Each request
    allocates hundreds of objects, so the collector's work had been about 2 µs a request."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def summary(gateway: Gateway, url: str, workers: int) -> str:
    """The startup line: version, file, where it listens, plugins and protocols."""
    plugins = ", ".join(gateway.plugins) or "none"
    http = gateway.config.data["server"]["protocols"]["http"]["enabled"]
    names = ", ".join([*(["http"] if http else []), *gateway.hub.protocols]) or "none"
    return (f"sanic-gateway {__version__} serving {gateway.config.path} on {url} "
            f"({workers} worker{'s' if workers > 1 else ''}); plugins: {plugins}; "
            f"protocols: {names}")


def exit_code(error: BaseException) -> int:
    return EXIT_INIT if isinstance(error, PluginStartError) else EXIT_CONFIG


def serve(gateway: Gateway, sock: socket.socket, url: str, *, summary: bool = True,
          on_ready: Callable[[], None] | None = None) -> int:
    """Run one worker on `sock` until it is stopped; returns the process exit code. Under
    the supervisor (`on_ready` given), the worker drains on its signal when a reload
    replaces it."""
    app = create_app(gateway)
    app.ctx.url, app.ctx.summary, app.ctx.on_ready = url, summary, on_ready
    if on_ready is not None:
        drain.record_servers(app)
        drain.install(app)
    quiet = _QuietStartErrors()
    logging.getLogger("sanic.error").addFilter(quiet)
    try:
        app.run(sock=sock, single_process=True, debug=False, access_log=False, motd=False,
                protocol=protocol_for(app))
    except StartError as exc:
        return exit_code(exc)  # already logged, in one line
    finally:
        logging.getLogger("sanic.error").removeFilter(quiet)
        sys.stderr.flush()
    return exit_code(app.ctx.start_error) if app.ctx.start_error else 0


class _QuietStartErrors(logging.Filter):
    """A gateway that cannot start says why in one line, not with Sanic's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StartError))


def app_from_file(config_path: str | Path, dev: bool = False) -> Sanic:
    """A Sanic app for `config_path` (for Sanic's own loaders: `sanic module:factory`)."""
    logs.configure(dev)
    config = load_config(config_path)
    logs.register_config_secrets(config.data)
    return create_app(Gateway.build(config, dev=dev))
