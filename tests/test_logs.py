"""What the gateway logs, in process: redaction, request ids, OAuth provider failures."""

from __future__ import annotations

import logging
import uuid

from sanic_gateway import logs
from tests.test_cli import free_port


def test_redact_masks_secret_shapes_and_registered_values():
    logs.register_secret("registered-literal-secret")
    line = ('token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl hash '
            '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g '
            '{"password": "pw-in-json", "client_secret": "cs"} api_key=k123 '
            'and registered-literal-secret, but not a word like secretary')
    masked = logs.redact(line)
    for secret in ("eyJzdWIiOiJ4In0", "c2lnbmF0dXJl", "c2FsdHNhbHQ", "aGFzaGhhc2g",
                   "pw-in-json", '"cs"', "k123", "registered-literal-secret"):
        assert secret not in masked, masked
    assert "secretary" in masked and "hash" in masked


def test_short_values_are_not_registered():
    logs.register_secret("abc")
    assert logs.redact("abc def") == "abc def"


async def test_request_ids_are_random_uuids(serve):
    served = await serve('storage: "sqlite:///:memory:"\n')
    ids = [(await served.client.get("/_now")).headers["x-kuzzle-request-id"]
           for _ in range(20)]
    ids.append((await served.client.get("/nowhere")).json()["requestId"])
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == len(ids)
    # no shared prefix, no counter: the first 16 hex digits differ from one id to the next
    assert len({i[:18] for i in ids}) == len(ids)
    assert len({i[-12:] for i in ids}) == len(ids)


async def test_an_oauth_provider_failure_names_the_strategy_and_url(serve, caplog):
    closed = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"
    served = await serve(f"""\
        storage: "sqlite:///:memory:"
        auth:
          strategies:
            down:
              oauth2:
                server_metadata_url: {closed}
                client_id: gateway
                client_secret: a-client-secret-value
    """)
    with caplog.at_level(logging.INFO):
        answer = await served.client.get("/_login/down")
    assert answer.status_code == 503
    assert answer.json()["error"]["id"] == "security.oauth.provider_unavailable"
    lines = [r.getMessage() for r in caplog.records if r.name == "sanic_gateway.oauth"]
    assert len(lines) == 1 and "oauth down: provider unavailable at " + closed in lines[0]


async def test_the_stored_jwt_key_is_redacted_once_started(serve):
    served = await serve('storage: "sqlite:///:memory:"\n')
    key = served.gateway.security.tokens._key.raw_value.decode()
    assert logs.redact(f"the key: {key}!") == "the key: [redacted]!"


def test_a_config_path_naming_a_secret_kind_is_not_taken_for_a_secret():
    line = "gateway.yaml:41: security.users.alice.credentials.apikey: an API key is a string"
    assert logs.redact(line) == line
    assert logs.redact("apikey: abc") == "apikey: [redacted]"


def test_json_lines_are_redacted_value_by_value():
    import io
    import json

    logs.register_secret("a-registered-secret-value")
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("sanic_gateway").level)
    logs.configure(False, stream, fmt="json")
    log = logging.getLogger("sanic_gateway.test")
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    try:
        log.info('body {"password": "pw-in-json", "user": "bob"} key a-registered-secret-value',
                 extra={"access": {"path": f"/x/{jwt}", "status": 200}})
        try:
            raise ValueError(f"token={jwt}")
        except ValueError:
            log.exception("failed with $argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("sanic_gateway").setLevel(saved[2])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["logger"] == "sanic_gateway.test" and lines[0]["level"] == "INFO"
    assert lines[0]["status"] == 200 and lines[0]["path"] == "/x/eyJ[redacted]"
    assert lines[1]["level"] == "ERROR" and "ValueError" in lines[1]["exception"]
    text = stream.getvalue()
    for secret in ("pw-in-json", "a-registered-secret-value", "eyJzdWIiOiJ4In0", "c2FsdHNhbHQ",
                   "aGFzaGhhc2g"):
        assert secret not in text, text
