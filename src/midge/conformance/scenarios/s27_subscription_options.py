"""Area 27 (MQTT 5.0): subscription options No Local, Retain As Published, Retain Handling.

Section 3.8.3.1: the options byte of each filter of a SUBSCRIBE.
"""

from __future__ import annotations

from midge.conformance import wire
from midge.conformance.harness import RawClient
from midge.conformance.target import Target
from midge.conformance.v5 import expect_disconnect, scenario5, subscriber
from midge.protocol.packets import (
    RETAIN_SEND_ALWAYS,
    RETAIN_SEND_IF_NEW,
    RETAIN_SEND_NEVER,
    Subscription,
)
from midge.protocol.reasons import ReasonCode


def _retained(target: Target, payload: bytes = b"kept") -> str:
    """A topic holding a retained message."""
    topic = target.topic("retained")
    target.client("p").publish(topic, payload, qos=1, retain=True)
    return topic


def _subscribe_twice(client: RawClient, subscription: Subscription) -> None:
    """SUBSCRIBE, then the same filter again (the second replaces the first, 3.8.4)."""
    for _ in range(2):
        client.subscribe_with(subscription)


@scenario5(
    "27-01",
    "No Local 1: a client's own messages are not sent back; another client's are",
    rule="MQTT-3.8.3-3",
)
def no_local(target: Target) -> None:
    topic = target.topic("nl")
    client = subscriber(target, "c", Subscription(topic, 1, no_local=True))
    client.publish(topic, b"own", qos=1)
    client.expect_nothing()
    target.client("o").publish(topic, b"other", qos=1)
    client.expect_publish(topic, b"other")


@scenario5(
    "27-02",
    "No Local 0 (the default): a client's own messages come back",
    rule="§3.8.3.1",
)
def local_by_default(target: Target) -> None:
    topic = target.topic("nl")
    client = subscriber(target, "c", Subscription(topic, 1))
    client.publish(topic, b"own", qos=1)
    client.expect_publish(topic, b"own")


@scenario5(
    "27-03",
    "Retain As Published 1: a live retained message is forwarded with RETAIN 1",
    rule="MQTT-3.3.1-13",
)
def retain_as_published(target: Target) -> None:
    topic = target.topic("rap")
    client = subscriber(target, "c", Subscription(topic, 1, retain_as_published=True))
    target.client("p").publish(topic, b"r", qos=1, retain=True)
    client.expect_publish(topic, b"r", retain=True)


@scenario5(
    "27-04",
    "Retain As Published 0: a live retained message is forwarded with RETAIN 0",
    rule="MQTT-3.3.1-12",
)
def retain_not_as_published(target: Target) -> None:
    topic = target.topic("rap")
    client = subscriber(target, "c", Subscription(topic, 1))
    target.client("p").publish(topic, b"r", qos=1, retain=True)
    client.expect_publish(topic, b"r", retain=False)


@scenario5(
    "27-05",
    "Retain Handling 0: retained messages are sent on every SUBSCRIBE, also a repeated one",
    rule="MQTT-3.3.1-9",
)
def retain_handling_always(target: Target) -> None:
    topic = _retained(target)
    client = target.client("c")
    _subscribe_twice(client, Subscription(topic, 1, retain_handling=RETAIN_SEND_ALWAYS))
    client.expect_publish(topic, b"kept", retain=True)
    client.expect_publish(topic, b"kept", retain=True)


@scenario5(
    "27-06",
    "Retain Handling 1: retained messages only when the subscription did not exist",
    rule="MQTT-3.3.1-10",
)
def retain_handling_if_new(target: Target) -> None:
    topic = _retained(target)
    client = target.client("c")
    _subscribe_twice(client, Subscription(topic, 1, retain_handling=RETAIN_SEND_IF_NEW))
    client.expect_publish(topic, b"kept", retain=True)
    client.expect_nothing()


@scenario5(
    "27-07",
    "Retain Handling 2: no retained messages on SUBSCRIBE",
    rule="MQTT-3.3.1-11",
)
def retain_handling_never(target: Target) -> None:
    topic = _retained(target)
    client = target.client("c")
    client.subscribe_with(Subscription(topic, 1, retain_handling=RETAIN_SEND_NEVER))
    client.expect_nothing()


@scenario5(
    "27-08",
    "Retain Handling 3 is a Protocol Error: DISCONNECT 0x82",
    rule="§3.8.3.1",
)
def retain_handling_three(target: Target) -> None:
    client = target.client("c")
    options = 0x30 | 1  # Retain Handling 3, QoS 1
    client.send(wire.subscribe5(1, wire.properties(), (target.topic().encode(), options)))
    expect_disconnect(client, ReasonCode.PROTOCOL_ERROR)


@scenario5(
    "27-09",
    "A reserved bit set in the subscription options is Malformed: DISCONNECT 0x81",
    rule="MQTT-3.8.3-5",
)
def reserved_option_bits(target: Target) -> None:
    client = target.client("c")
    options = 0x40 | 1  # reserved bit 6, QoS 1
    client.send(wire.subscribe5(1, wire.properties(), (target.topic().encode(), options)))
    expect_disconnect(client, ReasonCode.MALFORMED_PACKET)
