"""The will message: when it is published, with what QoS and retain flag."""

from __future__ import annotations

import pytest

from midge.message import Message
from midge.protocol.packets import Connect, Publish, SubAck, Will


@pytest.fixture
def watcher(harness):
    """A client subscribed to every will topic at QoS 2."""
    client = harness.connect("watcher")
    client.subscribed(("wills/#", 2))
    return client


def test_will_published_when_the_network_connection_is_lost(harness, watcher):
    """[MQTT-3.1.2-8] the will is published when the connection closes without DISCONNECT."""
    client = harness.connect("c1", will=Will("wills/c1", b"bye", 1))
    client.drop()
    assert watcher.received() == [Publish("wills/c1", b"bye", 1, packet_id=1)]
    assert harness.broker.retained.count == 0  # [MQTT-3.1.2-16] will retain 0


@pytest.mark.parametrize(
    "garbage",
    [b"\x00", b"\xf0\x00", b"\x60\x02\x00\x01", b"\x30\x03\x00\x01+"],
    ids=["type-0", "type-15", "pubrel-flags", "wildcard-topic"],
)
def test_will_published_on_protocol_violation(harness, watcher, garbage):
    """[MQTT-4.8.0-1] a violation closes the connection, which publishes the will."""
    client = harness.connect("c1", will=Will("wills/c1", b"bye", 0))
    client.send(garbage)
    assert client.closed
    assert client.raw() == b""
    assert watcher.received() == [Publish("wills/c1", b"bye", 0)]
    assert harness.broker.stats.protocol_violations == 1


def test_will_published_on_second_connect(harness, watcher):
    """[MQTT-3.1.0-2] a second CONNECT is a violation: close and publish the will."""
    client = harness.connect("c1", will=Will("wills/c1", b"bye", 0))
    client.send(Connect("c1"))
    assert client.closed
    assert watcher.received() == [Publish("wills/c1", b"bye", 0)]


def test_will_published_on_keep_alive_timeout(harness, watcher):
    """[MQTT-3.1.2-8, 3.1.2-24] a keep-alive timeout publishes the will."""
    client = harness.connect("c1", keep_alive=5, will=Will("wills/c1", b"late", 2))
    harness.fire(7.4)
    assert watcher.received() == []
    harness.fire(7.6)
    assert client.closed
    assert watcher.received() == [Publish("wills/c1", b"late", 2, packet_id=1)]


def test_will_with_retain_is_stored_as_retained(harness, watcher):
    """[MQTT-3.1.2-17] will retain 1: published as a retained message.

    Existing subscribers get it with retain 0 [MQTT-3.3.1-9]; new ones with retain 1.
    """
    client = harness.connect("c1", will=Will("wills/c1", b"bye", 2, True))
    client.drop()
    assert watcher.received() == [Publish("wills/c1", b"bye", 2, packet_id=1)]
    assert harness.broker.retained.get("wills/c1") == Message("wills/c1", b"bye", 2, True)
    late = harness.connect("late")
    assert late.subscribe(("wills/+", 1)) == [
        SubAck(1, (1,)),
        Publish("wills/c1", b"bye", 1, retain=True, packet_id=1),
    ]


def test_will_qos_is_capped_by_the_subscription(harness):
    """[MQTT-3.8.4-6] a will is delivered at min(will QoS, granted QoS)."""
    low = harness.connect("low")
    low.subscribed("wills/c1")
    client = harness.connect("c1", will=Will("wills/c1", b"bye", 2))
    client.drop()
    assert low.received() == [Publish("wills/c1", b"bye", 0)]


def test_no_will_after_disconnect(harness, watcher):
    """[MQTT-3.1.2-10, 3.14.4-3] DISCONNECT deletes the will: nothing is published."""
    client = harness.connect("c1", will=Will("wills/c1", b"bye", 1, True))
    client.disconnect()
    assert client.closed
    client.drop()  # the socket closing afterwards changes nothing
    assert watcher.received() == []
    assert harness.broker.retained.count == 0
    assert harness.broker.stats.messages_received == 0


def test_will_published_only_once(harness, watcher):
    """[MQTT-3.1.2-10] once published, the will is removed from the session."""
    client = harness.connect("c1", will=Will("wills/c1", b"bye", 0))
    client.send(b"\x00")
    client.drop()
    harness.fire(100)
    assert watcher.received() == [Publish("wills/c1", b"bye", 0)]


def test_broker_shutdown_does_not_publish_wills(harness, watcher):
    """close_all (shutdown) closes every socket and publishes no will."""
    client = harness.connect("c1", will=Will("wills/c1", b"bye", 0))
    harness.broker.close_all()
    assert client.closed
    assert watcher.closed
    assert watcher.received() == []


def test_will_cannot_publish_to_sys(harness):
    """Clients cannot publish to $SYS (handlers._route) — neither may their will.

    [MQTT-4.7.2-1] reserves $-topics for the server; the broker ignores a client's
    PUBLISH to $SYS/..., and a will is a message published on the client's behalf.
    """
    sys_watcher = harness.connect("sys")
    sys_watcher.subscribed(("$SYS/#", 0))
    client = harness.connect("c1", will=Will("$SYS/broker/uptime", b"forged", 0, True))
    client.drop()
    assert sys_watcher.received() == []
    assert harness.broker.retained.count == 0


def test_client_publish_to_sys_is_not_delivered_for_contrast(harness):
    """The PUBLISH path does drop $SYS (what the will test above expects of wills)."""
    sys_watcher = harness.connect("sys")
    sys_watcher.subscribed(("$SYS/#", 0))
    client = harness.connect("c1")
    client.published("$SYS/broker/uptime", b"forged", 0, retain=True)
    assert sys_watcher.received() == []
    assert harness.broker.retained.count == 0
