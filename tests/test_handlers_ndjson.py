"""handlers/ndjson.py, the example custom protocol, tested through the public `start_gateway`
fixture only: the fixture gives it a free port, read back with `gateway.port("ndjson")`."""

from __future__ import annotations

import json
import socket
from typing import Any

NDJSON = """
    server:
      protocols:
        ndjson: {module: handlers.ndjson:NdjsonProtocol, port: 7513}
"""


class Lines:
    """A plain TCP client speaking one JSON object per line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.sock.sendall(data)

    def receive(self) -> dict[str, Any]:
        return json.loads(self.file.readline())

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_a_request_per_line_and_an_answer_per_line(start_gateway) -> None:
    gateway = start_gateway(NDJSON)
    client = Lines(gateway.port("ndjson"))
    try:
        client.send({"controller": "server", "action": "now", "requestId": "n1"})
        answer = client.receive()
        assert answer["status"] == 200 and answer["room"] == answer["requestId"] == "n1"
        client.send(b"not json\n")
        assert client.receive()["status"] == 400
    finally:
        client.close()


async def test_what_is_published_over_ndjson_reaches_a_websocket_subscriber(start_gateway):
    gateway = start_gateway(NDJSON)
    async with gateway.websocket() as ws:
        subscribed = await ws.query(controller="realtime", action="subscribe", index="shop",
                                    collection="orders", body={"equals": {"status": "paid"}})
        assert subscribed["status"] == 200
        client = Lines(gateway.port("ndjson"))
        try:
            client.send({"controller": "realtime", "action": "publish", "index": "shop",
                         "collection": "orders", "body": {"status": "paid"}, "requestId": "p"})
            assert client.receive()["result"] == {"published": True}
        finally:
            client.close()
        note = await ws.next_notification()
        assert note["type"] == "document" and note["protocol"] == "ndjson"
        assert note["room"] == subscribed["result"]["channel"]
        assert note["result"]["_source"]["status"] == "paid"
