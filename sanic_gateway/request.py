"""The Request every protocol builds and the funnel executes, and the response envelope.

Names follow Kuzzle's v2 Request (SPEC 6) so that a plugin written against Kuzzle's docs finds
`request.input.args`, `request.input.resource._id`, `request.context.user` where it expects them.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from . import errors

_RESERVED = frozenset(
    ("controller", "action", "index", "collection", "_id", "body", "jwt", "volatile", "requestId")
)
_connection_ids = itertools.count(1)


_VARIANT = dict(zip("0123456789abcdef", "89ab89ab89ab89ab", strict=True))


_random_hex = ""  # CSPRNG output not used yet, in hex: one system call per 128 ids
_random_pos = 0


def new_request_id() -> str:
    """A random UUID (version 4) from the OS's CSPRNG: unguessable, so nothing can be
    inferred or forged from another request's id. Formatted by hand from `os.urandom`, read
    4 KiB at a time: about a third of the cost of str(uuid.uuid4())."""
    global _random_hex, _random_pos
    h = _random_hex[_random_pos:_random_pos + 32]
    if len(h) < 32:
        _random_hex, _random_pos = os.urandom(2048).hex(), 0
        h = _random_hex[:32]
    _random_pos += 32
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def _forget_random() -> None:
    """A forked worker must not hand out the ids its parent had drawn but not used."""
    global _random_hex, _random_pos
    _random_hex, _random_pos = "", 0


os.register_at_fork(after_in_child=_forget_random)


class ClientConnection:
    """One client connection; `id` is unique in this process (an HTTP request is a connection).
    `misc`: what the protocol adds, as in Kuzzle (HTTP: `verb` and `path`)."""

    __slots__ = ("headers", "id", "ips", "misc", "protocol")

    def __init__(
        self,
        protocol: str,
        ips: list[str] | tuple[str, ...] = (),
        headers: dict[str, str] | None = None,
        id: str | None = None,
        misc: dict[str, Any] | None = None,
    ) -> None:
        self.id = id or f"{protocol}-{next(_connection_ids)}"
        self.protocol = protocol
        self.ips = list(ips)
        self.headers = headers or {}
        self.misc = misc or {}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "protocol": self.protocol, "ips": self.ips, "headers": self.headers,
                "misc": self.misc}

    def __repr__(self) -> str:
        return f"ClientConnection({self.id!r}, {self.protocol!r})"


class RequestResource:
    """`index`, `collection` and `_id`; also readable as a mapping (`resource["_id"]`)."""

    __slots__ = ("_id", "collection", "index")

    def __init__(self, index: str | None = None, collection: str | None = None,
                 _id: str | None = None) -> None:
        self.index = index
        self.collection = collection
        self._id = _id

    def __getitem__(self, key: str) -> Any:
        if key not in self.__slots__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.__slots__ else default

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "collection": self.collection, "_id": self._id}


class RequestInput:
    __slots__ = ("action", "args", "body", "controller", "jwt", "resource", "volatile")

    def __init__(self, data: dict[str, Any]) -> None:
        self.controller: str | None = data.get("controller")
        self.action: str | None = data.get("action")
        self.resource = RequestResource(data.get("index"), data.get("collection"), data.get("_id"))
        body = data.get("body")
        self.body: dict[str, Any] = {} if body is None else body
        self.jwt: str | None = data.get("jwt")
        volatile = data.get("volatile")
        self.volatile: dict[str, Any] = {} if volatile is None else volatile
        self.args: dict[str, Any] = {k: v for k, v in data.items() if k not in _RESERVED}


class RequestContext:
    """Who sent the request and how. `user` and `token` are set by authentication."""

    __slots__ = ("connection", "token", "user")

    def __init__(self, connection: ClientConnection | None = None, user: Any = None,
                 token: Any = None) -> None:
        self.connection = connection or ClientConnection("internal")
        self.user = user
        self.token = token

    @property
    def protocol(self) -> str:
        return self.connection.protocol


class RequestResponse:
    """What the protocol sends besides the envelope: status and headers a plugin may set."""

    __slots__ = ("headers", "raw", "status")

    def __init__(self) -> None:
        self.status = 102
        self.headers: dict[str, str] = {}
        self.raw = False  # True: protocols send `result` as it is, without the envelope

    def set_header(self, name: str, value: str) -> None:
        self.headers[name] = str(value)


class Request:
    """An API request: `input`, `context`, `response`, then `result` or `error`."""

    __slots__ = ("context", "error", "id", "input", "response", "result", "timestamp")

    def __init__(
        self,
        data: dict[str, Any],
        context: RequestContext | None = None,
        *,
        parent: Request | None = None,
    ) -> None:
        self.id: str = data.get("requestId") or new_request_id()
        self.input = RequestInput(data)
        if context is None and parent is not None:
            context = RequestContext(parent.context.connection, parent.context.user,
                                     parent.context.token)
        self.context = context or RequestContext()
        self.response = RequestResponse()
        self.result: Any = None
        self.error: errors.GatewayError | None = None
        self.timestamp = time.time()

    @property
    def status(self) -> int:
        return self.response.status

    def set_result(self, result: Any, status: int = 200) -> None:
        """Set the result; this clears any error (an error pipe recovers this way)."""
        self.result = result
        self.error = None
        self.response.status = status

    def set_error(self, error: BaseException) -> None:
        self.error = errors.wrap(error)
        self.result = None
        self.response.status = self.error.status

    def envelope(self, *, stack: str | None = None) -> dict[str, Any]:
        """Kuzzle's response envelope for this request."""
        resource = self.input.resource
        return {
            "requestId": self.id,
            "status": self.response.status,
            "error": None if self.error is None else self.error.to_dict(stack=stack),
            "controller": self.input.controller,
            "action": self.input.action,
            "index": resource.index,
            "collection": resource.collection,
            "volatile": self.input.volatile or None,
            "result": self.result,
        }

    def __repr__(self) -> str:
        return f"Request({self.input.controller}:{self.input.action}, id={self.id})"
