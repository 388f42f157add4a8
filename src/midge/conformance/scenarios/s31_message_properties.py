"""Area 31 (MQTT 5.0): PUBLISH properties forwarded unchanged, live, queued and retained (3.3.2.3).

The broker forwards Payload Format Indicator, Content Type, Response Topic,
Correlation Data and User Properties (in order) as it received them; Message
Expiry (area 24), Topic Alias (25) and Subscription Identifier (28) are the
ones it changes.
"""

from __future__ import annotations

from midge.conformance.harness import NotApplicable, RawClient, check
from midge.conformance.target import Target
from midge.conformance.v5 import expect_properties, scenario5
from midge.protocol.packets import Disconnect, PubAck, Publish
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode

USER_PROPERTIES = (("z", "1"), ("a", "2"), ("z", "3"), ("m", ""))
"""Out of alphabetical order, with a repeated name and an empty value: all must survive."""


def _application_properties(target: Target) -> Properties:
    return Properties(
        payload_format_indicator=1,
        content_type="application/json; charset=utf-8",
        response_topic=target.topic("reply"),
        correlation_data=b"\x00\xffid-7",
        user_properties=USER_PROPERTIES,
    )


def _forwarded(client: RawClient, publish: Publish, sent: Properties) -> None:
    """`publish` carries the application properties of `sent`, unchanged."""
    expect_properties(
        client,
        publish,
        payload_format_indicator=sent.payload_format_indicator,
        content_type=sent.content_type,
        response_topic=sent.response_topic,
        correlation_data=sent.correlation_data,
        user_properties=sent.user_properties,
    )


def _live(target: Target, properties: Properties) -> tuple[RawClient, Publish]:
    """A subscriber and the live message with `properties` it received."""
    topic = target.topic("props")
    subscriber = target.client("s")
    subscriber.subscribe((topic, 1))
    target.client("p").publish(topic, b"{}", qos=1, properties=properties)
    return subscriber, subscriber.expect_publish(topic, b"{}")


@scenario5(
    "31-01",
    "User Properties are forwarded unchanged and in order, repeated names included",
    rule="MQTT-3.3.2-18",
)
def user_properties_in_order(target: Target) -> None:
    subscriber, publish = _live(target, Properties(user_properties=USER_PROPERTIES))
    expect_properties(subscriber, publish, user_properties=USER_PROPERTIES)


@scenario5(
    "31-02",
    "Response Topic and Correlation Data are forwarded unchanged",
    rule="MQTT-3.3.2-15",
)
def request_response_properties(target: Target) -> None:
    sent = Properties(response_topic=target.topic("reply"), correlation_data=b"\x00\xffid")
    subscriber, publish = _live(target, sent)
    expect_properties(
        subscriber,
        publish,
        response_topic=sent.response_topic,
        correlation_data=sent.correlation_data,
    )


@scenario5(
    "31-03",
    "Content Type and Payload Format Indicator are forwarded unchanged",
    rule="MQTT-3.3.2-20",
)
def content_type_and_format(target: Target) -> None:
    sent = Properties(payload_format_indicator=1, content_type="text/plain")
    subscriber, publish = _live(target, sent)
    expect_properties(subscriber, publish, payload_format_indicator=1, content_type="text/plain")


@scenario5(
    "31-04",
    "A retained message keeps its properties for a later subscriber",
    rule="MQTT-3.3.2-17",
)
def retained_keeps_properties(target: Target) -> None:
    topic = target.topic("retained")
    sent = _application_properties(target)
    target.client("p").publish(topic, b"{}", qos=1, retain=True, properties=sent)
    late = target.client("late")
    late.subscribe((topic, 1))
    _forwarded(late, late.expect_publish(topic, b"{}", retain=True), sent)


@scenario5(
    "31-05",
    "A message queued for an offline session keeps its properties",
    rule="MQTT-3.3.2-17",
)
def queued_keeps_properties(target: Target) -> None:
    topic = target.topic("queued")
    session = Properties(session_expiry_interval=60)
    away = target.client("s", properties=session)
    away.subscribe((topic, 1))
    away.disconnect()
    sent = _application_properties(target)
    target.client("p").publish(topic, b"{}", qos=1, properties=sent)
    resumed = target.client("s", clean_session=False, session_present=True, properties=session)
    _forwarded(resumed, resumed.expect_publish(topic, b"{}", qos=1), sent)


@scenario5(
    "31-06",
    "Payload Format Indicator 1 with invalid UTF-8: a validating broker answers 0x99",
    rule="§3.3.2.3.2",
)
def invalid_utf8_payload(target: Target) -> None:
    topic = target.topic("utf8")
    watcher = target.client("w")
    watcher.subscribe((topic, 1))
    publisher = target.client("p")
    packet_id = publisher.new_packet_id()
    publisher.send(
        Publish(
            topic,
            b"\xff\xfe",
            1,
            packet_id=packet_id,
            properties=Properties(payload_format_indicator=1),
        )
    )
    answer = publisher.receive(waiting_for="PUBACK 0x99 or DISCONNECT 0x99")
    if isinstance(answer, PubAck) and answer.reason_code == 0:
        raise NotApplicable("the broker does not validate payloads (the spec says it MAY)")
    check(
        isinstance(answer, PubAck | Disconnect)
        and answer.reason_code == ReasonCode.PAYLOAD_FORMAT_INVALID,
        f"p: {answer} for an invalid UTF-8 payload, expected reason 0x99",
    )
    watcher.expect_nothing()
