"""Area 24 (MQTT 5.0): Message Expiry Interval (3.3.2.3.3).

An expired message is never delivered, from a session's queue or from the
retained store [MQTT-3.3.2-5]; a message forwarded later carries the interval
minus the time it waited [MQTT-3.3.2-6].
"""

from __future__ import annotations

import time

from midge.conformance.harness import RawClient, check
from midge.conformance.target import Target
from midge.conformance.v5 import properties_of, scenario5
from midge.protocol.packets import Publish
from midge.protocol.properties import Properties

SHORT = 1
EXPIRED_AFTER = SHORT + 1.5
LONG = 60
WAIT = 1.5
"""Seconds a message waits in the broker before the remaining interval is checked."""


def _expiring(seconds: int) -> Properties:
    return Properties(message_expiry_interval=seconds)


def _away_session(target: Target, topic: str) -> None:
    """A session subscribed to `topic` at QoS 1 whose client is disconnected."""
    client = target.client("s", properties=Properties(session_expiry_interval=60))
    client.subscribe((topic, 1))
    client.disconnect()


def _resume(target: Target) -> RawClient:
    return target.client(
        "s",
        clean_session=False,
        session_present=True,
        properties=Properties(session_expiry_interval=60),
    )


def _remaining(client: RawClient, publish: Publish) -> int:
    interval = properties_of(publish).message_expiry_interval
    check(interval is not None, f"{client.name}: PUBLISH without its Message Expiry Interval")
    assert interval is not None
    return interval


@scenario5(
    "24-01",
    "A live message with Message Expiry 60 is forwarded with an interval of at most 60",
    rule="MQTT-3.3.2-6",
)
def live_forwarded_with_interval(target: Target) -> None:
    topic = target.topic("live")
    subscriber = target.client("s")
    subscriber.subscribe((topic, 1))
    target.client("p").publish(topic, b"m", qos=1, properties=_expiring(LONG))
    remaining = _remaining(subscriber, subscriber.expect_publish(topic, b"m"))
    check(0 < remaining <= LONG, f"s: Message Expiry Interval {remaining}, sent {LONG}")


@scenario5(
    "24-02",
    "A message without Message Expiry is forwarded without one",
    rule="§3.3.2.3.3",
)
def no_expiry_forwarded_without(target: Target) -> None:
    topic = target.topic("live")
    subscriber = target.client("s")
    subscriber.subscribe((topic, 0))
    target.client("p").publish(topic, b"m")
    publish = subscriber.expect_publish(topic, b"m")
    interval = properties_of(publish).message_expiry_interval
    check(interval is None, f"s: Message Expiry Interval {interval} on a message without one")


@scenario5(
    "24-03",
    "A queued message whose 1 s expiry passed is not delivered to the resumed session",
    rule="MQTT-3.3.2-5",
)
def queued_message_expires(target: Target) -> None:
    topic = target.topic("queued")
    _away_session(target, topic)
    publisher = target.client("p")
    publisher.publish(topic, b"expires", qos=1, properties=_expiring(SHORT))
    publisher.publish(topic, b"stays", qos=1)
    time.sleep(EXPIRED_AFTER)
    resumed = _resume(target)
    resumed.expect_publish(topic, b"stays", qos=1)
    resumed.expect_nothing()


@scenario5(
    "24-04",
    "A queued message is delivered with the interval reduced by the time it waited",
    rule="MQTT-3.3.2-6",
)
def queued_message_interval_reduced(target: Target) -> None:
    topic = target.topic("queued")
    _away_session(target, topic)
    target.client("p").publish(topic, b"m", qos=1, properties=_expiring(LONG))
    time.sleep(WAIT)
    resumed = _resume(target)
    remaining = _remaining(resumed, resumed.expect_publish(topic, b"m", qos=1))
    check(
        0 < remaining < LONG, f"s: Message Expiry Interval {remaining} after {WAIT}s, sent {LONG}"
    )


@scenario5(
    "24-05",
    "A retained message whose 1 s expiry passed is not sent to a new subscriber",
    rule="MQTT-3.3.2-5",
)
def retained_message_expires(target: Target) -> None:
    topic = target.topic("retained")
    target.client("p").publish(topic, b"expires", qos=1, retain=True, properties=_expiring(SHORT))
    time.sleep(EXPIRED_AFTER)
    late = target.client("late")
    late.subscribe((topic, 1))
    late.expect_nothing()


@scenario5(
    "24-06",
    "A retained message is sent with the interval reduced by the time it was stored",
    rule="MQTT-3.3.2-6",
)
def retained_interval_reduced(target: Target) -> None:
    topic = target.topic("retained")
    target.client("p").publish(topic, b"kept", qos=1, retain=True, properties=_expiring(LONG))
    time.sleep(WAIT)
    late = target.client("late")
    late.subscribe((topic, 1))
    remaining = _remaining(late, late.expect_publish(topic, b"kept", retain=True))
    check(0 < remaining < LONG, f"late: Message Expiry Interval {remaining} after {WAIT}s")
