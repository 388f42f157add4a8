"""MQTT 5.0 byte vectors built by hand from the OASIS specification.

Every valid vector is checked in both directions at version 5: ``encode(packet, 5)
== wire`` and ``decode_all(wire, 5) == [packet]``; the decode-only vectors are
longer forms the specification allows that the encoder writes shorter. Sections
and [MQTT-x.y.z-n] numbers refer to MQTT Version 5.0 (OASIS Standard, 7 March 2019).
Property identifiers are those of table 2-4; their bytes are spelled out here,
not taken from the codec, so that a wrong table fails.
"""

from __future__ import annotations

from typing import cast

import pytest

from midge.message import Message
from midge.protocol.codec import (
    PUBACK_HEADER,
    PUBREL_HEADER,
    Decoder,
    decode_all,
    decode_body,
    encode,
    encode_ack5,
    encode_connack,
    encode_connack5,
    encode_disconnect5,
    encode_publish5,
    encode_suback5,
)
from midge.protocol.packets import (
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
from midge.protocol.properties import Properties

V5 = 5


def lp(data: bytes) -> bytes:
    """A length-prefixed field (section 1.5.4/1.5.6): big-endian 16-bit length, then data."""
    return bytes((len(data) >> 8, len(data) & 0xFF)) + data


def frame(first_byte: int, body: bytes) -> bytes:
    """A whole packet whose remaining length fits in one byte (section 2.1.4)."""
    assert len(body) < 128
    return bytes((first_byte, len(body))) + body


def props(*items: bytes) -> bytes:
    """A property block: its one-byte length (all blocks here are short), then the items."""
    block = b"".join(items)
    assert len(block) < 128
    return bytes((len(block),)) + block


# ------------------------------------------------------------ CONNECT (3.1)

CONNECT_HEADER = lp(b"MQTT") + b"\x05"  # protocol name and version 5 (3.1.2.1, 3.1.2.2)

EVERY_CONNECT_PROPERTY = Properties(
    session_expiry_interval=3600,
    authentication_method="m",
    authentication_data=b"\x01\x02",
    request_problem_information=0,
    request_response_information=1,
    receive_maximum=20,
    topic_alias_maximum=10,
    user_properties=(("k", "v"),),
    maximum_packet_size=1024,
)
EVERY_CONNECT_PROPERTY_BYTES = props(
    b"\x11\x00\x00\x0e\x10",  # Session Expiry Interval, four-byte integer: 3600
    b"\x15\x00\x01m",  # Authentication Method, UTF-8 string
    b"\x16\x00\x02\x01\x02",  # Authentication Data, binary data
    b"\x17\x00",  # Request Problem Information, byte
    b"\x19\x01",  # Request Response Information, byte
    b"\x21\x00\x14",  # Receive Maximum, two-byte integer: 20
    b"\x22\x00\x0a",  # Topic Alias Maximum: 10
    b"\x26\x00\x01k\x00\x01v",  # User Property, UTF-8 string pair
    b"\x27\x00\x00\x04\x00",  # Maximum Packet Size: 1024
)
EVERY_WILL_PROPERTY = Properties(
    payload_format_indicator=1,
    message_expiry_interval=60,
    content_type="t",
    response_topic="r",
    correlation_data=b"\x00\xff",
    will_delay_interval=5,
    user_properties=(("a", "b"),),
)
EVERY_WILL_PROPERTY_BYTES = props(
    b"\x01\x01",  # Payload Format Indicator: UTF-8
    b"\x02\x00\x00\x00\x3c",  # Message Expiry Interval: 60
    b"\x03\x00\x01t",  # Content Type
    b"\x08\x00\x01r",  # Response Topic
    b"\x09\x00\x02\x00\xff",  # Correlation Data
    b"\x18\x00\x00\x00\x05",  # Will Delay Interval: 5
    b"\x26\x00\x01a\x00\x01b",  # User Property
)

CONNECT_VECTORS = [
    pytest.param(
        Connect("c1", keep_alive=60, protocol_level=V5),
        frame(0x10, CONNECT_HEADER + b"\x02\x00\x3c" + b"\x00" + lp(b"c1")),
        id="connect-minimal",
    ),
    # Flags 0xEE: user name, password, will retain, will QoS 1, will, clean start.
    # Properties follow keep alive (3.1.2.11); the Will Properties come before the
    # will topic (3.1.3.2).
    pytest.param(
        Connect(
            "id",
            keep_alive=10,
            username="u",
            password=b"p",
            will=Will("w", b"bye", qos=1, retain=True, properties=EVERY_WILL_PROPERTY),
            protocol_level=V5,
            properties=EVERY_CONNECT_PROPERTY,
        ),
        frame(
            0x10,
            CONNECT_HEADER
            + b"\xee\x00\x0a"
            + EVERY_CONNECT_PROPERTY_BYTES
            + lp(b"id")
            + EVERY_WILL_PROPERTY_BYTES
            + lp(b"w")
            + lp(b"bye")
            + lp(b"u")
            + lp(b"p"),
        ),
        id="connect-every-property-and-will-property",
    ),
    # A will without properties still has its (empty) property length.
    pytest.param(
        Connect("c", clean_session=False, will=Will("w", b""), protocol_level=V5),
        frame(0x10, CONNECT_HEADER + b"\x04\x00\x00\x00" + lp(b"c") + b"\x00" + lp(b"w") + lp(b"")),
        id="connect-will-without-properties",
    ),
    # 5.0 allows a password without a user name (3.1.2.9): flags 0x42.
    pytest.param(
        Connect("c", password=b"secret", protocol_level=V5),
        frame(0x10, CONNECT_HEADER + b"\x42\x00\x00\x00" + lp(b"c") + lp(b"secret")),
        id="connect-password-without-user-name",
    ),
]

# ------------------------------------------------------------ CONNACK (3.2)

EVERY_CONNACK_PROPERTY = Properties(
    session_expiry_interval=60,
    assigned_client_identifier="abc",
    server_keep_alive=30,
    response_information="ri",
    server_reference="s",
    reason_string="ok",
    receive_maximum=10,
    topic_alias_maximum=5,
    maximum_qos=1,
    retain_available=0,
    maximum_packet_size=65536,
    wildcard_subscription_available=1,
    subscription_identifier_available=0,
    shared_subscription_available=1,
)

CONNACK_VECTORS = [
    # Acknowledge flags, reason code, property length (3.2.2).
    pytest.param(ConnAck(0), b"\x20\x03\x00\x00\x00", id="connack-success"),
    pytest.param(ConnAck(0, True), b"\x20\x03\x01\x00\x00", id="connack-session-present"),
    pytest.param(ConnAck(0x87), b"\x20\x03\x00\x87\x00", id="connack-not-authorized"),
    pytest.param(ConnAck(0x84), b"\x20\x03\x00\x84\x00", id="connack-unsupported-version"),
    pytest.param(
        ConnAck(0, properties=EVERY_CONNACK_PROPERTY),
        frame(
            0x20,
            b"\x00\x00"
            + props(
                b"\x11\x00\x00\x00\x3c",  # Session Expiry Interval
                b"\x12\x00\x03abc",  # Assigned Client Identifier
                b"\x13\x00\x1e",  # Server Keep Alive: 30
                b"\x1a\x00\x02ri",  # Response Information
                b"\x1c\x00\x01s",  # Server Reference
                b"\x1f\x00\x02ok",  # Reason String
                b"\x21\x00\x0a",  # Receive Maximum
                b"\x22\x00\x05",  # Topic Alias Maximum
                b"\x24\x01",  # Maximum QoS
                b"\x25\x00",  # Retain Available
                b"\x27\x00\x01\x00\x00",  # Maximum Packet Size: 65536
                b"\x28\x01",  # Wildcard Subscription Available
                b"\x29\x00",  # Subscription Identifier Available
                b"\x2a\x01",  # Shared Subscription Available
            ),
        ),
        id="connack-every-property",
    ),
]

# ------------------------------------------------------------ PUBLISH (3.3)

EVERY_PUBLISH_PROPERTY = Properties(
    payload_format_indicator=1,
    message_expiry_interval=10,
    content_type="text",
    response_topic="r/1",
    correlation_data=b"\x07",
    subscription_identifiers=(2, 300),
    topic_alias=1,
    user_properties=(("x", "1"), ("x", "2")),  # the same name twice, order kept
)

PUBLISH_VECTORS = [
    # Topic, property length 0, payload (3.3.2).
    pytest.param(
        Publish("a/b", b"hi"), b"\x30\x08\x00\x03a/b\x00hi", id="publish-qos0-no-properties"
    ),
    # The packet identifier comes before the properties.
    pytest.param(
        Publish("a/b", b"hi", qos=1, packet_id=10),
        b"\x32\x0a\x00\x03a/b\x00\x0a\x00hi",
        id="publish-qos1",
    ),
    pytest.param(
        Publish("a/b", b"hi", qos=2, retain=True, packet_id=5, properties=EVERY_PUBLISH_PROPERTY),
        frame(
            0x35,
            lp(b"a/b")
            + b"\x00\x05"
            + props(
                b"\x01\x01",  # Payload Format Indicator
                b"\x02\x00\x00\x00\x0a",  # Message Expiry Interval
                b"\x03\x00\x04text",  # Content Type
                b"\x08\x00\x03r/1",  # Response Topic
                b"\x09\x00\x01\x07",  # Correlation Data
                b"\x0b\x02",  # Subscription Identifier, variable byte integer: 2
                b"\x0b\xac\x02",  # Subscription Identifier: 300 in two bytes
                b"\x23\x00\x01",  # Topic Alias
                b"\x26\x00\x01x\x00\x011",  # User Property
                b"\x26\x00\x01x\x00\x012",  # User Property
            )
            + b"hi",
        ),
        id="publish-every-property",
    ),
    # A zero-length topic stands for the one the Topic Alias names (3.3.2.3.4).
    pytest.param(
        Publish("", b"x", properties=Properties(topic_alias=3)),
        b"\x30\x07\x00\x00\x03\x23\x00\x03x",
        id="publish-alias-only",
    ),
    # Two-byte remaining length: 2 + 1 + 1 + 200 = 204 = 0xCC 0x01.
    pytest.param(
        Publish("t", b"\xab" * 200), b"\x30\xcc\x01\x00\x01t\x00" + b"\xab" * 200, id="publish-long"
    ),
]

# ------------------------------------------- PUBACK, PUBREC, PUBREL, PUBCOMP

ACK_VECTORS = [
    # Reason 0 and no properties: the 3.1.1 form (3.4.2.1).
    pytest.param(PubAck(10), b"\x40\x02\x00\x0a", id="puback-short"),
    # A reason code and no properties: remaining length 3, no property length.
    pytest.param(PubAck(10, 0x10), b"\x40\x03\x00\x0a\x10", id="puback-no-matching-subscribers"),
    pytest.param(
        PubAck(10, 0x87, Properties(reason_string="no")),
        b"\x40\x09\x00\x0a\x87\x05\x1f\x00\x02no",
        id="puback-reason-string",
    ),
    pytest.param(PubRec(1, 0x80), b"\x50\x03\x00\x01\x80", id="pubrec-unspecified-error"),
    pytest.param(PubRec(1), b"\x50\x02\x00\x01", id="pubrec-short"),
    pytest.param(PubRel(2, 0x92), b"\x62\x03\x00\x02\x92", id="pubrel-id-not-found"),
    pytest.param(PubRel(2), b"\x62\x02\x00\x02", id="pubrel-short"),
    pytest.param(
        PubComp(3, 0, Properties(user_properties=(("a", "b"),))),
        b"\x70\x0b\x00\x03\x00\x07\x26\x00\x01a\x00\x01b",
        id="pubcomp-user-property",
    ),
]

# ------------------------------------------- SUBSCRIBE ... UNSUBACK (3.8-3.11)

SUBSCRIBE_VECTORS = [
    pytest.param(
        Subscribe(10, (Subscription("a/b", 1),)),
        b"\x82\x09\x00\x0a\x00\x00\x03a/b\x01",
        id="subscribe-one",
    ),
    # Options 0x2E: QoS 2, No Local, Retain As Published, Retain Handling 2 (3.8.3.1);
    # 0x10: QoS 0, Retain Handling 1. Subscription Identifier 128 is 0x80 0x01.
    pytest.param(
        Subscribe(
            1,
            (
                Subscription("c", 2, no_local=True, retain_as_published=True, retain_handling=2),
                Subscription("d", 0, retain_handling=1),
            ),
            Properties(subscription_identifiers=(128,), user_properties=(("k", "v"),)),
        ),
        frame(
            0x82,
            b"\x00\x01"
            + props(b"\x0b\x80\x01", b"\x26\x00\x01k\x00\x01v")
            + lp(b"c")
            + b"\x2e"
            + lp(b"d")
            + b"\x10",
        ),
        id="subscribe-options-and-identifier",
    ),
    pytest.param(
        SubAck(10, (0, 1, 2, 0x80, 0x87, 0xA2)),
        b"\x90\x09\x00\x0a\x00\x00\x01\x02\x80\x87\xa2",
        id="suback-codes",
    ),
    pytest.param(
        SubAck(1, (0x8F,), Properties(reason_string="bad")),
        b"\x90\x0a\x00\x01\x06\x1f\x00\x03bad\x8f",
        id="suback-reason-string",
    ),
    pytest.param(
        Unsubscribe(10, ("a/b", "c")), b"\xa2\x0b\x00\x0a\x00\x00\x03a/b\x00\x01c", id="unsubscribe"
    ),
    pytest.param(
        Unsubscribe(2, ("x",), Properties(user_properties=(("k", "v"),))),
        b"\xa2\x0d\x00\x02\x07\x26\x00\x01k\x00\x01v\x00\x01x",
        id="unsubscribe-user-property",
    ),
    pytest.param(
        UnsubAck(10, (0, 0x11)), b"\xb0\x05\x00\x0a\x00\x00\x11", id="unsuback-no-subscription"
    ),
    pytest.param(
        UnsubAck(3, (0x87,), Properties(reason_string="x")),
        b"\xb0\x08\x00\x03\x04\x1f\x00\x01x\x87",
        id="unsuback-reason-string",
    ),
]

# ---------------------------------------- PING, DISCONNECT, AUTH (3.12-3.15)

OTHER_VECTORS = [
    pytest.param(PingReq(), b"\xc0\x00", id="pingreq"),
    pytest.param(PingResp(), b"\xd0\x00", id="pingresp"),
    # Normal disconnection without properties: remaining length 0 (3.14.2.1).
    pytest.param(Disconnect(), b"\xe0\x00", id="disconnect-short"),
    pytest.param(Disconnect(0x8E), b"\xe0\x01\x8e", id="disconnect-session-taken-over"),
    pytest.param(
        Disconnect(0, Properties(session_expiry_interval=0)),
        b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00",
        id="disconnect-session-expiry",
    ),
    pytest.param(
        Disconnect(0x9C, Properties(server_reference="h", reason_string="r")),
        b"\xe0\x0a\x9c\x08\x1c\x00\x01h\x1f\x00\x01r",
        id="disconnect-use-another-server",
    ),
    pytest.param(Auth(), b"\xf0\x00", id="auth-short"),
    pytest.param(
        Auth(0x18, Properties(authentication_method="m", authentication_data=b"\x01")),
        b"\xf0\x0a\x18\x08\x15\x00\x01m\x16\x00\x01\x01",
        id="auth-continue",
    ),
    pytest.param(
        Auth(0x19, Properties(authentication_method="m", reason_string="again")),
        b"\xf0\x0e\x19\x0c\x15\x00\x01m\x1f\x00\x05again",
        id="auth-re-authenticate",
    ),
]

ALL_VECTORS = [
    *CONNECT_VECTORS,
    *CONNACK_VECTORS,
    *PUBLISH_VECTORS,
    *ACK_VECTORS,
    *SUBSCRIBE_VECTORS,
    *OTHER_VECTORS,
]
VECTORS: list[tuple[Packet, bytes]] = [
    cast("tuple[Packet, bytes]", tuple(v.values)) for v in ALL_VECTORS
]


@pytest.mark.parametrize(("packet", "wire"), ALL_VECTORS)
def test_vector_round_trip(packet: Packet, wire: bytes) -> None:
    assert encode(packet, V5) == wire
    assert decode_all(wire, V5) == [packet]


@pytest.mark.parametrize(("packet", "wire"), ALL_VECTORS)
def test_vector_decoded_by_decode_body(packet: Packet, wire: bytes) -> None:
    length_bytes = 2 if wire[1] & 0x80 else 1
    assert decode_body(wire[0], wire[1 + length_bytes :], V5) == packet


def test_every_packet_type_has_a_vector() -> None:
    assert {wire[0] >> 4 for _, wire in VECTORS} == {int(t) for t in PacketType}


def test_all_vectors_in_one_stream() -> None:
    wire = b"".join(wire for _, wire in VECTORS)
    assert decode_all(wire, V5) == [packet for packet, _ in VECTORS]


def test_connect_level_decides_its_layout_whatever_the_decoder_version() -> None:
    # CONNECT comes before the connection knows its version.
    for packet, wire in VECTORS:
        if isinstance(packet, Connect):
            assert decode_all(wire, 4) == [packet]
            assert encode(packet, 4) == wire


def test_v5_publish_forwarding_head_only_without_properties() -> None:
    # An empty property block, neither DUP nor RETAIN: its head (up to the packet
    # id) is what Message.wire5 would encode, so 5.0 receivers get it as it came.
    wire = b"\x32\x0a\x00\x03a/b\x00\x0a\x00hi"
    decoder = Decoder(V5)
    decoder.feed(wire)
    packet = decoder.next_packet()
    assert isinstance(packet, Publish)
    assert packet.properties is None
    assert packet.head == wire[:7]
    message = Message("a/b", b"hi", 1)
    assert message.wire5(10) == wire
    decoder.feed(b"\x30\x08\x00\x03a/b\x00hi")  # QoS 0: the head ends with the block
    packet = decoder.next_packet()
    assert isinstance(packet, Publish) and packet.head == b"\x30\x08\x00\x03a/b\x00"
    assert Message("a/b", b"hi").wire5(None) == b"\x30\x08\x00\x03a/b\x00hi"
    # With properties, DUP or RETAIN there is none: such a packet is re-encoded.
    for other in (
        b"\x32\x0c\x00\x03a/b\x00\x0a\x02\x01\x01hi",  # Payload Format Indicator
        b"\x3a\x0a\x00\x03a/b\x00\x0a\x00hi",  # DUP
        b"\x33\x0a\x00\x03a/b\x00\x0a\x00hi",  # RETAIN
    ):
        decoder.feed(other)
        packet = decoder.next_packet()
        assert isinstance(packet, Publish)
        assert packet.head is None


# The longer forms the specification also allows, which the encoder writes shorter.
DECODE_ONLY = [
    pytest.param(b"\x40\x03\x00\x0a\x00", PubAck(10), id="puback-reason-0-no-properties"),
    pytest.param(b"\x40\x04\x00\x0a\x00\x00", PubAck(10), id="puback-empty-properties"),
    pytest.param(b"\x62\x04\x00\x02\x00\x00", PubRel(2), id="pubrel-empty-properties"),
    pytest.param(b"\xe0\x01\x00", Disconnect(), id="disconnect-reason-0"),
    pytest.param(b"\xe0\x02\x00\x00", Disconnect(), id="disconnect-empty-properties"),
    pytest.param(b"\xf0\x01\x00", Auth(), id="auth-reason-0"),
    pytest.param(b"\xf0\x02\x18\x00", Auth(0x18), id="auth-continue-empty-properties"),
]


@pytest.mark.parametrize(("wire", "packet"), DECODE_ONLY)
def test_long_forms_decode(wire: bytes, packet: Packet) -> None:
    assert decode_all(wire, V5) == [packet]
    assert len(encode(packet, V5)) < len(wire)


# ---------------------------------------------------------- hot-path encoders


def test_hot_path_encoders_match_the_vectors() -> None:
    assert encode_publish5("a/b", b"hi", 1, False, False, 10, b"\x00") == (
        b"\x32\x0a\x00\x03a/b\x00\x0a\x00hi"
    )
    assert encode_publish5("", b"x", properties_block=b"\x03\x23\x00\x03") == (
        b"\x30\x07\x00\x00\x03\x23\x00\x03x"
    )
    assert encode_ack5(PUBACK_HEADER, 10) == b"\x40\x02\x00\x0a"
    assert encode_ack5(PUBACK_HEADER, 10, 0x10) == b"\x40\x03\x00\x0a\x10"
    assert encode_ack5(PUBREL_HEADER, 2, 0x92) == b"\x62\x03\x00\x02\x92"
    assert encode_ack5(PUBACK_HEADER, 10, 0, Properties()) == b"\x40\x02\x00\x0a"
    assert encode_ack5(PUBACK_HEADER, 10, 0x87, Properties(reason_string="no")) == (
        b"\x40\x09\x00\x0a\x87\x05\x1f\x00\x02no"
    )
    assert encode_connack5(0, True) == b"\x20\x03\x01\x00\x00"
    assert encode_connack(0, True, 5) == b"\x20\x03\x01\x00\x00"  # the 3.1.1 name, at 5
    # A refusal never claims a session [MQTT-3.2.2-6].
    assert encode_connack5(0x87, True) == b"\x20\x03\x00\x87\x00"
    assert encode_connack5(0, False, Properties(receive_maximum=10)) == (
        b"\x20\x06\x00\x00\x03\x21\x00\x0a"
    )
    assert encode_suback5(10, b"\x00\x80") == b"\x90\x05\x00\x0a\x00\x00\x80"
    assert encode_disconnect5() == b"\xe0\x00"
    assert encode_disconnect5(0x8B) == b"\xe0\x01\x8b"
    assert encode_disconnect5(0x8B, Properties(reason_string="bye")) == (
        b"\xe0\x08\x8b\x06\x1f\x00\x03bye"
    )


def test_qos_publish_needs_a_packet_id() -> None:
    with pytest.raises(ValueError, match="packet id"):
        encode_publish5("t", b"", 1)


def test_auth_cannot_be_encoded_below_5() -> None:
    with pytest.raises(ValueError, match=r"5\.0"):
        encode(Auth(), 4)


def test_v5_fields_are_left_out_below_5() -> None:
    props = Properties(reason_string="x")
    assert encode(PubAck(10, 0x10, props), 4) == b"\x40\x02\x00\x0a"
    assert encode(Disconnect(0x8E, props), 4) == b"\xe0\x00"
    assert encode(Publish("t", b"", properties=props), 4) == b"\x30\x03\x00\x01t"


def test_properties_repr_names_only_what_is_set() -> None:
    # Also under mypyc, where a compiled class has no __slots__ to walk.
    properties = Properties(topic_alias=3, user_properties=(("a", "b"),))
    assert repr(properties) == "Properties(topic_alias=3, user_properties=(('a', 'b'),))"
