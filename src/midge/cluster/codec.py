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


# ------------------------------------------------------------------ bundles
# What one batch of a node forwards to another node is one stream entry: a
# bundle of records, one per forwarded message, in order. Redis then does one
# XADD per batch and target node, not one per message, and the receiving node
# reads one bulk string, not a field map per message.
#
#     flags (1)         bit 0 plain, bit 1 shares, bit 2 target
#     sequence (8)      the sender run's number for this forward (0: none)
#     position (2+n)    the sender's place in the change log, as an entry id
#     shares (2+...)    with bit 1: a count, then each share name (2+n)
#     target (2+n)      with bit 2: the one session it is for
#     message (4+n)     encode_message

_PLAIN: Final = 0x01
_SHARES: Final = 0x02
_TARGET: Final = 0x04
_RECORD_HEAD = struct.Struct(">BQ")
_SHORT = struct.Struct(">H")
_LONG = struct.Struct(">I")


class Record:
    """One forwarded message as a bundle carries it."""

    __slots__ = ("message", "plain", "position", "sequence", "shares", "target")

    def __init__(
        self,
        message: bytes,
        plain: bool,
        shares: tuple[str, ...],
        target: str,
        position: bytes,
        sequence: int,
    ) -> None:
        self.message = message  # encode_message bytes
        self.plain = plain
        self.shares = shares
        self.target = target
        self.position = position
        self.sequence = sequence


def encode_record(record: Record) -> bytes:
    flags = (
        (_PLAIN if record.plain else 0)
        | (_SHARES if record.shares else 0)
        | (_TARGET if record.target else 0)
    )
    parts = [
        _RECORD_HEAD.pack(flags, record.sequence),
        _SHORT.pack(len(record.position)),
        record.position,
    ]
    if record.shares:
        parts.append(_SHORT.pack(len(record.shares)))
        for name in record.shares:
            raw = name.encode()
            parts += (_SHORT.pack(len(raw)), raw)
    if record.target:
        raw = record.target.encode()
        parts += (_SHORT.pack(len(raw)), raw)
    parts += (_LONG.pack(len(record.message)), record.message)
    return b"".join(parts)


def decode_bundle(data: bytes) -> list[Record]:
    """The records of a bundle, in order; CorruptValue if it is not one."""
    records = []
    pos = 0
    end = len(data)
    try:
        while pos < end:
            flags, sequence = _RECORD_HEAD.unpack_from(data, pos)
            pos += _RECORD_HEAD.size
            position, pos = _short_bytes(data, pos)
            shares: tuple[str, ...] = ()
            if flags & _SHARES:
                (count,) = _SHORT.unpack_from(data, pos)
                pos += _SHORT.size
                names = []
                for _ in range(count):
                    raw, pos = _short_bytes(data, pos)
                    names.append(raw.decode())
                shares = tuple(names)
            target = ""
            if flags & _TARGET:
                raw, pos = _short_bytes(data, pos)
                target = raw.decode()
            (length,) = _LONG.unpack_from(data, pos)
            pos += _LONG.size
            if pos + length > end:
                raise CorruptValue("a message runs past the end of the bundle")
            message = data[pos : pos + length]
            pos += length
            plain = bool(flags & _PLAIN)
            records.append(Record(message, plain, shares, target, position, sequence))
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptValue(f"not a bundle: {exc}") from None
    return records


def _short_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = _SHORT.unpack_from(data, pos)
    pos += _SHORT.size
    if pos + length > len(data):
        raise CorruptValue("a field runs past the end of the bundle")
    return data[pos : pos + length], pos + length
