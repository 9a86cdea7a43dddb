"""MQTT: a real client (paho-mqtt) against the embedded broker, through the gateway's own
entry point and hub (funnel, input checks, envelopes, channels, connection events)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import paho.mqtt.client as paho
import pytest

from sanic_gateway.protocols.base import LoadedProtocol
from sanic_gateway.protocols.entrypoint import ProtocolContext
from sanic_gateway.protocols.mqtt import MqttProtocol
from tests.security_helpers import closed_yaml
from tests.test_events import rec_yaml
from tests.test_http import ENVELOPE_KEYS

SLOW_PLUGIN = """
import asyncio

class Slow:
    running = peak = 0

    async def wait(self, request):
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(float(request.input.args.get("seconds", 0.3)))
        finally:
            self.running -= 1
        return {"waited": True}

    async def get_peak(self, request):
        return {"peak": self.peak}
"""
CONNECTION_HOOKS = """      "connection:new": hook_trace
      "connection:remove": hook_trace"""
SLOW_YAML = rec_yaml(hooks=CONNECTION_HOOKS) + """
  slow:
    module: slow_plugin:Slow
    controllers:
      api: {wait: wait, peak: get_peak}
"""


class Client:
    """A paho-mqtt client (its network loop in a thread) with asyncio-side waits."""

    def __init__(self, port: int, client_id: str = "", clean_session: bool | None = True,
                 version: int = paho.MQTTv311) -> None:
        self.port = port
        self.loop = asyncio.get_running_loop()
        self.messages: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.connected: asyncio.Future[Any] = self.loop.create_future()
        self.closed: asyncio.Future[Any] = self.loop.create_future()
        self._subacks: dict[int, asyncio.Future[list[Any]]] = {}
        self.paho = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                protocol=version, clean_session=clean_session)
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe

    def _later(self, fn: Callable[..., None], *args: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._later(lambda: self.connected.done() or self.connected.set_result(reason))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._later(lambda: self.closed.done() or self.closed.set_result(reason))

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        try:
            payload: Any = json.loads(message.payload)
        except ValueError:
            payload = bytes(message.payload)
        self._later(self.messages.put_nowait, (message.topic, payload))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[Any], _p: Any) -> None:
        self._later(lambda: self._subacks[mid].set_result(codes))

    async def connect(self) -> Any:
        self.paho.connect("127.0.0.1", self.port, keepalive=30)
        self.paho.loop_start()
        return await asyncio.wait_for(self.connected, 5)

    async def subscribe(self, topic: str) -> bool:
        """True if the broker granted the subscription."""
        _, mid = self.paho.subscribe(topic, qos=0)
        self._subacks[mid] = self.loop.create_future()
        codes = await asyncio.wait_for(self._subacks[mid], 5)
        return not codes[0].is_failure

    def publish(self, topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self.paho.publish(topic, data, qos=0)

    async def get(self, timeout: float = 5) -> tuple[str, Any]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def request(self, **request: Any) -> dict[str, Any]:
        """Publish a request and wait for this client's next message: its response."""
        self.publish("Kuzzle/request", request)
        topic, envelope = await self.get()
        assert topic == "Kuzzle/response", (topic, envelope)
        return envelope

    async def close(self) -> None:
        self.paho.disconnect()
        await asyncio.to_thread(self.paho.loop_stop)


@asynccontextmanager
async def over_mqtt(port: int) -> AsyncIterator[Callable[..., Awaitable[dict[str, Any]]]]:
    """A client on `port`, as `call(**request) -> envelope` (for tables run on every protocol)."""
    client = Client(port)
    try:
        reason = await client.connect()
        assert not reason.is_failure, reason

        async def call(**frame: Any) -> dict[str, Any]:
            frame.setdefault("requestId", "rid")
            answer = await client.request(**frame)
            assert answer["requestId"] == frame["requestId"]
            return answer
        yield call
    finally:
        await client.close()


