"""Area 07: retained messages (section 3.3.1.3)."""

from __future__ import annotations

from midge.conformance.harness import RawClient, check, describe
from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.packets import Publish


def _late_subscriber(target: Target, topic_filter: str, qos: int = 1) -> RawClient:
    client = target.client("late")
    client.subscribe((topic_filter, qos))
    return client


@scenario(
    "07-01",
    "A retained message is sent to a new subscriber with RETAIN 1",
    rule="MQTT-3.3.1-8",
)
def retained_to_new_subscriber(target: Target) -> None:
    topic = target.topic()
    target.client("pub").publish(topic, b"retained", qos=1, retain=True)
    late = _late_subscriber(target, topic)
    late.expect_publish(topic, b"retained", qos=1, retain=True)


@scenario(
    "07-02",
    "A retained PUBLISH is forwarded to existing subscribers with RETAIN 0",
    rule="MQTT-3.3.1-9",
)
def retained_to_existing_subscriber(target: Target) -> None:
    topic = target.topic()
    sub = target.client("sub")
    sub.subscribe((topic, 1))
    target.client("pub").publish(topic, b"live", qos=1, retain=True)
    sub.expect_publish(topic, b"live", qos=1, retain=False)


@scenario("07-03", "Only the last retained message of a topic is kept", rule="MQTT-3.3.1-5")
def last_retained_wins(target: Target) -> None:
    topic = target.topic()
    pub = target.client("pub")
    for payload in (b"first", b"second", b"third"):
        pub.publish(topic, payload, qos=1, retain=True)
    late = _late_subscriber(target, topic)
    late.expect_publish(topic, b"third", retain=True)
    late.expect_nothing()


@scenario(
    "07-04",
    "A retained PUBLISH with an empty payload is forwarded and deletes the retained message",
    rule="MQTT-3.3.1-10",
)
def empty_payload_deletes(target: Target) -> None:
    topic = target.topic()
    pub = target.client("pub")
    pub.publish(topic, b"soon gone", qos=1, retain=True)
    sub = target.client("sub")
    sub.subscribe((topic, 1))
    sub.expect_publish(topic, b"soon gone", retain=True)
    pub.publish(topic, b"", qos=1, retain=True)
    sub.expect_publish(topic, b"", qos=1, retain=False)
    _late_subscriber(target, topic).expect_nothing()


@scenario(
    "07-05",
    "A wildcard subscription receives every matching retained message, and only those",
    rule="MQTT-3.3.1-6",
)
def retained_with_wildcard(target: Target) -> None:
    pub = target.client("pub")
    matching = {target.topic("r/a"), target.topic("r/b/c")}
    for topic in [*sorted(matching), target.topic("other/a")]:
        pub.publish(topic, topic.encode(), qos=1, retain=True)
    late = _late_subscriber(target, target.topic("r/#"))
    got = {late.expect(Publish) for _ in matching}
    check(
        {p.topic for p in got} == matching and all(p.retain for p in got),
        f"late: got {sorted((p.topic, p.retain) for p in got)}, "
        f"expected {sorted(matching)} with RETAIN 1",
    )
    late.expect_nothing()


@scenario(
    "07-06",
    "A PUBLISH with RETAIN 0 neither replaces nor removes the retained message",
    rule="MQTT-3.3.1-12",
)
def unretained_publish_keeps_retained(target: Target) -> None:
    topic = target.topic()
    pub = target.client("pub")
    pub.publish(topic, b"kept", qos=1, retain=True)
    pub.publish(topic, b"transient", qos=1, retain=False)
    late = _late_subscriber(target, topic)
    late.expect_publish(topic, b"kept", retain=True)
    late.expect_nothing()


@scenario(
    "07-07",
    "A retained message keeps its QoS: QoS 1 retained arrives at min(1, granted QoS)",
    rule="MQTT-3.3.1-5",
)
def retained_qos(target: Target) -> None:
    topic = target.topic()
    target.client("pub").publish(topic, b"qos 1", qos=1, retain=True)
    for granted, delivered in ((2, 1), (0, 0)):
        client = target.client(f"late{granted}")
        client.subscribe((topic, granted))
        client.expect_publish(topic, b"qos 1", qos=delivered, retain=True)


@scenario(
    "07-08",
    "A QoS 0 retained message replaces a QoS 1 retained message",
    rule="MQTT-3.3.1-7",
)
def qos0_replaces_retained(target: Target) -> None:
    topic = target.topic()
    pub = target.client("pub")
    pub.publish(topic, b"old", qos=1, retain=True)
    _late_subscriber(target, topic).expect_publish(topic, b"old", retain=True)
    pub.publish(topic, b"new", qos=0, retain=True)
    pub.still_connected()  # the broker has processed the QoS 0 PUBLISH
    late = target.client("late2")
    late.subscribe((topic, 1))
    stale = [p for p in late.collect(1.0) if isinstance(p, Publish) and p.payload != b"new"]
    check(not stale, f"late: got {describe(stale[0]) if stale else ''}, a replaced message")
