"""Area 25 (MQTT 5.0): Topic Aliases in both directions (3.3.2.3.4).

Client to broker: the broker accepts aliases 1..its Topic Alias Maximum
(from CONNACK), and treats 0, one above the maximum, or an alias never set
as errors. Broker to client: every 5.0 client of the check resolves the
aliases it receives and fails on one above its own maximum (harness), so
these scenarios only have to make the broker send them.
"""

from __future__ import annotations

from midge.conformance import wire
from midge.conformance.harness import RawClient
from midge.conformance.target import Target
from midge.conformance.v5 import expect_disconnect, require, scenario5, server_properties
from midge.protocol.properties import Properties, PropertyId
from midge.protocol.reasons import ReasonCode

MAX_ALIAS = 0xFFFF


def _aliased(topic: str, alias: int, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH setting (topic given) or using (topic "") Topic Alias `alias`."""
    props = wire.properties(wire.prop(PropertyId.TOPIC_ALIAS, wire.two_bytes(alias)))
    return wire.publish5(0x30, topic.encode(), props, payload)


def _alias_maximum(client: RawClient) -> int:
    return server_properties(client).topic_alias_maximum or 0


def _publisher_with_aliases(target: Target) -> RawClient:
    client = target.client("p")
    require(_alias_maximum(client) >= 1, "the broker accepts no Topic Alias (maximum 0)")
    return client


def _watcher(target: Target, topic_filter: str) -> RawClient:
    watcher = target.client("w")
    watcher.subscribe((topic_filter, 0))
    return watcher


@scenario5(
    "25-01",
    "A Topic Alias set with a topic is then used with an empty topic: both reach the subscriber",
    rule="MQTT-3.3.2-12",
)
def alias_set_and_used(target: Target) -> None:
    topic = target.topic("a")
    watcher = _watcher(target, topic)
    publisher = _publisher_with_aliases(target)
    publisher.send(_aliased(topic, 1, b"set"))
    publisher.send(_aliased("", 1, b"used"))
    watcher.expect_publish(topic, b"set")
    watcher.expect_publish(topic, b"used")


@scenario5(
    "25-02",
    "A Topic Alias sent again with another topic is remapped to it",
    rule="§3.3.2.3.4",
)
def alias_remapped(target: Target) -> None:
    first, second = target.topic("a"), target.topic("b")
    watcher = _watcher(target, target.topic("+"))
    publisher = _publisher_with_aliases(target)
    publisher.send(_aliased(first, 1, b"1"))
    publisher.send(_aliased(second, 1, b"2"))
    publisher.send(_aliased("", 1, b"3"))
    watcher.expect_publish(first, b"1")
    watcher.expect_publish(second, b"2")
    watcher.expect_publish(second, b"3")


@scenario5(
    "25-03",
    "Topic Alias 0 is invalid: DISCONNECT 0x94, then the close",
    rule="MQTT-3.3.2-8",
)
def alias_zero(target: Target) -> None:
    client = target.client("c")
    client.send(_aliased(target.topic("a"), 0, b"x"), allow_closed=True)
    expect_disconnect(client, ReasonCode.TOPIC_ALIAS_INVALID)


@scenario5(
    "25-04",
    "A Topic Alias above the broker's Topic Alias Maximum: DISCONNECT 0x94, then the close",
    rule="MQTT-3.2.2-17",
)
def alias_above_maximum(target: Target) -> None:
    client = target.client("c")
    maximum = _alias_maximum(client)
    require(maximum < MAX_ALIAS, "the broker accepts every alias (maximum 65535)")
    client.send(_aliased(target.topic("a"), maximum + 1, b"x"), allow_closed=True)
    expect_disconnect(client, ReasonCode.TOPIC_ALIAS_INVALID)


@scenario5(
    "25-05",
    "An empty topic with a Topic Alias never set is a Protocol Error: DISCONNECT 0x82",
    rule="§3.3.2.3.4",
)
def alias_unknown(target: Target) -> None:
    watcher = _watcher(target, target.topic("#"))
    client = _publisher_with_aliases(target)
    client.send(_aliased("", 1, b"x"), allow_closed=True)
    expect_disconnect(client, ReasonCode.PROTOCOL_ERROR)
    watcher.expect_nothing()


@scenario5(
    "25-06",
    "An empty topic without a Topic Alias is a Protocol Error: DISCONNECT 0x82",
    rule="§3.3.2.1",
)
def empty_topic_without_alias(target: Target) -> None:
    client = target.client("c")
    client.send(wire.publish5(0x30, b"", wire.properties(), b"x"), allow_closed=True)
    expect_disconnect(client, ReasonCode.PROTOCOL_ERROR)


@scenario5(
    "25-07",
    "Topic Aliases do not carry over to a new connection: using one is a Protocol Error (0x82)",
    rule="MQTT-3.3.2-7",
)
def alias_per_connection(target: Target) -> None:
    _publisher_with_aliases(target).send(_aliased(target.topic("a"), 1, b"set"))
    again = target.client("p")
    again.send(_aliased("", 1, b"stale"), allow_closed=True)
    expect_disconnect(again, ReasonCode.PROTOCOL_ERROR)


@scenario5(
    "25-08",
    "A client without Topic Alias Maximum gets full topics and no alias",
    rule="MQTT-3.1.2-27",
)
def no_alias_without_maximum(target: Target) -> None:
    topic = target.topic("plain")
    subscriber = target.client("s")
    subscriber.subscribe((topic, 0))
    publisher = target.client("p")
    for index in range(3):
        publisher.publish(topic, b"%d" % index)
    for index in range(3):
        subscriber.expect_publish(topic, b"%d" % index)  # the harness rejects any alias


@scenario5(
    "25-09",
    "A client with Topic Alias Maximum 2 gets only aliases 1-2, each set before it is used",
    rule="MQTT-3.1.2-26",
)
def aliases_within_client_maximum(target: Target) -> None:
    subscriber = target.client("s", properties=Properties(topic_alias_maximum=2))
    subscriber.subscribe((target.topic("+"), 0))
    publisher = target.client("p")
    topics = [target.topic(f"t{index}") for index in range(4)]
    for _ in range(2):
        for topic in topics:
            publisher.publish(topic, topic.encode())
    for _ in range(2):
        for topic in topics:
            subscriber.expect_publish(topic, topic.encode())
