"""Packets -> bytes for MQTT 3.1 (level 3), 3.1.1 (level 4) and 5.0 (level 5).

`encode(packet, version)` returns the bytes of one packet: this module
writes the 3.1/3.1.1 layouts and CONNECT at every level, encoding5.py the
5.0 layout of the rest. The broker's hot paths skip the packet objects:
`encode_publish`, `encode_publish_head`, `encode_ack`, `encode_connack` and
`encode_suback` take the fields (3.1/3.1.1 only; encoding5.py has their 5.0
counterparts). The codec (codec.py) re-exports all of it beside the decoder.
"""

from __future__ import annotations

from collections.abc import Callable

from midge.protocol.encoding5 import (
    encode_ack5_packet,
    encode_auth5_packet,
    encode_connack5,
    encode_connack5_packet,
    encode_disconnect5_packet,
    encode_publish5_packet,
    encode_suback5_packet,
    encode_subscribe5_packet,
    encode_unsuback5_packet,
    encode_unsubscribe5_packet,
)
from midge.protocol.fields import (
    MAX_PACKET_SIZE,
    MAX_REMAINING_LENGTH,
    encode_binary,
    encode_remaining_length,
    encode_string,
    fixed_header,
)
from midge.protocol.packets import (
    BRIDGE_BIT,
    PROTOCOL_MQTT_3_1_1,
    PROTOCOL_MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from midge.protocol.properties import encode_properties

__all__ = [
    "MAX_PACKET_SIZE",
    "MAX_REMAINING_LENGTH",
    "PUBACK_HEADER",
    "PUBCOMP_HEADER",
    "PUBREC_HEADER",
    "PUBREL_HEADER",
    "encode",
    "encode_ack",
    "encode_binary",
    "encode_connack",
    "encode_publish",
    "encode_publish_head",
    "encode_remaining_length",
    "encode_string",
    "encode_suback",
]

# ------------------------------------------------------------------ encoding


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
) -> bytes:
    """PUBLISH bytes; the hot path calls this directly, skipping the packet object."""
    head = encode_publish_head(topic, len(payload), qos, retain, dup)
    if qos:
        if not packet_id:
            raise ValueError("PUBLISH with QoS > 0 needs a non-zero packet id")
        return head + packet_id.to_bytes(2, "big") + payload
    return head + payload


def encode_publish_head(
    topic: str, payload_length: int, qos: int, retain: bool, dup: bool = False
) -> bytes:
    """A PUBLISH up to its packet id: fixed header, topic. With QoS > 0 the
    packet id (2 bytes) and then the payload follow; QoS 0 has only the payload.
    Routing builds it once per message and reuses it for every receiver."""
    topic_bytes = topic.encode("utf-8")
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    length = 2 + len(topic_bytes) + (2 if qos else 0) + payload_length
    return fixed_header(first, length) + len(topic_bytes).to_bytes(2, "big") + topic_bytes


def _encode_connect(packet: Connect, version: int) -> bytes:
    """Any level: the packet's own, as in decoding. 5.0 adds the properties
    after keep alive and the will's before its topic, and allows a password
    without a user name."""
    v5 = packet.protocol_level == PROTOCOL_MQTT_5
    flags = 0x02 if packet.clean_session else 0
    payload = encode_string(packet.client_id)
    if packet.will is not None:
        flags |= 0x04 | (packet.will.qos << 3) | (0x20 if packet.will.retain else 0)
        if v5:
            payload += encode_properties(packet.will.properties)
        payload += encode_string(packet.will.topic) + encode_binary(packet.will.payload)
    if packet.username is not None:
        flags |= 0x80
        payload += encode_string(packet.username)
    if packet.password is not None:
        flags |= 0x40
        payload += encode_binary(packet.password)
    variable = (
        encode_string(packet.protocol_name)
        + bytes((packet.protocol_level | (BRIDGE_BIT if packet.bridge else 0), flags))
        + packet.keep_alive.to_bytes(2, "big")
    )
    if v5:
        variable += encode_properties(packet.properties)
    body = variable + payload
    return fixed_header(0x10, len(body)) + body


def _encode_connack(packet: ConnAck, version: int) -> bytes:
    return encode_connack(packet.return_code, packet.session_present, version)


_CONNACK_PRESENT = b"\x20\x02\x01\x00"
_CONNACKS = tuple(bytes((0x20, 2, 0, code)) for code in range(6))


