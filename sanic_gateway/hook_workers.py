"""Hooks in worker processes: `threads: N` on a plugin runs its hooks in N processes of their own.

Heavy hook work (audit trails, exports) must not take CPU from the requests. Each worker is a
fresh interpreter (`python -m sanic_gateway.hook_workers`, started by exec as multiprocessing's
`spawn` does, never a bare fork of a server that has threads); it imports the plugin and runs its
`init(config, context)` with a context that has no `accessors`. Pipes, controllers and
strategies stay in the server process.

Ownership: the server process that serves (each one under `run --workers N`) starts its own
pools in `Gateway.start()` and stops them in `Gateway.stop()`. A worker also dies with it: it
exits when its socket to the server closes, and asks the kernel for SIGKILL when its parent dies
(Linux `PR_SET_PDEATHSIG`), so that even a server killed with -9 leaves no orphan. Workers ignore
SIGINT and SIGTERM: a Ctrl-C reaching the whole process group lets them finish the events in
hand, and the server tells them when to stop.

Each event a hook listens to goes to one worker, round-robin, as data (`to_data`: a Request
becomes a `RequestView` with the same attribute names). A worker acknowledges each event once
its hooks have run; events not acknowledged when it dies or hangs (no message for
`limits.hook_workers_timeout`: an idle worker beats every second) are sent again to a live
worker (an event that killed `MAX_ATTEMPTS` workers is dropped and logged). Each worker holds at
most `limits.hook_workers_buffer_size` unacknowledged events: when all are full, new events are
dropped, counted and logged instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import Listener

log = logging.getLogger("sanic_gateway.hook_workers")

HEARTBEAT = 1.0  # seconds between two beats of an idle worker
MAX_ATTEMPTS = 3  # workers an event may take down (crash or hang) before it is dropped
REPORT_EVERY = 10.0  # seconds between two warnings about dropped events
RESTART_DELAY = 1.0  # a worker that died this soon after its start waits before its restart,
MAX_RESTART_DELAY = 30.0  # doubling at each such death in a row, up to this
_HEAD = struct.Struct("!I")


# -- payloads as data -------------------------------------------------------------------------

class View:
    """Read-only-ish attribute bag standing for an object of the server process; also readable
    as a mapping (`view["_id"]`, `view.get("index")`) as RequestResource is."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __getitem__(self, key: str) -> Any:
        try:
            return self.__dict__[key]
        except KeyError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() if isinstance(v, View) else v for k, v in self.__dict__.items()}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


class RequestView(View):
    """A Request as a hook worker receives it: `id`, `timestamp`, `status`, `input`
    (`controller`, `action`, `resource` {`index`, `collection`, `_id`}, `args`, `body`,
    `volatile`), `context` (`protocol`, `connection` {`id`, `protocol`, `ips`, `headers`,
    `misc`}, `user` {`_id`, `profileIds`, `content`}, `token` {`_id`, `userId`, `expiresAt`,
    `ttl`}), `response` (`status`, `headers`), `result`, and `error` as a dict (`id`, `code`,
    `message`, `status`) or None. The JWT itself is not sent."""


def to_data(value: Any) -> Any:
    """`value` as plain data that pickle can carry to a worker process."""
    from .request import ClientConnection, Request

    if isinstance(value, Request):
        return _request_view(value)
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_data(v) for v in value) if type(value) in (list, tuple) \
            else [to_data(v) for v in value]
    if isinstance(value, ClientConnection):
        return _connection_view(value)
    if isinstance(value, BaseException):
        return _error_data(value)
    if hasattr(value, "jwt") and callable(getattr(value, "to_dict", None)):
        return View(**value.to_dict())  # a Token: never the JWT itself
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return View(**{f.name: to_data(getattr(value, f.name))
                       for f in dataclasses.fields(value)})
    return value


def _error_data(exc: BaseException) -> dict[str, Any]:
    to_dict = getattr(exc, "to_dict", None)
    if callable(to_dict):
        return {**to_dict(), "type": type(exc).__name__}
    return {"type": type(exc).__name__, "message": str(exc)}


