"""Area 22 (MQTT 5.0): reason codes on acknowledgements and their short forms (2.4, 3.4-3.11).

A 5.0 acknowledgement may omit its reason code and properties when the code
is 0 and there are none (remaining length 2), or omit only the property
length (remaining length 3): the broker must take all three forms from a
client. What the broker sends is decoded whatever the form.
"""

from __future__ import annotations

from midge.conformance import wire
from midge.conformance.harness import RawClient, check
from midge.conformance.target import Target
from midge.conformance.v5 import scenario5
from midge.protocol.packets import PubAck, PubComp, Publish, PubRec, PubRel
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode

PUBACK, PUBREC, PUBREL, PUBCOMP = 0x40, 0x50, 0x62, 0x70


def _ack(first_byte: int, packet_id: int, tail: bytes = b"") -> bytes:
    """An acknowledgement in its short form (`tail` empty) or with a reason code (`tail`)."""
    return wire.packet(first_byte, packet_id.to_bytes(2, "big") + tail)


def _delivered(target: Target, qos: int, keep_session: bool = False) -> tuple[RawClient, Publish]:
    """A subscriber and the QoS `qos` PUBLISH a publisher sent it, not yet acknowledged."""
    topic = target.topic("ack")
    connect = Properties(session_expiry_interval=60) if keep_session else None
    subscriber = target.client("s", properties=connect)
    subscriber.subscribe((topic, qos))
    target.client("p").publish(topic, b"m", qos=qos)
    return subscriber, subscriber.expect_publish(topic, b"m", qos=qos, ack=False)


def _no_redelivery(target: Target) -> None:
    """The acknowledged message is not sent again to the resumed session."""
    resumed = target.client(
        "s",
        clean_session=False,
        session_present=True,
        properties=Properties(session_expiry_interval=60),
    )
    resumed.expect_nothing()


@scenario5(
    "22-01",
    "PUBACK to a QoS 1 PUBLISH: 0x00 with a subscriber, 0x00 or 0x10 without",
    rule="MQTT-3.4.2-1",
)
def puback_reason(target: Target) -> None:
    topic = target.topic("sub")
    target.client("s").subscribe((topic, 1))
    publisher = target.client("p")
    ack = publisher.publish_acked(topic, b"m", qos=1)
    check(ack is not None and ack.reason_code == 0, f"p: {ack} for a subscribed topic")
    ack = publisher.publish_acked(target.topic("nobody"), b"m", qos=1)
    allowed = (ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS)
    check(ack is not None and ack.reason_code in allowed, f"p: {ack} for an unsubscribed topic")


@scenario5(
    "22-02",
    "PUBREC 0x00 (or 0x10 without subscribers) and PUBCOMP 0x00 to a QoS 2 PUBLISH",
    rule="MQTT-3.5.2-1",
)
def pubrec_pubcomp_reason(target: Target) -> None:
    publisher = target.client("p")
    packet_id = publisher.new_packet_id()
    publisher.send(Publish(target.topic("nobody"), b"m", 2, packet_id=packet_id))
    pubrec = publisher.expect_ack(PubRec, packet_id)
    allowed = (ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS)
    check(pubrec.reason_code in allowed, f"p: PUBREC reason 0x{pubrec.reason_code:02X}")
    publisher.send(PubRel(packet_id))
    pubcomp = publisher.expect_ack(PubComp, packet_id)
    check(pubcomp.reason_code == 0, f"p: PUBCOMP reason 0x{pubcomp.reason_code:02X}")


@scenario5(
    "22-03",
    "A PUBREL for an unknown packet id gets PUBCOMP with its id (0x92 not found, or 0x00)",
    rule="MQTT-3.7.2-1",
)
def pubrel_unknown(target: Target) -> None:
    client = target.client("c")
    client.send(PubRel(4242))
    pubcomp = client.expect_ack(PubComp, 4242)
    # 0x92 says what happened; the spec defines it but does not require it over 0x00.
    allowed = (ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, ReasonCode.SUCCESS)
    check(pubcomp.reason_code in allowed, f"c: PUBCOMP reason 0x{pubcomp.reason_code:02X}")


