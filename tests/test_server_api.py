"""The server controller as Kuzzle's: info, healthCheck, getConfig (no secrets), capabilities,
metrics, and the orchestrator probes /_healthcheck and /_ready."""

from __future__ import annotations

import asyncio
import platform

from sanic_gateway import errors
from sanic_gateway.api.serverinfo import public_config, without_credentials
from tests.security_helpers import SECRET, bearer, closed_yaml, denied, login
from tests.test_events import REC

SECRETS = ("bob-secret-pw", "plugin-api-key-value", "nested-secret-value", "redispw", SECRET)

OPEN_YAML = f"""
auth:
  jwt: {{secret: {SECRET}}}
security:
  users:
    bob:
      profileIds: [admin]
      credentials: {{local: {{username: bob, password: bob-secret-pw}}}}
plugins:
  rec:
    module: {REC}
    config:
      api_key: plugin-api-key-value
      endpoint: https://example.org/hook
      nested: {{client_secret: nested-secret-value, retries: 3}}
"""


async def test_info_has_kuzzles_fields_and_the_services(serve):
    served = await serve(OPEN_YAML)
    r = await served.client.get("/_serverInfo")
    assert r.status_code == 200, r.text
    info = r.json()["result"]["serverInfo"]
    kuzzle = info["kuzzle"]
    assert kuzzle["version"] == served.gateway.version
    assert kuzzle["pythonVersion"] == platform.python_version()
    assert isinstance(kuzzle["memoryUsed"], int) and kuzzle["memoryUsed"] > 1_000_000
    assert kuzzle["system"]["memory"]["total"] >= kuzzle["system"]["memory"]["free"] > 0
    assert len(kuzzle["system"]["cpus"]) >= 1 and "model" in kuzzle["system"]["cpus"][0]
    assert kuzzle["uptime"].endswith("s")
    assert "login" in kuzzle["api"]["routes"]["auth"]
    assert "rec" in kuzzle["plugins"]
    services = info["services"]
    assert services["storage"]["backend"] == "sqlite" and services["storage"]["status"] == "green"
    assert "cluster" not in services  # see test_cluster.py
    for secret in SECRETS:
        assert secret not in r.text
    # `/` is the same action
    assert (await served.client.get("/")).json()["result"]["serverInfo"]["kuzzle"]["version"]


async def test_health_check_lists_each_service(serve, monkeypatch):
    served = await serve(OPEN_YAML)
    client = served.client
    r = await client.get("/_healthCheck")
    assert r.status_code == 200
    assert r.json()["result"] == {"status": "green", "services": {"storageEngine": "green"}}
    r = await client.get("/_healthCheck?services=memoryStorage")
    assert r.json()["result"] == {"status": "green", "services": {}}

    async def down() -> None:
        raise errors.get("services.storage.unavailable", "down for the test")

    monkeypatch.setattr(served.gateway.storage, "ping", down)
    r = await client.get("/_healthCheck")
    assert r.status_code == 503
    assert r.json()["result"] == {"status": "red", "services": {"storageEngine": "red"}}


async def test_probes_outside_the_funnel(serve):
    served = await serve(closed_yaml())  # closed: anonymous may not call server:healthCheck
    client = served.client
    for path in ("/_healthcheck", "/_ready"):
        r = await client.get(path, headers={"X-Kuzzle-Request-Id": "probe-1"})
        assert r.status_code == 200, (path, r.text)
        body = r.json()
        assert body["status"] == 200 and body["error"] is None and body["result"] is None
        assert body["requestId"] == "probe-1"
        assert (await client.head(path)).status_code == 200
    denied(await client.get("/_healthCheck"), 401, "security.rights.unauthorized")
    served.gateway.started = False  # as between stop() and the end of the process
    try:
        assert (await client.get("/_ready")).status_code == 503
        assert (await client.get("/_healthcheck")).status_code == 200
    finally:
        served.gateway.started = True