class Mqtt:
    def __init__(self, served: Any, protocol: MqttProtocol, clients: list[Client]) -> None:
        self.served, self.protocol, self.port = served, protocol, protocol.port
        self.hub = served.gateway.hub
        self._clients = clients

    async def client(self, client_id: str = "", clean_session: bool = True) -> Client:
        client = Client(self.port, client_id, clean_session)
        self._clients.append(client)
        reason = await client.connect()
        assert not reason.is_failure, reason
        return client

    def ids(self) -> dict[str, str]:
        """MQTT client id -> gateway connection id, of the live MQTT connections."""
        return {c.misc["client_id"]: cid for cid, c in self.hub.connections.items()
                if self.hub.owners.get(cid) == "mqtt"}

    def events(self, name: str) -> int:
        """How many times `connection:new` / `connection:remove` fired (rec's hook_trace)."""
        return self.served.plugin("rec").seen.count(f"hook {name}")


@pytest.fixture
async def mqtt(serve: Any) -> AsyncIterator[Callable[..., Any]]:
    """`await mqtt(yaml, allow_pubsub=...)`: a served gateway and the MQTT protocol on a free
    port, in that gateway's hub as if gateway.yaml enabled it with these options (some of
    them, like send_queue, are this class's own options, not in the schema)."""
    clients: list[Client] = []

    async def start(yaml_text: str = "", files: dict[str, str] | None = None,
                    **config: Any) -> Mqtt:
        served = await serve(yaml_text or rec_yaml(hooks=CONNECTION_HOOKS), files=files)
        hub = served.gateway.hub
        protocol = MqttProtocol()
        entry = hub.add(LoadedProtocol("mqtt", protocol, "tests",
                                       {"enabled": True, "port": 0, **config}))
        assert await protocol.init(entry, ProtocolContext(hub, "mqtt")) is True
        assert protocol.port  # port 0: the one the listener got
        return Mqtt(served, protocol, clients)

    yield start
    for client in clients:  # the hub stops the protocol with the server
        await client.close()


