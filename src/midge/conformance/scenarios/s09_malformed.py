"""Area 09: malformed packets and protocol violations close the connection (sections 2, 4.8)."""

from __future__ import annotations

import random

from midge.conformance import wire
from midge.conformance.harness import RawClient
from midge.conformance.registry import scenario
from midge.conformance.target import Target


def _closes_after_connect(target: Target, data: bytes) -> RawClient:
    client = target.client("c")
    client.send(data, allow_closed=True)
    client.expect_closed()
    return client


def _closes_and_not_delivered(target: Target, data: bytes, topic_filter: str) -> None:
    watcher = target.client("w")
    watcher.subscribe((topic_filter, 0))
    _closes_after_connect(target, data)
    watcher.expect_nothing()


@scenario("09-01", "Reserved packet type 0 closes the connection", rule="MQTT-4.8.0-1")
def reserved_type_0(target: Target) -> None:
    _closes_after_connect(target, b"\x00\x00")


@scenario("09-02", "Reserved packet type 15 closes the connection", rule="MQTT-4.8.0-1")
def reserved_type_15(target: Target) -> None:
    _closes_after_connect(target, b"\xf0\x00")


@scenario(
    "09-03",
    "A remaining length with a fifth continuation byte closes the connection",
    rule="MQTT-4.8.0-1",
)
def remaining_length_too_long(target: Target) -> None:
    _closes_after_connect(target, b"\x30\xff\xff\xff\xff\x01")


@scenario(
    "09-04",
    "A PUBLISH whose topic has a wildcard closes the connection and is not delivered",
    rule="MQTT-3.3.2-2",
)
def publish_wildcard_topic(target: Target) -> None:
    topic = target.topic("w/+")
    _closes_and_not_delivered(target, wire.publish(0x30, topic.encode(), b"x"), target.topic("#"))


@scenario(
    "09-05",
    "A PUBLISH whose topic is not well-formed UTF-8 closes the connection",
    rule="MQTT-1.5.3-1",
)
def publish_bad_utf8_topic(target: Target) -> None:
    topic = target.topic("bad").encode() + b"\xed\xa0\x80"  # an encoded surrogate
    _closes_and_not_delivered(target, wire.publish(0x30, topic, b"x"), target.topic("#"))


@scenario(
    "09-06",
    "A PUBLISH whose topic contains U+0000 closes the connection",
    rule="MQTT-1.5.3-2",
)
def publish_nul_in_topic(target: Target) -> None:
    topic = target.topic("nul").encode() + b"\x00x"
    _closes_and_not_delivered(target, wire.publish(0x30, topic, b"x"), target.topic("#"))


@scenario("09-07", "A PUBLISH with QoS 3 closes the connection", rule="MQTT-3.3.1-4")
def publish_qos_3(target: Target) -> None:
    data = wire.publish(0x36, target.topic().encode(), b"x", packet_id=1)
    _closes_and_not_delivered(target, data, target.topic())


@scenario("09-08", "A QoS 0 PUBLISH with DUP set closes the connection", rule="MQTT-3.3.1-2")
def publish_qos0_dup(target: Target) -> None:
    _closes_after_connect(target, wire.publish(0x38, target.topic().encode(), b"x"))


@scenario(
    "09-09", "A PUBREL with fixed-header flags 0000 closes the connection", rule="MQTT-3.6.1-1"
)
def pubrel_bad_flags(target: Target) -> None:
    _closes_after_connect(target, b"\x60\x02\x00\x01")


@scenario("09-10", "A PINGREQ with a reserved flag set closes the connection", rule="MQTT-2.2.2-2")
def pingreq_bad_flags(target: Target) -> None:
    _closes_after_connect(target, b"\xc1\x00")


@scenario(
    "09-11",
    "A truncated packet followed by a close does not disturb another client",
    rule="MQTT-4.8.0-1",
)
def truncated_packet(target: Target) -> None:
    topic = target.topic()
    other = target.client("other")
    other.subscribe((topic, 1))
    data = wire.publish(0x32, topic.encode(), b"never complete" * 10, packet_id=1)
    client = target.client("c")
    client.send(data[: len(data) // 2])
    client.close()
    other.expect_nothing()
    target.client("pub").publish(topic, b"still served", qos=1)
    other.expect_publish(topic, b"still served", qos=1)


@scenario(
    "09-12",
    "A burst of random garbage closes that connection; another client still works",
    rule="MQTT-4.8.0-1",
)
def garbage_burst(target: Target) -> None:
    topic = target.topic()
    other = target.client("other")
    other.subscribe((topic, 1))
    garbage = random.Random(0x4D49).randbytes(8192)
    _closes_after_connect(target, b"\x00" + garbage)  # starts with reserved type 0
    target.client("pub").publish(topic, b"still served", qos=1)
    other.expect_publish(topic, b"still served", qos=1)
