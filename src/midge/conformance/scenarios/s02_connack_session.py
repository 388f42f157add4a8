"""Area 02: clean session and the CONNACK session present flag (sections 3.1.2.4, 3.2.2.2)."""

from __future__ import annotations

from midge.conformance.registry import scenario
from midge.conformance.target import Target


@scenario("02-01", "Clean session 1 is acknowledged with session present 0", rule="MQTT-3.2.2-1")
def clean_session_not_present(target: Target) -> None:
    target.client("c", clean_session=True, session_present=False)


@scenario(
    "02-02",
    "Clean session 0 without a stored session is acknowledged with session present 0",
    rule="MQTT-3.2.2-3",
)
def new_persistent_session(target: Target) -> None:
    target.client("c", clean_session=False, session_present=False)


@scenario(
    "02-03",
    "Clean session 0 with a stored session is acknowledged with session present 1",
    rule="MQTT-3.2.2-2",
)
def resumed_session(target: Target) -> None:
    target.client("c", clean_session=False, session_present=False).disconnect()
    target.client("c", clean_session=False, session_present=True)


@scenario(
    "02-04",
    "Clean session 1 discards a stored session: a later clean session 0 gets present 0",
    rule="MQTT-3.1.2-6",
)
def clean_discards_session(target: Target) -> None:
    target.client("c", clean_session=False, session_present=False).disconnect()
    target.client("c", clean_session=False, session_present=True).disconnect()
    target.client("c", clean_session=True, session_present=False).disconnect()
    target.client("c", clean_session=False, session_present=False)


@scenario(
    "02-05",
    "Subscriptions of a clean session 0 survive a reconnect without subscribing again",
    rule="MQTT-3.1.2-4",
)
def subscriptions_persist(target: Target) -> None:
    topic = target.topic()
    first = target.client("c", clean_session=False)
    first.subscribe((topic, 1))
    first.disconnect()
    again = target.client("c", clean_session=False, session_present=True)
    target.client("pub").publish(topic, b"kept", qos=1)
    again.expect_publish(topic, b"kept", qos=1)
