"""WebSocket throughput: a plugin action over WebSocket against the same action over HTTP
keep-alive, and against a bare Sanic WebSocket handler answering the same envelope.

(a) bare Sanic WebSocket handler: parses the frame, answers the envelope with `room`;
(b) the gateway over WebSocket: one connection keeping N requests in flight;
(c) the gateway over HTTP keep-alive: `wrk` with N connections on the action's route.

Servers run on core 0, the load client (wrk, or bench/ws_client.py) on core 1; each server
alone, in turn, rounds alternating. Prints the rates and b/c (goal >= 1.5), b/a (goal >= 0.7).

    python bench/ws_throughput.py [--duration 5] [--in-flight 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
import ws_client

PLUGIN = textwrap.dedent('''
    class Bench:
        async def hello(self, request):
            return {"hello": "world"}
''')

GATEWAY_YAML = textwrap.dedent('''
    storage: "sqlite:///./bench.db"
    server:
      protocols:
        websocket: {max_in_flight: 1000}
    plugins:
      bench:
        module: bench_plugin:Bench
        controllers:
          api: {hello: hello}
        routes:
          - {verb: get, url: /hello, controller: api, action: hello}
''')

BARE_WS_APP = textwrap.dedent('''
    import sys
    import orjson
    from sanic import Sanic

    app = Sanic("barews")
    app.config.ACCESS_LOG = False
    app.config.MOTD = False

    @app.websocket("/")
    async def serve(request, ws):
        async for frame in ws:
            data = orjson.loads(frame)
            rid = data.get("requestId")
            await ws.send(orjson.dumps({
                "requestId": rid, "status": 200, "error": None,
                "controller": data.get("controller"), "action": data.get("action"),
                "index": None, "collection": None, "volatile": None,
                "result": {"hello": "world"}, "room": rid}).decode())

    if __name__ == "__main__":
        app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False,
                motd=False)
''')

SERVER_CORE, CLIENT_CORE = 0, 1


def pinned(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CORE), *cmd]


def frames() -> list[bytes]:
    return [(f'{{"controller":"bench/api","action":"hello","requestId":"bench-{i:06d}",'
             f'"body":{{}}}}').encode() for i in range(1000)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not common.require_wrk():
        return 2
    os.sched_setaffinity(0, {CLIENT_CORE})  # this process and its children (wrk): core 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bare_ws.py").write_text(BARE_WS_APP)
        (work / "bench_plugin.py").write_text(PLUGIN)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        runs = {
            "a": ("bare Sanic WebSocket handler", lambda p: [sys.executable, "bare_ws.py", str(p)]),
            "b": ("gateway, WebSocket, plugin action", common.gateway_cmd),
            "c": ("gateway, HTTP keep-alive, same action", common.gateway_cmd),
        }
        rates: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(args.rounds):
            for key, (_label, cmd) in runs.items():
                port = common.free_port()
                proc = common.serve(pinned(cmd(port)), work, port, work / f"{key}.log")
                try:
                    if key == "c":
                        url = f"http://127.0.0.1:{port}/_/bench/hello"
                        common.wrk(url, 1, args.in_flight)  # warm-up
                        out = common.wrk(url, int(args.duration), args.in_flight)
                        rates[key].append(common.wrk_rate(out))
                    else:
                        rates[key].append(asyncio.run(ws_client.rate(
                            port, args.in_flight, args.duration, frames())))
                finally:
                    common.stop(proc)
    mean = {key: sum(values) / len(values) for key, values in rates.items()}
    for key, (label, _) in runs.items():
        print(f"({key}) {label:40s} {mean[key]:10.0f} req/s  runs: "
              f"{[round(r) for r in rates[key]]}")
    print(f"in flight / connections: {args.in_flight}; server on core {SERVER_CORE}, "
          f"client on core {CLIENT_CORE}")
    print(f"ratio b/c (WebSocket / HTTP, both through the funnel) = {mean['b'] / mean['c']:.2f}"
          "   (goal >= 1.5)")
    print(f"ratio b/a (gateway WebSocket / bare Sanic WebSocket)  = {mean['b'] / mean['a']:.2f}"
          "   (goal >= 0.7)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
