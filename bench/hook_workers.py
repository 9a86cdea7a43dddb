"""A CPU-heavy hook in worker processes (`threads: 2`) vs in the server process: the request
rate of an unrelated route meanwhile.

One plugin has a hook that burns 20 ms of pure-Python CPU per event, on `bench/api:afterWork`;
a pacer thread calls `/_/bench/work` at `--events` per second (the hook's load: events x 20 ms
of CPU per second), while `wrk` measures `/_/bench/hello`, a route no hook listens to. Three
servers in turn, each alone, same wrk command:

  (0) no hook load (the pacer off): the reference rate;
  (i) the hook in the server process (`threads: 0`, a plain def: the plugins' threads);
  (w) the hook in 2 worker processes (`threads: 2`).

Pinning (2 cores): the server on core 0 (taskset -c 0), wrk and the pacer on core 1, and the
hook worker processes moved to core 1 once started (they inherit the server's core 0
otherwise): the heavy work then competes with the load client, not with the server, which is
the point of running it elsewhere. Prints each rate and the ratios i/0 and w/0 (goal for w/0:
>= 0.9).

The runs alternate 0→i→w for `--rounds` rounds and the medians are compared, so that drift
(other load on the machine) hits all three alike; the load average is printed with them.

    python bench/hook_workers.py [--duration 8] [--connections 20] [--events 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common

SERVER_CORE, CLIENT_CORE = 0, 1

PLUGIN = textwrap.dedent('''
    import time


    class Bench:
        async def hello(self, request):
            return {"hello": "world"}

        async def work(self, request):
            return {"queued": True}

        def heavy(self, payload, event):
            """20 ms of this thread's CPU time in pure Python."""
            start = time.thread_time()
            x = 0
            while time.thread_time() - start < 0.020:
                for i in range(500):
                    x += i * i
            return x
''')

GATEWAY_YAML = '''
plugins:
  bench:
    module: bench_plugin:Bench
    threads: {threads}
    hooks:
      "bench/api:afterWork": heavy
    controllers:
      api: {{hello: hello, work: work}}
    routes:
      - {{verb: get, url: /hello, controller: api, action: hello}}
      - {{verb: get, url: /work, controller: api, action: work}}
'''


def hook_worker_pids(server: int) -> list[int]:
    """The hook worker processes started by `server` (its children running hook_workers)."""
    found = []
    for task in Path(f"/proc/{server}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"sanic_gateway.hook_workers" in cmdline:
                found.append(int(child))
    return found


class Pacer(threading.Thread):
    """Calls `url` `rate` times per second over one keep-alive connection until stopped."""

    def __init__(self, port: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.port, self.rate = port, rate
        self.done = threading.Event()
        self.sent = 0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        next_at = time.monotonic()
        while not self.done.is_set():
            conn.request("GET", "/_/bench/work")
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            self.sent += 1
            next_at += 1 / self.rate
            self.done.wait(max(0.0, next_at - time.monotonic()))
        conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(work: Path, threads: int, load: float,
            args: argparse.Namespace) -> tuple[float, float, str]:
    """(wall rate, requests per CPU-second of the server process, note)."""
    (work / "gateway.yaml").write_text(GATEWAY_YAML.format(threads=threads))
    port = common.free_port()
    cmd = ["taskset", "-c", str(SERVER_CORE), *common.gateway_cmd(port)]
    proc = common.serve(cmd, work, port, work / f"server-{threads}-{load}.log",
                        url=f"http://127.0.0.1:{port}/_/bench/hello")
    pacer = None
    try:
        server = common.worker_pid(proc.pid)  # the supervisor's worker
        moved = hook_worker_pids(server)
        for pid in moved:
            os.sched_setaffinity(pid, {CLIENT_CORE})
        url = f"http://127.0.0.1:{port}/_/bench/hello"
        if load:
            pacer = Pacer(port, load)
            pacer.start()
        common.wrk(url, 2, args.connections)  # warm-up
        cpu = cpu_seconds(server)
        out = common.wrk(url, args.duration, args.connections)
        cpu = cpu_seconds(server) - cpu
        match = re.search(r"(\d+) requests in", out)
        assert match, out
        note = f"hook workers {moved} on core {CLIENT_CORE}" if moved else "no hook worker"
        if pacer is not None:
            note += f"; {pacer.sent} hook events sent"
        return common.wrk_rate(out), int(match.group(1)) / cpu, note
    finally:
        if pacer is not None:
            pacer.done.set()
            pacer.join(10)
        common.stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=float, default=20.0,
                        help="hook events per second (each 20 ms of CPU)")
    args = parser.parse_args()
    if not common.require_wrk():
        return 2
    os.sched_setaffinity(0, {CLIENT_CORE})  # this process (the pacer) and wrk, its child
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bench_plugin.py").write_text(PLUGIN)
        cases = {
            "0": ("no hook load (reference)", 0, 0.0),
            "i": (f"{args.events:g} heavy events/s, hook in server", 0, args.events),
            "w": (f"{args.events:g} heavy events/s, threads: 2", 2, args.events),
        }
        runs: dict[str, list[float]] = {key: [] for key in cases}
        per_cpu: dict[str, list[float]] = {key: [] for key in cases}
        for _ in range(args.rounds):
            for key, (label, threads, load) in cases.items():
                rate, by_cpu, note = measure(work, threads, load, args)
                runs[key].append(rate)
                per_cpu[key].append(by_cpu)
                print(f"({key}) {label:42s} {rate:8.0f} req/s {by_cpu:8.0f} req/server-CPU-s"
                      f"  [{note}]", flush=True)
        rates = {key: statistics.median(values) for key, values in runs.items()}
        cpus = {key: statistics.median(values) for key, values in per_cpu.items()}
    print("medians: " + ", ".join(f"({k}) {v:.0f} req/s" for k, v in rates.items())
          + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("requests per CPU-second of the server process (does not depend on what else runs): "
          + ", ".join(f"({k}) {v:.0f}" for k, v in cpus.items())
          + f"; i/0 = {cpus['i'] / cpus['0']:.3f}, w/0 = {cpus['w'] / cpus['0']:.3f}")
    print(f"pinning: server on core {SERVER_CORE}; wrk, pacer and hook workers on core "
          f"{CLIENT_CORE}")
    print(f"ratio i/0 = {rates['i'] / rates['0']:.3f}   (hook in the server process)")
    print(f"ratio w/0 = {rates['w'] / rates['0']:.3f}   (hook in 2 worker processes; "
          "goal >= 0.9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