async def test_the_probe_and_the_health_check_differ_by_case_as_in_kuzzle(serve):
    """Kuzzle 2.56 has both: the router's probe `/_healthcheck` (liveness, no rights, result
    null) and `/_healthCheck`, the route of server:healthCheck (the services); paths are
    case-sensitive, so any other spelling is not found."""
    served = await serve(OPEN_YAML)
    client = served.client
    probe, action = await client.get("/_healthcheck"), await client.get("/_healthCheck")
    assert probe.status_code == action.status_code == 200
    assert probe.json()["controller"] is None and probe.json()["result"] is None
    assert action.json()["controller"] == "server" and action.json()["action"] == "healthCheck"
    assert action.json()["result"]["status"] == "green"
    for other in ("/_HealthCheck", "/_HEALTHCHECK"):
        assert (await client.get(other)).status_code == 404, other


async def test_get_config_has_no_secret(serve):
    served = await serve(OPEN_YAML)
    r = await served.client.get("/_getConfig")
    assert r.status_code == 200, r.text
    config = r.json()["result"]
    for secret in SECRETS:
        assert secret not in r.text, secret
    assert "security" not in config
    assert "secret" not in config["auth"]["jwt"]
    assert config["auth"]["jwt"]["algorithm"] == "HS256"
    assert config["limits"]["login_attempts_per_second"] == 1
    assert config["plugins"]["rec"]["config"] == {
        "endpoint": "https://example.org/hook", "nested": {"retries": 3}}
    assert config["cluster"]["redis"] is None
    assert config["version"] == served.gateway.version


def test_public_config_removes_every_kind_of_secret():
    data = {
        "storage": "postgresql://app:pg-password@db:5432/gw?schema=s&password=other",
        "cluster": {"redis": "rediss://:redis-password@cache:6380/1"},
        "auth": {"jwt": {"secret": "jwt-secret-value", "algorithm": "HS256"},
                 "strategies": {"corp": {"oauth2": {"client_id": "id",
                                                    "client_secret": "oauth-secret-value",
                                                    "access_token_url": "https://idp/token"}}}},
        "security": {"users": {"a": {"credentials": {"local": {"password": "pw-value"}}}}},
        "plugins": {"p": {"config": {"Password": "p1-value", "db": {"passwd": "p2-value"},
                                     "tokens": ["t-value"], "webhook_token": "t2-value",
                                     "hooks": ["https://bot:url-secret@chat.example/x"]}}},
    }
    text = repr(public_config(data, "1.0"))
    for secret in ("pg-password", "other", "redis-password", "jwt-secret-value",
                   "oauth-secret-value", "pw-value", "p1-value", "p2-value", "t-value",
                   "t2-value", "url-secret"):
        assert secret not in text, secret
    config = public_config(data, "1.0")
    assert config["storage"] == "postgresql://db:5432/gw?schema=s"
    assert config["auth"]["strategies"]["corp"]["oauth2"] == {
        "client_id": "id", "access_token_url": "https://idp/token"}
    assert without_credentials("sqlite:///./data/gateway.db") == "sqlite:///./data/gateway.db"
    assert config["plugins"]["p"]["config"]["hooks"] == ["https://chat.example/x"]


async def test_get_config_is_for_administrators(serve):
    served = await serve(closed_yaml())
    client = served.client
    alice = bearer(await login(client, "alice", "alice-password"))
    denied(await client.get("/_getConfig", headers=alice), 403, "security.rights.forbidden")
    denied(await client.get("/_getConfig"), 401, "security.rights.unauthorized")
    admin = bearer(await login(client, "admin", "admin-password"))
    r = await client.get("/_getConfig", headers=admin)
    assert r.status_code == 200 and SECRET not in r.text and "alice-password" not in r.text


async def test_capabilities_and_metrics(serve):
    served = await serve(OPEN_YAML)
    client = served.client
    r = await client.get("/_capabilities")
    assert r.status_code == 200, r.text
    caps = r.json()["result"]
    assert caps["version"] == served.gateway.version
    assert caps["limits"]["loginsPerSecond"] == 1
    assert caps["limits"]["documentsFetchCount"] == 10000
    assert caps["plugins"]["rec"] == {"version": served.gateway.plugins["rec"].version}
    assert "getConfig" in caps["routes"]["server"]
    assert caps["services"]["storage"]["backend"] == "sqlite"
    r = await client.get("/_metrics")
    assert r.status_code == 200, r.text
    metrics = r.json()["result"]
    assert metrics["api"] == {"concurrentRequests": 1, "pendingRequests": 0}  # this one
    assert metrics["network"]["connections"]["http/1.1"] >= 1
    assert metrics["realtime"] == {"rooms": 0, "subscriptions": 0}


