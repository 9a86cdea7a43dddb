"""Realtime end to end: notifications delivered per second to WebSocket subscribers.

`--subscribers` connections (1,000) subscribe to the same filter on one gateway (`sanic-gateway
run`, one worker, pinned to core 0); one more connection publishes (`realtime:publish`),
keeping `--in-flight` publishes outstanding; each publish notifies every subscriber. The load
client is bench/wsload.c (C, epoll; built with gcc on first use), pinned to core 1: an asyncio
client spends about as much CPU per notification as the gateway and would set the rate. Prints
notifications delivered per second of wall time (goal >= 50,000), and per second of the
server's CPU time over exactly the counted span (what one core delivers when nothing else runs
on it: the figure to read on a loaded machine), with the client's own CPU per notification.

    python bench/realtime_notify.py [--subscribers 1000] [--duration 5] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
import wsload

GATEWAY_YAML = textwrap.dedent('''
    storage: "sqlite:///./bench.db"
    server:
      protocols:
        websocket: {send_queue: 10000, max_in_flight: 100}
''')


def run(port: int, pid: int, subscribers: int, duration: float,
        in_flight: int) -> tuple[float, float, float]:
    """(notifications/s of wall time, per second of server CPU, client µs per notification)."""
    cpu = common.process_cpu(pid)
    marks: dict[str, float] = {}
    found = wsload.run(["--ports", str(port), "--subscribers", str(subscribers),
                        "--in-flight", str(in_flight), "--duration", str(duration)],
                       core=1, on_mark=lambda phase: marks.__setitem__(phase, cpu()))
    used = marks["done"] - marks["counting"]
    delivered = found["delivered"]
    if not delivered:
        raise RuntimeError("no notification was delivered")
    return found["rate"], delivered / used, found["cpu_us_per_notification"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--in-flight", type=int, default=4, help="publishes outstanding")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    wsload.build()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        port = common.free_port()
        proc = common.serve(common.pinned(common.gateway_cmd(port), 0), work, port,
                            work / "server.log")
        try:
            results = [run(port, proc.pid, args.subscribers, args.duration, args.in_flight)
                       for _ in range(args.rounds)]
        finally:
            common.stop(proc)
    rates = [r[0] for r in results]
    per_cpu = [r[1] for r in results]
    best = max(rates)
    print(f"notifications delivered to {args.subscribers} WebSocket subscribers, "
          f"{args.in_flight} publishes in flight: {best:,.0f}/s (rounds: "
          f"{', '.join(f'{r:,.0f}' for r in rates)}; goal >= 50,000)")
    print(f"per second of server CPU: {max(per_cpu):,.0f} (rounds: "
          f"{', '.join(f'{r:,.0f}' for r in per_cpu)}); the client (bench/wsload.c, core 1): "
          f"{', '.join(f'{r[2]:.2f}' for r in results)} µs per notification; load average: "
          f"{os.getloadavg()[0]:.1f}")
    return 0 if best >= 50_000 else 1


if __name__ == "__main__":
    sys.exit(main())
