"""Area 05: SUBSCRIBE and SUBACK (sections 3.8, 3.9)."""

from __future__ import annotations

from midge.conformance import wire
from midge.conformance.harness import check
from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.packets import SUBACK_FAILURE, SubAck, Subscribe, Subscription


@scenario("05-01", "SUBACK carries the packet id of the SUBSCRIBE", rule="MQTT-3.8.4-2")
def suback_packet_id(target: Target) -> None:
    client = target.client("c")
    for packet_id in (0x0001, 0xBEEF, 0xFFFF):
        client.send(Subscribe(packet_id, (Subscription(target.topic(), 0),)))
        suback = client.expect(SubAck)
        check(
            suback.packet_id == packet_id,
            f"c: SUBACK packet id {suback.packet_id:#06x}, SUBSCRIBE had {packet_id:#06x}",
        )


@scenario(
    "05-02",
    "SUBACK has one return code per filter, in order, granting the requested QoS 0, 1, 2",
    rule="MQTT-3.9.3-1",
)
def suback_codes(target: Target) -> None:
    client = target.client("c")
    codes = client.subscribe((target.topic("a"), 2), (target.topic("b"), 0), (target.topic("c"), 1))
    check(codes == (2, 0, 1), f"c: SUBACK return codes {codes}, expected (2, 0, 1)")


@scenario(
    "05-03",
    "A second SUBSCRIBE with the same filter replaces the QoS",
    rule="MQTT-3.8.4-3",
)
def resubscribe_replaces_qos(target: Target) -> None:
    topic = target.topic()
    client = target.client("c")
    client.subscribe((topic, 2))
    codes = client.subscribe((topic, 0))
    check(codes == (0,), f"c: SUBACK return codes {codes}, expected (0,)")
    target.client("pub").publish(topic, b"once at QoS 0", qos=2)
    client.expect_publish(topic, b"once at QoS 0", qos=0)
    client.expect_nothing()


@scenario(
    "05-04",
    "A second SUBSCRIBE with the same filter re-sends the retained message",
    rule="MQTT-3.8.4-3",
)
def resubscribe_resends_retained(target: Target) -> None:
    topic = target.topic()
    target.client("pub").publish(topic, b"retained", qos=1, retain=True)
    client = target.client("c")
    for qos in (1, 0):
        client.subscribe((topic, qos))
        client.expect_publish(topic, b"retained", qos=qos, retain=True)
    client.expect_nothing()


@scenario(
    "05-05",
    "Invalid filters (a/#/b, a+, #a) get 0x80 while valid ones in the same SUBSCRIBE get their QoS",
    rule="MQTT-4.7.1-2",
)
def invalid_filters_refused(target: Target) -> None:
    client = target.client("c")
    valid = target.topic("ok")
    codes = client.subscribe(
        (valid, 1),
        (target.topic("a/#/b"), 0),
        (target.topic("a+"), 1),
        (target.topic("#a"), 2),
        (target.topic("ok2"), 2),
    )
    failure = SUBACK_FAILURE
    expected = (1, failure, failure, failure, 2)
    check(codes == expected, f"c: SUBACK return codes {codes}, expected {expected}")
    target.client("pub").publish(valid, b"valid filter works", qos=1)
    client.expect_publish(valid, b"valid filter works", qos=1)


@scenario(
    "05-06",
    "SUBSCRIBE with fixed-header flags 0000 (not 0010) closes the connection",
    rule="MQTT-3.8.1-1",
)
def subscribe_bad_flags(target: Target) -> None:
    client = target.client("c")
    client.send(wire.subscribe(0x80, 1, (target.topic().encode(), 0)))
    client.expect_closed()


@scenario("05-07", "SUBSCRIBE without any topic filter closes the connection", rule="MQTT-3.8.3-3")
def subscribe_empty(target: Target) -> None:
    client = target.client("c")
    client.send(wire.subscribe(0x82, 1))
    client.expect_closed()


@scenario("05-08", "SUBSCRIBE requesting QoS 3 closes the connection", rule="MQTT-3.8.3-4")
def subscribe_qos_3(target: Target) -> None:
    client = target.client("c")
    client.send(wire.subscribe(0x82, 1, (target.topic().encode(), 3)))
    client.expect_closed()


@scenario(
    "05-09",
    "A filter repeated in one SUBSCRIBE is handled in order: the last QoS wins, one copy",
    rule="MQTT-3.8.4-4",
)
def repeated_filter_in_one_subscribe(target: Target) -> None:
    topic = target.topic()
    client = target.client("c")
    codes = client.subscribe((topic, 1), (topic, 2))
    check(codes == (1, 2), f"c: SUBACK return codes {codes}, expected (1, 2)")
    target.client("pub").publish(topic, b"one copy", qos=2)
    client.expect_publish(topic, b"one copy", qos=2)
    client.expect_nothing()
