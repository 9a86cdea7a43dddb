"""Protocols for tests: one written the Kuzzle 2 way, one the Kuzzle 1.x way, broken ones."""

from __future__ import annotations

from typing import Any

from sanic_gateway.protocols.base import Protocol


class Recording(Protocol):
    """Kuzzle 2 style: init(entry_point, context); records what the gateway asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def init(self, entry_point: Any, context: Any) -> None:
        super().init(entry_point, context)
        self.config = dict(entry_point.config)

    def broadcast(self, channels: Any, payload: Any) -> None:
        self.calls.append(("broadcast", list(channels), payload))

    def notify(self, channels: Any, connection_id: str, payload: Any) -> None:
        self.calls.append(("notify", list(channels), connection_id, payload))

    def join_channel(self, channel: str, connection_id: str) -> None:
        self.calls.append(("join", channel, connection_id))

    def leave_channel(self, channel: str, connection_id: str) -> None:
        self.calls.append(("leave", channel, connection_id))

    def disconnect(self, connection_id: str) -> None:
        self.calls.append(("disconnect", connection_id))


class Legacy:
    """Kuzzle 1.x style, as seed 002's skeleton ported to Python: init(config, context), the
    router accessor, execute(request, callback), channel methods taking one data object."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.answers: list[Any] = []

    def init(self, config: Any, context: Any) -> None:
        self.config = config
        self.context = context
        self.greeting = config["greeting"]

    def connect(self) -> str:
        connection = self.context.constructors.ClientConnection("legacy", ["10.0.0.1"], {})
        self.context.accessors.router.new_connection(connection)
        return connection.id

    def request(self, connection_id: str, payload: dict[str, Any]) -> Any:
        return self.context.accessors.router.execute(
            {"payload": payload, "connectionId": connection_id, "protocol": "legacy",
             "headers": {}},
            self.answers.append)

    def close(self, connection_id: str) -> None:
        self.context.accessors.router.remove_connection(connection_id)

    def broadcast(self, data: dict[str, Any]) -> None:
        self.calls.append(("broadcast", data))

    def notify(self, data: dict[str, Any]) -> None:
        self.calls.append(("notify", data))

    def join_channel(self, data: dict[str, Any]) -> None:
        self.calls.append(("join", data))

    def leave_channel(self, data: dict[str, Any]) -> None:
        self.calls.append(("leave", data))

    def disconnect(self, connection_id: str) -> None:
        self.calls.append(("disconnect", connection_id))


class NoNotify:
    def init(self, entry_point: Any, context: Any) -> None: ...
    def broadcast(self, channels: Any, payload: Any) -> None: ...
    def join_channel(self, channel: str, connection_id: str) -> None: ...
    def leave_channel(self, channel: str, connection_id: str) -> None: ...
    def disconnect(self, connection_id: str) -> None: ...


class FailingInit(Recording):
    def init(self, entry_point: Any, context: Any) -> None:
        raise RuntimeError("port already taken")
