"""Property tests of the codec: round trips, streaming, and robustness on hostile bytes."""

from __future__ import annotations

import itertools
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midge.protocol.codec import (
    MAX_REMAINING_LENGTH,
    Decoder,
    decode_all,
    encode,
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
from midge.protocol.topics import is_valid_topic_filter, is_valid_topic_name

# No example database: nothing is written outside tests/protocol.
FAST = settings(max_examples=200, deadline=None, database=None)

# ---------------------------------------------------------------- strategies

NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)

# Any character a UTF-8 string field may hold: no surrogates, no U+0000 [MQTT-1.5.3-1/2].
string_chars = st.characters(exclude_categories=NO_SURROGATES, exclude_characters="\x00")
strings = st.text(string_chars, max_size=12)

# One level of a topic: no separator, no wildcard.
topic_levels = st.text(
    st.characters(exclude_categories=NO_SURROGATES, exclude_characters="\x00/+#"), max_size=6
)
topic_names = st.lists(topic_levels, min_size=1, max_size=4).map("/".join).filter(lambda t: t != "")


def _filter_from(levels: list[str], multi_level: bool) -> str:
    return "/".join([*levels, "#"] if multi_level else levels)


# Section 4.7.1: `+` fills a whole level anywhere, `#` is the whole last level.
topic_filters = st.builds(
    _filter_from,
    st.lists(st.one_of(topic_levels, st.just("+")), max_size=4),
    st.booleans(),
).filter(lambda f: f != "")

qos_levels = st.integers(0, 2)
packet_ids = st.integers(1, 0xFFFF)
payloads = st.binary(max_size=2048)

wills = st.builds(
    Will, topic=topic_names, payload=st.binary(max_size=256), qos=qos_levels, retain=st.booleans()
)


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    level, name = draw(st.sampled_from([(4, "MQTT"), (3, "MQIsdp")]))
    username = draw(st.none() | strings)
    password = draw(st.none() | st.binary(max_size=64))
    if level == 4 and username is None:
        password = None  # a password needs a user name at 3.1.1 [MQTT-3.1.2-22]
    return Connect(
        client_id=draw(strings),
        clean_session=draw(st.booleans()),
        keep_alive=draw(st.integers(0, 0xFFFF)),
        username=username,
        password=password,
        will=draw(st.none() | wills),
        protocol_level=level,
        protocol_name=name,
    )


@st.composite
def connacks(draw: st.DrawFn) -> ConnAck:
    code = int(draw(st.sampled_from(ConnectReturnCode)))
    # A refused connection has session present 0 [MQTT-3.2.2-4].
    present = draw(st.booleans()) if code == 0 else False
    return ConnAck(code, present)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(qos_levels)
    return Publish(
        topic=draw(topic_names),
        payload=draw(payloads),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,  # [MQTT-3.3.1-2]
        packet_id=draw(packet_ids) if qos else None,  # section 2.3.1
    )


subscriptions = st.builds(Subscription, topic_filter=topic_filters, qos=qos_levels)

PACKET_STRATEGIES: dict[str, st.SearchStrategy[Packet]] = {
    "connect": connects(),
    "connack": connacks(),
    "publish": publishes(),
    "puback": st.builds(PubAck, packet_ids),
    "pubrec": st.builds(PubRec, packet_ids),
    "pubrel": st.builds(PubRel, packet_ids),
    "pubcomp": st.builds(PubComp, packet_ids),
    "subscribe": st.builds(
        Subscribe, packet_ids, st.lists(subscriptions, min_size=1, max_size=4).map(tuple)
    ),
    "suback": st.builds(
        SubAck,
        packet_ids,
        st.lists(st.sampled_from([0, 1, 2, SUBACK_FAILURE]), min_size=1, max_size=16).map(tuple),
    ),
    "unsubscribe": st.builds(
        Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1, max_size=4).map(tuple)
    ),
    "unsuback": st.builds(UnsubAck, packet_ids),
    "pingreq": st.just(PingReq()),
    "pingresp": st.just(PingResp()),
    "disconnect": st.just(Disconnect()),
}

packets = st.one_of(*PACKET_STRATEGIES.values())


def drain(decoder: Decoder) -> list[Packet]:
    out = []
    while (packet := decoder.next_packet()) is not None:
        out.append(packet)
    return out


# ---------------------------------------------------------- the strategies


@FAST
@given(topic_names)
def test_generated_topic_names_are_valid(topic: str) -> None:
    assert is_valid_topic_name(topic)


@FAST
@given(topic_filters)
def test_generated_topic_filters_are_valid(topic_filter: str) -> None:
    assert is_valid_topic_filter(topic_filter)


# -------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", list(PACKET_STRATEGIES))
@FAST
@given(data=st.data())
def test_round_trip(kind: str, data: st.DataObject) -> None:
    packet = data.draw(PACKET_STRATEGIES[kind])
    assert decode_all(encode(packet)) == [packet]


@FAST
@given(packets.filter(lambda p: not isinstance(p, ConnAck)))
def test_round_trip_version_3(packet: Packet) -> None:
    assert decode_all(encode(packet, 3), 3) == [packet]


@FAST
@given(connacks())
def test_connack_version_3_drops_session_present(packet: ConnAck) -> None:
    assert decode_all(encode(packet, 3), 3) == [ConnAck(packet.return_code, False)]


