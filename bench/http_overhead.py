"""HTTP overhead of the gateway against bare Sanic, measured in one run with one load client.

(a) a bare Sanic route answering a JSON envelope of the same shape and size;
(b) a plugin route through the whole funnel (all request events), 3 pipes and 1 hook.

Each server runs alone in its own process (one worker, uvloop, access log off), pinned to core 0,
and is loaded in turn by the same `wrk` command pinned to core 1 (`taskset`); the rounds
alternate a→b→a→b… so drift hits both. Prints the median rate of each, the median of the
per-round ratios b/a, and the server's CPU time per request (steadier than rates when other work
shares the machine).

    python bench/http_overhead.py [--duration 10] [--connections 50] [--rounds 5]
                                  [--metrics-off]

`--metrics-off` adds (c): the gateway of (b) with `server.metrics: false`, to measure what
counting the Prometheus metrics costs (b against c, CPU per request).
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

PLUGIN = textwrap.dedent('''
    class Bench:
        async def hello(self, request):
            return {"hello": "world"}

        async def pipe(self, request):
            return request

        async def hook(self, payload, event):
            pass
''')

GATEWAY_YAML = textwrap.dedent('''
    plugins:
      bench:
        module: bench_plugin:Bench
        pipes:
          "request:beforeExecution": pipe
          "bench/api:beforeHello": pipe
          "request:onSuccess": pipe
        hooks:
          "request:afterExecution": hook
        controllers:
          api: {hello: hello}
        routes:
          - {verb: get, url: /hello, controller: api, action: hello}
''')


def prepare(work: Path) -> None:
    """The servers' files: the bare app, the plugin, gateway.yaml and its metrics-off twin."""
    (work / "bare_app.py").write_text(common.BARE_APP)
    (work / "bench_plugin.py").write_text(PLUGIN)
    (work / "gateway.yaml").write_text(GATEWAY_YAML)
    (work / "no-metrics.yaml").write_text(GATEWAY_YAML + "server: {metrics: false}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--metrics-off", action="store_true",
                        help="also run (c): the gateway with server.metrics: false")
    args = parser.parse_args()
    if not common.require_wrk():
        return 2
    servers = {
        "a": ("bare Sanic route", lambda p: [sys.executable, "bare_app.py", str(p)], "/hello"),
        "b": ("plugin route, full funnel, 3 pipes + 1 hook", common.gateway_cmd,
              "/_/bench/hello"),
    }
    if args.metrics_off:
        servers["c"] = ("(b) with server.metrics: false",
                        lambda p: common.gateway_cmd(p, "--config", "no-metrics.yaml"),
                        "/_/bench/hello")
    rates: dict[str, list[float]] = {key: [] for key in servers}
    cpus: dict[str, list[float]] = {key: [] for key in servers}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work)
        for _ in range(args.rounds):
            for key, (_label, cmd, path) in servers.items():
                port = common.free_port()
                proc = common.serve(common.pinned(cmd(port), common.SERVER_CORE), work, port,
                                    work / f"{key}.log")
                try:
                    url = f"http://127.0.0.1:{port}{path}"
                    common.wrk(url, 2, args.connections)  # warm-up
                    cpu = common.process_cpu(proc.pid)
                    before = cpu()
                    out = common.wrk(url, args.duration, args.connections)
                    rate = common.wrk_rate(out)
                    rates[key].append(rate)
                    cpus[key].append((cpu() - before) / (rate * args.duration))
                finally:
                    common.stop(proc)
    ratios = [b / a for a, b in zip(rates["a"], rates["b"], strict=True)]
    for key, (label, _, _) in servers.items():
        print(f"({key}) {label:45s} {statistics.median(rates[key]):8.0f} req/s (median)  "
              f"{statistics.median(cpus[key]) * 1e6:5.1f} us server CPU/request  "
              f"runs: {[round(r) for r in rates[key]]}")
    print(f"ratio b/a = {statistics.median(ratios):.3f} (median of {len(ratios)} rounds: "
          f"{[round(r, 3) for r in ratios]})   target >= 0.8")
    print(f"CPU per request a/b = {statistics.median(cpus['a']) / statistics.median(cpus['b']):.3f}"
          "   (the same ratio, from the server's CPU time)")
    if args.metrics_off:  # paired by round (b and c run one after the other): drift cancels
        costs = [b / c - 1 for b, c in zip(cpus["b"], cpus["c"], strict=True)]
        print(f"metrics: CPU per request b/c - 1 = {statistics.median(costs) * 100:+.1f}% "
              f"(median of the rounds' {[round(x * 100, 1) for x in costs]}; "
              f"{statistics.median(cpus['c']) * 1e6:.1f} us without, "
              f"{statistics.median(cpus['b']) * 1e6:.1f} us with)")
    print(f"server pinned to core {common.SERVER_CORE}, wrk to core {common.CLIENT_CORE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
