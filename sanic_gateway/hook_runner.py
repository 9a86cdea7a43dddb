"""Runs hooks off the request path, concurrently, without a new Task per hook call.

Creating an asyncio Task costs several microseconds on a busy server, more than the rest of a
request's events together, so hook calls go to a queue served by a pool of worker tasks that
grows while hooks are slow (each worker runs one hook at a time) and shrinks back when idle.
A burst of hook calls costs a couple of wake-ups, not one per call; a slow hook never delays a
response nor another hook (whoever takes a call wakes a colleague for the rest of the queue).

Each call keeps its payload (a whole Request, result included) alive until it has run, so the
calls waiting or running are bounded (`limits.hooks_buffer_size`): beyond, new calls are
dropped, counted, and reported in one warning per `REPORT_EVERY` seconds at most. A worker
yields to the loop after every `BATCH` calls, so that a long queue never holds requests back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("sanic_gateway.hooks")

HookCall = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]

BATCH = 256  # hook calls a worker runs before it lets the loop serve others
REPORT_EVERY = 10.0  # seconds between two warnings about dropped hook calls


class HookRunner:
    """`submit(fn, *args)` schedules `await fn(*args)`; it never waits and never raises."""

    def __init__(self, max_pending: int = 5000, keep_idle: int = 8) -> None:
        self.max_pending = max_pending
        self.keep_idle = keep_idle
        self.dropped = 0  # hook calls dropped since start, the buffer being full
        self._queue: collections.deque[HookCall] = collections.deque()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._waking = 0  # workers told to run that have not started yet
        self._pending = 0  # hook calls queued or under way
        self._unreported = 0  # dropped calls not logged yet
        self._report: asyncio.TimerHandle | None = None

    def submit(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._pending >= self.max_pending:
            self._drop()
            return
        self._pending += 1
        self._queue.append((fn, args))
        if not self._waking:
            self._wake_one()

    def _drop(self) -> None:
        self.dropped += 1
        self._unreported += 1
        if self._report is None:  # the first drop of a while is told at once
            self._report_dropped()

    def _report_dropped(self) -> None:
        """Log the calls dropped since the last report; come back in REPORT_EVERY seconds
        while some keep being dropped."""
        if not self._unreported:
            self._report = None
            return
        log.warning("hook buffer full (limits.hooks_buffer_size: %d calls waiting or running): "
                    "%d hook call(s) dropped (%d since start); next report in %.0f s at most",
                    self.max_pending, self._unreported, self.dropped, REPORT_EVERY)
        self._unreported = 0
        self._report = asyncio.get_running_loop().call_later(REPORT_EVERY, self._report_dropped)

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
        ran = 0
        while True:
            while queue:
                if ran >= BATCH:  # requests, and other workers, get their turn
                    ran = 0
                    await asyncio.sleep(0)
                    continue
                fn, args = queue.popleft()
                if queue and not self._waking:
                    self._wake_one()  # the rest must not wait for this hook, however slow
                ran += 1
                try:
                    await fn(*args)
                except Exception:  # callers wrap hooks with their own error handling
                    log.exception("hook %r failed", fn)
                finally:
                    self._pending -= 1
                    del fn, args  # the payload may go while this worker waits
            if len(self._idle) >= self.keep_idle:
                return
            waiter = loop.create_future()
            self._idle.append(waiter)
            await waiter
            self._waking -= 1

    @property
    def pending(self) -> int:
        """Hook calls queued or under way."""
        return self._pending

    @property
    def busy(self) -> bool:
        return self._pending > 0

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
        self._pending -= len(self._queue)  # the running ones count down as they are cancelled
        self._queue.clear()
        self._waking = 0
        if self._report is not None:
            self._report.cancel()
            self._report = None
        if self._unreported:
            log.warning("%d hook call(s) dropped (limits.hooks_buffer_size: %d)",
                        self._unreported, self.max_pending)
            self._unreported = 0
