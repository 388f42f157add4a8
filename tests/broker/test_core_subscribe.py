"""SUBSCRIBE / UNSUBSCRIBE through the broker, and who receives what."""

from __future__ import annotations

from midge.protocol.packets import (
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)


def test_invalid_filters_get_0x80_and_valid_ones_their_qos(harness):
    """[MQTT-3.8.4-4, 3.8.4-5] one return code per filter, in order; 0x80 for a refused one.

    Invalid per [MQTT-4.7.1-2, 4.7.1-3]: '#' not last or not a whole level, '+' not a whole
    level; [MQTT-4.7.3-1] empty filter.
    """
    sub = harness.connect("sub")
    filters = [
        ("a/#", 1),
        ("a/#/b", 2),
        ("a+", 0),
        ("", 1),
        ("+/x/+", 2),
        ("#", 0),
        ("a/b#", 1),
        ("sport+/x", 2),
        ("/", 2),
    ]
    sub.send(Subscribe(0x0102, tuple(Subscription(f, q) for f, q in filters)))
    # [MQTT-3.8.4-1, 3.8.4-2] SUBACK with the SUBSCRIBE's packet id.
    assert sub.raw() == bytes((0x90, 11, 0x01, 0x02, 1, 0x80, 0x80, 0x80, 2, 0, 0x80, 0x80, 2))
    assert harness.broker.sessions["sub"].subscriptions == {"a/#": 1, "+/x/+": 2, "#": 0, "/": 2}
    assert harness.broker.subscriptions.count == 4


def test_same_filter_twice_replaces_the_qos(harness):
    """[MQTT-3.8.4-3] a second subscription to the same filter replaces the first."""
    sub = harness.connect("sub")
    sub.subscribed(("t", 2))
    sub.subscribed(("t", 0))
    assert harness.broker.subscriptions.count == 1
    assert harness.broker.sessions["sub"].subscriptions == {"t": 0}
    harness.connect("pub").published("t", b"x", 2)
    assert sub.received() == [Publish("t", b"x", 0)]


def test_same_filter_twice_in_one_subscribe(harness):
    """[MQTT-3.8.4-3/4] the filters of one SUBSCRIBE apply in order: the last QoS wins."""
    sub = harness.connect("sub")
    assert sub.subscribe(("t", 0), ("t", 1)) == [SubAck(1, (0, 1))]
    harness.connect("pub").published("t", b"x", 2)
    assert sub.received() == [Publish("t", b"x", 1, packet_id=1)]


def test_overlapping_subscriptions_deliver_one_copy_at_the_max_qos(harness):
    """[MQTT-3.3.5-1] several matching filters of one client: one copy, highest granted QoS."""
    sub = harness.connect("sub")
    sub.subscribed(("a/+", 0), ("a/#", 2), ("a/b", 1), ("#", 0))
    harness.connect("pub").published("a/b", b"x", 2)
    assert sub.received() == [Publish("a/b", b"x", 2, packet_id=1)]
    harness.connect("pub2").published("a/c", b"y", 1)
    assert sub.received() == [Publish("a/c", b"y", 1, packet_id=2)]


def test_each_subscriber_gets_its_own_copy(harness):
    """[MQTT-4.5.0-1] every matching subscription of every client gets the message."""
    subs = [harness.connect(f"s{number}") for number in range(3)]
    for number, sub in enumerate(subs):
        sub.subscribed(("t", number))
    harness.connect("pub").published("t", b"x", 2)
    assert subs[0].received() == [Publish("t", b"x", 0)]
    assert subs[1].received() == [Publish("t", b"x", 1, packet_id=1)]
    assert subs[2].received() == [Publish("t", b"x", 2, packet_id=1)]


def test_publisher_receives_its_own_message_when_subscribed(harness):
    """MQTT 3.1.1 has no 'no local': a subscribed publisher gets its own message."""
    client = harness.connect("c")
    client.subscribed(("t", 1))
    client.send(Publish("t", b"x", 1, packet_id=5))
    assert client.received() == [Publish("t", b"x", 1, packet_id=1), PubAck(5)]


def test_unsubscribe_stops_delivery(harness):
    """[MQTT-3.10.4-1, 3.10.4-2, 3.10.4-4] UNSUBSCRIBE deletes the subscription; UNSUBACK."""
    sub = harness.connect("sub")
    sub.subscribed(("t", 1), "u")
    pub = harness.connect("pub")
    sub.send(Unsubscribe(0x0A0B, ("t",)))
    assert sub.raw() == bytes((0xB0, 2, 0x0A, 0x0B))
    pub.published("t", b"x", 1)
    pub.published("u", b"y", 0)
    assert sub.received() == [Publish("u", b"y", 0)]
    assert harness.broker.sessions["sub"].subscriptions == {"u": 0}
    assert harness.broker.subscriptions.count == 1


