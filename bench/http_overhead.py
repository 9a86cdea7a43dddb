"""HTTP overhead of the gateway against bare Sanic, measured in one run with one load client.

(a) a bare Sanic route answering a JSON envelope of the same shape and size;
(b) a plugin route through the whole funnel (all request events), 3 pipes and 1 hook.

Each server runs alone in its own process (one worker, uvloop, access log off), loaded in turn by
the same `wrk` command; the runs alternate a→b→a→b so drift hits both. Prints both rates and b/a.

    python bench/http_overhead.py [--duration 10] [--connections 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not common.require_wrk():
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bare_app.py").write_text(common.BARE_APP)
        (work / "bench_plugin.py").write_text(PLUGIN)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        servers = {
            "a": ("bare Sanic route",
                  lambda p: [sys.executable, "bare_app.py", str(p)]),
            "b": ("plugin route, full funnel, 3 pipes + 1 hook",
                  common.gateway_cmd),
        }
        rates: dict[str, list[float]] = {"a": [], "b": []}
        for _ in range(args.rounds):
            for key, (_label, cmd) in servers.items():
                port = common.free_port()
                proc = common.serve(cmd(port), work, port, work / f"{key}.log")
                try:
                    url = f"http://127.0.0.1:{port}/hello"
                    if key == "b":
                        url = f"http://127.0.0.1:{port}/_/bench/hello"
                    common.wrk(url, 2, args.connections)  # warm-up
                    out = common.wrk(url, args.duration, args.connections)
                    rates[key].append(common.wrk_rate(out))
                finally:
                    common.stop(proc)
    a = sum(rates["a"]) / len(rates["a"])
    b = sum(rates["b"]) / len(rates["b"])
    print(f"(a) {servers['a'][0]:45s} {a:10.0f} req/s  runs: {rates['a']}")
    print(f"(b) {servers['b'][0]:45s} {b:10.0f} req/s  runs: {rates['b']}")
    print(f"ratio b/a = {b / a:.3f}   (target >= 0.8)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