def _connection_view(connection: Any) -> View:
    """A ClientConnection without its Authorization header (the JWT stays in the server)."""
    data = connection.to_dict()
    data["headers"] = {k: v for k, v in data["headers"].items() if k.lower() != "authorization"}
    return View(**data)


def _request_view(request: Any) -> RequestView:
    inp, ctx = request.input, request.context
    return RequestView(
        id=request.id,
        timestamp=request.timestamp,
        status=request.response.status,
        input=View(controller=inp.controller, action=inp.action,
                   resource=View(**inp.resource.to_dict()), args=to_data(inp.args),
                   body=to_data(inp.body), volatile=to_data(inp.volatile)),
        context=View(protocol=ctx.protocol, connection=_connection_view(ctx.connection),
                     user=to_data(ctx.user), token=to_data(ctx.token)),
        response=View(status=request.response.status, headers=dict(request.response.headers)),
        result=to_data(request.result),
        error=None if request.error is None else _error_data(request.error),
    )


# -- the server side --------------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class _Item:
    seq: int
    event: str
    frame: bytes
    attempts: int = 0


class _Worker:
    """One worker process as its pool sees it."""

    def __init__(self, index: int, proc: subprocess.Popen[bytes],
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.proc = proc
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, _Item] = {}  # sent, not acknowledged, in order
        self.started = self.last_seen = time.monotonic()
        self.ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.alive = True
        self.hung = False
        self.said_bye = False
        self.task: asyncio.Task[None] | None = None

    def send(self, frame: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame)


def _frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(body)) + body


