"""Area 06: PUBLISH, the QoS 0/1/2 flows, queueing and redelivery (sections 3.3 - 3.7, 4.3, 4.4)."""

from __future__ import annotations

from midge.conformance.harness import RawClient, check
from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.packets import PubAck, PubComp, Publish, PubRec, PubRel


def _subscriber(
    target: Target, topic_filter: str, qos: int, clean_session: bool = True
) -> RawClient:
    client = target.client("sub", clean_session=clean_session)
    codes = client.subscribe((topic_filter, qos))
    check(codes == (qos,), f"sub: SUBACK {codes}, expected ({qos},)")
    return client


def _check_id(what: str, got: int, expected: int) -> None:
    check(got == expected, f"{what} for packet id {got:#06x}, expected {expected:#06x}")


@scenario(
    "06-01",
    "A QoS 0 PUBLISH is delivered with QoS 0, no packet id and no acknowledgement",
    rule="MQTT-4.3.1-1",
)
def qos0_flow(target: Target) -> None:
    topic = target.topic()
    sub = _subscriber(target, topic, 2)
    pub = target.client("pub")
    pub.publish(topic, b"q0")
    delivered = sub.expect_publish(topic, b"q0", qos=0, retain=False, dup=False)
    check(delivered.packet_id is None, "sub: QoS 0 PUBLISH carries a packet id")
    pub.expect_nothing()


@scenario(
    "06-02", "A QoS 1 PUBLISH is answered with PUBACK of the same packet id", rule="MQTT-4.3.2-2"
)
def qos1_publisher_flow(target: Target) -> None:
    client = target.client("pub")
    client.send(Publish(target.topic(), b"q1", qos=1, packet_id=0x4242))
    _check_id("PUBACK", client.expect(PubAck).packet_id, 0x4242)
    client.expect_nothing()


@scenario(
    "06-03",
    "A QoS 2 PUBLISH gets PUBREC; PUBREL then gets PUBCOMP, all with the same packet id",
    rule="MQTT-4.3.3-2",
)
def qos2_publisher_flow(target: Target) -> None:
    client = target.client("pub")
    client.send(Publish(target.topic(), b"q2", qos=2, packet_id=0x1234))
    _check_id("PUBREC", client.expect(PubRec).packet_id, 0x1234)
    client.send(PubRel(0x1234))
    _check_id("PUBCOMP", client.expect(PubComp).packet_id, 0x1234)
    client.expect_nothing()


def _downgrade(target: Target, granted: int) -> None:
    topic = target.topic()
    sub = _subscriber(target, topic, granted)
    pub = target.client("pub")
    for qos in (0, 1, 2):
        payload = f"published at QoS {qos}".encode()
        pub.publish(topic, payload, qos)
        sub.expect_publish(topic, payload, qos=min(qos, granted))


def _register_downgrade(granted: int) -> None:
    @scenario(
        f"06-0{4 + granted}",
        f"Granted QoS {granted}: messages published at QoS 0, 1, 2 arrive at "
        f"min(published, {granted})",
        rule="MQTT-3.8.4-6",
    )
    def downgrade(target: Target) -> None:
        _downgrade(target, granted)


for _granted in (0, 1, 2):
    _register_downgrade(_granted)


@scenario(
    "06-07",
    "A QoS 2 PUBLISH re-sent with DUP before PUBREL is delivered exactly once",
    rule="MQTT-4.3.3-2",
)
def qos2_exactly_once(target: Target) -> None:
    topic = target.topic()
    sub = _subscriber(target, topic, 0)
    pub = target.client("pub")
    pub.send(Publish(topic, b"exactly once", qos=2, packet_id=7))
    _check_id("PUBREC", pub.expect(PubRec).packet_id, 7)
    pub.send(Publish(topic, b"exactly once", qos=2, dup=True, packet_id=7))
    _check_id("PUBREC", pub.expect(PubRec).packet_id, 7)
    pub.send(PubRel(7))
    _check_id("PUBCOMP", pub.expect(PubComp).packet_id, 7)
    copies = [p for p in sub.collect(1.0) if isinstance(p, Publish)]
    check(len(copies) == 1, f"sub: {len(copies)} copies of a QoS 2 message, expected 1")


