"""Slow consumers: a client that does not read (write_blocked) and the bounded queue.

No MQTT rule governs this; the rules that still apply are [MQTT-4.3.1-1] (QoS 0 is
at most once, so dropping it is allowed) and [MQTT-4.6.0-6] (order per subscriber).
A client whose socket stopped draining owes us reading; after stall_timeout
(5 s by default) it is *stalled* and its queue bound applies. Before that,
a full queue holds publishers back instead (tests/broker/test_core_backpressure.py).
"""

from __future__ import annotations

from midge.protocol.packets import PubAck, Publish, Will

STALLED_AFTER = 5.1  # past the default stall_timeout


def blocked_subscriber(harness, client_id="slow", qos=1, **options):
    """A subscriber whose socket stopped draining long enough ago to be stalled."""
    client = harness.connect(client_id, **options)
    client.subscribed(("t", qos))
    client.connection.write_paused()
    harness.fire(STALLED_AFTER)
    return client


def test_qos0_to_a_blocked_client_is_dropped_and_counted(harness):
    """[MQTT-4.3.1-1] QoS 0 may be lost: nothing is written, nothing queued."""
    slow = blocked_subscriber(harness, qos=0)
    pub = harness.connect("pub")
    for number in range(3):
        pub.published("t", bytes((number,)), 1)
    assert slow.raw() == b""
    assert harness.broker.stats.messages_dropped == 3
    assert harness.broker.sessions["slow"].dropped_messages == 3
    assert len(harness.broker.sessions["slow"].queue) == 0
    slow.connection.writable(harness.now)
    assert slow.raw() == b""
    assert not slow.closed


def test_qos1_to_a_blocked_client_queues_up_to_max_queued_messages(make_harness):
    """QoS 1 waits in the queue (bounded by count); the excess is dropped and counted;
    after writable() the queue drains in publish order [MQTT-4.6.0-6].
    """
    harness = make_harness(max_queued_messages=3)
    slow = blocked_subscriber(harness)
    pub = harness.connect("pub")
    for number in range(5):
        pub.published("t", b"m%d" % number, 1)
    assert slow.raw() == b""
    session = harness.broker.sessions["slow"]
    assert [message.payload for _, message in session.queue] == [b"m0", b"m1", b"m2"]
    assert harness.broker.stats.messages_dropped == 2
    assert session.dropped_messages == 2
    slow.connection.writable(harness.now)
    assert slow.received() == [
        Publish("t", b"m0", 1, packet_id=1),
        Publish("t", b"m1", 1, packet_id=2),
        Publish("t", b"m2", 1, packet_id=3),
    ]
    assert len(session.queue) == 0
    assert session.queued_bytes == 0


def test_qos1_to_a_blocked_client_is_bounded_by_max_queued_bytes(make_harness):
    """The queue is bounded by topic + payload bytes as well."""
    harness = make_harness(max_queued_messages=0, max_queued_bytes=20)
    slow = blocked_subscriber(harness)
    pub = harness.connect("pub")
    pub.published("t", b"123456789", 1)  # 10 bytes with its topic
    pub.published("t", b"abcdefghi", 1)  # 20: exactly at the bound
    pub.published("t", b"", 1)  # 1 more byte: over
    pub.published("t", b"too long.", 1)
    session = harness.broker.sessions["slow"]
    assert session.queued_bytes == 20
    assert len(session.queue) == 2
    assert harness.broker.stats.messages_dropped == 2
    slow.connection.writable(harness.now)
    assert slow.received() == [
        Publish("t", b"123456789", 1, packet_id=1),
        Publish("t", b"abcdefghi", 1, packet_id=2),
    ]


def test_drain_respects_the_inflight_window_and_order(make_harness):
    """After writable(), queued messages go out as the window allows, oldest first."""
    harness = make_harness(max_inflight_messages=2)
    slow = blocked_subscriber(harness, qos=2)
    pub = harness.connect("pub")
    for number in range(4):
        pub.published("t", b"m%d" % number, 1)
    slow.connection.writable(harness.now)
    pub.published("t", b"m4", 1)  # newer than the queue: waits behind it
    assert slow.received() == [
        Publish("t", b"m0", 1, packet_id=1),
        Publish("t", b"m1", 1, packet_id=2),
    ]
    slow.send(PubAck(1), PubAck(2))
    assert slow.received() == [
        Publish("t", b"m2", 1, packet_id=3),
        Publish("t", b"m3", 1, packet_id=4),
    ]
    slow.send(PubAck(3))
    assert slow.received() == [Publish("t", b"m4", 1, packet_id=5)]


