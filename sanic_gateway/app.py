"""The Sanic app of a Gateway: protocols installed, plugins started with the server."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from sanic import Sanic

from .config import load_config
from .gateway import Gateway, StartError
from .protocols.http import GatewayErrorHandler, HttpAdapter

log = logging.getLogger("sanic_gateway")
_names = itertools.count(1)


def create_app(gateway: Gateway, name: str | None = None) -> Sanic:
    """A Sanic app serving `gateway`. Each call makes a new, uniquely named app."""
    adapter = HttpAdapter(gateway)
    app = Sanic(name or f"sanic_gateway_{next(_names)}",
                error_handler=GatewayErrorHandler(adapter), configure_logging=False)
    server = gateway.config.data["server"]
    limits = gateway.config.data["limits"]
    app.config.REQUEST_MAX_SIZE = server["max_request_size"]
    app.config.WEBSOCKET_MAX_SIZE = server["max_request_size"]
    app.config.RESPONSE_TIMEOUT = limits.get("request_timeout", 60.0)
    app.config.ACCESS_LOG = gateway.dev
    app.config.MOTD = False
    app.config.AUTO_EXTEND = False
    app.ctx.gateway = gateway
    app.ctx.start_error = None
    upgrades = {}  # protocols served on the HTTP port (WebSocket): path -> upgrade(request)
    for name, protocol in gateway.hub.protocols.items():
        http_upgrades = getattr(protocol.obj, "http_upgrades", None)
        if callable(http_upgrades):
            upgrades.update(http_upgrades(app, gateway.hub.entry_points[name]))
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

    @app.before_server_stop
    async def stop_protocols(app: Sanic) -> None:
        await gateway.stop_protocols()

    @app.after_server_stop
    async def stop_plugins(app: Sanic) -> None:
        await gateway.stop()

    return app


def app_from_file(config_path: str | Path, dev: bool = False) -> Sanic:
    """Factory for Sanic's worker loader: each worker process compiles the config itself."""
    return create_app(Gateway.build(load_config(config_path), dev=dev))
