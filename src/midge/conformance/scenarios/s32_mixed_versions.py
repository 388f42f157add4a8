"""Area 32 (MQTT 5.0): 3.1.1 and 5.0 clients on one broker.

A 3.1.1 receiver gets a 3.1.1 PUBLISH (no properties: they would corrupt
the packet it decodes), and a 3.1.1 publisher's message reaches 5.0
subscribers. The spec has no rule on mixing versions; the packets each
client decodes must follow its own version (2.2, 3.3).
"""

from __future__ import annotations

from midge.conformance.target import Target
from midge.conformance.v5 import expect_properties, scenario5
from midge.protocol.packets import PROTOCOL_MQTT_3_1_1, Will
from midge.protocol.properties import Properties

V311 = PROTOCOL_MQTT_3_1_1


@scenario5(
    "32-01",
    "A 5.0 message with properties reaches a 3.1.1 subscriber as a plain 3.1.1 PUBLISH",
    rule="§3.3.2.3",
)
def five_to_three(target: Target) -> None:
    topic = target.topic("mixed")
    old = target.client("old", version=V311)
    old.subscribe((topic, 1))
    sent = Properties(
        content_type="text/plain", user_properties=(("k", "v"),), message_expiry_interval=60
    )
    target.client("new").publish(topic, b"payload", qos=1, properties=sent)
    old.expect_publish(topic, b"payload", qos=1)


@scenario5(
    "32-02",
    "A 3.1.1 message reaches a 5.0 subscriber, without properties it never had",
    rule="§3.3.2.3",
)
def three_to_five(target: Target) -> None:
    topic = target.topic("mixed")
    new = target.client("new")
    new.subscribe((topic, 2))
    target.client("old", version=V311).publish(topic, b"from 3.1.1", qos=2)
    publish = new.expect_publish(topic, b"from 3.1.1", qos=2)
    expect_properties(new, publish, user_properties=(), content_type=None, response_topic=None)


@scenario5(
    "32-03",
    "A 5.0 will with properties reaches a 3.1.1 subscriber",
    rule="§3.3.2.3",
)
def five_will_to_three(target: Target) -> None:
    topic = target.topic("will")
    old = target.client("old", version=V311)
    old.subscribe((topic, 1))
    will = Will(topic, b"gone", qos=1, properties=Properties(user_properties=(("k", "v"),)))
    target.client("new", will=will).close()
    old.expect_publish(topic, b"gone", qos=1)


@scenario5(
    "32-04",
    "A retained 5.0 message with properties reaches a later 3.1.1 subscriber",
    rule="§3.3.2.3",
)
def retained_five_to_three(target: Target) -> None:
    topic = target.topic("retained")
    sent = Properties(content_type="text/plain", correlation_data=b"c")
    target.client("new").publish(topic, b"kept", qos=1, retain=True, properties=sent)
    old = target.client("old", version=V311)
    old.subscribe((topic, 1))
    old.expect_publish(topic, b"kept", qos=1, retain=True)