class HookWorkerPool:
    """The worker processes of one plugin. `listener(pattern, names)` stands for its hooks in
    the event chains; sending an event never waits and never raises."""

    def __init__(self, plugin: str, spec: dict[str, Any], *, base_dir: Path,
                 config_data: dict[str, Any], buffer_size: int, timeout: float,
                 dev: bool = False, secrets: dict[str, Any] | None = None) -> None:
        self.plugin = plugin
        self.size = int(spec.get("threads") or 0)
        self.spec = spec
        self.base_dir = base_dir
        self.config_data = config_data
        self.secrets = secrets or {}  # sent in the init message only, never logged
        self.buffer_size = buffer_size
        self.timeout = timeout
        self.dev = dev
        self.on_error: Callable[[str, BaseException], None] | None = None
        self.workers: list[_Worker | None] = [None] * self.size
        self.dropped = 0  # events dropped since start: every worker's buffer full
        self.unserialisable = 0  # events whose payload could not be sent
        self.restarts = 0
        self._seq = 0
        self._next = 0
        self._unreported = 0
        self._report: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._restarting: set[asyncio.Task[None]] = set()
        self._quick_deaths = [0] * self.size  # per slot: deaths in a row soon after start
        self.closing = False

    # life

    async def start(self) -> None:
        """Start every worker and wait for its `init`; raise RuntimeError if one failed or
        took longer than the timeout."""
        self.closing = False
        for index in range(self.size):
            await self._spawn(index)
        for worker in self.workers:
            assert worker is not None
            try:
                failure = await asyncio.wait_for(asyncio.shield(worker.ready), self.timeout)
            except TimeoutError:
                failure = (f"init did not finish within {self.timeout:g} s "
                           "(limits.hook_workers_timeout)")
            if failure is not None:
                for other in self.workers:
                    if other is not None and other.proc.poll() is None:
                        other.proc.kill()
                await self.close(grace=1.0)
                raise RuntimeError(f"init failed in hook worker process: {failure}")
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        log.info("plugin %r: %d hook worker process(es) ready (pids %s)", self.plugin, self.size,
                 ", ".join(str(w.proc.pid) for w in self.workers if w is not None))

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sanic_gateway.hook_workers", str(theirs.fileno()),
                 str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, cwd=os.getcwd())
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        worker = _Worker(index, proc, reader, writer)
        self.workers[index] = worker
        worker.send(_frame(("init", {
            "plugin": self.plugin, "spec": self.spec, "base_dir": str(self.base_dir),
            "config": self.config_data, "secrets": self.secrets, "dev": self.dev, "index": index,
            "sys_path": list(sys.path)})))
        worker.task = asyncio.get_running_loop().create_task(self._read(worker))
        return worker

    async def close(self, grace: float = 10.0) -> None:
        """Let each worker finish the events in hand (at most `grace` seconds), then stop it."""
        self.closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for task in tuple(self._restarting):
            task.cancel()
        live = [w for w in self.workers if w is not None]
        for worker in live:
            worker.send(_frame(("stop",)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(w.proc.poll() is None for w in live) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for worker in live:
            if worker.proc.poll() is None:
                log.warning("plugin %r: hook worker %d (pid %d) still busy after %.0f s: "
                            "killed, %d event(s) not handled", self.plugin, worker.index,
                            worker.proc.pid, grace, len(worker.pending))
                worker.proc.kill()
                await asyncio.to_thread(worker.proc.wait)
            worker.alive = False
            worker.writer.close()
            if worker.task is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(worker.task, 1.0)
        if self._report is not None:
            self._report.cancel()
            self._report = None
        if self._unreported:
            self._report_dropped(final=True)

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers if w is not None and w.alive]

    # sending

    def listener(self, pattern: str, names: tuple[str, ...]) -> Listener:
        """The Listener standing for the hooks `names` of `pattern` in the event chains."""
        from .events import Listener

        def send(payload: Any, event: str) -> None:
            self.send(names, payload, event)

        async def call(payload: Any, event: str) -> None:
            send(payload, event)

        return Listener(self.plugin, pattern, ", ".join(names), call, True, send)

    def send(self, names: tuple[str, ...], payload: Any, event: str) -> None:
        if self.closing:  # the workers have been told to stop: nobody would read it
            log.debug("plugin %r: event %r after the hook workers stopped: not sent",
                      self.plugin, event)
            return
        worker = self._pick()
        if worker is None:
            self._drop()
            return
        self._seq += 1
        try:
            data = pickle.dumps(to_data(payload), protocol=pickle.HIGHEST_PROTOCOL)
            frame = _frame(("event", self._seq, event, names, data))
        except Exception as exc:
            self.unserialisable += 1
            log.error("plugin %r: the payload of event %r cannot be sent to its hook worker "
                      "processes (%s: %s): event dropped for hooks %s", self.plugin, event,
                      type(exc).__name__, exc, ", ".join(names))
            return
        item = _Item(self._seq, event, frame)
        worker.pending[item.seq] = item
        worker.send(frame)

    def _pick(self) -> _Worker | None:
        """The next live worker in turn whose buffer has room, if any."""
        for step in range(self.size):
            index = (self._next + step) % self.size
            worker = self.workers[index]
            if worker is not None and worker.alive and len(worker.pending) < self.buffer_size:
                self._next = index + 1
                return worker
        return None

    def _drop(self) -> None:
        self.dropped += 1
        self._unreported += 1
        if self._report is None:
            self._report_dropped()

    def _report_dropped(self, final: bool = False) -> None:
        if not self._unreported:
            self._report = None
            return
        log.warning("plugin %r: every hook worker is saturated (limits.hook_workers_buffer_size: "
                    "%d events each): %d event(s) dropped (%d since start)", self.plugin,
                    self.buffer_size, self._unreported, self.dropped)
        self._unreported = 0
        if not final:
            self._report = asyncio.get_running_loop().call_later(REPORT_EVERY,
                                                                 self._report_dropped)

    # receiving

    async def _read(self, worker: _Worker) -> None:
        reader = worker.reader
        try:
            while True:
                size = _HEAD.unpack(await reader.readexactly(_HEAD.size))[0]
                message = pickle.loads(await reader.readexactly(size))
                worker.last_seen = time.monotonic()
                kind = message[0]
                if kind == "ack":
                    worker.pending.pop(message[1], None)
                elif kind == "error":
                    self._hook_failed(worker, *message[1:])
                elif kind == "ready":
                    if not worker.ready.done():
                        worker.ready.set_result(None)
                elif kind == "init_failed":
                    if not worker.ready.done():
                        worker.ready.set_result(message[1])
                    log.error("plugin %r: init failed in hook worker %d (pid %d): %s",
                              self.plugin, worker.index, worker.proc.pid, message[1])
                elif kind == "bye":
                    worker.said_bye = True
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except Exception:
            log.exception("plugin %r: bad message from hook worker %d", self.plugin,
                          worker.index)
            worker.proc.kill()
        if not worker.ready.done():
            worker.ready.set_result("the process exited")
        if worker.alive and not self.closing:
            self._lost(worker)

    def _hook_failed(self, worker: _Worker, seq: int, event: str, fname: str, kind: str,
                     message: str, trace: str) -> None:
        from . import errors

        log.error("plugin %r: hook %r on %r raised in hook worker %d (pid %d): %s: %s\n%s",
                  self.plugin, fname, event, worker.index, worker.proc.pid, kind, message,
                  trace.rstrip())
        if self.on_error is not None and event != "hook:onError":
            error = errors.get("plugin.runtime.unexpected_error",
                               f"{kind}: {message} (plugin {self.plugin!r}, hook {fname!r} on "
                               f"{event!r}, in hook worker process {worker.proc.pid})")
            self.on_error(event, error)

    def _lost(self, worker: _Worker) -> None:
        """A worker died or hung: log it, start another, and send its events again."""
        worker.alive = False
        worker.writer.close()
        if worker.proc.poll() is None:
            worker.proc.kill()
        code = worker.proc.wait()
        why = (f"hung (no message for {self.timeout:.0f} s)" if worker.hung
               else f"exited (code {code})")
        log.error("plugin %r: hook worker %d (pid %d) %s with %d event(s) not acknowledged: "
                  "restarting it", self.plugin, worker.index, worker.proc.pid, why,
                  len(worker.pending))
        self.restarts += 1
        items = list(worker.pending.values())
        if items:  # the first one was in hand: it may be the culprit
            items[0].attempts += 1
            if items[0].attempts >= MAX_ATTEMPTS:
                log.error("plugin %r: event %r dropped: %d hook workers died handling it",
                          self.plugin, items[0].event, items[0].attempts)
                items.pop(0)
        task = asyncio.get_running_loop().create_task(self._restart(worker, items))
        self._restarting.add(task)
        task.add_done_callback(self._restarting.discard)

    async def _restart(self, old: _Worker, items: list[_Item]) -> None:
        lived = time.monotonic() - old.started
        others = [w for w in self.workers if w is not None and w is not old and w.alive]
        for n, item in enumerate(items if others else ()):  # to live workers at once
            target = others[n % len(others)]
            target.pending[item.seq] = item
            target.send(item.frame)
        if lived < RESTART_DELAY:  # an init failing again and again: no busy loop
            self._quick_deaths[old.index] += 1
            await asyncio.sleep(min(RESTART_DELAY * 2 ** (self._quick_deaths[old.index] - 1),
                                    MAX_RESTART_DELAY))
        else:
            self._quick_deaths[old.index] = 0
        if self.closing:
            return
        worker = await self._spawn(old.index)
        if not others:
            for item in items:
                worker.pending[item.seq] = item
                worker.send(item.frame)
        if await worker.ready is None:
            log.info("plugin %r: hook worker %d restarted (pid %d)", self.plugin, worker.index,
                     worker.proc.pid)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(0.5, self.timeout / 4))
            now = time.monotonic()
            for worker in self.workers:
                if (worker is not None and worker.alive and not worker.hung
                        and now - worker.last_seen > self.timeout):
                    worker.hung = True
                    worker.proc.kill()  # its socket closes: _read sees it and calls _lost


