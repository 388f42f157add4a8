"""What the broker sends the client in PUBLISH flows, and what the client answers.

The receiving counterpart of `outbound.py`, for `ClientProtocol`. MQTT 5.0
Topic Aliases the broker set up are resolved here (they hold for one
connection). QoS 2 uses method B on the receiving side: deliver at once and
remember the packet id until PUBREL, so a repeated PUBLISH is acknowledged
but not delivered twice. Those ids belong to the session, so they outlive a
connection; the Receive Maximum we announced in CONNECT caps how many may be
open at once [MQTT-3.3.4-9].
"""

from __future__ import annotations

from midge.client.aliases import IncomingAliases
from midge.client.errors import ReceiveMaximumExceeded
from midge.client.events import Message
from midge.protocol.packets import PubAck, PubComp, Publish, PubRec
from midge.protocol.reasons import ReasonCode


class Inbound:
    """Incoming topic aliases and the QoS 2 ids awaiting PUBREL."""

    def __init__(self, v5: bool, receive_maximum: int, topic_alias_maximum: int) -> None:
        self._v5 = v5
        self._receive_maximum = receive_maximum
        self._aliases = IncomingAliases(topic_alias_maximum)
        self._awaiting_release: set[int] = set()

    def new_connection(self) -> None:
        """A CONNACK: no alias of the broker's is set up yet [MQTT-3.3.2-7]."""
        self._aliases.reset()

    def session_lost(self) -> None:
        """The broker kept no session: the ids it was to release went with it."""
        self._awaiting_release.clear()

    def publish(self, packet: Publish) -> tuple[Message | None, PubAck | PubRec | None]:
        """The message to deliver (None for a repeated QoS 2 one) and the
        acknowledgement to send (None for QoS 0)."""
        packet_id = packet.packet_id or 0
        topic = packet.topic
        if self._v5:
            alias = None if packet.properties is None else packet.properties.topic_alias
            topic = self._aliases.resolve(topic, alias)
        if packet.qos == 2:
            if packet_id in self._awaiting_release:
                return None, PubRec(packet_id)
            if len(self._awaiting_release) >= self._receive_maximum:  # [MQTT-3.3.4-9]
                raise ReceiveMaximumExceeded(
                    f"more than {self._receive_maximum} QoS 2 messages unreleased"
                )
            self._awaiting_release.add(packet_id)
            return _message(packet, topic), PubRec(packet_id)
        return _message(packet, topic), PubAck(packet_id) if packet.qos == 1 else None

    def release(self, packet_id: int) -> PubComp:
        """PUBREL -> PUBCOMP, even for an unknown id: the broker may repeat PUBREL
        after a reconnect whose state we no longer hold (section 4.3.3); 5.0 says so."""
        known = packet_id in self._awaiting_release
        self._awaiting_release.discard(packet_id)
        code = 0 if known or not self._v5 else ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
        return PubComp(packet_id, code)


def _message(packet: Publish, topic: str) -> Message:
    return Message(
        topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id,
        packet.properties,
    )
