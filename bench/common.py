"""Helpers shared by the benchmark scripts in bench/, so they start, load and stop servers alike.

Each script runs as `python bench/<script>.py` and imports this module as `common` (its
directory is put first on sys.path).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

USERNAME, PASSWORD = "bench", "bench-password-0123456789"

# The reference server: a bare Sanic route answering a JSON envelope of the same shape and size
# as the gateway's, so that a ratio against it measures the gateway and nothing else.
BARE_APP = textwrap.dedent('''
    import sys, uuid
    from sanic import Sanic
    from sanic.response import json

    app = Sanic("bare")
    app.config.ACCESS_LOG = False
    app.config.MOTD = False

    @app.get("/hello")
    async def hello(request):
        return json({"requestId": str(uuid.uuid4()), "status": 200, "error": None,
                     "controller": "bench/api", "action": "hello", "index": None,
                     "collection": None, "volatile": None, "result": {"hello": "world"}},
                    headers={"X-Kuzzle-Request-Id": "x"})

    if __name__ == "__main__":
        app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False,
                motd=False)
''')


def require_wrk() -> bool:
    """Whether `wrk` is on PATH; says how to get it if not (every script needs it)."""
    if shutil.which("wrk"):
        return True
    print("wrk is needed: apt-get install wrk", file=sys.stderr)
    return False


def free_port() -> int:
    """A port free right now, so that servers started in turn never collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_cmd(port: int, *options: str) -> list[str]:
    """The command running the gateway (one worker, as configured in its cwd) on `port`."""
    return [sys.executable, "-m", "sanic_gateway", "run", *options, "--port", str(port)]


def _answers(port: int, url: str | None) -> bool:
    if url is None:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, url: str | None = None,
               timeout: float = 30) -> None:
    """Wait until `port` accepts connections (or `url` answers 200, when given).

    Fails early, with the server's log, if the server exits: a benchmark cannot run without it
    and the log says why.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()}")
        if _answers(port, url):
            return
        time.sleep(0.1)
    what = f"{url} did not answer 200" if url else f"nothing listens on {port}"
    raise RuntimeError(f"{what} within {timeout}s:\n{log.read_text()}")


def serve(cmd: list[str], cwd: Path, port: int, log: Path,
          url: str | None = None, timeout: float = 30) -> subprocess.Popen[bytes]:
    """Start a server in `cwd` (importable from there), its output appended to `log`; wait ready.

    The server is stopped again if it never gets ready, so no process outlives the benchmark.
    """
    with log.open("ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(cwd)})
    try:
        wait_ready(proc, port, log, url, timeout)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill if it still runs 10 s later, so the next server gets the CPU alone."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


SERVER_CORE, CLIENT_CORE = 0, 1  # the server alone on one core, the load client on the other


def pinned(cmd: list[str], core: int) -> list[str]:
    """`cmd` run on `core` only (taskset execs it: same pid). Unpinned, the load client steals
    the server's core and flatters the slower server."""
    return ["taskset", "-c", str(core), *cmd] if shutil.which("taskset") else cmd


def worker_pid(pid: int) -> int:
    """The process that serves, for a server started as `pid`: `sanic-gateway run` is a
    supervisor that forks its worker (the first child, with one worker); any other server
    serves itself. Call it once the server is ready."""
    children = sorted(int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                      for child in (task / "children").read_text().split())
    return children[0] if children else pid


def process_cpu(pid: int) -> Callable[[], float]:
    """A function answering the CPU seconds (user + system) process `pid` and its descendants
    (`run`'s workers, forked by its supervisor) have used so far: CPU time per request stays
    meaningful on a machine other work shares, rates do not."""
    tick = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        stats: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stats[int(entry.name)] = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:  # gone meanwhile
                    continue
        tree, grew = {pid}, True
        while grew:
            found = {p for p, fields in stats.items() if int(fields[1]) in tree} - tree
            tree |= found
            grew = bool(found)
        return sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats) / tick
    return read


def wrk(url: str, duration: int, connections: int, *options: str,
        headers: dict[str, str] | None = None, core: int | None = CLIENT_CORE) -> str:
    """Run `wrk -t1` (same command for every server compared), pinned to `core`, and return its
    report.

    Raises if wrk failed or saw non-2xx answers or socket errors: a rate of errors means nothing.
    """
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", *options]
    if core is not None:
        cmd = pinned(cmd, core)
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    if (not re.search(r"Requests/sec:\s+[\d.]+", out) or "Non-2xx" in out
            or ("Socket errors" in out and "read 0" not in out)):
        raise RuntimeError(f"wrk failed or saw errors:\n{out}")
    return out


def wrk_rate(out: str) -> float:
    """Requests/s from a report of `wrk` (above, which checked it is there)."""
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def wrk_latency(out: str, percentile: str) -> float:
    """Latency in seconds at `percentile` (e.g. "99%") from a `wrk --latency` report, else NaN."""
    match = re.search(rf"^\s*{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not match:
        return float("nan")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]
