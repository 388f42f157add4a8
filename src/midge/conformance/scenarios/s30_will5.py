"""Area 30 (MQTT 5.0): Will Delay Interval, will properties, DISCONNECT 0x04 (3.1.2.5, 3.1.3.2).

The will of a 5.0 client waits for its Will Delay Interval or the end of its
session, whichever comes first [MQTT-3.1.2-8]; a reconnect within the delay
cancels it [MQTT-3.1.3-9].
"""

from __future__ import annotations

from midge.conformance.harness import RawClient
from midge.conformance.target import Target
from midge.conformance.v5 import expect_properties, scenario5
from midge.protocol.packets import Will
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode

DELAY = 1
NOT_BEFORE = 0.6
"""Seconds in which a will with a 1 s delay must not yet appear."""
DUE_WITHIN = 3.0
"""Seconds after that in which it must (a broker may check its timers once a second)."""


def _watcher(target: Target, topic: str) -> RawClient:
    watcher = target.client("w")
    watcher.subscribe((topic, 1))
    return watcher


def _will_client(
    target: Target, topic: str, delay: int | None, session_expiry: int, payload: bytes = b"will"
) -> RawClient:
    will = Will(topic, payload, qos=1, properties=Properties(will_delay_interval=delay))
    connect = Properties(session_expiry_interval=session_expiry)
    return target.client("c", will=will, properties=connect)


@scenario5(
    "30-01",
    "A will with Will Delay 1 s is published after the delay, not at once",
    rule="MQTT-3.1.2-8",
)
def will_after_delay(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    _will_client(target, topic, DELAY, session_expiry=60).close()
    watcher.expect_nothing(NOT_BEFORE)
    watcher.expect_publish(topic, b"will", timeout=DUE_WITHIN)


@scenario5(
    "30-02",
    "A reconnect within the Will Delay Interval cancels the will",
    rule="MQTT-3.1.3-9",
)
def reconnect_cancels_will(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    _will_client(target, topic, 5, session_expiry=60).close()
    target.client(
        "c",
        clean_session=False,
        session_present=True,
        properties=Properties(session_expiry_interval=60),
    )
    watcher.expect_nothing(1.5)


@scenario5(
    "30-03",
    "A session that ends before the Will Delay (expiry 1 s, delay 60 s) publishes the will then",
    rule="MQTT-3.1.2-8",
)
def session_end_publishes_will(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    _will_client(target, topic, 60, session_expiry=DELAY).close()
    watcher.expect_publish(topic, b"will", timeout=DELAY + DUE_WITHIN)


@scenario5(
    "30-04",
    "Will properties reach the subscriber: content type, response topic, correlation data, ...",
    rule="MQTT-3.1.3-10",
)
def will_properties_forwarded(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    sent = Properties(
        payload_format_indicator=1,
        content_type="text/plain",
        response_topic=target.topic("reply"),
        correlation_data=b"\x00\x01corr",
        user_properties=(("b", "2"), ("a", "1"), ("b", "3")),
        message_expiry_interval=60,
    )
    target.client("c", will=Will(topic, b"will", qos=1, properties=sent)).close()
    publish = watcher.expect_publish(topic, b"will")
    expect_properties(
        watcher,
        publish,
        payload_format_indicator=1,
        content_type="text/plain",
        response_topic=target.topic("reply"),
        correlation_data=b"\x00\x01corr",
        user_properties=(("b", "2"), ("a", "1"), ("b", "3")),
    )


@scenario5(
    "30-05",
    "DISCONNECT 0x04 (Disconnect with Will Message) publishes the will",
    rule="§3.14.2.1",
)
def disconnect_with_will(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    client = target.client("c", will=Will(topic, b"asked for", qos=1))
    client.disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE)
    watcher.expect_publish(topic, b"asked for")


@scenario5(
    "30-06",
    "DISCONNECT 0x00 discards the will, also one with a Will Delay",
    rule="MQTT-3.14.4-3",
)
def normal_disconnect_discards_will(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    _will_client(target, topic, DELAY, session_expiry=60).disconnect()
    watcher.expect_nothing(DELAY + 1.0)


@scenario5(
    "30-07",
    "A will without Will Delay is published at once when the connection drops",
    rule="MQTT-3.1.2-8",
)
def will_without_delay(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    _will_client(target, topic, None, session_expiry=60).close()
    watcher.expect_publish(topic, b"will", timeout=1.0)
