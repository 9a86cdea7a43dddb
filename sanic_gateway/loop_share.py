"""Fair shares of the event loop between connections.

Sanic serves a connection's pipelined requests one after the other without giving the loop
back, as long as the client's socket takes the answers. Two hundred connections that each
pipeline thousands of requests then hold the loop for seconds per turn: a new client waits
that long to be accepted, and hook workers run once per turn while every request queues a
hook call. `LoopShare.due()` counts the requests started during the current loop iteration;
past `limit`, the caller yields once, so one iteration never serves much more than `limit`
requests plus one per connection. Its cost: an increment and a comparison per request, and
one `call_soon` per loop iteration that serves any request.
"""

from __future__ import annotations

import asyncio


class LoopShare:
    __slots__ = ("count", "limit")

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self.count = 0  # requests started during this loop iteration

    def due(self) -> bool:
        """Count one request; True when the caller should yield (`await asyncio.sleep(0)`)."""
        self.count += 1
        if self.count == 1:
            asyncio.get_running_loop().call_soon(self._reset)
        return self.count > self.limit

    def _reset(self) -> None:
        self.count = 0
