"""Round trips per second over MQTT against HTTP keep-alive, through the same funnel.

One gateway process (`sanic-gateway run`, one worker) serves both: HTTP and the MQTT protocol
(embedded amqtt broker) enabled in its gateway.yaml, through the same funnel. The action is a
plugin action returning a small dict. Loads, in turn on the same server (alternating, so drift
hits both):

(a) HTTP: `wrk -t1 -c<inflight>` on the action's route (keep-alive, one request in flight per
    connection);
(b) MQTT: paho-mqtt clients publishing on `Kuzzle/request`, each keeping requests in flight
    and counting the responses received on `Kuzzle/response` (every one checked to be a 200).

The server is pinned to CPU 0 and the load (wrk, or this script for MQTT) to CPU 1. Besides
the rates, the server's CPU time per request is printed (from /proc): on a shared machine it
moves much less than the rates do. The MQTT load client is Python: its CPU use is printed, and a
load client at ~100% means the MQTT figure is a lower bound.

    python bench/mqtt_throughput.py [--duration 10] [--inflight 50] [--clients 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
import paho.mqtt.client as paho

PLUGIN = textwrap.dedent('''
    class Bench:
        async def hello(self, request):
            return {"hello": "world"}
''')

GATEWAY_YAML = textwrap.dedent('''
    server:
      protocols:
        mqtt: {enabled: true, port: MQTT_PORT}
    plugins:
      bench:
        module: bench_plugin:Bench
        controllers:
          api: {hello: hello}
        routes:
          - {verb: get, url: /hello, controller: api, action: hello}
''')

REQUEST = b'{"controller": "bench/api", "action": "hello"}'


def mqtt_rate(port: int, duration: int, clients: int, inflight: int,
              server_cpu: Callable[[], float]) -> tuple[float, float, float]:
    """Responses per second over `duration` (after a 2 s warm-up), the server's CPU seconds per
    response and this process's CPU share meanwhile. Raises if any response is not a 200."""
    counts = [0] * clients
    bad: list[bytes] = []
    stopping = threading.Event()
    connected = threading.Semaphore(0)
    pahos = []
    for i in range(clients):
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-{i}",
                             protocol=paho.MQTTv311)

        def on_message(c: paho.Client, _u: object, message: paho.MQTTMessage, i: int = i) -> None:
            if b'"status":200' not in message.payload:
                bad.append(message.payload)
            counts[i] += 1
            if not stopping.is_set():
                c.publish("Kuzzle/request", REQUEST)

        client.on_message = on_message
        client.on_connect = lambda *_: connected.release()
        client.connect("127.0.0.1", port, keepalive=60)
        client.loop_start()
        pahos.append(client)
    for _ in pahos:
        if not connected.acquire(timeout=10):
            raise RuntimeError("an MQTT client did not connect")
    per_client = max(1, inflight // clients)
    for client in pahos:
        client.subscribe("Kuzzle/response")
        for _ in range(per_client):
            client.publish("Kuzzle/request", REQUEST)
    time.sleep(2)  # warm-up
    start_count, start, cpu0, server0 = sum(counts), time.perf_counter(), _cpu(), server_cpu()
    time.sleep(duration)
    done, elapsed, cpu = sum(counts) - start_count, time.perf_counter() - start, _cpu() - cpu0
    server = server_cpu() - server0
    stopping.set()
    for client in pahos:
        client.disconnect()
        client.loop_stop()
    if bad:
        raise RuntimeError(f"{len(bad)} non-200 responses, e.g. {bad[0][:300]!r}")
    return done / elapsed, server / done, cpu / elapsed


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> Callable[[], float]:
    """CPU seconds (user + system) used so far by process `pid`."""
    tick = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / tick
    return read


def _line(label: str, rates: list[float], cpus: list[float], extra: str = "") -> str:
    return (f"{label:34s} {statistics.median(rates):8.0f} req/s (median)  "
            f"{statistics.median(cpus) * 1e6:6.0f} us server CPU/request  "
            f"runs: {[round(r) for r in rates]}{extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--inflight", type=int, default=50, help="requests in flight in all")
    parser.add_argument("--clients", type=int, default=5, help="MQTT client connections")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not common.require_wrk():
        return 2
    os.sched_setaffinity(0, {1})  # the load client (this process and its wrk) on CPU 1
    rates: dict[str, list[float]] = {"http": [], "mqtt": []}
    costs: dict[str, list[float]] = {"http": [], "mqtt": []}
    client_cpus: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bench_plugin.py").write_text(PLUGIN)
        http_port, mqtt_port = common.free_port(), common.free_port()
        (work / "gateway.yaml").write_text(GATEWAY_YAML.replace("MQTT_PORT", str(mqtt_port)))
        cmd = ["taskset", "-c", "0", *common.gateway_cmd(http_port)]
        proc = common.serve(cmd, work, http_port, work / "server.log")
        try:
            common.wait_ready(proc, mqtt_port, work / "server.log")
            server_cpu = process_cpu(common.worker_pid(proc.pid))  # the supervisor's worker
            url = f"http://127.0.0.1:{http_port}/_/bench/hello"
            common.wrk(url, 2, args.inflight)  # warm-up
            for _ in range(args.rounds):
                before = server_cpu()
                out = common.wrk(url, args.duration, args.inflight)
                match = re.search(r"(\d+) requests in", out)
                assert match, out
                total = int(match.group(1))
                rates["http"].append(common.wrk_rate(out))
                costs["http"].append((server_cpu() - before) / total)
                rate, cost, cpu = mqtt_rate(mqtt_port, args.duration, args.clients,
                                            args.inflight, server_cpu)
                rates["mqtt"].append(rate)
                costs["mqtt"].append(cost)
                client_cpus.append(cpu)
        finally:
            common.stop(proc)
    print(_line(f"HTTP keep-alive (wrk -c{args.inflight})", rates["http"], costs["http"]))
    print(_line(f"MQTT ({args.clients} clients, {args.inflight} in flight)", rates["mqtt"],
                costs["mqtt"], f"  load client CPU: {[f'{c:.0%}' for c in client_cpus]}"))
    rate_ratio = statistics.median(rates["mqtt"]) / statistics.median(rates["http"])
    cost_ratio = statistics.median(costs["http"]) / statistics.median(costs["mqtt"])
    print(f"MQTT/HTTP: rate ratio {rate_ratio:.3f}, CPU-per-request ratio (HTTP/MQTT) "
          f"{cost_ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
