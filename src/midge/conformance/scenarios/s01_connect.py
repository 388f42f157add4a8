"""Area 01: the CONNECT packet, its validation and the CONNACK return codes (section 3.1)."""

from __future__ import annotations

from midge.conformance import wire
from midge.conformance.harness import NotApplicable, RawClient, check
from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.codec import encode
from midge.protocol.packets import PROTOCOL_MQTT_5, ConnAck, Connect, PingReq, Publish


def _expect_accepted(
    client: RawClient,
    client_id: str,
    clean_session: bool = True,
    protocol_level: int = 4,
    protocol_name: str = "MQTT",
) -> None:
    connack = client.connect(
        client_id,
        clean_session=clean_session,
        protocol_level=protocol_level,
        protocol_name=protocol_name,
    )
    check(
        connack.return_code == 0,
        f"{client.name}: CONNACK return code {connack.return_code} for {client_id!r}, expected 0",
    )
    client.still_connected()


def _expect_refused_then_closed(client: RawClient, return_code: int) -> None:
    connack = client.connack
    assert connack is not None
    check(
        connack.return_code == return_code,
        f"{client.name}: CONNACK return code {connack.return_code}, expected {return_code}",
    )
    check(
        not connack.session_present,
        f"{client.name}: session present 1 in a refusing CONNACK [MQTT-3.2.2-4]",
    )
    client.expect_closed()


def _expect_closed_without_connack(target: Target, data: bytes) -> None:
    client = target.raw("c")
    client.send(data)
    client.expect_closed()


@scenario("01-01", "A valid CONNECT is answered with CONNACK return code 0", rule="MQTT-3.1.4-4")
def valid_connect(target: Target) -> None:
    _expect_accepted(target.raw("c"), target.client_id("c"))


def _unsupported_level(target: Target, level: int) -> None:
    client = target.raw("c")
    client.connect(target.client_id("c"), protocol_level=level)
    _expect_refused_then_closed(client, 1)


@scenario(
    "01-02",
    "Level 5: a broker without MQTT 5.0 answers CONNACK 1 and closes (5.0 brokers: n/a)",
    rule="MQTT-3.1.2-2",
)
def level_5_refused(target: Target) -> None:
    client = target.raw("c")
    connack = client.connect(target.client_id("c"), protocol_level=5)
    if connack.return_code == 0 and client.decoder.version == PROTOCOL_MQTT_5:
        raise NotApplicable("the broker serves MQTT 5.0 (its scenarios: --protocol 5)")
    _expect_refused_then_closed(client, 1)


@scenario(
    "01-03",
    "Protocol name MQTT with level 6 gets CONNACK 1, then the connection closes",
    rule="MQTT-3.1.2-2",
)
def level_6_refused(target: Target) -> None:
    _unsupported_level(target, 6)


@scenario(
    "01-04", "An unknown protocol name closes the connection without CONNACK", rule="MQTT-3.1.2-1"
)
def unknown_protocol_name(target: Target) -> None:
    data = encode(Connect(target.client_id("c"), protocol_name="MQTX"))
    _expect_closed_without_connack(target, data)


@scenario(
    "01-05",
    "A PUBLISH as the first packet closes the connection and is not delivered",
    rule="MQTT-3.1.0-1",
)
def first_packet_not_connect(target: Target) -> None:
    topic = target.topic()
    watcher = target.client("w")
    watcher.subscribe((topic, 0))
    _expect_closed_without_connack(target, encode(Publish(topic, b"before connect")))
    watcher.expect_nothing()


@scenario("01-06", "A second CONNECT closes the connection", rule="MQTT-3.1.0-2")
def second_connect(target: Target) -> None:
    client = target.client("c")
    client.send(Connect(target.client_id("c")))
    client.expect_closed()


def _payload(target: Target, *fields: bytes) -> bytes:
    return wire.field(target.client_id("c").encode()) + b"".join(map(wire.field, fields))


