"""Area 28 (MQTT 5.0): Subscription Identifiers on forwarded messages (3.3.4, 3.8.2.1.2).

Overlapping subscriptions may be served by one copy carrying every matching
identifier [MQTT-3.3.4-4] or one copy per subscription carrying its own
[MQTT-3.3.4-5]: the scenarios accept both.
"""

from __future__ import annotations

from midge.conformance.harness import RawClient, check
from midge.conformance.target import Target
from midge.conformance.v5 import properties_of, require, scenario5, server_properties
from midge.protocol.packets import Publish, Subscription
from midge.protocol.properties import Properties


def _subscribe_with_id(client: RawClient, topic_filter: str, identifier: int) -> None:
    suback = client.subscribe_with(
        Subscription(topic_filter, 1), properties=Properties(subscription_identifiers=(identifier,))
    )
    check(suback.return_codes == (1,), f"{client.name}: SUBACK {suback.return_codes}")


def _identifiers_client(target: Target) -> RawClient:
    client = target.client("s")
    available = server_properties(client).subscription_identifier_available
    require(available != 0, "the broker does not support Subscription Identifiers")
    return client


def _identifiers(publish: Publish) -> tuple[int, ...]:
    return properties_of(publish).subscription_identifiers


@scenario5(
    "28-01",
    "A message matching a subscription with an identifier carries that identifier",
    rule="MQTT-3.3.4-3",
)
def identifier_on_message(target: Target) -> None:
    topic = target.topic("a")
    client = _identifiers_client(target)
    _subscribe_with_id(client, topic, 42)
    target.client("p").publish(topic, b"m", qos=1)
    ids = _identifiers(client.expect_publish(topic, b"m"))
    check(ids == (42,), f"s: Subscription Identifiers {ids}, expected (42,)")


@scenario5(
    "28-02",
    "Overlapping subscriptions: the message copies carry every matching identifier",
    rule="MQTT-3.3.4-4",
)
def overlapping_identifiers(target: Target) -> None:
    topic = target.topic("a/b")
    client = _identifiers_client(target)
    _subscribe_with_id(client, target.topic("a/+"), 1)
    _subscribe_with_id(client, target.topic("#"), 2)
    target.client("p").publish(topic, b"m", qos=1)
    first = client.expect_publish(topic, b"m")
    seen = list(_identifiers(first))
    if sorted(seen) != [1, 2]:  # one copy per subscription [MQTT-3.3.4-5]
        seen += _identifiers(client.expect_publish(topic, b"m"))
    check(sorted(seen) == [1, 2], f"s: Subscription Identifiers {seen}, expected 1 and 2")
    client.expect_nothing()


@scenario5(
    "28-03",
    "A subscription without an identifier: the message carries none",
    rule="MQTT-3.3.4-3",
)
def no_identifier(target: Target) -> None:
    topic = target.topic("a")
    client = target.client("s")
    client.subscribe((topic, 1))
    target.client("p").publish(topic, b"m", qos=1)
    ids = _identifiers(client.expect_publish(topic, b"m"))
    check(ids == (), f"s: Subscription Identifiers {ids} on a subscription without one")


@scenario5(
    "28-04",
    "A retained message sent on SUBSCRIBE carries the subscription's identifier",
    rule="MQTT-3.3.4-3",
)
def identifier_on_retained(target: Target) -> None:
    topic = target.topic("r")
    target.client("p").publish(topic, b"kept", qos=1, retain=True)
    client = _identifiers_client(target)
    _subscribe_with_id(client, topic, 9)
    ids = _identifiers(client.expect_publish(topic, b"kept", retain=True))
    check(ids == (9,), f"s: Subscription Identifiers {ids}, expected (9,)")


@scenario5(
    "28-05",
    "Subscribing again without an identifier removes it from later messages",
    rule="MQTT-3.8.4-3",
)
def identifier_replaced(target: Target) -> None:
    topic = target.topic("a")
    client = _identifiers_client(target)
    _subscribe_with_id(client, topic, 5)
    client.subscribe((topic, 1))
    target.client("p").publish(topic, b"m", qos=1)
    ids = _identifiers(client.expect_publish(topic, b"m"))
    check(ids == (), f"s: Subscription Identifiers {ids} after re-subscribing without one")
