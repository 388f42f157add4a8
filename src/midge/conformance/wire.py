"""Hand-built packet bytes for scenarios that must send what the codec refuses to encode."""

from __future__ import annotations

from midge.protocol.codec import encode_remaining_length


def field(data: bytes) -> bytes:
    """A length-prefixed field (string or binary data) of section 1.5.3."""
    return len(data).to_bytes(2, "big") + data


def packet(first_byte: int, body: bytes) -> bytes:
    """A fixed header with a correct remaining length, then `body`."""
    return bytes((first_byte,)) + encode_remaining_length(len(body)) + body


def connect(
    flags: int,
    payload: bytes,
    keep_alive: int = 60,
    level: int = 4,
    protocol_name: bytes = b"MQTT",
) -> bytes:
    """A CONNECT with any connect flags byte and an already encoded payload."""
    variable = field(protocol_name) + bytes((level, flags)) + keep_alive.to_bytes(2, "big")
    return packet(0x10, variable + payload)


def publish(
    first_byte: int, topic: bytes, payload: bytes = b"", packet_id: int | None = None
) -> bytes:
    """A PUBLISH with any first byte and raw topic bytes."""
    ident = b"" if packet_id is None else packet_id.to_bytes(2, "big")
    return packet(first_byte, field(topic) + ident + payload)


def subscribe(first_byte: int, packet_id: int, *filters: tuple[bytes, int]) -> bytes:
    """A SUBSCRIBE with any first byte and raw (filter, options byte) pairs."""
    body = b"".join(field(topic_filter) + bytes((options,)) for topic_filter, options in filters)
    return packet(first_byte, packet_id.to_bytes(2, "big") + body)


def unsubscribe(first_byte: int, packet_id: int, *filters: bytes) -> bytes:
    """An UNSUBSCRIBE with any first byte and raw filters."""
    body = b"".join(field(topic_filter) for topic_filter in filters)
    return packet(first_byte, packet_id.to_bytes(2, "big") + body)


# ------------------------------------------------------------------ MQTT 5.0


def properties(*items: bytes) -> bytes:
    """A property block: its variable byte integer length, then the items as given.

    Items are raw (`prop(...)`) so a scenario can send duplicates, properties a
    packet may not carry, or values out of range.
    """
    body = b"".join(items)
    return encode_remaining_length(len(body)) + body


def prop(identifier: int, value: bytes) -> bytes:
    """One property: its identifier byte and its already encoded value."""
    return bytes((identifier,)) + value


def four_bytes(value: int) -> bytes:
    return value.to_bytes(4, "big")


def two_bytes(value: int) -> bytes:
    return value.to_bytes(2, "big")


def connect5(flags: int, props: bytes, payload: bytes, keep_alive: int = 60) -> bytes:
    """A level 5 CONNECT with a raw property block and an already encoded payload."""
    variable = field(b"MQTT") + bytes((5, flags)) + keep_alive.to_bytes(2, "big") + props
    return packet(0x10, variable + payload)


def publish5(
    first_byte: int, topic: bytes, props: bytes, payload: bytes = b"", packet_id: int | None = None
) -> bytes:
    """A 5.0 PUBLISH with any first byte, raw topic bytes and a raw property block."""
    ident = b"" if packet_id is None else packet_id.to_bytes(2, "big")
    return packet(first_byte, field(topic) + ident + props + payload)


def subscribe5(packet_id: int, props: bytes, *filters: tuple[bytes, int]) -> bytes:
    """A 5.0 SUBSCRIBE with a raw property block and raw (filter, options byte) pairs."""
    body = b"".join(field(topic_filter) + bytes((options,)) for topic_filter, options in filters)
    return packet(0x82, packet_id.to_bytes(2, "big") + props + body)
