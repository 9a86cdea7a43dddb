"""The protocol interface: loading (module, path, entry point), contract checks, both styles
(Kuzzle 2 and 1.x), the entry point, channels, and the example ndjson protocol over TCP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from sanic_gateway.config import ConfigError, load_config
from sanic_gateway.gateway import Gateway, StartError
from sanic_gateway.request import ClientConnection
from tests.conftest import write_files
from tests.plugins.channels import CHANNELS_PLUGIN

ROOT = Path(__file__).resolve().parent.parent
MEMORY = 'storage: "sqlite:///:memory:"\n'


def build_errors(tmp_path: Path, yaml_text: str) -> list[str]:
    write_files(tmp_path, {"gateway.yaml": yaml_text})
    with pytest.raises(ConfigError) as caught:
        Gateway.build(load_config(tmp_path / "gateway.yaml"))
    return [str(issue).replace(f"{tmp_path}/", "") for issue in caught.value.issues]


# --- loading and the contract -----------------------------------------------------------------


def test_a_missing_method_is_a_config_error_naming_it(tmp_path: Path) -> None:
    assert build_errors(tmp_path, """\
        server:
          protocols:
            broken:
              module: tests.plugins.protocols:NoNotify
        """) == ["gateway.yaml:3: server.protocols.broken: protocol "
                 "tests.plugins.protocols:NoNotify: missing required method 'notify'"]


def test_check_reports_a_bad_protocol_and_lists_good_ones(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text(
        "server:\n  protocols:\n    broken: {module: tests.plugins.protocols:NoNotify}\n")
    env = {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "sanic_gateway", "check"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "server.protocols.broken" in done.stderr and "'notify'" in done.stderr
    (tmp_path / "gateway.yaml").write_text(
        "server:\n  protocols:\n    rec: {module: tests.plugins.protocols:Recording}\n")
    done = subprocess.run([sys.executable, "-m", "sanic_gateway", "check"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = next(line for line in done.stdout.splitlines() if line.startswith("protocols"))
    assert listed.startswith("protocols (3): http, ")
    assert "websocket [sanic_gateway.protocols.websocket:WebSocketProtocol]" in listed
    assert "rec [tests.plugins.protocols:Recording]" in listed


def test_a_protocol_folder_needs_a_valid_manifest(tmp_path: Path) -> None:
    write_files(tmp_path, {
        "noname/manifest.json": '{"gatewayVersion": ">=0.1"}',
        "noname/__init__.py": "",
        "future/manifest.json": '{"name": "future", "gatewayVersion": ">=9"}',
        "future/__init__.py": "",
    })
    found = build_errors(tmp_path, """\
        server:
          protocols:
            noname: {path: noname}
            future: {path: future}
        """)
    assert found[0].startswith("gateway.yaml:3: server.protocols.noname.path: ")
    assert "a 'name' is required" in found[0]
    assert found[1].startswith("gateway.yaml:4: server.protocols.future.path: ")
    assert "requires sanic-gateway >=9" in found[1]


async def test_a_protocol_from_a_folder_loads_and_gets_its_config(serve) -> None:
    served = await serve(MEMORY + """
server:
  protocols:
    mine: {path: ./mine, greeting: hello}
