"""The access log and `--log-format json` as `sanic-gateway run` writes them: a line per request
on every protocol, fields a log shipper can read, and no secret at any level."""

from __future__ import annotations

import json
import re
import signal
import textwrap

import httpx
from websockets.sync.client import connect

from tests.test_run import ADMIN_YAML, start, stop, stored_bodies

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def exercise(base: str) -> tuple[str, str]:
    """A login, requests carrying the token in the query string and in a header, a refused
    one, an unknown URL and a WebSocket request; returns the token and the /_me request id."""
    login = httpx.post(f"{base}/_login/local",
                       json={"username": "root", "password": "root-password-1"})
    assert login.status_code == 200, login.text
    token = login.json()["result"]["jwt"]
    me = httpx.get(f"{base}/_me", params={"jwt": token})
    assert me.status_code == 200 and me.json()["result"]["_id"] == "root", me.text
    assert httpx.get(f"{base}/_me", headers={"Authorization": f"Bearer {token}"}
                     ).status_code == 200
    bad = httpx.post(f"{base}/_login/local",
                     json={"username": "root", "password": "not-the-password"})
    assert bad.status_code == 401
    assert httpx.get(f"{base}/nowhere?jwt={token}").status_code == 404
    with connect(base.replace("http://", "ws://") + "/") as ws:
        ws.send(json.dumps({"controller": "auth", "action": "getCurrentUser", "jwt": token,
                            "requestId": "ws-request-1"}))
        assert json.loads(ws.recv())["status"] == 200
    return token, me.headers["x-kuzzle-request-id"]


def secrets_of(tmp_path, token: str) -> list[str]:
    bodies = "\n".join(stored_bodies("sqlite:///data.db", tmp_path))
    jwt_key = json.loads(re.search(r'\{"secret":.*?\}', bodies).group(0))["secret"]
    hashes = re.findall(r"\$argon2id\$[^\"]+", bodies)
    assert hashes
    return [jwt_key, *hashes, *(h.split("$")[-1] for h in hashes), token,
            token.split(".")[-1], "root-password-1", "not-the-password"]


def test_json_lines_with_access_fields_and_no_secret_at_debug(tmp_path):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(ADMIN_YAML.format(
        storage="sqlite:///data.db")))
    proc, base = start(tmp_path, "--dev", "--log-format", "json")  # --dev: DEBUG, access log
    try:
        token, me_id = exercise(base)
    finally:
        out = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, out
    leaked = [s for s in secrets_of(tmp_path, token) if s in out]
    assert not leaked, out
    lines = [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    access = [x for x in lines if x["logger"] == "sanic_gateway.access"]
    me = next(x for x in access if x["request_id"] == me_id)
    assert me["method"] == "GET" and me["path"] == "/_me" and me["status"] == 200
    assert me["user"] == "root" and me["protocol"] == "http"
    assert me["controller"] == "auth" and me["action"] == "getCurrentUser"
    assert isinstance(me["duration_ms"], float) and me["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", me["time"])
    login = next(x for x in access if x["path"] == "/_login/local" and x["status"] == 200)
    assert login["user"] == "-1"  # logging in is done anonymously
    refused = next(x for x in access if x["path"] == "/_login/local" and x["status"] == 401)
    assert refused["user"] == "-1"
    unknown = next(x for x in access if x["path"] == "/nowhere")
    assert unknown["status"] == 404 and unknown["controller"] is None
    assert re.fullmatch(UUID, unknown["request_id"])
    ws = next(x for x in access if x["protocol"] == "websocket")
    assert ws["request_id"] == "ws-request-1" and ws["user"] == "root"
    assert ws["controller"] == "auth" and ws["action"] == "getCurrentUser"
    assert ws["status"] == 200 and ws["method"] is None
    assert "Traceback" not in out


def test_text_access_log_from_the_configuration(tmp_path):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(ADMIN_YAML.format(
        storage="sqlite:///data.db")) + "server: {access_log: true}\n")
    proc, base = start(tmp_path)
    try:
        token, me_id = exercise(base)
    finally:
        out = stop(proc, signal.SIGTERM)
    assert not [s for s in secrets_of(tmp_path, token) if s in out], out
    lines = out.splitlines()
    me = next(x for x in lines if me_id in x)
    assert re.search(rf"sanic_gateway\.access: 127\.0\.0\.1 GET /_me 200 \d+\.\dms "
                     rf"id={me_id} user=root$", me), me
    ws = next(x for x in lines if "id=ws-request-1" in x)
    assert re.search(r"access: 127\.0\.0\.1 websocket auth:getCurrentUser 200 \d+\.\dms "
                     r"id=ws-request-1 user=root$", ws), ws
    assert any(re.search(r"GET /nowhere 404 - id=", x) for x in lines), out


def test_no_access_log_unless_asked(tmp_path):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(ADMIN_YAML.format(
        storage="sqlite:///data.db")) + "server: {log_format: json}\n")
    proc, base = start(tmp_path)
    try:
        exercise(base)
    finally:
        out = stop(proc, signal.SIGTERM)
    lines = [json.loads(line) for line in out.splitlines()]  # json, from the configuration
    assert lines and not [x for x in lines if x["logger"] == "sanic_gateway.access"]
