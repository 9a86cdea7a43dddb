"""Kuzzle's own JS SDK (kuzzle-sdk from npm) against the gateway: the wire API is Kuzzle's."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "kuzzle_sdk" / "scenario.js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "kuzzle-sdk").is_dir(),
    reason="needs node and `npm ci` (kuzzle-sdk)",
)


async def test_kuzzle_sdk_logs_in_and_calls_plugin_controllers(serve):
    example = (ROOT / "gateway.yaml").read_text()
    files = {f"handlers/{p.name}": p.read_text() for p in (ROOT / "handlers").glob("*.py")}
    served = await serve(example, files=files, env={"NDJSON_PORT": "0"})
    port = served.url.rsplit(":", 1)[1]
    proc = await asyncio.create_subprocess_exec(
        "node", str(SCENARIO), port, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    steps = {}
    for line in out.decode().splitlines():
        entry = json.loads(line)
        steps[entry["step"]] = entry
    assert "networkError" not in steps, steps
    ok = {name: entry["value"] for name, entry in steps.items() if entry["ok"]}
    assert "connect" in ok, (steps, err.decode())
    assert isinstance(ok["now"], int)
    # the SDK built its URLs from /_publicApi: plugin actions included
    denied = steps["anonymous create"]
    assert not denied["ok"] and denied["error"]["id"] == "security.rights.unauthorized"
    assert isinstance(ok["login"], str)  # the SDK keeps the JWT and sends it from then on
    assert ok["checkToken"] is True
    assert ok["getCurrentUser"] == "alice"
    assert ok["create"] == "from the SDK"
    assert ok["list"] == 1
    assert ok["getMyRights"] is True
    assert "createMyCredentials" in ok, steps["createMyCredentials"]
    assert "logout" in ok
    assert ok["login apikey"] == "string"
    wrong = steps["wrong password"]
    assert not wrong["ok"] and wrong["error"]["status"] == 401


WS_SCENARIO = ROOT / "tests" / "kuzzle_sdk" / "ws_scenario.js"


async def _start_gateway(folder: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sanic_gateway", "run", cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT), "GATEWAY_PORT": str(port),
             "NDJSON_PORT": "0"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return proc
        except OSError:
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("the gateway did not start")


async def test_kuzzle_sdk_over_websocket_and_reconnection_after_a_restart(tmp_path):
    shutil.copy(ROOT / "gateway.yaml", tmp_path / "gateway.yaml")
    shutil.copytree(ROOT / "handlers", tmp_path / "handlers")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = await _start_gateway(tmp_path, port)
    node = await asyncio.create_subprocess_exec(
        "node", str(WS_SCENARIO), str(port), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    steps: dict[str, dict] = {}
    try:
        while True:
            line = await asyncio.wait_for(node.stdout.readline(), 60)
            if not line:
                break
            entry = json.loads(line)
            steps[entry["step"]] = entry
            if entry["step"] == "restart-me":
                gateway.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(gateway.wait(), 20) == 0
                gateway = await _start_gateway(tmp_path, port)
        await asyncio.wait_for(node.wait(), 20)
    finally:
        for proc in (node, gateway):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    err = (await node.stderr.read()).decode()
    ok = {name: entry["value"] for name, entry in steps.items() if entry["ok"]}
    assert "connect" in ok, (steps, err)
    assert ok["protocol"] == "WebSocketProtocol"
    assert isinstance(ok["now"], int)
    denied = steps["anonymous create"]
    assert not denied["ok"] and denied["error"]["id"] == "security.rights.unauthorized"
    assert ok["login"] == "string"
    assert ok["getCurrentUser"] == "alice"
    assert ok["create"] == "over websocket"
    unknown = steps["unknown action"]["error"]
    assert unknown["class"] == "KuzzleError" and unknown["status"] == 404
    assert unknown["id"] == "api.process.action_not_found"
    assert ok["restart"] is True, steps["restart"]
    assert ok.get("create after restart") == "again", (list(steps.values())[-3:], err)
    assert ok["getCurrentUser after restart"] == "alice"


REALTIME_SCENARIO = ROOT / "tests" / "kuzzle_sdk" / "realtime_scenario.js"


async def test_kuzzle_sdk_realtime_subscribe_and_publish(serve):
    served = await serve('storage: "sqlite:///:memory:"\n')
    port = served.url.rsplit(":", 1)[1]
    proc = await asyncio.create_subprocess_exec(
        "node", str(REALTIME_SCENARIO), port, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    steps = {}
    for line in out.decode().splitlines():
        entry = json.loads(line)
        steps[entry["step"]] = entry
    ok = {name: entry["value"] for name, entry in steps.items() if entry["ok"]}
    assert "connect" in ok, (steps, err.decode())
    assert ok["subscribe"] == "string" and ok["same room"] is True, steps
    joined = ok["user in"]  # a (users: all) hears b come in, with b's volatile
    assert joined["type"] == "user" and joined["user"] == "in"
    assert joined["result"] == {"count": 2} and joined["volatile"]["who"] == "b"
    assert ok["count"] == 2
    [document] = ok["document"]  # the matching publish only
    assert document["type"] == "document" and document["action"] == "publish"
    assert document["scope"] == "in" and document["event"] == "publish"
    assert document["index"] == "shop" and document["collection"] == "orders"
    assert document["result"]["_id"] == "o-1"
    assert document["result"]["_source"]["status"] == "paid"
    assert len(ok["document to b"]) == 1  # the publisher's own subscription hears it too
    assert ok["scope out and none"] == [0, 0]
    [left] = ok["user out"]
    assert left["user"] == "out" and left["result"] == {"count": 1}
    assert ok["count after"] == 1