@scenario(
    "06-08",
    "A QoS 1 subscriber gets PUBLISH with a packet id and DUP 0; after PUBACK nothing more",
    rule="MQTT-4.3.2-1",
)
def qos1_subscriber_flow(target: Target) -> None:
    topic = target.topic()
    sub = _subscriber(target, topic, 1)
    target.client("pub").publish(topic, b"q1", qos=1)
    delivered = sub.expect_publish(topic, b"q1", qos=1, dup=False, ack=False)
    sub.send(PubAck(delivered.packet_id or 0))
    sub.expect_nothing()


@scenario(
    "06-09",
    "A QoS 2 subscriber: PUBLISH, PUBREC -> PUBREL with the same id, PUBCOMP, nothing more",
    rule="MQTT-4.3.3-1",
)
def qos2_subscriber_flow(target: Target) -> None:
    topic = target.topic()
    sub = _subscriber(target, topic, 2)
    target.client("pub").publish(topic, b"q2", qos=2)
    delivered = sub.expect_publish(topic, b"q2", qos=2, dup=False, ack=False)
    packet_id = delivered.packet_id or 0
    sub.send(PubRec(packet_id))
    _check_id("sub: PUBREL", sub.expect(PubRel).packet_id, packet_id)
    sub.send(PubComp(packet_id))
    sub.expect_nothing()


@scenario(
    "06-10",
    "100 pipelined QoS 1 messages are acknowledged and delivered in order",
    rule="MQTT-4.6.0-6",
)
def order_preserved(target: Target) -> None:
    topic = target.topic()
    sub = _subscriber(target, topic, 1)
    pub = target.client("pub")
    for number in range(1, 101):
        pub.send(Publish(topic, str(number).encode(), qos=1, packet_id=number))
    acked = {pub.expect(PubAck).packet_id for _ in range(100)}
    check(acked == set(range(1, 101)), "pub: PUBACKs do not cover packet ids 1..100")
    for number in range(1, 101):
        sub.expect_publish(topic, str(number).encode(), qos=1)


@scenario(
    "06-11",
    "Overlapping subscriptions (QoS 0 and QoS 2) deliver a copy at the maximum QoS",
    rule="MQTT-3.3.5-1",
)
def overlapping_subscriptions(target: Target) -> None:
    topic = target.topic("o/x")
    sub = target.client("sub")
    codes = sub.subscribe((target.topic("o/+"), 0), (target.topic("o/#"), 2))
    check(codes == (0, 2), f"sub: SUBACK {codes}, expected (0, 2)")
    target.client("pub").publish(topic, b"overlap", qos=2)
    copies = [p for p in sub.collect(1.0) if isinstance(p, Publish)]
    check(bool(copies), "sub: the message was not delivered")
    check(
        any(p.qos == 2 for p in copies),
        f"sub: copies arrived at QoS {[p.qos for p in copies]}, none at the maximum 2",
    )


@scenario(
    "06-12",
    "QoS 1 and 2 messages published while a clean-session-0 subscriber is away arrive on reconnect",
    rule="MQTT-3.1.2-5",
)
def queued_while_offline(target: Target) -> None:
    topic = target.topic()
    _subscriber(target, topic, 2, clean_session=False).disconnect()
    pub = target.client("pub")
    pub.publish(topic, b"one", qos=1)
    pub.publish(topic, b"two", qos=2)
    sub = target.client("sub", clean_session=False, session_present=True)
    got = set()
    for _ in range(2):  # order across QoS levels is not specified [MQTT-4.6.0-6]
        publish = sub.expect_publish(topic)
        got.add((publish.payload, publish.qos))
    expected = {(b"one", 1), (b"two", 2)}
    check(got == expected, f"sub: got (payload, QoS) {sorted(got)}, expected {sorted(expected)}")
    sub.expect_nothing()


