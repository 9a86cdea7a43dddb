"""`--workers N`: N forked processes serving one socket, supervised like one worker.

Sanic's own multi-process manager reports a failing plugin `init` with a traceback, advice
about flags this command does not have, and exit 137. Here each worker is the single-process
server of `app.serve`, so its logs, its one-line errors and its exit codes are the same as
with one worker. The first worker starts alone (it creates the stored JWT key and the
declared users), the others after it is ready; startup warnings are shown once, by the first.
SIGTERM or SIGINT stop every worker gracefully; SIGHUP is logged and ignored. With
`server.metrics`, the workers write their metrics to a private directory made before they are
forked (prometheus-client's multi-process mode), so that one scrape sums them (metrics.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from typing import Any

from . import metrics
from .app import sighup, summary
from .gateway import Gateway
from .logs import DropWarnings

log = logging.getLogger("sanic_gateway")


class Supervisor:
    def __init__(self, gateway: Gateway, sock: socket.socket, url: str, count: int) -> None:
        self.gateway, self.sock, self.url, self.count = gateway, sock, url, count
        self.children: dict[int, int] = {}  # pid -> worker number
        self.stopping = False
        self.metrics_dir: str | None = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, sighup)
        # server.metrics: the workers' metric files, summed by whichever worker is scraped
        self.metrics_dir = metrics.start_multiprocess() if self.gateway.stats else None
        try:
            for number in range(self.count):
                failed = self._start(number)
                if failed is not None:
                    return self._finish(self._exit_code_of(failed))
            if not self.stopping:
                log.info("%s", summary(self.gateway, self.url, self.count))
            return self._finish(0)
        finally:
            if self.metrics_dir is not None:
                metrics.stop_multiprocess(self.metrics_dir)

    def _gone(self, pid: int) -> None:
        """Worker `pid` was reaped."""
        self.children.pop(pid, None)
        if self.metrics_dir is not None:
            metrics.worker_gone(self.metrics_dir, pid)

    def _start(self, number: int) -> int | None:
        """Fork worker `number` and wait until it is ready (None) or gone (its pid)."""
        if self.stopping:
            return 0
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(ready_r)
            os._exit(self._work(number, ready_w))
        os.close(ready_w)
        self.children[pid] = number
        try:
            return None if os.read(ready_r, 1) == b"1" else pid
        finally:
            os.close(ready_r)

    def _work(self, number: int, ready_w: int) -> int:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Sanic installs its own handlers
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from .app import serve

        quiet = DropWarnings()
        handlers = logging.getLogger().handlers
        if number:
            for handler in handlers:
                handler.addFilter(quiet)

        def ready() -> None:
            for handler in handlers:
                handler.removeFilter(quiet)
            os.write(ready_w, b"1")
            os.close(ready_w)

        try:
            return serve(self.gateway, self.sock, self.url, summary=False, on_ready=ready)
        except BaseException:
            log.exception("worker %d failed", os.getpid())
            return 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()

    def _stop(self, signum: int, _frame: Any) -> None:
        if not self.stopping:
            log.info("%s received: stopping %d worker(s)", signal.Signals(signum).name,
                     len(self.children))
        self._terminate()

    def _terminate(self) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _exit_code_of(self, pid: int) -> int:
        """A worker ended before it was ready: its exit code (it logged why); 0 if stopping."""
        code = 0
        if pid in self.children:
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            self._gone(pid)
        if self.stopping:
            return max(code, 0)
        return code if code > 0 else 1

    def _finish(self, code: int) -> int:
        """Wait for every worker; one that ends while others serve stops them all."""
        if code and not self.stopping:
            self._terminate()
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            self._gone(pid)
            exit_code = os.waitstatus_to_exitcode(status)
            if not self.stopping:
                log.error("worker %d exited (code %d): stopping the others", pid, exit_code)
                self._terminate()
                code = code or (exit_code if exit_code > 0 else 1)
            elif exit_code > 0 and not code:
                code = exit_code
        return code

