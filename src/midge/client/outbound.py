"""Encoding what the client sends under the broker's limits of the connection.

MQTT 5.0's CONNACK sets a Maximum Packet Size the client must not exceed
[MQTT-3.1.2-24] and a Topic Alias Maximum it may use (section 3.3.2.3.4);
3.1.1 has neither, and `Outbound` then only encodes. A PUBLISH whose topic
is shortened to an alias is built here, at send time, because aliases hold
for one connection only: the packet kept for re-sending stays the full one.
"""

from __future__ import annotations

from dataclasses import replace

from midge.client.aliases import OutgoingAliases
from midge.client.errors import PacketTooLarge
from midge.client.options import UNLIMITED_PACKET_SIZE, ServerLimits
from midge.protocol.codec import encode
from midge.protocol.packets import PROTOCOL_MQTT_5, Packet, Publish
from midge.protocol.properties import Properties


class Outbound:
    """The broker's limits for this connection, and the encoder that keeps to them."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.limits = ServerLimits()
        self.aliases = OutgoingAliases()

    def reset(self, limits: ServerLimits) -> None:
        """A CONNACK: its limits hold from now on, and no alias is set up."""
        self.limits = limits
        self.aliases.reset(limits.topic_alias_maximum)

    def check_size(self, packet: Packet, topic: str | None = None) -> None:
        """PacketTooLarge if `packet` (as encoded without aliases) exceeds the broker's maximum."""
        limit = self.limits.maximum_packet_size
        if limit < UNLIMITED_PACKET_SIZE and len(encode(packet, self.version)) > limit:
            raise self.too_large(packet, topic)

    def too_large(self, packet: Packet, topic: str | None = None) -> PacketTooLarge:
        where = f" to {topic!r}" if topic is not None else ""
        return PacketTooLarge(
            f"{type(packet).__name__.upper()}{where} exceeds the broker's maximum packet "
            f"size of {self.limits.maximum_packet_size} bytes"
        )

    def publish(self, packet: Publish) -> tuple[Publish, bytes] | None:
        """The PUBLISH to put on the wire (with a topic alias where one applies)
        and its bytes; None when even without an alias it is too large."""
        if self.version != PROTOCOL_MQTT_5:
            return packet, encode(packet, self.version)
        limit = self.limits.maximum_packet_size
        wire, new_alias = self._aliased(packet)
        data = encode(wire, PROTOCOL_MQTT_5)
        if len(data) > limit and wire is not packet:
            if new_alias:  # never announced, so the broker must not be assumed to know it
                self.aliases.unbind(packet.topic)
            wire = _without_alias(packet)
            data = encode(wire, PROTOCOL_MQTT_5)
        return (wire, data) if len(data) <= limit else None

    def _aliased(self, packet: Publish) -> tuple[Publish, bool]:
        """The PUBLISH with an alias applied, and whether it sets that alias up."""
        props = packet.properties
        chosen = None if props is None else props.topic_alias
        if chosen is not None:  # the caller's own alias: kept while the broker allows it
            if chosen > self.aliases.maximum:
                return _without_alias(packet), False
            self.aliases.bind(chosen, packet.topic)
            return packet, True
        topic, alias = self.aliases.choose(packet.topic)
        if alias is None:
            return packet, False
        aliased = replace(props, topic_alias=alias) if props else Properties(topic_alias=alias)
        return packet.passed_on(topic, aliased, packet.retain), bool(topic)


def _without_alias(packet: Publish) -> Publish:
    props = packet.properties
    if props is None or props.topic_alias is None:
        return packet
    stripped = replace(props, topic_alias=None)
    properties = None if stripped.is_empty() else stripped
    return packet.passed_on(packet.topic, properties, packet.retain)
