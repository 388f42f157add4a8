"""Packet bodies -> packets for MQTT 5.0, where their layout differs from 3.1.1.

codec.py dispatches here when the connection's version is 5 (CONNECT, whose
level says which layout it has, is decoded there for both). Each function
takes the bytes after the remaining length and raises only MalformedPacket
and ProtocolError, the reason code to report being the error class's.

What is checked here is what the bytes alone can tell: field layout, reason
codes allowed on the packet (reasons.ALLOWED, else Malformed Packet), the
properties each packet may carry (properties.py). What needs the
connection's state (topic aliases, receive maximum, the direction a packet
travelled) is the broker's or the client's.
"""

from __future__ import annotations

from typing import Final

from midge.protocol.errors import MalformedPacket, ProtocolError
from midge.protocol.fields import Reader, topic_name, valid_topics
from midge.protocol.packets import (
    Auth,
    ConnAck,
    Disconnect,
    PacketType,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from midge.protocol.properties import Properties, decode_properties
from midge.protocol.reasons import ALLOWED

_CONNACK: Final = int(PacketType.CONNACK)
_PUBLISH: Final = int(PacketType.PUBLISH)
_SUBSCRIBE: Final = int(PacketType.SUBSCRIBE)
_SUBACK: Final = int(PacketType.SUBACK)
_UNSUBSCRIBE: Final = int(PacketType.UNSUBSCRIBE)
_UNSUBACK: Final = int(PacketType.UNSUBACK)
_DISCONNECT: Final = int(PacketType.DISCONNECT)
_AUTH: Final = int(PacketType.AUTH)
# Bound here, not used under its imported name (see codec._valid_topics).
_valid_topics: Final = valid_topics


def _reason(packet_type: int, code: int) -> int:
    if code not in ALLOWED[packet_type]:
        name = PacketType(packet_type).name
        raise MalformedPacket(f"reason code 0x{code:02X} is not allowed in {name}")
    return code


def _packet_id(reader: Reader, packet_type: int) -> int:
    packet_id = reader.uint16()
    if packet_id == 0:
        raise ProtocolError(f"{PacketType(packet_type).name} with packet id 0")  # 2.2.1-3
    return packet_id


def decode_connack5(body: bytes) -> ConnAck:
    """Section 3.2.2: acknowledge flags, reason code, properties. A server that
    does not speak 5.0 answers `20 02 00 01` (3.1.1's unacceptable protocol
    version): that is malformed here, reason code 0x01 being no 5.0 CONNACK's."""
    reader = Reader(body)
    flags = reader.byte()
    if flags & 0xFE:
        raise MalformedPacket("CONNACK acknowledge flags have reserved bits set")  # 3.2.2-1
    code = _reason(_CONNACK, reader.byte())
    if flags and code:
        raise ProtocolError("refusing CONNACK claims a session")  # [MQTT-3.2.2-6]
    properties = reader.properties(_CONNACK)
    reader.expect_end("CONNACK properties")
    return ConnAck(code, bool(flags), properties)


def publish5_at(flags: int, data: bytes, begin: int, end: int) -> Publish:
    """The 5.0 PUBLISH whose body is `data[begin:end]` (section 3.3.2), parsed in
    place like codec._publish_at; an empty property block (the common case)
    costs one byte test. `head` stays None here: the Decoder sets it when the
    packet can be forwarded to 5.0 receivers as it came (Message.wire5)."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")  # [MQTT-3.3.1-4]
    dup = bool(flags & 0x08)
    if dup and qos == 0:
        raise MalformedPacket("PUBLISH with QoS 0 and DUP set")  # [MQTT-3.3.1-2]
    if end - begin < 2:
        raise MalformedPacket("packet ends before a two-byte field")
    start = begin + 2 + ((data[begin] << 8) | data[begin + 1])
    if start > end:
        raise MalformedPacket("length-prefixed field runs past the end of the packet")
    raw_topic = data[begin + 2 : start]
    packet_id = None
    if qos:
        if start + 2 > end:
            raise MalformedPacket("packet ends before a two-byte field")
        packet_id = (data[start] << 8) | data[start + 1]
        if packet_id == 0:
            raise ProtocolError("PUBLISH with QoS > 0 and packet id 0")  # [MQTT-2.2.1-3]
        start += 2
    if start >= end:
        raise MalformedPacket("PUBLISH ends before its property length")
    properties: Properties | None = None
    if data[start] == 0:
        start += 1
    else:
        properties, start = decode_properties(data, start, end, _PUBLISH)
    if raw_topic:
        topic = _valid_topics.get(raw_topic)  # as in codec._publish_at: inline, for speed
        if topic is None:
            topic = topic_name(raw_topic)
    elif properties is None or properties.topic_alias is None:
        # Only an alias can stand in for the topic [MQTT-3.3.2-1, 3.3.2.3.4].
        raise ProtocolError("PUBLISH with an empty topic name and no Topic Alias")
    else:
        topic = ""  # the receiver resolves the alias
    return Publish(
        topic, data[start:end], qos, bool(flags & 0x01), dup, packet_id, None, properties
    )


def decode_ack5(packet_type: int, body: bytes) -> tuple[int, int, Properties | None]:
    """PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4-3.7) longer than the 2-byte
    form codec.py reads itself: packet id, reason code, then properties unless
    the remaining length is 3 [3.4.2.1]."""
    reader = Reader(body)
    packet_id = _packet_id(reader, packet_type)
    code = _reason(packet_type, reader.byte())
    properties = reader.properties(packet_type) if reader.remaining() else None
    reader.expect_end(f"{PacketType(packet_type).name} properties")
    return packet_id, code, properties


def _options(byte: int) -> tuple[int, bool, bool, int]:
    """Subscription Options (section 3.8.3.1): QoS, No Local, Retain As
    Published, Retain Handling."""
    if byte & 0xC0:
        raise MalformedPacket("subscription options have reserved bits set")  # [MQTT-3.8.3-5]
    qos = byte & 0x03
    if qos == 3:
        raise ProtocolError("subscription requests QoS 3")  # section 3.8.3.1
    retain_handling = (byte >> 4) & 0x03
    if retain_handling == 3:
        raise ProtocolError("subscription with Retain Handling 3")  # section 3.8.3.1
    return qos, bool(byte & 0x04), bool(byte & 0x08), retain_handling


def decode_subscribe5(body: bytes) -> Subscribe:
    """Section 3.8.2: packet id, properties (at most one Subscription
    Identifier: properties.py), then filters each with an options byte."""
    reader = Reader(body)
    packet_id = _packet_id(reader, _SUBSCRIBE)
    properties = reader.properties(_SUBSCRIBE)
    subscriptions = []
    while reader.remaining():
        topic_filter = reader.string()
        qos, no_local, retain_as_published, retain_handling = _options(reader.byte())
        subscriptions.append(
            Subscription(topic_filter, qos, no_local, retain_as_published, retain_handling)
        )
    if not subscriptions:
        raise ProtocolError("SUBSCRIBE without topic filters")  # [MQTT-3.8.3-2]
    return Subscribe(packet_id, tuple(subscriptions), properties)


def _codes_after_properties(
    body: bytes, packet_type: int
) -> tuple[int, Properties | None, tuple[int, ...]]:
    """SUBACK and UNSUBACK: packet id, properties, one reason code per filter."""
    reader = Reader(body)
    packet_id = _packet_id(reader, packet_type)
    properties = reader.properties(packet_type)
    codes = tuple(reader.rest())
    if not codes:
        raise ProtocolError(f"{PacketType(packet_type).name} without reason codes")
    for code in codes:
        _reason(packet_type, code)
    return packet_id, properties, codes


def decode_suback5(body: bytes) -> SubAck:
    packet_id, properties, codes = _codes_after_properties(body, _SUBACK)
    return SubAck(packet_id, codes, properties)


def decode_unsuback5(body: bytes) -> UnsubAck:
    packet_id, properties, codes = _codes_after_properties(body, _UNSUBACK)
    return UnsubAck(packet_id, codes, properties)


def decode_unsubscribe5(body: bytes) -> Unsubscribe:
    """Section 3.10.2: packet id, properties, then topic filters."""
    reader = Reader(body)
    packet_id = _packet_id(reader, _UNSUBSCRIBE)
    properties = reader.properties(_UNSUBSCRIBE)
    topic_filters = []
    while reader.remaining():
        topic_filters.append(reader.string())
    if not topic_filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters")  # [MQTT-3.10.3-2]
    return Unsubscribe(packet_id, tuple(topic_filters), properties)


def _reason_and_properties(packet_type: int, body: bytes) -> tuple[int, Properties | None]:
    """DISCONNECT and AUTH: nothing at all means reason 0 (sections 3.14.2.1,
    3.15.2.1); a reason code alone means no properties."""
    if not body:
        return 0, None
    reader = Reader(body)
    code = _reason(packet_type, reader.byte())
    properties = reader.properties(packet_type) if reader.remaining() else None
    reader.expect_end(f"{PacketType(packet_type).name} properties")
    return code, properties


def decode_disconnect5(body: bytes) -> Disconnect:
    code, properties = _reason_and_properties(_DISCONNECT, body)
    return Disconnect(code, properties)


def decode_auth5(body: bytes) -> Auth:
    code, properties = _reason_and_properties(_AUTH, body)
    return Auth(code, properties)
