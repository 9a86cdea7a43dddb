"""Realtime across a cluster: notifications per second and latency, two members against one.

1,000 WebSocket subscribers (`--subscribers`) subscribe to one filter; a publisher connected to
member A sends `realtime:publish`. One member: all subscribers on A. Two members: half on A,
half on B (A matches each publish once, delivers to its half and sends one bus message to B,
which delivers to the other half). Both runs use cluster mode (Redis, PostgreSQL), so only the
number of members differs. A is pinned to core 0, B to core 1; the load client (this process,
one asyncio loop) is pinned to core 1 too: it shares B's core, which the output says.

Two measures per run:
- saturation: `--in-flight` publishes kept outstanding; notifications delivered per second of
  wall time, and CPU time per notification of each member (what holds on a loaded machine);
- latency at a fixed rate (`--rate`, 10,000 notifications/s = 10 publishes/s to 1,000):
  p50/p99 from the publish being sent to each notification being read by its subscriber.

    python bench/cluster_notify.py [--subscribers 1000] [--duration 5] [--rate 10000]

Needs Redis (`SANIC_GATEWAY_BENCH_REDIS`, default redis://127.0.0.1:6379/0) and PostgreSQL
(`SANIC_GATEWAY_BENCH_POSTGRES`, default postgresql://postgres@127.0.0.1:5432/test; a schema of
its own, dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
import redis
from realtime_notify import SUBSCRIBE, Client, frames

REDIS = os.environ.get("SANIC_GATEWAY_BENCH_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get("SANIC_GATEWAY_BENCH_POSTGRES",
                          "postgresql://postgres@127.0.0.1:5432/test")
GATEWAY_YAML = textwrap.dedent('''
    storage: "{storage}"
    cluster: {{redis: "{redis}", prefix: "{prefix}"}}
    server:
      protocols:
        websocket: {{send_queue: 10000, max_in_flight: 100}}
''')
STAMP = re.compile(rb'"t":([0-9.]+)')


class Subscriber(Client):
    """Counts notifications and, when `latencies` is a list, records each one's latency."""

    latencies: list[float] | None = None

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            super().data_received(data)
            return
        now = time.perf_counter()
        buffer = self.buffer
        buffer += data
        for frame in frames(buffer):
            if frame.startswith(b'{"type":'):
                self.count += 1
                if self.latencies is not None:
                    match = STAMP.search(frame)
                    if match:
                        self.latencies.append(now - float(match.group(1)))
            elif self.on_answer is not None:
                self.on_answer(frame)
            else:
                self.answers.put_nowait(json.loads(frame))


async def connect(port: int) -> Subscriber:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(Subscriber, "127.0.0.1", port)
    await asyncio.wait_for(client.ready, 30)
    return client


def publish_frame(stamp: float) -> dict:
    return {"controller": "realtime", "action": "publish", "index": "bench",
            "collection": "quotes", "body": {"symbol": "ACME", "price": 12.5, "t": stamp}}


async def subscribers_on(ports: list[int], total: int) -> list[Subscriber]:
    clients: list[Subscriber] = []
    for first in range(0, total, 100):
        batch = range(first, min(first + 100, total))
        clients += await asyncio.gather(*(connect(ports[i % len(ports)]) for i in batch))
    for client in clients:
        client.send(SUBSCRIBE)
    for client in clients:
        answer = await asyncio.wait_for(client.answers.get(), 30)
        assert answer["status"] == 200, answer
    return clients


async def settle(clients: list[Subscriber]) -> float:
    """Wait until no notification has come for half a second (queues drained); return when
    the last one came (to 0.05 s)."""
    last, changed, quiet = -1, time.perf_counter(), 0.0
    while quiet < 0.5:
        now = sum(c.count for c in clients)
        if now != last:
            last, changed, quiet = now, time.perf_counter(), 0.0
        else:
            quiet += 0.05
        await asyncio.sleep(0.05)
    return changed


async def fixed_rate(publisher: Subscriber, clients: list[Subscriber],
                     mine: list[list[Subscriber]], subscribers: int, rate: float,
                     duration: float) -> dict:
    """Publish at `rate` notifications/s; latencies of each member's subscribers."""
    latencies: list[list[float]] = [[] for _ in mine]
    for group, found in zip(mine, latencies, strict=True):
        for client in group:
            client.latencies = found
    before = sum(c.count for c in clients)
    interval = subscribers / rate  # seconds between publishes
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        publisher.send(publish_frame(time.perf_counter()))
        sent += 1
        await asyncio.sleep(max(0.0, start + sent * interval - time.perf_counter()))
    await settle(clients)
    received = sum(c.count for c in clients) - before
    for client in clients:
        client.latencies = None
    everything = sorted(x for found in latencies for x in found)
    return {"rate": received / duration, "lost": sent * subscribers - received,
            "p50": percentile(everything, 50), "p99": percentile(everything, 99),
            "p99_by_member": [percentile(sorted(found), 99) for found in latencies]}


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else float("nan")


