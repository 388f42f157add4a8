"""Area 26 (MQTT 5.0): Receive Maximum and Maximum Packet Size, both directions (3.1.2.11, 4.9).

The broker's own limits come from its CONNACK; a limit too large to exceed
quickly makes the scenario not applicable rather than slow.
"""

from __future__ import annotations

from midge.conformance.harness import RawClient, check
from midge.conformance.target import Target
from midge.conformance.v5 import (
    DEFAULT_RECEIVE_MAXIMUM,
    PACKET_LIMIT_CHECKED,
    expect_disconnect,
    require,
    scenario5,
    server_properties,
)
from midge.protocol.packets import PubComp, Publish, PubRec, PubRel
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode

CLIENT_RECEIVE_MAXIMUM = 2
MESSAGES = 5
RECEIVE_MAXIMUM_CHECKED = 4096
"""The largest broker Receive Maximum a scenario exceeds on purpose."""
CLIENT_MAXIMUM_PACKET = 256
STEP_QUIET = 0.2
"""Seconds of silence after each message that an acknowledgement let through."""


def _flow_controlled(target: Target, qos: int) -> tuple[RawClient, str]:
    """A subscriber with Receive Maximum 2, and MESSAGES QoS `qos` messages published to it."""
    topic = target.topic("flow")
    subscriber = target.client("s", properties=Properties(receive_maximum=CLIENT_RECEIVE_MAXIMUM))
    subscriber.subscribe((topic, qos))
    publisher = target.client("p")
    for index in range(MESSAGES):
        publisher.publish(topic, b"%d" % index, qos=qos)
    return subscriber, topic


def _in_flight(client: RawClient, expected: int) -> list[Publish]:
    """Exactly `expected` PUBLISH packets arrive, and then nothing within the quiet period."""
    arrived = [client.expect(Publish) for _ in range(expected)]
    client.expect_nothing()
    return arrived


@scenario5(
    "26-01",
    "QoS 1: the broker never has more unacknowledged PUBLISH than the client's Receive Maximum",
    rule="MQTT-3.3.4-9",
)
def receive_maximum_qos1(target: Target) -> None:
    subscriber, _topic = _flow_controlled(target, 1)
    received = _in_flight(subscriber, CLIENT_RECEIVE_MAXIMUM)
    for index in range(MESSAGES):
        subscriber.acknowledge(received[index])
        if len(received) < MESSAGES:  # one acknowledgement frees room for one message
            received.append(subscriber.expect(Publish))
            subscriber.expect_nothing(STEP_QUIET)
    payloads = [publish.payload for publish in received]
    wanted = [b"%d" % index for index in range(MESSAGES)]
    check(payloads == wanted, f"s: received {payloads}, expected {wanted}")


@scenario5(
    "26-02",
    "QoS 2: a message counts against Receive Maximum until PUBCOMP, not PUBREC",
    rule="MQTT-3.3.4-9",
)
def receive_maximum_qos2(target: Target) -> None:
    subscriber, _topic = _flow_controlled(target, 2)
    first, _second = _in_flight(subscriber, CLIENT_RECEIVE_MAXIMUM)
    packet_id = first.packet_id or 0
    subscriber.send(PubRec(packet_id))
    pubrel = subscriber.expect(PubRel)
    check(pubrel.packet_id == packet_id, f"s: PUBREL for {pubrel.packet_id}, not {packet_id}")
    subscriber.expect_nothing()  # still two in flight: PUBCOMP not sent yet
    subscriber.send(PubComp(packet_id))
    third = subscriber.expect(Publish)
    check(third.payload == b"2", f"s: after PUBCOMP got {third.payload!r}, expected b'2'")


@scenario5(
    "26-03",
    "A client exceeding the broker's Receive Maximum gets DISCONNECT 0x93",
    rule="MQTT-3.3.4-7",
)
def client_exceeds_receive_maximum(target: Target) -> None:
    client = target.client("c")
    maximum = server_properties(client).receive_maximum or DEFAULT_RECEIVE_MAXIMUM
    require(maximum <= RECEIVE_MAXIMUM_CHECKED, f"the broker's Receive Maximum is {maximum}")
    topic = target.topic("flood")
    # QoS 2 without PUBREL: each message stays unacknowledged (no PUBCOMP).
    packets = [Publish(topic, b"x", 2, packet_id=index + 1) for index in range(maximum + 1)]
    for packet in packets:
        client.send(packet, allow_closed=True)
    pubrecs = 0
    answer = client.receive(waiting_for="PUBREC or DISCONNECT 0x93")
    while isinstance(answer, PubRec):
        check(
            answer.reason_code < 0x80,
            f"c: PUBREC 0x{answer.reason_code:02X} for message {pubrecs + 1} of "
            f"{maximum + 1} (Receive Maximum {maximum}) instead of DISCONNECT 0x93",
        )
        pubrecs += 1
        answer = client.receive(waiting_for="PUBREC or DISCONNECT 0x93")
    check(pubrecs <= maximum, f"c: {pubrecs} PUBRECs with Receive Maximum {maximum}")
    client.backlog.appendleft(answer)
    expect_disconnect(client, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)


@scenario5(
    "26-04",
    "A message larger than the client's Maximum Packet Size is not sent; a later small one is",
    rule="MQTT-3.1.2-25",
)
def client_maximum_packet_size(target: Target) -> None:
    topic = target.topic("size")
    subscriber = target.client(
        "s", properties=Properties(maximum_packet_size=CLIENT_MAXIMUM_PACKET)
    )
    subscriber.subscribe((topic, 1))
    publisher = target.client("p")
    publisher.publish(topic, b"L" * (CLIENT_MAXIMUM_PACKET * 4), qos=1)
    publisher.publish(topic, b"small", qos=1)
    subscriber.expect_publish(topic, b"small", qos=1)
    subscriber.expect_nothing()


@scenario5(
    "26-05",
    "A packet above the broker's Maximum Packet Size gets DISCONNECT 0x95",
    rule="MQTT-3.2.2-15",
)
def broker_maximum_packet_size(target: Target) -> None:
    client = target.client("c")
    maximum = server_properties(client).maximum_packet_size
    require(maximum is not None, "the broker advertises no Maximum Packet Size")
    assert maximum is not None
    require(maximum <= PACKET_LIMIT_CHECKED, f"the broker's Maximum Packet Size is {maximum}")
    watcher = target.client("w")
    topic = target.topic("big")
    watcher.subscribe((topic, 0))
    client.send(Publish(topic, b"B" * maximum), allow_closed=True)
    expect_disconnect(client, ReasonCode.PACKET_TOO_LARGE)
    watcher.expect_nothing()
