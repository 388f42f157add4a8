"""Sessions: session present, clean session 0/1, offline queues, takeover."""

from __future__ import annotations

import pytest

from midge.protocol.packets import (
    ConnAck,
    Connect,
    PingReq,
    PingResp,
    Publish,
    Will,
)

# ------------------------------------------------------------ session present


def test_clean_session_without_stored_session(harness):
    """[MQTT-3.2.2-1] clean session 1: session present 0."""
    client = harness.open()
    assert client.connect("c1", clean_session=True) == [ConnAck(0, False)]


def test_persistent_session_without_stored_session(harness):
    """[MQTT-3.2.2-3] clean session 0 and no stored session: session present 0."""
    client = harness.open()
    assert client.connect("c1", clean_session=False) == [ConnAck(0, False)]
    assert harness.broker.sessions["c1"].persistent


def test_persistent_session_resumed(harness):
    """[MQTT-3.2.2-2] clean session 0 and a stored session: session present 1."""
    harness.connect("c1", clean_session=False).disconnect()
    client = harness.open()
    assert client.raw() == b""
    client.send(Connect("c1", clean_session=False))
    assert client.raw() == bytes((0x20, 2, 1, 0))


def test_clean_session_discards_a_stored_session(harness):
    """[MQTT-3.1.2-6, 3.2.2-1] clean session 1 discards the stored session: present 0."""
    first = harness.connect("c1", clean_session=False)
    first.subscribed(("t", 1))
    first.disconnect()
    assert harness.broker.subscriptions.count == 1
    again = harness.connect("c1", clean_session=True, present=False)
    assert harness.broker.subscriptions.count == 0
    assert harness.broker.sessions["c1"].subscriptions == {}
    assert not harness.broker.sessions["c1"].persistent
    harness.connect("pub").published("t", b"x", 1)
    assert again.received() == []


@pytest.mark.parametrize("end", ["disconnect", "drop"])
def test_clean_session_is_discarded_when_the_connection_ends(harness, end):
    """[MQTT-3.1.2-6] a clean session lasts as long as the network connection."""
    client = harness.connect("c1", clean_session=True)
    client.subscribed(("t", 1), "u/#")
    assert harness.broker.subscriptions.count == 2
    getattr(client, end)()
    assert harness.broker.sessions == {}
    assert harness.broker.subscriptions.count == 0
    assert harness.broker.subscriptions.match("t") == {}
    # Reconnecting with clean session 0 finds nothing.
    harness.connect("c1", clean_session=False, present=False)


def test_persistent_then_persistent_then_clean_then_persistent(harness):
    """Session present over a sequence of 0/1 combinations [MQTT-3.2.2-1/2/3]."""
    harness.connect("c1", clean_session=False, present=False).disconnect()
    harness.connect("c1", clean_session=False, present=True).drop()
    harness.connect("c1", clean_session=True, present=False).disconnect()
    harness.connect("c1", clean_session=False, present=False).disconnect()
    harness.connect("c1", clean_session=False, present=True)


def test_mqtt_3_1_connack_has_no_session_present_flag(harness):
    """MQTT 3.1's CONNACK first byte is reserved: 0 even when the session resumes."""
    first = harness.open()
    assert first.connect("c1", clean_session=False, level=3, name="MQIsdp") == [ConnAck(0)]
    first.subscribed(("t", 1))
    first.disconnect()
    again = harness.open()
    again.version = 3
    again.send(Connect("c1", clean_session=False, protocol_level=3, protocol_name="MQIsdp"))
    assert again.raw() == bytes((0x20, 2, 0, 0))
    harness.connect("pub").published("t", b"x", 1)
    assert again.received() == [Publish("t", b"x", 1, packet_id=1)]


# ------------------------------------------------------------ offline state


def test_persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2(harness):
    """[MQTT-4.1.0-1] stored session: subscriptions and QoS 1/2 messages for the client.

    QoS 0 messages are not kept for an offline client by default (section 3.1.2.4).
    """
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t/#", 2))
    sub.disconnect()
    pub = harness.connect("pub")
    pub.published("t/0", b"zero", 0)
    pub.published("t/1", b"one", 1)
    pub.published("t/2", b"two", 2)
    pub.published("other", b"nope", 2)
    assert len(harness.broker.sessions["sub"].queue) == 2
    back = harness.open()
    assert back.connect("sub", clean_session=False) == [
        ConnAck(0, True),
        Publish("t/1", b"one", 1, packet_id=1),
        Publish("t/2", b"two", 2, packet_id=2),
    ]
    # The subscription is live again too.
    pub.published("t/x", b"live", 1)
    assert back.received() == [Publish("t/x", b"live", 1, packet_id=3)]


def test_offline_queue_respects_granted_qos(harness):
    """[MQTT-3.8.4-6] queued messages are delivered at min(published, granted)."""
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    sub.drop()
    harness.connect("pub").published("t", b"x", 2)
    back = harness.open()
    assert back.connect("sub", clean_session=False) == [
        ConnAck(0, True),
        Publish("t", b"x", 1, packet_id=1),
    ]


