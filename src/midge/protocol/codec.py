"""Bytes <-> packets for MQTT 3.1 (level 3), 3.1.1 (level 4) and 5.0 (level 5).

`encode(packet, version)` returns the bytes of one packet (encoding.py,
re-exported here). `Decoder` takes bytes as they arrive (`feed`) and hands
out whole packets one at a time (`next_packet`), so a caller handles every
packet before a later malformed one ends the connection. The decoder raises
only `MalformedPacket`, `ProtocolError` and `PacketTooLarge`; anything else
is a bug.

The protocol version matters only after CONNECT (which carries its own
level): the connection sets `Decoder.version` once it has read it. This
module holds the 3.1/3.1.1 decoders and the dispatch; where 5.0 lays a packet
out differently, each decoder hands the body to codec5.py. The 3.1.1 hot
paths (PUBLISH, the 2-byte acknowledgements) test the version only where
5.0 differs, so they cost what they did before 5.0 existed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from midge.protocol.codec5 import (
    decode_ack5,
    decode_auth5,
    decode_connack5,
    decode_disconnect5,
    decode_suback5,
    decode_subscribe5,
    decode_unsuback5,
    decode_unsubscribe5,
    publish5_at,
)
from midge.protocol.encoding import (
    MAX_PACKET_SIZE,
    MAX_REMAINING_LENGTH,
    PUBACK_HEADER,
    PUBCOMP_HEADER,
    PUBREC_HEADER,
    PUBREL_HEADER,
    encode,
    encode_ack,
    encode_binary,
    encode_connack,
    encode_publish,
    encode_publish_head,
    encode_remaining_length,
    encode_string,
    encode_suback,
)
from midge.protocol.encoding5 import (
    encode_ack5,
    encode_connack5,
    encode_disconnect5,
    encode_publish5,
    encode_suback5,
)
from midge.protocol.errors import MalformedPacket, PacketTooLarge, ProtocolError
from midge.protocol.fields import (
    VALID_TOPIC_CACHE_SIZE,
    Reader,
    decode_utf8,
    topic_name,
    valid_topics,
)
from midge.protocol.packets import (
    BRIDGE_BIT,
    PROTOCOL_MQTT_3_1_1,
    PROTOCOL_MQTT_5,
    SUPPORTED_PROTOCOLS,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
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
    Will,
)
from midge.protocol.properties import WILL, Properties
from midge.protocol.topics import is_valid_topic_name

__all__ = [
    "MAX_PACKET_SIZE",
    "MAX_REMAINING_LENGTH",
    "PUBACK_HEADER",
    "PUBCOMP_HEADER",
    "PUBREC_HEADER",
    "PUBREL_HEADER",
    "VALID_TOPIC_CACHE_SIZE",
    "Decoder",
    "check_first_byte",
    "decode_all",
    "decode_body",
    "decode_utf8",
    "encode",
    "encode_ack",
    "encode_ack5",
    "encode_binary",
    "encode_connack",
    "encode_connack5",
    "encode_disconnect5",
    "encode_publish",
    "encode_publish5",
    "encode_publish_head",
    "encode_remaining_length",
    "encode_string",
    "encode_suback",
    "encode_suback5",
]

_SUBACK_CODES = frozenset((0, 1, 2, 0x80))

# Flag nibble each packet type must carry; PUBLISH (None) has its own rules.
_REQUIRED_FLAGS: dict[int, int | None] = {
    PacketType.CONNECT: 0,
    PacketType.CONNACK: 0,
    PacketType.PUBLISH: None,
    PacketType.PUBACK: 0,
    PacketType.PUBREC: 0,
    PacketType.PUBREL: 2,
    PacketType.PUBCOMP: 0,
    PacketType.SUBSCRIBE: 2,
    PacketType.SUBACK: 0,
    PacketType.UNSUBSCRIBE: 2,
    PacketType.UNSUBACK: 0,
    PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0,
    PacketType.DISCONNECT: 0,
    PacketType.AUTH: 0,
}


# ------------------------------------------------------------------ decoding


def _decode_connect(flags: int, body: bytes, version: int) -> Connect:
    """Any level: a CONNECT carries its own, which says how the rest is laid out."""
    reader = Reader(body)
    protocol_name = reader.string()
    level = reader.byte()
    connect_flags = reader.byte()
    keep_alive = reader.uint16()
    if protocol_name not in SUPPORTED_PROTOCOLS:
        raise ProtocolError(f"unknown protocol name {protocol_name!r}")  # [MQTT-3.1.2-1]
    bridge = level & BRIDGE_BIT and level ^ BRIDGE_BIT < PROTOCOL_MQTT_5
    if bridge:
        level ^= BRIDGE_BIT
    if level not in SUPPORTED_PROTOCOLS[protocol_name]:
        # The layout of the rest depends on the level, so it is not parsed: the
        # broker answers CONNACK 1 (unacceptable protocol version) [MQTT-3.1.2-2].
        return Connect(client_id="", protocol_level=level, protocol_name=protocol_name)
    v5 = level == PROTOCOL_MQTT_5
    if connect_flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag is set")  # [MQTT-3.1.2-3]
    will_flag = bool(connect_flags & 0x04)
    will_qos = (connect_flags >> 3) & 0x03
    will_retain = bool(connect_flags & 0x20)
    has_password = bool(connect_flags & 0x40)
    has_username = bool(connect_flags & 0x80)
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket("will QoS or retain set without the will flag")  # 3.1.2-11/13/15
    if will_qos == 3:
        raise MalformedPacket("will QoS 3")  # [MQTT-3.1.2-14]
    # 5.0 allows a password without a user name (section 3.1.2.9); 3.1 has no rule.
    if has_password and not has_username and level == PROTOCOL_MQTT_3_1_1:
        raise MalformedPacket("password flag set without the user name flag")  # 3.1.2-22
    properties = _connect_properties(reader) if v5 else None
    client_id = reader.string()
    will = None
    if will_flag:
        will_properties = reader.properties(WILL) if v5 else None  # before the topic in 5.0
        will_topic = reader.string()
        will_payload = reader.binary()
        if not is_valid_topic_name(will_topic):
            raise ProtocolError(f"invalid will topic {will_topic!r}")
        will = Will(will_topic, will_payload, will_qos, will_retain, will_properties)
    username = reader.string() if has_username else None
    password = reader.binary() if has_password else None
    reader.expect_end("CONNECT payload")
    return Connect(
        client_id=client_id,
        clean_session=bool(connect_flags & 0x02),
        keep_alive=keep_alive,
        username=username,
        password=password,
        will=will,
        protocol_level=level,
        protocol_name=protocol_name,
        properties=properties,
        bridge=bool(bridge),
    )


def _connect_properties(reader: Reader) -> Properties | None:
    properties = reader.properties(PacketType.CONNECT)
    if (
        properties is not None
        and properties.authentication_data is not None
        and properties.authentication_method is None
    ):
        # Data means nothing without its method (section 3.1.2.11.10).
        raise ProtocolError("CONNECT has Authentication Data without a method")
    return properties


def _decode_connack(flags: int, body: bytes, version: int) -> ConnAck:
    if version >= PROTOCOL_MQTT_5:
        return decode_connack5(body)
    if len(body) != 2:
        raise MalformedPacket("CONNACK remaining length must be 2")
    if body[0] & 0xFE:
        raise MalformedPacket("CONNACK acknowledge flags have reserved bits set")
    if body[0] and body[1]:
        raise ProtocolError("refusing CONNACK claims a session")  # [MQTT-3.2.2-4]
    return ConnAck(return_code=body[1], session_present=bool(body[0] & 0x01))


# Bound here, not used under its imported name: CPython 3.11 compiles
# `imported_name.get(...)` as an attribute load plus a call, 60 ns slower.
_valid_topics: Final = valid_topics


def _decode_publish(flags: int, body: bytes, version: int) -> Publish:
    if version >= PROTOCOL_MQTT_5:
        return publish5_at(flags, body, 0, len(body))
    return _publish_at(flags, body, 0, len(body))


def _publish_at(flags: int, data: bytes, begin: int, end: int) -> Publish:
    """The 3.1/3.1.1 PUBLISH whose body is `data[begin:end]`, parsed in place: it
    is most of the traffic, so no `Reader`, and no copy of the body before its
    payload's. A topic already seen is looked up here, inline, for speed; a new
    one goes through `fields.topic_name`."""
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
    topic = _valid_topics.get(raw_topic)
    if topic is None:
        topic = topic_name(raw_topic)
    packet_id = None
    if qos:
        if start + 2 > end:
            raise MalformedPacket("packet ends before a two-byte field")
        packet_id = (data[start] << 8) | data[start + 1]
        if packet_id == 0:
            raise ProtocolError("PUBLISH with QoS > 0 and packet id 0")  # [MQTT-2.3.1-1]
        start += 2
    return Publish(topic, data[start:end], qos, bool(flags & 0x01), dup, packet_id)


_Ack = PubAck | PubRec | PubRel | PubComp


def _acknowledgement(cls: type[_Ack]) -> Callable[[int, bytes, int], Packet]:
    packet_type = int(PacketType[cls.__name__.upper()])

    def decode_ack(flags: int, body: bytes, version: int) -> Packet:
        # Remaining length 2 is the whole packet below 5.0 and 5.0's short form
        # (reason 0, no properties), so that hot case is read here for both.
        if len(body) != 2:
            if version >= PROTOCOL_MQTT_5:
                return cls(*decode_ack5(packet_type, body))
            raise MalformedPacket(f"{cls.__name__.upper()} remaining length must be 2")
        packet_id = (body[0] << 8) | body[1]
        if packet_id == 0:
            raise ProtocolError(f"{cls.__name__.upper()} with packet id 0")
        return cls(packet_id)

    return decode_ack


def _decode_subscribe(flags: int, body: bytes, version: int) -> Subscribe:
    """Parsed inline, not by `Reader`: a SUBSCRIBE may carry many filters."""
    if version >= PROTOCOL_MQTT_5:
        return decode_subscribe5(body)
    size = len(body)
    if size < 2:
        raise MalformedPacket("packet ends before a two-byte field")
    packet_id = (body[0] << 8) | body[1]
    if packet_id == 0:
        raise ProtocolError("SUBSCRIBE with packet id 0")  # [MQTT-2.3.1-1]
    subscriptions = []
    pos = 2
    while pos < size:
        if pos + 2 > size:
            raise MalformedPacket("packet ends before a two-byte field")
        end = pos + 2 + ((body[pos] << 8) | body[pos + 1])
        if end > size:
            raise MalformedPacket("length-prefixed field runs past the end of the packet")
        topic_filter = decode_utf8(body[pos + 2 : end])
        if end >= size:
            raise MalformedPacket("packet ends before a one-byte field")
        options = body[end]
        pos = end + 1
        if options & 0xFC:
            raise MalformedPacket("SUBSCRIBE requested QoS byte has reserved bits set")
        if options == 3:
            raise MalformedPacket("SUBSCRIBE requests QoS 3")  # [MQTT-3.8.3-4]
        subscriptions.append(Subscription(topic_filter, options))
    if not subscriptions:
        raise ProtocolError("SUBSCRIBE without topic filters")  # [MQTT-3.8.3-3]
    return Subscribe(packet_id, tuple(subscriptions))


def _decode_suback(flags: int, body: bytes, version: int) -> SubAck:
    if version >= PROTOCOL_MQTT_5:
        return decode_suback5(body)
    reader = Reader(body)
    packet_id = reader.uint16()
    if packet_id == 0:
        raise ProtocolError("SUBACK with packet id 0")
    codes = tuple(reader.rest())
    if not codes or any(code not in _SUBACK_CODES for code in codes):
        raise MalformedPacket("SUBACK return codes must be 0, 1, 2 or 0x80")
    return SubAck(packet_id, codes)


def _decode_unsubscribe(flags: int, body: bytes, version: int) -> Unsubscribe:
    if version >= PROTOCOL_MQTT_5:
        return decode_unsubscribe5(body)
    reader = Reader(body)
    packet_id = reader.uint16()
    if packet_id == 0:
        raise ProtocolError("UNSUBSCRIBE with packet id 0")  # [MQTT-2.3.1-1]
    topic_filters = []
    while reader.remaining():
        topic_filters.append(reader.string())
    if not topic_filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters")  # [MQTT-3.10.3-2]
    return Unsubscribe(packet_id, tuple(topic_filters))


def _no_body(cls: type) -> Callable[[int, bytes, int], Packet]:
    instance: Packet = cls()

    def decode_empty(flags: int, body: bytes, version: int) -> Packet:
        if body:
            raise MalformedPacket(f"{cls.__name__.upper()} must have remaining length 0")
        return instance

    return decode_empty


def _decode_unsuback(flags: int, body: bytes, version: int) -> UnsubAck:
    if version >= PROTOCOL_MQTT_5:
        return decode_unsuback5(body)
    if len(body) != 2:
        raise MalformedPacket("UNSUBACK remaining length must be 2")
    packet_id = (body[0] << 8) | body[1]
    if packet_id == 0:
        raise ProtocolError("UNSUBACK with packet id 0")
    return UnsubAck(packet_id)


_disconnect = _no_body(Disconnect)


def _decode_disconnect(flags: int, body: bytes, version: int) -> Packet:
    if version >= PROTOCOL_MQTT_5:
        return decode_disconnect5(body)
    return _disconnect(flags, body, version)


def _decode_auth(flags: int, body: bytes, version: int) -> Auth:
    if version < PROTOCOL_MQTT_5:
        raise MalformedPacket("reserved packet type 15 (AUTH is 5.0 only)")
    return decode_auth5(body)


_DECODERS: dict[int, Callable[[int, bytes, int], Packet]] = {
    PacketType.CONNECT: _decode_connect,
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBLISH: _decode_publish,
    PacketType.PUBACK: _acknowledgement(PubAck),
    PacketType.PUBREC: _acknowledgement(PubRec),
    PacketType.PUBREL: _acknowledgement(PubRel),
    PacketType.PUBCOMP: _acknowledgement(PubComp),
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: _decode_unsuback,
    PacketType.PINGREQ: _no_body(PingReq),
    PacketType.PINGRESP: _no_body(PingResp),
    PacketType.DISCONNECT: _decode_disconnect,
    PacketType.AUTH: _decode_auth,
}


def decode_body(first_byte: int, body: bytes, version: int = PROTOCOL_MQTT_3_1_1) -> Packet:
    """Decode one packet from its first byte and the bytes after its remaining length."""
    check_first_byte(first_byte, version)
    return _DECODERS[first_byte >> 4](first_byte & 0x0F, body, version)


def _first_byte_is_valid(first_byte: int) -> bool:
    try:
        check_first_byte(first_byte)
    except MalformedPacket:
        return False
    return True


def check_first_byte(first_byte: int, version: int = PROTOCOL_MQTT_3_1_1) -> None:
    """Reject reserved packet types (0, and 15 below 5.0) and wrong fixed-header
    flags [MQTT-2.2.2-2]."""
    packet_type = first_byte >> 4
    if packet_type not in _DECODERS or (
        packet_type == PacketType.AUTH and version < PROTOCOL_MQTT_5
    ):
        raise MalformedPacket(f"reserved packet type {packet_type}")
    required = _REQUIRED_FLAGS[packet_type]
    flags = first_byte & 0x0F
    if required is not None and flags != required:
        raise MalformedPacket(
            f"{PacketType(packet_type).name} with flags {flags:04b}, expected {required:04b}"
        )


# Valid at every version; AUTH's 0xF0, valid at 5.0 only, takes the slow check.
_VALID_FIRST_BYTES = frozenset(byte for byte in range(256) if _first_byte_is_valid(byte))


_EMPTY = b""


_PUBLISH: Final = 3  # PacketType.PUBLISH as a constant: no IntEnum lookup per packet


class Decoder:
    """Incremental decoder: `feed` bytes in any chunks, take packets with `next_packet`.

    Input is parsed from the bytes as they were fed, uncopied, and dropped as
    soon as every packet in them is taken: an idle connection's decoder holds
    no buffer. Only the rest of a packet cut short by the end of a read is
    kept, in a growable `_spill`, so a packet arriving in many small reads
    costs linear time, not a copy of all that came so far on every read.
    """

    __slots__ = ("_buffer", "_need", "_pos", "_spill", "max_packet_size", "version")

    def __init__(
        self, version: int = PROTOCOL_MQTT_3_1_1, max_packet_size: int = MAX_PACKET_SIZE
    ) -> None:
        self.version = version
        self.max_packet_size = max_packet_size
        self._buffer = _EMPTY  # input from `_pos` on is not yet taken
        self._pos = 0
        # An unfinished packet's bytes as they accumulate (None: nothing unfinished
        # beyond `_buffer`), and how many it takes to finish it (0: not known yet).
        self._spill: bytearray | None = None
        self._need = 0

    def feed(self, data: bytes) -> None:
        spill = self._spill
        if spill is not None:
            spill += data
            return
        buffer = self._buffer
        pos = self._pos
        if pos >= len(buffer):
            self._buffer = data if type(data) is bytes else bytes(data)
        else:
            # A packet was cut short: keep its start and what follows, growably.
            spill = self._spill = bytearray(memoryview(buffer)[pos:])
            spill += data
            self._buffer = _EMPTY
        self._pos = 0

    def buffered(self) -> int:
        """Bytes received but not yet returned as packets."""
        spill = self._spill
        if spill is not None:
            return len(spill)
        return len(self._buffer) - self._pos

    def next_packet(self) -> Packet | None:
        """The next whole packet, or None until more bytes arrive."""
        spill = self._spill
        if spill is not None:
            if len(spill) < self._need:
                return None  # the unfinished packet still is
            self._buffer = bytes(spill)
            self._pos = 0
            self._spill = None
            self._need = 0  # it was this packet's: the next one sets its own
        buffer = self._buffer
        pos = self._pos
        if pos >= len(buffer):
            if buffer:
                self._buffer = _EMPTY  # all taken: let the input go
                self._pos = 0
            return None
        first_byte = buffer[pos]
        # Judge the first byte at once: garbage must not sit waiting for a length.
        if first_byte not in _VALID_FIRST_BYTES:
            check_first_byte(first_byte, self.version)
        length = 0
        shift = 0
        index = pos + 1
        while True:
            if index >= len(buffer):
                self._need = 0  # the length itself is not complete yet
                return None
            byte = buffer[index]
            length |= (byte & 0x7F) << shift
            index += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift == 28:
                raise MalformedPacket("remaining length longer than four bytes")
        end = index + length
        if end - pos > self.max_packet_size:
            raise PacketTooLarge(f"packet of {end - pos} bytes exceeds {self.max_packet_size}")
        if end > len(buffer):
            self._need = end - pos  # `feed` spills from `pos` on, so counted from there
            return None
        self._pos = end
        if first_byte >> 4 == _PUBLISH:
            if self.version >= PROTOCOL_MQTT_5:
                publish = publish5_at(first_byte & 0x0F, buffer, index, end)
                # Neither DUP nor RETAIN, an empty property block: its head is
                # what every 5.0 receiver without a topic alias gets (Message.wire5;
                # at QoS 0 the head ends with that block, which follows the topic).
                if not first_byte & 0x09 and publish.properties is None:
                    topic_end = index + 2 + ((buffer[index] << 8) | buffer[index + 1])
                    publish.head = buffer[pos : topic_end + (0 if first_byte & 0x06 else 1)]
                return publish
            publish = _publish_at(first_byte & 0x0F, buffer, index, end)
            if not first_byte & 0x09:  # neither DUP nor RETAIN: forwardable as it came
                topic_end = index + 2 + ((buffer[index] << 8) | buffer[index + 1])
                publish.head = buffer[pos:topic_end]
            return publish
        return _DECODERS[first_byte >> 4](first_byte & 0x0F, buffer[index:end], self.version)


def decode_all(data: bytes, version: int = PROTOCOL_MQTT_3_1_1) -> list[Packet]:
    """Every whole packet in `data`; trailing partial bytes are an error."""
    decoder = Decoder(version)
    decoder.feed(data)
    packets = []
    while (packet := decoder.next_packet()) is not None:
        packets.append(packet)
    if decoder.buffered():
        raise MalformedPacket(f"{decoder.buffered()} bytes of an incomplete packet")
    return packets
