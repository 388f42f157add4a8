"""Area 23 (MQTT 5.0): malformed properties end the connection with the right reason code.

A property not valid for its packet, an unknown identifier or a value that is
not of its type is a Malformed Packet (0x81, section 2.2.2.2); a second copy
of a property allowed once, or a value the spec forbids, is a Protocol Error
(0x82). In a CONNECT the broker MAY answer CONNACK with the code, then MUST
close; after CONNECT it SHOULD send DISCONNECT with the code (4.13.1).
"""

from __future__ import annotations

from midge.conformance import wire
from midge.conformance.target import Target
from midge.conformance.v5 import expect_disconnect, expect_refused, scenario5, send_connect_bytes
from midge.protocol.properties import PropertyId
from midge.protocol.reasons import ReasonCode

CLEAN_START, WILL_FLAG = 0x02, 0x04
MALFORMED, PROTOCOL_ERROR = ReasonCode.MALFORMED_PACKET, ReasonCode.PROTOCOL_ERROR

_P = PropertyId


def _publish_rejected(target: Target, props: bytes, code: int) -> None:
    """A QoS 0 PUBLISH with the raw property block `props` ends the connection; not delivered."""
    topic = target.topic("bad")
    watcher = target.client("w")
    watcher.subscribe((topic, 0))
    client = target.client("c")
    client.send(wire.publish5(0x30, topic.encode(), props, b"x"), allow_closed=True)
    expect_disconnect(client, code)
    watcher.expect_nothing()


def _connect_rejected(target: Target, props: bytes, code: int, will: bytes = b"") -> None:
    """A CONNECT with the raw property block `props` gets CONNACK `code` (or none), then closes."""
    client = target.raw("c")
    flags = CLEAN_START | (WILL_FLAG if will else 0)
    payload = wire.field(target.client_id("c").encode()) + will
    send_connect_bytes(client, wire.connect5(flags, props, payload))
    expect_refused(client, code, close_conforms=True)


@scenario5(
    "23-01",
    "A PUBLISH with a property not valid for PUBLISH (Session Expiry) is Malformed: 0x81",
    rule="§2.2.2.2",
)
def property_on_wrong_packet(target: Target) -> None:
    props = wire.properties(wire.prop(_P.SESSION_EXPIRY_INTERVAL, wire.four_bytes(10)))
    _publish_rejected(target, props, MALFORMED)


@scenario5(
    "23-02",
    "A PUBLISH with an undefined property identifier (0x7F) is Malformed: 0x81",
    rule="§2.2.2.2",
)
def unknown_property(target: Target) -> None:
    _publish_rejected(target, wire.properties(wire.prop(0x7F, b"\x00")), MALFORMED)


@scenario5(
    "23-03",
    "A PUBLISH with Message Expiry Interval twice is a Protocol Error: 0x82",
    rule="§3.3.2.3.3",
)
def duplicate_property(target: Target) -> None:
    expiry = wire.prop(_P.MESSAGE_EXPIRY_INTERVAL, wire.four_bytes(10))
    _publish_rejected(target, wire.properties(expiry, expiry), PROTOCOL_ERROR)


@scenario5(
    "23-04",
    "A property length running past the end of the PUBLISH is Malformed: 0x81",
    rule="§2.2.2.1",
)
def property_length_too_long(target: Target) -> None:
    _publish_rejected(target, b"\x20" + wire.prop(_P.CONTENT_TYPE, wire.field(b"t")), MALFORMED)


@scenario5(
    "23-05",
    "A PUBLISH from a client carrying a Subscription Identifier is a Protocol Error: 0x82",
    rule="MQTT-3.3.4-6",
)
def client_subscription_identifier(target: Target) -> None:
    props = wire.properties(wire.prop(_P.SUBSCRIPTION_IDENTIFIER, b"\x05"))
    _publish_rejected(target, props, PROTOCOL_ERROR)


@scenario5(
    "23-06",
    "A User Property name that is not well-formed UTF-8 is Malformed: 0x81",
    rule="MQTT-1.5.4-1",
)
def user_property_bad_utf8(target: Target) -> None:
    pair = wire.field(b"\xed\xa0\x80") + wire.field(b"v")  # an encoded surrogate
    _publish_rejected(target, wire.properties(wire.prop(_P.USER_PROPERTY, pair)), MALFORMED)


@scenario5(
    "23-07",
    "A SUBSCRIBE with Subscription Identifier 0 is a Protocol Error: 0x82",
    rule="§3.8.2.1.2",
)
def subscription_identifier_zero(target: Target) -> None:
    client = target.client("c")
    props = wire.properties(wire.prop(_P.SUBSCRIPTION_IDENTIFIER, b"\x00"))
    client.send(wire.subscribe5(1, props, (target.topic().encode(), 0)), allow_closed=True)
    expect_disconnect(client, PROTOCOL_ERROR)


@scenario5(
    "23-08",
    "A CONNECT with Receive Maximum 0 is a Protocol Error: CONNACK 0x82 (or none), then close",
    rule="§3.1.2.11.3",
)
def receive_maximum_zero(target: Target) -> None:
    props = wire.properties(wire.prop(_P.RECEIVE_MAXIMUM, wire.two_bytes(0)))
    _connect_rejected(target, props, PROTOCOL_ERROR)


@scenario5(
    "23-09",
    "A CONNECT with Maximum Packet Size 0 is a Protocol Error: CONNACK 0x82 (or none), then close",
    rule="§3.1.2.11.4",
)
def maximum_packet_size_zero(target: Target) -> None:
    props = wire.properties(wire.prop(_P.MAXIMUM_PACKET_SIZE, wire.four_bytes(0)))
    _connect_rejected(target, props, PROTOCOL_ERROR)


@scenario5(
    "23-10",
    "A CONNECT with Request Problem Information 2 is a Protocol Error: CONNACK 0x82 (or none)",
    rule="§3.1.2.11.7",
)
def request_problem_information_two(target: Target) -> None:
    props = wire.properties(wire.prop(_P.REQUEST_PROBLEM_INFORMATION, b"\x02"))
    _connect_rejected(target, props, PROTOCOL_ERROR)


@scenario5(
    "23-11",
    "A CONNECT with Session Expiry Interval twice is a Protocol Error: CONNACK 0x82 (or none)",
    rule="§3.1.2.11.2",
)
def duplicate_session_expiry(target: Target) -> None:
    expiry = wire.prop(_P.SESSION_EXPIRY_INTERVAL, wire.four_bytes(10))
    _connect_rejected(target, wire.properties(expiry, expiry), PROTOCOL_ERROR)


@scenario5(
    "23-12",
    "Will Properties holding a Topic Alias (not a will property) are Malformed: CONNACK 0x81",
    rule="§2.2.2.2",
)
def will_property_not_allowed(target: Target) -> None:
    will_props = wire.properties(wire.prop(_P.TOPIC_ALIAS, wire.two_bytes(1)))
    will = will_props + wire.field(target.topic("will").encode()) + wire.field(b"w")
    _connect_rejected(target, wire.properties(), MALFORMED, will=will)


@scenario5(
    "23-13",
    "A CONNECT property not valid for CONNECT (Topic Alias) is Malformed: CONNACK 0x81 (or none)",
    rule="§2.2.2.2",
)
def connect_property_not_allowed(target: Target) -> None:
    props = wire.properties(wire.prop(_P.TOPIC_ALIAS, wire.two_bytes(1)))
    _connect_rejected(target, props, MALFORMED)