async def measure(ports: list[int], pids: list[int], subscribers: int, duration: float,
                  in_flight: int, rates: list[float]) -> dict:
    clients = await subscribers_on(ports, subscribers)
    await asyncio.sleep(0.5)  # the others know of every subscription
    publisher = await connect(ports[0])
    cpus = [common.process_cpu(pid) for pid in pids]

    mine = [[c for i, c in enumerate(clients) if i % len(ports) == n] for n in range(len(ports))]
    publisher.on_answer = lambda frame: None
    latency = {}
    for rate in rates:  # latency at fixed rates, first (nothing queued yet)
        latency[rate] = await fixed_rate(publisher, clients, mine, subscribers, rate, duration)

    # saturation
    running = True

    def on_answer(frame: bytes) -> None:
        if b'"status":200,' not in frame:
            raise RuntimeError(frame[:300])
        if running:
            publisher.send(publish_frame(time.perf_counter()))

    publisher.on_answer = on_answer
    for _ in range(in_flight):
        publisher.send(publish_frame(time.perf_counter()))
    await asyncio.sleep(1.0)  # warm-up
    before = [sum(c.count for c in group) for group in mine]
    started = time.perf_counter()
    cpu_before = [cpu() for cpu in cpus]
    await asyncio.sleep(duration)
    running = False  # then what the members still had queued, counted too: a member
    ended = await settle(clients)  # falling behind must not look faster than it is
    by_member = [sum(c.count for c in group) - b for group, b in zip(mine, before, strict=True)]
    delivered = sum(by_member)
    elapsed = ended - started
    cpu_used = [cpu() - b for cpu, b in zip(cpus, cpu_before, strict=True)]
    for client in (*clients, publisher):
        client.transport.close()
    return {
        "rate": delivered / elapsed,
        "cpu_us": [used / own * 1e6 if own else float("nan")
                   for used, own in zip(cpu_used, by_member, strict=True)],
        "latency": latency,
        "busy": [used / elapsed for used in cpu_used],  # share of its core each member used
    }


async def hop(ports: list[int], duration: float, publishes: float = 200) -> dict:
    """What crossing members adds: one subscriber on A, one on B, `publishes`/s made on A."""
    clients = await subscribers_on(ports, len(ports))
    await asyncio.sleep(0.5)
    publisher = await connect(ports[0])
    publisher.on_answer = lambda frame: None
    mine = [[client] for client in clients]
    found = await fixed_rate(publisher, clients, mine, len(clients), publishes * len(clients),
                             duration)
    for client in (*clients, publisher):
        client.transport.close()
    return found


def drop_schema(url: str) -> None:
    base, _, schema = url.partition("?schema=")
    subprocess.run(["psql", base, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                   check=False, capture_output=True)


def run(members: int, args: argparse.Namespace, work: Path) -> dict:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    storage = f"{POSTGRES}?schema=bench_{uuid.uuid4().hex[:8]}"
    (work / "gateway.yaml").write_text(GATEWAY_YAML.format(storage=storage, redis=REDIS,
                                                           prefix=prefix))
    procs, ports = [], []
    try:
        for core in range(members):
            port = common.free_port()
            procs.append(common.serve(common.pinned(common.gateway_cmd(port), core), work,
                                      port, work / f"member{core}.log"))
            ports.append(port)
        results = [asyncio.run(measure(ports, [p.pid for p in procs], args.subscribers,
                                       args.duration, args.in_flight, args.rates))
                   for _ in range(args.rounds)]
        if members > 1:
            results[0]["hop"] = asyncio.run(hop(ports, args.duration))
    finally:
        for proc in procs:
            common.stop(proc)
        drop_schema(storage)
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    best = max(results, key=lambda r: r["rate"])
    best.setdefault("hop", results[0].get("hop"))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--in-flight", type=int, default=4, help="publishes outstanding")
    parser.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")],
                        default=[10_000, 1_000],
                        help="notifications/s of the latency measures (the first is the goal's)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})  # the load client on core 1, with member B
    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, args, Path(tmp))
        two = run(2, args, Path(tmp))
    print(f"{args.subscribers} WebSocket subscribers, publisher on member A; A on core 0, "
          f"B on core 1; the load client shares core 1 (with B in the two-member run); "
          f"machine shared with other work (load average {os.getloadavg()[0]:.1f}): "
          f"read the CPU figures, not only the rates")
    goal = args.rates[0]
    for name, r in (("one member ", one), ("two members", two)):
        cpu = ", ".join(f"{c:.1f}" for c in r["cpu_us"])
        print(f"{name}: {r['rate']:,.0f} notifications/s at saturation; CPU per notification "
              f"it delivers (µs, A{', B' if len(r['cpu_us']) > 1 else ''}): {cpu}; busy: "
              f"{', '.join(f'{b:.0%}' for b in r['busy'])} of a core (under 100%: the load "
              f"client, not the members, sets the rate)")
        for rate, found in r["latency"].items():
            members = ", ".join(f"{p * 1e3:.2f}" for p in found["p99_by_member"])
            which = "A, B" if len(found["p99_by_member"]) > 1 else "A"
            print(f"  at {found['rate']:,.0f}/s (asked {rate:,.0f}): p50 "
                  f"{found['p50'] * 1e3:.2f} ms, p99 {found['p99'] * 1e3:.2f} ms (p99 of the "
                  f"subscribers on {which}: {members} ms), lost {found['lost']}")
    found = two["hop"]
    print(f"crossing members (1 subscriber on A, 1 on B, 200 publishes/s on A): p99 of A's "
          f"{found['p99_by_member'][0] * 1e3:.2f} ms, of B's {found['p99_by_member'][1] * 1e3:.2f}"
          f" ms (p50 of both {found['p50'] * 1e3:.2f} ms)")
    ratio = two["rate"] / one["rate"]
    p99 = two["latency"][goal]["p99"]
    print(f"two members / one: {ratio:.2f}x (goal >= 1.6x); two-member p99 at {goal:,.0f}/s: "
          f"{p99 * 1e3:.2f} ms (goal < 5 ms)")
    return 0 if ratio >= 1.6 and p99 < 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
