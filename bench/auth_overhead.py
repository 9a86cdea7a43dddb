"""What authentication costs per request: one plugin route, anonymous vs with a bearer JWT.

(a) the plugin route `GET /_/bench/hello` (a trivial async action returning a small dict)
    called anonymously: the anonymous role is declared, so its rights are checked;
(b) the same route on the same gateway process with `Authorization: Bearer <jwt>` (obtained by
    a local login first): the token is verified (signature, claims, revocation cache) and the
    user's rights (a declared role allowing the route) are checked;
(c) for reference, a bare Sanic route answering a JSON envelope of the same shape, in its own
    process, as in bench/http_overhead.py.

One `wrk -t1 -c<connections>` command loads each in turn, warm-up first, alternating
a→b→c→a→b→c so drift hits all three. The gateway runs once (one worker, access log off,
temp dir and SQLite storage) for all a and b runs; the bare server is started for each c run.
Prints the three rates, b/a (the cost of authentication) and a/c, b/c.

    python bench/auth_overhead.py [--duration 5] [--connections 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
from common import PASSWORD, USERNAME

PLUGIN = textwrap.dedent('''
    class Bench:
        async def hello(self, request):
            return {"hello": "world"}
''')

GATEWAY_YAML = textwrap.dedent(f'''
    storage: sqlite:///./data/gateway.db
    limits:
      login_attempts_per_second: 0
    security:
      roles:
        anonymous:
          controllers:
            auth: {{actions: {{login: true}}}}
            bench/api: {{actions: {{hello: true}}}}
        bencher:
          controllers:
            auth: {{actions: {{"*": true}}}}
            bench/api: {{actions: {{hello: true}}}}
      profiles:
        benchers: {{policies: [{{roleId: bencher}}]}}
      users:
        {USERNAME}:
          profileIds: [benchers]
          credentials:
            local: {{username: {USERNAME}, password: "{PASSWORD}"}}
    plugins:
      bench:
        module: bench_plugin:Bench
        controllers:
          api: {{hello: hello}}
        routes:
          - {{verb: get, url: /hello, controller: api, action: hello}}
''')


def check(url: str, headers: dict[str, str], kuid: str) -> None:
    """The route answers 200 as the expected user (a request denied would fail wrk anyway)."""
    response = httpx.get(url, headers=headers, timeout=10)
    response.raise_for_status()
    assert response.json()["result"] == {"hello": "world"}, response.text
    me = httpx.get(url.replace("/_/bench/hello", "/_me"), headers=headers, timeout=10)
    if kuid == "-1":
        assert me.status_code in (401, 403), me.text  # anonymous may not call getCurrentUser
    else:
        assert me.json()["result"]["_id"] == kuid, me.text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not common.require_wrk():
        return 2
    labels = {
        "a": "plugin route, anonymous",
        "b": "plugin route, Authorization: Bearer <jwt>",
        "c": "bare Sanic route (reference)",
    }
    rates: dict[str, list[float]] = {key: [] for key in labels}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bare_app.py").write_text(common.BARE_APP)
        (work / "bench_plugin.py").write_text(PLUGIN)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        port = common.free_port()
        command = common.gateway_cmd(port, "--config", "gateway.yaml")
        gateway = common.serve(common.pinned(command, common.SERVER_CORE), work, port,
                               work / "gateway.log")
        try:
            base = f"http://127.0.0.1:{port}"
            login = httpx.post(f"{base}/_login/local", timeout=30,
                               json={"username": USERNAME, "password": PASSWORD})
            login.raise_for_status()
            token = login.json()["result"]["jwt"]
            headers = {"a": {}, "b": {"Authorization": f"Bearer {token}"}}
            url = f"{base}/_/bench/hello"
            check(url, headers["a"], "-1")
            check(url, headers["b"], USERNAME)
            for _ in range(args.rounds):
                for key in ("a", "b"):
                    common.wrk(url, 2, args.connections, headers=headers[key])  # warm-up
                    out = common.wrk(url, args.duration, args.connections, headers=headers[key])
                    rates[key].append(common.wrk_rate(out))
                bare_port = common.free_port()
                command = [sys.executable, "bare_app.py", str(bare_port)]
                bare = common.serve(common.pinned(command, common.SERVER_CORE), work, bare_port,
                                    work / "bare.log")
                try:
                    bare_url = f"http://127.0.0.1:{bare_port}/hello"
                    common.wrk(bare_url, 2, args.connections)  # warm-up
                    out = common.wrk(bare_url, args.duration, args.connections)
                    rates["c"].append(common.wrk_rate(out))
                finally:
                    common.stop(bare)
        finally:
            common.stop(gateway)
    mean = {key: sum(values) / len(values) for key, values in rates.items()}
    for key, label in labels.items():
        runs = ", ".join(f"{r:.0f}" for r in rates[key])
        print(f"({key}) {label:45s} {mean[key]:10.0f} req/s  runs: [{runs}]")
    print(f"ratio b/a = {mean['b'] / mean['a']:.3f}   (cost of authenticating each request)")
    print(f"ratio a/c = {mean['a'] / mean['c']:.3f}, b/c = {mean['b'] / mean['c']:.3f}   "
          f"(against bare Sanic)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
