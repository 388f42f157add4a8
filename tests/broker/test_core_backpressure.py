"""Backpressure: an online subscriber that acknowledges never loses QoS 1/2 to its queue bound.

The states (docs/backpressure.md): *reading* (queue below the mark), *behind*
(queue at the mark while the client acknowledges: publishers feeding it are
held back, nothing dropped), *stalled* (no acknowledgement for stall_timeout:
publishers go on, the bound applies), *offline* (the bound applies).
"""

from __future__ import annotations

import logging

from midge.broker.connection import DEFERRED_INPUT_LIMIT
from midge.protocol.packets import (
    PingReq,
    PingResp,
    PubAck,
    Publish,
    PubRec,
    Subscribe,
    Subscription,
)


def behind_setup(harness, queue=4, qos=1):
    """A subscriber with a full in-flight window (1) and `queue` queued messages."""
    sub = harness.connect("sub")
    sub.subscribed(("t", qos))
    pub = harness.connect("pub")
    for number in range(1 + queue):  # one in flight, the rest queued up to the mark
        pub.published("t", b"m%d" % number, qos)
    return sub, pub


def drain(sub, packets, rounds=500):
    """Acknowledge what arrives until nothing more does; the payloads in order."""
    payloads = []
    for _ in range(rounds):
        publishes = [p for p in packets if isinstance(p, Publish)]
        if not publishes:
            return payloads
        payloads += [p.payload for p in publishes]
        sub.acknowledge(publishes)
        packets = sub.received()
    raise AssertionError("still receiving")


def test_a_full_queue_holds_the_publisher_back_instead_of_dropping(make_harness):
    """At the mark the publisher's next PUBLISH is queued (not dropped) and its
    later packets wait: no PUBACK until the subscriber catches up."""
    harness = make_harness(max_inflight_messages=1, max_queued_messages=4)
    sub, pub = behind_setup(harness)
    first = sub.received()
    assert [p.payload for p in first] == [b"m0"]
    # The queue is at its mark: this one goes in beyond it, and holds pub back.
    assert pub.publish("t", b"m5", 1, packet_id=100) == [PubAck(100)]
    assert pub.connection.holders == 1
    assert pub.publish("t", b"m6", 1, packet_id=101) == []  # waits, unacknowledged
    assert pub.publish("t", b"m7", 1, packet_id=102) == []
    session = harness.broker.sessions["sub"]
    assert [m.payload for _, m in session.queue] == [b"m1", b"m2", b"m3", b"m4", b"m5"]
    assert harness.broker.stats.messages_dropped == 0
    # The subscriber acknowledges one at a time; at the low-water mark (2) the
    # publisher goes on, and everything arrives once, in order.
    assert drain(sub, first) == [b"m%d" % n for n in range(8)]
    assert pub.received() == [PubAck(101), PubAck(102)]
    assert pub.connection.holders == 0
    assert harness.broker.stats.messages_dropped == 0
    assert harness.broker.stats.backpressure_episodes == 1


def test_a_held_back_client_still_acknowledges_its_own_deliveries(make_harness):
    """Held back as a publisher, a client's PUBACKs for what it receives and its
    PINGREQs are still handled: it keeps receiving; its PUBLISHes wait in order."""
    harness = make_harness(max_inflight_messages=1, max_queued_messages=2)
    both = harness.connect("both")
    both.subscribed(("inbox", 1))
    sub, _ = behind_setup(harness, queue=2)
    sub.received()
    # `both` publishes into the full queue too: held back.
    assert both.publish("t", b"x1", 1, packet_id=1) == [PubAck(1)]
    assert both.connection.holders == 1
    assert both.publish("t", b"x2", 1, packet_id=2) == []
    other = harness.connect("other")
    other.published("inbox", b"hello", 1)
    [delivery] = both.received()
    assert delivery.payload == b"hello"
    both.send(PubAck(delivery.packet_id), PingReq())
    assert both.received() == [PingResp()]  # the ack and the ping passed the waiting PUBLISH
    assert harness.broker.sessions["both"].inflight == {}


def test_held_back_input_is_bounded_then_tcp_waits(make_harness):
    """Past DEFERRED_INPUT_LIMIT bytes of waiting packets the socket stops being read."""
    harness = make_harness(max_inflight_messages=1, max_queued_messages=1)
    sub, pub = behind_setup(harness, queue=1)
    pub.publish("t", b"over", 1)
    assert pub.connection.holders == 1
    payload = bytes(1000)
    sent = 0
    while pub.transport.reading:
        pub.publish("t", payload, 1)
        sent += 1
        assert sent < 2 * DEFERRED_INPUT_LIMIT // len(payload)
    assert pub.connection.deferred_bytes >= DEFERRED_INPUT_LIMIT
    # The subscriber drains everything: reading resumes and every message arrives.
    assert len(drain(sub, sub.received())) == 1 + 1 + 1 + sent
    assert pub.transport.reading
    assert harness.broker.stats.messages_dropped == 0


