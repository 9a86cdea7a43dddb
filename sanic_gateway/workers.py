"""The supervisor of `sanic-gateway run`: worker processes forked on one listening socket.

`run` always serves through it, with `--workers N` processes (1 by default): the supervisor
itself only waits, so a request costs the same as in a lone process, and a reload can start
new workers next to the old ones. Each worker is the single-process server of `app.serve`, so
its logs, its one-line errors and its exit codes are the same whatever the number of workers.

- Start: the first worker starts alone (it creates the stored JWT key and the declared users),
  the others once it is ready; startup warnings are shown once, by the first. A worker that
  ends before it is ready stops the start, with its exit code (it logged why).
- A worker that dies while serving is restarted, after a delay that doubles with each quick
  death (0.5 s up to 30 s), and its death is logged once; the others keep serving.
- SIGHUP: gateway.yaml is read and checked again (`rebuild`). Invalid, its errors are logged
  and the current workers keep serving. Valid, workers of the new configuration start (the
  first alone, as at start) on the same socket; once all are ready, the old ones drain (see
  drain.py); a new worker that fails before it is ready cancels the reload.
- SIGTERM or SIGINT stop every worker gracefully. Workers ask the kernel to kill them when
  the supervisor dies (PR_SET_PDEATHSIG), so even a supervisor killed with SIGKILL leaves none.
- `server.metrics` with several workers: they write their metrics to a private directory made
  before they are forked (prometheus-client's multi-process mode), so that one scrape sums
  them (metrics.py); a lone worker keeps its metrics in memory, with the process metrics.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import metrics
from .app import summary
from .drain import DRAIN_SIGNAL
from .gateway import Gateway
from .logs import DropWarnings

log = logging.getLogger("sanic_gateway")

BACKOFF_FIRST = 0.5  # seconds before restarting a worker that died
BACKOFF_MAX = 30.0
STABLE = 30.0  # a worker that served that long before dying starts the backoff again

Rebuild = Callable[[], "tuple[Gateway, int] | None"]  # SIGHUP: (gateway, workers) or None


@dataclass
class Generation:
    """The workers of one configuration: `count` of them, `forked` so far."""

    number: int
    gateway: Gateway
    count: int
    forked: int = 0


@dataclass
class Worker:
    pid: int
    slot: int
    generation: int
    started: float
    ready_fd: int | None  # readable once when the worker is ready (or gone)
    ready: bool = False


class Supervisor:
    def __init__(self, gateway: Gateway, sock: socket.socket, url: str, count: int,
                 rebuild: Rebuild | None = None) -> None:
        self.sock, self.url, self.rebuild = sock, url, rebuild
        self.pending: Generation | None = Generation(0, gateway, count)  # starting
        self.current: Generation | None = None  # serving
        self.workers: dict[int, Worker] = {}  # by pid
        self.restarts: dict[int, float] = {}  # slot of the current generation -> when
        self.deaths: dict[int, int] = {}  # slot -> quick deaths in a row
        self.received: list[int] = []
        self.reload_wanted = False
        self.stopping = False
        self.metrics_dir: str | None = None
        self.code = 0
        self.pid = os.getpid()
        self.numbers = itertools.count(1)  # of the next generations
        self._wake: tuple[int, int] = (-1, -1)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; the exit code of `run`."""
        self._wake = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        old_wakeup = signal.set_wakeup_fd(self._wake[1], warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, self._note)
        first = self.pending
        if first is not None and first.gateway.stats is not None and first.count > 1:
            self.metrics_dir = metrics.start_multiprocess()
        try:
            while True:
                self._handle_signals()
                self._reap()
                if self.stopping and not self.workers:
                    return self.code
                while self._advance():
                    pass
                self._wait()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in self._wake:
                os.close(fd)
            if self.metrics_dir is not None:
                metrics.stop_multiprocess(self.metrics_dir)

    def _note(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)

    def _wait(self) -> None:
        """Until a signal, a worker ready (or gone) or the next restart is due."""
        fds = [w.ready_fd for w in self.workers.values() if w.ready_fd is not None]
        timeout = None
        if self.restarts:
            timeout = max(0.0, min(self.restarts.values()) - time.monotonic())
        if self.reload_wanted and self.pending is None:
            timeout = 0.0
        readable, _, _ = select.select([self._wake[0], *fds], [], [], timeout)
        for fd in readable:
            if fd == self._wake[0]:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 512)
                continue
            worker = next(w for w in self.workers.values() if w.ready_fd == fd)
            worker.ready = os.read(fd, 1) == b"1"
            os.close(fd)
            worker.ready_fd = None  # gone if not ready: SIGCHLD tells the rest

    def _handle_signals(self) -> None:
        while self.received:
            signum = self.received.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    log.info("%s received: stopping %d worker(s)", signal.Signals(signum).name,
                             len(self.workers))
                self._stop_all()
            elif signum == signal.SIGHUP and not self.stopping:
                if self.rebuild is None:
                    log.warning("SIGHUP received and ignored: this server cannot reload")
                else:
                    log.info("SIGHUP received: reloading the configuration")
                    self.reload_wanted = True

    def _stop_all(self) -> None:
        self.stopping = True
        self.pending = None
        self.restarts.clear()
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    # -- workers that end -------------------------------------------------------------------

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._gone(worker)
                self._ended(worker, os.waitstatus_to_exitcode(status))

    def _gone(self, worker: Worker) -> None:
        """`worker` was reaped: what it held in the supervisor is released."""
        if self.metrics_dir is not None:  # its open connections no longer count
            metrics.worker_gone(self.metrics_dir, worker.pid)
        if worker.ready_fd is not None:
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _ended(self, worker: Worker, code: int) -> None:
        if self.stopping:
            if code > 0 and not self.code:
                self.code = code
            return
        pending, current = self.pending, self.current
        if pending is not None and worker.generation == pending.number:
            self._start_failed(worker, code)
        elif current is not None and worker.generation == current.number:
            self._schedule_restart(worker, code)
        elif code > 0:  # a worker of a previous configuration, draining
            log.warning("worker %d of the previous configuration exited (%s)", worker.pid,
                        _how(code))

    def _start_failed(self, worker: Worker, code: int) -> None:
        """A worker of the configuration being started ended (it logged why)."""
        if self.current is None:  # the first start: nothing serves, stop
            self.code = code if code > 0 else 1
            self._stop_all()
            return
        log.error("reload cancelled: worker %d of the new configuration exited (%s) before "
                  "it was ready; the previous configuration is still served", worker.pid,
                  _how(code))
        self._end_generation(self.pending.number if self.pending else -1, signal.SIGTERM)
        self.pending = None

    def _schedule_restart(self, worker: Worker, code: int) -> None:
        now = time.monotonic()
        quick = now - worker.started < STABLE
        deaths = self.deaths[worker.slot] = (self.deaths.get(worker.slot, 0) + 1) if quick else 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (deaths - 1))
        log.error("worker %d exited unexpectedly (%s): restarting it in %gs", worker.pid,
                  _how(code), delay)
        self.restarts[worker.slot] = now + delay

    # -- workers that start -----------------------------------------------------------------

    def _advance(self) -> bool:
        """One step of starting, promoting, reloading or restarting; False: nothing to do."""
        if self.stopping:
            return False
        pending = self.pending
        if pending is not None:
            mine = [w for w in self.workers.values() if w.generation == pending.number]
            if pending.forked == 0:
                self._fork(pending, 0, warnings=True)
                return True
            if pending.forked < pending.count and all(w.ready for w in mine):
                for slot in range(pending.forked, pending.count):
                    self._fork(pending, slot, warnings=False)
                return True
            if pending.forked == pending.count and len(mine) == pending.count and all(
                    w.ready for w in mine):
                self._promote(pending)
                return True
        elif self.reload_wanted:
            self.reload_wanted = False
            self._reload()
            return True
        now = time.monotonic()
        due = [slot for slot, when in self.restarts.items() if when <= now]
        for slot in due:
            del self.restarts[slot]
            if self.current is not None:
                self._fork(self.current, slot, warnings=False)
        return bool(due)

    def _promote(self, new: Generation) -> None:
        old, self.current, self.pending = self.current, new, None
        self.restarts.clear()
        self.deaths.clear()
        line = summary(new.gateway, self.url, new.count)
        if old is None:
            log.info("%s", line)
            return
        draining = self._end_generation(old.number, DRAIN_SIGNAL)
        log.info("reloaded: %s; %d worker(s) of the previous configuration draining", line,
                 draining)

    def _end_generation(self, number: int, signum: int) -> int:
        """Send `signum` to the workers of generation `number` (SIGTERM to those not ready:
        they cannot drain yet); how many there were."""
        ending = [w for w in self.workers.values() if w.generation == number]
        for worker in ending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum if worker.ready else signal.SIGTERM)
        return len(ending)

    def _reload(self) -> None:
        assert self.rebuild is not None
        built = self.rebuild()  # logs what is wrong, if anything
        if built is None:
            return
        gateway, count = built
        self.pending = Generation(next(self.numbers), gateway, count)
        log.info("configuration valid: starting %d worker(s) with it", count)

    def _fork(self, generation: Generation, slot: int, *, warnings: bool) -> None:
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(ready_r)
                self._become_worker()
                code = self._work(generation.gateway, ready_w, warnings)
            finally:
                os._exit(code)
        os.close(ready_w)
        generation.forked = max(generation.forked, slot + 1)
        self.workers[pid] = Worker(pid, slot, generation.number, time.monotonic(), ready_r)

    # -- in the worker ----------------------------------------------------------------------

    def _become_worker(self) -> None:
        """Leave the supervisor's signal handling and descriptors; die with it."""
        signal.set_wakeup_fd(-1)
        for fd in (*self._wake, *(w.ready_fd for w in self.workers.values() if w.ready_fd)):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.workers.clear()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor reloads, not a worker
        signal.signal(DRAIN_SIGNAL, signal.SIG_IGN)  # until the server can drain
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Sanic installs its own handlers
        signal.signal(signal.SIGINT, signal.default_int_handler)
        die_with_parent(self.pid)

    def _work(self, gateway: Gateway, ready_w: int, warnings: bool) -> int:
        from .app import serve

        quiet = DropWarnings()
        handlers = logging.getLogger().handlers
        if not warnings:
            for handler in handlers:
                handler.addFilter(quiet)

        def ready() -> None:
            for handler in handlers:
                handler.removeFilter(quiet)
            os.write(ready_w, b"1")
            os.close(ready_w)

        try:
            return serve(gateway, self.sock, self.url, summary=False, on_ready=ready)
        except BaseException:
            log.exception("worker %d failed", os.getpid())
            return 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()


def die_with_parent(parent: int) -> None:
    """Killed (SIGKILL) when process `parent` dies, however it dies (Linux), as hook worker
    processes are: a supervisor killed with SIGKILL takes its workers with it at once, and
    they take their hook workers."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the supervisor died before the line above
        os._exit(0)


def _how(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"code {code}"

