"""WebSocket on the HTTP port, path `/`: Kuzzle's frames, pings, errors, limits, tokens, slow
clients, concurrency and a graceful stop."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.plugins.channels import CHANNELS_PLUGIN
from tests.security_helpers import closed_yaml

ROOT = Path(__file__).resolve().parent.parent
MEMORY = 'storage: "sqlite:///:memory:"\n'


def ws_url(served: Any) -> str:
    return served.url.replace("http://", "ws://") + "/"


HANDSHAKE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16))
             + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")


def masked_frame(data: bytes) -> bytes:
    """A client text frame, by hand (payload under 64 KiB)."""
    mask = os.urandom(4)
    return (bytes([0x81, 0x80 | 126]) + len(data).to_bytes(2, "big") + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


async def call(ws: ClientConnection, **frame: Any) -> dict[str, Any]:
    """Send a request, return its answer (notifications in between are skipped)."""
    frame.setdefault("requestId", f"r{time.monotonic_ns()}")
    await ws.send(json.dumps(frame))
    while True:
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if answer.get("requestId") == frame["requestId"]:
            return answer


async def test_frames_pings_and_malformed_frames(serve) -> None:
    served = await serve(MEMORY)
    async with connect(ws_url(served)) as ws:
        await ws.send('{"p":1}')
        assert await ws.recv() == '{"p":2}'
        await ws.send('{ "p": 1 }')
        assert await ws.recv() == '{"p":2}'
        answer = await call(ws, controller="server", action="now", requestId="abc",
                            volatile={"v": 1})
        assert answer["room"] == "abc" and answer["requestId"] == "abc"
        assert answer["status"] == 200 and isinstance(answer["result"]["now"], int)
        assert answer["volatile"] == {"v": 1} and answer["controller"] == "server"
        # the same envelope as HTTP, plus room
        http = (await served.client.post("/_query", json={"controller": "server",
                                                          "action": "now"})).json()
        assert set(answer) == set(http) | {"room"}
        await ws.send("{not json")
        bad = json.loads(await ws.recv())
        assert bad["status"] == 400 and bad["error"]["id"] == "network.websocket.unexpected_error"
        await ws.send("[1, 2]")
        assert json.loads(await ws.recv())["status"] == 400
        # the input checks HTTP applies hold here too
        typed = await call(ws, controller=["server"], action="now", requestId="t1")
        assert typed["status"] == 400 and typed["error"]["id"] == "api.assert.invalid_type"
        deep: Any = 0
        for _ in range(150):
            deep = [deep]
        too_deep = await call(ws, controller="server", action="now", requestId="d1",
                              body={"x": deep})
        assert too_deep["status"] == 400 and too_deep["error"]["id"] == "api.assert.too_deep"
        # the connection is still open and serving
        answer = await call(ws, controller="nope", action="nothing", requestId="u1")
        assert answer["status"] == 404 and answer["room"] == "u1"
        assert answer["error"]["id"] == "api.process.controller_not_found"


async def test_a_frame_over_max_request_size_is_refused(serve) -> None:
    served = await serve(MEMORY + "server: {max_request_size: 2KB}\n")
    async with connect(ws_url(served), max_size=None) as ws:
        await ws.send(json.dumps({"controller": "server", "action": "now", "body": {
            "big": "x" * 1024}}))
        assert json.loads(await ws.recv())["status"] == 200
        await ws.send(json.dumps({"controller": "server", "action": "now", "body": {
            "big": "x" * 4096}}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_requests_run_concurrently_answers_matched_by_request_id(serve) -> None:
    served = await serve(MEMORY + "plugins:" + CHANNELS_PLUGIN)
    async with connect(ws_url(served)) as ws:
        await ws.send(json.dumps({"controller": "chan/ch", "action": "sleep", "seconds": 1,
                                  "requestId": "slow"}))
        await ws.send(json.dumps({"controller": "server", "action": "now",
                                  "requestId": "fast"}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        second = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert [first["room"], second["room"]] == ["fast", "slow"]


async def test_jwt_authenticates_each_request_as_over_http(serve) -> None:
    served = await serve(closed_yaml())
    async with connect(ws_url(served)) as ws:
        denied = await call(ws, controller="rec/api", action="echo", body={"a": 1})
        assert denied["status"] == 401
        login = await call(ws, controller="auth", action="login", strategy="local",
                           body={"username": "alice", "password": "alice-password"})
        jwt = login["result"]["jwt"]
        allowed = await call(ws, controller="rec/api", action="echo", jwt=jwt, body={"a": 1})
        assert allowed["status"] == 200
        me = await call(ws, controller="auth", action="getCurrentUser", jwt=jwt)
        assert me["result"]["_id"] == "alice"
        forbidden = await call(ws, controller="security", action="getRole", _id="reader",
                               jwt=jwt)
        assert forbidden["status"] == 403
        bad = await call(ws, controller="auth", action="getCurrentUser", jwt="nope")
        assert bad["status"] == 401


async def test_an_expired_token_gets_kuzzles_token_expired_notification(serve) -> None:
    served = await serve(closed_yaml())
    async with connect(ws_url(served)) as ws:
        login = await call(ws, controller="auth", action="login", strategy="local",
                           expiresIn="1s",
                           body={"username": "alice", "password": "alice-password"})
        jwt = login["result"]["jwt"]
        assert (await call(ws, controller="auth", action="checkToken", jwt=jwt,
                           body={"token": jwt}))["status"] == 200
        await call(ws, controller="rec/api", action="echo", jwt=jwt, body={})
        notification = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert notification["type"] == "TokenExpired"
        assert notification["room"] == "kuzzle:notification:server"
        assert notification["status"] == 200
        assert notification["message"] == "Authentication Token Expired"
        # the connection stays open; the token no longer works
        assert (await call(ws, controller="rec/api", action="echo", jwt=jwt))["status"] == 401


async def test_connection_events_fire_with_the_client_connection(serve) -> None:
    served = await serve(MEMORY + "plugins:" + CHANNELS_PLUGIN)
    plugin = served.plugin("chan")
    async with connect(ws_url(served), additional_headers={"X-Test": "yes"}) as ws:
        me = (await call(ws, controller="chan/ch", action="me"))["result"]
    for _ in range(100):
        if any(c.id == me for c in plugin.removed):
            break
        await asyncio.sleep(0.02)
    new = next(c for c in plugin.connections if c.id == me)
    assert new.protocol == "websocket" and new.ips == ["127.0.0.1"]
    assert new.headers.get("x-test") == "yes"
    assert any(c is new for c in plugin.removed)


async def flood(ws: ClientConnection, count: int) -> float:
    """Ask for `count` 64 KiB broadcasts on `flood`, one at a time, and read them all;
    return the seconds it took."""
    received = 0
    started = time.monotonic()
    for i in range(count):
        await ws.send(json.dumps({"controller": "chan/ch", "action": "broadcast",
                                  "channel": "flood", "size": 65536, "body": {"i": i},
                                  "requestId": f"b{i}"}))
        answered = False
        while not answered:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message.get("room") == "flood":
                received += 1
            else:
                assert message["status"] == 200
                answered = True
    while received < count:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("room") == "flood":
            received += 1
    return time.monotonic() - started


async def test_a_client_that_never_reads_is_dropped_and_slows_nobody(serve, caplog) -> None:
    served = await serve(MEMORY + """
