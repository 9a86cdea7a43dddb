"""Kuzzle's own JS SDK (kuzzle-sdk from npm) against the gateway: the wire API is Kuzzle's."""

from __future__ import annotations

import asyncio
import json
import shutil
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
    served = await serve(example, files=files)
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
