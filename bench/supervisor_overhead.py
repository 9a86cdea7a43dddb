"""What serving under the supervisor costs: `sanic-gateway run` (a supervisor and one worker)
against the same gateway served by `app.serve` in a lone process, in one run.

(a) a lone process: gateway.yaml built, the socket bound and `serve()` run in one process,
    as `run` did before it always used the supervisor;
(b) `sanic-gateway run`: the supervisor forks one worker that runs the same `serve()`.

Both serve http_overhead.py's plugin route (full funnel, 3 pipes, 1 hook), pinned to core 0,
loaded in turn by the same `wrk` pinned to core 1, rounds alternating a→b→a→b. Prints rates,
server CPU per request (the whole process tree: (b)'s supervisor included) and the memory
the supervisor holds on its own (private pages, /proc/PID/smaps_rollup).

    python bench/supervisor_overhead.py [--duration 10] [--connections 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
from http_overhead import GATEWAY_YAML, PLUGIN

LONE = textwrap.dedent('''
    import sys
    from pathlib import Path

    from sanic_gateway import logs
    from sanic_gateway.app import serve
    from sanic_gateway.cli import bind
    from sanic_gateway.config_source import ConfigSource

    logs.configure(False)
    gateway = ConfigSource(Path("gateway.yaml")).build()
    port = int(sys.argv[1])
    sys.exit(serve(gateway, bind("127.0.0.1", port), f"http://127.0.0.1:{port}"))
''')


def private_kib(pid: int) -> int:
    """Memory only this process holds (pages not shared with its worker)."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return sum(int(line.split()[1]) for line in text.splitlines()
               if line.startswith(("Private_Clean:", "Private_Dirty:")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not common.require_wrk():
        return 2
    servers = {
        "a": ("lone process, serve()", lambda p: [sys.executable, "lone.py", str(p)]),
        "b": ("sanic-gateway run (supervisor + 1 worker)", common.gateway_cmd),
    }
    rates: dict[str, list[float]] = {"a": [], "b": []}
    cpus: dict[str, list[float]] = {"a": [], "b": []}
    supervisor_kib: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "lone.py").write_text(LONE)
        (work / "bench_plugin.py").write_text(PLUGIN)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        for _ in range(args.rounds):
            for key, (_label, cmd) in servers.items():
                port = common.free_port()
                proc = common.serve(common.pinned(cmd(port), common.SERVER_CORE), work, port,
                                    work / f"{key}.log")
                try:
                    url = f"http://127.0.0.1:{port}/_/bench/hello"
                    common.wrk(url, 2, args.connections)  # warm-up
                    cpu = common.process_cpu(proc.pid)
                    before = cpu()
                    out = common.wrk(url, args.duration, args.connections)
                    rate = common.wrk_rate(out)
                    rates[key].append(rate)
                    cpus[key].append((cpu() - before) / (rate * args.duration))
                    if key == "b":
                        supervisor_kib.append(private_kib(proc.pid))
                finally:
                    common.stop(proc)
    ratios = [b / a for a, b in zip(rates["a"], rates["b"], strict=True)]
    for key, (label, _) in servers.items():
        print(f"({key}) {label:45s} {statistics.median(rates[key]):8.0f} req/s (median)  "
              f"{statistics.median(cpus[key]) * 1e6:5.1f} us server CPU/request  "
              f"runs: {[round(r) for r in rates[key]]}")
    print(f"ratio b/a = {statistics.median(ratios):.3f} (median of {len(ratios)} rounds: "
          f"{[round(r, 3) for r in ratios]})")
    cpu_ratio = statistics.median(cpus["b"]) / statistics.median(cpus["a"])
    print(f"CPU per request b/a = {cpu_ratio:.3f}")
    print(f"supervisor's private memory: {statistics.median(supervisor_kib) / 1024:.1f} MiB")
    print(f"server pinned to core {common.SERVER_CORE}, wrk to core {common.CLIENT_CORE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
