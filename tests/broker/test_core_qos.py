"""QoS 1 and 2 flows, both as the receiver (from publishers) and the sender (to subscribers)."""

from __future__ import annotations

import random

import pytest

from midge.broker.session import Awaiting
from midge.protocol.packets import (
    ConnAck,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
)

# ------------------------------------------------------------ from publishers


def test_qos1_publish_gets_puback_with_the_same_id(harness):
    """[MQTT-4.3.2-2] QoS 1: the receiver answers PUBACK with the packet's id."""
    client = harness.connect("pub")
    client.send(Publish("t", b"x", 1, packet_id=0x1234))
    assert client.raw() == bytes((0x40, 2, 0x12, 0x34))


def test_qos2_publish_gets_pubrec_then_pubcomp_after_pubrel(harness):
    """[MQTT-4.3.3-2] QoS 2: PUBREC, then PUBCOMP for the PUBREL, same packet id."""
    client = harness.connect("pub")
    client.send(Publish("t", b"x", 2, packet_id=0xBEEF))
    assert client.raw() == bytes((0x50, 2, 0xBE, 0xEF))
    client.send(PubRel(0xBEEF))
    assert client.raw() == bytes((0x70, 2, 0xBE, 0xEF))  # [MQTT-3.6.4-1]


def test_qos0_publish_gets_no_answer(harness):
    """[MQTT-3.3.4-1] QoS 0 expects no response."""
    client = harness.connect("pub")
    client.send(Publish("t", b"x", 0))
    assert client.raw() == b""


def test_pubrel_for_an_unknown_id_still_gets_pubcomp(harness):
    """Section 4.3.3: PUBCOMP for a PUBREL the server no longer knows, so the client finishes."""
    client = harness.connect("pub")
    client.send(PubRel(77))
    assert client.received() == [PubComp(77)]
    assert not client.closed


@pytest.mark.parametrize("published", [0, 1, 2])
@pytest.mark.parametrize("granted", [0, 1, 2])
def test_delivery_qos_is_the_minimum_of_published_and_granted(harness, published, granted):
    """[MQTT-3.8.4-6] delivered at min(QoS of the PUBLISH, granted QoS); all 9 pairs."""
    sub = harness.connect("sub")
    sub.subscribed(("t", granted))
    harness.connect("pub").published("t", b"payload", published)
    qos = min(published, granted)
    received = sub.received()
    assert received == [Publish("t", b"payload", qos, packet_id=1 if qos else None)]
    sub.acknowledge(received)
    assert sub.received() == []
    assert harness.broker.sessions["sub"].inflight == {}


@pytest.mark.parametrize("mode", ["on_publish", "on_release"])
def test_qos2_duplicate_before_pubrel_is_forwarded_once(make_harness, mode):
    """[MQTT-4.3.3-2] until PUBREL, a PUBLISH with the same id is the same message.

    on_publish (method B) forwards at the first PUBLISH; on_release (method A) stores it
    and forwards at PUBREL. Either way subscribers get one copy.
    """
    harness = make_harness(qos2_delivery=mode)
    sub = harness.connect("sub")
    sub.subscribed(("t", 2))
    pub = harness.connect("pub")
    expected = [Publish("t", b"once", 2, packet_id=1)]
    assert pub.publish("t", b"once", 2, packet_id=9) == [PubRec(9)]
    assert sub.received() == (expected if mode == "on_publish" else [])
    assert pub.publish("t", b"once", 2, packet_id=9, dup=True) == [PubRec(9)]
    assert sub.received() == []
    pub.send(PubRel(9))
    assert pub.received() == [PubComp(9)]
    assert sub.received() == ([] if mode == "on_publish" else expected)
    assert harness.broker.stats.messages_received == 1
    # After PUBREL the id is free: the same id now carries a new message.
    assert pub.publish("t", b"again", 2, packet_id=9) == [PubRec(9)]
    pub.send(PubRel(9))
    assert pub.received() == [PubComp(9)]
    assert sub.received() == [Publish("t", b"again", 2, packet_id=2)]


def test_on_release_keeps_unreleased_messages_in_the_session(make_harness):
    """on_release: a persistent publisher's PUBREL after reconnecting releases the message."""
    harness = make_harness(qos2_delivery="on_release")
    sub = harness.connect("sub")
    sub.subscribed(("t", 1))
    pub = harness.connect("pub", clean_session=False)
    assert pub.publish("t", b"held", 2, packet_id=5) == [PubRec(5)]
    pub.drop()
    again = harness.connect("pub", clean_session=False, present=True)
    assert sub.received() == []
    again.send(PubRel(5))
    assert again.received() == [PubComp(5)]
    assert sub.received() == [Publish("t", b"held", 1, packet_id=1)]


