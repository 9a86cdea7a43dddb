"""handlers/apikeys.py, the example authentication strategy, tested through the public
`start_gateway` fixture only."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "gateway.yaml"
KEY = "k" * 32


def test_a_user_adds_a_key_then_logs_in_with_it(start_gateway) -> None:
    gateway = start_gateway(EXAMPLE)
    alice = gateway.login("alice")
    created = alice.http_sync.post("/_me/credentials/apikey/_create", json={"key": KEY})
    assert created.status_code == 200, created.text
    assert KEY not in created.text  # kept as a digest, never given back
    with_key = gateway.login("alice", strategy="apikey", key=KEY)
    me = with_key.http_sync.get("/_me").json()["result"]
    assert me["_id"] == "alice"
    info = with_key.http_sync.get("/_me/credentials/apikey").json()
    assert info["result"] == {"kuid": "alice", "hasKey": True}


def test_short_and_unknown_keys_are_refused(start_gateway) -> None:
    gateway = start_gateway(EXAMPLE)
    alice = gateway.login("alice")
    short = alice.http_sync.post("/_me/credentials/apikey/_create", json={"key": "short"})
    assert short.status_code == 400
    assert "at least 24 characters" in short.json()["error"]["message"]
    with pytest.raises(AssertionError, match="login as 'anyone' failed: 401"):
        gateway.login("anyone", strategy="apikey", key="x" * 30)


async def test_the_key_works_over_websocket_too(start_gateway) -> None:
    gateway = start_gateway(EXAMPLE)
    alice = gateway.login("alice")
    async with alice.websocket() as ws:
        created = await ws.query(controller="auth", action="createMyCredentials",
                                 strategy="apikey", body={"key": KEY})
        assert created["status"] == 200, created
    async with gateway.websocket() as ws:
        login = await ws.query(controller="auth", action="login", strategy="apikey",
                               body={"key": KEY})
        assert login["status"] == 200, login
        me = await ws.query(controller="auth", action="getCurrentUser",
                            jwt=login["result"]["jwt"])
        assert me["result"]["_id"] == "alice"
