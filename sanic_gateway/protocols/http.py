"""HTTP (SPEC 7.1): Kuzzle's routes, plugin routes and POST /_query, turned into Requests for the
funnel, and the funnel's Requests turned back into Kuzzle's response envelope.

Everything is resolved when the app is built: each Sanic route gets a closure that already knows
its controller and action. The per-request work is parsing, one `funnel.execute`, one dumps.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import traceback
import types
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from sanic import Request as SanicRequest
from sanic import Sanic
from sanic.exceptions import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestCancelled,
    SanicException,
    ServiceUnavailable,
)
from sanic.handlers import ErrorHandler
from sanic.helpers import has_message_body
from sanic.response import HTTPResponse as SanicResponse
from sanic.response.types import HEADER_TRANSLATION_TABLE

from .. import access_log, errors, inputs
from ..request import ClientConnection, Request, RequestContext, new_request_id
from ..security.cookies import COOKIE_ARG, auth_cookie, skips_verification
from . import openapi_ui

if TYPE_CHECKING:
    from ..gateway import Gateway

log = logging.getLogger("sanic_gateway.http")

_connection_numbers = itertools.count(1)
_PARAM = re.compile(r":([A-Za-z0-9_]+)")
_JSON = "application/json"


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, types.MappingProxyType):
        return dict(value)
    raise TypeError(f"cannot serialize a {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_json_default)


def _stack(error: BaseException) -> str:
    cause = error.__cause__ or error
    return "".join(traceback.format_exception(cause))


def _clean(text: str) -> str:
    """What Sanic's own header sanitizing gives (CR, LF and NUL removed), without its
    per-character translation when there is nothing to remove: the common case."""
    if "\r" in text or "\n" in text or "\x00" in text:
        return text.translate(HEADER_TRANSLATION_TABLE)
    return text


_NAMES: dict[str, bytes] = {}  # header names already cleaned and encoded (a few dozen)


def _name_bytes(name: str) -> bytes:
    encoded = _clean(name).encode("ascii")
    if len(_NAMES) < 1024:  # plugins could invent names without end: keep the usual ones
        _NAMES[name] = encoded
    return encoded


class HTTPResponse(SanicResponse):
    """Sanic's response with a cheaper header encoding: Sanic translates every header name and
    value character by character (about 1 µs each, some 5 µs a response, the largest piece of
    Python work in its response path); here names are encoded once per process and only the
    values that need it are translated, with the same result."""

    __slots__ = ()

    @property
    def processed_headers(self) -> list[tuple[bytes, bytes]]:
        headers = self.headers
        if has_message_body(self.status):
            headers.setdefault("content-type", self.content_type)
        out = []
        for name, value in headers.items():
            key = _NAMES.get(name) or _name_bytes(name)
            text = value if type(value) is str else f"{value}"
            if "\r" in text or "\n" in text or "\x00" in text:
                text = text.translate(HEADER_TRANSLATION_TABLE)
            out.append((key, text.encode(errors="surrogateescape")))
        return out


class HttpAdapter:
    """Builds Requests from Sanic requests and Sanic responses from executed Requests."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.funnel = gateway.funnel
        self.bus = gateway.bus
        self.dev = gateway.dev
        self.connection_events = (gateway.bus.has_listeners("connection:new")
                                  or gateway.bus.has_listeners("connection:remove"))
        self.active = 0  # requests being executed (server:metrics)
        self.stats = gateway.stats  # server.metrics: requests refused before the funnel
        self.access_log = gateway.access_log  # a line per request
        self.open_connections: set[Any] = set()  # Sanic's set of live connections, once known
        self.draining = False  # a reload replaces this worker: each answer closes its connection
        gateway.http = self  # type: ignore[attr-defined]

    def install(self, app: Sanic, *, enabled: bool = True,
                upgrades: dict[str, Upgrade] | None = None) -> None:
        """Kuzzle's routes (unless `server.protocols.http.enabled` is false), and the paths
        where another protocol takes WebSocket upgrades (`/` for WebSocket: a plain GET there
        still gets the HTTP route)."""
        upgrades = dict(upgrades or {})
        names = itertools.count()
        # every route says error_format: GatewayErrorHandler renders the errors anyway, and
        # without it Sanic reads and parses each handler's source to guess one (~30 ms a start)
        for action in self.gateway.api.actions() if enabled else ():
            for route in action.http:
                methods = {route.verb.upper()}
                handler = self._handler(action.controller, action.name)
                if route.verb == "get":
                    methods.add("HEAD")
                    if route.path in upgrades:
                        handler = _upgrading(upgrades.pop(route.path), handler)
                app.add_route(
                    handler,
                    _PARAM.sub(r"<\1>", route.path),
                    methods=methods,
                    name=f"r{next(names)}_{re.sub(r'[^A-Za-z0-9_]', '_', action.controller)}",
                    unquote=True,
                    error_format="json",
                )
        if enabled:
            app.add_route(self.query, "/_query", methods={"POST"}, name="query",
                          error_format="json")
            openapi_ui.install(app, self)
        for path, upgrade in upgrades.items():
            app.add_route(_upgrading(upgrade, None), path, methods={"GET"},
                          name=f"upgrade{next(names)}", error_format="json")
        # probes for orchestrators, outside the funnel (as in Kuzzle: no events, no logs)
        app.add_route(self.alive, "/_healthcheck", methods={"GET", "HEAD"}, name="healthcheck",
                      error_format="json")
        app.add_route(self.ready, "/_ready", methods={"GET", "HEAD"}, name="ready",
                      error_format="json")

    async def alive(self, request: SanicRequest) -> HTTPResponse:
        return self.probe(request, 200)

    async def ready(self, request: SanicRequest) -> HTTPResponse:
        """503 until the gateway has started (and once it stops), 200 in between. In cluster
        mode the result says whether the cluster is reachable (`degraded` while Redis is not:
        still 200, this member serves what does not need Redis) and lists the members."""
        status = 200 if self.gateway.started else 503
        cluster = getattr(self.gateway, "cluster", None)
        if cluster is None or status != 200:
            return self.probe(request, status)
        return self.probe(request, status, {
            "status": "green" if cluster.healthy else "degraded", "node": cluster.node_id,
            "nodes": sorted(cluster.members())})

    @staticmethod
    def probe(request: SanicRequest, status: int, result: Any = None) -> HTTPResponse:
        request_id = request.headers.get("x-kuzzle-request-id")
        if not request_id or not _header_safe(request_id):
            request_id = new_request_id()
        envelope = {"requestId": request_id, "status": status, "error": None,
                    "controller": None, "action": None, "index": None, "collection": None,
                    "volatile": None, "result": result}
        return HTTPResponse(dumps(envelope), status=status,
                            headers={"X-Kuzzle-Request-Id": request_id}, content_type=_JSON)

    def _handler(self, controller: str, action: str) -> Any:
        async def handle(request: SanicRequest, **params: str) -> HTTPResponse:
            return await self.serve(request, controller, action, params)
        return handle

    async def query(self, request: SanicRequest) -> HTTPResponse:
        """POST /_query: the body is a whole API request, as other protocols send it."""
        return await self.serve(request, None, None, {})

    async def serve(self, http: SanicRequest, controller: str | None, action: str | None,
                    params: dict[str, str]) -> HTTPResponse:
        started = perf_counter() if self.access_log else 0.0
        headers = http.headers
        request_id = headers.get("x-kuzzle-request-id")
        try:
            data = self._data(http, controller, action, params)
        except errors.GatewayError as exc:
            return self.error_response(exc, request_id, http, started)
        if request_id:
            data["requestId"] = request_id
        connection = ClientConnection("http", [http.ip], headers, self._connection_id(http),
                                      misc={"verb": http.method, "path": http.path})
        if self.connection_events:
            self.bus.hook("connection:new", connection)
        self.active += 1
        try:
            request = await self.funnel.execute(Request(data, RequestContext(connection)))
        finally:
            self.active -= 1
        if self.connection_events:
            self.bus.hook("connection:remove", connection)
        if self.draining:  # the client's next request goes to a new worker
            http.stream.keep_alive = False
        response = self.response(request)
        if self.access_log:
            access_log.http_line(http.ip, http.method, http.path, response.status,
                                 perf_counter() - started, request.id, request)
        return response

    def _connection_id(self, http: SanicRequest) -> str:
        """The id of the client's connection: the same for the requests of one keep-alive
        connection (Kuzzle counts login attempts per connection)."""
        ctx = http.conn_info.ctx if http.conn_info is not None else None
        found = getattr(ctx, "gateway_id", None)
        if found is None:
            found = f"http-{next(_connection_numbers)}"
            if ctx is not None:
                ctx.gateway_id = found
                if not self.open_connections:
                    self.open_connections = getattr(http.protocol, "connections", set())
        return found

    def _data(self, http: SanicRequest, controller: str | None, action: str | None,
              params: dict[str, str]) -> dict[str, Any]:
        """The request's `data`, through the checks every protocol shares (`inputs`)."""
        headers = http.headers
        _check_headers(headers)
        raw = http.body
        if controller is None:  # /_query: the body is the request
            if not raw:
                raise errors.get("api.assert.body_required")
            data = inputs.parse_request(raw)
        else:
            body = inputs.loads(raw) if raw else None
            if body is not None and not isinstance(body, dict):
                raise errors.get("api.assert.invalid_body",
                                 f"expected a JSON object, got {type(body).__name__}")
            # the route decides the controller, the action and the body: the query cannot
            data = _query_args(http.query_string) if http.query_string else {}
            if params:
                data.update(params)
            data["controller"], data["action"], data["body"] = controller, action, body
        authorization = headers.get("authorization")
        if authorization and authorization[:7].lower() == "bearer ":
            data["jwt"] = authorization[7:].strip()
        else:
            cookie = headers.get("cookie")
            token = auth_cookie(cookie) if cookie else None
            if token is not None and not data.get("jwt"):  # Kuzzle's browser mode
                data[COOKIE_ARG if skips_verification(data) else "jwt"] = token
        volatile = headers.get("x-kuzzle-volatile")
        if volatile:
            data["volatile"] = inputs.loads(volatile, "volatile",
                                            "network.http.volatile_parse_failed")
        return inputs.check_request(data)

    def response(self, request: Request) -> HTTPResponse:
        error = request.error
        headers = {"X-Kuzzle-Request-Id": request.id, **request.response.headers}
        if request.response.raw and error is None:
            return self._raw(request.result, request.response.status, headers)
        stack = _stack(error) if error is not None and self.dev else None
        try:
            body = dumps(request.envelope(stack=stack))
        except TypeError as exc:
            log.error("%r: unserializable result: %s", request, exc)
            request.set_error(errors.get("plugin.controller.unserializable_response"))
            body = dumps(request.envelope())
        return HTTPResponse(body, status=request.response.status, headers=headers,
                            content_type=_JSON)

    @staticmethod
    def _raw(result: Any, status: int, headers: dict[str, str]) -> HTTPResponse:
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        if isinstance(result, bytes | str):
            return HTTPResponse(result, status=status, headers=headers,
                                content_type=content_type or "text/plain; charset=utf-8")
        return HTTPResponse(dumps(result), status=status, headers=headers,
                            content_type=content_type or _JSON)

    def error_response(self, error: errors.GatewayError, request_id: str | None,
                       http: SanicRequest | None = None, started: float | None = None,
                       ) -> HTTPResponse:
        """An error met before the funnel (routing, size, parsing), in the same envelope;
        counted and logged as a request without controller or action."""
        if not request_id or not _header_safe(request_id):  # never echo what was refused
            request_id = new_request_id()
        if self.stats is not None:
            self.stats.refused(error.status, "http")
        if self.access_log and http is not None:
            access_log.http_line(http.ip, http.method, http.path, error.status,
                                 perf_counter() - started if started else None, request_id)
        envelope = {
            "requestId": request_id, "status": error.status,
            "error": error.to_dict(stack=_stack(error) if self.dev else None),
            "controller": None, "action": None, "index": None, "collection": None,
            "volatile": None, "result": None,
        }
        return HTTPResponse(dumps(envelope), status=error.status,
                            headers={"X-Kuzzle-Request-Id": request_id}, content_type=_JSON)