def test_on_publish_remembers_ids_across_a_reconnect(harness):
    """on_publish: a persistent publisher re-sending (DUP) after reconnect is not re-forwarded."""
    sub = harness.connect("sub")
    sub.subscribed(("t", 0))
    pub = harness.connect("pub", clean_session=False)
    assert pub.publish("t", b"m", 2, packet_id=5) == [PubRec(5)]
    assert sub.received() == [Publish("t", b"m", 0)]
    pub.drop()
    again = harness.connect("pub", clean_session=False, present=True)
    assert again.publish("t", b"m", 2, packet_id=5, dup=True) == [PubRec(5)]
    assert sub.received() == []


# ------------------------------------------------------------ to subscribers


def test_qos1_inflight_removed_at_puback(harness):
    """[MQTT-4.3.2-1] the message is unacknowledged until PUBACK arrives."""
    sub = harness.connect("sub")
    sub.subscribed(("t", 1))
    harness.connect("pub").published("t", b"x", 1)
    assert sub.received() == [Publish("t", b"x", 1, packet_id=1)]
    session = harness.broker.sessions["sub"]
    assert list(session.inflight) == [1]
    assert session.inflight[1].awaiting is Awaiting.PUBACK
    sub.send(PubAck(1))
    assert session.inflight == {}
    assert sub.received() == []


def test_qos2_flow_to_subscriber(harness):
    """[MQTT-4.3.3-1] PUBLISH, PUBREC -> the server sends PUBREL, PUBCOMP completes."""
    sub = harness.connect("sub")
    sub.subscribed(("t", 2))
    harness.connect("pub").published("t", b"x", 2)
    assert sub.received() == [Publish("t", b"x", 2, packet_id=1)]
    session = harness.broker.sessions["sub"]
    assert session.inflight[1].awaiting is Awaiting.PUBREC
    sub.send(PubRec(1))
    assert sub.raw() == bytes((0x62, 2, 0, 1))
    assert session.inflight[1].awaiting is Awaiting.PUBCOMP
    sub.send(PubComp(1))
    assert session.inflight == {}
    assert sub.received() == []


def test_wrong_or_unknown_acknowledgements_are_ignored(harness):
    """A PUBACK / PUBCOMP for an unknown id, or for the wrong step, changes nothing."""
    sub = harness.connect("sub")
    sub.subscribed(("t", 2))
    harness.connect("pub").published("t", b"x", 2)
    assert sub.received() == [Publish("t", b"x", 2, packet_id=1)]
    session = harness.broker.sessions["sub"]
    sub.send(PubAck(1), PubComp(1), PubAck(99), PubComp(99))
    assert sub.received() == []
    assert session.inflight[1].awaiting is Awaiting.PUBREC
    assert not sub.closed


def test_pubrec_for_unknown_id_gets_pubrel(harness):
    """PUBREL even for an id the server does not know, so the client can finish."""
    sub = harness.connect("sub")
    sub.send(PubRec(40))
    assert sub.received() == [PubRel(40)]


def test_pubrec_for_a_qos1_message_is_a_protocol_violation(harness):
    """[MQTT-4.3.2-1/4.3.3-1] a QoS 1 delivery is answered by PUBACK, never PUBREC."""
    sub = harness.connect("sub")
    sub.subscribed(("t", 1))
    harness.connect("pub").published("t", b"x", 1)
    assert sub.received() == [Publish("t", b"x", 1, packet_id=1)]
    sub.send(PubRec(1))
    assert sub.raw() == b""
    assert sub.closed


def test_packet_ids_are_non_zero_and_unique_among_inflight(make_harness):
    """[MQTT-2.3.1-1, 2.3.1-2] ids are never 0 nor the id of a message still in flight.

    Starts near the wrap at 65535 and acknowledges in a shuffled order.
    """
    harness = make_harness(max_inflight_messages=7)
    sub = harness.connect("sub")
    sub.subscribed(("t", 2))
    pub = harness.connect("pub")
    harness.broker.sessions["sub"]._next_packet_id = 65530
    rng = random.Random(1234)
    outstanding: dict[int, int] = {}
    seen: list[int] = []

    def absorb(packets, released=None):
        for packet in packets:
            if isinstance(packet, PubRel):
                assert packet.packet_id == released
                released = None
                continue
            assert isinstance(packet, Publish)
            assert packet.packet_id
            assert packet.packet_id not in outstanding
            outstanding[packet.packet_id] = packet.qos
            seen.append(packet.packet_id)
        assert released is None  # the PUBREL came

    for number in range(60):
        pub.published("t", str(number).encode(), rng.choice([1, 2]))
        absorb(sub.received())
        while len(outstanding) > rng.randint(0, 6):
            packet_id = rng.choice(sorted(outstanding))
            if outstanding.pop(packet_id) == 1:
                sub.send(PubAck(packet_id))
            else:
                sub.send(PubRec(packet_id))
                absorb(sub.received(), released=packet_id)
                sub.send(PubComp(packet_id))
            absorb(sub.received())
    assert 65535 in seen
    assert 0 not in seen
    assert 1 in seen  # wrapped
    assert len(seen) == 60


