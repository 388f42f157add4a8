"""Area 04: the will message (sections 3.1.2.5 - 3.1.2.7, 3.14.4)."""

from __future__ import annotations

from midge.conformance.harness import RawClient, check
from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.packets import Will

KEEP_ALIVE_LIMIT = 1.5 + 1.0
"""Seconds for a keep-alive 1 s connection to expire: 1.5 periods plus slack."""


def _watcher(target: Target, topic_filter: str, qos: int = 0) -> RawClient:
    watcher = target.client("w")
    codes = watcher.subscribe((topic_filter, qos))
    check(codes == (qos,), f"w: SUBACK {codes}, expected ({qos},)")
    return watcher


@scenario(
    "04-01", "The will is published when the client's socket closes abruptly", rule="MQTT-3.1.2-8"
)
def will_on_abrupt_close(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    target.client("c", will=Will(topic, b"gone")).close()
    watcher.expect_publish(topic, b"gone", qos=0, retain=False)


@scenario(
    "04-02",
    "The will is published when keep alive (1 s) expires, within 1.5 s plus slack",
    rule="MQTT-3.1.2-8",
)
def will_on_keep_alive_timeout(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    target.client("c", keep_alive=1, will=Will(topic, b"silent"))
    watcher.expect_publish(topic, b"silent", timeout=KEEP_ALIVE_LIMIT)


@scenario(
    "04-03",
    "The will is published when the broker closes the connection for a protocol error",
    rule="MQTT-3.1.2-8",
)
def will_on_protocol_error(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    client = target.client("c", will=Will(topic, b"broken"))
    client.send(b"\x00\x00", allow_closed=True)  # reserved packet type 0
    client.expect_closed()
    watcher.expect_publish(topic, b"broken")


@scenario("04-04", "The will is not published after DISCONNECT", rule="MQTT-3.14.4-3")
def no_will_after_disconnect(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    target.client("c", will=Will(topic, b"must not appear")).disconnect()
    watcher.expect_nothing(1.0)
    target.client("control", will=Will(topic, b"control")).close()
    watcher.expect_publish(topic, b"control")  # wills do work, and this is the first


@scenario(
    "04-05",
    "Wills are published with their QoS (1 and 2) to a QoS 2 subscriber",
    rule="MQTT-3.1.2-9",
)
def will_qos(target: Target) -> None:
    watcher = _watcher(target, target.topic("will/+"), qos=2)
    for qos in (1, 2):
        topic = target.topic(f"will/{qos}")
        target.client(f"c{qos}", will=Will(topic, b"q", qos=qos)).close()
        watcher.expect_publish(topic, b"q", qos=qos)


@scenario(
    "04-06",
    "A will with retain 1 is stored as retained (live subscribers still get retain 0)",
    rule="MQTT-3.1.2-17",
)
def retained_will(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    target.client("c", will=Will(topic, b"kept", qos=1, retain=True)).close()
    watcher.expect_publish(topic, b"kept", retain=False)
    late = target.client("late")
    late.subscribe((topic, 1))
    late.expect_publish(topic, b"kept", qos=1, retain=True)


@scenario("04-07", "A will with retain 0 is not stored as retained", rule="MQTT-3.1.2-16")
def unretained_will(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    target.client("c", will=Will(topic, b"once", retain=False)).close()
    watcher.expect_publish(topic, b"once", retain=False)
    late = target.client("late")
    late.subscribe((topic, 0))
    late.expect_nothing()


@scenario(
    "04-08",
    "A DISCONNECT with reserved flags set closes the connection and keeps the will",
    rule="MQTT-3.14.1-1",
)
def malformed_disconnect(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    client = target.client("c", will=Will(topic, b"still published"))
    client.send(b"\xe1\x00")
    client.expect_closed()
    watcher.expect_publish(topic, b"still published")


@scenario(
    "04-09", "The will of a refused CONNECT (CONNACK 2) is not published", rule="MQTT-3.1.2-8"
)
def no_will_when_refused(target: Target) -> None:
    topic = target.topic("will")
    watcher = _watcher(target, topic)
    client = target.raw("c")
    connack = client.connect("", clean_session=False, will=Will(topic, b"never accepted"))
    check(connack.return_code == 2, f"c: CONNACK return code {connack.return_code}, expected 2")
    client.expect_closed()
    watcher.expect_nothing(1.0)