def test_unsubscribe_unknown_filters_still_gets_unsuback(harness):
    """[MQTT-3.10.4-5] UNSUBACK even when no filter matched a subscription."""
    sub = harness.connect("sub")
    sub.subscribed("a/#")
    assert sub.unsubscribe("nope", "a/+", "a/#/x") == [UnsubAck(2)]
    # Only the exact filter string is removed: "a/#" is still there.
    harness.connect("pub").published("a/b", b"x", 0)
    assert sub.received() == [Publish("a/b", b"x", 0)]
    assert harness.broker.subscriptions.count == 1


def test_unsubscribe_qos0_subscription(harness):
    """[MQTT-3.10.4-1] a QoS 0 subscription (granted 0, falsy) is removed as well."""
    sub = harness.connect("sub")
    sub.subscribed("t")
    assert sub.unsubscribe("t") == [UnsubAck(2)]
    assert harness.broker.subscriptions.count == 0
    harness.connect("pub").published("t", b"x", 0)
    assert sub.received() == []


def test_publish_to_sys_by_a_client_is_not_delivered(harness):
    """$SYS belongs to the broker: a client's PUBLISH there is acknowledged and dropped.

    [MQTT-3.3.5-2] an unauthorized PUBLISH is acknowledged normally (or the connection
    closed); here it gets its PUBACK.
    """
    sub = harness.connect("sub")
    sub.subscribed("$SYS/#", "#")
    client = harness.connect("c")
    assert client.publish("$SYS/x", b"forged", 1, retain=True) == [PubAck(1)]
    assert sub.received() == []
    assert harness.broker.retained.count == 0
    assert not client.closed


def test_wildcards_do_not_match_dollar_topics(harness):
    """[MQTT-4.7.2-1] '#' and '+' at the first level do not match topics starting with '$'."""
    wild = harness.connect("wild")
    wild.subscribed("#", "+/y", "+/+")
    dollar = harness.connect("dollar")
    dollar.subscribed("$x/#")
    harness.connect("pub").published("$x/y", b"d", 0)
    assert wild.received() == []
    assert dollar.received() == [Publish("$x/y", b"d", 0)]


def test_a_bridge_does_not_get_back_what_it_published_and_keeps_retain_flags(harness):
    """A 3.1.1 client that connects as a bridge (protocol level 0x84, Mosquitto's
    try_private) subscribes as with No Local and Retain As Published: what it
    brought is not sent back to it (no loop), and a retained message keeps its
    flag on the way (the remote keeps it retained)."""
    bridge = harness.connect("edge-bridge", bridge=True)
    other = harness.connect("plain")
    bridge.subscribed(("t/#", 1))
    other.subscribed(("t/#", 1))
    bridge.published("t/from-bridge", b"x", 1)
    assert bridge.received() == []
    assert other.received() == [Publish("t/from-bridge", b"x", 1, packet_id=1)]
    harness.connect("app").published("t/kept", b"k", 1, retain=True)
    assert bridge.received() == [Publish("t/kept", b"k", 1, retain=True, packet_id=1)]
    # An ordinary 3.1.1 subscriber gets it with retain 0 [MQTT-3.3.1-9].
    assert other.received() == [Publish("t/kept", b"k", 1, packet_id=2)]


def test_a_bridge_may_publish_its_state_under_sys_broker_connection(harness):
    """Clients cannot publish under $SYS/, but another broker's bridge (the
    bridge flag) may publish its state on $SYS/broker/connection/..., as
    Mosquitto's bridges do (retained "1", and "0" as their will)."""
    watcher = harness.connect("watcher")
    watcher.subscribed(("$SYS/broker/connection/#", 1))
    bridge = harness.connect("edge.cloud", bridge=True)
    bridge.published("$SYS/broker/connection/edge.cloud/state", b"1", 1, retain=True)
    bridge.published("$SYS/broker/uptime", b"forged", 1)
    harness.connect("plain").published("$SYS/broker/connection/x/state", b"forged", 1)
    assert watcher.received() == [
        Publish("$SYS/broker/connection/edge.cloud/state", b"1", 1, packet_id=1)
    ]
