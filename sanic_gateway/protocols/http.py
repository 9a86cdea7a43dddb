"""HTTP (SPEC 7.1): Kuzzle's routes, plugin routes and POST /_query, turned into Requests for the
funnel, and the funnel's Requests turned back into Kuzzle's response envelope.

Everything is resolved when the app is built: each Sanic route gets a closure that already knows
its controller and action. The per-request work is parsing, one `funnel.execute`, one dumps.
"""

from __future__ import annotations

import itertools
import logging
import re
import traceback
import types
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from sanic import Request as SanicRequest
from sanic import Sanic
from sanic.exceptions import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    SanicException,
    ServiceUnavailable,
)
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse

from .. import errors, inputs
from ..request import ClientConnection, Request, RequestContext, new_request_id

if TYPE_CHECKING:
    from ..gateway import Gateway

log = logging.getLogger("sanic_gateway.http")

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


class HttpAdapter:
    """Builds Requests from Sanic requests and Sanic responses from executed Requests."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.funnel = gateway.funnel
        self.bus = gateway.bus
        self.dev = gateway.dev
        self.connection_events = (gateway.bus.has_listeners("connection:new")
                                  or gateway.bus.has_listeners("connection:remove"))

    def install(self, app: Sanic) -> None:
        names = itertools.count()
        for action in self.gateway.api.actions():
            for route in action.http:
                methods = {route.verb.upper()}
                if route.verb == "get":
                    methods.add("HEAD")
                app.add_route(
                    self._handler(action.controller, action.name),
                    _PARAM.sub(r"<\1>", route.path),
                    methods=methods,
                    name=f"r{next(names)}_{re.sub(r'[^A-Za-z0-9_]', '_', action.controller)}",
                    unquote=True,
                )
        app.add_route(self.query, "/_query", methods={"POST"}, name="query")

    def _handler(self, controller: str, action: str) -> Any:
        async def handle(request: SanicRequest, **params: str) -> HTTPResponse:
            return await self.serve(request, controller, action, params)
        return handle

    async def query(self, request: SanicRequest) -> HTTPResponse:
        """POST /_query: the body is a whole API request, as other protocols send it."""
        return await self.serve(request, None, None, {})

    async def serve(self, http: SanicRequest, controller: str | None, action: str | None,
                    params: dict[str, str]) -> HTTPResponse:
        headers = http.headers
        request_id = headers.get("x-kuzzle-request-id")
        try:
            data = self._data(http, controller, action, params)
        except errors.GatewayError as exc:
            return self.error_response(exc, request_id)
        if request_id:
            data["requestId"] = request_id
        connection = ClientConnection("http", [http.ip], headers,
                                      misc={"verb": http.method, "path": http.path})
        if self.connection_events:
            self.bus.hook("connection:new", connection)
        request = await self.funnel.execute(Request(data, RequestContext(connection)))
        if self.connection_events:
            self.bus.hook("connection:remove", connection)
        return self.response(request)

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
                       ) -> HTTPResponse:
        """An error met before the funnel (routing, size, parsing), in the same envelope."""
        if not request_id or not _header_safe(request_id):  # never echo what was refused
            request_id = new_request_id()
        envelope = {
            "requestId": request_id, "status": error.status,
            "error": error.to_dict(stack=_stack(error) if self.dev else None),
            "controller": None, "action": None, "index": None, "collection": None,
            "volatile": None, "result": None,
        }
        return HTTPResponse(dumps(envelope), status=error.status,
                            headers={"X-Kuzzle-Request-Id": request_id}, content_type=_JSON)


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
        return self.adapter.error_response(error, request_id)