""", files={
        "mine/manifest.json": '{"name": "mine", "gatewayVersion": ">=0.1,<1"}',
        "mine/__init__.py": "from tests.plugins.protocols import Recording as Plugin\n",
    })
    protocol = served.gateway.hub.protocols["mine"].obj
    assert protocol.config["greeting"] == "hello"
    assert protocol.entry_point["greeting"] == "hello"  # also a mapping of its config


async def test_a_protocol_from_an_entry_point(serve, tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    write_files(site, {
        "fake_proto-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: fake-proto\n"
                                              "Version: 1.0\n",
        "fake_proto-1.0.dist-info/entry_points.txt":
            "[sanic_gateway.protocols]\nfake = tests.plugins.protocols:Recording\n",
    })
    monkeypatch.syspath_prepend(str(site))
    served = await serve(MEMORY + "server: {protocols: {fake: {entry_point: fake}}}\n")
    assert served.gateway.hub.protocols["fake"].source.startswith("entry point fake")
    errors = build_errors(tmp_path / "x", "server: {protocols: {fake: {entry_point: fak}}}\n")
    assert "no entry point 'fak' in group 'sanic_gateway.protocols'" in errors[0]
    assert "(did you mean 'fake'?)" in errors[0]


async def test_a_protocol_whose_init_fails_stops_the_start_naming_it(tmp_path: Path) -> None:
    write_files(tmp_path, {"gateway.yaml": MEMORY + (
        "server: {protocols: {bad: {module: tests.plugins.protocols:FailingInit}}}\n")})
    gateway = Gateway.build(load_config(tmp_path / "gateway.yaml"))
    with pytest.raises(StartError, match="protocol 'bad': init failed: RuntimeError: port"):
        await gateway.start()
    assert gateway.storage is None


async def test_http_can_be_disabled_while_websocket_stays(serve) -> None:
    from websockets.asyncio.client import connect

    served = await serve(MEMORY + "server: {protocols: {http: {enabled: false}}}\n")
    assert (await served.client.get("/_now")).status_code == 404
    assert (await served.client.get("/")).status_code == 404
    async with connect(served.url.replace("http", "ws") + "/") as ws:
        await ws.send('{"controller": "server", "action": "now", "requestId": "a"}')
        assert json.loads(await ws.recv())["status"] == 200


async def test_websocket_can_be_disabled(serve) -> None:
    served = await serve(MEMORY + "server: {protocols: {websocket: {enabled: false}}}\n")
    assert "websocket" not in served.gateway.hub.protocols
    r = await served.client.get("/", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                              "Sec-WebSocket-Version": "13"})
    assert r.status_code == 200 and r.json()["controller"] == "server"  # plain HTTP


# --- the entry point, Kuzzle 2 style and 1.x style ----------------------------------------------


async def test_kuzzle2_style_entry_point_executes_and_routes_channels(serve) -> None:
    served = await serve(MEMORY + "server: {protocols: {rec: {module: "
                         "tests.plugins.protocols:Recording, port: 1234}}}\n" + "plugins:"
                         + CHANNELS_PLUGIN)
    protocol = served.gateway.hub.protocols["rec"].obj
    entry_point, context = protocol.entry_point, protocol.context
    assert entry_point.config["port"] == 1234 and context.accessors.router is entry_point
    connection = context.ClientConnection("rec", ["127.0.0.1"], {"x": "y"})
    entry_point.new_connection(connection)
    envelope = await entry_point.execute(entry_point.request(
        {"controller": "chan/ch", "action": "join", "channel": "c1", "requestId": "r1"},
        connection))
    assert envelope["requestId"] == "r1" and envelope["result"] is True
    assert ("join", "c1", connection.id) in protocol.calls
    unknown = await entry_point.execute(entry_point.request(
        {"controller": "nope", "action": "x"}, connection))
    assert unknown["status"] == 404 and unknown["error"]["id"] == "api.process.controller_not_found"
    hub = served.gateway.hub
    hub.broadcast(["c1", "c2"], {"hello": 1})
    hub.notify(["c1"], connection.id, {"hi": 2})
    assert protocol.calls[-2:] == [("broadcast", ["c1"], {"hello": 1}),
                                   ("notify", ["c1"], connection.id, {"hi": 2})]
    entry_point.remove_connection(connection.id)  # leaves every channel
    assert protocol.calls[-1] == ("leave", "c1", connection.id)
    assert hub.members("c1") == frozenset()
    plugin = served.plugin("chan")
    await asyncio.sleep(0.05)  # hooks run in the background
    assert connection in plugin.connections and connection in plugin.removed


async def test_kuzzle1_style_protocol_loads_unchanged(serve) -> None:
    served = await serve(MEMORY + "server: {protocols: {legacy: {module: "
                         "tests.plugins.protocols:Legacy, greeting: hi}}}\n" + "plugins:"
                         + CHANNELS_PLUGIN)
    protocol = served.gateway.hub.protocols["legacy"].obj
    assert protocol.greeting == "hi"  # init(config, context): config read from the 1st argument
    connection_id = protocol.connect()
    await protocol.request(connection_id, {"controller": "chan/ch", "action": "join",
                                           "channel": "room", "requestId": "q1"})
    assert protocol.answers[0]["requestId"] == "q1" and protocol.answers[0]["result"] is True
    assert protocol.calls == [("join", {"channel": "room", "connectionId": connection_id})]
    served.gateway.hub.broadcast(["room"], {"a": 1})
    served.gateway.hub.notify(["room"], connection_id, {"b": 2})
    assert protocol.calls[1:] == [
        ("broadcast", {"channels": ["room"], "payload": {"a": 1}}),
        ("notify", {"channels": ["room"], "connectionId": connection_id, "payload": {"b": 2}})]
    await protocol.request(connection_id, "not an object")
    assert protocol.answers[1]["status"] == 400
    protocol.close(connection_id)
    assert protocol.calls[-1] == ("leave", {"channel": "room", "connectionId": connection_id})


async def test_joining_an_unknown_connection_is_refused(serve) -> None:
    served = await serve(MEMORY + "plugins:" + CHANNELS_PLUGIN)
    r = await served.client.post("/_query", json={"controller": "chan/ch", "action": "join",
                                                  "channel": "c"})
    assert r.json()["result"] is False  # an HTTP request is no lasting connection
    assert not served.gateway.hub.join_channel("c", ClientConnection("x").id)


# --- the example protocol: newline-delimited JSON over TCP ---------------------------------------


def example_files() -> dict[str, str]:
    return {f"handlers/{p.name}": p.read_text() for p in (ROOT / "handlers").glob("*.py")}


class LineClient:
    """A plain socket client: one JSON object per line each way."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> LineClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: dict[str, Any] | bytes) -> None:
        self.writer.write(data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n")
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.reader.readline(), 10))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_the_example_ndjson_protocol_with_a_plain_socket(serve) -> None:
    example = (ROOT / "gateway.yaml").read_text()
    served = await serve(example, files=example_files(), env={"NDJSON_PORT": "0"})
    port = served.gateway.hub.protocols["ndjson"].obj.port
    client = await LineClient.open(port)
    await client.send({"controller": "server", "action": "now", "requestId": "n1"})
    answer = await client.recv()
    assert answer["requestId"] == "n1" and answer["room"] == "n1" and answer["status"] == 200
    await client.send(b"not json\n")
    assert (await client.recv())["status"] == 400
    await client.send({"controller": "server", "action": 5})
    assert (await client.recv())["error"]["id"] == "api.assert.invalid_type"
    # the example gateway is closed: anonymous may not create notes, alice may
    await client.send({"controller": "notes/notes", "action": "create", "body": {"text": "t"}})
    assert (await client.recv())["error"]["id"] == "security.rights.unauthorized"
    await client.send({"controller": "auth", "action": "login", "strategy": "local",
                       "body": {"username": "alice", "password": "alice-password"}})
    jwt = (await client.recv())["result"]["jwt"]
    await client.send({"controller": "notes/notes", "action": "create", "jwt": jwt,
                       "body": {"text": "over ndjson"}, "requestId": "c1"})
    created = await client.recv()
    assert created["status"] == 200 and created["result"]["_source"]["text"] == "over ndjson"
    await client.close()