def test_queue_qos0_messages_option_keeps_qos0_in_order(make_harness):
    """queue_qos0_messages=True also stores QoS 0 for offline clients, in publish order."""
    harness = make_harness(queue_qos0_messages=True)
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t", 2))
    sub.disconnect()
    pub = harness.connect("pub")
    pub.published("t", b"a", 0)
    pub.published("t", b"b", 1)
    pub.published("t", b"c", 0)
    back = harness.open()
    assert back.connect("sub", clean_session=False) == [
        ConnAck(0, True),
        Publish("t", b"a", 0),
        Publish("t", b"b", 1, packet_id=1),
        Publish("t", b"c", 0),
    ]


def test_clean_session_reconnect_gets_none_of_the_queued_messages(harness):
    """[MQTT-3.1.2-6] the stored session, and its queue, are discarded at a clean CONNECT."""
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    sub.disconnect()
    harness.connect("pub").published("t", b"queued", 1)
    assert len(harness.broker.sessions["sub"].queue) == 1
    back = harness.open()
    assert back.connect("sub", clean_session=True) == [ConnAck(0, False)]
    assert len(harness.broker.sessions["sub"].queue) == 0
    back.disconnect()
    # ... and nothing is left for a later persistent reconnect either.
    later = harness.open()
    assert later.connect("sub", clean_session=False) == [ConnAck(0, False)]


# ------------------------------------------------------------ takeover


def test_takeover_closes_the_first_connection_and_publishes_its_will(harness):
    """[MQTT-3.1.4-2] same client id: the server disconnects the existing client.

    The old connection did not send DISCONNECT, so its will is published [MQTT-3.1.2-8].
    """
    watcher = harness.connect("watcher")
    watcher.subscribed(("wills/#", 1))
    first = harness.connect("c1", clean_session=False, will=Will("wills/c1", b"gone", 1))
    first.subscribed(("t", 1))
    second = harness.open()
    assert second.connect("c1", clean_session=False) == [ConnAck(0, True)]
    assert first.closed
    assert first.raw() == b""
    assert watcher.received() == [Publish("wills/c1", b"gone", 1, packet_id=1)]
    assert harness.broker.connections["c1"] is second.connection
    # The session continues on the new connection.
    harness.connect("pub").published("t", b"x", 1)
    assert second.received() == [Publish("t", b"x", 1, packet_id=1)]
    assert first.raw() == b""
    # The old socket going away later changes nothing for the new one.
    first.drop()
    first.send(PingReq())
    assert harness.broker.connections["c1"] is second.connection
    second.send(PingReq())
    assert second.received() == [PingResp()]
    assert watcher.received() == []


def test_takeover_with_clean_session_starts_a_new_session(harness):
    """[MQTT-3.1.4-2, 3.1.2-6] a clean takeover discards the old session's subscriptions."""
    first = harness.connect("c1", clean_session=False)
    first.subscribed(("t", 1))
    second = harness.open()
    assert second.connect("c1", clean_session=True) == [ConnAck(0, False)]
    assert first.closed
    assert harness.broker.subscriptions.count == 0
    harness.connect("pub").published("t", b"x", 1)
    assert second.received() == []


def test_takeover_of_a_non_reading_client_aborts_it(harness):
    """A taken-over connection that is not reading is aborted, not flushed."""
    first = harness.connect("c1")
    first.connection.write_blocked = True
    harness.connect("c1")
    assert first.transport.aborted
    assert not first.transport.closed


def test_takeover_resends_unacknowledged_messages(harness):
    """[MQTT-4.4.0-1] a takeover resuming the session re-sends in-flight PUBLISH with DUP."""
    first = harness.connect("c1", clean_session=False)
    first.subscribed(("t", 1))
    harness.connect("pub").published("t", b"x", 1)
    assert first.received() == [Publish("t", b"x", 1, packet_id=1)]
    second = harness.open()
    assert second.connect("c1", clean_session=False) == [
        ConnAck(0, True),
        Publish("t", b"x", 1, dup=True, packet_id=1),
    ]


def test_offline_queue_is_bounded_and_counts_drops(make_harness):
    """The offline queue has the same bound as the online one; the excess is counted."""
    harness = make_harness(max_queued_messages=2)
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    sub.disconnect()
    pub = harness.connect("pub")
    for number in range(4):
        pub.published("t", b"m%d" % number, 1)
    assert harness.broker.stats.messages_dropped == 2
    assert harness.broker.sessions["sub"].dropped_messages == 2
    back = harness.open()
    assert back.connect("sub", clean_session=False) == [
        ConnAck(0, True),
        Publish("t", b"m0", 1, packet_id=1),
        Publish("t", b"m1", 1, packet_id=2),
    ]