def test_a_stalled_subscriber_lets_its_publishers_go(make_harness, caplog):
    """No acknowledgement for stall_timeout: the publisher goes on (by the timer), and
    the bound applies with the drop policy, logged once for the episode."""
    harness = make_harness(max_inflight_messages=1, max_queued_messages=2, stall_timeout=3)
    sub, pub = behind_setup(harness, queue=2)
    assert pub.publish("t", b"over", 1, packet_id=50) == [PubAck(50)]
    assert pub.publish("t", b"waits", 1, packet_id=51) == []
    with caplog.at_level(logging.INFO):
        harness.fire(3.1)
        assert pub.received() == [PubAck(51)]  # let go: its waiting PUBLISH is handled
        assert pub.connection.holders == 0
        for number in range(5):
            pub.published("t", b"late%d" % number, 1)
    session = harness.broker.sessions["sub"]
    # m1, m2 and "over" (queued past the mark while it was behind); "waits" and
    # the five late ones met the bound of a stalled client.
    assert [m.payload for _, m in session.queue] == [b"m1", b"m2", b"over"]
    assert harness.broker.stats.messages_dropped == 6
    assert harness.broker.stats.stalls == 1
    stalled = [r for r in caplog.records if "stalled: no ack" in r.getMessage()]
    dropping = [r for r in caplog.records if "dropping messages" in r.getMessage()]
    assert len(stalled) == 1
    assert len(dropping) == 1
    # It acknowledges again: reading again, and the queue drains in order.
    [first] = sub.received()
    sub.send(PubAck(first.packet_id))
    [second] = sub.received()
    assert second.payload == b"m1"
    assert not sub.connection.stalled


def test_a_subscriber_that_never_reads_its_socket_stalls(make_harness):
    """A blocked socket owes reading: without draining for stall_timeout it is
    stalled even though nothing was ever put in flight."""
    harness = make_harness(max_queued_messages=2, stall_timeout=2)
    sub = harness.connect("sub")
    sub.subscribed(("t", 1))
    sub.connection.write_paused()
    pub = harness.connect("pub")
    for number in range(3):
        pub.published("t", b"m%d" % number, 1)
    assert pub.connection.holders == 1  # behind, not yet stalled
    harness.fire(2.1)
    assert pub.connection.holders == 0
    pub.published("t", b"dropped", 1)
    assert harness.broker.stats.messages_dropped == 1


def test_the_subscriber_leaving_lets_its_publishers_go(make_harness):
    harness = make_harness(max_inflight_messages=1, max_queued_messages=1)
    sub, pub = behind_setup(harness, queue=1)
    assert pub.publish("t", b"over", 1, packet_id=9) == [PubAck(9)]
    assert pub.publish("t", b"waits", 1, packet_id=10) == []
    sub.drop()
    assert pub.received() == [PubAck(10)]
    assert pub.connection.holders == 0


def test_offline_sessions_keep_the_bound(make_harness):
    """Offline, nobody is held back: the queue bound drops and counts."""
    harness = make_harness(max_queued_messages=2)
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    sub.disconnect()
    pub = harness.connect("pub")
    for number in range(5):
        pub.published("t", b"m%d" % number, 1)
    assert pub.connection.holders == 0
    assert harness.broker.stats.messages_dropped == 3


def test_qos0_is_never_held_back(make_harness):
    """QoS 0 does not queue for an online client: dropped at the socket bound, counted."""
    harness = make_harness(max_queued_messages=1)
    sub = harness.connect("sub")
    sub.subscribed(("t", 1))
    sub.connection.write_paused()
    pub = harness.connect("pub")
    for number in range(5):
        pub.published("t", b"m%d" % number, 0)
    assert pub.connection.holders == 0
    assert harness.broker.stats.dropped_write_buffer == 5


def test_keep_alive_is_not_enforced_on_a_held_back_client(make_harness):
    """Held back, a client may be talking while we do not read: that is not silence."""
    harness = make_harness(max_inflight_messages=1, max_queued_messages=1, stall_timeout=60)
    sub = harness.connect("sub", keep_alive=100)
    sub.subscribed(("t", 1))
    pub = harness.connect("pub", keep_alive=2)
    for number in range(3):
        pub.published("t", b"m%d" % number, 1)
    assert pub.connection.holders == 1
    for _ in range(5):
        harness.fire(2)
        sub.send(PingReq())
    assert not pub.closed


def test_qos2_publisher_is_held_back_too(make_harness):
    harness = make_harness(max_inflight_messages=1, max_queued_messages=2)
    _, pub = behind_setup(harness, queue=2, qos=2)
    assert pub.publish("t", b"over", 2, packet_id=70) == [PubRec(70)]
    assert pub.connection.holders == 1
    assert harness.broker.stats.messages_dropped == 0


def test_a_client_feeding_its_own_subscription_is_not_deadlocked(make_harness):
    """A client publishing to its own filter faster than it acknowledges holds
    itself back; its PUBACKs still pass, so it drains and goes on."""
    harness = make_harness(max_inflight_messages=1, max_queued_messages=2)
    me = harness.connect("me")
    me.send(Subscribe(1, (Subscription("t", 1),)))
    me.received()
    for number in range(6):
        me.send(Publish("t", b"m%d" % number, 1, packet_id=100 + number))
    assert drain(me, me.received()) == [b"m%d" % n for n in range(6)]
    assert harness.broker.stats.messages_dropped == 0