@scenario5(
    "22-04",
    "SUBACK carries one reason code per filter, in order: the QoS granted",
    rule="MQTT-3.8.4-6",
)
def suback_reason_codes(target: Target) -> None:
    client = target.client("c")
    filters = [(target.topic(f"q{qos}"), qos) for qos in (2, 0, 1)]
    codes = client.subscribe(*filters)
    check(codes == (2, 0, 1), f"c: SUBACK {codes}, expected (2, 0, 1)")


@scenario5(
    "22-05",
    "UNSUBACK carries one reason code per filter, in order: 0x00, or 0x11 when none existed",
    rule="MQTT-3.11.3-1",
)
def unsuback_reason_codes(target: Target) -> None:
    client = target.client("c")
    subscribed = target.topic("a")
    client.subscribe((subscribed, 0))
    unsuback = client.unsubscribe(target.topic("none"), subscribed)
    wanted = (ReasonCode.NO_SUBSCRIPTION_EXISTED, ReasonCode.SUCCESS)
    check(unsuback.reason_codes == wanted, f"c: UNSUBACK {unsuback.reason_codes}, wanted 0x11, 0")


@scenario5(
    "22-06",
    "The broker takes a PUBACK in the short form (remaining length 2): no redelivery",
    rule="§3.4.2.1",
)
def short_puback(target: Target) -> None:
    subscriber, publish = _delivered(target, 1, keep_session=True)
    subscriber.send(_ack(PUBACK, publish.packet_id or 0))
    subscriber.still_connected()
    subscriber.close()
    _no_redelivery(target)


@scenario5(
    "22-07",
    "The broker takes a PUBACK with a reason code and no property length (remaining length 3)",
    rule="§3.4.2.2",
)
def puback_without_property_length(target: Target) -> None:
    subscriber, publish = _delivered(target, 1, keep_session=True)
    subscriber.send(_ack(PUBACK, publish.packet_id or 0, b"\x00"))
    subscriber.still_connected()
    subscriber.close()
    _no_redelivery(target)


@scenario5(
    "22-08",
    "QoS 2 delivery with the short PUBREC and PUBCOMP: PUBREL follows, nothing is redelivered",
    rule="§3.5.2.1",
)
def short_pubrec_pubcomp(target: Target) -> None:
    subscriber, publish = _delivered(target, 2, keep_session=True)
    packet_id = publish.packet_id or 0
    subscriber.send(_ack(PUBREC, packet_id))
    pubrel = subscriber.expect(PubRel)
    check(pubrel.packet_id == packet_id, f"s: PUBREL for {pubrel.packet_id}, not {packet_id}")
    subscriber.send(_ack(PUBCOMP, packet_id))
    subscriber.still_connected()
    subscriber.close()
    _no_redelivery(target)


@scenario5(
    "22-09",
    "A short PUBREL (remaining length 2) from a QoS 2 publisher completes with PUBCOMP",
    rule="§3.6.2.1",
)
def short_pubrel(target: Target) -> None:
    topic = target.topic("q2")
    subscriber = target.client("s")
    subscriber.subscribe((topic, 2))
    publisher = target.client("p")
    packet_id = publisher.new_packet_id()
    publisher.send(Publish(topic, b"m", 2, packet_id=packet_id))
    publisher.expect_ack(PubRec, packet_id)
    publisher.send(_ack(PUBREL, packet_id))
    publisher.expect_ack(PubComp, packet_id)
    subscriber.expect_publish(topic, b"m", qos=2)


@scenario5(
    "22-10",
    "A PUBREC with reason code 0x80 ends the QoS 2 flow: the broker sends no PUBREL",
    rule="§4.3.3",
)
def failed_pubrec_ends_flow(target: Target) -> None:
    subscriber, publish = _delivered(target, 2)
    subscriber.send(PubRec(publish.packet_id or 0, ReasonCode.UNSPECIFIED_ERROR))
    subscriber.expect_nothing()
    subscriber.still_connected()


@scenario5(
    "22-11",
    "A PUBACK with reason code 0x80 still acknowledges the message: no redelivery",
    rule="§4.3.2",
)
def failed_puback_acknowledges(target: Target) -> None:
    subscriber, publish = _delivered(target, 1, keep_session=True)
    subscriber.send(PubAck(publish.packet_id or 0, ReasonCode.UNSPECIFIED_ERROR))
    subscriber.still_connected()
    subscriber.close()
    _no_redelivery(target)
