"""The amqtt plugin that ties the embedded broker to the gateway's MQTT protocol.

amqtt loads broker plugins by dotted path and calls them for authentication, for every topic
a client publishes or subscribes to, and on client and message events. This plugin answers
those calls from the `MqttProtocol` it is attached to (`protocol`), so that the broker stays
amqtt's and the gateway's rules live in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

if TYPE_CHECKING:
    from amqtt.session import ApplicationMessage, Session

    from .mqtt import MqttProtocol

PLUGIN_PATH = f"{__name__}.GatewayBridge"


class GatewayBridge(BaseAuthPlugin, BaseTopicPlugin):
    """Authentication, topic rules and client/message events, delegated to the protocol."""

    protocol: MqttProtocol | None = None

    async def authenticate(self, *, session: Session) -> bool | None:
        """Clients authenticate per request (`jwt`), as on the other protocols. A will message
        is refused where a publish would be: the broker sends wills without topic checks."""
        if self.protocol is None:
            return False
        return not session.will_flag or self.protocol.may_publish(session.will_topic or "")

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:
        protocol = self.protocol
        if protocol is None or topic is None:
            return False
        if action == Action.PUBLISH:
            # requests are consumed by the gateway (on_broker_message_received), never routed
            return topic != protocol.request_topic and protocol.may_publish(topic)
        if action == Action.SUBSCRIBE:
            return protocol.may_subscribe(topic)
        return True

    async def on_broker_client_connected(self, *, client_id: str, client_session: Session,
                                         **_: Any) -> None:
        if self.protocol is not None:
            await self.protocol.client_connected(client_id, client_session)

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: Session,
                                            **_: Any) -> None:
        if self.protocol is not None:
            await self.protocol.client_disconnected(client_id, client_session)

    async def on_broker_message_received(self, *, client_id: str,
                                         message: ApplicationMessage | None, **_: Any) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        protocol.message_received(client_id)
        if message is not None and message.topic == protocol.request_topic:
            await protocol.handle_request(client_id, message.data)
