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

import httpx

USERNAME, PASSWORD = "bench", "bench-password-0123456789"

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}:\n{log.read_text()}")


def serve(cmd: list[str], cwd: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(cwd)})
    try:
        wait_port(port, proc, log)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(url: str, duration: int, connections: int, headers: dict[str, str]) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out or ("Socket errors" in out and "read 0" not in out):
        raise RuntimeError(f"wrk failed or saw errors:\n{out}")
    return float(match.group(1))


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
    if not shutil.which("wrk"):
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    labels = {
        "a": "plugin route, anonymous",
        "b": "plugin route, Authorization: Bearer <jwt>",
        "c": "bare Sanic route (reference)",
    }
    rates: dict[str, list[float]] = {key: [] for key in labels}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bare_app.py").write_text(BARE_APP)
        (work / "bench_plugin.py").write_text(PLUGIN)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        port = free_port()
        gateway = serve([sys.executable, "-m", "sanic_gateway", "run", "--config", "gateway.yaml",
                         "--port", str(port)], work, port, work / "gateway.log")
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
                    wrk(url, 2, args.connections, headers[key])  # warm-up
                    rates[key].append(wrk(url, args.duration, args.connections, headers[key]))
                bare_port = free_port()
                bare = serve([sys.executable, "bare_app.py", str(bare_port)], work, bare_port,
                             work / "bare.log")
                try:
                    bare_url = f"http://127.0.0.1:{bare_port}/hello"
                    wrk(bare_url, 2, args.connections, {})  # warm-up
                    rates["c"].append(wrk(bare_url, args.duration, args.connections, {}))
                finally:
                    stop(bare)
        finally:
            stop(gateway)
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
