"""Property tests of the 5.0 codec: round trips with random allowed properties, and
robustness of the version-5 decoder on hostile bytes."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midge.protocol.codec import Decoder, decode_all, encode, encode_remaining_length
from midge.protocol.errors import MalformedPacket, MQTTError, ProtocolError
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
from midge.protocol.properties import (
    BINARY,
    SPECS,
    STRING,
    STRING_PAIR,
    VARIABLE,
    WILL,
    Properties,
    PropertyId,
)
from midge.protocol.reasons import ALLOWED

FAST = settings(max_examples=200, deadline=None, database=None)
V5 = 5

# ---------------------------------------------------------------- strategies

NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
strings = st.text(
    st.characters(exclude_categories=NO_SURROGATES, exclude_characters="\x00"), max_size=8
)
topic_levels = st.text(
    st.characters(exclude_categories=NO_SURROGATES, exclude_characters="\x00/+#"), max_size=5
)
topic_names = st.lists(topic_levels, min_size=1, max_size=3).map("/".join).filter(bool)
topic_filters = st.lists(st.one_of(topic_levels, st.just("+")), min_size=1, max_size=3).map(
    "/".join
)
packet_ids = st.integers(1, 0xFFFF)
qos_levels = st.integers(0, 2)


def _value(identifier: int) -> st.SearchStrategy[object]:
    """A value property `identifier` may take: in its type and in its range."""
    spec = SPECS[identifier]
    if spec.kind == STRING:
        return strings
    if spec.kind == BINARY:
        return st.binary(max_size=8)
    if spec.kind == STRING_PAIR:
        return st.lists(st.tuples(strings, strings), min_size=1, max_size=3).map(tuple)
    values = st.integers(spec.low, spec.high)
    if spec.kind == VARIABLE:  # the Subscription Identifiers: a tuple of them
        return st.lists(values, min_size=1, max_size=3).map(tuple)
    return values


def _attribute(identifier: int) -> str:
    return {
        PropertyId.SUBSCRIPTION_IDENTIFIER: "subscription_identifiers",
        PropertyId.USER_PROPERTY: "user_properties",
    }.get(PropertyId(identifier), SPECS[identifier].attribute)


@st.composite
def properties(draw: st.DrawFn, packet: int) -> Properties | None:
    """Random properties `packet` (a packet type or WILL) may carry; None for none,
    as the decoder returns for an empty block."""
    allowed = [i for i, spec in SPECS.items() if packet in spec.packets]
    chosen = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=6)) if allowed else []
    values = {_attribute(i): draw(_value(i)) for i in chosen}
    if packet == PacketType.SUBSCRIBE and "subscription_identifiers" in values:
        values["subscription_identifiers"] = values["subscription_identifiers"][:1]  # type: ignore[index]
    if "authentication_data" in values and "authentication_method" not in values:
        values["authentication_method"] = draw(strings)  # data needs its method
    return Properties(**values) if values else None  # type: ignore[arg-type]


def reason(packet_type: int) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(ALLOWED[packet_type]))


def reasons(packet_type: int) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(reason(packet_type), min_size=1, max_size=5).map(tuple)


wills = st.builds(
    Will,
    topic=topic_names,
    payload=st.binary(max_size=32),
    qos=qos_levels,
    retain=st.booleans(),
    properties=properties(WILL),
)

connects = st.builds(
    Connect,
    client_id=strings,
    clean_session=st.booleans(),
    keep_alive=st.integers(0, 0xFFFF),
    username=st.none() | strings,
    password=st.none() | st.binary(max_size=16),  # no user name needed in 5.0
    will=st.none() | wills,
    protocol_level=st.just(V5),
    properties=properties(PacketType.CONNECT),
)


@st.composite
def connacks(draw: st.DrawFn) -> ConnAck:
    code = draw(reason(PacketType.CONNACK))
    present = draw(st.booleans()) if code == 0 else False  # [MQTT-3.2.2-6]
    return ConnAck(code, present, draw(properties(PacketType.CONNACK)))


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(qos_levels)
    props = draw(properties(PacketType.PUBLISH))
    # An empty topic is allowed only beside a Topic Alias (3.3.2.3.4).
    has_alias = props is not None and props.topic_alias is not None
    topic = draw(topic_names | st.just("")) if has_alias else draw(topic_names)
    return Publish(
        topic,
        draw(st.binary(max_size=64)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else None,
        properties=props,
    )


def acks(cls: type[PubAck | PubRec | PubRel | PubComp]) -> st.SearchStrategy[Packet]:
    packet_type = PacketType[cls.__name__.upper()]
    return st.builds(cls, packet_ids, reason(packet_type), properties(packet_type))


subscriptions = st.builds(
    Subscription,
    topic_filters,
    qos_levels,
    st.booleans(),
    st.booleans(),
    st.integers(0, 2),
)

PACKETS: dict[str, st.SearchStrategy[Packet]] = {
    "connect": connects,
    "connack": connacks(),
    "publish": publishes(),
    "puback": acks(PubAck),
    "pubrec": acks(PubRec),
    "pubrel": acks(PubRel),
    "pubcomp": acks(PubComp),
    "subscribe": st.builds(
        Subscribe,
        packet_ids,
        st.lists(subscriptions, min_size=1, max_size=3).map(tuple),
        properties(PacketType.SUBSCRIBE),
    ),
    "suback": st.builds(
        SubAck, packet_ids, reasons(PacketType.SUBACK), properties(PacketType.SUBACK)
    ),
    "unsubscribe": st.builds(
        Unsubscribe,
        packet_ids,
        st.lists(topic_filters, min_size=1, max_size=3).map(tuple),
        properties(PacketType.UNSUBSCRIBE),
    ),
    "unsuback": st.builds(
        UnsubAck, packet_ids, reasons(PacketType.UNSUBACK), properties(PacketType.UNSUBACK)
    ),
    "pingreq": st.just(PingReq()),
    "pingresp": st.just(PingResp()),
    "disconnect": st.builds(
        Disconnect, reason(PacketType.DISCONNECT), properties(PacketType.DISCONNECT)
    ),
    "auth": st.builds(Auth, reason(PacketType.AUTH), properties(PacketType.AUTH)),
}
packets = st.one_of(*PACKETS.values())


def test_every_packet_type_has_a_strategy() -> None:
    assert set(PACKETS) == {t.name.lower() for t in PacketType}


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", sorted(PACKETS))
@FAST
@given(data=st.data())
def test_round_trip(kind: str, data: st.DataObject) -> None:
    packet = data.draw(PACKETS[kind])
    wire = encode(packet, V5)
    assert decode_all(wire, V5) == [packet]


@FAST
@given(packets)
def test_encoding_has_the_declared_remaining_length(packet: Packet) -> None:
    wire = encode(packet, V5)
    length, shift, index = 0, 0, 1
    while True:
        byte = wire[index]
        length |= (byte & 0x7F) << shift
        index += 1
        if not byte & 0x80:
            break
        shift += 7
    assert len(wire) - index == length


@FAST
@given(st.lists(packets, max_size=5), st.lists(st.integers(0, 2000), max_size=8))
def test_stream_split_anywhere(stream: list[Packet], cuts: list[int]) -> None:
    wire = b"".join(encode(p, V5) for p in stream)
    decoder = Decoder(V5)
    decoded: list[Packet] = []
    start = 0
    for cut in [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]:
        decoder.feed(wire[start:cut])
        start = cut
        while (packet := decoder.next_packet()) is not None:
            decoded.append(packet)
    assert decoded == stream


# ---------------------------------------------------------------- robustness


def decode_or_mqtt_error(wire: bytes) -> list[Packet] | None:
    """None if the decoder raised one of the protocol's errors; any other exception
    fails the test. Whatever it accepts re-encodes to the same packets."""
    decoder = Decoder(V5)
    decoder.feed(wire)
    decoded = []
    try:
        while (packet := decoder.next_packet()) is not None:
            decoded.append(packet)
    except MQTTError as exc:
        assert isinstance(exc, MalformedPacket | ProtocolError), repr(exc)
        return None
    if decoded:
        assert decode_all(b"".join(encode(p, V5) for p in decoded), V5) == decoded
    return decoded


@FAST
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_mqtt_errors(wire: bytes) -> None:
    decode_or_mqtt_error(wire)


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """A correct fixed header (any type, any flags) around random body bytes."""
    first = draw(st.integers(0x10, 0xFF))
    body = draw(st.binary(max_size=200))
    return bytes((first,)) + encode_remaining_length(len(body)) + body


@FAST
@given(st.lists(framed_garbage(), min_size=1, max_size=3))
def test_framed_garbage_raises_only_mqtt_errors(frames: list[bytes]) -> None:
    decode_or_mqtt_error(b"".join(frames))


@FAST
@given(st.lists(packets, min_size=1, max_size=3), st.data())
def test_single_byte_mutation_raises_only_mqtt_errors(
    stream: list[Packet], data: st.DataObject
) -> None:
    wire = bytearray(b"".join(encode(p, V5) for p in stream))
    index = data.draw(st.integers(0, len(wire) - 1))
    wire[index] = data.draw(st.integers(0, 255).filter(lambda b: b != wire[index]))
    decode_or_mqtt_error(bytes(wire))