@scenario(
    "06-13",
    "An unacknowledged QoS 1 message is re-sent with DUP 1 and the same id after reconnect",
    rule="MQTT-4.4.0-1",
)
def qos1_redelivery(target: Target) -> None:
    topic = target.topic()
    sub = _subscriber(target, topic, 1, clean_session=False)
    target.client("pub").publish(topic, b"unacked", qos=1)
    first = sub.expect_publish(topic, b"unacked", qos=1, dup=False, ack=False)
    sub.close()
    sub = target.client("sub", clean_session=False, session_present=True)
    again = sub.expect_publish(topic, b"unacked", qos=1, dup=True)
    _check_id("sub: re-sent PUBLISH", again.packet_id or 0, first.packet_id or 0)
    sub.expect_nothing()


@scenario(
    "06-14",
    "PUBREL is re-sent after reconnect when the subscriber sent PUBREC but not PUBCOMP",
    rule="MQTT-4.4.0-1",
)
def pubrel_redelivery(target: Target) -> None:
    topic = target.topic()
    sub = _subscriber(target, topic, 2, clean_session=False)
    target.client("pub").publish(topic, b"half done", qos=2)
    packet_id = sub.expect_publish(topic, b"half done", qos=2, ack=False).packet_id or 0
    sub.send(PubRec(packet_id))
    _check_id("sub: PUBREL", sub.expect(PubRel).packet_id, packet_id)
    sub.close()
    sub = target.client("sub", clean_session=False, session_present=True)
    _check_id("sub: re-sent PUBREL", sub.expect(PubRel).packet_id, packet_id)
    sub.send(PubComp(packet_id))
    sub.expect_nothing()


@scenario(
    "06-15",
    "Reconnecting with clean session 1 discards the messages queued for the old session",
    rule="MQTT-3.1.2-6",
)
def clean_discards_queue(target: Target) -> None:
    topic = target.topic()
    _subscriber(target, topic, 1, clean_session=False).disconnect()
    control = target.client("control", clean_session=False)
    control.subscribe((topic, 1))
    control.disconnect()
    target.client("pub").publish(topic, b"queued", qos=1)
    sub = target.client("sub", clean_session=True, session_present=False)
    target.client("control", clean_session=False).expect_publish(topic, b"queued", qos=1)
    sub.expect_nothing()
    sub.disconnect()
    target.client("sub", clean_session=False, session_present=False).expect_nothing()


@scenario(
    "06-16",
    "The DUP flag of an incoming PUBLISH is not propagated to subscribers",
    rule="MQTT-3.3.1-3",
)
def dup_not_propagated(target: Target) -> None:
    topic = target.topic()
    sub = _subscriber(target, topic, 1)
    pub = target.client("pub")
    pub.send(Publish(topic, b"dup in", qos=1, dup=True, packet_id=9))
    _check_id("PUBACK", pub.expect(PubAck).packet_id, 9)
    sub.expect_publish(topic, b"dup in", qos=1, dup=False)


@scenario(
    "06-17",
    "A 100 kB payload (three-byte remaining length) is delivered intact",
    rule="MQTT-4.5.0-1",
)
def large_payload(target: Target) -> None:
    topic = target.topic()
    payload = bytes(range(256)) * 400
    sub = _subscriber(target, topic, 1)
    target.client("pub").publish(topic, payload, qos=1)
    sub.expect_publish(topic, payload, qos=1)


@scenario(
    "06-18",
    "PUBREL for a packet id the broker does not know is answered with PUBCOMP",
    rule="MQTT-4.3.3-2",
)
def pubrel_unknown_id(target: Target) -> None:
    client = target.client("c")
    client.send(PubRel(0x5151))
    _check_id("PUBCOMP", client.expect(PubComp).packet_id, 0x5151)
