"""Runs hooks off the request path, concurrently, without a new Task per hook call.

Creating an asyncio Task costs several microseconds on a busy server, more than the rest of a
request's events together, so hook calls go to a queue served by a pool of worker tasks that
grows while hooks are slow (each worker runs one hook at a time) and shrinks back when idle.
A burst of hook calls costs a couple of wake-ups, not one per call; a slow hook never delays a
response nor another hook (whoever takes a call wakes a colleague for the rest of the queue).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("sanic_gateway.hooks")

HookCall = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]


class HookRunner:
    """`submit(fn, *args)` schedules `await fn(*args)`; it never waits and never raises."""

    def __init__(self, keep_idle: int = 8) -> None:
        self.keep_idle = keep_idle
        self._queue: collections.deque[HookCall] = collections.deque()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._waking = 0  # workers told to run that have not started yet
        self._running = 0  # hook calls under way

    def submit(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._queue.append((fn, args))
        if not self._waking:
            self._wake_one()

    def _wake_one(self) -> None:
        """Make sure one more worker will come for the queue: an idle one, or a new one."""
        self._waking += 1
        if self._idle:
            self._idle.popleft().set_result(None)
        else:
            task = asyncio.get_running_loop().create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        self._waking -= 1
        queue = self._queue
        while True:
            while queue:
                fn, args = queue.popleft()
                if queue and not self._waking:
                    self._wake_one()  # the rest must not wait for this hook, however slow
                self._running += 1
                try:
                    await fn(*args)
                except Exception:  # callers wrap hooks with their own error handling
                    log.exception("hook %r failed", fn)
                finally:
                    self._running -= 1
            if len(self._idle) >= self.keep_idle:
                return
            waiter = loop.create_future()
            self._idle.append(waiter)
            await waiter
            self._waking -= 1

    @property
    def busy(self) -> bool:
        return bool(self._queue or self._running)

    async def drain(self, timeout: float) -> bool:
        """Wait until every submitted hook has finished, at most `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.busy and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return not self.busy

    def close(self) -> None:
        for task in tuple(self._workers):
            task.cancel()
        self._idle.clear()
        self._waking = 0
