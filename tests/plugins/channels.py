"""A plugin for tests: actions that drive the channel plumbing of whatever protocol calls them."""

from __future__ import annotations

import asyncio
from typing import Any


class ChannelsPlugin:
    def init(self, config: dict[str, Any], context: Any) -> None:
        self.channels = context.accessors.channels
        self.connections: list[Any] = []
        self.removed: list[Any] = []

    def on_new(self, connection: Any) -> None:
        self.connections.append(connection)

    def on_remove(self, connection: Any) -> None:
        self.removed.append(connection)

    def join(self, request: Any) -> bool:
        return self.channels.join_channel(request.input.args["channel"],
                                          request.context.connection.id)

    def leave(self, request: Any) -> bool:
        self.channels.leave_channel(request.input.args["channel"], request.context.connection.id)
        return True

    def notify(self, request: Any) -> bool:
        """Notify the caller itself on the given channel."""
        return self.channels.notify([request.input.args["channel"]],
                                    request.context.connection.id, dict(request.input.body))

    def broadcast(self, request: Any) -> bool:
        body = dict(request.input.body)
        size = int(request.input.args.get("size", 0))
        if size:
            body["filler"] = "x" * size
        self.channels.broadcast([request.input.args["channel"]], body)
        return True

    def members(self, request: Any) -> list[str]:
        return sorted(self.channels.members(request.input.args["channel"]))

    def me(self, request: Any) -> str:
        return request.context.connection.id

    async def sleep(self, request: Any) -> float:
        seconds = float(request.input.args.get("seconds", 0.5))
        await asyncio.sleep(seconds)
        return seconds


CHANNELS_PLUGIN = """
  chan:
    module: tests.plugins.channels:ChannelsPlugin
    hooks:
      "connection:new": on_new
      "connection:remove": on_remove
    controllers:
      ch:
        join: join
        leave: leave
        notify: notify
        broadcast: broadcast
        members: members
        me: me
        sleep: sleep
"""
