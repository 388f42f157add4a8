"""A Message as bytes in Redis: retained values, queued and forwarded messages.

One layout for all of them, so a message read back is the message written:

    flags (1 byte)    bits 0-1 QoS, bit 2 retain, bit 3 properties, bit 4 expiry
    topic length (2)  big-endian, then the topic in UTF-8
    expires_at (8)    a big-endian double (wall clock), only with bit 4
    properties        the PUBLISH property block (its length first), only with bit 3
    payload           the rest

Sans-IO: bytes in, bytes out; a bad value raises `CorruptValue`, which the
store turns into an error naming the key.
"""

from __future__ import annotations

import struct
from typing import Final

from midge.message import Message
from midge.protocol.errors import MQTTError
from midge.protocol.properties import PUBLISH, decode_properties, encode_properties

_QOS: Final = 0x03
_RETAIN: Final = 0x04
_PROPERTIES: Final = 0x08
_EXPIRY: Final = 0x10
_KNOWN: Final = _QOS | _RETAIN | _PROPERTIES | _EXPIRY
_TOPIC_LENGTH = struct.Struct(">H")
_EXPIRES_AT = struct.Struct(">d")


class CorruptValue(ValueError):
    """Bytes that are not a message this codec wrote."""


def encode_message(message: Message) -> bytes:
    topic = message.topic.encode()
    flags = message.qos | (_RETAIN if message.retain else 0)
    parts = [b"", _TOPIC_LENGTH.pack(len(topic)), topic]
    if message.expires_at is not None:
        flags |= _EXPIRY
        parts.append(_EXPIRES_AT.pack(message.expires_at))
    if message.properties is not None:
        flags |= _PROPERTIES
        parts.append(encode_properties(message.properties))
    parts[0] = bytes((flags,))
    parts.append(message.payload)
    return b"".join(parts)


def decode_message(data: bytes) -> Message:
    end = len(data)
    if end < 3:
        raise CorruptValue(f"{end} bytes: too short for a message")
    flags = data[0]
    qos = flags & _QOS
    if flags & ~_KNOWN or qos == 3:
        raise CorruptValue(f"unknown flags {flags:#04x}")
    (length,) = _TOPIC_LENGTH.unpack_from(data, 1)
    pos = 3 + length
    if pos > end:
        raise CorruptValue("the topic runs past the end")
    try:
        topic = data[3:pos].decode()
    except UnicodeDecodeError:
        raise CorruptValue("the topic is not UTF-8") from None
    expires_at = None
    if flags & _EXPIRY:
        if pos + 8 > end:
            raise CorruptValue("the expiry runs past the end")
        (expires_at,) = _EXPIRES_AT.unpack_from(data, pos)
        pos += 8
    properties = None
    if flags & _PROPERTIES:
        try:
            properties, pos = decode_properties(data, pos, end, PUBLISH)
        except MQTTError as exc:
            raise CorruptValue(f"bad properties: {exc}") from None
    return Message(topic, data[pos:], qos, bool(flags & _RETAIN), properties, expires_at)


_INTERVAL = struct.Struct(">q")  # -1: no Message Expiry Interval


def encode_will(message: Message, expiry_interval: int | None) -> bytes:
    """A stored will: its expiry interval (counted from when it is published),
    then the message without an expiry time."""
    interval = -1 if expiry_interval is None else expiry_interval
    return _INTERVAL.pack(interval) + encode_message(message)


def decode_will(data: bytes) -> tuple[Message, int | None]:
    if len(data) < _INTERVAL.size:
        raise CorruptValue(f"{len(data)} bytes: too short for a will")
    (interval,) = _INTERVAL.unpack_from(data)
    return decode_message(data[_INTERVAL.size :]), None if interval < 0 else interval
