"""MQTT 3.1.1 byte vectors built by hand from the OASIS specification.

Every valid vector is checked in both directions: ``encode(packet) == wire`` and
``decode_all(wire) == [packet]``. Section and normative-statement numbers refer to
MQTT Version 3.1.1 (OASIS Standard, 29 October 2014); MQTT 3.1 is the IBM
"MQIsdp" protocol at level 3.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import cast

import pytest

from midge.protocol.codec import (
    MAX_PACKET_SIZE,
    MAX_REMAINING_LENGTH,
    Decoder,
    check_first_byte,
    decode_all,
    decode_body,
    encode,
    encode_publish,
    encode_publish_head,
    encode_remaining_length,
)
from midge.protocol.errors import MalformedPacket, MQTTError, PacketTooLarge, ProtocolError
from midge.protocol.packets import (
    SUBACK_FAILURE,
    ConnAck,
    Connect,
    ConnectReturnCode,
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

# ------------------------------------------------------------------- helpers
# These build wire bytes without the codec so the vectors stay independent of it.


def lp(data: bytes) -> bytes:
    """A length-prefixed field (section 1.5.2/1.5.3): big-endian 16-bit length, then data."""
    assert len(data) <= 0xFFFF
    return bytes((len(data) >> 8, len(data) & 0xFF)) + data


def frame(first_byte: int, body: bytes) -> bytes:
    """A whole packet whose remaining length fits in one byte (section 2.2.3)."""
    assert len(body) < 128, "frame() only writes one-byte remaining lengths"
    return bytes((first_byte, len(body))) + body


def assert_round_trip(packet: Packet, wire: bytes, version: int = 4) -> None:
    assert encode(packet, version) == wire
    assert decode_all(wire, version) == [packet]


def assert_rejected(wire: bytes, error: type[MQTTError], version: int = 4) -> None:
    """decode_all(wire) raises exactly `error` (not a sibling or a subclass)."""
    with pytest.raises(MQTTError) as info:
        decode_all(wire, version)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"


def drain(decoder: Decoder) -> list[Packet]:
    packets = []
    while (packet := decoder.next_packet()) is not None:
        packets.append(packet)
    return packets


# ------------------------------------------------------------ valid vectors

CONNECT_VECTORS = [
    pytest.param(
        Connect(client_id="c1", keep_alive=60),
        b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1",
        id="connect-clean-session",
    ),
    pytest.param(
        Connect(client_id="c1", clean_session=False),
        b"\x10\x0e\x00\x04MQTT\x04\x00\x00\x00\x00\x02c1",
        id="connect-persistent-session",
    ),
    # A zero-byte client identifier is allowed [MQTT-3.1.3-6].
    pytest.param(
        Connect(client_id=""),
        b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x00\x00\x00",
        id="connect-empty-client-id",
    ),
    # Keep alive is a 16-bit word, MSB first (section 3.1.2.10).
    pytest.param(
        Connect(client_id="k", keep_alive=65535),
        b"\x10\x0d\x00\x04MQTT\x04\x02\xff\xff\x00\x01k",
        id="connect-max-keep-alive",
    ),
    # Figure 3.6's example flags 0xCE (user name, password, will QoS 1, will flag,
    # clean session) with keep alive 10 (Figure 3.5); payload order per [MQTT-3.1.3-1].
    pytest.param(
        Connect(
            client_id="id",
            keep_alive=10,
            username="user",
            password=b"pw",
            will=Will("w/t", b"bye", qos=1),
        ),
        b"\x10\x22\x00\x04MQTT\x04\xce\x00\x0a"
        b"\x00\x02id\x00\x03w/t\x00\x03bye\x00\x04user\x00\x02pw",
        id="connect-spec-example-0xce",
    ),
    # Will message and password are binary data (3.1.3.3, 3.1.3.5): no UTF-8 rules.
    pytest.param(
        Connect(
            client_id="b",
            username="u",
            password=b"\xc3\x28\x00\xff",
            will=Will("t", b"\x00\xed\xa0\x80", qos=2, retain=True),
        ),
        b"\x10\x1f\x00\x04MQTT\x04\xf6\x00\x00"
        b"\x00\x01b\x00\x01t\x00\x04\x00\xed\xa0\x80\x00\x01u\x00\x04\xc3\x28\x00\xff",
        id="connect-binary-will-and-password",
    ),
    # Present-but-empty user name, password and will message.
    pytest.param(
        Connect(client_id="e", username="", password=b"", will=Will("t", b"")),
        b"\x10\x16\x00\x04MQTT\x04\xc6\x00\x00\x00\x01e\x00\x01t\x00\x00\x00\x00\x00\x00",
        id="connect-empty-fields",
    ),
    pytest.param(
        Connect(client_id="\u00fc\u6c34"),
        b"\x10\x11\x00\x04MQTT\x04\x02\x00\x00\x00\x05\xc3\xbc\xe6\xb0\xb4",
        id="connect-utf8-client-id",
    ),
    # MQTT 3.1: protocol name "MQIsdp", level 3.
    pytest.param(
        Connect(client_id="paho", keep_alive=60, protocol_level=3, protocol_name="MQIsdp"),
        b"\x10\x12\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x04paho",
        id="connect-mqisdp",
    ),
    pytest.param(
        Connect(
            client_id="paho",
            clean_session=False,
            keep_alive=60,
            username="user",
            password=b"pass",
            will=Will("lwt", b"gone", qos=1, retain=True),
            protocol_level=3,
            protocol_name="MQIsdp",
        ),
        b"\x10\x29\x00\x06MQIsdp\x03\xec\x00\x3c"
        b"\x00\x04paho\x00\x03lwt\x00\x04gone\x00\x04user\x00\x04pass",
        id="connect-mqisdp-everything",
    ),
    # MQTT 3.1 has no rule tying the password flag to the user name flag.
    pytest.param(
        Connect(client_id="paho", password=b"pw", protocol_level=3, protocol_name="MQIsdp"),
        b"\x10\x16\x00\x06MQIsdp\x03\x42\x00\x00\x00\x04paho\x00\x02pw",
        id="connect-mqisdp-password-without-username",
    ),
]

CONNACK_VECTORS = [
    pytest.param(ConnAck(0), b"\x20\x02\x00\x00", id="connack-accepted"),
    # Session present is bit 0 of the acknowledge flags (3.2.2.2).
    pytest.param(ConnAck(0, session_present=True), b"\x20\x02\x01\x00", id="connack-present"),
    *(
        pytest.param(ConnAck(code), bytes((0x20, 0x02, 0x00, code)), id=f"connack-{code.name}")
        for code in ConnectReturnCode
        if code
    ),
]

PUBLISH_VECTORS = [
    pytest.param(Publish("a/b", b"hello"), b"\x30\x0a\x00\x03a/bhello", id="publish-qos0"),
    pytest.param(
        Publish("a/b", b"hello", retain=True), b"\x31\x0a\x00\x03a/bhello", id="publish-qos0-retain"
    ),
    # Packet identifier follows the topic name when QoS > 0 (3.3.2.2).
    pytest.param(
        Publish("a/b", b"hello", qos=1, packet_id=10),
        b"\x32\x0c\x00\x03a/b\x00\x0ahello",
        id="publish-qos1",
    ),
    pytest.param(
        Publish("a/b", b"hello", qos=1, retain=True, packet_id=10),
        b"\x33\x0c\x00\x03a/b\x00\x0ahello",
        id="publish-qos1-retain",
    ),
    pytest.param(
        Publish("a/b", b"hello", qos=1, dup=True, packet_id=10),
        b"\x3a\x0c\x00\x03a/b\x00\x0ahello",
        id="publish-qos1-dup",
    ),
    pytest.param(
        Publish("a/b", b"hello", qos=2, packet_id=0xFFFF),
        b"\x34\x0c\x00\x03a/b\xff\xffhello",
        id="publish-qos2",
    ),
    pytest.param(
        Publish("a/b", b"hello", qos=2, retain=True, dup=True, packet_id=1),
        b"\x3d\x0c\x00\x03a/b\x00\x01hello",
        id="publish-qos2-dup-retain",
    ),
    # A zero-length payload is valid (3.3.3); retained, it clears the retained message.
    pytest.param(Publish("a/b"), b"\x30\x05\x00\x03a/b", id="publish-empty-payload"),
    pytest.param(
        Publish("a/b", retain=True), b"\x31\x05\x00\x03a/b", id="publish-empty-payload-retain"
    ),
    pytest.param(
        Publish("a/b", qos=1, packet_id=2), b"\x32\x07\x00\x03a/b\x00\x02", id="publish-qos1-empty"
    ),
    pytest.param(
        Publish("a/b", qos=2, packet_id=2), b"\x34\x07\x00\x03a/b\x00\x02", id="publish-qos2-empty"
    ),
    pytest.param(
        Publish("t", b"\x00\x01\x00\xff"), b"\x30\x07\x00\x01t\x00\x01\x00\xff", id="publish-binary"
    ),
    pytest.param(
        Publish("\u00fc/\u6c34", b"x"),
        b"\x30\x09\x00\x06\xc3\xbc/\xe6\xb0\xb4x",
        id="publish-utf8-topic",
    ),
    # 0xEF 0xBB 0xBF is U+FEFF and MUST NOT be skipped or stripped [MQTT-1.5.3-3].
    pytest.param(Publish("\ufeffa", b""), b"\x30\x06\x00\x04\xef\xbb\xbfa", id="publish-bom-kept"),
    pytest.param(Publish("/", b""), b"\x30\x03\x00\x01/", id="publish-topic-slash"),
    pytest.param(Publish("$SYS/x", b"1"), b"\x30\x09\x00\x06$SYS/x1", id="publish-dollar-topic"),
    # Remaining length 203 needs two bytes: 0xCB 0x01 (section 2.2.3).
    pytest.param(
        Publish("t", b"\xab" * 200),
        b"\x30\xcb\x01\x00\x01t" + b"\xab" * 200,
        id="publish-two-byte-length",
    ),
]

ACK_VECTORS = [
    pytest.param(PubAck(10), b"\x40\x02\x00\x0a", id="puback"),
    pytest.param(PubAck(0xFFFF), b"\x40\x02\xff\xff", id="puback-max-id"),
    pytest.param(PubRec(1), b"\x50\x02\x00\x01", id="pubrec"),
    # PUBREL fixed header flags are 0010 [MQTT-3.6.1-1].
    pytest.param(PubRel(0x0102), b"\x62\x02\x01\x02", id="pubrel"),
    pytest.param(PubComp(0x1234), b"\x70\x02\x12\x34", id="pubcomp"),
    pytest.param(UnsubAck(7), b"\xb0\x02\x00\x07", id="unsuback"),
]

SUBSCRIBE_VECTORS = [
    # The example of section 3.8.3.1; fixed header flags 0010 [MQTT-3.8.1-1].
    pytest.param(
        Subscribe(10, (Subscription("a/b", 1), Subscription("c/d", 2))),
        b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/d\x02",
        id="subscribe-spec-example",
    ),
    pytest.param(
        Subscribe(
            1,
            (
                Subscription("sport/tennis/+", 0),
                Subscription("#", 2),
                Subscription("$SYS/#", 1),
            ),
        ),
        b"\x82\x20\x00\x01\x00\x0esport/tennis/+\x00\x00\x01#\x02\x00\x06$SYS/#\x01",
        id="subscribe-wildcards",
    ),
    pytest.param(
        Subscribe(0xFFFF, (Subscription("x"),)),
        b"\x82\x06\xff\xff\x00\x01x\x00",
        id="subscribe-single",
    ),
    # The example of section 3.9.3: granted 0, 1, 2 and failure 0x80.
    pytest.param(
        SubAck(10, (0, 1, 2, SUBACK_FAILURE)),
        b"\x90\x06\x00\x0a\x00\x01\x02\x80",
        id="suback-spec-example",
    ),
    pytest.param(SubAck(1, (0x80,)), b"\x90\x03\x00\x01\x80", id="suback-failure"),
    # Fixed header flags 0010 [MQTT-3.10.1-1].
    pytest.param(
        Unsubscribe(10, ("a/b", "c/d")),
        b"\xa2\x0c\x00\x0a\x00\x03a/b\x00\x03c/d",
        id="unsubscribe-two",
    ),
    pytest.param(
        Unsubscribe(2, ("sport/#",)), b"\xa2\x0b\x00\x02\x00\x07sport/#", id="unsubscribe-one"
    ),
]

EMPTY_VECTORS = [
    pytest.param(PingReq(), b"\xc0\x00", id="pingreq"),
    pytest.param(PingResp(), b"\xd0\x00", id="pingresp"),
    pytest.param(Disconnect(), b"\xe0\x00", id="disconnect"),
]

ALL_VECTORS = [
    *CONNECT_VECTORS,
    *CONNACK_VECTORS,
    *PUBLISH_VECTORS,
    *ACK_VECTORS,
    *SUBSCRIBE_VECTORS,
    *EMPTY_VECTORS,
]

# The layout of every packet but CONNACK is the same for 3.1 and 3.1.1.
# The same vectors as typed (id, packet, wire) triples.
VECTORS: list[tuple[str, Packet, bytes]] = [
    (str(v.id), *cast("tuple[Packet, bytes]", tuple(v.values))) for v in ALL_VECTORS
]
VERSION_INDEPENDENT = [v for v in ALL_VECTORS if not isinstance(v.values[0], ConnAck)]


@pytest.mark.parametrize(("packet", "wire"), ALL_VECTORS)
def test_vector_round_trip(packet: Packet, wire: bytes) -> None:
    assert_round_trip(packet, wire)


@pytest.mark.parametrize(("packet", "wire"), VERSION_INDEPENDENT)
def test_vector_round_trip_version_3(packet: Packet, wire: bytes) -> None:
    assert_round_trip(packet, wire, version=3)


@pytest.mark.parametrize(("packet", "wire"), ALL_VECTORS)
def test_vector_decoded_by_decode_body(packet: Packet, wire: bytes) -> None:
    length_bytes = 2 if wire[1] & 0x80 else 1
    assert decode_body(wire[0], wire[1 + length_bytes :]) == packet


def test_every_packet_type_has_a_vector() -> None:
    # AUTH is reserved below 5.0: test_codec5_vectors.py covers it (and every
    # other type) at level 5, and checks that 3.1.1 refuses it.
    covered = {wire[0] >> 4 for _, _, wire in VECTORS}
    assert covered == {int(t) for t in PacketType} - {PacketType.AUTH}


def test_all_vectors_in_one_stream() -> None:
    wire = b"".join(wire for _, _, wire in VECTORS)
    assert decode_all(wire) == [packet for _, packet, _ in VECTORS]


# ----------------------------------------------- CONNECT flag combinations

WILLS = [None] + [
    Will("will/topic", b"last words", qos, retain) for qos in (0, 1, 2) for retain in (False, True)
]


def _will_id(will: Will | None) -> str:
    return "no-will" if will is None else f"will-q{will.qos}{'-retain' if will.retain else ''}"


def _connect_wire(
    name: bytes,
    level: int,
    clean_session: bool,
    will: Will | None,
    username: str | None,
    password: bytes | None,
) -> bytes:
    """CONNECT bytes with the flag bits of Figure 3.4 spelled out."""
    flags = 0
    payload = lp(b"client")
    if clean_session:
        flags |= 0b0000_0010
    if will is not None:
        flags |= 0b0000_0100  # will flag
        flags |= {0: 0b0000_0000, 1: 0b0000_1000, 2: 0b0001_0000}[will.qos]
        if will.retain:
            flags |= 0b0010_0000
        payload += lp(b"will/topic") + lp(b"last words")
    if username is not None:
        flags |= 0b1000_0000
        payload += lp(b"user")
    if password is not None:
        flags |= 0b0100_0000
        payload += lp(b"secret")
    return frame(0x10, lp(name) + bytes((level, flags)) + b"\x00\x1e" + payload)


@pytest.mark.parametrize("password", [None, b"secret"], ids=["no-password", "password"])
@pytest.mark.parametrize("username", [None, "user"], ids=["no-username", "username"])
@pytest.mark.parametrize("will", WILLS, ids=_will_id)
@pytest.mark.parametrize("clean_session", [False, True], ids=["persistent", "clean"])
def test_connect_flag_combinations_mqtt_3_1_1(
    clean_session: bool, will: Will | None, username: str | None, password: bytes | None
) -> None:
    wire = _connect_wire(b"MQTT", 4, clean_session, will, username, password)
    if password is not None and username is None:
        # "If the User Name Flag is set to 0, the Password Flag MUST be set to 0" [MQTT-3.1.2-22]
        assert_rejected(wire, MalformedPacket)
        return
    packet = Connect("client", clean_session, 30, username, password, will)
    assert_round_trip(packet, wire)


@pytest.mark.parametrize("password", [None, b"secret"], ids=["no-password", "password"])
@pytest.mark.parametrize("username", [None, "user"], ids=["no-username", "username"])
@pytest.mark.parametrize("will", WILLS, ids=_will_id)
@pytest.mark.parametrize("clean_session", [False, True], ids=["persistent", "clean"])
def test_connect_flag_combinations_mqtt_3_1(
    clean_session: bool, will: Will | None, username: str | None, password: bytes | None
) -> None:
    wire = _connect_wire(b"MQIsdp", 3, clean_session, will, username, password)
    packet = Connect("client", clean_session, 30, username, password, will, 3, "MQIsdp")
    assert_round_trip(packet, wire, version=3)


# ------------------------------------------------------------------- CONNACK


@pytest.mark.parametrize("code", list(ConnectReturnCode))
@pytest.mark.parametrize("session_present", [False, True])
def test_connack_version_3_never_sets_session_present(
    code: ConnectReturnCode, session_present: bool
) -> None:
    # MQTT 3.1's first CONNACK byte is reserved: there is no session present flag.
    wire = bytes((0x20, 0x02, 0x00, code))
    assert encode(ConnAck(code, session_present), version=3) == wire
    assert decode_all(wire, version=3) == [ConnAck(code)]


def test_connack_version_4_sets_session_present() -> None:
    assert encode(ConnAck(0, session_present=True), version=4) == b"\x20\x02\x01\x00"
    assert encode(ConnAck(0, session_present=True)) == b"\x20\x02\x01\x00"


# ------------------------------------------------------------ encoder limits


def test_encode_publish_qos1_without_packet_id_is_refused() -> None:
    with pytest.raises(ValueError, match="packet id"):
        encode(Publish("a", b"", qos=1))
    with pytest.raises(ValueError, match="packet id"):
        encode(Publish("a", b"", qos=2, packet_id=0))


def test_encode_publish_qos0_drops_packet_id() -> None:
    # No packet identifier when QoS is 0 (section 2.3.1).
    assert encode(Publish("a", b"x", packet_id=5)) == b"\x30\x04\x00\x01ax"


def test_encode_string_field_longer_than_65535_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="65535"):
        encode(Connect(client_id="x" * 65536))
    with pytest.raises(ValueError, match="65535"):
        encode(Connect(client_id="c", username="u", password=b"p" * 65536))


def test_encode_string_field_of_exactly_65535_bytes() -> None:
    wire = encode(Unsubscribe(1, ("x" * 65535,)))
    assert wire[:6] == b"\xa2\x83\x80\x04\x00\x01"  # remaining length 65539
    assert wire[6:8] == b"\xff\xff"
    assert decode_all(wire) == [Unsubscribe(1, ("x" * 65535,))]


# ---------------------------------------------------------- remaining length

# The table of section 2.2.3.
REMAINING_LENGTH_TABLE = [
    pytest.param(0, b"\x00", id="0"),
    pytest.param(127, b"\x7f", id="127"),
    pytest.param(128, b"\x80\x01", id="128"),
    pytest.param(16_383, b"\xff\x7f", id="16383"),
    pytest.param(16_384, b"\x80\x80\x01", id="16384"),
    pytest.param(2_097_151, b"\xff\xff\x7f", id="2097151"),
    pytest.param(2_097_152, b"\x80\x80\x80\x01", id="2097152"),
    pytest.param(268_435_455, b"\xff\xff\xff\x7f", id="268435455"),
]


@pytest.mark.parametrize(("length", "wire"), REMAINING_LENGTH_TABLE)
def test_encode_remaining_length_table(length: int, wire: bytes) -> None:
    assert encode_remaining_length(length) == wire


@pytest.mark.parametrize(("length", "wire"), REMAINING_LENGTH_TABLE)
def test_decoder_reads_remaining_length_table(length: int, wire: bytes) -> None:
    # The decoder's size check reveals the length it read without sending the body:
    # the packet is 1 + len(wire) + length bytes.
    # PINGREQ's first byte: with length 0 the packet is complete, otherwise a body is due.
    size = 1 + len(wire) + length
    fits = Decoder(max_packet_size=size)
    fits.feed(b"\xc0" + wire)
    if length == 0:
        assert fits.next_packet() == PingReq()
    else:
        assert fits.next_packet() is None
        assert fits.buffered() == 1 + len(wire)
    too_small = Decoder(max_packet_size=size - 1)
    too_small.feed(b"\xc0" + wire)
    with pytest.raises(PacketTooLarge):
        too_small.next_packet()


@pytest.mark.parametrize(
    ("length", "wire"),
    [p for p in REMAINING_LENGTH_TABLE if 3 <= cast(int, p.values[0]) <= 2_097_152],
)
def test_publish_with_remaining_length_at_table_boundary(length: int, wire: bytes) -> None:
    payload = b"\x5a" * (length - 3)  # topic "t" takes 3 bytes
    packet_bytes = b"\x30" + wire + b"\x00\x01t" + payload
    assert encode(Publish("t", payload)) == packet_bytes
    assert decode_all(packet_bytes) == [Publish("t", payload)]


def test_remaining_length_zero_packet() -> None:
    assert decode_all(b"\xc0\x00") == [PingReq()]


def test_max_constants() -> None:
    assert MAX_REMAINING_LENGTH == 268_435_455
    assert MAX_PACKET_SIZE == 268_435_460


@pytest.mark.parametrize("length", [268_435_456, 2**32, -1])
def test_encode_remaining_length_out_of_range(length: int) -> None:
    with pytest.raises(ValueError, match="remaining length"):
        encode_remaining_length(length)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"\x30\xff\xff\xff\xff\x01", id="ff-ff-ff-ff-01"),
        pytest.param(b"\x30\x80\x80\x80\x80\x00", id="80-80-80-80-00"),
        pytest.param(b"\xc0\x80\x80\x80\x80\x00", id="pingreq-80-80-80-80-00"),
    ],
)
def test_remaining_length_of_five_bytes_is_malformed(wire: bytes) -> None:
    # The remaining length is at most four bytes (section 2.2.3).
    assert_rejected(wire, MalformedPacket)


def test_fifth_length_byte_rejected_before_it_arrives() -> None:
    # After four bytes that all say "more follows" no valid length is possible.
    decoder = Decoder()
    decoder.feed(b"\x30\xff\xff\xff")
    assert decoder.next_packet() is None
    decoder.feed(b"\xff")
    with pytest.raises(MalformedPacket) as info:
        decoder.next_packet()
    assert type(info.value) is MalformedPacket


def test_largest_remaining_length_waits_for_body() -> None:
    decoder = Decoder()
    decoder.feed(b"\x30\xff\xff\xff\x7f")
    assert decoder.next_packet() is None


# ----------------------------------------------- fixed header: types, flags


# Table 2.1: packet types 0 and 15 are reserved (forbidden).
@pytest.mark.parametrize("first_byte", [*range(0x00, 0x10), *range(0xF0, 0x100)])
def test_reserved_packet_type_rejected_on_first_byte(first_byte: int) -> None:
    decoder = Decoder()
    decoder.feed(bytes((first_byte,)))
    with pytest.raises(MalformedPacket) as info:
        decoder.next_packet()
    assert type(info.value) is MalformedPacket
    with pytest.raises(MalformedPacket):
        check_first_byte(first_byte)


@pytest.mark.parametrize("first_byte", [0x00, 0xF0])
def test_reserved_packet_type_in_complete_packet(first_byte: int) -> None:
    assert_rejected(bytes((first_byte, 0x00)), MalformedPacket)


# Table 2.2: the flags every type but PUBLISH must carry.
REQUIRED_FLAGS = {
    PacketType.CONNECT: 0b0000,
    PacketType.CONNACK: 0b0000,
    PacketType.PUBACK: 0b0000,
    PacketType.PUBREC: 0b0000,
    PacketType.PUBREL: 0b0010,
    PacketType.PUBCOMP: 0b0000,
    PacketType.SUBSCRIBE: 0b0010,
    PacketType.SUBACK: 0b0000,
    PacketType.UNSUBSCRIBE: 0b0010,
    PacketType.UNSUBACK: 0b0000,
    PacketType.PINGREQ: 0b0000,
    PacketType.PINGRESP: 0b0000,
    PacketType.DISCONNECT: 0b0000,
}

# A valid body for each of those types, to show a complete packet is rejected too.
VALID_BODY = {
    PacketType.CONNECT: lp(b"MQTT") + b"\x04\x02\x00\x00" + lp(b"c"),
    PacketType.CONNACK: b"\x00\x00",
    PacketType.PUBACK: b"\x00\x01",
    PacketType.PUBREC: b"\x00\x01",
    PacketType.PUBREL: b"\x00\x01",
    PacketType.PUBCOMP: b"\x00\x01",
    PacketType.SUBSCRIBE: b"\x00\x01" + lp(b"a") + b"\x00",
    PacketType.SUBACK: b"\x00\x01\x00",
    PacketType.UNSUBSCRIBE: b"\x00\x01" + lp(b"a"),
    PacketType.UNSUBACK: b"\x00\x01",
    PacketType.PINGREQ: b"",
    PacketType.PINGRESP: b"",
    PacketType.DISCONNECT: b"",
}

WRONG_FLAGS = [
    pytest.param(packet_type, flags, id=f"{packet_type.name}-{flags:04b}")
    for packet_type, required in REQUIRED_FLAGS.items()
    for flags in range(16)
    if flags != required
]


@pytest.mark.parametrize(("packet_type", "flags"), WRONG_FLAGS)
def test_wrong_fixed_header_flags_rejected_on_first_byte(
    packet_type: PacketType, flags: int
) -> None:
    # Reserved flag bits MUST be as in Table 2.2 [MQTT-2.2.2-1]; otherwise close [MQTT-2.2.2-2]
    # (PUBREL [MQTT-3.6.1-1], SUBSCRIBE [MQTT-3.8.1-1], UNSUBSCRIBE [MQTT-3.10.1-1]).
    decoder = Decoder()
    decoder.feed(bytes((packet_type << 4 | flags,)))
    with pytest.raises(MalformedPacket) as info:
        decoder.next_packet()
    assert type(info.value) is MalformedPacket


@pytest.mark.parametrize(("packet_type", "flags"), WRONG_FLAGS)
def test_wrong_fixed_header_flags_rejected_in_complete_packet(
    packet_type: PacketType, flags: int
) -> None:
    assert_rejected(frame(packet_type << 4 | flags, VALID_BODY[packet_type]), MalformedPacket)


@pytest.mark.parametrize("packet_type", list(REQUIRED_FLAGS), ids=lambda t: t.name)
def test_required_fixed_header_flags_accepted(packet_type: PacketType) -> None:
    first = packet_type << 4 | REQUIRED_FLAGS[packet_type]
    check_first_byte(first)
    decoder = Decoder()
    decoder.feed(bytes((first,)))
    assert decoder.next_packet() is None  # waits for the remaining length
    decoder.feed(frame(first, VALID_BODY[packet_type])[1:])
    packet = decoder.next_packet()
    assert packet is not None
    assert encode(packet) == frame(first, VALID_BODY[packet_type])


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"\x60\x02\x00\x01", id="pubrel-0000"),  # [MQTT-3.6.1-1]
        pytest.param(b"\x80\x06\x00\x01\x00\x01a\x00", id="subscribe-0000"),  # [MQTT-3.8.1-1]
        pytest.param(b"\xa0\x05\x00\x01\x00\x01a", id="unsubscribe-0000"),  # [MQTT-3.10.1-1]
        pytest.param(b"\xc1\x00", id="pingreq-0001"),  # [MQTT-2.2.2-1]
        pytest.param(b"\x41\x02\x00\x01", id="puback-0001"),  # [MQTT-2.2.2-1]
    ],
)
def test_wrong_flags_named_examples(wire: bytes) -> None:
    assert_rejected(wire, MalformedPacket)


# ------------------------------------------------------------------ PUBLISH


def _publish_body(qos: int) -> bytes:
    return lp(b"a/b") + (b"\x00\x05" if qos else b"") + b"data"


@pytest.mark.parametrize("flags", range(16), ids=lambda f: f"{f:04b}")
def test_publish_every_flag_nibble(flags: int) -> None:
    qos = (flags >> 1) & 0b11
    dup = bool(flags & 0b1000)
    retain = bool(flags & 0b0001)
    wire = frame(0x30 | flags, _publish_body(qos))
    if qos == 3:
        # "A PUBLISH Packet MUST NOT have both QoS bits set to 1" [MQTT-3.3.1-4]
        assert_rejected(wire, MalformedPacket)
    elif dup and qos == 0:
        # "The DUP flag MUST be set to 0 for all QoS 0 messages" [MQTT-3.3.1-2]
        assert_rejected(wire, MalformedPacket)
    else:
        packet = Publish("a/b", b"data", qos, retain, dup, 5 if qos else None)
        assert_round_trip(packet, wire)


@pytest.mark.parametrize("topic", [b"+", b"a/+", b"+/a", b"#", b"a/#", b"a+b", b"a#", b"sport/+/x"])
@pytest.mark.parametrize("qos", [0, 1])
def test_publish_topic_with_wildcard_is_protocol_error(topic: bytes, qos: int) -> None:
    # "The Topic Name in the PUBLISH Packet MUST NOT contain wildcard characters" [MQTT-3.3.2-2]
    body = lp(topic) + (b"\x00\x01" if qos else b"") + b"x"
    assert_rejected(frame(0x30 | qos << 1, body), ProtocolError)


def test_publish_empty_topic_is_protocol_error() -> None:
    # "All Topic Names and Topic Filters MUST be at least one character long" [MQTT-4.7.3-1]
    assert_rejected(b"\x30\x03\x00\x00x", ProtocolError)
    assert_rejected(b"\x32\x04\x00\x00\x00\x01", ProtocolError)


@pytest.mark.parametrize("first_byte", [0x32, 0x34, 0x3A, 0x3D])
def test_publish_qos_above_0_with_packet_id_0_is_protocol_error(first_byte: int) -> None:
    # PUBLISH with QoS > 0 MUST carry a non-zero packet identifier [MQTT-2.3.1-1]
    assert_rejected(frame(first_byte, lp(b"a/b") + b"\x00\x00payload"), ProtocolError)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"\x32\x05\x00\x03a/b", id="qos1-no-packet-id"),
        pytest.param(b"\x34\x06\x00\x03a/b\x00", id="qos2-half-packet-id"),
        pytest.param(b"\x30\x00", id="no-topic-length"),
        pytest.param(b"\x30\x01\x00", id="half-topic-length"),
        pytest.param(b"\x30\x03\x00\x05a", id="topic-length-past-end"),
        pytest.param(b"\x32\x07\x00\x09a/b\x00\x01", id="qos1-topic-length-past-end"),
    ],
)
def test_publish_truncated_fields_are_malformed(wire: bytes) -> None:
    # The fields of section 3.3.2 must fit in the remaining length (section 2.2.3).
    assert_rejected(wire, MalformedPacket)


# ------------------------------------------------------------------ CONNECT


def _connect(flags: int, payload: bytes, name: bytes = b"MQTT", level: int = 4) -> bytes:
    return frame(0x10, lp(name) + bytes((level, flags)) + b"\x00\x3c" + payload)


CONNECT_ERRORS = [
    # "The Server MUST validate that the reserved flag in the CONNECT Control Packet is set
    # to zero and disconnect the Client if it is not zero" [MQTT-3.1.2-3]
    pytest.param(_connect(0x03, lp(b"c")), MalformedPacket, id="reserved-flag"),
    pytest.param(_connect(0x01, lp(b"c")), MalformedPacket, id="reserved-flag-only"),
    # Will flag 0: Will QoS MUST be 0 [MQTT-3.1.2-11, MQTT-3.1.2-13] ...
    pytest.param(_connect(0x0A, lp(b"c")), MalformedPacket, id="will-qos1-without-will"),
    pytest.param(_connect(0x12, lp(b"c")), MalformedPacket, id="will-qos2-without-will"),
    pytest.param(_connect(0x1A, lp(b"c")), MalformedPacket, id="will-qos3-without-will"),
    # ... and Will Retain MUST be 0 [MQTT-3.1.2-15]
    pytest.param(_connect(0x22, lp(b"c")), MalformedPacket, id="will-retain-without-will"),
    # Will QoS MUST NOT be 3 [MQTT-3.1.2-14]
    pytest.param(_connect(0x1E, lp(b"c") + lp(b"t") + lp(b"m")), MalformedPacket, id="will-qos3"),
    pytest.param(
        _connect(0x3E, lp(b"c") + lp(b"t") + lp(b"m")), MalformedPacket, id="will-qos3-retain"
    ),
    # "If the User Name Flag is set to 0, the Password Flag MUST be set to 0" [MQTT-3.1.2-22]
    pytest.param(_connect(0x42, lp(b"c") + lp(b"pw")), MalformedPacket, id="password-no-user"),
    pytest.param(
        _connect(0x46, lp(b"c") + lp(b"t") + lp(b"m") + lp(b"pw")),
        MalformedPacket,
        id="password-no-user-with-will",
    ),
    # Unknown protocol name: the Server MAY disconnect [MQTT-3.1.2-1].
    pytest.param(_connect(0x02, lp(b"c"), name=b"MQTX"), ProtocolError, id="name-MQTX"),
    pytest.param(_connect(0x02, lp(b"c"), name=b"mqtt"), ProtocolError, id="name-lowercase"),
    pytest.param(_connect(0x02, lp(b"c"), name=b""), ProtocolError, id="name-empty"),
    pytest.param(_connect(0x02, lp(b"c"), name=b"MQTT\xc3\xbc"), ProtocolError, id="name-suffix"),
    # An HTTP request line: "HT" read as a name length of 0x4854 bytes runs past the end.
    pytest.param(frame(0x10, b"HTTP/1.1\r\n"), MalformedPacket, id="not-mqtt-at-all"),
    # The payload holds exactly the fields the flags announce [MQTT-3.1.3-1]; anything
    # after them does not belong to the packet.
    pytest.param(_connect(0x02, lp(b"c") + b"\x00"), MalformedPacket, id="trailing-byte"),
    pytest.param(
        _connect(0xC2, lp(b"c") + lp(b"u") + lp(b"p") + b"extra"),
        MalformedPacket,
        id="trailing-after-password",
    ),
    pytest.param(_connect(0x02, lp(b"c") + lp(b"u")), MalformedPacket, id="undeclared-username"),
    # The Client Identifier MUST be present [MQTT-3.1.3-3].
    pytest.param(_connect(0x02, b""), MalformedPacket, id="no-client-id"),
    # Fields the flags announce MUST be present [MQTT-3.1.2-9, -19, -21].
    pytest.param(_connect(0x06, lp(b"c")), MalformedPacket, id="will-flag-no-will-topic"),
    pytest.param(_connect(0x06, lp(b"c") + lp(b"t")), MalformedPacket, id="will-no-message"),
    pytest.param(_connect(0x82, lp(b"c")), MalformedPacket, id="username-flag-no-username"),
    pytest.param(_connect(0xC2, lp(b"c") + lp(b"u")), MalformedPacket, id="password-missing"),
    # Truncated variable header (section 3.1.2).
    pytest.param(frame(0x10, lp(b"MQTT")), MalformedPacket, id="no-level"),
    pytest.param(frame(0x10, lp(b"MQTT") + b"\x04"), MalformedPacket, id="no-flags"),
    pytest.param(frame(0x10, lp(b"MQTT") + b"\x04\x02\x00"), MalformedPacket, id="half-keepalive"),
    pytest.param(frame(0x10, b""), MalformedPacket, id="empty-body"),
    pytest.param(frame(0x10, b"\x00\x04MQ"), MalformedPacket, id="name-past-end"),
    # Length-prefixed fields running past the end of a complete packet (section 1.5.3).
    pytest.param(_connect(0x02, b"\x00\x05c"), MalformedPacket, id="client-id-past-end"),
    pytest.param(_connect(0x82, lp(b"c") + b"\x00\x09us"), MalformedPacket, id="username-past-end"),
    pytest.param(
        _connect(0xC2, lp(b"c") + lp(b"u") + b"\x00\x09pw"),
        MalformedPacket,
        id="password-past-end",
    ),
    pytest.param(
        _connect(0x06, lp(b"c") + lp(b"t") + b"\x00\x09m"),
        MalformedPacket,
        id="will-message-past-end",
    ),
    pytest.param(_connect(0xC2, lp(b"c") + lp(b"u") + b"\x00"), MalformedPacket, id="half-len"),
    # The will topic (a UTF-8 string [MQTT-3.1.3-10]) is published to as a topic name:
    # no wildcards [MQTT-3.3.2-2, MQTT-4.7.1-1], at least one character [MQTT-4.7.3-1].
    pytest.param(
        _connect(0x06, lp(b"c") + lp(b"a/+") + lp(b"m")), ProtocolError, id="will-topic-plus"
    ),
    pytest.param(
        _connect(0x06, lp(b"c") + lp(b"#") + lp(b"m")), ProtocolError, id="will-topic-hash"
    ),
    pytest.param(
        _connect(0x06, lp(b"c") + lp(b"") + lp(b"m")), ProtocolError, id="will-topic-empty"
    ),
]


@pytest.mark.parametrize(("wire", "error"), CONNECT_ERRORS)
def test_connect_errors(wire: bytes, error: type[MQTTError]) -> None:
    assert_rejected(wire, error)


def test_password_without_username_allowed_at_level_3() -> None:
    # MQTT 3.1 has no [MQTT-3.1.2-22]; the same flags at level 4 are refused above.
    wire = _connect(0x42, lp(b"c") + lp(b"pw"), name=b"MQIsdp", level=3)
    assert decode_all(wire) == [
        Connect("c", True, 60, None, b"pw", None, protocol_level=3, protocol_name="MQIsdp")
    ]


@pytest.mark.parametrize(
    ("name", "level"),
    [
        pytest.param(b"MQTT", 6, id="MQTT-6"),
        pytest.param(b"MQTT", 3, id="MQTT-3"),
        pytest.param(b"MQTT", 0, id="MQTT-0"),
        pytest.param(b"MQTT", 255, id="MQTT-255"),
        pytest.param(b"MQIsdp", 4, id="MQIsdp-4"),
        pytest.param(b"MQIsdp", 5, id="MQIsdp-5"),
    ],
)
def test_unsupported_protocol_level_decodes_for_connack_1(name: bytes, level: int) -> None:
    # "The Server MUST respond to the CONNECT Control Packet with a CONNACK return code
    # 0x01 (unacceptable protocol level) and then disconnect the Client if the Protocol
    # Level is not supported by the Server" [MQTT-3.1.2-2]: so it must decode, not raise.
    wire = _connect(0x02, lp(b"client"), name=name, level=level)
    [packet] = decode_all(wire)
    assert isinstance(packet, Connect)
    assert packet.protocol_level == level
    assert packet.protocol_name == name.decode()


def test_mqtt_5_connect_is_decoded_with_its_properties() -> None:
    # Level 5 is a supported level: its CONNECT is decoded in the 5.0 layout and the
    # broker decides. Property length 3, Receive Maximum (0x21) = 20, client id "c".
    wire = b"\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x03\x21\x00\x14\x00\x01c"
    assert decode_all(wire) == [
        Connect("c", keep_alive=60, protocol_level=5, properties=Properties(receive_maximum=20))
    ]


def test_mqtt_5_connect_allows_password_without_user_name() -> None:
    # 5.0 drops [MQTT-3.1.2-22] (section 3.1.2.9); b"\x00" is the empty property block.
    [packet] = decode_all(_connect(0x42, b"\x00" + lp(b"c") + lp(b"pw"), level=5))
    assert packet == Connect("c", keep_alive=60, password=b"pw", protocol_level=5)


def test_mqtt_5_connect_reserved_flag_is_malformed() -> None:
    # [MQTT-3.1.2-3] holds in 5.0 too.
    assert_rejected(_connect(0x43, b"\x00" + lp(b"c") + lp(b"pw"), level=5), MalformedPacket)


# -------------------------------------------------------- UTF-8 in strings

BAD_UTF8 = [
    pytest.param(b"\xc3\x28", id="invalid-continuation"),
    pytest.param(b"\xed\xa0\x80", id="surrogate-D800"),
    pytest.param(b"\xed\xbf\xbf", id="surrogate-DFFF"),
    pytest.param(b"a/\xed\xb0\x80/b", id="surrogate-DC00-inside"),
    pytest.param(b"\xc0\x80", id="overlong-nul"),
    pytest.param(b"\xe0\x80\xaf", id="overlong-slash"),
    pytest.param(b"\xf4\x90\x80\x80", id="above-10FFFF"),
    pytest.param(b"\xff", id="byte-ff"),
    pytest.param(b"\x80", id="lone-continuation"),
    pytest.param(b"a\xe6\xb0", id="truncated-sequence"),
    # "A UTF-8 encoded string MUST NOT include an encoding of the null character U+0000"
    # [MQTT-1.5.3-2]
    pytest.param(b"\x00", id="nul"),
    pytest.param(b"a\x00b", id="nul-inside"),
    pytest.param(b"a/b\x00", id="nul-at-end"),
]

# Each builder puts the string in one string field of an otherwise valid packet.
STRING_FIELDS: dict[str, tuple[Callable[[bytes], bytes], bytes]] = {
    "connect-protocol-name": (
        lambda s: frame(0x10, lp(s) + b"\x04\x02\x00\x00" + lp(b"c")),
        b"MQTT",
    ),
    "connect-client-id": (
        lambda s: frame(0x10, lp(b"MQTT") + b"\x04\x02\x00\x00" + lp(s)),
        b"a/\xc3\xbc",
    ),
    "connect-will-topic": (
        lambda s: frame(0x10, lp(b"MQTT") + b"\x04\x06\x00\x00" + lp(b"c") + lp(s) + lp(b"m")),
        b"a/\xc3\xbc",
    ),
    "connect-username": (
        lambda s: frame(0x10, lp(b"MQTT") + b"\x04\x82\x00\x00" + lp(b"c") + lp(s)),
        b"a/\xc3\xbc",
    ),
    "mqisdp-username": (
        lambda s: frame(0x10, lp(b"MQIsdp") + b"\x03\xc2\x00\x00" + lp(b"c") + lp(s) + lp(b"p")),
        b"a/\xc3\xbc",
    ),
    "publish-topic": (lambda s: frame(0x30, lp(s) + b"payload"), b"a/\xc3\xbc"),
    "publish-qos1-topic": (lambda s: frame(0x32, lp(s) + b"\x00\x01payload"), b"a/\xc3\xbc"),
    "subscribe-filter": (
        lambda s: frame(0x82, b"\x00\x01" + lp(b"ok") + b"\x00" + lp(s) + b"\x01"),
        b"a/\xc3\xbc",
    ),
    "unsubscribe-filter": (
        lambda s: frame(0xA2, b"\x00\x01" + lp(b"ok") + lp(s)),
        b"a/\xc3\xbc",
    ),
}


@pytest.mark.parametrize("field", list(STRING_FIELDS))
def test_string_field_builder_control(field: str) -> None:
    # The same packets with a valid string decode, so the rejections below are the strings'.
    build, good = STRING_FIELDS[field]
    [packet] = decode_all(build(good))
    assert encode(packet) == build(good)


@pytest.mark.parametrize("bad", BAD_UTF8)
@pytest.mark.parametrize("field", list(STRING_FIELDS))
def test_ill_formed_utf8_in_string_field_is_malformed(field: str, bad: bytes) -> None:
    # "The character data in a UTF-8 encoded string MUST be well-formed UTF-8 ... MUST NOT
    # include encodings of code points between U+D800 and U+DFFF" [MQTT-1.5.3-1]
    build, _ = STRING_FIELDS[field]
    assert_rejected(build(bad), MalformedPacket)


# ---------------------------------------------------- SUBSCRIBE / UNSUBSCRIBE

SUBSCRIBE_ERRORS = [
    # "The payload of a SUBSCRIBE packet MUST contain at least one Topic Filter / QoS pair.
    # A SUBSCRIBE packet with no payload is a protocol violation" [MQTT-3.8.3-3]
    pytest.param(frame(0x82, b"\x00\x01"), ProtocolError, id="subscribe-no-filters"),
    # Reserved bits of the requested QoS byte non-zero, or QoS not 0, 1 or 2 [MQTT-3.8.3-4]
    pytest.param(frame(0x82, b"\x00\x01" + lp(b"a") + b"\x03"), MalformedPacket, id="qos3"),
    pytest.param(frame(0x82, b"\x00\x01" + lp(b"a") + b"\x04"), MalformedPacket, id="bit2"),
    pytest.param(frame(0x82, b"\x00\x01" + lp(b"a") + b"\x80"), MalformedPacket, id="bit7"),
    pytest.param(frame(0x82, b"\x00\x01" + lp(b"a") + b"\x41"), MalformedPacket, id="bit6-qos1"),
    pytest.param(frame(0x82, b"\x00\x01" + lp(b"a") + b"\xfc"), MalformedPacket, id="all-reserved"),
    pytest.param(
        frame(0x82, b"\x00\x01" + lp(b"a") + b"\x01" + lp(b"b") + b"\x03"),
        MalformedPacket,
        id="second-filter-qos3",
    ),
    # A non-zero packet identifier [MQTT-2.3.1-1]
    pytest.param(frame(0x82, b"\x00\x00" + lp(b"a") + b"\x00"), ProtocolError, id="sub-id-0"),
    # Truncations inside a complete packet.
    pytest.param(frame(0x82, b""), MalformedPacket, id="subscribe-empty-body"),
    pytest.param(frame(0x82, b"\x00"), MalformedPacket, id="subscribe-half-id"),
    pytest.param(frame(0x82, b"\x00\x01" + lp(b"a")), MalformedPacket, id="no-qos-byte"),
    pytest.param(frame(0x82, b"\x00\x01\x00"), MalformedPacket, id="half-filter-length"),
    pytest.param(frame(0x82, b"\x00\x01\x00\x09a\x00"), MalformedPacket, id="filter-past-end"),
    # "The Payload of an UNSUBSCRIBE packet MUST contain at least one Topic Filter. An
    # UNSUBSCRIBE packet with no payload is a protocol violation" [MQTT-3.10.3-2]
    pytest.param(frame(0xA2, b"\x00\x01"), ProtocolError, id="unsubscribe-no-filters"),
    pytest.param(frame(0xA2, b"\x00\x00" + lp(b"a")), ProtocolError, id="unsub-id-0"),
    pytest.param(frame(0xA2, b""), MalformedPacket, id="unsubscribe-empty-body"),
    pytest.param(frame(0xA2, b"\x00\x01\x00\x09a"), MalformedPacket, id="unsub-past-end"),
    pytest.param(frame(0xA2, b"\x00\x01" + lp(b"a") + b"\x00"), MalformedPacket, id="unsub-half"),
]


@pytest.mark.parametrize(("wire", "error"), SUBSCRIBE_ERRORS)
def test_subscribe_unsubscribe_errors(wire: bytes, error: type[MQTTError]) -> None:
    assert_rejected(wire, error)


SUBACK_ERRORS = [
    # "SUBACK return codes other than 0x00, 0x01, 0x02 and 0x80 are reserved and MUST NOT
    # be used" [MQTT-3.9.3-2]
    pytest.param(frame(0x90, b"\x00\x01\x03"), id="code-3"),
    pytest.param(frame(0x90, b"\x00\x01\x7f"), id="code-7f"),
    pytest.param(frame(0x90, b"\x00\x01\x81"), id="code-81"),
    pytest.param(frame(0x90, b"\x00\x01\x00\xff"), id="second-code-ff"),
    # One return code per topic filter (3.9.3): at least one.
    pytest.param(frame(0x90, b"\x00\x01"), id="no-codes"),
    pytest.param(frame(0x90, b"\x00"), id="half-id"),
    pytest.param(frame(0x90, b""), id="empty"),
]


@pytest.mark.parametrize("wire", SUBACK_ERRORS)
def test_suback_errors(wire: bytes) -> None:
    assert_rejected(wire, MalformedPacket)


# --------------------------------------------- CONNACK, acks, empty packets

ACK_FIRST_BYTES = [
    pytest.param(0x40, id="puback"),
    pytest.param(0x50, id="pubrec"),
    pytest.param(0x62, id="pubrel"),
    pytest.param(0x70, id="pubcomp"),
    pytest.param(0xB0, id="unsuback"),
]


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x01\x00", b"\x00\x01\x00\x00"])
@pytest.mark.parametrize("first_byte", ACK_FIRST_BYTES)
def test_ack_with_remaining_length_other_than_2_is_malformed(first_byte: int, body: bytes) -> None:
    # PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: "Remaining Length field. This is the length
    # of the variable header. For the ... Packet this has the value 2" (3.4.1, 3.5.1, 3.6.1,
    # 3.7.1, 3.11.1).
    assert_rejected(frame(first_byte, body), MalformedPacket)


def test_puback_with_remaining_length_3_is_malformed() -> None:
    assert_rejected(b"\x40\x03\x00\x01\x00", MalformedPacket)


@pytest.mark.parametrize("first_byte", ACK_FIRST_BYTES)
def test_ack_with_packet_id_0_is_protocol_error(first_byte: int) -> None:
    # Acknowledgements carry the non-zero identifier of the packet they acknowledge
    # [MQTT-2.3.1-1, MQTT-2.3.1-6/7].
    assert_rejected(frame(first_byte, b"\x00\x00"), ProtocolError)


@pytest.mark.parametrize("body", [b"\x00", b"\x00\x00", b"\xff"])
@pytest.mark.parametrize("first_byte", [0xC0, 0xD0, 0xE0], ids=["pingreq", "pingresp", "disconn"])
def test_empty_packets_with_a_body_are_malformed(first_byte: int, body: bytes) -> None:
    # PINGREQ, PINGRESP, DISCONNECT have no variable header and no payload (3.12-3.14).
    assert_rejected(frame(first_byte, body), MalformedPacket)


def test_pingreq_with_body() -> None:
    assert_rejected(b"\xc0\x01\x00", MalformedPacket)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"\x20\x00", id="length-0"),
        pytest.param(b"\x20\x01\x00", id="length-1"),
        pytest.param(b"\x20\x03\x00\x00\x00", id="length-3"),
        # Bits 7-1 of the Connect Acknowledge Flags are reserved and set to 0 (3.2.2.1).
        pytest.param(b"\x20\x02\x02\x00", id="reserved-bit-1"),
        pytest.param(b"\x20\x02\x80\x00", id="reserved-bit-7"),
        pytest.param(b"\x20\x02\xff\x00", id="all-bits"),
    ],
)
def test_connack_errors(wire: bytes) -> None:
    assert_rejected(wire, MalformedPacket)


# ------------------------------------------------------------------ streams

STREAM_PACKETS = [packet for _, packet, _ in VECTORS]
STREAM = b"".join(wire for _, _, wire in VECTORS)


def test_stream_one_byte_at_a_time() -> None:
    decoder = Decoder()
    packets: list[Packet] = []
    for index in range(len(STREAM)):
        decoder.feed(STREAM[index : index + 1])
        packets.extend(drain(decoder))
    assert packets == STREAM_PACKETS
    assert decoder.buffered() == 0


@pytest.mark.parametrize("seed", range(20))
def test_stream_in_random_chunks(seed: int) -> None:
    rng = random.Random(seed)
    decoder = Decoder()
    packets: list[Packet] = []
    position = 0
    while position < len(STREAM):
        size = rng.randint(0, 40)
        decoder.feed(STREAM[position : position + size])
        position += size
        packets.extend(drain(decoder))
    assert packets == STREAM_PACKETS
    assert decoder.buffered() == 0


def test_each_packet_waits_until_its_last_byte() -> None:
    for name, packet, wire in VECTORS:
        decoder = Decoder()
        for index in range(len(wire) - 1):
            decoder.feed(wire[index : index + 1])
            assert decoder.next_packet() is None, (name, index)
            assert decoder.buffered() == index + 1
        decoder.feed(wire[-1:])
        assert decoder.next_packet() == packet
        assert decoder.next_packet() is None
        assert decoder.buffered() == 0


def test_empty_decoder_returns_none() -> None:
    decoder = Decoder()
    assert decoder.next_packet() is None
    decoder.feed(b"")
    assert decoder.next_packet() is None
    assert decoder.buffered() == 0


def test_partial_packet_is_kept_between_feeds() -> None:
    decoder = Decoder()
    decoder.feed(b"\xc0\x00\x32\x0c\x00\x03a/b")
    assert decoder.next_packet() == PingReq()
    assert decoder.next_packet() is None
    assert decoder.buffered() == 7
    decoder.feed(b"\x00\x0ahel")
    assert decoder.next_packet() is None
    decoder.feed(b"lo\xe0\x00")
    assert drain(decoder) == [Publish("a/b", b"hello", qos=1, packet_id=10), Disconnect()]


def test_packets_before_a_malformed_one_are_delivered() -> None:
    decoder = Decoder()
    decoder.feed(b"\x40\x02\x00\x01\xc0\x00\x00")
    assert decoder.next_packet() == PubAck(1)
    assert decoder.next_packet() == PingReq()
    with pytest.raises(MalformedPacket):
        decoder.next_packet()


def test_decode_all_empty() -> None:
    assert decode_all(b"") == []


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"\xc0\x00\x30", id="first-byte-only"),
        pytest.param(b"\xc0\x00\x30\x05\x00\x03a/", id="partial-body"),
        pytest.param(b"\x30\x80", id="partial-length"),
    ],
)
def test_decode_all_incomplete_tail_is_malformed(wire: bytes) -> None:
    assert_rejected(wire, MalformedPacket)


# ---------------------------------------------------------- max packet size


def test_packet_too_large_raised_from_header_alone() -> None:
    decoder = Decoder(max_packet_size=10)
    decoder.feed(b"\x30\x09")  # 1 + 1 + 9 = 11 bytes > 10
    with pytest.raises(PacketTooLarge) as info:
        decoder.next_packet()
    assert isinstance(info.value, MalformedPacket)
    assert info.value.reason_code == 0x95


def test_packet_of_exactly_max_size_is_accepted() -> None:
    decoder = Decoder(max_packet_size=11)
    decoder.feed(b"\x30\x09")
    assert decoder.next_packet() is None
    decoder.feed(b"\x00\x01t123456")
    assert decoder.next_packet() == Publish("t", b"123456")


def test_packet_too_large_with_multi_byte_length() -> None:
    # Remaining length 16383 (0xFF 0x7F): the packet is 1 + 2 + 16383 = 16386 bytes.
    decoder = Decoder(max_packet_size=16_385)
    decoder.feed(b"\x30\xff\x7f")
    with pytest.raises(PacketTooLarge):
        decoder.next_packet()
    decoder = Decoder(max_packet_size=16_386)
    decoder.feed(b"\x30\xff\x7f")
    assert decoder.next_packet() is None


def test_packet_too_large_after_earlier_packets() -> None:
    decoder = Decoder(max_packet_size=100)
    decoder.feed(b"\xc0\x00\x40\x02\x00\x09\x30\xe5\x00")  # remaining length 101
    assert decoder.next_packet() == PingReq()
    assert decoder.next_packet() == PubAck(9)
    with pytest.raises(PacketTooLarge):
        decoder.next_packet()


def test_packet_too_large_also_when_whole_packet_buffered() -> None:
    decoder = Decoder(max_packet_size=4)
    decoder.feed(b"\x40\x03\x00\x01\x00")  # 5 bytes; size is judged before the body
    with pytest.raises(PacketTooLarge):
        decoder.next_packet()


def test_default_max_packet_size_accepts_the_largest_length() -> None:
    decoder = Decoder()
    assert decoder.max_packet_size == MAX_PACKET_SIZE
    decoder.feed(b"\x30\xff\xff\xff\x7f")
    assert decoder.next_packet() is None


def test_refusing_connack_never_claims_a_session() -> None:
    # "If a server sends a CONNACK packet containing a non-zero return code it MUST
    # set Session Present to 0" [MQTT-3.2.2-4]
    assert encode(ConnAck(5, session_present=True)) == b"\x20\x02\x00\x05"


def test_suback_with_packet_id_zero_is_a_protocol_error() -> None:
    # SUBACK echoes the SUBSCRIBE's packet id, which is never 0 [MQTT-2.3.1-1]
    with pytest.raises(ProtocolError):
        decode_all(b"\x90\x03\x00\x00\x00")


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_decoded_publish_keeps_its_header_for_forwarding(qos: int) -> None:
    """The bytes up to the packet id come back as `head` when DUP and RETAIN are clear:
    exactly what encode_publish_head builds, so forwarding needs no encoding."""
    packet_id = 9 if qos else None
    wire = encode_publish("a/b", b"payload", qos, packet_id=packet_id)
    (decoded,) = decode_all(wire)
    assert isinstance(decoded, Publish)
    assert decoded.head == encode_publish_head("a/b", 7, qos, False)
    assert wire.startswith(decoded.head)


@pytest.mark.parametrize(("retain", "dup"), [(True, False), (False, True), (True, True)])
def test_retained_or_duplicate_publish_has_no_forwardable_header(retain: bool, dup: bool) -> None:
    (decoded,) = decode_all(encode_publish("a/b", b"p", 1, retain, dup, 3))
    assert isinstance(decoded, Publish)
    assert decoded.head is None


def test_publish_packets_are_hashable_by_value() -> None:
    """Unfrozen for speed, PUBLISH still hashes like every other packet (sets of them)."""
    one = Publish("a", b"x", 1, packet_id=2)
    assert {one, Publish("a", b"x", 1, packet_id=2)} == {one}


def test_refusing_connack_that_claims_a_session_is_a_protocol_error() -> None:
    # [MQTT-3.2.2-4]: a non-zero return code comes with Session Present 0
    with pytest.raises(ProtocolError):
        decode_all(b"\x20\x02\x01\x05")


@pytest.mark.parametrize(("name", "level"), [(b"MQTT", 4), (b"MQIsdp", 3)])
def test_bridge_bit_on_the_protocol_level_marks_a_bridge(name: bytes, level: int) -> None:
    # Mosquitto's bridges (try_private) set 0x80 on a 3.1 / 3.1.1 protocol level.
    wire = _connect(0x02, lp(b"edge.cloud"), name=name, level=0x80 | level)
    [packet] = decode_all(wire)
    assert isinstance(packet, Connect)
    assert (packet.protocol_level, packet.bridge, packet.client_id) == (level, True, "edge.cloud")
    assert encode(packet, level) == wire


def test_bridge_bit_on_level_5_is_an_unsupported_level() -> None:
    wire = _connect(0x02, lp(b"c"), name=b"MQTT", level=0x85)
    [packet] = decode_all(wire)
    assert isinstance(packet, Connect)
    assert (packet.protocol_level, packet.bridge) == (0x85, False)
