"""Same rules whichever protocol a request comes by: one table of scenarios, run over HTTP,
WebSocket, MQTT and the example ndjson protocol (add a transport to TRANSPORTS for another one)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.security_helpers import closed_yaml
from tests.test_mqtt import over_mqtt
from tests.test_protocols import LineClient, example_files

ROOT = Path(__file__).resolve().parent.parent
Call = Callable[..., Awaitable[dict[str, Any]]]

GATEWAY = closed_yaml(
    profiles="    hurried: {policies: [{roleId: reader}], rateLimit: 1}",
    users="""    bob:
      profileIds: [hurried]
      credentials: {local: {username: bob, password: bob-password}}""",
    plugins="""  piper:
    module: tests.plugins.recorder:Recorder
    pipes:
      "rec/api:beforeEcho": add_a
      "server:beforeNow": slow
""",
    extra="""server:
  protocols:
    ndjson: {module: handlers.ndjson:NdjsonProtocol, port: 0}
    mqtt: {enabled: true, port: 0}
""",
).replace("limits:\n", "limits:\n  pipe_timeout: 300ms\n", 1)


# -- transports: each opens a client and gives `call(**frame) -> envelope` ------------------------

@asynccontextmanager
async def over_http(served: Any) -> AsyncIterator[Call]:
    async def call(**frame: Any) -> dict[str, Any]:
        return (await served.client.post("/_query", json=frame)).json()
    yield call


@asynccontextmanager
async def over_websocket(served: Any) -> AsyncIterator[Call]:
    async with connect(served.url.replace("http://", "ws://") + "/") as ws:
        async def call(**frame: Any) -> dict[str, Any]:
            frame.setdefault("requestId", "rid")
            await ws.send(json.dumps(frame))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer["room"] == answer["requestId"] == frame["requestId"]
            return answer
        yield call


@asynccontextmanager
async def over_ndjson(served: Any) -> AsyncIterator[Call]:
    client = await LineClient.open(served.gateway.hub.protocols["ndjson"].obj.port)

    async def call(**frame: Any) -> dict[str, Any]:
        frame.setdefault("requestId", "rid")
        await client.send(frame)
        answer = await client.recv()
        assert answer["room"] == answer["requestId"] == frame["requestId"]
        return answer
    try:
        yield call
    finally:
        await client.close()


def over_mqtt_of(served: Any) -> Any:
    return over_mqtt(served.gateway.hub.protocols["mqtt"].obj.port)


TRANSPORTS = {"http": over_http, "websocket": over_websocket, "ndjson": over_ndjson,
              "mqtt": over_mqtt_of}


# -- the scenarios ---------------------------------------------------------------------------------

async def login(call: Call, username: str) -> str:
    answer = await call(controller="auth", action="login", strategy="local",
                        body={"username": username, "password": f"{username}-password"})
    assert answer["status"] == 200, answer
    return answer["result"]["jwt"]


async def anonymous_is_refused_401(call: Call) -> None:
    answer = await call(controller="rec/api", action="echo")
    assert answer["status"] == 401 and answer["error"]["id"] == "security.rights.unauthorized"


async def a_user_without_the_right_gets_403(call: Call) -> None:
    jwt = await login(call, "alice")
    answer = await call(controller="security", action="getRole", _id="reader", jwt=jwt)
    assert answer["status"] == 403 and answer["error"]["id"] == "security.rights.forbidden"


async def login_then_the_token_authenticates(call: Call) -> None:
    jwt = await login(call, "alice")
    me = await call(controller="auth", action="getCurrentUser", jwt=jwt)
    assert me["status"] == 200 and me["result"]["_id"] == "alice"
    wrong = await call(controller="auth", action="login", strategy="local",
                       body={"username": "alice", "password": "nope"})
    assert wrong["status"] == 401


async def a_pipe_changes_the_request(call: Call) -> None:
    jwt = await login(call, "alice")
    answer = await call(controller="rec/api", action="echo", jwt=jwt, body={"x": 1}, arg="v")
    assert answer["status"] == 200
    assert answer["result"]["body"] == {"x": 1, "trail": ["a"]}
    assert answer["result"]["args"] == {"arg": "v"}


async def a_pipe_timeout_is_504(call: Call) -> None:
    answer = await call(controller="server", action="now")
    assert answer["status"] == 504 and answer["error"]["id"] == "plugin.runtime.pipe_timeout"


async def an_unknown_action_is_404(call: Call) -> None:
    answer = await call(controller="auth", action="noSuchAction")
    assert answer["status"] == 404 and answer["error"]["id"] == "api.process.action_not_found"
    answer = await call(controller="noSuchController", action="x")
    assert answer["error"]["id"] == "api.process.controller_not_found"


async def the_profile_rate_limit_applies(call: Call) -> None:
    jwt = await login(call, "bob")
    statuses = [(await call(controller="rec/api", action="echo", jwt=jwt))["status"]
                for _ in range(3)]
    assert 429 in statuses, statuses


SCENARIOS = [anonymous_is_refused_401, a_user_without_the_right_gets_403,
             login_then_the_token_authenticates, a_pipe_changes_the_request,
             a_pipe_timeout_is_504, an_unknown_action_is_404, the_profile_rate_limit_applies]


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_same_rules_on_every_protocol(serve, transport: str) -> None:
    served = await serve(GATEWAY, files=example_files())
    async with TRANSPORTS[transport](served) as call:
        for scenario in SCENARIOS:
            try:
                await scenario(call)
            except AssertionError as exc:
                raise AssertionError(f"{transport}: {scenario.__name__}: {exc}") from exc


def test_the_table_covers_every_protocol_of_the_example() -> None:
    example = (ROOT / "gateway.yaml").read_text()
    custom = re.findall(r"^    (\w+):\n      module:", example, re.M)
    assert set(custom) <= set(TRANSPORTS)
