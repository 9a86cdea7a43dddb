"""Realtime end to end: notifications delivered per second to WebSocket subscribers.

`--subscribers` connections (1,000) subscribe to the same filter on one gateway (`sanic-gateway
run`, one worker, pinned to core 0); one more connection publishes (`realtime:publish`),
keeping `--in-flight` publishes outstanding; each publish notifies every subscriber. The client
(this process, one asyncio loop, pinned to core 1) counts the notification frames the
subscribers receive. Prints notifications delivered per second of wall time (goal >= 50,000),
and per second of the server's CPU time (what one core delivers when nothing else runs on it:
the figure to read on a loaded machine).

    python bench/realtime_notify.py [--subscribers 1000] [--duration 5] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
import psutil
from ws_client import HANDSHAKE, masked_frame

GATEWAY_YAML = textwrap.dedent('''
    storage: "sqlite:///./bench.db"
    server:
      protocols:
        websocket: {send_queue: 10000, max_in_flight: 100}
''')


def frames(buffer: bytearray) -> list[bytes]:
    """Complete server frames (unmasked) taken off the front of `buffer`."""
    out = []
    while len(buffer) >= 2:
        length, start = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                break
            length, start = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length, start = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < start + length:
            break
        out.append(bytes(buffer[start:start + length]))
        del buffer[:start + length]
    return out


class Client(asyncio.Protocol):
    """One WebSocket connection: the handshake, then frames counted (or handed to `waiter`)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.upgraded = False
        self.count = 0  # notification frames
        self.answers: asyncio.Queue[dict] = asyncio.Queue()
        self.ready = asyncio.get_running_loop().create_future()
        self.on_answer = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(HANDSHAKE)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            del buffer[:end + 4]
            self.upgraded = True
            self.ready.set_result(None)
        for frame in frames(buffer):
            if frame.startswith(b'{"type":'):
                self.count += 1
            elif self.on_answer is not None:
                self.on_answer(frame)
            else:
                self.answers.put_nowait(json.loads(frame))

    def send(self, request: dict) -> None:
        self.transport.write(masked_frame(json.dumps(request).encode()))  # type: ignore[attr-defined]


async def connect(port: int) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(Client, "127.0.0.1", port)
    await asyncio.wait_for(client.ready, 30)
    return client


SUBSCRIBE = {"controller": "realtime", "action": "subscribe", "index": "bench",
             "collection": "quotes", "body": {"equals": {"symbol": "ACME"}}}
PUBLISH = {"controller": "realtime", "action": "publish", "index": "bench",
           "collection": "quotes", "body": {"symbol": "ACME", "price": 12.5}}


async def run(port: int, subscribers: int, duration: float, in_flight: int,
              server: psutil.Process) -> tuple[float, float]:
    clients: list[Client] = []
    for first in range(0, subscribers, 100):
        clients += await asyncio.gather(*(connect(port)
                                          for _ in range(min(100, subscribers - first))))
    for client in clients:
        client.send(SUBSCRIBE)
    for client in clients:
        answer = await asyncio.wait_for(client.answers.get(), 30)
        assert answer["status"] == 200, answer
    publisher = await connect(port)
    sent = 0
    running = True

    def on_answer(frame: bytes) -> None:
        nonlocal sent
        if b'"status":200,' not in frame:
            raise RuntimeError(frame[:300])
        if running:
            publisher.send(PUBLISH)
            sent += 1

    publisher.on_answer = on_answer
    for _ in range(in_flight):
        publisher.send(PUBLISH)
    await asyncio.sleep(1.0)  # warm-up
    before, started = sum(c.count for c in clients), time.perf_counter()
    cpu_before = sum(server.cpu_times()[:2])
    await asyncio.sleep(duration)
    delivered = sum(c.count for c in clients) - before
    elapsed = time.perf_counter() - started
    cpu = sum(server.cpu_times()[:2]) - cpu_before
    running = False
    await asyncio.sleep(0.5)
    for client in (*clients, publisher):
        client.transport.close()
    if not sent:
        raise RuntimeError("no publish was answered")
    return delivered / elapsed, delivered / cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--in-flight", type=int, default=4, help="publishes outstanding")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})  # the clients on core 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        port = common.free_port()
        cmd = common.gateway_cmd(port)
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "0", *cmd]  # the server on core 0
        proc = common.serve(cmd, work, port, work / "server.log")
        try:
            server = psutil.Process(common.worker_pid(proc.pid))  # the supervisor's worker
            rates, per_cpu = [], []
            for _ in range(args.rounds):
                rate, by_cpu = asyncio.run(run(port, args.subscribers, args.duration,
                                               args.in_flight, server))
                rates.append(rate)
                per_cpu.append(by_cpu)
        finally:
            common.stop(proc)
    best = max(rates)
    print(f"notifications delivered to {args.subscribers} WebSocket subscribers: "
          f"{best:,.0f}/s (rounds: {', '.join(f'{r:,.0f}' for r in rates)}; goal >= 50,000)")
    print(f"per second of server CPU: {max(per_cpu):,.0f} "
          f"(rounds: {', '.join(f'{r:,.0f}' for r in per_cpu)}); "
          f"load average: {os.getloadavg()[0]:.1f}")
    return 0 if best >= 50_000 else 1


if __name__ == "__main__":
    sys.exit(main())
