"""handlers/notes.py, the example plugin, tested as its author would: through the public
`start_gateway` fixture only."""

from __future__ import annotations

from pathlib import Path

import pytest

from sanic_gateway.testing import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "gateway.yaml"

NOTES = """
    storage: "sqlite:///:memory:"
    plugins:
      notes:
        module: handlers.notes:NotesPlugin
        config: {stamp_field: at}
        pipes: {"notes/notes:beforeCreate": stamp}
        hooks: {"request:onSuccess": count}
        controllers:
          notes: {create: create, get: get_note, list: list_notes, stats: stats}
        routes:
          - {verb: post, url: /notes, controller: notes, action: create}
          - {verb: get, url: /notes/:id, controller: notes, action: get}
          - {verb: get, url: /stats, controller: notes, action: stats}
"""


def test_the_pipe_stamps_a_note_and_the_action_keeps_it(start_gateway) -> None:
    gateway = start_gateway(NOTES)
    created = gateway.http_sync.post("/_/notes/notes", json={"text": "hello"})
    assert created.status_code == 200
    note = created.json()["result"]
    assert note["_source"]["text"] == "hello" and isinstance(note["_source"]["at"], int)
    fetched = gateway.http_sync.get(f"/_/notes/notes/{note['_id']}").json()
    assert fetched["result"]["_source"] == note["_source"]


def test_the_pipe_refuses_a_note_without_text(start_gateway) -> None:
    gateway = start_gateway(NOTES)
    refused = gateway.http_sync.post("/_/notes/notes", json={"title": "no text"})
    assert refused.status_code == 400
    assert refused.json()["error"]["id"] == "api.assert.missing_argument"
    missing = gateway.http_sync.get("/_/notes/notes/nope")
    assert missing.status_code == 404


async def test_the_hook_counts_successful_requests(start_gateway) -> None:
    gateway = start_gateway(NOTES)
    await gateway.http.post("/_/notes/notes", json={"text": "one"})
    await gateway.http.post("/_/notes/notes", json={"text": "two"})
    await gateway.http.post("/_/notes/notes", json={})  # refused by the pipe: not counted
    async with gateway.websocket() as ws:
        answer = await ws.query(controller="notes/notes", action="stats")
    assert answer["status"] == 200
    assert answer["result"]["notes/notes:create"] == 2
    assert gateway.plugin("notes").counts["notes/notes:create"] == 2


async def test_the_example_gateway_is_closed_to_visitors_and_open_to_alice(start_gateway):
    gateway = start_gateway(EXAMPLE)
    refused = await gateway.http.post("/_/notes/notes", json={"text": "anonymous"})
    assert refused.status_code == 401
    alice = gateway.login("alice")  # the password declared in gateway.yaml
    created = await alice.http.post("/_/notes/notes", json={"text": "by alice"})
    assert created.status_code == 200
    async with alice.websocket() as ws:
        listed = await ws.query(controller="notes/notes", action="list")
    assert [hit["_source"]["text"] for hit in listed["result"]["hits"]] == ["by alice"]


def test_a_wrong_password_fails_the_login_clearly(start_gateway) -> None:
    gateway = start_gateway(EXAMPLE)
    with pytest.raises(AssertionError, match="login as 'alice' failed: 401"):
        gateway.login("alice", "not-her-password")


def test_a_typo_in_the_yaml_is_reported_as_check_reports_it(start_gateway) -> None:
    with pytest.raises(ConfigError) as caught:
        start_gateway(NOTES.replace("get_note", "get_notes"))
    assert "plugins.notes.controllers.notes.get: " in str(caught.value)
    assert "did you mean 'get_note'?" in str(caught.value)
