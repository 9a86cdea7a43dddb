"""The threads that run plugins' plain functions, bounded and apart from everything else.

A plain `def` hook, pipe or action runs in a thread so that it cannot block the event loop.
Those threads are the plugins' own (`limits.plugin_threads`): a plugin that blocks in all of
them delays no login (password hashing has its own threads, security/passwords.py) and no other
request. When they are all busy, a pipe or action gets 503 `plugin.runtime.too_many_threads` at
once instead of queueing behind the blocked ones; a hook waits for a free thread (it has no
client to answer, and the hook buffer already bounds how many calls wait).

A slot is given back when the function returns, not when its caller stops waiting: a pipe
cancelled by its timeout keeps its thread busy until the function ends, as it really does.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any

from . import errors


class PluginThreads:
    """`await run(fn, *args)` calls `fn(*args)` in one of `size` threads, or raises 503."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.busy = 0  # threads running a plugin function, or handed to a waiting hook
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """For pipes and actions: a free thread now, or 503."""
        if self.busy >= self.size:
            raise errors.get("plugin.runtime.too_many_threads", self.size)
        self.busy += 1
        return await self._start(fn, args)

    async def run_waiting(self, fn: Callable[..., Any], *args: Any) -> Any:
        """For hooks: wait for a free thread."""
        if self.busy < self.size:
            self.busy += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter  # _release hands its slot over: the count is already ours
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()
                else:
                    self._waiting.remove(waiter)
                raise
        return await self._start(fn, args)

    def _start(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Run `fn` in a thread on a slot already counted; the slot is released when `fn` ends
        (one wake-up of the loop brings both the outcome and the release)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def call() -> None:
            try:
                out, exc = fn(*args), None
            except BaseException as error:  # handed to the awaiting coroutine
                out, exc = None, error
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self._finish, future, out, exc)

        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.size, thread_name_prefix="plugin")
        try:
            self._executor.submit(call)
        except RuntimeError:  # shut down
            self._release()
            raise
        return future

    def _finish(self, future: asyncio.Future[Any], out: Any, exc: BaseException | None) -> None:
        self._release()
        if future.cancelled():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(out)

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.busy -= 1

    def close(self) -> None:
        """Let the threads go when their functions end; start none any more."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
