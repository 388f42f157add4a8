"""The bridge's splice on its own (bridge/splice.py): packets in, packets out, no I/O.

What must hold: nothing is acknowledged on one side before the other side
acknowledged it, a message keeps its packet id across, topics are mapped by
the rules, what the local broker cannot take at once waits unacknowledged,
and what belonged to one hop (subscription ids, topic alias) stays there.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from midge.bridge.config import BridgeConfig, TopicRule
from midge.bridge.splice import Splice
from midge.protocol.packets import (
    RETAIN_SEND_IF_NEW,
    ConnAck,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscription,
)
from midge.protocol.properties import Properties

CONFIG = BridgeConfig(
    name="cloud",
    addresses=("127.0.0.1:1883",),
    topics=(
        TopicRule("sensors/#", "out", 2, "", "site1/"),
        TopicRule("cmd/#", "in", 2, "from-cloud/", ""),
        TopicRule("both/#", "both", 1),
    ),
)


def connected(config: BridgeConfig = CONFIG, local_room: int = 100) -> Splice:
    splice = Splice(config, private=True)
    splice.remote_connected(ConnAck(0))
    splice.local_connected(ConnAck(0, properties=Properties(receive_maximum=local_room)))
    return splice


def test_outgoing_qos2_flow_is_relayed_packet_id_for_packet_id() -> None:
    splice = connected()
    splice.from_local(Publish("sensors/t", b"x", 2, packet_id=7))
    assert splice.to_remote == [Publish("site1/sensors/t", b"x", 2, packet_id=7)]
    assert splice.to_local == []  # no PUBREC here before the remote's
    splice.to_remote.clear()
    splice.from_remote(PubRec(7))
    assert splice.to_local == [PubRec(7)]
    splice.from_local(PubRel(7))
    assert splice.to_remote == [PubRel(7)]
    splice.from_remote(PubComp(7))
    assert splice.to_local == [PubRec(7), PubComp(7)]
    assert splice.figures.sent == 1


def test_incoming_qos1_is_acknowledged_to_the_remote_only_after_the_local_broker() -> None:
    splice = connected()
    splice.from_remote(Publish("cmd/reboot", b"now", 1, packet_id=3))
    assert splice.to_local == [Publish("from-cloud/cmd/reboot", b"now", 1, packet_id=3)]
    assert splice.to_remote == []
    splice.from_local(PubAck(3))
    assert splice.to_remote == [PubAck(3)]
    assert splice.figures.received == 1


def test_what_the_local_broker_cannot_take_at_once_waits_unacknowledged() -> None:
    splice = connected(local_room=2)
    for packet_id in (1, 2, 3):
        splice.from_remote(Publish("cmd/x", b"%d" % packet_id, 1, packet_id=packet_id))
    assert [packet.packet_id for packet in splice.to_local] == [1, 2]  # type: ignore[attr-defined]
    splice.to_local.clear()
    splice.from_local(PubAck(1))
    assert splice.to_local == [Publish("from-cloud/cmd/x", b"3", 1, packet_id=3)]
    assert splice.to_remote == [PubAck(1)]


def test_qos0_passes_at_once_in_both_directions() -> None:
    splice = connected()
    splice.from_remote(Publish("cmd/x", b"r", 0))
    splice.from_local(Publish("sensors/y", b"l", 0))
    assert splice.to_local == [Publish("from-cloud/cmd/x", b"r", 0)]
    assert splice.to_remote == [Publish("site1/sensors/y", b"l", 0)]


@pytest.mark.parametrize(("outgoing_retain", "expected"), [(True, True), (False, False)])
def test_outgoing_retain(outgoing_retain: bool, expected: bool) -> None:
    splice = connected(replace(CONFIG, outgoing_retain=outgoing_retain))
    splice.from_local(Publish("sensors/t", b"x", 1, retain=True, packet_id=1))
    assert splice.to_remote == [Publish("site1/sensors/t", b"x", 1, expected, packet_id=1)]


def test_a_message_no_rule_takes_is_acknowledged_and_counted() -> None:
    splice = connected()
    splice.from_local(Publish("elsewhere/t", b"x", 1, packet_id=4))
    splice.from_remote(Publish("nowhere/t", b"y", 2, packet_id=5))
    assert splice.to_local == [PubAck(4)]
    assert splice.to_remote == [PubRec(5)]
    assert splice.figures.unrouted == 2


def test_refusals_end_the_flow_and_are_counted() -> None:
    splice = connected()
    splice.from_local(Publish("sensors/t", b"x", 1, packet_id=1))
    splice.from_remote(PubAck(1, reason_code=0x87))  # not authorized at the remote
    assert splice.to_local == [PubAck(1)]
    assert splice.figures.refused == 1


def test_hop_properties_stay_behind_and_3_1_1_gets_none() -> None:
    properties = Properties(
        user_properties=(("k", "v"),), subscription_identifiers=(4,), content_type="text/plain"
    )
    v5 = connected(replace(CONFIG, protocol="5"))
    v5.from_local(Publish("sensors/t", b"x", 0, properties=properties))
    [sent] = v5.to_remote
    assert isinstance(sent, Publish) and sent.properties is not None
    assert sent.properties.subscription_identifiers == ()
    assert (sent.properties.user_properties, sent.properties.content_type) == (
        (("k", "v"),),
        "text/plain",
    )
    v311 = connected()
    v311.from_local(Publish("sensors/t", b"x", 0, properties=properties))
    assert v311.to_remote == [Publish("site1/sensors/t", b"x", 0)]


def test_the_window_is_the_smaller_of_max_inflight_and_the_remote_receive_maximum() -> None:
    splice = Splice(replace(CONFIG, max_inflight=50), private=False)
    splice.remote_connected(ConnAck(0, properties=Properties(receive_maximum=10)))
    connect = splice.local_connect()
    assert connect.properties is not None and connect.properties.receive_maximum == 10
    assert (connect.client_id, connect.clean_session) == ("$bridge/cloud", False)


def test_subscriptions_no_local_and_retain_as_published_on_5_0() -> None:
    splice = Splice(replace(CONFIG, protocol="5"), private=True)
    local = splice.local_subscribe()
    remote = splice.remote_subscribe()
    assert local is not None and remote is not None
    assert local.subscriptions == (
        Subscription("sensors/#", 2, True, True, RETAIN_SEND_IF_NEW),
        Subscription("both/#", 1, True, True, RETAIN_SEND_IF_NEW),
    )
    assert remote.subscriptions == (
        Subscription("cmd/#", 2, True, True, RETAIN_SEND_IF_NEW),
        Subscription("both/#", 1, True, True, RETAIN_SEND_IF_NEW),
    )


def test_a_3_1_1_remote_is_told_it_is_a_bridge_unless_try_private_is_off() -> None:
    assert Splice(CONFIG, private=True).remote_connect().bridge
    assert not Splice(CONFIG, private=False).remote_connect().bridge
    remote = Splice(CONFIG, private=True).remote_subscribe()
    assert remote is not None
    assert remote.subscriptions[0] == Subscription("cmd/#", 2)


def test_a_message_above_the_remote_maximum_packet_size_ends_here() -> None:
    splice = Splice(replace(CONFIG, protocol="5"), private=False)
    splice.remote_connected(ConnAck(0, properties=Properties(maximum_packet_size=64)))
    splice.local_connected(ConnAck(0))
    splice.from_local(Publish("sensors/big", b"x" * 100, 1, packet_id=9))
    splice.from_local(Publish("sensors/small", b"x", 1, packet_id=10))
    assert splice.to_local == [PubAck(9)]
    assert [packet.packet_id for packet in splice.to_remote] == [10]  # type: ignore[attr-defined]
    assert (splice.figures.too_large, splice.figures.sent) == (1, 1)


def test_the_state_at_the_remote_with_a_will() -> None:
    config = replace(CONFIG, client_id="edge.cloud", notifications_remote=True)
    splice = Splice(config, private=True)
    will = splice.remote_connect().will
    assert will is not None
    topic = "$SYS/broker/connection/edge.cloud/state"
    assert (will.topic, will.payload, will.qos, will.retain) == (topic, b"0", 1, True)
    assert splice.remote_state(True) == [Publish(topic, b"1", 0, True)]
    local_only = Splice(CONFIG, private=True)
    assert local_only.remote_connect().will is None
    assert local_only.remote_state(True) == []


def test_a_topic_at_the_level_of_a_prefix_is_not_mapped_to_an_empty_one() -> None:
    # "hq/#" matches "hq" itself [MQTT-4.7.1-2]: stripping "hq/" would leave "".
    config = replace(CONFIG, topics=(TopicRule("#", "in", 1, "", "hq/"),))
    splice = connected(config)
    splice.from_remote(Publish("hq", b"x", 1, packet_id=1))
    splice.from_remote(Publish("hq/a", b"y", 1, packet_id=2))
    assert splice.to_remote == [PubAck(1)]
    assert splice.to_local == [Publish("a", b"y", 1, packet_id=2)]
    assert splice.figures.unrouted == 1