def encode_connack(return_code: int, session_present: bool, version: int) -> bytes:
    """CONNACK without a packet object: the broker sends one per connection.
    At version 5 it is `encoding5.encode_connack5` without properties."""
    if version >= PROTOCOL_MQTT_5:
        return encode_connack5(return_code, session_present)
    # MQTT 3.1 has no session present flag: its first byte is reserved.
    # A refusal never claims a session [MQTT-3.2.2-4].
    if session_present and not return_code and version >= PROTOCOL_MQTT_3_1_1:
        return _CONNACK_PRESENT
    if 0 <= return_code < len(_CONNACKS):
        return _CONNACKS[return_code]
    return bytes((0x20, 2, 0, return_code))


def _encode_subscribe(packet: Subscribe, version: int) -> bytes:
    body = packet.packet_id.to_bytes(2, "big") + b"".join(
        encode_string(sub.topic_filter) + bytes((sub.qos,)) for sub in packet.subscriptions
    )
    return fixed_header(0x82, len(body)) + body


def _encode_suback(packet: SubAck, version: int) -> bytes:
    return encode_suback(packet.packet_id, bytes(packet.return_codes))


def encode_suback(packet_id: int, return_codes: bytes) -> bytes:
    """SUBACK without a packet object: one return code byte per filter, in order."""
    return fixed_header(0x90, 2 + len(return_codes)) + packet_id.to_bytes(2, "big") + return_codes


def _encode_unsubscribe(packet: Unsubscribe, version: int) -> bytes:
    body = packet.packet_id.to_bytes(2, "big") + b"".join(
        encode_string(topic_filter) for topic_filter in packet.topic_filters
    )
    return fixed_header(0xA2, len(body)) + body


_Acknowledgement = PubAck | PubRec | PubRel | PubComp | UnsubAck


PUBACK_HEADER = b"\x40\x02"
PUBREC_HEADER = b"\x50\x02"
PUBREL_HEADER = b"\x62\x02"
PUBCOMP_HEADER = b"\x70\x02"


def encode_ack(header: bytes, packet_id: int) -> bytes:
    """PUBACK/PUBREC/PUBREL/PUBCOMP without a packet object: `header` is one of the
    *_HEADER constants. The broker sends one per QoS 1/2 message."""
    return header + packet_id.to_bytes(2, "big")


def _acknowledgement(first_byte: int) -> Callable[[_Acknowledgement, int], bytes]:
    def encode_ack(packet: _Acknowledgement, version: int) -> bytes:
        return bytes((first_byte, 2)) + packet.packet_id.to_bytes(2, "big")

    return encode_ack


def _empty(first_byte: int) -> Callable[[Packet, int], bytes]:
    encoded = bytes((first_byte, 0))
    return lambda packet, version: encoded


def _encode_publish_packet(packet: Publish, version: int) -> bytes:
    return encode_publish(
        packet.topic, packet.payload, packet.qos, packet.retain, packet.dup, packet.packet_id
    )


def _no_auth(packet: Auth, version: int) -> bytes:
    raise ValueError("AUTH exists only in MQTT 5.0")


_ENCODERS: dict[type, Callable[..., bytes]] = {
    Connect: _encode_connect,
    ConnAck: _encode_connack,
    Publish: _encode_publish_packet,
    PubAck: _acknowledgement(0x40),
    PubRec: _acknowledgement(0x50),
    PubRel: _acknowledgement(0x62),
    PubComp: _acknowledgement(0x70),
    Subscribe: _encode_subscribe,
    SubAck: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    UnsubAck: _acknowledgement(0xB0),
    PingReq: _empty(0xC0),
    PingResp: _empty(0xD0),
    Disconnect: _empty(0xE0),
    Auth: _no_auth,
}

_ENCODERS5: dict[type, Callable[..., bytes]] = {
    **_ENCODERS,
    ConnAck: encode_connack5_packet,
    Publish: encode_publish5_packet,
    PubAck: encode_ack5_packet,
    PubRec: encode_ack5_packet,
    PubRel: encode_ack5_packet,
    PubComp: encode_ack5_packet,
    Subscribe: encode_subscribe5_packet,
    SubAck: encode_suback5_packet,
    Unsubscribe: encode_unsubscribe5_packet,
    UnsubAck: encode_unsuback5_packet,
    Disconnect: encode_disconnect5_packet,
    Auth: encode_auth5_packet,
}


def encode(packet: Packet, version: int = PROTOCOL_MQTT_3_1_1) -> bytes:
    """The wire bytes of `packet` for protocol level `version`. Below 5.0 the
    5.0 fields (properties, reason codes) are left out."""
    encoders = _ENCODERS5 if version >= PROTOCOL_MQTT_5 else _ENCODERS
    return encoders[type(packet)](packet, version)
