"""Memory per idle WebSocket connection: N connections held open against one gateway process.

The gateway runs on core 0, the client (bench/ws_client.py, raw sockets) on core 1. RSS is read
from /proc after one warm-up connection and request, then again with N idle connections open
(handshake done, each registered with the gateway); prints (RSS delta) / N. The open-files limit
is raised to what N needs (server and client inherit it).

    python bench/ws_idle_memory.py [--connections 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
import ws_client

GATEWAY_YAML = textwrap.dedent('''
    storage: "sqlite:///./bench.db"
    server:
      protocols:
        websocket: {idle_timeout: 10m}
''')


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            raise SystemExit(f"open-files hard limit {hard} < {needed}: run `ulimit -Hn {needed}`"
                             " as root first")


async def measure(port: int, pid: int, count: int) -> tuple[int, int, float]:
    warm = await ws_client.hold(port, 10)
    await asyncio.sleep(1.0)
    before = rss_kib(pid)
    started = time.perf_counter()
    held = await ws_client.hold(port, count)
    opened = time.perf_counter() - started
    await asyncio.sleep(2.0)  # let the server settle (connection:new hooks, buffers)
    after = rss_kib(pid)
    for transport in [*held, *warm]:
        transport.close()
    return before, after, opened


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10000)
    args = parser.parse_args()
    raise_nofile(args.connections + 1000)
    os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        port = common.free_port()
        proc = common.serve(["taskset", "-c", "0", *common.gateway_cmd(port)], work, port,
                            work / "gateway.log")
        try:
            server = common.worker_pid(proc.pid)  # the supervisor's worker
            before, after, opened = asyncio.run(measure(port, server, args.connections))
        finally:
            common.stop(proc)
    per = (after - before) / args.connections
    print(f"{args.connections} idle WebSocket connections opened in {opened:.1f}s")
    print(f"gateway RSS: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB with them")
    print(f"memory per connection = {per:.1f} KiB   (goal <= 40 KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
