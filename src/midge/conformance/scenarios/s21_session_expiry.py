"""Area 21 (MQTT 5.0): Session Expiry Interval replaces Clean Session (3.1.2.11.2, 3.14.2.2.2).

A session is observed from outside by CONNACK's session present flag and by
the QoS 1 message queued for it while its client was away.
"""

from __future__ import annotations

import time

from midge.conformance.harness import RawClient, check
from midge.conformance.target import Target
from midge.conformance.v5 import expect_disconnect, scenario5
from midge.protocol.packets import Disconnect, Subscription
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode

NEVER_EXPIRES = 0xFFFF_FFFF
SHORT_EXPIRY = 1
EXPIRY_WAIT = SHORT_EXPIRY + 1.5
"""Seconds after which a session with a 1 s expiry must be gone (slack for timer checks)."""


def _leave_session(target: Target, expiry: int | None, disconnect_expiry: int | None = None) -> str:
    """A client subscribes (QoS 1) with `expiry`, disconnects (maybe changing it); its topic."""
    topic = target.topic("queued")
    connect = None if expiry is None else Properties(session_expiry_interval=expiry)
    client = target.client("s", properties=connect)
    client.subscribe((topic, 1))
    changed = None
    if disconnect_expiry is not None:
        changed = Properties(session_expiry_interval=disconnect_expiry)
    client.disconnect(properties=changed)
    return topic


def _resume(target: Target, session_present: bool) -> RawClient:
    """Reconnect with Clean Start 0 (and a long expiry, so cleanup finds the session)."""
    return target.client(
        "s",
        clean_session=False,
        session_present=session_present,
        properties=Properties(session_expiry_interval=60),
    )


def _publish_while_away(target: Target, topic: str) -> None:
    target.client("p").publish(topic, b"while away", qos=1)


@scenario5(
    "21-01",
    "No Session Expiry Interval (0): the session ends with the connection",
    rule="MQTT-3.1.2-23",
)
def expiry_absent(target: Target) -> None:
    topic = _leave_session(target, None)
    _publish_while_away(target, topic)
    _resume(target, session_present=False).expect_nothing()


@scenario5(
    "21-02",
    "Session Expiry 60: the session and a QoS 1 message queued for it survive a reconnect",
    rule="MQTT-3.1.2-23",
)
def expiry_kept(target: Target) -> None:
    topic = _leave_session(target, 60)
    _publish_while_away(target, topic)
    _resume(target, session_present=True).expect_publish(topic, b"while away", qos=1)


@scenario5(
    "21-03",
    "Session Expiry 0xFFFFFFFF: the session does not expire",
    rule="MQTT-3.1.2-23",
)
def expiry_never(target: Target) -> None:
    topic = _leave_session(target, NEVER_EXPIRES)
    _publish_while_away(target, topic)
    _resume(target, session_present=True).expect_publish(topic, b"while away", qos=1)


@scenario5(
    "21-04",
    "Session Expiry 1 s: after 2.5 s the session is gone (session present 0)",
    rule="MQTT-3.1.2-23",
)
def expiry_elapsed(target: Target) -> None:
    topic = _leave_session(target, SHORT_EXPIRY)
    _publish_while_away(target, topic)
    time.sleep(EXPIRY_WAIT)
    _resume(target, session_present=False).expect_nothing()


@scenario5(
    "21-05",
    "Clean Start 1 discards a kept session: session present 0, its subscription gone",
    rule="MQTT-3.1.2-4",
)
def clean_start_discards(target: Target) -> None:
    topic = _leave_session(target, 60)
    client = target.client("s", session_present=False, properties=Properties())
    _publish_while_away(target, topic)
    client.expect_nothing()


@scenario5(
    "21-06",
    "DISCONNECT with Session Expiry 0 ends a session that had 60",
    rule="§3.14.2.2.2",
)
def disconnect_ends_session(target: Target) -> None:
    topic = _leave_session(target, 60, disconnect_expiry=0)
    _publish_while_away(target, topic)
    _resume(target, session_present=False).expect_nothing()


@scenario5(
    "21-07",
    "DISCONNECT can raise a non-zero Session Expiry (1 s to 60 s): the session outlives 1 s",
    rule="§3.14.2.2.2",
)
def disconnect_extends_session(target: Target) -> None:
    topic = _leave_session(target, SHORT_EXPIRY, disconnect_expiry=60)
    _publish_while_away(target, topic)
    time.sleep(EXPIRY_WAIT)
    _resume(target, session_present=True).expect_publish(topic, b"while away", qos=1)


@scenario5(
    "21-08",
    "DISCONNECT setting a non-zero Session Expiry after 0 is a Protocol Error (0x82); no session",
    rule="§3.14.2.2.2",
)
def disconnect_cannot_start_expiry(target: Target) -> None:
    topic = target.topic("queued")
    client = target.client("s")
    client.subscribe((topic, 1))
    client.session_expiry = 60  # cleanup removes the session, should the broker keep one
    client.send(Disconnect(0, Properties(session_expiry_interval=60)))
    expect_disconnect(client, ReasonCode.PROTOCOL_ERROR)
    _publish_while_away(target, topic)
    _resume(target, session_present=False).expect_nothing()


@scenario5(
    "21-09",
    "A resumed session keeps its subscription options (No Local) and Subscription Identifier",
    rule="MQTT-3.1.2-5",
)
def resumed_subscription_options(target: Target) -> None:
    topic = target.topic("opts")
    client = target.client("s", properties=Properties(session_expiry_interval=60))
    client.subscribe_with(
        Subscription(topic, 1, no_local=True), properties=Properties(subscription_identifiers=(7,))
    )
    client.disconnect()
    resumed = _resume(target, session_present=True)
    resumed.publish(topic, b"own", qos=1)
    resumed.expect_nothing()
    _publish_while_away(target, topic)
    publish = resumed.expect_publish(topic, b"while away", qos=1)
    ids = publish.properties.subscription_identifiers if publish.properties else ()
    check(ids == (7,), f"s: Subscription Identifiers {ids}, expected (7,)")
