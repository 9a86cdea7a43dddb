"""The access log (`--access-log`, `server.access_log`, and `--dev`): one line per request.

A line says who asked what and how it went: client address, method and path (HTTP; the
protocol and `controller:action` for other protocols), status, duration, request id and the
user's kuid (`-1`: anonymous). Never the query string (it may carry `?jwt=`), never a header,
never a body. The fields travel on the record as `access` too, so that `--log-format json`
writes them as keys.
"""

from __future__ import annotations

import logging
from typing import Any

from .request import Request

log = logging.getLogger("sanic_gateway.access")


def user_of(request: Request | None) -> str:
    user = request.context.user if request is not None else None
    return str(getattr(user, "_id", None) or "-")


def http_line(ip: str | None, method: str, path: str, status: int, seconds: float | None,
              request_id: str, request: Request | None = None) -> None:
    """An HTTP request: `request` is None when it was refused before the funnel (unknown
    URL, unreadable body), and `seconds` None when it never reached the gateway's code."""
    took = f"{seconds * 1000:.1f}ms" if seconds is not None else "-"
    user = user_of(request)
    controller = request.input.controller if request is not None else None
    action = request.input.action if request is not None else None
    log.info("%s %s %s %d %s id=%s user=%s", ip or "-", method, path, status, took, request_id,
             user, extra={"access": _fields("http", ip, method, path, controller, action,
                                            status, seconds, request_id, user)})


def protocol_line(protocol: str, request: Request, seconds: float) -> None:
    """A request that came by WebSocket, MQTT or a custom protocol."""
    connection = request.context.connection
    ip = connection.ips[0] if connection.ips else None
    controller, action = request.input.controller, request.input.action
    status = request.response.status
    user = user_of(request)
    log.info("%s %s %s:%s %d %.1fms id=%s user=%s", ip or "-", protocol, controller, action,
             status, seconds * 1000, request.id, user,
             extra={"access": _fields(protocol, ip, None, None, controller, action, status,
                                      seconds, request.id, user)})


def _fields(protocol: str, ip: str | None, method: str | None, path: str | None,
            controller: str | None, action: str | None, status: int, seconds: float | None,
            request_id: str, user: str) -> dict[str, Any]:
    return {"protocol": protocol, "ip": ip, "method": method, "path": path,
            "controller": controller, "action": action, "status": status,
            "duration_ms": round(seconds * 1000, 3) if seconds is not None else None,
            "request_id": request_id, "user": user}