@FAST
@given(packets)
def test_encoding_has_the_declared_remaining_length(packet: Packet) -> None:
    wire = encode(packet)
    length = 0
    for index, byte in enumerate(wire[1:5]):  # the decoding algorithm of section 2.2.3
        length |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            break
    assert len(wire) == 1 + (index + 1) + length


# ---------------------------------------------------------------- streaming


@FAST
@given(st.lists(packets, max_size=6), st.lists(st.integers(0, 10_000), max_size=12))
def test_stream_split_anywhere(stream: list[Packet], cuts: list[int]) -> None:
    wire = b"".join(encode(p) for p in stream)
    points = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    decoder = Decoder()
    received: list[Packet] = []
    for start, end in itertools.pairwise(points):
        decoder.feed(wire[start:end])
        received.extend(drain(decoder))
    assert received == stream
    assert decoder.buffered() == 0


@FAST
@given(packets, st.data())
def test_every_strict_prefix_is_incomplete(packet: Packet, data: st.DataObject) -> None:
    wire = encode(packet)
    cut = data.draw(st.integers(1, len(wire) - 1))
    decoder = Decoder()
    decoder.feed(wire[:cut])
    assert decoder.next_packet() is None
    assert decoder.buffered() == cut
    decoder.feed(wire[cut:])
    assert decoder.next_packet() == packet


@FAST
@given(packets, st.integers(2, 5000))
def test_max_packet_size(packet: Packet, limit: int) -> None:
    wire = encode(packet)
    decoder = Decoder(max_packet_size=limit)
    decoder.feed(wire)
    if len(wire) > limit:
        with pytest.raises(PacketTooLarge):
            decoder.next_packet()
    else:
        assert decoder.next_packet() == packet


# ---------------------------------------------------------- remaining length


@FAST
@given(st.integers(0, MAX_REMAINING_LENGTH))
def test_remaining_length_encoding(length: int) -> None:
    wire = encode_remaining_length(length)
    expected_size = 1 if length < 128 else 2 if length < 16_384 else 3 if length < 2_097_152 else 4
    assert len(wire) == expected_size
    assert all(byte & 0x80 for byte in wire[:-1])
    assert not wire[-1] & 0x80
    assert sum((byte & 0x7F) << (7 * i) for i, byte in enumerate(wire)) == length
    # The decoder reads it back: a packet of exactly its size fits, one byte less does not.
    size = 1 + len(wire) + length
    fits = Decoder(max_packet_size=size)
    fits.feed(b"\x30" + wire)
    if length:
        assert fits.next_packet() is None
    too_small = Decoder(max_packet_size=size - 1)
    too_small.feed(b"\x30" + wire)
    with pytest.raises(PacketTooLarge):
        too_small.next_packet()


# ------------------------------------------------------------- robustness


def decode_or_mqtt_error(wire: bytes) -> list[Packet] | None:
    """Decode `wire` fully; None if the decoder raised one of the protocol's errors.

    Any other exception propagates and fails the test: "any other exception escaping
    the codec is a bug" (midge.protocol.errors).
    """
    decoder = Decoder()
    decoder.feed(wire)
    try:
        return drain(decoder)
    except MQTTError as exc:
        # PacketTooLarge is a MalformedPacket; a bare MQTTError would be a bug too.
        assert isinstance(exc, MalformedPacket | ProtocolError), repr(exc)
        return None


def assert_reencodes(decoded: list[Packet] | None) -> None:
    """Whatever the decoder accepts, the encoder writes back as the same packets."""
    if decoded:
        assert decode_all(b"".join(encode(p) for p in decoded)) == decoded


@FAST
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_mqtt_errors(wire: bytes) -> None:
    assert_reencodes(decode_or_mqtt_error(wire))


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """A correct fixed header (any type, any flags) around random body bytes."""
    first = draw(st.integers(0x10, 0xEF))
    body = draw(st.binary(max_size=300))
    return bytes((first,)) + encode_remaining_length(len(body)) + body


@FAST
@given(st.lists(framed_garbage(), min_size=1, max_size=4))
def test_framed_garbage_raises_only_mqtt_errors(frames: list[bytes]) -> None:
    assert_reencodes(decode_or_mqtt_error(b"".join(frames)))


@FAST
@given(st.lists(packets, min_size=1, max_size=3), st.data())
def test_single_byte_mutation_raises_only_mqtt_errors(
    stream: list[Packet], data: st.DataObject
) -> None:
    wire = bytearray(b"".join(encode(p) for p in stream))
    index = data.draw(st.integers(0, len(wire) - 1))
    wire[index] = data.draw(st.integers(0, 255).filter(lambda b: b != wire[index]))
    assert_reencodes(decode_or_mqtt_error(bytes(wire)))


@FAST
@given(st.lists(packets, min_size=1, max_size=3), st.data())
def test_byte_deletion_or_insertion_raises_only_mqtt_errors(
    stream: list[Packet], data: st.DataObject
) -> None:
    wire = bytearray(b"".join(encode(p) for p in stream))
    index = data.draw(st.integers(0, len(wire) - 1))
    if data.draw(st.booleans()):
        del wire[index]
    else:
        wire.insert(index, data.draw(st.integers(0, 255)))
    assert_reencodes(decode_or_mqtt_error(bytes(wire)))