Upgrade = Callable[[SanicRequest], Awaitable[HTTPResponse | None]]


def _upgrading(on_upgrade: Upgrade, plain: Callable[..., Awaitable[HTTPResponse]] | None,
               ) -> Callable[..., Awaitable[HTTPResponse | None]]:
    """A GET handler handing WebSocket upgrades to `on_upgrade(request)` (it serves the socket
    until it closes, then returns None; or returns a refusal) and any other request to `plain`
    (404 without one)."""
    async def handle(request: SanicRequest, **params: str) -> HTTPResponse | None:
        if request.headers.get("upgrade", "").lower() != "websocket":
            if plain is None:
                raise NotFound(request.path)
            return await plain(request, **params)
        try:
            return await on_upgrade(request)
        except asyncio.CancelledError:  # the socket went away: nothing left to answer
            return None
    handle.is_websocket = True  # type: ignore[attr-defined]  # Sanic: None is a valid outcome
    return handle


def _header_safe(value: str) -> bool:
    """Sanic keeps undecodable header bytes as lone surrogates, which no response can carry."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_headers(headers: Any) -> None:
    """Refuse a header (name or value) with bytes that are not UTF-8 (400, the envelope): they would
    reach plugins and logs as lone surrogates, and fail any response that echoes them."""
    for name, value in headers.items():
        if value.isascii() and name.isascii():  # the usual case, without a call
            continue
        if not (_header_safe(value) and _header_safe(name)):
            name = name.encode(errors="backslashreplace").decode()
            raise errors.get("network.http.invalid_header", name, "not valid UTF-8")


def _query_args(query_string: str) -> dict[str, Any]:
    """Kuzzle's query string rules: `?flag` is True, a repeated key is a list."""
    args: dict[str, Any] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        parsed: Any = True if value == "" else value
        if key in args:
            previous = args[key]
            args[key] = [*previous, parsed] if isinstance(previous, list) else [previous, parsed]
        else:
            args[key] = parsed
    return args


