"""Area 12: packet identifiers (section 2.3.1)."""

from __future__ import annotations

from midge.conformance import wire
from midge.conformance.harness import check
from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.packets import PubAck, PubComp, Publish, PubRec, PubRel


@scenario(
    "12-01",
    "The broker's packet ids for 10 unacknowledged QoS 1 messages are non-zero and distinct",
    rule="MQTT-4.3.2-1",
)
def outbound_ids_distinct(target: Target) -> None:
    topic = target.topic()
    sub = target.client("sub")
    sub.subscribe((topic, 1))
    pub = target.client("pub")
    for number in range(10):
        pub.publish(topic, str(number).encode(), qos=1)
    delivered = [sub.expect_publish(topic, qos=1, ack=False) for _ in range(10)]
    ids = [p.packet_id for p in delivered]
    check(all(ids), f"sub: packet ids {ids} include 0")
    check(len(set(ids)) == len(ids), f"sub: packet ids {ids} repeat while unacknowledged")
    for publish in delivered:
        sub.acknowledge(publish)
    sub.expect_nothing()


def _reuse(target: Target, qos: int) -> None:
    topic = target.topic()
    sub = target.client("sub")
    sub.subscribe((topic, 0))
    pub = target.client("pub")
    for payload in (b"first", b"second"):
        pub.send(Publish(topic, payload, qos=qos, packet_id=5))
        if qos == 1:
            check(pub.expect(PubAck).packet_id == 5, "pub: PUBACK for another packet id")
        else:
            check(pub.expect(PubRec).packet_id == 5, "pub: PUBREC for another packet id")
            pub.send(PubRel(5))
            check(pub.expect(PubComp).packet_id == 5, "pub: PUBCOMP for another packet id")
        sub.expect_publish(topic, payload)


@scenario(
    "12-02",
    "A QoS 1 packet id reused after PUBACK is a new publication",
    rule="MQTT-4.3.2-2",
)
def reuse_after_puback(target: Target) -> None:
    _reuse(target, 1)


@scenario(
    "12-03",
    "A QoS 2 packet id reused after PUBCOMP is a new publication",
    rule="MQTT-4.3.3-2",
)
def reuse_after_pubcomp(target: Target) -> None:
    _reuse(target, 2)


@scenario("12-04", "A QoS 1 PUBLISH with packet id 0 closes the connection", rule="MQTT-2.3.1-1")
def publish_id_zero(target: Target) -> None:
    client = target.client("c")
    client.send(wire.publish(0x32, target.topic().encode(), b"x", packet_id=0))
    client.expect_closed()


@scenario("12-05", "A SUBSCRIBE with packet id 0 closes the connection", rule="MQTT-2.3.1-1")
def subscribe_id_zero(target: Target) -> None:
    client = target.client("c")
    client.send(wire.subscribe(0x82, 0, (target.topic().encode(), 0)))
    client.expect_closed()