async def until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    """Wait for something the gateway does in the background (bounded, generous)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_request_is_answered_to_its_sender_only(mqtt):
    m = await mqtt()
    alice, bob = await m.client(), await m.client()
    assert await alice.subscribe("Kuzzle/response")
    assert await bob.subscribe("Kuzzle/response")
    envelope = await alice.request(controller="server", action="now", requestId="r-1")
    assert set(envelope) == ENVELOPE_KEYS
    assert envelope["requestId"] == "r-1" and envelope["status"] == 200
    assert isinstance(envelope["result"]["now"], int)
    # bob's first message is his own answer: alice's was never sent to him
    assert (await bob.request(controller="server", action="now", requestId="r-2"))[
        "requestId"] == "r-2"
    assert bob.messages.empty()


async def test_the_payload_splits_into_the_request_as_over_http(mqtt):
    m = await mqtt()
    client = await m.client()
    request = {"controller": "rec/api", "action": "echo", "index": "i", "collection": "c",
               "_id": "d", "body": {"x": 1}, "volatile": {"v": 2}, "limit": 3,
               "requestId": "split"}
    over_mqtt = await client.request(**request)
    over_http = (await m.served.client.post("/_query", json=request)).json()
    assert over_mqtt["status"] == 200, over_mqtt
    assert over_mqtt["result"]["args"] == {"limit": 3}
    assert over_mqtt["result"].pop("protocol") == "mqtt"
    assert over_http["result"].pop("protocol") == "http"
    assert over_mqtt["result"] == over_http["result"]
    assert over_mqtt["volatile"] == {"v": 2}


async def test_a_malformed_payload_gets_a_400_and_the_connection_stays(mqtt):
    m = await mqtt()
    client = await m.client()
    client.publish("Kuzzle/request", b"{not json")
    topic, envelope = await client.get()
    assert topic == "Kuzzle/response"
    assert envelope["status"] == 400 and envelope["error"]["id"] == "api.assert.invalid_body"
    client.publish("Kuzzle/request", b"[1, 2]")
    assert (await client.get())[1]["error"]["id"] == "api.assert.invalid_body"
    wrong_type = await client.request(controller="server", action="now", body=[1],
                                      requestId="typed")
    assert wrong_type["status"] == 400 and wrong_type["requestId"] == "typed"
    assert wrong_type["error"]["id"] == "api.assert.invalid_type"
    deep: Any = 1
    for _ in range(150):
        deep = [deep]
    too_deep = await client.request(controller="server", action="now", body={"x": deep})
    assert too_deep["status"] == 400 and too_deep["error"]["id"] == "api.assert.too_deep"
    unknown = await client.request(controller="nope", action="nope")
    assert unknown["status"] == 404
    assert unknown["error"]["id"] == "api.process.controller_not_found"
    assert (await client.request(controller="server", action="now"))["status"] == 200
    assert not client.closed.done()


@pytest.mark.parametrize("where", ["server", "protocol"])
async def test_a_request_over_max_request_size_is_refused(mqtt, where):
    if where == "server":  # server.max_request_size, as for HTTP
        m = await mqtt("server: {max_request_size: 1000}\n" + rec_yaml())
    else:
        m = await mqtt(max_request_size=1000)
    client = await m.client()
    big = await client.request(controller="rec/api", action="echo", body={"x": "y" * 1000})
    assert big["status"] == 413 and big["error"]["id"] == "api.assert.size_limit"
    small = await client.request(controller="rec/api", action="echo", body={"x": "y" * 900})
    assert small["status"] == 200


async def test_errors_and_rights_are_the_funnels(mqtt):
    m = await mqtt(closed_yaml())
    client = await m.client()
    denied = await client.request(controller="rec/api", action="echo")
    assert denied["status"] == 401, denied
    assert denied["error"]["id"] == "security.rights.unauthorized"
    login = await client.request(controller="auth", action="login", strategy="local",
                                 body={"username": "alice", "password": "alice-password"})
    assert login["status"] == 200, login
    allowed = await client.request(controller="rec/api", action="echo", jwt=login["result"]["jwt"])
    assert allowed["status"] == 200, allowed


async def test_unserializable_result_is_a_500_envelope(mqtt):
    m = await mqtt()
    client = await m.client()
    envelope = await client.request(controller="rec/api", action="unserializable", requestId="u")
    assert envelope["requestId"] == "u" and envelope["status"] == 500
    assert envelope["error"]["id"] == "plugin.controller.unserializable_response"


async def test_nobody_subscribes_to_requests_or_with_wildcards(mqtt):
    m = await mqtt(allow_pubsub=True)
    client = await m.client()
    assert not await client.subscribe("Kuzzle/request")
    assert not await client.subscribe("#")
    assert not await client.subscribe("Kuzzle/+")
    assert await client.subscribe("some/topic")


async def test_without_pubsub_clients_may_publish_only_requests(mqtt):
    m = await mqtt()
    listener, talker = await m.client(), await m.client()
    assert await listener.subscribe("chat")
    assert await listener.subscribe("Kuzzle/response")
    talker.publish("chat", {"hello": 1})
    talker.publish("Kuzzle/response", {"forged": True})
    # the talker's next request is answered, so its publishes before it were handled: dropped
    assert (await talker.request(controller="server", action="now"))["status"] == 200
    assert (await listener.request(controller="server", action="now", requestId="own"))[
        "requestId"] == "own"
    assert listener.messages.empty()


async def test_with_pubsub_clients_talk_but_cannot_forge_responses_or_notifications(mqtt):
    m = await mqtt(allow_pubsub=True)
    listener, talker = await m.client("listener"), await m.client("talker")
    assert m.hub.join_channel("room-1", m.ids()["listener"])
    for topic in ("chat", "Kuzzle/response", "room-1"):
        assert await listener.subscribe(topic)
    talker.publish("Kuzzle/response", {"forged": True})
    talker.publish("room-1", {"forged": True})
    talker.publish("chat", {"hello": 1})
    assert await listener.get() == ("chat", {"hello": 1})
    assert (await listener.request(controller="server", action="now", requestId="own"))[
        "requestId"] == "own"
    assert listener.messages.empty()


async def test_a_message_retained_on_a_future_channel_topic_is_dropped(mqtt):
    m = await mqtt(allow_pubsub=True)
    talker = await m.client("talker")
    talker.paho.publish("room-2", json.dumps({"forged": True}), qos=0, retain=True)
    assert (await talker.request(controller="server", action="now"))["status"] == 200
    assert m.hub.join_channel("room-2", m.ids()["talker"])
    listener = await m.client("listener")
    assert await listener.subscribe("room-2")
    assert (await listener.request(controller="server", action="now", requestId="own"))[
        "requestId"] == "own"
    assert listener.messages.empty()


async def test_channels_notify_broadcast_join_leave(mqtt):
    m = await mqtt()
    a, b, outsider = await m.client("a"), await m.client("b"), await m.client("c")
    ids = m.ids()
    assert await outsider.subscribe("ch-1")  # an MQTT subscription is not a channel
    assert m.hub.join_channel("ch-1", ids["a"])
    assert m.hub.join_channel("ch-1", ids["b"])
    assert m.hub.join_channel("ch-2", ids["b"])
    m.hub.broadcast(["ch-1"], {"n": 1})
    assert await a.get() == ("ch-1", {"n": 1, "room": "ch-1"})
    assert await b.get() == ("ch-1", {"n": 1, "room": "ch-1"})
    assert m.hub.notify(["ch-1", "ch-2"], ids["b"], {"n": 2})
    assert await b.get() == ("ch-1", {"n": 2, "room": "ch-1"})
    assert await b.get() == ("ch-2", {"n": 2, "room": "ch-2"})
    m.hub.leave_channel("ch-1", ids["b"])
    m.hub.broadcast(["ch-1"], {"n": 3})
    assert await a.get() == ("ch-1", {"n": 3, "room": "ch-1"})
    for client in (a, b, outsider):  # each one's next message is its own answer
        assert (await client.request(controller="server", action="now"))["status"] == 200
        assert client.messages.empty()


async def test_a_closed_client_is_removed_and_leaves_its_channels(mqtt):
    m = await mqtt()
    a = await m.client("a")
    connection_id = m.ids()["a"]
    connection = m.hub.connections[connection_id]
    assert connection.protocol == "mqtt" and connection.ips == ["127.0.0.1"]
    await until(lambda: m.events("connection:new") == 1)
    assert m.hub.join_channel("ch-1", connection_id)
    await a.close()
    await until(lambda: connection_id not in m.hub.connections)
    assert "ch-1" not in m.hub.channels and "ch-1" not in m.protocol._channels
    await until(lambda: m.events("connection:remove") == 1)
    m.hub.broadcast(["ch-1"], {"n": 1})  # nobody left: nothing to do, nothing fails


async def test_disconnect_closes_the_client(mqtt):
    m = await mqtt()
    a, b = await m.client("a"), await m.client("b")
    ids = m.ids()
    assert m.hub.disconnect(ids["a"])
    await asyncio.wait_for(a.closed, 5)
    await until(lambda: ids["a"] not in m.hub.connections)
    assert ids["b"] in m.hub.connections
    assert (await b.request(controller="server", action="now"))["status"] == 200


async def test_an_mqtt5_client_is_refused(mqtt):
    m = await mqtt()
    client = Client(m.port, clean_session=None, version=paho.MQTTv5)
    m._clients.append(client)
    assert (await client.connect()).is_failure
    assert m.ids() == {}


async def test_a_will_on_a_forbidden_topic_is_refused(mqtt):
    m = await mqtt()
    client = Client(m.port)
    client.paho.will_set("Kuzzle/response", json.dumps({"forged": True}))
    reason = await client.connect()
    m._clients.append(client)
    assert reason.is_failure
    assert m.ids() == {}


async def test_a_client_that_does_not_read_is_dropped_without_stalling_others(mqtt):
    m = await mqtt(send_queue=8)
    reader = await m.client("reader")
    # a client that connects and then never reads its socket (CONNECT for id "stuck")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", m.port))
    sock.sendall(bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 0, 0, 5]) + b"stuck")
    try:
        await until(lambda: len(m.ids()) == 2)
        ids = m.ids()
        for client_id in ("reader", "stuck"):
            assert m.hub.join_channel("big", ids[client_id])
        payload = {"blob": "x" * 200_000}
        for n in range(60):
            m.hub.broadcast(["big"], {**payload, "n": n})
            assert (await reader.get())[1]["n"] == n
        await until(lambda: ids["stuck"] not in m.hub.connections)
        assert ids["reader"] in m.hub.connections
    finally:
        sock.close()


async def test_stop_answers_requests_in_flight_then_closes(mqtt):
    m = await mqtt(SLOW_YAML, files={"slow_plugin.py": SLOW_PLUGIN})
    client = await m.client()
    client.publish("Kuzzle/request", {"controller": "slow/api", "action": "wait",
                                      "requestId": "in-flight", "seconds": 0.3})
    await until(lambda: m.protocol._in_flight == 1)
    await m.protocol.stop()
    topic, envelope = await client.get()
    assert topic == "Kuzzle/response"
    assert envelope["requestId"] == "in-flight" and envelope["status"] == 200
    await asyncio.wait_for(client.closed, 5)
    assert m.ids() == {}
    await until(lambda: m.events("connection:remove") == 1)
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", m.port))


async def test_over_mqtt_runs_a_table_of_calls(mqtt):
    m = await mqtt(closed_yaml())
    async with over_mqtt(m.port) as call:
        assert (await call(controller="rec/api", action="echo"))["status"] == 401
        login = await call(controller="auth", action="login", strategy="local",
                           body={"username": "alice", "password": "alice-password"})
        assert (await call(controller="auth", action="getCurrentUser",
                           jwt=login["result"]["jwt"]))["result"]["_id"] == "alice"


@pytest.mark.parametrize("max_in_flight", [2, 5])
async def test_a_client_runs_at_most_max_in_flight_requests_at_once(mqtt, max_in_flight):
    m = await mqtt(SLOW_YAML, files={"slow_plugin.py": SLOW_PLUGIN}, max_in_flight=max_in_flight)
    client = await m.client()
    for n in range(5):
        client.publish("Kuzzle/request", {"controller": "slow/api", "action": "wait",
                                          "seconds": 0.2, "requestId": f"w{n}"})
    answers = {(await client.get())[1]["requestId"] for _ in range(5)}
    assert answers == {f"w{n}" for n in range(5)}  # the ones over the limit waited, then ran
    peak = await client.request(controller="slow/api", action="peak")
    assert peak["result"]["peak"] == max_in_flight


async def test_a_taken_port_fails_in_one_line(serve, caplog):
    hub = (await serve(rec_yaml())).gateway.hub
    protocol = MqttProtocol()
    with socket.create_server(("127.0.0.1", 0)) as taken:  # as a Mosquitto holding 1883
        port = taken.getsockname()[1]
        entry = hub.add(LoadedProtocol("mqtt", protocol, "tests", {"enabled": True, "port": port}))
        with pytest.raises(OSError, match=f"MQTT cannot listen on 127.0.0.1:{port}"):
            await protocol.init(entry, ProtocolContext(hub, "mqtt"))
    assert protocol.broker is None  # the broker started for it is stopped again
    assert not [r for r in caplog.records if r.exc_info]  # no traceback logged


async def test_enabled_in_gateway_yaml_it_runs_with_the_gateway(serve, tmp_path):
    served = await serve("server: {protocols: {mqtt: {enabled: true, port: 0}}}\n"
                         + rec_yaml(hooks=CONNECTION_HOOKS))
    hub = served.gateway.hub
    protocol = hub.protocols["mqtt"].obj
    assert isinstance(protocol, MqttProtocol) and protocol.port
    async with over_mqtt(protocol.port) as call:
        assert (await call(controller="server", action="now"))["status"] == 200
        assert [c.protocol for c in hub.connections.values()] == ["mqtt"]
    await until(lambda: not hub.connections)


async def test_off_by_default(serve):
    served = await serve(rec_yaml())
    assert "mqtt" not in served.gateway.hub.protocols
    protocol = MqttProtocol()  # and a disabled section starts nothing
    assert await protocol.init(types.SimpleNamespace(config={"enabled": False}), None) is False
    assert protocol.broker is None
    await protocol.stop()


@pytest.mark.parametrize("clean_session", [True, False])
async def test_a_client_id_connecting_again_replaces_its_old_connection(mqtt, clean_session):
    m = await mqtt()
    first = await m.client("dup", clean_session)
    old_id = m.ids()["dup"]
    first.paho.reconnect_delay_set(60, 120)  # the old client must not come back by itself
    second = await m.client("dup", clean_session)
    await asyncio.wait_for(first.closed, 5)
    await until(lambda: old_id not in m.hub.connections and "dup" in m.ids())
    new_id = m.ids()["dup"]
    assert new_id != old_id
    await asyncio.sleep(0.1)  # the old session's late disconnect event must not remove the new
    assert m.ids() == {"dup": new_id}
    await until(lambda: m.events("connection:remove") == 1)
    assert (await second.request(controller="server", action="now"))["status"] == 200


async def test_no_password_or_token_in_any_log_even_at_debug(mqtt, caplog):
    caplog.set_level(logging.DEBUG)
    m = await mqtt(closed_yaml())
    client = await m.client()
    login = await client.request(controller="auth", action="login", strategy="local",
                                 body={"username": "alice", "password": "alice-password"})
    jwt = login["result"]["jwt"]
    assert (await client.request(controller="rec/api", action="echo", jwt=jwt))["status"] == 200
    await client.close()
    await until(lambda: not m.ids())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "alice-password" not in text and jwt not in text
    assert not [r for r in caplog.records
                if r.name.split(".")[0] in ("amqtt", "transitions") and r.levelno < logging.WARNING]


def test_mqtt_options_the_protocol_reads_are_config_keys(tmp_path):
    """`send_queue`, `max_in_flight` and `max_packet_size` are accepted (and checked) in
    gateway.yaml."""
    from sanic_gateway.config import ConfigError, load_config

    path = tmp_path / "gateway.yaml"
    path.write_text("server:\n  protocols:\n    mqtt: {send_queue: 5, max_in_flight: 2, "
                    "max_packet_size: 2MB}\n")
    mqtt = load_config(path).data["server"]["protocols"]["mqtt"]
    assert (mqtt["send_queue"], mqtt["max_in_flight"]) == (5, 2)
    assert mqtt["max_packet_size"] == 2 * 1024 * 1024
    path.write_text("server:\n  protocols:\n    mqtt: {max_in_flight: 0}\n")
    try:
        load_config(path)
    except ConfigError as exc:
        assert "server.protocols.mqtt.max_in_flight: must be at least 1" in str(exc)
    else:
        raise AssertionError("max_in_flight: 0 was accepted")


# -- limits: packet size and pacing ---------------------------------------------------------

def _length(n: int) -> bytes:
    """An MQTT remaining length."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _connect_packet(client_id: str) -> bytes:
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id.encode()
    return b"\x10" + _length(len(body)) + body