def test_blocked_again_while_draining(make_harness):
    """Blocking stops the drain; the rest waits for the next writable()."""
    harness = make_harness()
    slow = blocked_subscriber(harness)
    pub = harness.connect("pub")
    for number in range(3):
        pub.published("t", b"m%d" % number, 1)
    slow.connection.writable(harness.now)
    assert [packet.payload for packet in slow.received()] == [b"m0", b"m1", b"m2"]
    slow.connection.write_blocked = True
    pub.published("t", b"m3", 1)
    pub.published("t", b"m4", 0)
    assert slow.raw() == b""
    slow.connection.writable(harness.now)
    assert slow.received() == [Publish("t", b"m3", 1, packet_id=4)]
    assert harness.broker.stats.messages_dropped == 1  # the QoS 0 one


def test_disconnect_policy_aborts_the_slow_client_only(make_harness):
    """slow_consumer_policy='disconnect': the full queue aborts that client's socket;
    other subscribers and the publisher carry on and get everything.
    """
    harness = make_harness(slow_consumer_policy="disconnect", max_queued_messages=2)
    fast = harness.connect("fast")
    fast.subscribed(("t", 1))
    slow = blocked_subscriber(harness, will=Will("t", b"slow gone", 1))
    pub = harness.connect("pub")
    for number in range(5):
        assert pub.publish("t", b"m%d" % number, 1) == [PubAck(pub.last_id)]
    assert slow.transport.aborted
    assert not slow.transport.closed
    assert slow.raw() == b""
    assert "slow" not in harness.broker.connections
    assert "slow" not in harness.broker.sessions  # clean session: discarded
    assert harness.broker.stats.messages_dropped == 1
    # The slow client's will is published too [MQTT-3.1.2-8] (it did not DISCONNECT).
    assert fast.received() == [
        Publish("t", b"m0", 1, packet_id=1),
        Publish("t", b"m1", 1, packet_id=2),
        Publish("t", b"m2", 1, packet_id=3),  # fast subscribed first: routed before slow
        Publish("t", b"slow gone", 1, packet_id=4),
        Publish("t", b"m3", 1, packet_id=5),
        Publish("t", b"m4", 1, packet_id=6),
    ]
    assert not pub.closed


def test_disconnect_policy_keeps_a_persistent_session(make_harness):
    """A persistent slow client loses its connection, not its session or queue."""
    harness = make_harness(slow_consumer_policy="disconnect", max_queued_messages=2)
    slow = blocked_subscriber(harness, clean_session=False)
    pub = harness.connect("pub")
    for number in range(4):
        pub.published("t", b"m%d" % number, 1)
    assert slow.transport.aborted
    session = harness.broker.sessions["slow"]
    assert [message.payload for _, message in session.queue] == [b"m0", b"m1"]
    back = harness.open()
    assert back.connect("slow", clean_session=False)[1:] == [
        Publish("t", b"m0", 1, packet_id=1),
        Publish("t", b"m1", 1, packet_id=2),
    ]


def test_drop_policy_never_disconnects(make_harness):
    """slow_consumer_policy='drop' (default): the client stays connected however full."""
    harness = make_harness(max_queued_messages=1)
    slow = blocked_subscriber(harness)
    pub = harness.connect("pub")
    for number in range(10):
        pub.published("t", b"m%d" % number, 1)
    assert not slow.closed
    assert harness.broker.stats.messages_dropped == 9


def test_closing_a_blocked_client_aborts_instead_of_closing(harness):
    """A keep-alive close of a non-reading client aborts: a flush could wait forever."""
    slow = harness.connect("slow", keep_alive=2)
    slow.connection.write_blocked = True
    harness.fire(3.1)
    assert slow.transport.aborted
    assert not slow.transport.closed


def test_cascading_slow_consumer_disconnects_do_not_break_the_publisher(make_harness):
    """Disconnecting slow client A publishes A's will; if that will overflows slow client B,
    B is disconnected (its clean session discarded) in the middle of the outer routing.
    The publisher must still get its PUBACK and stay connected; a fast subscriber must
    still receive the message.
    """
    harness = make_harness(slow_consumer_policy="disconnect", max_queued_messages=1)
    first = harness.connect("a", will=Will("w", b"a gone", 1))
    first.subscribed(("t", 1))
    second = harness.connect("b")
    second.subscribed(("t", 1), ("w", 1))
    fast = harness.connect("fast")
    fast.subscribed(("t", 1))
    first.connection.write_paused()
    second.connection.write_paused()
    harness.fire(STALLED_AFTER)
    pub = harness.connect("pub")
    assert pub.publish("t", b"one", 1) == [PubAck(1)]  # fills both queues
    assert fast.received() == [Publish("t", b"one", 1, packet_id=1)]
    answer = pub.publish("t", b"two", 1)
    assert first.transport.aborted
    assert second.transport.aborted
    assert answer == [PubAck(2)]
    assert not pub.closed
    assert fast.received() == [Publish("t", b"two", 1, packet_id=2)]
