"""Slow and numerous clients, bounded: Sanic's HTTP protocol with two changes.

- `server.request_timeout` bounds the whole request, headers and body, from its first byte.
  Sanic restarts its timer on every byte received, so a client sending one byte a second
  (slowloris) would hold its connection forever.
- `server.max_connections` (per worker): a connection beyond it is answered 503 and closed at
  once, before anything is read, and the refusals are logged at most every 10 seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sanic.exceptions import RequestTimeout
from sanic.server.protocols.http_protocol import HttpProtocol
from sanic.server.protocols.websocket_protocol import WebSocketProtocol

try:
    from sanic.http.constants import Stage
except ImportError:  # pragma: no cover - older Sanic
    from sanic.http import Stage  # type: ignore[attr-defined,no-redef]

log = logging.getLogger("sanic_gateway.connections")

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 32\r\nRetry-After: 1\r\n\r\ntoo many connections, retry later")
_REPORT_EVERY = 10.0


class _Refusals:
    """Counts refused connections; logs a warning at most every `_REPORT_EVERY` seconds."""

    count = 0
    last_report = 0.0

    @classmethod
    def add(cls, limit: int) -> None:
        cls.count += 1
        now = time.monotonic()
        if now - cls.last_report >= _REPORT_EVERY:
            log.warning("server.max_connections (%d) reached: %d connection(s) refused",
                        limit, cls.count)
            cls.count, cls.last_report = 0, now


class _Bounded:
    """Mixed into Sanic's protocol classes (which are slotted: no attribute of our own)."""

    __slots__ = ()

    def connection_made(self, transport: Any) -> None:
        limit = self.app.ctx.max_connections  # type: ignore[attr-defined]
        if limit and len(self.connections) >= limit:  # type: ignore[attr-defined]
            transport.write(_BUSY)
            transport.close()
            _Refusals.add(limit)
            return
        super().connection_made(transport)  # type: ignore[misc]

    def connection_lost(self, exc: BaseException | None) -> None:
        if getattr(self, "conn_info", None) is None:  # refused in connection_made
            return
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        http = self._http if hasattr(self, "_http") else None  # type: ignore[attr-defined]
        receiving = http is not None and (
            http.stage is Stage.REQUEST or (http.stage is Stage.HANDLER and http.request_body))
        started = self._time  # type: ignore[has-type]
        super().data_received(data)  # type: ignore[misc]
        if receiving:  # the clock of this request started with its first byte
            self._time = started

    def check_timeouts(self) -> None:
        http = self._http if hasattr(self, "_http") else None  # type: ignore[attr-defined]
        if (self._task and http is not None and http.stage is Stage.HANDLER  # type: ignore
                and http.request_body
                and time.monotonic() - self._time > self.request_timeout):  # type: ignore
            # a body still arriving after request_timeout: same answer as slow headers
            http.exception = RequestTimeout("Request Timeout")
            self._task.cancel()  # type: ignore[attr-defined]
            return
        super().check_timeouts()  # type: ignore[misc]


class GatewayHttpProtocol(_Bounded, HttpProtocol):
    __slots__ = ()


class GatewayWebSocketProtocol(_Bounded, WebSocketProtocol):
    __slots__ = ()


def protocol_for(app: Any) -> type[HttpProtocol]:
    """The protocol class Sanic would pick for `app`, bounded."""
    return GatewayWebSocketProtocol if app.websocket_enabled else GatewayHttpProtocol


__all__ = ["GatewayHttpProtocol", "GatewayWebSocketProtocol", "protocol_for"]
