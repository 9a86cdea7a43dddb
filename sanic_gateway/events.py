"""Events: compiled chains of pipes (awaited waterfall) and hooks (never awaited).

Chains are resolved once per event name, wildcards included, and cached: every event the API can
fire is compiled at start, so the request path only does a dict look-up. Pipe time is bounded by
one watchdog task that cancels overdue pipes (cheaper per call than `asyncio.timeout`), and the
number of pipe chains running at once is bounded with a waiting buffer. Hook calls are bounded
too (hook_runner.py), and plain-function plugins run in their own bounded threads
(plugin_threads.py).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .hook_runner import HookRunner
from .metrics import BUCKETS, FIRST_BUCKET, Histogram, Stats
from .plugin_threads import PluginThreads
from .request import Request

log = logging.getLogger("sanic_gateway.events")

@dataclass(frozen=True, slots=True)
class Listener:
    """One function listening to an event pattern (`ctrl:beforeX`, `ctrl:before*`, `ctrl:*`).

    `fn` is a coroutine function taking `(payload, event)` when `takes_event`, else `(payload)`.
    """

    plugin: str
    pattern: str
    name: str
    fn: Callable[..., Awaitable[Any]] = field(compare=False, repr=False)
    takes_event: bool = True
    # a hook of a plugin with `threads: N`: hands `(payload, event)` to its worker processes
    # (hook_workers.py) at once, without a call on this loop
    send: Callable[[Any, str], None] | None = field(default=None, compare=False, repr=False)

    def matches(self, event: str) -> bool:
        if self.pattern.endswith("*"):
            return event.startswith(self.pattern[:-1])
        return event == self.pattern

    def call(self, payload: Any, event: str) -> Awaitable[Any]:
        return self.fn(payload, event) if self.takes_event else self.fn(payload)


# a pipe chain as `EventBus.run_steps` runs it: each pipe with its histogram (or None)
Steps = tuple[tuple[Listener, Histogram | None], ...]


def as_async(fn: Callable[..., Any], threads: PluginThreads | None = None, *,
             wait: bool = False) -> Callable[..., Awaitable[Any]]:
    """`fn` itself if it is a coroutine function; else a coroutine function running it in a
    thread (so no plugin code blocks the event loop), awaiting what it returns if that is
    awaitable. The thread is one of `threads` (the plugins' own, bounded: when all are busy,
    503 unless `wait`, for hooks), or of the loop's default executor without `threads`."""
    if inspect.iscoroutinefunction(fn):
        return fn
    if threads is None:
        async def call_in_thread(*args: Any) -> Any:
            out = await asyncio.get_running_loop().run_in_executor(None, fn, *args)
            if inspect.isawaitable(out):
                out = await out
            return out

        return call_in_thread
    run = threads.run_waiting if wait else threads.run

    async def call_in_plugin_thread(*args: Any) -> Any:
        out = await run(fn, *args)
        if inspect.isawaitable(out):
            out = await out
        return out

    return call_in_plugin_thread


class CompiledEvent:
    """One event's chains, resolved at start. `fire(payload)` returns an awaitable giving the
    payload back; it is picked once for the chains' shape, so the common cases cost a single
    coroutine. Callers on a hot path check `active` first: an event nobody listens to then
    costs an attribute read."""

    __slots__ = ("active", "bus", "fire", "hooks", "name", "pipes", "steps")

    def __init__(self, bus: EventBus, name: str) -> None:
        self.bus = bus
        self.name = name
        self.pipes = bus.pipe_chain(name)
        self.hooks = bus.hook_chain(name)
        # each pipe with its histogram (server.metrics), found once, here
        self.steps = bus.pipe_steps(self.pipes, name)
        self.active = bool(self.pipes or self.hooks)
        if self.pipes and self.hooks:
            self.fire = self._pipes_then_hooks
        elif self.pipes:
            # positional only: a partial given a keyword copies a dict on each call
            self.fire = functools.partial(bus.run_steps, self.steps, name)
        else:
            self.fire = self._hooks_only

    async def _pipes_then_hooks(self, payload: Any) -> Any:
        payload = await self.bus.run_steps(self.steps, self.name, payload)
        self.bus.start_hooks(self.hooks, self.name, payload)
        return payload

    async def _hooks_only(self, payload: Any) -> Any:
        if self.hooks:
            self.bus.start_hooks(self.hooks, self.name, payload)
        return payload


class _PipeSlot:
    """A running pipe chain as the watchdog sees it."""

    __slots__ = ("deadline", "event", "expired", "listener", "task")

    def __init__(self, task: asyncio.Task[Any], event: str) -> None:
        self.task = task
        self.event = event
        self.deadline = 0.0
        self.expired = False
        self.listener: Listener | None = None


