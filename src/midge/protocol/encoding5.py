"""Packets -> bytes for MQTT 5.0, where their layout differs from 3.1.1.

`encoding.encode(packet, 5)` dispatches here (CONNECT, whose level says which
layout it has, is encoded in encoding.py for both). The broker's hot paths
skip the packet objects, as for 3.1.1:

- `encode_publish5` takes the property block already encoded
  (`properties.encode_properties`), so a message routed to many receivers
  encodes the properties they share once;
- `encode_ack5`, `encode_connack5`, `encode_suback5`, `encode_disconnect5`
  take the fields.

Every encoder writes the shortest form the specification allows: a PUBACK,
PUBREC, PUBREL or PUBCOMP with reason 0 and no properties is the 3.1.1
packet (remaining length 2), one with a reason but no properties omits the
property length (3); a DISCONNECT or AUTH with reason 0 and no properties
has remaining length 0. `Properties()` with nothing set counts as no
properties. Nothing here checks that a reason code or a property suits the
packet: the decoder on the other side does, and these are our own packets.
"""

from __future__ import annotations

from midge.protocol.fields import encode_string, fixed_header
from midge.protocol.packets import (
    Auth,
    ConnAck,
    Disconnect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from midge.protocol.properties import EMPTY_PROPERTIES, Properties, encode_properties


def _block(properties: Properties | None) -> bytes:
    """The property block, or b"" when there is nothing to say (short forms)."""
    if properties is None or properties.is_empty():
        return b""
    return encode_properties(properties)


def encode_publish5(
    topic: str,
    payload: bytes,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
    properties_block: bytes = EMPTY_PROPERTIES,
) -> bytes:
    """5.0 PUBLISH bytes (section 3.3): topic, packet id when QoS > 0, then
    `properties_block` (from `encode_properties`, b"\\x00" for none) and the
    payload. With a Topic Alias in the block, `topic` may be "" [3.3.2.3.4]."""
    topic_bytes = topic.encode("utf-8")
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    length = 2 + len(topic_bytes) + (2 if qos else 0) + len(properties_block) + len(payload)
    head = fixed_header(first, length) + len(topic_bytes).to_bytes(2, "big") + topic_bytes
    if qos:
        if not packet_id:
            raise ValueError("PUBLISH with QoS > 0 needs a non-zero packet id")
        return head + packet_id.to_bytes(2, "big") + properties_block + payload
    return head + properties_block + payload


def encode_ack5(
    header: bytes, packet_id: int, reason_code: int = 0, properties: Properties | None = None
) -> bytes:
    """5.0 PUBACK/PUBREC/PUBREL/PUBCOMP: `header` is one of encoding's *_HEADER
    constants, as for `encode_ack`; the success case is the same 4 bytes."""
    block = _block(properties)
    if not block:
        if not reason_code:
            return header + packet_id.to_bytes(2, "big")
        return bytes((header[0], 3)) + packet_id.to_bytes(2, "big") + bytes((reason_code,))
    body = packet_id.to_bytes(2, "big") + bytes((reason_code,)) + block
    return fixed_header(header[0], len(body)) + body


def encode_connack5(
    reason_code: int, session_present: bool, properties: Properties | None = None
) -> bytes:
    """5.0 CONNACK (section 3.2): flags, reason code, properties (never omitted).
    A refusal never claims a session [MQTT-3.2.2-6]."""
    flags = 0x01 if session_present and not reason_code else 0
    body = bytes((flags, reason_code)) + encode_properties(properties)
    return fixed_header(0x20, len(body)) + body


def encode_suback5(
    packet_id: int, reason_codes: bytes, properties: Properties | None = None
) -> bytes:
    """5.0 SUBACK (section 3.9): packet id, properties, one reason code per filter."""
    body = packet_id.to_bytes(2, "big") + encode_properties(properties) + reason_codes
    return fixed_header(0x90, len(body)) + body


def encode_disconnect5(reason_code: int = 0, properties: Properties | None = None) -> bytes:
    """5.0 DISCONNECT (section 3.14), in its shortest form."""
    return _reason_and_properties(0xE0, reason_code, properties)


def _reason_and_properties(
    first_byte: int, reason_code: int, properties: Properties | None
) -> bytes:
    block = _block(properties)
    if not block:
        if not reason_code:
            return bytes((first_byte, 0))
        return bytes((first_byte, 1, reason_code))
    body = bytes((reason_code,)) + block
    return fixed_header(first_byte, len(body)) + body


# ------------------------------------------- packet objects (encode(packet, 5))


def encode_connack5_packet(packet: ConnAck, version: int) -> bytes:
    return encode_connack5(packet.return_code, packet.session_present, packet.properties)


def encode_publish5_packet(packet: Publish, version: int) -> bytes:
    return encode_publish5(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id,
        encode_properties(packet.properties),
    )


_ACK_HEADERS = {PubAck: b"\x40\x02", PubRec: b"\x50\x02", PubRel: b"\x62\x02", PubComp: b"\x70\x02"}


def encode_ack5_packet(packet: PubAck | PubRec | PubRel | PubComp, version: int) -> bytes:
    return encode_ack5(
        _ACK_HEADERS[type(packet)], packet.packet_id, packet.reason_code, packet.properties
    )


def _options(sub: Subscription) -> int:
    """The Subscription Options byte (section 3.8.3.1)."""
    return (
        sub.qos
        | (0x04 if sub.no_local else 0)
        | (0x08 if sub.retain_as_published else 0)
        | (sub.retain_handling << 4)
    )


def encode_subscribe5_packet(packet: Subscribe, version: int) -> bytes:
    body = (
        packet.packet_id.to_bytes(2, "big")
        + encode_properties(packet.properties)
        + b"".join(
            encode_string(sub.topic_filter) + bytes((_options(sub),))
            for sub in packet.subscriptions
        )
    )
    return fixed_header(0x82, len(body)) + body


def encode_suback5_packet(packet: SubAck, version: int) -> bytes:
    return encode_suback5(packet.packet_id, bytes(packet.return_codes), packet.properties)


def encode_unsubscribe5_packet(packet: Unsubscribe, version: int) -> bytes:
    body = (
        packet.packet_id.to_bytes(2, "big")
        + encode_properties(packet.properties)
        + b"".join(encode_string(topic_filter) for topic_filter in packet.topic_filters)
    )
    return fixed_header(0xA2, len(body)) + body


def encode_unsuback5_packet(packet: UnsubAck, version: int) -> bytes:
    if not packet.reason_codes:
        raise ValueError("a 5.0 UNSUBACK needs one reason code per topic filter")
    body = (
        packet.packet_id.to_bytes(2, "big")
        + encode_properties(packet.properties)
        + bytes(packet.reason_codes)
    )
    return fixed_header(0xB0, len(body)) + body


def encode_disconnect5_packet(packet: Disconnect, version: int) -> bytes:
    return encode_disconnect5(packet.reason_code, packet.properties)


def encode_auth5_packet(packet: Auth, version: int) -> bytes:
    return _reason_and_properties(0xF0, packet.reason_code, packet.properties)
