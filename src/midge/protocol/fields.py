"""The data representations of section 1.5, both ways, shared by every protocol level.

Reading: `Reader` walks one packet body field by field, `decode_utf8` checks a
string, `topic_name` checks a PUBLISH topic through a cache. Writing:
`encode_remaining_length`, `encode_string`, `encode_binary`, `fixed_header`.
The 3.1.1 codec (codec.py, encoding.py) and the 5.0 one (codec5.py,
encoding5.py) both build on these, so neither imports the other.
"""

from __future__ import annotations

from typing import Final

from midge.protocol.errors import MalformedPacket, ProtocolError
from midge.protocol.properties import Properties, decode_properties
from midge.protocol.topics import is_valid_topic_name

MAX_REMAINING_LENGTH = 268_435_455
"""The largest remaining length four length bytes can express."""

MAX_PACKET_SIZE = MAX_REMAINING_LENGTH + 5
"""A whole packet: one type byte, four length bytes, the rest."""

# ------------------------------------------------------------------ reading


class Reader:
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

    def properties(self, packet: int) -> Properties | None:
        """A 5.0 property block of `packet` (a packet type, or properties.WILL)."""
        properties, self.pos = decode_properties(self.data, self.pos, len(self.data), packet)
        return properties

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


VALID_TOPIC_CACHE_SIZE = 4096
# Topic bytes already decoded and found valid: most traffic repeats a few
# topics, so a dict lookup replaces UTF-8 decoding and the topic checks.
valid_topics: Final[dict[bytes, str]] = {}


def topic_name(raw: bytes) -> str:
    """The PUBLISH topic name in `raw`, checked [MQTT-3.3.2-2] and remembered."""
    topic = valid_topics.get(raw)
    if topic is None:
        topic = decode_utf8(raw)
        if not is_valid_topic_name(topic):
            raise ProtocolError(f"invalid topic name {topic!r} in PUBLISH")
        if len(valid_topics) >= VALID_TOPIC_CACHE_SIZE:
            valid_topics.clear()
        valid_topics[raw] = topic
    return topic


# ------------------------------------------------------------------ writing


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


def fixed_header(first_byte: int, body_length: int) -> bytes:
    return bytes((first_byte,)) + encode_remaining_length(body_length)