SLOW_PLUGIN = {
    "plugins/slow/manifest.json": '{"name": "slow"}',
    "plugins/slow/__init__.py": """
import asyncio

class Plugin:
    def __init__(self):
        self.release = asyncio.Event()

    async def wait(self, request):
        await self.release.wait()
        return {"released": True}
""",
}


async def test_metrics_count_requests_in_flight_and_connections(serve):
    served = await serve("""
plugins:
  slow:
    path: plugins/slow
    controllers: {api: {wait: wait}}
""", files=SLOW_PLUGIN)
    client = served.client
    pending = [asyncio.create_task(client.post("/_query", json={
        "controller": "slow/api", "action": "wait"})) for _ in range(3)]
    try:
        for _ in range(100):
            metrics = (await client.get("/_metrics")).json()["result"]
            if metrics["api"]["concurrentRequests"] == 4:
                break
            await asyncio.sleep(0.02)
        assert metrics["api"]["concurrentRequests"] == 4  # three waiting, and this one
        assert metrics["network"]["connections"]["http/1.1"] >= 4  # each on its connection
    finally:
        served.plugin("slow").release.set()
        answers = await asyncio.gather(*pending)
    assert [a.json()["result"] for a in answers] == [{"released": True}] * 3
    metrics = (await client.get("/_metrics")).json()["result"]
    assert metrics["api"]["concurrentRequests"] == 1


MEDDLER = '''
class Meddler:
    def init(self, config, context):
        self.context = context

    async def after_public_api(self, request):
        if request.input.args.get("meddle"):
            request.result["server"]["meddled"] = True
            del request.result["auth"]
        return request

    async def via_execute(self, request):
        done = await self.context.accessors.execute(
            {"controller": "server", "action": "publicApi"})
        done.result.clear()
        return {"cleared": True}
'''
MEDDLER_YAML = """
plugins:
  meddler:
    module: meddler:Meddler
    controllers:
      api: {via_execute: via_execute}
"""


async def test_public_api_is_built_once_and_nobody_can_change_the_next_answer(serve):
    """The answer is computed once and the same object returned (nothing listens); a pipe, a
    plugin's execute or server:info changing theirs leaves the next caller's intact."""
    served = await serve(MEDDLER_YAML, files={"meddler.py": MEDDLER})
    client, api = served.client, served.gateway.api
    first = (await client.get("/_publicApi")).json()["result"]
    assert "auth" in first and "meddler/api" in first
    assert (await client.get("/_publicApi")).json()["result"] == first
    assert api.public_api() is api.public_api()  # cached

    # a plugin's execute gets a copy of its own, and clears it
    r = await client.post("/_query", json={"controller": "meddler/api", "action": "via_execute"})
    assert r.json()["result"] == {"cleared": True}
    assert (await client.get("/_publicApi")).json()["result"] == first

    info = (await client.get("/_serverInfo")).json()["result"]["serverInfo"]
    assert info["kuzzle"]["api"]["routes"] == first
    info_routes = (await client.post("/_query", json={"controller": "server", "action": "info"}))
    assert info_routes.json()["result"]["serverInfo"]["kuzzle"]["api"]["routes"] == first


async def test_a_pipe_changing_the_public_api_answer_changes_only_that_answer(serve):
    served = await serve(MEDDLER_YAML.replace("    controllers:", """    pipes:
      "server:afterPublicApi": after_public_api
    controllers:"""), files={"meddler.py": MEDDLER})
    client = served.client
    first = (await client.get("/_publicApi")).json()["result"]
    meddled = (await client.get("/_publicApi", params={"meddle": 1})).json()["result"]
    assert meddled["server"]["meddled"] is True and "auth" not in meddled
    after = (await client.get("/_publicApi")).json()["result"]
    assert after == first and "meddled" not in after["server"] and "auth" in after
