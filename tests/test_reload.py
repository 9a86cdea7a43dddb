"""Reloading a running gateway, as an operator meets it: SIGHUP in production, `run --reload`
in development, and the supervisor keeping its workers alive. Real processes throughout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.test_cli import SCRIPT, free_port, wait_for

PLUGIN = """
    import asyncio
    import os

    class Hello:
        async def slow(self, request):
            await asyncio.sleep(1.5)
            return {"pid": os.getpid(), "version": VERSION}

        def pid(self, request):
            return {"pid": os.getpid(), "version": VERSION}

    VERSION = 1
"""

CONFIG = """\
    storage: "sqlite:///data.db"
    server:
      drain_timeout: 3s
    plugins:
      hello:
        module: hello:Hello
        controllers:
          h: {{pid: pid, slow: slow}}
        routes:
          - {{verb: get, url: /hello/pid, controller: h, action: pid}}
"""

NEW_ROUTE = """\
      - {verb: get, url: /hello/new, controller: h, action: pid}
"""


PID = "/_plugin/hello/hello/pid"


class Server:
    """`sanic-gateway run ...` with its output read as it comes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([SCRIPT, "run", "--port", str(self.port), *args],
                                     cwd=cwd, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(f"{self.base}/_now", self.proc)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [x for x in self.lines if predicate(x)]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError("no such line in:\n" + "\n".join(self.lines))

    def count(self, text: str) -> int:
        return sum(text in x for x in self.lines)

    def children(self) -> set[int]:
        return children(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return "\n".join(self.lines)


@pytest.fixture
def launch():
    """Start servers; whatever a failing test leaves running is stopped, workers included."""
    started: list[Server] = []

    def start(cwd: Path, *args: str) -> Server:
        started.append(Server(cwd, *args))
        return started[-1]

    yield start
    for server in started:
        workers = server.children()
        if server.proc.poll() is None:
            server.stop()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def write(tmp_path: Path, *, version: int = 1, extra_route: bool = False) -> None:
    (tmp_path / "hello.py").write_text(
        textwrap.dedent(PLUGIN).replace("VERSION = 1", f"VERSION = {version}"))
    config = textwrap.dedent(CONFIG.format())
    if extra_route:
        config += NEW_ROUTE
    (tmp_path / "gateway.yaml").write_text(config)


# an init that fails while a file `broken` is in the gateway's folder
BREAKABLE_INIT = """
    def init(self, config, context):
        if os.path.exists("broken"):
            raise RuntimeError("cannot start now")
    Hello.init = init
"""


def start_and_wait(tmp_path: Path, launch: Callable[..., Server], workers: int = 1, *,
                   breakable: bool = False) -> Server:
    """The example plugin served by `workers` workers, returned once all of them are ready;
    `breakable`: with BREAKABLE_INIT."""
    write(tmp_path)
    if breakable:
        plugin = tmp_path / "hello.py"
        plugin.write_text(plugin.read_text() + textwrap.dedent(BREAKABLE_INIT))
    server = launch(tmp_path, "--workers", str(workers)) if workers > 1 else launch(tmp_path)
    server.wait_line(lambda x: f"({workers} worker{'s' if workers > 1 else ''})" in x)
    return server


def wait_gone(pids: set[int], timeout: float) -> None:
    """Every process of `pids` has exited (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)


def check_output(tmp_path: Path) -> list[str]:
    done = subprocess.run([SCRIPT, "check"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done
    return done.stderr.splitlines()


# -- SIGHUP -----------------------------------------------------------------------------------

def test_sighup_switches_to_a_valid_config_without_dropping_a_connection(tmp_path, launch):
    write(tmp_path)
    server = launch(tmp_path, "--workers", "2")
    failures: list[str] = []
    answered: list[int] = []
    stop_loop = threading.Event()

    def keep_alive_client() -> None:
        with httpx.Client(base_url=server.base, timeout=10) as client:
            while not stop_loop.is_set():
                try:
                    reply = client.get("/_plugin/hello/hello/pid")
                    if reply.status_code != 200:
                        failures.append(f"{reply.status_code} {reply.text}")
                    answered.append(reply.json()["result"]["pid"])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                time.sleep(0.02)

    loop = threading.Thread(target=keep_alive_client)
    loop.start()
    slow: dict[str, object] = {}

    def slow_request() -> None:
        try:
            slow["reply"] = httpx.post(f"{server.base}/_query", timeout=20,
                                       json={"controller": "hello/h", "action": "slow"})
        except httpx.HTTPError as exc:
            slow["reply"] = exc

    try:
        with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=10) as ws:
            ws.send(json.dumps({"controller": "realtime", "action": "subscribe",
                                "index": "i", "collection": "c", "body": {},
                                "requestId": "sub"}))
            assert json.loads(ws.recv(timeout=10))["status"] == 200
            old_pids = server.children()
            in_flight = threading.Thread(target=slow_request)
            in_flight.start()
            time.sleep(0.5)  # the slow request is being executed
            write(tmp_path, version=2, extra_route=True)
            server.proc.send_signal(signal.SIGHUP)
            server.wait_line(lambda x: "reloaded:" in x)
            # the new configuration answers new requests: its new route, its new code
            new = httpx.get(f"{server.base}/_plugin/hello/hello/new", timeout=10)
            assert new.status_code == 200, new.text
            assert new.json()["result"]["version"] == 2
            assert new.json()["result"]["pid"] not in old_pids
            # the WebSocket opened before is still served (by an old worker, draining)
            ws.send(json.dumps({"controller": "server", "action": "now", "requestId": "n"}))
            assert json.loads(ws.recv(timeout=10))["status"] == 200
            in_flight.join(timeout=20)
            reply = slow["reply"]
            assert isinstance(reply, httpx.Response), reply
            assert reply.status_code == 200 and reply.json()["result"]["version"] == 1
            # then, at the drain timeout, Kuzzle's close: 1001
            with pytest.raises(Exception) as closed:
                ws.recv(timeout=15)
            assert getattr(closed.value, "rcvd", None) is not None, closed.value
            assert closed.value.rcvd.code == 1001
        server.wait_line(lambda x: "draining" in x)
        wait_gone(old_pids, timeout=20)
        time.sleep(0.3)
    finally:
        stop_loop.set()
        loop.join(timeout=20)
    out = server.stop()
    assert server.proc.returncode == 0, out
    assert not failures, failures
    assert len(answered) > 10
    assert set(answered) & old_pids and set(answered) - old_pids  # served by both
    assert "Traceback" not in out


def test_sighup_with_an_invalid_config_keeps_serving_the_old_one(tmp_path, launch):
    write(tmp_path)
    server = launch(tmp_path)
    good = (tmp_path / "gateway.yaml").read_text()
    (tmp_path / "gateway.yaml").write_text(good.replace("drain_timeout: 3s",
                                                        "drain_timeout: soon"))
    expected = check_output(tmp_path)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_line(lambda x: "reload refused" in x)
    reply = httpx.get(f"{server.base}/_plugin/hello/hello/pid", timeout=10)
    assert reply.status_code == 200
    out = server.stop()
    assert server.proc.returncode == 0, out
    logged = [x.split(" ERROR sanic_gateway: ", 1)[1] for x in server.lines
              if " ERROR sanic_gateway: " in x and "reload refused" not in x]
    assert logged == expected, (logged, expected)
    assert expected[0].startswith("gateway.yaml:3:")  # the line of the error
    assert "reloaded" not in out


def test_a_new_worker_failing_its_init_cancels_the_reload(tmp_path, launch):
    server = start_and_wait(tmp_path, launch, breakable=True)
    [worker] = server.children()
    (tmp_path / "broken").write_text("")
    server.proc.send_signal(signal.SIGHUP)
    line = server.wait_line(lambda x: "reload cancelled" in x)
    assert line.endswith("exited (code 1) before it was ready; the previous configuration "
                         "is still served")
    assert server.children() == {worker}
    assert httpx.get(f"{server.base}{PID}", timeout=10).json()["result"]["pid"] == worker
    out = server.stop()
    assert server.proc.returncode == 0, out
    assert server.count("init failed: RuntimeError: cannot start now") == 1
    assert "reloaded" not in out and "exited unexpectedly" not in out


# -- a worker that dies, a supervisor that is killed ------------------------------------------

def test_a_killed_worker_is_restarted_and_the_others_keep_serving(tmp_path, launch):
    server = start_and_wait(tmp_path, launch, workers=2)
    first = server.children()
    assert len(first) == 2
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    server.wait_line(lambda x: f"worker {victim} exited unexpectedly (killed by SIGKILL): "
                               "restarting it in 0.5s" in x)
    deadline = time.monotonic() + 30
    while server.count("Worker ready") < 3 and time.monotonic() < deadline:
        assert httpx.get(f"{server.base}{PID}", timeout=10).status_code == 200
        time.sleep(0.1)
    now = server.children()
    assert len(now) == 2 and victim not in now and (first - {victim}) <= now
    out = server.stop()
    assert server.proc.returncode == 0, out
    assert server.count("exited unexpectedly") == 1


def test_a_worker_failing_again_and_again_is_restarted_ever_more_slowly(tmp_path, launch):
    server = start_and_wait(tmp_path, launch, breakable=True)
    (tmp_path / "broken").write_text("")
    [worker] = server.children()
    os.kill(worker, signal.SIGKILL)
    server.wait_line(lambda x: "restarting it in 2s" in x)  # 0.5 s, then 1 s, then 2 s
    (tmp_path / "broken").unlink()
    server.wait_line(lambda x: "Worker ready" in x and str(worker) not in x
                     and x != server.lines[0], timeout=30)
    assert httpx.get(f"{server.base}{PID}", timeout=10).status_code == 200
    out = server.stop()
    assert server.proc.returncode == 0, out
    deaths = [x for x in server.lines if "exited unexpectedly" in x]
    assert [x.split(": restarting it in ")[1] for x in deaths] == ["0.5s", "1s", "2s"], out
    assert "(killed by SIGKILL)" in deaths[0] and "(code 1)" in deaths[1]
    assert server.count("init failed: RuntimeError: cannot start now") == 2


def test_a_supervisor_killed_with_sigkill_leaves_no_worker(tmp_path, launch):
    server = start_and_wait(tmp_path, launch, workers=2)
    workers = server.children()
    assert len(workers) == 2
    server.proc.kill()
    server.proc.wait(timeout=10)
    wait_gone(workers, timeout=30)
    server.stop()


# -- run --reload -----------------------------------------------------------------------------

def test_reload_flag_restarts_on_a_plugin_edit_and_waits_out_an_invalid_config(tmp_path, launch):
    write(tmp_path)
    server = launch(tmp_path, "--reload")

    def version() -> int:
        return httpx.get(f"{server.base}{PID}", timeout=10).json()["result"]["version"]

    def wait_version(wanted: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with_errors = None
            try:
                if version() == wanted:
                    return
            except httpx.HTTPError as exc:  # between the old server and the new one
                with_errors = exc
            time.sleep(0.2)
        raise AssertionError(f"still not version {wanted} ({with_errors})\n" +
                             "\n".join(server.lines))

    assert version() == 1
    time.sleep(0.5)  # the watcher is set up
    write(tmp_path, version=2)
    wait_version(2)
    server.wait_line(lambda x: "hello.py changed" in x)
    good = (tmp_path / "gateway.yaml").read_text()
    (tmp_path / "gateway.yaml").write_text(good.replace("drain_timeout: 3s",
                                                        "drain_timeout: soon"))
    expected = check_output(tmp_path)
    server.wait_line(lambda x: "still serving the previous configuration" in x)
    assert expected[0] in server.lines and expected[-1] in server.lines
    assert version() == 2 and server.proc.poll() is None
    (tmp_path / "gateway.yaml").write_text(good)
    write(tmp_path, version=3)
    wait_version(3)
    out = server.stop()
    assert server.proc.returncode == 0, out
    assert "Traceback" not in out