@scenario("01-07", "CONNECT with the reserved flag set closes the connection", rule="MQTT-3.1.2-3")
def reserved_flag(target: Target) -> None:
    _expect_closed_without_connack(target, wire.connect(0x03, _payload(target)))


@scenario("01-08", "CONNECT with will QoS 3 closes the connection", rule="MQTT-3.1.2-14")
def will_qos_3(target: Target) -> None:
    payload = _payload(target, target.topic("will").encode(), b"will")
    _expect_closed_without_connack(target, wire.connect(0x1E, payload))


@scenario(
    "01-09",
    "CONNECT with will retain but no will flag closes the connection",
    rule="MQTT-3.1.2-15",
)
def will_retain_without_will(target: Target) -> None:
    _expect_closed_without_connack(target, wire.connect(0x22, _payload(target)))


@scenario(
    "01-10",
    "CONNECT with a password but no user name (level 4) closes the connection",
    rule="MQTT-3.1.2-22",
)
def password_without_username(target: Target) -> None:
    _expect_closed_without_connack(target, wire.connect(0x42, _payload(target, b"secret")))


@scenario("01-11", "An MQTT 3.1 CONNECT (MQIsdp, level 3) is accepted", rule="MQTT-3.1.2-2")
def mqtt_3_1_accepted(target: Target) -> None:
    client = target.raw("c")
    _expect_accepted(client, target.client_id("c"), protocol_name="MQIsdp", protocol_level=3)


@scenario("01-12", "An empty client id with clean session 1 is accepted", rule="MQTT-3.1.3-6")
def empty_id_clean(target: Target) -> None:
    _expect_accepted(target.raw("c"), "", clean_session=True)


@scenario(
    "01-13",
    "Two clients with empty client ids are both kept connected (distinct assigned ids)",
    rule="MQTT-3.1.3-6",
)
def two_empty_ids(target: Target) -> None:
    first, second = target.raw("first"), target.raw("second")
    _expect_accepted(first, "")
    _expect_accepted(second, "")
    first.still_connected()


@scenario(
    "01-14",
    "An empty client id with clean session 0 gets CONNACK 2, then the connection closes",
    rule="MQTT-3.1.3-8",
)
def empty_id_persistent(target: Target) -> None:
    client = target.raw("c")
    client.connect("", clean_session=False)
    _expect_refused_then_closed(client, 2)


@scenario("01-15", "A 23-character alphanumeric client id is accepted", rule="MQTT-3.1.3-5")
def id_of_23_characters(target: Target) -> None:
    client_id = target.client_id("Z" * (23 - len(target.prefix)))
    check(len(client_id) == 23, f"test bug: built a client id of {len(client_id)} characters")
    _expect_accepted(target.raw("c"), client_id)


@scenario(
    "01-16",
    "A 100-character client id with '-' and non-ASCII letters is accepted "
    "(permitted by the spec, Midge's default)",
    rule="MQTT-3.1.3-5",
)
def long_unicode_id(target: Target) -> None:
    base = f"{target.prefix}-grüße-"
    _expect_accepted(target.raw("c"), base + "ñ" * (100 - len(base)))


@scenario(
    "01-17",
    "A client id that is not well-formed UTF-8 closes the connection without CONNACK",
    rule="MQTT-1.5.3-1",
)
def client_id_bad_utf8(target: Target) -> None:
    payload = wire.field(target.client_id("c").encode() + b"\xc3\x28")
    _expect_closed_without_connack(target, wire.connect(0x02, payload))


@scenario(
    "01-18",
    "Packets pipelined after a refused CONNECT are not processed",
    rule="MQTT-3.1.4-5",
)
def nothing_after_refused_connect(target: Target) -> None:
    topic = target.topic()
    watcher = target.client("w")
    watcher.subscribe((topic, 0))
    client = target.raw("c")
    refused = encode(client.connect_packet("", clean_session=False))
    client.send(refused + encode(Publish(topic, b"after refusal")) + encode(PingReq()))
    client.connack = client.expect(ConnAck)
    _expect_refused_then_closed(client, 2)
    watcher.expect_nothing()
