"""HTTP overhead of the gateway against bare Sanic, measured in one run with one load client.

(a) a bare Sanic route answering a JSON envelope of the same shape and size;
(b) a plugin route through the whole funnel (all request events), 3 pipes and 1 hook.

Each server runs alone in its own process (one worker, uvloop, access log off), loaded in turn by
the same `wrk` command; the runs alternate a→b→a→b so drift hits both. Prints both rates and b/a.

    python bench/http_overhead.py [--duration 10] [--connections 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BARE_APP = textwrap.dedent('''
    import sys, uuid
    from sanic import Sanic
    from sanic.response import json

    app = Sanic("bare")
    app.config.ACCESS_LOG = False
    app.config.MOTD = False

    @app.get("/hello")
    async def hello(request):
        return json({"requestId": str(uuid.uuid4()), "status": 200, "error": None,
                     "controller": "bench/api", "action": "hello", "index": None,
                     "collection": None, "volatile": None, "result": {"hello": "world"}},
                    headers={"X-Kuzzle-Request-Id": "x"})

    if __name__ == "__main__":
        app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False,
                motd=False)
''')

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def wrk(url: str, duration: int, connections: int) -> float:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url],
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out or ("Socket errors" in out and "read 0" not in out):
        raise RuntimeError(f"wrk failed or saw errors:\n{out}")
    return float(match.group(1))


def serve(cmd: list[str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(cwd)})
    wait_port(port)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bare_app.py").write_text(BARE_APP)
        (work / "bench_plugin.py").write_text(PLUGIN)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        servers = {
            "a": ("bare Sanic route",
                  lambda p: [sys.executable, "bare_app.py", str(p)]),
            "b": ("plugin route, full funnel, 3 pipes + 1 hook",
                  lambda p: [sys.executable, "-m", "sanic_gateway", "run", "--port", str(p)]),
        }
        rates: dict[str, list[float]] = {"a": [], "b": []}
        for _ in range(args.rounds):
            for key, (_label, cmd) in servers.items():
                port = free_port()
                proc = serve(cmd(port), work, port)
                try:
                    url = f"http://127.0.0.1:{port}/hello"
                    if key == "b":
                        url = f"http://127.0.0.1:{port}/_/bench/hello"
                    wrk(url, 2, args.connections)  # warm-up
                    rates[key].append(wrk(url, args.duration, args.connections))
                finally:
                    proc.terminate()
                    proc.wait(10)
    a = sum(rates["a"]) / len(rates["a"])
    b = sum(rates["b"]) / len(rates["b"])
    print(f"(a) {servers['a'][0]:45s} {a:10.0f} req/s  runs: {rates['a']}")
    print(f"(b) {servers['b'][0]:45s} {b:10.0f} req/s  runs: {rates['b']}")
    print(f"ratio b/a = {b / a:.3f}   (target >= 0.8)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
