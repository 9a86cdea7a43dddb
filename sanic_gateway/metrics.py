"""Prometheus metrics: counted cheaply while serving, exposed with `prometheus-client` on demand.

The request path only adds to plain Python numbers (`Stats`: a dict look-up, a bisect and two
additions a request, on the event loop's thread, so no lock). prometheus-client's own metric
objects take a lock per update and, in multi-process mode, write to a memory-mapped file: about
ten times the cost. So `Exporter.flush()` hands what was counted since the last flush to
prometheus-client's metrics in one go: before each scrape, and every `FLUSH_EVERY` seconds in
each worker when several share the port (prometheus-client's multi-process mode: each worker
writes its own files in a private directory that the supervisor creates before forking, marks
when a worker dies and removes at exit; one scrape sums every worker's files).

Label values come from what the gateway knows (its actions, plugins, strategies, protocols),
never from what a client sent: a client cannot grow the number of series.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Container
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Action
    from .gateway import Gateway
    from .request import Request

# Upper bounds (seconds) of latency buckets: the gateway answers in tens of microseconds, a
# plugin calling a database in milliseconds; the last bucket (+Inf) catches the rest.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# most observations fall in the first bucket: one float comparison finds it (bisect_left
# calls back to Python's comparison once per halving)
FIRST_BUCKET = BUCKETS[0]
FLUSH_EVERY = 1.0  # seconds, per worker in multi-process mode
PREFIX = "sanic_gateway_"
ENV = "PROMETHEUS_MULTIPROC_DIR"

# errors that are a rate limit's refusal, and the `limit` label they get
RATE_LIMITS = {
    "api.process.too_many_requests": "profile",
    "api.process.too_many_logins_requests": "login",
    "plugin.runtime.too_many_pipes": "pipes",
    "plugin.runtime.too_many_threads": "plugin_threads",
}


class Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf) and their sum, since the last
    flush."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[0 if seconds <= FIRST_BUCKET else bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds


class RequestSeries(Histogram):
    """The latencies of the requests of one action, by one protocol, answered with one status:
    the number of requests is the histogram's count (one look-up and one observation a
    request). `latency` False: refused before the funnel, counted in the last bucket and not
    shown as a latency."""

    __slots__ = ("action", "controller", "latency", "protocol", "status")

    def __init__(self, controller: str, action: str, protocol: str, status: int,
                 latency: bool = True) -> None:
        super().__init__()
        self.controller, self.action, self.protocol = controller, action, protocol
        self.status = str(status)
        self.latency = latency


class Stats:
    """What happened since the last flush, counted on the event loop's thread."""

    def __init__(self) -> None:
        self.requests: dict[tuple[Any, str, int], RequestSeries] = {}
        self.pipes: dict[tuple[str, str], Histogram] = {}
        self._chains: dict[str, tuple[tuple[Any, ...], tuple[Histogram, ...]]] = {}
        self.pipe_timeouts: dict[tuple[str, str], int] = {}
        self.hook_errors: dict[tuple[str, str], int] = {}
        self.login_failures: dict[str, int] = {}
        self.rate_limited: dict[str, int] = {}
        self.login_action: Action | None = None  # auth:login, set by the gateway
        self.strategies: Container[Any] = ()  # names a login failure may be labelled with

    def request(self, action: Action | None, request: Request, protocol: str,
                seconds: float) -> None:
        """One request the funnel has finished (`action` None: no such action)."""
        key = (action, protocol, request.response.status)
        series = self.requests.get(key)
        if series is None:
            series = self._series(key, True)
        series.counts[0 if seconds <= FIRST_BUCKET else bisect_left(BUCKETS, seconds)] += 1
        series.sum += seconds
        if request.error is not None:
            self._failed(action, request)

    def refused(self, status: int, protocol: str) -> None:
        """A request refused before it reached the funnel (unknown URL, unreadable body): no
        controller or action, no latency."""
        key = ("", protocol, status)
        series = self.requests.get(key)
        if series is None:
            series = self._series(key, False)
        series.counts[-1] += 1

    def _series(self, key: tuple[Any, str, int], latency: bool) -> RequestSeries:
        action, protocol, status = key
        controller, name = (action.controller, action.name) if action else ("", "")
        series = self.requests[key] = RequestSeries(controller, name, protocol, status, latency)
        return series

    def _failed(self, action: Action | None, request: Request) -> None:
        error = request.error
        limit = RATE_LIMITS.get(error.id) if error is not None else None
        if limit is not None:
            self.rate_limited[limit] = self.rate_limited.get(limit, 0) + 1
        elif action is not None and action is self.login_action:
            strategy = request.input.args.get("strategy")
            if strategy not in self.strategies:
                strategy = ""  # never a label a client chose
            self.login_failures[strategy] = self.login_failures.get(strategy, 0) + 1

    def pipe_times(self, chain: tuple[Any, ...], event: str) -> tuple[Histogram, ...]:
        """The histograms of a chain of pipes (listeners with a `plugin`) on `event`, one per
        pipe, in order: the pipe loop observes into them without a look-up per pipe."""
        cached = self._chains.get(event)
        if cached is not None and cached[0] is chain:
            return cached[1]
        times = []
        for listener in chain:
            histogram = self.pipes.get((listener.plugin, event))
            if histogram is None:
                histogram = self.pipes[(listener.plugin, event)] = Histogram()
            times.append(histogram)
        self._chains[event] = (chain, tuple(times))
        return self._chains[event][1]

    def pipe_timeout(self, plugin: str, event: str) -> None:
        self.pipe_timeouts[(plugin, event)] = self.pipe_timeouts.get((plugin, event), 0) + 1

    def hook_error(self, plugin: str, event: str) -> None:
        self.hook_errors[(plugin, event)] = self.hook_errors.get((plugin, event), 0) + 1


