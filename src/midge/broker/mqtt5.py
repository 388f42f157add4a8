"""What a 5.0 connection negotiated, and the per-hop parts of its PUBLISH packets.

A 3.1.1 connection has none of this (`Connection.mqtt5` is None), so it costs
3.1.1 clients nothing. A 5.0 client states limits in its CONNECT that bind
the broker for the life of the connection (section 3.1.2.11): how many
unacknowledged QoS 1/2 messages it takes (Receive Maximum), the largest
packet (Maximum Packet Size), how many topic aliases the broker may set up
(Topic Alias Maximum), and whether acknowledgements may explain themselves
(Request Problem Information).

Topic aliases the broker sends (the policy, documented in docs/mqtt5.md): the
first topics sent to a connection get an alias each, in the order they are
first sent, until the client's maximum is used up; an alias stays with its
topic for the life of the connection. Repeated topics, the usual case for
telemetry, then cost two bytes instead of the topic; later new topics go out
in full.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from midge.message import Message
from midge.protocol.codec import encode, encode_publish5
from midge.protocol.errors import ProtocolError, TopicAliasInvalid
from midge.protocol.packets import PROTOCOL_MQTT_5, Connect, Disconnect, Will
from midge.protocol.properties import (
    MAX_VARIABLE_BYTE_INTEGER,
    Properties,
    encode_property_values,
    encode_variable_integer,
)

DEFAULT_RECEIVE_MAXIMUM = 65535  # what a client that states none allows [MQTT-3.1.2-?]
SESSION_NEVER_EXPIRES = 0xFFFF_FFFF


class Mqtt5Link:
    """A 5.0 connection's negotiated limits and its topic aliases in both directions."""

    __slots__ = (
        "aliases_in",
        "aliases_out",
        "authentication_method",
        "maximum_packet_size",
        "problem_information",
        "receive_maximum",
        "session_expiry_interval",
        "too_large",
        "topic_alias_maximum",
    )

    def __init__(self, connect: Connect) -> None:
        properties = connect.properties or _NONE
        self.receive_maximum = properties.receive_maximum or DEFAULT_RECEIVE_MAXIMUM
        self.maximum_packet_size = properties.maximum_packet_size  # None: no limit
        self.topic_alias_maximum = properties.topic_alias_maximum or 0
        self.problem_information = properties.request_problem_information != 0
        # Enhanced authentication's method: a re-authentication must use it.
        self.authentication_method = properties.authentication_method
        # What CONNECT asked for: DISCONNECT may change it, but not from 0 [MQTT-3.14.2-?].
        self.session_expiry_interval = properties.session_expiry_interval or 0
        self.aliases_in: dict[int, str] | None = None  # the client's: alias -> topic
        self.aliases_out: dict[str, int] | None = None  # ours: topic -> alias
        self.too_large = 0  # messages not sent because they exceeded maximum_packet_size

    # ------------------------------------------------------------- inbound

    def resolve_alias(self, topic: str, alias: int | None, maximum: int) -> str:
        """The topic of a PUBLISH from the client, its Topic Alias applied [section 3.3.2.3.4]."""
        if alias is None:
            if not topic:
                raise ProtocolError("PUBLISH with an empty topic and no topic alias")
            return topic
        if not 0 < alias <= maximum:
            raise TopicAliasInvalid(f"topic alias {alias} is not within 1..{maximum}")
        aliases = self.aliases_in
        if topic:
            if aliases is None:
                aliases = self.aliases_in = {}
            aliases[alias] = topic
            return topic
        known = None if aliases is None else aliases.get(alias)
        if known is None:
            raise ProtocolError(f"topic alias {alias} was never set on this connection")
        return known

    # ------------------------------------------------------------ outbound

    def publish_bytes(
        self,
        message: Message,
        packet_id: int | None,
        dup: bool,
        wall_clock: Callable[[], float],
    ) -> bytes | None:
        """The PUBLISH of `message` for this client, or None when it exceeds the
        client's Maximum Packet Size (then it must be treated as sent [MQTT-3.1.2-25]).
        `wall_clock` is read only for a message that expires."""
        topic = message.topic
        alias = self._alias_for(topic) if self.topic_alias_maximum else None
        if alias is None and not dup and message.properties is None and message.expires_at is None:
            data = message.wire5(packet_id)  # the same bytes for every such receiver
        else:
            block = _property_block(message, alias, wall_clock)
            wire_topic = "" if alias is not None and alias[1] else topic
            data = encode_publish5(
                wire_topic, message.payload, message.qos, message.retain, dup, packet_id, block
            )
        limit = self.maximum_packet_size
        if limit is not None and len(data) > limit:
            if alias is not None and not alias[1]:
                # The alias was never set up on the client: forget it.
                assert self.aliases_out is not None
                del self.aliases_out[topic]
            self.too_large += 1
            return None
        return data

    def _alias_for(self, topic: str) -> tuple[int, bool] | None:
        """(alias, whether the client already knows it) or None: no alias."""
        maximum = self.topic_alias_maximum
        if not maximum:
            return None
        aliases = self.aliases_out
        if aliases is None:
            aliases = self.aliases_out = {}
        alias = aliases.get(topic)
        if alias is not None:
            return alias, True
        if len(aliases) >= maximum:
            return None
        alias = aliases[topic] = len(aliases) + 1
        return alias, False


