"""The pipelining flood of issue 7: many connections send pipelined requests and never read.

Each attacking connection writes `--per-write` pipelined `GET <path>` requests at a time, as
fast as the server takes them, and never reads a byte of the answers. Meanwhile a probe opens a
fresh connection every half second and times one `GET /_now`, and the server's resident memory
is sampled. A gateway that holds up keeps its memory bounded and answers the probe within a
second throughout.

    python bench/pipeline_flood.py                      # starts the example gateway itself
    python bench/pipeline_flood.py --url http://127.0.0.1:7512 --pid 1234   # a running one

tests/test_hardening_hooks.py runs the same attack (shorter) through `run_attack`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its children (Sanic may serve from a child process)."""
    total = 0.0
    for p in (pid, *_children(pid)):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            for child in map(int, text):
                found += [child, *_children(child)]
    except OSError:
        pass
    return found


@dataclass
class Report:
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    probes: list[tuple[float, float]] = field(default_factory=list)  # (seconds, latency s)
    sent: int = 0  # requests written by the attackers
    connections: int = 0  # attacking connections opened

    @property
    def worst_probe(self) -> float:
        return max((lat for _, lat in self.probes), default=float("inf"))

    @property
    def peak_rss(self) -> float:
        return max((mb for _, mb in self.rss), default=0.0)

    def summary(self) -> str:
        start = self.rss[0][1] if self.rss else 0.0
        latencies = sorted(lat for _, lat in self.probes) or [float("inf")]
        return (f"{self.connections} connections, {self.sent} requests sent; RSS {start:.0f} MB "
                f"-> peak {self.peak_rss:.0f} MB; {len(self.probes)} probes: median "
                f"{latencies[len(latencies) // 2] * 1000:.0f} ms, worst "
                f"{latencies[-1] * 1000:.0f} ms")


async def _attacker(host: str, port: int, batch: bytes, per_write: int, report: Report,
                    connected: asyncio.Future[None], go: asyncio.Event,
                    stop: asyncio.Event) -> None:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    finally:
        connected.set_result(None)
    report.connections += 1
    try:
        await go.wait()
        while not stop.is_set():
            writer.write(batch)
            report.sent += per_write
            await writer.drain()  # blocks as soon as the server stops taking more
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        writer.transport.abort()


def _probe(host: str, port: int, timeout: float) -> float:
    """Seconds for one `GET /_now` on a fresh connection (`timeout` if no answer by then).

    Blocking, run in its own thread: the attackers' loop must not delay the measure."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(max(0.01, timeout - (time.monotonic() - started)))
            sock.sendall(b"GET /_now HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            if not sock.recv(64).startswith(b"HTTP/1.1 200"):
                return timeout
    except OSError:
        return timeout
    return time.monotonic() - started


def _measure(host: str, port: int, pid: int, report: Report, stop: threading.Event,
             started: float, probe_timeout: float, on_sample: Callable[[Report], None] | None,
             ) -> None:
    """Every half second: one probe and one memory sample, until `stop`."""
    while not stop.is_set():
        latency = _probe(host, port, probe_timeout)
        elapsed = time.monotonic() - started
        report.probes.append((elapsed, latency))
        report.rss.append((elapsed, rss_mb(pid)))
        if on_sample is not None:
            on_sample(report)
        stop.wait(max(0.0, 0.5 - latency))


async def run_attack(url: str, pid: int, *, duration: float = 20.0, connections: int = 200,
                     per_write: int = 50, path: str = "/_publicApi", probe_timeout: float = 5.0,
                     on_sample: Callable[[Report], None] | None = None) -> Report:
    """Attack the server at `url` (process `pid`) for `duration` seconds; what was measured.

    The attacking connections are all opened first: the probes measure the flood, not the
    kernel's listen backlog overflowing under 200 simultaneous connects."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    batch = f"GET {path} HTTP/1.1\r\nHost: flood\r\n\r\n".encode() * per_write
    report = Report()
    loop = asyncio.get_running_loop()
    stop, go, measuring = asyncio.Event(), asyncio.Event(), threading.Event()
    connected = [loop.create_future() for _ in range(connections)]
    attackers = [asyncio.create_task(_attacker(host, port, batch, per_write, report, done, go,
                                               stop))
                 for done in connected]
    measure = threading.Thread()
    try:
        await asyncio.wait(connected, timeout=30)
        started = time.monotonic()
        report.rss.append((0.0, rss_mb(pid)))
        measure = threading.Thread(target=_measure, args=(host, port, pid, report, measuring,
                                                          started, probe_timeout, on_sample))
        measure.start()
        go.set()
        await asyncio.sleep(duration)
    finally:
        measuring.set()
        stop.set()
        for task in attackers:
            task.cancel()
        await asyncio.gather(*attackers, return_exceptions=True)
        if measure.is_alive():
            await asyncio.to_thread(measure.join)
    return report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_example(folder: Path, port: int, *, hooks: bool = True) -> subprocess.Popen[bytes]:
    """`sanic-gateway run` of the example gateway.yaml, copied to `folder` (own data/);
    `hooks=False` leaves out its `request:onSuccess` hook, to compare."""
    text = (ROOT / "gateway.yaml").read_text()
    if not hooks:
        text = text.replace('    hooks:\n      "request:onSuccess": count\n', "")
    (folder / "gateway.yaml").write_text(text)
    shutil.copytree(ROOT / "handlers", folder / "handlers")
    # this repository's code, whatever the environment has installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(folder), str(ROOT)))}
    # the log goes to a file: a pipe nobody reads would block the server once full
    with open(folder / "gateway.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sanic_gateway", "run", "--port", str(port)],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_ready(f"http://127.0.0.1:{port}", proc, folder / "gateway.log")
    return proc


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path,
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/_now", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the gateway did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="attack a running gateway (default: start the example)")
    parser.add_argument("--pid", type=int, help="its process id, to sample memory")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--per-write", type=int, default=50)
    parser.add_argument("--path", default="/_publicApi")
    parser.add_argument("--without-hook", action="store_true",
                        help="start the example without its request:onSuccess hook")
    args = parser.parse_args()

    def show(report: Report) -> None:
        (t, mb), (_, lat) = report.rss[-1], report.probes[-1]
        print(f"{t:6.1f}s  rss {mb:7.0f} MB  probe {lat * 1000:7.0f} ms  sent {report.sent}",
              flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        if args.url:
            url, pid = args.url, args.pid or 0
        else:
            port = free_port()
            proc = start_example(Path(tmp), port, hooks=not args.without_hook)
            url, pid = f"http://127.0.0.1:{port}", proc.pid
        try:
            report = asyncio.run(run_attack(url, pid, duration=args.duration,
                                            connections=args.connections,
                                            per_write=args.per_write, path=args.path,
                                            on_sample=show))
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    print("the gateway did not stop within 30 s of SIGTERM: killed")
                    proc.kill()
                    proc.wait()
                tail = (Path(tmp) / "gateway.log").read_text().strip().splitlines()[-5:]
                print("server log tail:", *tail, sep="\n  ")
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
