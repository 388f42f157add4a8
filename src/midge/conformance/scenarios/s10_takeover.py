"""Area 10: a second connection with the same client id takes the session over (3.1.4)."""

from __future__ import annotations

from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.packets import Will


@scenario(
    "10-01",
    "A second connection with the same client id closes the first one",
    rule="MQTT-3.1.4-2",
)
def takeover_closes_first(target: Target) -> None:
    first = target.client("c")
    second = target.client("c")
    first.expect_closed()
    second.still_connected()


@scenario("10-02", "The will of a taken-over connection is published", rule="MQTT-3.1.4-2")
def takeover_publishes_will(target: Target) -> None:
    topic = target.topic("will")
    watcher = target.client("w")
    watcher.subscribe((topic, 1))
    first = target.client("c", will=Will(topic, b"taken over", qos=1))
    target.client("c")
    first.expect_closed()
    watcher.expect_publish(topic, b"taken over", qos=1)


@scenario(
    "10-03",
    "A clean-session-0 takeover resumes the session: present 1, subscriptions kept",
    rule="MQTT-3.1.2-4",
)
def takeover_keeps_session(target: Target) -> None:
    topic = target.topic()
    first = target.client("c", clean_session=False)
    first.subscribe((topic, 1))
    second = target.client("c", clean_session=False, session_present=True)
    first.expect_closed()
    target.client("pub").publish(topic, b"to the new connection", qos=1)
    second.expect_publish(topic, b"to the new connection", qos=1)