def _publish_packet(topic: str, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    return b"\x30" + _length(len(body)) + body


def _raw_client(port: int, client_id: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.connect(("127.0.0.1", port))
    sock.sendall(_connect_packet(client_id))
    sock.settimeout(5)
    assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("when", ["connect", "publish"])
async def test_a_packet_over_max_packet_size_closes_the_connection_unread(mqtt, caplog, when):
    """A 100 MB packet is refused on its header: the connection is closed before a byte of
    its body is sent (so none is buffered), with one line saying why; others are served."""
    m = await mqtt()  # max_request_size 1 MB: packets up to 1 MB + 64 KB
    other = await m.client("other")
    if when == "connect":
        sock = socket.create_connection(("127.0.0.1", m.port))
    else:
        sock = await asyncio.to_thread(_raw_client, m.port, "big")
        await until(lambda: "big" in m.ids())
    with sock:
        sock.settimeout(5)
        sock.sendall(b"\x10" if when == "connect" else b"\x30")
        sock.sendall(_length(100 * 1024 * 1024))  # only the header: the body never comes
        assert await asyncio.to_thread(_closed_by_peer, sock)
    await until(lambda: "big" not in m.ids())
    lines = [r.getMessage() for r in caplog.records if "max_packet_size" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"a packet of {100 * 1024 * 1024} bytes, over server.protocols.mqtt." \
           f"max_packet_size ({1048576 + 65536}): connection closed" in lines[0]
    assert not [r for r in caplog.records if r.exc_info]
    assert (await other.request(controller="server", action="now"))["status"] == 200


async def test_paho_publishing_over_max_packet_size_is_disconnected(mqtt):
    m = await mqtt(max_request_size=1000, max_packet_size=4096)
    client = await m.client("big")
    big = await client.request(controller="server", action="now", pad="x" * 2000)
    assert big["status"] == 413  # over max_request_size, within max_packet_size: answered
    client.paho.reconnect_delay_set(60, 120)
    client.publish("Kuzzle/request", {"controller": "server", "action": "now",
                                      "pad": "x" * 5000})
    await asyncio.wait_for(client.closed, 5)
    await until(lambda: "big" not in m.ids())
    assert (await (await m.client()).request(controller="server", action="now"))["status"] == 200


async def test_a_flood_of_requests_is_paced_at_max_in_flight(mqtt):
    """100,000 requests (8 MB) sent at once by a client whose requests are slow: the gateway
    holds at most max_in_flight of them (the rest wait in the client's socket), and serves
    others."""
    m = await mqtt(SLOW_YAML, files={"slow_plugin.py": SLOW_PLUGIN}, max_in_flight=3)
    sock = await asyncio.to_thread(_raw_client, m.port, "flood")
    await until(lambda: "flood" in m.ids())
    packet = _publish_packet("Kuzzle/request", json.dumps(
        {"controller": "slow/api", "action": "wait", "seconds": 0.5}).encode())
    flood = packet * 100_000
    sent = 0

    def send() -> None:
        nonlocal sent
        sock.settimeout(0.2)
        try:
            while sent < len(flood):
                sent += sock.send(flood[sent:sent + 65536])
        except (TimeoutError, OSError):
            pass  # the gateway stopped reading: the kernel's buffers are full

    with sock:
        await asyncio.to_thread(send)
        assert sent < len(flood)  # paced: not all of it could be written
        client = m.protocol._clients["flood"]
        peak = 0
        for _ in range(30):
            peak = max(peak, m.protocol._in_flight, client.waiting())
            await asyncio.sleep(0.02)
        assert 1 <= peak <= 3 + 1, peak  # one read ahead at most
        other = await m.client("other")
        assert (await other.request(controller="server", action="now"))["status"] == 200
