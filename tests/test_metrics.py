"""Prometheus metrics as an operator meets them: `GET /metrics` scraped over HTTP (rights of
`server:metrics`), parsed with prometheus-client's own parser, and summed over `--workers`."""

from __future__ import annotations

import asyncio
import json
import signal
import textwrap
import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.security_helpers import bearer, closed_yaml, denied, login
from tests.test_run import start, stop

P = "sanic_gateway_"

PLUGIN = {
    "plugins/probe/manifest.json": '{"name": "probe"}',
    "plugins/probe/__init__.py": """
import asyncio

class Plugin:
    def init(self, config, context):
        self.context = context

    async def passing(self, request):
        return request

    async def stuck(self, request):
        if request.input.args.get("stuck"):
            await asyncio.sleep(5)
        return request

    async def failing_hook(self, payload, event):
        raise RuntimeError("this hook fails")

    async def hello(self, request):
        return {"hello": "world"}

    async def inner(self, request):
        done = await self.context.accessors.execute({"controller": "server", "action": "now"})
        return {"inner": done.result is not None}
""",
}

PLUGINS = """
  probe:
    path: plugins/probe
    pipes:
      "probe/api:beforeHello": [passing, stuck]
    hooks:
      "probe/api:afterHello": failing_hook
    controllers:
      api: {hello: hello, inner: inner}
"""


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of `name` over the series whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


async def scrape(client: httpx.AsyncClient, jwt: str) -> dict[Any, float]:
    answer = await client.get("/metrics", headers=bearer(jwt))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return parse(answer.text)


async def test_metrics_need_the_right_of_server_metrics(serve):
    served = await serve(closed_yaml())
    client = served.client
    denied(await client.get("/metrics"), 401, "security.rights.unauthorized")
    alice = await login(client, "alice", "alice-password")
    denied(await client.get("/metrics", headers=bearer(alice)), 403,
           "security.rights.forbidden")
    admin = await login(client, "admin", "admin-password")
    samples = await scrape(client, admin)
    # the refusals are requests too, answered by the same action
    assert value(samples, P + "requests_total", controller="server", action="metrics",
                 protocol="http", status="401") == 1
    assert value(samples, P + "requests_total", controller="server", action="metrics",
                 protocol="http", status="403") == 1


async def test_requests_latencies_pipes_hooks_logins_and_limits(serve):
    served = await serve(closed_yaml(plugins=PLUGINS,
                                     limits="  pipe_timeout: 200ms",
                                     roles="""
    prober:
      controllers: {"probe/api": {actions: {"*": true}}}
""", profiles="    probers: {policies: [{roleId: prober}]}", users="""
    carol:
      profileIds: [probers]
      credentials: {local: {username: carol, password: carol-password}}
"""), files=PLUGIN)
    client = served.client
    admin = await login(client, "admin", "admin-password")
    carol = await login(client, "carol", "carol-password")
    for _ in range(5):
        assert (await client.get("/_/probe/api/hello", headers=bearer(carol))
                ).status_code == 404  # no route: a URL the gateway does not know
        r = await client.post("/_query", json={"controller": "probe/api", "action": "hello"},
                              headers=bearer(carol))
        assert r.status_code == 200, r.text
    r = await client.post("/_query", json={"controller": "probe/api", "action": "hello",
                                           "stuck": True}, headers=bearer(carol))
    assert r.json()["error"]["id"] == "plugin.runtime.pipe_timeout", r.text
    r = await client.post("/_query", json={"controller": "probe/api", "action": "inner"},
                          headers=bearer(carol))
    assert r.json()["result"] == {"inner": True}
    # a wrong password, an unknown strategy (labelled '', never what the client chose), then
    # failures on one username until it is locked (5 free failures, then locked for 1 s,
    # 2 s, 4 s...: however slow the machine, a 429 comes)
    async with httpx.AsyncClient(base_url=served.url) as other:
        bad = await other.post("/_login/local", json={"username": "carol", "password": "no"})
        assert bad.status_code == 401
        bad = await other.post("/_login/made-up-strategy", json={})
        assert bad.status_code == 400, bad.text
        codes: list[int] = []
        while 429 not in codes and len(codes) < 12:
            codes.append((await other.post("/_login/local", json={
                "username": "x", "password": "y"})).status_code)
        assert codes[-1] == 429, codes
    await asyncio.sleep(0.05)  # the hooks ran
    samples = await scrape(client, admin)
    hello = {"controller": "probe/api", "action": "hello", "protocol": "http"}
    assert value(samples, P + "requests_total", **hello, status="200") == 5
    assert value(samples, P + "requests_total", controller="", action="", protocol="http",
                 status="404") == 5
    assert value(samples, P + "request_duration_seconds_count", **hello) == 6
    assert value(samples, P + "request_duration_seconds_bucket", **hello, le="+Inf") == 6
    assert value(samples, P + "request_duration_seconds_sum", **hello) >= 0.2  # the stuck one
    assert value(samples, P + "request_duration_seconds_bucket", **hello, le="0.1") == 5
    # the plugin's own request, made with accessors.execute
    assert value(samples, P + "requests_total", controller="server", action="now",
                 protocol="internal", status="200") == 1
    pipe = {"plugin": "probe", "event": "probe/api:beforeHello"}
    assert value(samples, P + "pipe_duration_seconds_count", **pipe) == 11  # 6 + 5 unstuck
    assert value(samples, P + "pipe_timeouts_total", **pipe) == 1
    assert value(samples, P + "hook_errors_total", plugin="probe",
                 event="probe/api:afterHello") == 5
    assert value(samples, P + "login_failures_total", strategy="local") == len(codes)
    assert value(samples, P + "login_failures_total", strategy="") == 1
    assert not any("made-up" in str(key) for key in samples)
    assert value(samples, P + "rate_limited_requests_total", limit="login") == 1
    assert value(samples, P + "open_connections", protocol="http") >= 1
    assert value(samples, "process_cpu_seconds_total") > 0
    # a second scrape counts the first one, and adds nothing twice
    again = await scrape(client, admin)
    assert value(again, P + "requests_total", **hello, status="200") == 5
    assert value(again, P + "requests_total", controller="server", action="metrics",
                 protocol="http", status="200") == 1


