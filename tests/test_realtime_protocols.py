"""Realtime notifications reach every protocol through the protocol interface: an MQTT client
(paho-mqtt) and the example ndjson protocol subscribe, a WebSocket client publishes."""

from __future__ import annotations

from websockets.asyncio.client import connect

from tests.test_mqtt import Client, until
from tests.test_protocols import LineClient
from tests.test_realtime_api import call, next_message, ws_url

YAML = """storage: "sqlite:///:memory:"
server:
  protocols:
    mqtt: {enabled: true, port: 0}
    ndjson: {module: handlers.ndjson:NdjsonProtocol, port: 0}
"""
PUBLISH = {"controller": "realtime", "action": "publish", "index": "shop",
           "collection": "orders", "_id": "o-9", "body": {"status": "paid"}}


async def test_mqtt_and_ndjson_subscribers_get_notifications(serve) -> None:
    served = await serve(YAML)
    realtime = served.gateway.realtime
    hub = served.gateway.hub
    mqtt = Client(hub.protocols["mqtt"].obj.port)
    assert not (await mqtt.connect()).is_failure
    lines = await LineClient.open(hub.protocols["ndjson"].obj.port)
    async with connect(ws_url(served)) as ws:
        sub = await mqtt.request(controller="realtime", action="subscribe", index="shop",
                                 collection="orders", body={"equals": {"status": "paid"}})
        assert sub["status"] == 200, sub
        room_id, channel = sub["result"]["roomId"], sub["result"]["channel"]
        await lines.send({"controller": "realtime", "action": "subscribe", "index": "shop",
                          "collection": "orders", "body": {}, "requestId": "s1"})
        line_sub = await lines.recv()
        assert line_sub["requestId"] == "s1" and line_sub["status"] == 200, line_sub
        joined = await call(ws, controller="realtime", action="join", body={"roomId": room_id})
        assert joined["result"]["channel"] == channel

        inbox: list[dict] = []  # the publisher's own notification comes before its answer
        assert (await call(ws, inbox, **PUBLISH))["result"] == {"published": True}
        topic, note = await mqtt.get()  # on the channel's topic
        assert topic == channel and note["room"] == channel
        assert note["type"] == "document" and note["result"]["_id"] == "o-9"
        assert note["result"]["_source"]["status"] == "paid"
        line_note = await lines.recv()
        assert line_note["room"] == line_sub["result"]["channel"]
        ws_note = inbox[0] if inbox else await next_message(ws)
        assert ws_note["room"] == channel and ws_note["result"]["_id"] == "o-9"

        await mqtt.close()  # the MQTT client goes: its subscription goes with it
        await until(lambda: realtime.rooms.count(room_id) == 1)
    await lines.close()
    await until(lambda: not realtime.rooms.list())