# -- the worker side --------------------------------------------------------------------------

class _Channel:
    """Length-prefixed pickled messages over the socket to the server (blocking)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def send(self, message: tuple[Any, ...]) -> None:
        self.sock.sendall(_frame(message))

    def _take(self) -> tuple[Any, ...] | None:
        if len(self.buffer) < _HEAD.size:
            return None
        size = _HEAD.unpack_from(self.buffer)[0]
        if len(self.buffer) < _HEAD.size + size:
            return None
        body = bytes(self.buffer[_HEAD.size:_HEAD.size + size])
        del self.buffer[:_HEAD.size + size]
        return pickle.loads(body)

    def recv(self, timeout: float | None) -> tuple[Any, ...] | None:
        """The next message, or None after `timeout` seconds; EOFError once the server is gone."""
        while True:
            message = self._take()
            if message is not None:
                return message
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return None
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buffer += chunk


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the server died before the line above
        os._exit(0)


def _load(setup: dict[str, Any]) -> tuple[Any, str]:
    from types import SimpleNamespace

    from .plugins import loader

    base = setup["base_dir"]
    if base not in sys.path:
        sys.path.insert(0, base)
    spec, name = setup["spec"], setup["plugin"]
    if spec.get("module"):
        target, source = loader._from_module(spec["module"]), spec["module"]
    elif spec.get("path"):
        target, source, _ = loader._from_path(SimpleNamespace(base_dir=Path(base)), name,
                                              spec["path"])
    else:
        target, source, _ = loader._from_entry_point(spec["entry_point"])
    import inspect

    return (target() if inspect.isclass(target) else target), source


def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> Any:
    import inspect

    out = fn(*args)
    if inspect.isawaitable(out):
        out = loop.run_until_complete(out)
    return out


def worker_main(fd: int, parent: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent)
    channel = _Channel(socket.socket(fileno=fd))
    try:
        first = channel.recv(None)
    except EOFError:
        return 0
    assert first is not None and first[0] == "init"
    setup = first[1]
    sys.path[:] = setup["sys_path"]
    from . import logs
    from .plugins.context import WorkerContext
    from .plugins.functions import resolve

    logs.configure(setup["dev"])
    logs.register_config_secrets(setup["config"])
    from .vault import leaves

    for value in leaves(setup["secrets"]):
        logs.register_secret(value)
    loop = asyncio.new_event_loop()
    name = setup["plugin"]
    functions: dict[str, tuple[Callable[..., Any], int]] = {}
    try:
        obj, source = _load(setup)
        if callable(getattr(obj, "init", None)):
            init, count = resolve(obj, source, "init", "init")
            context = WorkerContext(setup["config"], name, setup["secrets"])
            _call(loop, init, *(dict(setup["spec"].get("config") or {}), context)[:count])
        for names in (setup["spec"].get("hooks") or {}).values():
            for fname in names:
                functions[fname] = resolve(obj, source, fname, "hook")
    except BaseException as exc:
        channel.send(("init_failed", f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"))
        return 1
    channel.send(("ready", os.getpid()))
    while True:
        try:
            message = channel.recv(HEARTBEAT)
        except EOFError:  # the server is gone
            return 0
        if message is None:
            channel.send(("beat",))
            continue
        if message[0] == "stop":
            channel.send(("bye",))
            return 0
        _, seq, event, names, data = message
        try:  # apart from the message, so that a payload this process cannot load is told
            payload = pickle.loads(data)
        except Exception as exc:
            channel.send(("error", seq, event, ", ".join(names), type(exc).__name__,
                          f"cannot load the payload in the hook worker process: {exc}",
                          traceback.format_exc()))
            channel.send(("ack", seq))
            continue
        for fname in names:
            fn, count = functions[fname]
            try:
                _call(loop, fn, *(payload, event)[:count])
            except Exception as exc:
                channel.send(("error", seq, event, fname, type(exc).__name__, str(exc),
                              traceback.format_exc()))
        channel.send(("ack", seq))


if __name__ == "__main__":  # run through the package's module, so pickled classes match
    from sanic_gateway.hook_workers import worker_main as _main

    sys.exit(_main(int(sys.argv[1]), int(sys.argv[2])))