# --- channels on real protocols -------------------------------------------------------------------


async def test_channels_on_websocket_and_ndjson_and_closing_leaves_them(serve) -> None:
    from websockets.asyncio.client import connect

    served = await serve(MEMORY + """
server:
  protocols:
    ndjson: {module: handlers.ndjson:NdjsonProtocol, port: 0}
plugins:""" + CHANNELS_PLUGIN, files=example_files())
    port = served.gateway.hub.protocols["ndjson"].obj.port
    line = await LineClient.open(port)
    ws = await connect(served.url.replace("http", "ws") + "/")

    ws_other: list[dict[str, Any]] = []  # notifications met while waiting for an answer
    line_other: list[dict[str, Any]] = []

    async def ws_call(action: str, **args: Any) -> dict[str, Any]:
        await ws.send(json.dumps({"controller": "chan/ch", "action": action,
                                  "requestId": f"w-{action}", **args}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message.get("requestId") == f"w-{action}":
                return message
            ws_other.append(message)

    async def line_call(action: str, **args: Any) -> dict[str, Any]:
        await line.send({"controller": "chan/ch", "action": action,
                         "requestId": f"l-{action}", **args})
        while True:
            message = await line.recv()
            if message.get("requestId") == f"l-{action}":
                return message
            line_other.append(message)

    async def ws_next() -> dict[str, Any]:
        return ws_other.pop(0) if ws_other else json.loads(await asyncio.wait_for(ws.recv(), 10))

    async def line_next() -> dict[str, Any]:
        return line_other.pop(0) if line_other else await line.recv()

    assert (await ws_call("join", channel="news"))["result"] is True
    assert (await line_call("join", channel="news"))["result"] is True
    ws_id = (await ws_call("me"))["result"]
    line_id = (await line_call("me"))["result"]
    assert (await ws_call("members", channel="news"))["result"] == sorted([ws_id, line_id])

    # a broadcast reaches both protocols, with room = the channel
    await ws_call("broadcast", channel="news", body={"type": "document", "n": 1})
    got_ws = await ws_next()
    got_line = await line_next()
    assert got_ws == got_line == {"type": "document", "n": 1, "room": "news"}

    # notify goes to the one connection
    await line_call("notify", channel="private", body={"just": "you"})
    assert await line_next() == {"just": "you", "room": "private"}

    # leave: no more broadcasts for that connection
    await line_call("leave", channel="news")
    await ws_call("broadcast", channel="news", body={"n": 2})
    assert await ws_next() == {"n": 2, "room": "news"}
    await line_call("me")  # any broadcast sent to it would have arrived before this answer
    assert not line_other
    assert (await ws_call("members", channel="news"))["result"] == [ws_id]

    # a closed connection leaves every channel
    await ws_call("join", channel="other")
    await ws.close()
    assert (await line_call("members", channel="news"))["result"] == []
    for _ in range(50):
        if not served.gateway.hub.channels_of(ws_id):
            break
        await asyncio.sleep(0.02)
    assert served.gateway.hub.channels_of(ws_id) == frozenset()
    assert (await line_call("members", channel="other"))["result"] == []
    await line.close()


async def test_http_clients_still_get_plain_get_on_root(serve) -> None:
    served = await serve(MEMORY)
    r = await served.client.get("/")
    assert r.status_code == 200 and r.json()["action"] == "info"
    async with httpx.AsyncClient(base_url=served.url) as other:
        assert (await other.head("/")).status_code == 200


async def test_broadcast_reaches_each_protocol_once_with_its_own_channels(serve) -> None:
    served = await serve(MEMORY + """
server:
  protocols:
    one: {module: tests.plugins.protocols:Recording}
    two: {module: tests.plugins.protocols:Recording}
    unused: {module: tests.plugins.protocols:Recording, enabled: false}
""")
    hub = served.gateway.hub
    assert set(hub.protocols) == {"one", "two", "websocket"}  # `unused` is not loaded
    one, two = hub.protocols["one"].obj, hub.protocols["two"].obj
    a, b, c = (ClientConnection(name) for name in ("one", "one", "two"))
    one.entry_point.new_connection(a)
    one.entry_point.new_connection(b)
    two.entry_point.new_connection(c)
    for connection, channel in ((a, "x"), (b, "x"), (a, "x"), (c, "y"), (b, "y")):
        assert hub.join_channel(channel, connection.id)
    one.calls.clear()
    two.calls.clear()
    hub.broadcast(["x", "y", "z"], {"n": 1})
    assert one.calls == [("broadcast", ["x", "y"], {"n": 1})]
    assert two.calls == [("broadcast", ["y"], {"n": 1})]
    one.entry_point.remove_connection(b.id)
    hub.leave_channel("y", c.id)
    one.calls.clear()
    two.calls.clear()
    hub.broadcast(["x", "y"], {"n": 2})
    assert one.calls == [("broadcast", ["x"], {"n": 2})] and two.calls == []
    assert hub.members("x") == {a.id} and hub.members("y") == frozenset()
