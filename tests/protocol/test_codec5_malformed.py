"""MQTT 5.0 packets the decoder must refuse, each with the error class and reason code.

Malformed Packet is 0x81, Protocol Error 0x82, Topic Alias invalid 0x94 (section
2.4). The bytes are written out by hand; see test_codec5_vectors.py for the layouts.
"""

from __future__ import annotations

import pytest

from midge.protocol.codec import Decoder, check_first_byte, decode_all, decode_body
from midge.protocol.errors import MalformedPacket, MQTTError, ProtocolError, TopicAliasInvalid

MALFORMED = 0x81
PROTOCOL = 0x82


def lp(data: bytes) -> bytes:
    return bytes((len(data) >> 8, len(data) & 0xFF)) + data


def frame(first_byte: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes((first_byte, len(body))) + body


def connect(flags: int, properties: bytes, payload: bytes) -> bytes:
    return frame(0x10, lp(b"MQTT") + b"\x05" + bytes((flags,)) + b"\x00\x3c" + properties + payload)


def publish(properties: bytes, topic: bytes = b"a/b") -> bytes:
    return frame(0x30, lp(topic) + properties + b"payload")


def puback(rest: bytes) -> bytes:
    return frame(0x40, b"\x00\x0a" + rest)


def subscribe(options: int, properties: bytes = b"\x00") -> bytes:
    return frame(0x82, b"\x00\x01" + properties + lp(b"a/b") + bytes((options,)))


REJECTED = [
    # ------------------------------------------------ properties (section 2.2.2)
    pytest.param(puback(b"\x00\x02\x05\x00"), MalformedPacket, MALFORMED, id="unknown-property"),
    pytest.param(puback(b"\x00\x02\x00\x00"), MalformedPacket, MALFORMED, id="property-id-0"),
    pytest.param(
        puback(b"\x00\x03\x23\x00\x01"), MalformedPacket, MALFORMED, id="topic-alias-on-puback"
    ),
    pytest.param(
        publish(b"\x05\x11\x00\x00\x00\x01"),
        MalformedPacket,
        MALFORMED,
        id="session-expiry-on-publish",
    ),
    pytest.param(
        connect(0x02, b"\x05\x18\x00\x00\x00\x01", lp(b"c")),
        MalformedPacket,
        MALFORMED,
        id="will-delay-on-connect",
    ),
    pytest.param(
        connect(0x06, b"\x00", lp(b"c") + b"\x03\x21\x00\x01" + lp(b"w") + lp(b"")),
        MalformedPacket,
        MALFORMED,
        id="receive-maximum-in-will-properties",
    ),
    pytest.param(
        publish(b"\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02"),
        ProtocolError,
        PROTOCOL,
        id="duplicate-message-expiry",
    ),
    pytest.param(
        frame(0x20, b"\x00\x00\x06\x21\x00\x01\x21\x00\x02"),
        ProtocolError,
        PROTOCOL,
        id="duplicate-receive-maximum",
    ),
    pytest.param(
        connect(0x02, b"\x03\x21\x00\x00", lp(b"c")), ProtocolError, PROTOCOL, id="receive-max-0"
    ),
    pytest.param(
        frame(0x20, b"\x00\x00\x05\x27\x00\x00\x00\x00"),
        ProtocolError,
        PROTOCOL,
        id="maximum-packet-size-0",
    ),
    pytest.param(
        connect(0x02, b"\x02\x17\x02", lp(b"c")), ProtocolError, PROTOCOL, id="request-problem-2"
    ),
    pytest.param(frame(0x20, b"\x00\x00\x02\x24\x02"), ProtocolError, PROTOCOL, id="maximum-qos-2"),
    # [MQTT-3.3.2-8]: the receiver reports Topic Alias invalid.
    pytest.param(publish(b"\x03\x23\x00\x00"), TopicAliasInvalid, 0x94, id="topic-alias-0"),
    pytest.param(
        subscribe(0x00, b"\x02\x0b\x00"), ProtocolError, PROTOCOL, id="subscription-identifier-0"
    ),
    pytest.param(
        subscribe(0x00, b"\x04\x0b\x01\x0b\x02"),
        ProtocolError,
        PROTOCOL,
        id="two-subscription-identifiers",
    ),
    pytest.param(
        subscribe(0x00, b"\x05\x0b\x80\x80\x80\x80"),
        MalformedPacket,
        MALFORMED,
        id="subscription-identifier-five-bytes",
    ),
    pytest.param(publish(b"\x02\x23\x00"), MalformedPacket, MALFORMED, id="truncated-property"),
    pytest.param(
        publish(b"\x03\x03\x00\x05abc"), MalformedPacket, MALFORMED, id="string-past-its-block"
    ),
    pytest.param(puback(b"\x00\x05"), MalformedPacket, MALFORMED, id="property-length-past-end"),
    pytest.param(
        frame(0x30, lp(b"a/b") + b"\x80"), MalformedPacket, MALFORMED, id="property-length-cut"
    ),
    pytest.param(
        publish(b"\x05\x03\x00\x02\xc3\x28"), MalformedPacket, MALFORMED, id="bad-utf8-content-type"
    ),
    pytest.param(
        publish(b"\x07\x26\x00\x01k\x00\x01\x00"),
        MalformedPacket,
        MALFORMED,
        id="nul-in-user-property",
    ),
    pytest.param(
        connect(0x02, b"\x05\x16\x00\x02\x01\x02", lp(b"c")),
        ProtocolError,
        PROTOCOL,
        id="authentication-data-without-method",
    ),
    # ------------------------------------------------- reason codes (section 2.4)
    pytest.param(puback(b"\x92"), MalformedPacket, MALFORMED, id="puback-0x92"),
    pytest.param(frame(0x50, b"\x00\x01\x04"), MalformedPacket, MALFORMED, id="pubrec-0x04"),
    pytest.param(frame(0x62, b"\x00\x01\x10"), MalformedPacket, MALFORMED, id="pubrel-0x10"),
    pytest.param(frame(0x70, b"\x00\x01\x87"), MalformedPacket, MALFORMED, id="pubcomp-0x87"),
    pytest.param(frame(0x20, b"\x00\x8e\x00"), MalformedPacket, MALFORMED, id="connack-0x8e"),
    pytest.param(frame(0x90, b"\x00\x01\x00\x11"), MalformedPacket, MALFORMED, id="suback-0x11"),
    pytest.param(frame(0xB0, b"\x00\x01\x00\x02"), MalformedPacket, MALFORMED, id="unsuback-0x02"),
    pytest.param(frame(0xE0, b"\x01"), MalformedPacket, MALFORMED, id="disconnect-0x01"),
    pytest.param(frame(0xF0, b"\x04"), MalformedPacket, MALFORMED, id="auth-0x04"),
    # ---------------------------------------------------------- packet layouts
    pytest.param(subscribe(0x41), MalformedPacket, MALFORMED, id="subscribe-option-bit-6"),
    pytest.param(subscribe(0x80), MalformedPacket, MALFORMED, id="subscribe-option-bit-7"),
    pytest.param(subscribe(0x30), ProtocolError, PROTOCOL, id="retain-handling-3"),
    pytest.param(subscribe(0x03), ProtocolError, PROTOCOL, id="subscribe-qos-3"),
    pytest.param(
        frame(0x82, b"\x00\x01\x00"), ProtocolError, PROTOCOL, id="subscribe-without-filters"
    ),
    pytest.param(
        frame(0x82, b"\x00\x01\x00" + lp(b"a")), MalformedPacket, MALFORMED, id="options-missing"
    ),
    pytest.param(
        frame(0xA2, b"\x00\x01\x00"), ProtocolError, PROTOCOL, id="unsubscribe-without-filters"
    ),
    pytest.param(frame(0x90, b"\x00\x01\x00"), ProtocolError, PROTOCOL, id="suback-without-codes"),
    pytest.param(frame(0xB0, b"\x00\x01"), MalformedPacket, MALFORMED, id="unsuback-3-1-1-form"),
    pytest.param(frame(0xB0, b"\x00\x01\x00"), ProtocolError, PROTOCOL, id="unsuback-no-codes"),
    pytest.param(
        publish(b"\x00", topic=b""), ProtocolError, PROTOCOL, id="empty-topic-without-alias"
    ),
    pytest.param(
        publish(b"\x03\x23\x00\x01", topic=b"a/+"), ProtocolError, PROTOCOL, id="wildcard-topic"
    ),
    pytest.param(frame(0x30, lp(b"a/b")), MalformedPacket, MALFORMED, id="publish-no-properties"),
    pytest.param(frame(0x32, lp(b"a/b") + b"\x00\x00\x00"), ProtocolError, PROTOCOL, id="pid-0"),
    pytest.param(frame(0x20, b"\x02\x00\x00"), MalformedPacket, MALFORMED, id="connack-flag-bit-1"),
    pytest.param(frame(0x20, b"\x01\x80\x00"), ProtocolError, PROTOCOL, id="refusal-with-session"),
    pytest.param(frame(0x20, b"\x00\x00"), MalformedPacket, MALFORMED, id="connack-3-1-1-form"),
    pytest.param(frame(0x20, b"\x00\x01"), MalformedPacket, MALFORMED, id="connack-3-1-1-refusal"),
    pytest.param(puback(b"\x00\x00\x00"), MalformedPacket, MALFORMED, id="puback-trailing-byte"),
    pytest.param(frame(0x40, b"\x00"), MalformedPacket, MALFORMED, id="puback-one-byte"),
    pytest.param(frame(0x40, b"\x00\x00\x10"), ProtocolError, PROTOCOL, id="puback-pid-0"),
    pytest.param(
        frame(0xE0, b"\x00\x00\x00"), MalformedPacket, MALFORMED, id="disconnect-trailing"
    ),
    pytest.param(frame(0xC0, b"\x00"), MalformedPacket, MALFORMED, id="pingreq-with-body"),
    pytest.param(
        connect(0x03, b"\x00", lp(b"c")), MalformedPacket, MALFORMED, id="connect-reserved-flag"
    ),
    pytest.param(
        connect(0x1E, b"\x00", lp(b"c") + b"\x00" + lp(b"w") + lp(b"")),
        MalformedPacket,
        MALFORMED,
        id="connect-will-qos-3",
    ),
    pytest.param(connect(0x02, b"", lp(b"c")), MalformedPacket, MALFORMED, id="connect-no-props"),
    pytest.param(
        connect(0x06, b"\x00", lp(b"c") + lp(b"w") + lp(b"")),
        MalformedPacket,
        MALFORMED,
        id="connect-will-without-its-property-length",
    ),
]


@pytest.mark.parametrize(("wire", "error", "reason_code"), REJECTED)
def test_rejected(wire: bytes, error: type[MQTTError], reason_code: int) -> None:
    with pytest.raises(MQTTError) as info:
        decode_all(wire, 5)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert info.value.reason_code == reason_code


def test_rejected_cases_are_valid_with_one_change() -> None:
    # The helpers themselves build valid packets, so each case fails for its own reason.
    assert decode_all(puback(b"\x00\x00"), 5)
    assert decode_all(publish(b"\x00"), 5)
    assert decode_all(subscribe(0x2E, b"\x02\x0b\x01"), 5)
    assert decode_all(connect(0x02, b"\x00", lp(b"c")), 5)


# ----------------------------------------------------------- AUTH below 5.0


@pytest.mark.parametrize("version", [3, 4])
def test_auth_is_a_reserved_type_below_5(version: int) -> None:
    # Table 2.1 of 3.1.1: type 15 is reserved. Refused on its first byte.
    decoder = Decoder(version)
    decoder.feed(b"\xf0")
    with pytest.raises(MalformedPacket) as info:
        decoder.next_packet()
    assert type(info.value) is MalformedPacket
    assert info.value.reason_code == MALFORMED
    with pytest.raises(MalformedPacket):
        decode_body(0xF0, b"", version)
    with pytest.raises(MalformedPacket):
        decode_all(b"\xf0\x00", version)


def test_auth_first_byte_is_valid_at_5_with_its_flags() -> None:
    check_first_byte(0xF0, 5)
    with pytest.raises(MalformedPacket):
        check_first_byte(0xF1, 5)  # AUTH's reserved flags are 0000 (2.1.3)
    with pytest.raises(MalformedPacket):
        check_first_byte(0x00, 5)