class EventBus:
    """Fires events to compiled pipe and hook chains."""

    def __init__(
        self,
        pipes: Iterable[Listener] = (),
        hooks: Iterable[Listener] = (),
        *,
        pipe_timeout: float = 5.0,
        pipe_warn_time: float = 0.5,
        max_concurrent_pipes: int = 50,
        pipes_buffer_size: int = 50000,
        hooks_buffer_size: int = 5000,
        plugin_threads: int = 16,
    ) -> None:
        self.pipes = tuple(pipes)
        self.hooks = tuple(hooks)
        self.pipe_timeout = pipe_timeout
        self.pipe_warn_time = pipe_warn_time
        self.max_concurrent_pipes = max_concurrent_pipes
        self.pipes_buffer_size = pipes_buffer_size
        self._pipe_chains: dict[str, tuple[Listener, ...]] = {}
        self._hook_chains: dict[str, tuple[Listener, ...]] = {}
        self._slots: set[_PipeSlot] = set()
        self._running_chains = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._hooks = HookRunner(max_pending=hooks_buffer_size)
        self.threads = PluginThreads(plugin_threads)  # plain-function plugins run there
        self._watchdog: asyncio.Task[None] | None = None
        self.stats: Stats | None = None  # server.metrics: pipe times, timeouts, hook errors

    # -- compilation -------------------------------------------------------------------------

    def set_listeners(self, pipes: Iterable[Listener], hooks: Iterable[Listener]) -> None:
        """Replace every listener; compiled chains are dropped (recompile, then re-prepare
        whoever holds CompiledEvents)."""
        self.pipes = tuple(pipes)
        self.hooks = tuple(hooks)
        self._pipe_chains.clear()
        self._hook_chains.clear()

    def compile(self, events: Iterable[str]) -> None:
        """Resolve the chains of these events now, so requests never match patterns."""
        for event in events:
            self.pipe_chain(event)
            self.hook_chain(event)

    def pipe_chain(self, event: str) -> tuple[Listener, ...]:
        chain = self._pipe_chains.get(event)
        if chain is None:
            chain = self._pipe_chains[event] = tuple(p for p in self.pipes if p.matches(event))
        return chain

    def hook_chain(self, event: str) -> tuple[Listener, ...]:
        chain = self._hook_chains.get(event)
        if chain is None:
            chain = self._hook_chains[event] = tuple(h for h in self.hooks if h.matches(event))
        return chain

    def has_listeners(self, event: str) -> bool:
        return bool(self.pipe_chain(event) or self.hook_chain(event))

    def event(self, name: str) -> CompiledEvent:
        """The compiled chains of `name`, for callers that fire it on a hot path."""
        return CompiledEvent(self, name)

    # -- firing ------------------------------------------------------------------------------

    async def trigger(self, event: str, payload: Any) -> Any:
        """Run the pipes of `event` on `payload`, then start its hooks; return the payload."""
        chain = self._pipe_chains.get(event)
        if chain is None:
            chain = self.pipe_chain(event)
        if chain:
            payload = await self.run_steps(self.pipe_steps(chain, event), event, payload)
        hooks = self._hook_chains.get(event)
        if hooks is None:
            hooks = self.hook_chain(event)
        if hooks:
            self.start_hooks(hooks, event, payload)
        return payload

    def hook(self, event: str, payload: Any) -> None:
        """Start only the hooks of `event`; never waits for them."""
        hooks = self.hook_chain(event)
        if hooks:
            self.start_hooks(hooks, event, payload)

    # -- pipes -------------------------------------------------------------------------------

    def pipe_steps(self, chain: tuple[Listener, ...], event: str) -> Steps:
        """The pipes of `chain` on `event`, each with the histogram its time goes to when
        server.metrics is on (else None): what `run_steps` runs."""
        times = self.stats.pipe_times(chain, event) if self.stats is not None and chain else None
        return tuple(zip(chain, times or (None,) * len(chain), strict=True))

    def run_pipes(self, chain: tuple[Listener, ...], event: str, payload: Any) -> Awaitable[Any]:
        """The waterfall: each pipe gets what the previous one returned (None: unchanged)."""
        return self.run_steps(self.pipe_steps(chain, event), event, payload)

    async def run_steps(self, steps: Steps, event: str, payload: Any) -> Any:
        """`run_pipes` on a chain made into steps once (`pipe_steps`); each pipe's time goes
        to its histogram, when it has one."""
        if self._running_chains < self.max_concurrent_pipes:
            self._running_chains += 1
        else:
            await self._wait_for_place()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        slot = _PipeSlot(task, event)
        timed = self.pipe_timeout > 0
        if timed:
            if self._watchdog is None:
                self._start_watchdog(loop)
            self._slots.add(slot)
        try:
            for listener, histogram in steps:
                started = loop.time()
                slot.deadline = started + self.pipe_timeout
                slot.listener = listener
                try:
                    if listener.takes_event:
                        out = await listener.fn(payload, event)
                    else:
                        out = await listener.fn(payload)
                except asyncio.CancelledError:
                    if slot.expired:
                        task.uncancel()
                        raise self._timeout_error(listener, event) from None
                    raise
                except errors.GatewayError:
                    raise
                except Exception as exc:
                    log.exception("plugin %r: pipe %r on %r raised", listener.plugin,
                                  listener.name, event)
                    raise errors.get(
                        "plugin.runtime.unexpected_error",
                        f"{type(exc).__name__}: {exc} (plugin {listener.plugin!r}, "
                        f"pipe {listener.name!r} on {event!r})",
                    ) from exc
                if slot.expired:  # the pipe swallowed its cancellation
                    task.uncancel()
                    raise self._timeout_error(listener, event)
                elapsed = loop.time() - started
                if histogram is not None:  # Histogram.observe, inlined: once per pipe
                    histogram.counts[0 if elapsed <= FIRST_BUCKET
                                     else bisect_left(BUCKETS, elapsed)] += 1
                    histogram.sum += elapsed
                if elapsed > self.pipe_warn_time:
                    log.warning("plugin %r: pipe %r on %r took %.0f ms", listener.plugin,
                                listener.name, event, elapsed * 1000)
                if out is not None and out is not payload:
                    payload = self._next_payload(payload, out, listener, event)
            return payload
        finally:
            if timed:
                self._slots.discard(slot)
            if self._waiting:
                self._release()
            else:
                self._running_chains -= 1

    @staticmethod
    def _next_payload(payload: Any, out: Any, listener: Listener, event: str) -> Any:
        if not isinstance(payload, Request) or isinstance(out, Request):
            return out
        if payload.error is not None:  # a value returned on a failed request recovers it
            payload.set_result(out)
            return payload
        raise errors.get("plugin.runtime.invalid_pipe_result", listener.plugin, listener.name,
                         event, type(out).__name__)

    def _timeout_error(self, listener: Listener, event: str) -> errors.GatewayError:
        if self.stats is not None:
            self.stats.pipe_timeout(listener.plugin, event)
        log.error("plugin %r: pipe %r on %r cancelled after %.0f ms", listener.plugin,
                  listener.name, event, self.pipe_timeout * 1000)
        return errors.get("plugin.runtime.pipe_timeout", listener.plugin, event,
                          round(self.pipe_timeout * 1000))

    async def _wait_for_place(self) -> None:
        if len(self._waiting) >= self.pipes_buffer_size:
            raise errors.get("plugin.runtime.too_many_pipes")
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter  # _release hands its place over: the count is already ours
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()
            else:
                self._waiting.remove(waiter)
            raise

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._running_chains -= 1

    def _start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watchdog = loop.create_task(self._watch())

    async def _watch(self) -> None:
        interval = min(0.05, self.pipe_timeout / 2)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for slot in tuple(self._slots):
                if not slot.expired and slot.deadline <= now:
                    slot.expired = True
                    slot.task.cancel()

    # -- hooks -------------------------------------------------------------------------------

    def start_hooks(self, hooks: tuple[Listener, ...], event: str, payload: Any) -> None:
        submit = self._hooks.submit
        for listener in hooks:
            if listener.send is not None:
                listener.send(payload, event)
            else:
                submit(self._run_hook, listener, event, payload)

    async def _run_hook(self, listener: Listener, event: str, payload: Any) -> None:
        try:
            await listener.call(payload, event)
        except Exception as exc:
            log.exception("plugin %r: hook %r on %r raised", listener.plugin, listener.name, event)
            if self.stats is not None:
                self.stats.hook_error(listener.plugin, event)
            if event != "hook:onError":  # a failing error hook is only logged: no loop
                self.hook("hook:onError", {"error": exc, "event": event,
                                           "plugin": listener.plugin})

    async def close(self, grace: float = 5.0) -> None:
        """Stop the watchdog and give running hooks `grace` seconds to finish."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        await self._hooks.drain(grace)
        self._hooks.close()
        self.threads.close()