def test_inflight_window_holds_back_the_third_message(make_harness):
    """max_inflight_messages=2: the third QoS 1 message waits for a PUBACK; order kept.

    [MQTT-4.6.0-6] messages to one subscriber keep the order they were published in.
    """
    harness = make_harness(max_inflight_messages=2)
    sub = harness.connect("sub")
    sub.subscribed(("t", 1))
    pub = harness.connect("pub")
    for payload in (b"1", b"2", b"3", b"4"):
        pub.published("t", payload, 1)
    assert sub.received() == [
        Publish("t", b"1", 1, packet_id=1),
        Publish("t", b"2", 1, packet_id=2),
    ]
    sub.send(PubAck(2))
    assert sub.received() == [Publish("t", b"3", 1, packet_id=3)]
    sub.send(PingReq())
    assert sub.received() == [PingResp()]
    sub.send(PubAck(1))
    assert sub.received() == [Publish("t", b"4", 1, packet_id=4)]
    sub.send(PubAck(3), PubAck(4))
    assert sub.received() == []
    assert len(harness.broker.sessions["sub"].queue) == 0


def test_inflight_window_qos2_frees_at_pubcomp_not_pubrec(make_harness):
    """A QoS 2 message occupies its slot until PUBCOMP."""
    harness = make_harness(max_inflight_messages=1)
    sub = harness.connect("sub")
    sub.subscribed(("t", 2))
    pub = harness.connect("pub")
    pub.published("t", b"1", 2)
    pub.published("t", b"2", 2)
    assert sub.received() == [Publish("t", b"1", 2, packet_id=1)]
    sub.send(PubRec(1))
    assert sub.received() == [PubRel(1)]
    sub.send(PubComp(1))
    assert sub.received() == [Publish("t", b"2", 2, packet_id=2)]


def test_qos0_is_not_held_by_the_window(make_harness):
    """QoS 0 needs no slot in the in-flight window."""
    harness = make_harness(max_inflight_messages=1)
    sub = harness.connect("sub")
    sub.subscribed(("t", 1))
    pub = harness.connect("pub")
    pub.published("t", b"a", 1)
    pub.published("t", b"b", 1)
    pub.published("t", b"c", 0)
    assert sub.received() == [Publish("t", b"a", 1, packet_id=1), Publish("t", b"c", 0)]


def test_reconnect_resends_inflight_then_queue_in_order(make_harness):
    """[MQTT-4.4.0-1] on a resumed session: unacknowledged PUBLISH again with DUP 1
    [MQTT-3.3.1-1], PUBREL for PUBREC'd messages, original ids and order; then the queue.
    """
    harness = make_harness(max_inflight_messages=3)
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t", 2))
    pub = harness.connect("pub")
    pub.published("t", b"m1", 1)
    pub.published("t", b"m2", 2)
    pub.published("t", b"m3", 2)
    pub.published("t", b"m4", 1)
    assert sub.received() == [
        Publish("t", b"m1", 1, packet_id=1),
        Publish("t", b"m2", 2, packet_id=2),
        Publish("t", b"m3", 2, packet_id=3),
    ]
    sub.send(PubRec(2))
    assert sub.received() == [PubRel(2)]
    sub.drop()
    pub.published("t", b"m5", 2)  # while offline
    back = harness.open()
    assert back.connect("sub", clean_session=False) == [
        ConnAck(0, True),
        Publish("t", b"m1", 1, dup=True, packet_id=1),
        PubRel(2),
        Publish("t", b"m3", 2, dup=True, packet_id=3),
    ]
    back.send(PubAck(1))
    assert back.received() == [Publish("t", b"m4", 1, packet_id=4)]
    back.send(PubComp(2))
    assert back.received() == [Publish("t", b"m5", 2, packet_id=5)]


def test_reconnect_with_room_sends_the_queue_right_after_the_resends(harness):
    """[MQTT-4.4.0-1] resends first, then queued messages, all in one go when the window allows."""
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t", 2))
    pub = harness.connect("pub")
    pub.published("t", b"a", 2)
    assert sub.received() == [Publish("t", b"a", 2, packet_id=1)]
    sub.drop()
    pub.published("t", b"b", 1)
    pub.published("t", b"c", 0)  # QoS 0 is not queued for an offline client
    pub.published("t", b"d", 2)
    back = harness.open()
    assert back.connect("sub", clean_session=False) == [
        ConnAck(0, True),
        Publish("t", b"a", 2, dup=True, packet_id=1),
        Publish("t", b"b", 1, packet_id=2),
        Publish("t", b"d", 2, packet_id=3),
    ]
