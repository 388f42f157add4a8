"""Area 08: UNSUBSCRIBE and UNSUBACK (sections 3.10, 3.11)."""

from __future__ import annotations

from midge.conformance import wire
from midge.conformance.harness import check
from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.packets import UnsubAck, Unsubscribe


@scenario("08-01", "UNSUBACK carries the packet id of the UNSUBSCRIBE", rule="MQTT-3.10.4-4")
def unsuback_packet_id(target: Target) -> None:
    client = target.client("c")
    client.subscribe((target.topic(), 0))
    for packet_id in (0x0102, 0xFFFF):
        client.send(Unsubscribe(packet_id, (target.topic(),)))
        unsuback = client.expect(UnsubAck)
        check(
            unsuback.packet_id == packet_id,
            f"c: UNSUBACK packet id {unsuback.packet_id:#06x}, expected {packet_id:#06x}",
        )


@scenario(
    "08-02", "After UNSUBACK no more messages are delivered for the filter", rule="MQTT-3.10.4-2"
)
def no_delivery_after_unsubscribe(target: Target) -> None:
    topic = target.topic()
    sub = target.client("sub")
    sub.subscribe((topic, 1))
    pub = target.client("pub")
    pub.publish(topic, b"before", qos=1)
    sub.expect_publish(topic, b"before", qos=1)
    sub.unsubscribe(topic)
    pub.publish(topic, b"after", qos=1)
    sub.expect_nothing()


@scenario(
    "08-03",
    "UNSUBSCRIBE of a filter that was never subscribed is still answered with UNSUBACK",
    rule="MQTT-3.10.4-5",
)
def unsubscribe_unknown_filter(target: Target) -> None:
    client = target.client("c")
    client.unsubscribe(target.topic("never/subscribed"))
    client.still_connected()


@scenario(
    "08-04",
    "UNSUBSCRIBE with fixed-header flags 0000 (byte 0xA0) closes the connection",
    rule="MQTT-3.10.1-1",
)
def unsubscribe_bad_flags(target: Target) -> None:
    client = target.client("c")
    client.send(wire.unsubscribe(0xA0, 1, target.topic().encode()))
    client.expect_closed()


@scenario(
    "08-05",
    "UNSUBSCRIBE compares filters byte for byte: a/b does not remove a/+",
    rule="MQTT-3.10.4-1",
)
def unsubscribe_exact_match(target: Target) -> None:
    topic = target.topic("a/b")
    sub = target.client("sub")
    sub.subscribe((target.topic("a/+"), 1))
    sub.unsubscribe(topic)
    target.client("pub").publish(topic, b"still subscribed", qos=1)
    sub.expect_publish(topic, b"still subscribed", qos=1)


@scenario(
    "08-06",
    "An UNSUBSCRIBE with two filters removes both and is answered by one UNSUBACK",
    rule="MQTT-3.10.4-6",
)
def unsubscribe_two_filters(target: Target) -> None:
    first, second, kept = target.topic("1"), target.topic("2"), target.topic("3")
    sub = target.client("sub")
    sub.subscribe((first, 0), (second, 0), (kept, 0))
    sub.unsubscribe(first, second)
    sub.expect_nothing(0.2)  # exactly one UNSUBACK
    pub = target.client("pub")
    for topic in (first, second, kept):
        pub.publish(topic, topic.encode(), qos=1)
    sub.expect_publish(kept, kept.encode())
    sub.expect_nothing()