# -- multi-process mode (--workers N) ---------------------------------------------------------

def start_multiprocess() -> str:
    """Called by the supervisor before it forks: a private directory for the workers' metric
    files, and prometheus-client switched to its multi-process values (what it does at import
    when PROMETHEUS_MULTIPROC_DIR is set, done here because it was imported before)."""
    from prometheus_client import values

    directory = tempfile.mkdtemp(prefix="sanic-gateway-metrics-")
    os.environ[ENV] = directory
    values.ValueClass = values.MultiProcessValue()
    return directory


def worker_gone(directory: str, pid: int) -> None:
    """A worker ended: its open connections no longer count (its counters still do)."""
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, directory)


def stop_multiprocess(directory: str) -> None:
    """The supervisor exits: its directory goes."""
    from prometheus_client import values

    os.environ.pop(ENV, None)
    values.ValueClass = values.MutexValue
    shutil.rmtree(directory, ignore_errors=True)


# -- exposition --------------------------------------------------------------------------------

class Exporter:
    """prometheus-client's metrics of one worker, fed by `flush()` from its Stats."""

    def __init__(self, gateway: Gateway) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge
        from prometheus_client import Histogram as PromHistogram

        self.gateway = gateway
        self.stats: Stats = gateway.stats
        self.directory = os.environ.get(ENV)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            PREFIX + "requests", "API requests answered, by controller, action, protocol and "
            "status (protocol 'internal': requests made by plugins)",
            ["controller", "action", "protocol", "status"], registry=r)
        self.latency = PromHistogram(
            PREFIX + "request_duration_seconds", "Time from a request's entry in the gateway "
            "to its outcome (events, rights, action)", ["controller", "action", "protocol"],
            buckets=BUCKETS, registry=r)
        self.pipe_latency = PromHistogram(
            PREFIX + "pipe_duration_seconds", "Time spent in each plugin's pipes, by event",
            ["plugin", "event"], buckets=BUCKETS, registry=r)
        self.pipe_timeouts = Counter(
            PREFIX + "pipe_timeouts", "Pipes cancelled after limits.pipe_timeout",
            ["plugin", "event"], registry=r)
        self.hook_errors = Counter(
            PREFIX + "hook_errors", "Hooks that raised", ["plugin", "event"], registry=r)
        self.login_failures = Counter(
            PREFIX + "login_failures", "auth:login requests refused (bad credentials, unknown "
            "user or strategy...), by strategy ('' when unknown)", ["strategy"], registry=r)
        self.rate_limited = Counter(
            PREFIX + "rate_limited_requests", "Requests refused by a limit: profile (rateLimit), "
            "login (limits.login_attempts_per_second, failed logins per username), pipes "
            "(limits.pipes_buffer_size), plugin_threads", ["limit"], registry=r)
        self.connections = Gauge(
            PREFIX + "open_connections", "Open client connections, by protocol (http: TCP "
            "connections on the HTTP port, WebSocket ones included)", ["protocol"],
            multiprocess_mode="livesum", registry=r)
        self.in_flight = Gauge(
            PREFIX + "http_requests_in_flight", "HTTP requests being executed",
            multiprocess_mode="livesum", registry=r)
        if self.directory is None:
            from prometheus_client import PlatformCollector, ProcessCollector

            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self._children: dict[Any, Any] = {}
        self._seen_protocols: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """In multi-process mode, flush every FLUSH_EVERY seconds so that a scrape answered
        by another worker sees this one's counts."""
        if self.directory is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_regularly())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    async def _flush_regularly(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            self.flush()

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every worker (this one flushed first) and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        self.flush()
        if self.directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def flush(self) -> None:
        """Hand what Stats counted to prometheus-client, and zero it."""
        stats = self.stats
        for series in stats.requests.values():
            count = sum(series.counts)
            if not count:
                continue
            labels = (series.controller, series.action, series.protocol)
            self._child(self.requests, (*labels, series.status)).inc(count)
            if series.latency:
                self._add(self._child(self.latency, labels), series)
            else:
                series.counts[-1] = 0
        for key, histogram in stats.pipes.items():
            self._add(self._child(self.pipe_latency, key), histogram)
        for metric, counts in ((self.pipe_timeouts, stats.pipe_timeouts),
                               (self.hook_errors, stats.hook_errors),
                               (self.login_failures, stats.login_failures),
                               (self.rate_limited, stats.rate_limited)):
            for key, count in counts.items():
                if count:
                    self._child(metric, key if isinstance(key, tuple) else (key,)).inc(count)
                    counts[key] = 0
        self._gauges()

    def _gauges(self) -> None:
        gateway = self.gateway
        http = getattr(gateway, "http", None)
        counts = dict(gateway.hub.counts)
        counts["http"] = len(http.open_connections) if http is not None else 0
        for protocol in self._seen_protocols - counts.keys():
            counts[protocol] = 0
        for protocol, count in counts.items():
            self._child(self.connections, (protocol,)).set(count)
            self._seen_protocols.add(protocol)
        self.in_flight.set(http.active if http is not None else 0)

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @staticmethod
    def _add(child: Any, histogram: Histogram) -> None:
        """Add a Histogram's counts to a prometheus-client histogram child: what `observe()`
        does once per value (its `_sum` and per-bucket `_buckets`, not cumulative), done once
        per flush."""
        counts = histogram.counts
        if not any(counts):
            return
        child._sum.inc(histogram.sum)
        for i, count in enumerate(counts):
            if count:
                child._buckets[i].inc(count)
                counts[i] = 0
        histogram.sum = 0.0
