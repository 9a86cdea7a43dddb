"""The contract every network protocol implements, HTTP aside.

A protocol is a class with `init(entry_point, context)`, `broadcast(channels, payload)`,
`notify(channels, connection_id, payload)`, `join_channel(channel, connection_id)`,
`leave_channel(channel, connection_id)` and `disconnect(connection_id)`. The gateway checks
these names when it loads the protocol, so a missing one is a config error, not a crash on the
first notification. Optional: `stop()` (called when the server stops, before connections are
dropped) and `http_upgrades(app, entry_point)` (a protocol served on the HTTP port, like WebSocket:
returns `{path: upgrade(request)}`, `upgrade` serving the socket until it closes; a plain GET on
such a path still reaches HTTP).

Kuzzle 1.x protocol plugins took one data object in their channel methods
(`join_channel({"channel", "connectionId"})`); a method declared with one parameter is called
that way, so such a port needs Python syntax only.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .entrypoint import EntryPoint

REQUIRED_METHODS = ("init", "broadcast", "notify", "join_channel", "leave_channel", "disconnect")
# method -> number of positional parameters in the Kuzzle 2 form (the 1.x form takes one object)
_ARITY = {"broadcast": 2, "notify": 3, "join_channel": 2, "leave_channel": 2}


class Protocol:
    """Optional base class: documents the contract and keeps `entry_point` and `context`.

    Subclasses override the channel methods; the defaults do nothing, as a protocol without
    channels (request/response only) needs nothing there.
    """

    name = "protocol"

    def init(self, entry_point: EntryPoint, context: Any) -> Any:
        self.entry_point = entry_point
        self.context = context

    def broadcast(self, channels: Sequence[str], payload: dict[str, Any]) -> None:
        """Send `payload` (with `room` = the channel) to every connection on each channel."""

    def notify(self, channels: Sequence[str], connection_id: str,
               payload: dict[str, Any]) -> None:
        """Send `payload` to one connection, once per channel (with `room` = the channel)."""

    def join_channel(self, channel: str, connection_id: str) -> None:
        """The connection now listens on `channel`."""

    def leave_channel(self, channel: str, connection_id: str) -> None:
        """The connection no longer listens on `channel`."""

    def disconnect(self, connection_id: str) -> None:
        """Close the connection (the protocol then calls `entry_point.remove_connection`)."""


@dataclass
class LoadedProtocol:
    name: str
    obj: Any
    source: str
    spec: dict[str, Any]
    legacy: set[str] = field(default_factory=set)  # channel methods taking one data object


def check_methods(obj: Any) -> tuple[list[str], set[str]]:
    """(problems, legacy methods): each required method missing or not callable is a problem;
    a channel method with one positional parameter is the Kuzzle 1.x form."""
    problems: list[str] = []
    legacy: set[str] = set()
    for name in REQUIRED_METHODS:
        method = getattr(obj, name, None)
        if method is None:
            problems.append(f"missing required method {name!r}")
            continue
        if not callable(method):
            problems.append(f"{name!r} is not a method")
            continue
        if name in _ARITY and _positional_count(method) == 1:
            legacy.add(name)
    return problems, legacy


def _positional_count(method: Any) -> int | None:
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
