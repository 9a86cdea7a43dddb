"""A worker's drain, when a reload replaces it: stop accepting, let clients leave, then stop.

The supervisor starts the workers of the new configuration on the same listening socket and,
once they are ready, sends each old worker DRAIN_SIGNAL. The old worker then:

- stops accepting: new connections wait in the shared socket's queue for the new workers, so
  none is refused or lost;
- answers every HTTP request still arriving on its open connections, with `Connection: close`,
  so that each client's next request opens a connection to a new worker;
- keeps its WebSocket (and MQTT) connections, which may still send requests and receive
  notifications, until `server.drain_timeout`;
- stops as on SIGTERM once no connection is left or the drain timeout has passed: requests in
  flight are answered, then WebSockets are closed with 1001 ("server shutting down"), after
  which Kuzzle's SDK reconnects (to a new worker) and subscribes again.

Sanic keeps its asyncio server to itself; the event loop policy below records it, since
closing it is the one way to stop accepting in this worker only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from sanic import Sanic

log = logging.getLogger("sanic_gateway")

DRAIN_SIGNAL = signal.SIGUSR1
_POLL = 0.1  # seconds between two looks at the connections left


def record_servers(app: Sanic) -> None:
    """Make the next event loop created (the one Sanic's `app.run` creates) remember the
    servers it creates in `app.ctx.servers`, with their sets of connections."""
    app.ctx.servers = []
    app.ctx.http_connections = set()
    try:
        import uvloop

        base: type[asyncio.AbstractEventLoopPolicy] = uvloop.EventLoopPolicy
    except ImportError:  # pragma: no cover - Sanic without uvloop
        base = asyncio.DefaultEventLoopPolicy

    class Recording(base):  # type: ignore[misc,valid-type]
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop = super().new_event_loop()
            create_server = loop.create_server

            async def recorded(factory: Any, *args: Any, **kwargs: Any) -> Any:
                server = await create_server(factory, *args, **kwargs)
                app.ctx.servers.append(server)
                keywords = getattr(factory, "keywords", None) or {}
                if isinstance(keywords.get("connections"), set):
                    app.ctx.http_connections = keywords["connections"]
                return server

            loop.create_server = recorded  # type: ignore[method-assign]
            return loop

    asyncio.set_event_loop_policy(Recording())


def install(app: Sanic) -> None:
    """Drain on DRAIN_SIGNAL once the server is ready (see the module's docstring)."""
    app.ctx.draining = False

    @app.after_server_start
    async def on_signal(app: Sanic) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(DRAIN_SIGNAL, lambda: loop.create_task(drain(app)))


def open_connections(app: Sanic) -> int:
    """HTTP connections (an upgraded WebSocket included) and each protocol's clients."""
    count = len(getattr(app.ctx, "http_connections", ()))
    for protocol in app.ctx.gateway.hub.protocols.values():
        clients = getattr(protocol.obj, "clients", None)
        if clients is None:
            clients = getattr(protocol.obj, "_clients", None)
        if isinstance(clients, dict | set | list):
            count += len(clients)
    return count


async def drain(app: Sanic) -> None:
    if app.ctx.draining:
        return
    app.ctx.draining = True
    gateway = app.ctx.gateway
    http = getattr(gateway, "http", None)
    if http is not None:
        http.draining = True
    for server in app.ctx.servers:
        server.close()  # this worker's listening socket only: the others keep theirs
    timeout = float(gateway.config.data["server"].get("drain_timeout", 30.0))
    left = open_connections(app)
    log.info("worker %d draining: %d connection(s) open, stopping in %gs at most",
             os.getpid(), left, timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while left and loop.time() < deadline:
        await asyncio.sleep(_POLL)
        left = open_connections(app)
    app.stop()