class GatewayErrorHandler(ErrorHandler):
    """Errors Sanic meets outside our handlers (unknown URL, body too large) as envelopes."""

    def __init__(self, adapter: HttpAdapter) -> None:
        super().__init__()
        self.adapter = adapter

    def default(self, request: SanicRequest, exception: Exception) -> HTTPResponse:
        request_id = request.headers.get("x-kuzzle-request-id") if request else None
        path = request.path if request else "?"
        if isinstance(exception, RequestCancelled):  # nobody left to answer: not our error
            log.debug("%s %s: client disconnected before the response",
                      request.method if request else "?", path)
            return HTTPResponse(status=499)
        if isinstance(exception, NotFound | MethodNotAllowed):
            method = request.method if request else "?"
            error = errors.get("network.http.url_not_found", f"{method} {path}")
        elif isinstance(exception, PayloadTooLarge):
            error = errors.get("network.http.request_too_large")
        elif isinstance(exception, ServiceUnavailable):  # limits.request_timeout reached
            error = errors.get("core.fatal.service_unavailable", str(exception))
        elif isinstance(exception, SanicException):
            error = errors.get("network.http.unexpected_error", str(exception))
            error.status = exception.status_code
        else:
            log.error("unexpected error on %s", path, exc_info=exception)
            error = errors.wrap(exception)
        return self.adapter.error_response(error, request_id, request)
