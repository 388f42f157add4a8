"""Bytes <-> packets for MQTT 3.1 (level 3) and 3.1.1 (level 4).

`encode(packet, version)` returns the bytes of one packet. `Decoder` takes
bytes as they arrive (`feed`) and hands out whole packets one at a time
(`next_packet`), so a caller handles every packet before a later malformed
one ends the connection. The decoder raises only `MalformedPacket`,
`ProtocolError` and `PacketTooLarge`; anything else is a bug.

The protocol version matters only after CONNECT: the connection sets
`Decoder.version` once it has read the protocol level, so 5.0 decoding can be
added beside 3.1.1 without touching callers.
"""

from __future__ import annotations

from collections.abc import Callable

from midge.protocol.errors import MalformedPacket, PacketTooLarge, ProtocolError
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1_1,
    SUPPORTED_PROTOCOLS,
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
from midge.protocol.topics import is_valid_topic_name

MAX_REMAINING_LENGTH = 268_435_455
"""The largest remaining length four length bytes can express."""

MAX_PACKET_SIZE = MAX_REMAINING_LENGTH + 5
"""A whole packet: one type byte, four length bytes, the rest."""

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
}


# ---------------------------------------------------------------- primitives


def encode_remaining_length(length: int) -> bytes:
    """Variable byte integer of section 2.2.3: 7 bits a byte, high bit = more follows."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} outside 0..{MAX_REMAINING_LENGTH}")
    if length < 128:
        return bytes((length,))
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return encode_binary(data)


def encode_binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"field of {len(data)} bytes exceeds 65535")
    return len(data).to_bytes(2, "big") + data


def _fixed_header(first_byte: int, body_length: int) -> bytes:
    return bytes((first_byte,)) + encode_remaining_length(body_length)


class _Reader:
    """Reads the fields of one packet body; every overrun is MalformedPacket."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise MalformedPacket("packet ends before a one-byte field")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uint16(self) -> int:
        end = self.pos + 2
        if end > len(self.data):
            raise MalformedPacket("packet ends before a two-byte field")
        value = (self.data[self.pos] << 8) | self.data[self.pos + 1]
        self.pos = end
        return value

    def binary(self) -> bytes:
        length = self.uint16()
        end = self.pos + length
        if end > len(self.data):
            raise MalformedPacket("length-prefixed field runs past the end of the packet")
        value = self.data[self.pos : end]
        self.pos = end
        return value

    def string(self) -> str:
        return decode_utf8(self.binary())

    def rest(self) -> bytes:
        value = self.data[self.pos :]
        self.pos = len(self.data)
        return value

    def expect_end(self, what: str) -> None:
        if self.pos != len(self.data):
            raise MalformedPacket(f"{self.remaining()} unexpected bytes after {what}")