server: {protocols: {websocket: {send_queue: 4}}}
plugins:""" + CHANNELS_PLUGIN)
    caplog.set_level(logging.WARNING)
    async with connect(ws_url(served), max_size=None) as ws:
        await call(ws, controller="chan/ch", action="join", channel="flood")
        alone = await flood(ws, 50) / 50  # the working client's pace on its own
        # the stuck client: a raw socket that completes the handshake, joins, never reads
        loop = asyncio.get_running_loop()
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.setblocking(False)
        try:
            await loop.sock_connect(stuck, ("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
            await loop.sock_sendall(stuck, HANDSHAKE)
            assert b"101" in (await loop.sock_recv(stuck, 4096)).split(b"\r\n", 1)[0]
            await loop.sock_sendall(stuck, masked_frame(json.dumps(
                {"controller": "chan/ch", "action": "join", "channel": "flood"}).encode()))
            for _ in range(100):
                if len(served.gateway.hub.members("flood")) == 2:
                    break
                await asyncio.sleep(0.02)
            assert len(served.gateway.hub.members("flood")) == 2
            beside = await flood(ws, 200) / 200  # every broadcast arrived
            assert len(served.gateway.hub.members("flood")) == 1  # the stuck one was dropped
            # generous: the pace is about the same; a stuck client holding the server up
            # would make it drop to nothing (each send waiting for it)
            assert beside < 5 * alone + 0.01, (alone, beside)
        finally:
            stuck.close()
    assert any("does not read" in r.getMessage() for r in caplog.records)


async def test_idle_timeout_drops_a_client_that_answers_nothing(serve) -> None:
    served = await serve(MEMORY + "server: {protocols: {websocket: {idle_timeout: 1s}}}\n")
    loop = asyncio.get_running_loop()
    raw = socket.socket()
    raw.setblocking(False)
    await loop.sock_connect(raw, ("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
    await loop.sock_sendall(raw, HANDSHAKE)
    started = time.monotonic()
    data = b""
    try:
        while time.monotonic() - started < 15:
            chunk = await asyncio.wait_for(loop.sock_recv(raw, 4096), 15)
            if not chunk:
                break  # closed by the server
            data += chunk
    finally:
        raw.close()
    assert time.monotonic() - started < 15
    assert b"101" in data.split(b"\r\n", 1)[0]
    # meanwhile a client that answers pings (as every WebSocket library does) stays
    async with connect(ws_url(served)) as ws:
        await asyncio.sleep(2)
        assert (await call(ws, controller="server", action="now"))["status"] == 200


def test_sigterm_answers_requests_in_flight_then_closes_with_1001(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "gateway.yaml").write_text(
        f"server: {{port: {port}}}\n" + MEMORY + "plugins:" + CHANNELS_PLUGIN)
    proc = subprocess.Popen([sys.executable, "-m", "sanic_gateway", "run"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    async def scenario() -> tuple[dict[str, Any], int | None]:
        for _ in range(100):
            try:
                ws = await connect(f"ws://127.0.0.1:{port}/")
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the gateway did not start")
        await ws.send(json.dumps({"controller": "chan/ch", "action": "sleep", "seconds": 1,
                                  "requestId": "inflight"}))
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return answer, ws.close_code

    try:
        answer, code = asyncio.run(scenario())
        assert answer["room"] == "inflight" and answer["status"] == 200
        assert code == 1001
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_no_secret_reaches_the_logs_even_at_debug(serve, caplog) -> None:
    served = await serve(closed_yaml(), dev=True)
    caplog.set_level(logging.DEBUG)
    async with connect(ws_url(served)) as ws:
        # the password first: a logged frame would show it (frame logs are cut at ~75 chars)
        await ws.send('{"body": {"password": "alice-password", "username": "alice"}, '
                      '"controller": "auth", "action": "login", "strategy": "local", '
                      '"requestId": "l1"}')
        jwt = json.loads(await asyncio.wait_for(ws.recv(), 10))["result"]["jwt"]
        await call(ws, controller="rec/api", action="echo", jwt=jwt, body={})
    server_side = [r for r in caplog.records if not r.name.startswith("websockets")]
    logged = "\n".join(record.getMessage() for record in server_side)
    assert "alice-password" not in logged and jwt not in logged


async def test_requests_beyond_max_in_flight_wait_and_are_all_answered(serve) -> None:
    served = await serve(MEMORY + """
server: {protocols: {websocket: {max_in_flight: 2}}}
plugins:""" + CHANNELS_PLUGIN)
    async with connect(ws_url(served)) as ws:
        for i in range(5):
            await ws.send(json.dumps({"controller": "chan/ch", "action": "sleep",
                                      "seconds": 0.2, "requestId": f"s{i}"}))
        await ws.send('{"controller": "server", "action": "now", "requestId": "last"}')
        rooms = [json.loads(await asyncio.wait_for(ws.recv(), 10))["room"] for _ in range(6)]
    assert sorted(rooms) == ["last", "s0", "s1", "s2", "s3", "s4"]
    assert rooms.index("last") >= 2  # it waited for a place: read after the first ones ended