_NONE = Properties()


def _property_block(
    message: Message, alias: tuple[int, bool] | None, wall_clock: Callable[[], float]
) -> bytes:
    """The receiver's property block: the message's own (with this receiver's
    Subscription Identifiers, see variants.py), then the per-hop ones."""
    properties = message.properties
    expires_at = message.expires_at
    if properties is None and expires_at is None and alias is None:
        return b"\x00"
    values = b"" if properties is None else encode_property_values(properties)
    if expires_at is not None:
        # The remaining interval, rounded up so it never reads 0 before it expires.
        remaining = max(1, math.ceil(expires_at - wall_clock()))
        values += b"\x02" + min(remaining, 0xFFFF_FFFF).to_bytes(4, "big")
    if alias is not None:
        values += b"\x23" + alias[0].to_bytes(2, "big")
    if len(values) > MAX_VARIABLE_BYTE_INTEGER:
        raise ValueError("property block too long")
    return encode_variable_integer(len(values)) + values


def disconnect_bytes(reason_code: int, reason_string: str = "") -> bytes:
    """A server DISCONNECT; a Reason String is allowed on it even when the client
    turned off Request Problem Information [MQTT-3.1.2-29]."""
    properties = Properties(reason_string=reason_string[:200]) if reason_string else None
    return encode(Disconnect(reason_code, properties), PROTOCOL_MQTT_5)


def will_to_message(will: Will, wall_clock: Callable[[], float]) -> Message:
    """The message a will becomes, with its Will Properties (section 3.1.3.2)."""
    properties = will.properties
    if properties is None:
        return Message(will.topic, will.payload, will.qos, will.retain)
    interval = properties.message_expiry_interval
    expires_at = None if interval is None else wall_clock() + interval
    return Message(
        will.topic, will.payload, will.qos, will.retain, message_properties(properties), expires_at
    )


def message_properties(
    properties: Properties | None, subscription_identifiers: tuple[int, ...] = ()
) -> Properties | None:
    """What of a received PUBLISH's properties travels on: all but the per-hop
    Topic Alias, Subscription Identifiers and Message Expiry Interval (kept as
    the message's expiry time instead), with one receiver's own Subscription
    Identifiers if given (variants.py)."""
    if properties is None:
        if not subscription_identifiers:
            return None
        properties = _NONE
    kept = Properties(
        payload_format_indicator=properties.payload_format_indicator,
        content_type=properties.content_type,
        response_topic=properties.response_topic,
        correlation_data=properties.correlation_data,
        user_properties=properties.user_properties,
        subscription_identifiers=subscription_identifiers,
    )
    return None if kept.is_empty() else kept