def decode_utf8(data: bytes) -> str:
    """UTF-8 per section 1.5.3: well formed, no surrogates, no U+0000 [MQTT-1.5.3-1/2]."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"invalid UTF-8 in a string field: {exc.reason}") from None
    if "\x00" in text:
        raise MalformedPacket("string field contains U+0000")
    return text


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
    return _fixed_header(first, length) + len(topic_bytes).to_bytes(2, "big") + topic_bytes


def _encode_connect(packet: Connect, version: int) -> bytes:
    flags = 0x02 if packet.clean_session else 0
    payload = encode_string(packet.client_id)
    if packet.will is not None:
        flags |= 0x04 | (packet.will.qos << 3) | (0x20 if packet.will.retain else 0)
        payload += encode_string(packet.will.topic) + encode_binary(packet.will.payload)
    if packet.username is not None:
        flags |= 0x80
        payload += encode_string(packet.username)
    if packet.password is not None:
        flags |= 0x40
        payload += encode_binary(packet.password)
    variable = (
        encode_string(packet.protocol_name)
        + bytes((packet.protocol_level, flags))
        + packet.keep_alive.to_bytes(2, "big")
    )
    body = variable + payload
    return _fixed_header(0x10, len(body)) + body


def _encode_connack(packet: ConnAck, version: int) -> bytes:
    # MQTT 3.1 has no session present flag: its first byte is reserved.
    # A refusal never claims a session [MQTT-3.2.2-4].
    present = (
        1
        if packet.session_present and version >= PROTOCOL_MQTT_3_1_1 and not packet.return_code
        else 0
    )
    return bytes((0x20, 2, present, packet.return_code))


def _encode_subscribe(packet: Subscribe, version: int) -> bytes:
    body = packet.packet_id.to_bytes(2, "big") + b"".join(
        encode_string(sub.topic_filter) + bytes((sub.qos,)) for sub in packet.subscriptions
    )
    return _fixed_header(0x82, len(body)) + body


def _encode_suback(packet: SubAck, version: int) -> bytes:
    body = packet.packet_id.to_bytes(2, "big") + bytes(packet.return_codes)
    return _fixed_header(0x90, len(body)) + body


def _encode_unsubscribe(packet: Unsubscribe, version: int) -> bytes:
    body = packet.packet_id.to_bytes(2, "big") + b"".join(
        encode_string(topic_filter) for topic_filter in packet.topic_filters
    )
    return _fixed_header(0xA2, len(body)) + body


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
}


def encode(packet: Packet, version: int = PROTOCOL_MQTT_3_1_1) -> bytes:
    """The wire bytes of `packet` for protocol level `version`."""
    return _ENCODERS[type(packet)](packet, version)


# ------------------------------------------------------------------ decoding


def _decode_connect(flags: int, body: bytes, version: int) -> Connect:
    reader = _Reader(body)
    protocol_name = reader.string()
    level = reader.byte()
    connect_flags = reader.byte()
    keep_alive = reader.uint16()
    if protocol_name not in SUPPORTED_PROTOCOLS:
        raise ProtocolError(f"unknown protocol name {protocol_name!r}")  # [MQTT-3.1.2-1]
    if level != SUPPORTED_PROTOCOLS[protocol_name]:
        # The layout of the rest depends on the level, so it is not parsed: the
        # broker answers CONNACK 1 (unacceptable protocol version) [MQTT-3.1.2-2].
        return Connect(client_id="", protocol_level=level, protocol_name=protocol_name)
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
    if has_password and not has_username and level >= PROTOCOL_MQTT_3_1_1:
        raise MalformedPacket("password flag set without the user name flag")  # 3.1.2-22
    client_id = reader.string()
    will = None
    if will_flag:
        will_topic = reader.string()
        will_payload = reader.binary()
        if not is_valid_topic_name(will_topic):
            raise ProtocolError(f"invalid will topic {will_topic!r}")
        will = Will(will_topic, will_payload, will_qos, will_retain)
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
    )


def _decode_connack(flags: int, body: bytes, version: int) -> ConnAck:
    if len(body) != 2:
        raise MalformedPacket("CONNACK remaining length must be 2")
    if body[0] & 0xFE:
        raise MalformedPacket("CONNACK acknowledge flags have reserved bits set")
    if body[0] and body[1]:
        raise ProtocolError("refusing CONNACK claims a session")  # [MQTT-3.2.2-4]
    return ConnAck(return_code=body[1], session_present=bool(body[0] & 0x01))


VALID_TOPIC_CACHE_SIZE = 4096
# Topic bytes already decoded and found valid: most traffic repeats a few
# topics, so a dict lookup replaces UTF-8 decoding and the topic checks.
_valid_topics: dict[bytes, str] = {}


def _decode_publish(flags: int, body: bytes | bytearray, version: int) -> Publish:
    """PUBLISH, parsed inline: it is most of the traffic, so no `_Reader` here."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")  # [MQTT-3.3.1-4]
    dup = bool(flags & 0x08)
    if dup and qos == 0:
        raise MalformedPacket("PUBLISH with QoS 0 and DUP set")  # [MQTT-3.3.1-2]
    size = len(body)
    if size < 2:
        raise MalformedPacket("packet ends before a two-byte field")
    start = 2 + ((body[0] << 8) | body[1])
    if start > size:
        raise MalformedPacket("length-prefixed field runs past the end of the packet")
    raw_topic = bytes(body[2:start])
    topic = _valid_topics.get(raw_topic)
    if topic is None:
        topic = decode_utf8(raw_topic)
        if not is_valid_topic_name(topic):
            raise ProtocolError(f"invalid topic name {topic!r} in PUBLISH")  # [MQTT-3.3.2-2]
        if len(_valid_topics) >= VALID_TOPIC_CACHE_SIZE:
            _valid_topics.clear()
        _valid_topics[raw_topic] = topic
    packet_id = None
    if qos:
        if start + 2 > size:
            raise MalformedPacket("packet ends before a two-byte field")
        packet_id = (body[start] << 8) | body[start + 1]
        if packet_id == 0:
            raise ProtocolError("PUBLISH with QoS > 0 and packet id 0")  # [MQTT-2.3.1-1]
        start += 2
    return Publish(topic, bytes(body[start:]), qos, bool(flags & 0x01), dup, packet_id)


def _packet_id_only(cls: type) -> Callable[[int, bytes, int], Packet]:
    def decode_ack(flags: int, body: bytes, version: int) -> Packet:
        if len(body) != 2:
            raise MalformedPacket(f"{cls.__name__.upper()} remaining length must be 2")
        packet_id = (body[0] << 8) | body[1]
        if packet_id == 0:
            raise ProtocolError(f"{cls.__name__.upper()} with packet id 0")
        packet: Packet = cls(packet_id)
        return packet

    return decode_ack


