"""HTTP overhead of the gateway against bare Sanic in instructions per request (callgrind).

Rates and CPU times depend on what else the machine runs; instruction counts do not. Each server
of http_overhead.py runs in turn under `valgrind --tool=callgrind` (children traced: `run`'s
supervisor forks the worker that serves):

(a) the bare Sanic route; (b) the gateway's plugin route, full funnel, 3 pipes + 1 hook;
(c) with `--metrics-off`: (b) with `server.metrics: false`.

Once a server answers, a sequential keep-alive client (one connection) sends `--warmup`
requests, the serving process's counters are zeroed (`callgrind_control -z`), `--requests`
more are sent and the counters dumped (`callgrind_control -d`): the instructions the serving
process executed for those requests alone (start-up and warm-up left out), divided by their
number. A server's count repeats within about 0.5% from run to run (timers and background
threads add a little now and then). Not counted: kernel time (system calls, the network) and
what an instruction costs (the gateway runs more code, so more cache misses); one connection
also means one event-loop turn per request, where wrk's 50 connections share turns. So the
ratio a/b is an instruction ratio, a little above the CPU-time ratio of http_overhead.py
(0.86 against 0.83 when both were measured on the same version).

    python bench/http_callgrind.py [--requests 2000] [--warmup 300] [--metrics-off]
                                   [--python PATH] [--keep DIR]

`--python` runs the gateway with another interpreter (e.g. the venv of an older checkout, to
compare commits; bare Sanic always runs with this one). `--keep DIR` keeps the callgrind dumps
there, for `callgrind_annotate`. Needs valgrind (`apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
from http_overhead import prepare


def get(port: int, path: str, count: int) -> None:
    """Send `count` GET requests one after the other on one keep-alive connection; each
    must answer 200."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    buffer = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(count):
            sock.sendall(request)
            while True:
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if sep:
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    if len(rest) >= length:
                        if not head.startswith(b"HTTP/1.1 200"):
                            raise RuntimeError(f"{path} answered {head.decode(errors='replace')}")
                        buffer = rest[length:]
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError(f"{path}: connection closed")
                buffer += chunk


def instructions(cmd: list[str], work: Path, key: str, path: str, warmup: int,
                 requests: int) -> int:
    """Instructions the serving process of `cmd` executed for `requests` requests to `path`."""
    port = common.free_port()
    valgrind = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                f"--callgrind-out-file={work / key}.%p.out"]
    proc = common.serve([*valgrind, *cmd(port)], work, port, work / f"{key}.log",
                        url=f"http://127.0.0.1:{port}{path}", timeout=600)
    try:
        pid = common.worker_pid(proc.pid)
        get(port, path, warmup)
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        get(port, path, requests)
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    finally:
        common.stop(proc)
    dumps = sorted(work.glob(f"{key}.{pid}.out.*"), key=lambda p: int(p.suffix[1:]))
    for line in dumps[-1].read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {dumps[-1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--metrics-off", action="store_true",
                        help="also run (c): the gateway with server.metrics: false")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter running the gateway (default: this one)")
    parser.add_argument("--keep", type=Path, help="keep the callgrind dumps in this directory")
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("valgrind is needed: apt-get install valgrind", file=sys.stderr)
        return 2

    def gateway(*options: str):
        return lambda p: [args.python, *common.gateway_cmd(p, *options)[1:]]

    servers = {
        "a": ("bare Sanic route", lambda p: [sys.executable, "bare_app.py", str(p)], "/hello"),
        "b": ("plugin route, full funnel, 3 pipes + 1 hook", gateway(), "/_/bench/hello"),
    }
    if args.metrics_off:
        servers["c"] = ("(b) with server.metrics: false", gateway("--config", "no-metrics.yaml"),
                        "/_/bench/hello")
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work)
        for key, (label, cmd, path) in servers.items():
            counts[key] = instructions(cmd, work, key, path, args.warmup,
                                       args.requests) / args.requests
            print(f"({key}) {label:45s} {counts[key]:9.0f} instructions/request", flush=True)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in work.glob("*.out*"):
                shutil.copy(dump, args.keep)
    print(f"instructions per request a/b = {counts['a'] / counts['b']:.3f}   "
          f"(the bare route's share of the gateway's; {args.requests} requests, one connection)")
    if args.metrics_off:
        print(f"metrics: b/c - 1 = {(counts['b'] / counts['c'] - 1) * 100:+.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
