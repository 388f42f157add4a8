"""Bytes in, bytes out: chunking, pipelining, coalesced writes, packets only servers send."""

from __future__ import annotations

import pytest

from midge.protocol.codec import encode
from midge.protocol.packets import (
    ConnAck,
    Connect,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)


def test_pingreq_gets_pingresp(harness):
    """[MQTT-3.12.4-1] the server answers PINGREQ with PINGRESP."""
    client = harness.connect("c1")
    client.send(PingReq())
    assert client.raw() == bytes((0xD0, 0))


def test_packets_split_at_every_byte(harness):
    """A packet cut into single bytes is handled once, when its last byte arrives."""
    sub = harness.connect("sub")
    sub.subscribed(("t/#", 1))
    pub = harness.connect("pub")
    data = encode(Publish("t/x", b"payload", 1, packet_id=3))
    for byte in data[:-1]:
        pub.send(bytes((byte,)))
        assert pub.raw() == b""
    assert sub.raw() == b""
    pub.send(data[-1:])
    assert pub.received() == [PubAck(3)]
    assert sub.received() == [Publish("t/x", b"payload", 1, packet_id=1)]


def test_pipelined_packets_are_answered_in_order_in_one_write(harness):
    """Several packets in one chunk: answers in order [MQTT-4.6.0-2], one write per batch."""
    client = harness.open()
    client.send(
        encode(Connect("c1"))
        + encode(Subscribe(1, (Subscription("t", 1),)))
        + encode(Publish("t", b"x", 1, packet_id=2))
        + encode(PingReq())
        + encode(Unsubscribe(3, ("t",)))
    )
    assert client.transport.write_calls == 1
    assert client.received() == [
        ConnAck(0),
        SubAck(1, (1,)),
        Publish("t", b"x", 1, packet_id=1),
        PubAck(2),
        PingResp(),
        UnsubAck(3),
    ]


def test_a_whole_packet_and_a_partial_one(harness):
    """The complete packet is handled; the partial one waits for its remaining bytes."""
    client = harness.connect("c1")
    ping = encode(PingReq())
    client.send(ping + ping[:1])
    assert client.received() == [PingResp()]
    client.send(ping[1:])
    assert client.received() == [PingResp()]


@pytest.mark.parametrize(
    "packet",
    [ConnAck(0), SubAck(1, (0,)), UnsubAck(1), PingResp()],
    ids=["connack", "suback", "unsuback", "pingresp"],
)
def test_packets_only_servers_send_close_the_connection(harness, packet):
    """[MQTT-4.8.0-1] a client sending a server-only packet is a protocol violation."""
    watcher = harness.connect("watcher")
    watcher.subscribed("w")
    client = harness.connect("c1", will=Will("w", b"bye"))
    client.send(packet)
    assert client.raw() == b""
    assert client.closed
    assert watcher.received() == [Publish("w", b"bye")]


def test_packet_over_max_packet_size_closes(make_harness):
    """max_packet_size bounds a whole packet; a larger one closes the connection."""
    harness = make_harness(max_packet_size=64)
    sub = harness.connect("sub")
    sub.subscribed("t")
    pub = harness.connect("pub")
    fits = encode(Publish("t", b"x" * 59))  # 2 + 2 + 1 + 59 = 64 bytes
    assert len(fits) == 64
    pub.send(fits)
    assert sub.received() == [Publish("t", b"x" * 59)]
    pub.send(encode(Publish("t", b"x" * 60)))
    assert pub.closed
    assert sub.received() == []
    assert harness.broker.stats.protocol_violations == 1


def test_nothing_is_read_after_close(harness):
    """Bytes arriving after the broker closed the connection are ignored."""
    client = harness.connect("c1")
    client.disconnect()
    assert client.closed
    client.send(PingReq(), Publish("t", b"x", 1, packet_id=1))
    assert client.raw() == b""
    assert harness.broker.stats.messages_received == 0


def test_disconnect_discards_the_rest_of_the_chunk(harness):
    """[MQTT-3.14.4-2] after DISCONNECT the server processes nothing more from the client."""
    sub = harness.connect("sub")
    sub.subscribed("t")
    client = harness.connect("c1")
    client.send(encode(Publish("t", b"early")) + bytes((0xE0, 0)) + encode(Publish("t", b"late")))
    assert client.closed
    assert sub.received() == [Publish("t", b"early")]
    assert harness.broker.stats.messages_received == 1


def test_stats_count_connections_and_messages(harness):
    """Stats: sockets accepted, application messages received (routed) and sent."""
    sub1 = harness.connect("s1")
    sub1.subscribed("t")
    sub2 = harness.connect("s2")
    sub2.subscribed(("t", 1))
    pub = harness.connect("pub")
    pub.published("t", b"x", 1)
    pub.published("nobody", b"y", 0)
    stats = harness.broker.stats
    assert (stats.connections_accepted, stats.messages_received, stats.messages_sent) == (3, 2, 2)
    assert (stats.messages_dropped, stats.protocol_violations) == (0, 0)