def _decode_subscribe(flags: int, body: bytes, version: int) -> Subscribe:
    reader = _Reader(body)
    packet_id = reader.uint16()
    if packet_id == 0:
        raise ProtocolError("SUBSCRIBE with packet id 0")  # [MQTT-2.3.1-1]
    subscriptions = []
    while reader.remaining():
        topic_filter = reader.string()
        options = reader.byte()
        if options & 0xFC:
            raise MalformedPacket("SUBSCRIBE requested QoS byte has reserved bits set")
        if options == 3:
            raise MalformedPacket("SUBSCRIBE requests QoS 3")  # [MQTT-3.8.3-4]
        subscriptions.append(Subscription(topic_filter, options))
    if not subscriptions:
        raise ProtocolError("SUBSCRIBE without topic filters")  # [MQTT-3.8.3-3]
    return Subscribe(packet_id, tuple(subscriptions))


def _decode_suback(flags: int, body: bytes, version: int) -> SubAck:
    reader = _Reader(body)
    packet_id = reader.uint16()
    if packet_id == 0:
        raise ProtocolError("SUBACK with packet id 0")
    codes = tuple(reader.rest())
    if not codes or any(code not in _SUBACK_CODES for code in codes):
        raise MalformedPacket("SUBACK return codes must be 0, 1, 2 or 0x80")
    return SubAck(packet_id, codes)


def _decode_unsubscribe(flags: int, body: bytes, version: int) -> Unsubscribe:
    reader = _Reader(body)
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


_DECODERS: dict[int, Callable[[int, bytes, int], Packet]] = {
    PacketType.CONNECT: _decode_connect,
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBLISH: _decode_publish,
    PacketType.PUBACK: _packet_id_only(PubAck),
    PacketType.PUBREC: _packet_id_only(PubRec),
    PacketType.PUBREL: _packet_id_only(PubRel),
    PacketType.PUBCOMP: _packet_id_only(PubComp),
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: _packet_id_only(UnsubAck),
    PacketType.PINGREQ: _no_body(PingReq),
    PacketType.PINGRESP: _no_body(PingResp),
    PacketType.DISCONNECT: _no_body(Disconnect),
}


def decode_body(first_byte: int, body: bytes, version: int = PROTOCOL_MQTT_3_1_1) -> Packet:
    """Decode one packet from its first byte and the bytes after its remaining length."""
    check_first_byte(first_byte)
    return _DECODERS[first_byte >> 4](first_byte & 0x0F, body, version)


def _first_byte_is_valid(first_byte: int) -> bool:
    try:
        check_first_byte(first_byte)
    except MalformedPacket:
        return False
    return True


def check_first_byte(first_byte: int) -> None:
    """Reject reserved packet types 0 and 15 and wrong fixed-header flags [MQTT-2.2.2-2]."""
    packet_type = first_byte >> 4
    if packet_type not in _DECODERS:
        raise MalformedPacket(f"reserved packet type {packet_type}")
    required = _REQUIRED_FLAGS[packet_type]
    flags = first_byte & 0x0F
    if required is not None and flags != required:
        raise MalformedPacket(
            f"{PacketType(packet_type).name} with flags {flags:04b}, expected {required:04b}"
        )


_VALID_FIRST_BYTES = frozenset(byte for byte in range(256) if _first_byte_is_valid(byte))


class Decoder:
    """Incremental decoder: `feed` bytes in any chunks, take packets with `next_packet`."""

    __slots__ = ("_buffer", "_pos", "max_packet_size", "version")

    def __init__(
        self, version: int = PROTOCOL_MQTT_3_1_1, max_packet_size: int = MAX_PACKET_SIZE
    ) -> None:
        self.version = version
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def buffered(self) -> int:
        """Bytes received but not yet returned as packets."""
        return len(self._buffer) - self._pos

    def next_packet(self) -> Packet | None:
        """The next whole packet, or None until more bytes arrive."""
        buffer = self._buffer
        pos = self._pos
        if pos >= len(buffer):
            return None
        first_byte = buffer[pos]
        # Judge the first byte at once: garbage must not sit waiting for a length.
        if first_byte not in _VALID_FIRST_BYTES:
            check_first_byte(first_byte)
        length = 0
        shift = 0
        index = pos + 1
        while True:
            if index >= len(buffer):
                return None  # the length itself is not complete yet
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
            return None
        self._pos = end
        if first_byte >> 4 == PacketType.PUBLISH:
            # Sliced straight from the buffer: one copy of the payload, not two.
            publish = _decode_publish(first_byte & 0x0F, buffer[index:end], self.version)
            if not first_byte & 0x09:  # neither DUP nor RETAIN: forwardable as it came
                topic_end = index + 2 + ((buffer[index] << 8) | buffer[index + 1])
                publish.head = bytes(buffer[pos:topic_end])
            return publish
        body = bytes(buffer[index:end])
        return _DECODERS[first_byte >> 4](first_byte & 0x0F, body, self.version)


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
