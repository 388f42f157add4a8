"""Retained messages through the broker: store, replace, delete, deliver on subscribe."""

from __future__ import annotations

import pytest

from midge.message import Message
from midge.protocol.packets import Publish, SubAck


def retained_sorted(packets):
    """The PUBLISH packets after a SUBACK, by topic (the store's walk order is not defined)."""
    assert isinstance(packets[0], SubAck)
    return sorted(packets[1:], key=lambda packet: packet.topic)


def test_retained_message_is_stored_and_sent_to_a_new_subscriber(harness):
    """[MQTT-3.3.1-5, 3.3.1-6, 3.3.1-8] stored with its QoS; sent on subscribe with retain 1."""
    harness.connect("pub").published("a/b", b"hello", 1, retain=True)
    assert harness.broker.retained.get("a/b") == Message("a/b", b"hello", 1, True)
    sub = harness.connect("sub")
    assert sub.subscribe(("a/b", 1)) == [
        SubAck(1, (1,)),
        Publish("a/b", b"hello", 1, retain=True, packet_id=1),
    ]


def test_retained_message_is_replaced(harness):
    """[MQTT-3.3.1-5, 3.3.1-7] a new retained message replaces the old one, whatever its QoS."""
    pub = harness.connect("pub")
    pub.published("t", b"first", 1, retain=True)
    pub.published("t", b"second", 0, retain=True)
    assert harness.broker.retained.count == 1
    sub = harness.connect("sub")
    assert sub.subscribe(("t", 2)) == [SubAck(1, (2,)), Publish("t", b"second", 0, retain=True)]


def test_empty_retained_payload_deletes_and_is_still_forwarded(harness):
    """[MQTT-3.3.1-10, 3.3.1-11] a zero-byte retained PUBLISH removes the retained message,
    is not stored itself, and is delivered to current subscribers as usual.
    """
    existing = harness.connect("existing")
    existing.subscribed(("t", 1))
    pub = harness.connect("pub")
    pub.published("t", b"keep", 1, retain=True)
    assert existing.received() == [Publish("t", b"keep", 1, packet_id=1)]
    pub.published("t", b"", 1, retain=True)
    assert existing.received() == [Publish("t", b"", 1, packet_id=2)]
    assert harness.broker.retained.count == 0
    assert harness.broker.retained.get("t") is None
    late = harness.connect("late")
    assert late.subscribe(("t", 1)) == [SubAck(1, (1,))]


def test_empty_retained_payload_for_an_unknown_topic_is_harmless(harness):
    """[MQTT-3.3.1-11] deleting nothing stores nothing."""
    harness.connect("pub").published("never/set", b"", 0, retain=True)
    assert harness.broker.retained.count == 0


def test_non_retained_publish_leaves_the_retained_message(harness):
    """[MQTT-3.3.1-12] retain 0: the server must not store or replace a retained message."""
    pub = harness.connect("pub")
    pub.published("t", b"retained", 0, retain=True)
    pub.published("t", b"plain", 0)
    pub.published("t", b"", 0)
    sub = harness.connect("sub")
    assert sub.subscribe("t") == [SubAck(1, (0,)), Publish("t", b"retained", 0, retain=True)]


@pytest.mark.parametrize(("stored", "granted"), [(2, 1), (2, 0), (0, 2), (1, 1), (1, 2)])
def test_retained_delivery_at_the_minimum_qos(harness, stored, granted):
    """[MQTT-3.8.4-6] retained messages go out at min(stored QoS, granted QoS)."""
    harness.connect("pub").published("t", b"x", stored, retain=True)
    sub = harness.connect("sub")
    qos = min(stored, granted)
    assert sub.subscribe(("t", granted)) == [
        SubAck(1, (granted,)),
        Publish("t", b"x", qos, retain=True, packet_id=1 if qos else None),
    ]


def test_retained_forwarded_to_existing_subscribers_with_retain_0(harness):
    """[MQTT-3.3.1-9] a retained PUBLISH reaching an established subscription has retain 0."""
    sub = harness.connect("sub")
    sub.subscribed(("t", 1))
    harness.connect("pub").published("t", b"x", 1, retain=True)
    raw = sub.raw()
    assert raw[0] == 0x32  # PUBLISH, QoS 1, DUP 0, RETAIN 0
    assert raw == bytes((0x32, 6, 0, 1)) + b"t" + bytes((0, 1)) + b"x"


def test_resubscribe_sends_retained_again(harness):
    """[MQTT-3.8.4-3] a repeated subscription re-sends the retained messages."""
    harness.connect("pub").published("t", b"x", 0, retain=True)
    sub = harness.connect("sub")
    assert sub.subscribe("t") == [SubAck(1, (0,)), Publish("t", b"x", 0, retain=True)]
    assert sub.subscribe(("t", 1)) == [SubAck(2, (1,)), Publish("t", b"x", 0, retain=True)]
    assert harness.broker.subscriptions.count == 1


@pytest.fixture
def with_retained(harness):
    pub = harness.connect("pub")
    for topic in ("a", "a/b", "a/b/c", "b", "b/b", "$x/y", "/lead"):
        pub.published(topic, topic.encode(), 0, retain=True)
    return harness


@pytest.mark.parametrize(
    ("topic_filter", "topics"),
    [
        ("a/#", ["a", "a/b", "a/b/c"]),  # [MQTT-4.7.1-2] "a/#" matches "a" too
        ("#", ["/lead", "a", "a/b", "a/b/c", "b", "b/b"]),  # [MQTT-4.7.2-1] not "$x/y"
        ("+", ["a", "b"]),
        ("+/b", ["a/b", "b/b"]),
        ("+/+/c", ["a/b/c"]),
        ("+/y", []),  # [MQTT-4.7.2-1]
        ("$x/#", ["$x/y"]),
        ("$x/+", ["$x/y"]),
        ("+/lead", ["/lead"]),
        ("a/b/c/#", ["a/b/c"]),
        ("nothing/#", []),
    ],
)
def test_wildcard_subscribe_gets_matching_retained(with_retained, topic_filter, topics):
    """[MQTT-3.3.1-6] every matching retained message is sent on subscribe."""
    sub = with_retained.connect("sub")
    answer = sub.subscribe(topic_filter)
    assert answer[0] == SubAck(1, (0,))
    assert retained_sorted(answer) == [
        Publish(topic, topic.encode(), 0, retain=True) for topic in sorted(topics)
    ]


def test_retained_to_offline_persistent_session_is_not_duplicated(harness):
    """A retained message published while a subscriber is offline is queued once, retain 0."""
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    sub.disconnect()
    harness.connect("pub").published("t", b"x", 1, retain=True)
    back = harness.open()
    packets = back.connect("sub", clean_session=False)
    assert packets[1:] == [Publish("t", b"x", 1, packet_id=1)]