async def test_kuzzles_json_stays_and_the_format_argument_chooses(serve):
    served = await serve(closed_yaml())
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    kuzzle = (await client.get("/_metrics", headers=admin)).json()["result"]
    assert set(kuzzle) == {"api", "network", "realtime"}
    text = await client.get("/_metrics", params={"format": "prometheus"}, headers=admin)
    assert text.headers["content-type"].startswith("text/plain")
    assert P + "requests_total" in text.text
    wrong = await client.get("/metrics", params={"format": "xml"}, headers=admin)
    denied(wrong, 400, "api.assert.invalid_argument")
    # WebSocket: the same action, its text as the result
    token = admin["Authorization"][7:]
    async with connect(served.url.replace("http://", "ws://") + "/") as ws:
        await ws.send(json.dumps({"controller": "server", "action": "metrics",
                                  "format": "prometheus", "jwt": token, "requestId": "m"}))
        answer = json.loads(await ws.recv())
        assert answer["status"] == 200, answer
        samples = parse(answer["result"])
        assert value(samples, P + "open_connections", protocol="websocket") == 1
        kuzzle = await client.get("/_metrics", headers=admin)
        assert kuzzle.json()["result"]["network"]["connections"]["websocket"] == 1
        await ws.send("not JSON")  # refused before any action: counted all the same
        assert json.loads(await ws.recv())["status"] == 400
    await asyncio.sleep(0.1)
    samples = parse((await client.get("/metrics", headers=admin)).text)
    assert value(samples, P + "open_connections", protocol="websocket") == 0
    assert value(samples, P + "requests_total", controller="server", action="metrics",
                 protocol="websocket", status="200") == 1
    assert value(samples, P + "requests_total", controller="", action="",
                 protocol="websocket", status="400") == 1


async def test_metrics_can_be_turned_off(serve):
    served = await serve(closed_yaml(extra="server: {metrics: false}"))
    client = served.client
    admin = bearer(await login(client, "admin", "admin-password"))
    denied(await client.get("/metrics", headers=admin), 404, "api.process.not_found")
    assert (await client.get("/_metrics", headers=admin)).json()["result"]["api"]
    assert served.gateway.funnel.stats is None


WORKERS_YAML = """\
    storage: "sqlite:///data.db"
    limits: {login_attempts_per_second: 0}
    security:
      roles:
        anonymous:
          controllers:
            auth: {actions: {login: true}}
            "pids/api": {actions: {"*": true}}
      users:
        root:
          profileIds: [admin]
          credentials: {local: {username: root, password: root-password-1}}
    plugins:
      pids:
        module: pids:Pids
        controllers:
          api: {pid: pid}
"""


def test_one_scrape_sums_every_worker(tmp_path):
    (tmp_path / "pids.py").write_text(textwrap.dedent("""
        import os
        class Pids:
            def pid(self, request):
                return os.getpid()
    """))
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(WORKERS_YAML))
    proc, base = start(tmp_path, "--workers", "2", env={"TMPDIR": str(tmp_path)})
    try:
        # the workers' metric files live in a private directory while the server runs
        assert len(list(tmp_path.glob("sanic-gateway-metrics-*"))) == 1
        token = httpx.post(f"{base}/_login/local", json={
            "username": "root", "password": "root-password-1"}).json()["result"]["jwt"]
        pids: dict[int, int] = {}
        deadline = time.time() + 30
        while (len(pids) < 2 or sum(pids.values()) < 40) and time.time() < deadline:
            with httpx.Client(base_url=base) as client:  # a new connection: any worker
                answer = client.post("/_query", json={"controller": "pids/api",
                                                      "action": "pid"})
                pids[answer.json()["result"]] = pids.get(answer.json()["result"], 0) + 1
        assert len(pids) == 2, pids
        sent = sum(pids.values())
        deadline = time.time() + 10
        while True:  # each worker hands its counts over at least every second
            with httpx.Client(base_url=base) as client:
                text = client.get("/metrics", headers=bearer(token)).text
            samples = parse(text)
            counted = value(samples, P + "requests_total", controller="pids/api",
                            action="pid", protocol="http", status="200")
            if counted == sent or time.time() > deadline:
                break
            time.sleep(0.2)
        assert counted == sent, (counted, pids)
        assert value(samples, P + "request_duration_seconds_count", controller="pids/api",
                     action="pid", protocol="http") == sent
    finally:
        out = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert not list(tmp_path.glob("sanic-gateway-metrics-*"))  # removed at exit
