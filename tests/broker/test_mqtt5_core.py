"""MQTT 5.0 in the broker core, driven byte for byte (tests/sansio.py).

Each test names the rule of the 5.0 specification it checks. What a 5.0
client sees is decoded at level 5 by the real codec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from midge.broker.config import BrokerConfig
from midge.protocol.packets import (
    RETAIN_SEND_IF_NEW,
    RETAIN_SEND_NEVER,
    ConnAck,
    Disconnect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from midge.protocol.properties import Properties
from sansio import WALL_START, Client, Harness

V5 = 5
MakeHarness = Callable[..., Harness]


def connect5(harness: Harness, client_id: str, **properties: Any) -> tuple[Client, ConnAck]:
    client = harness.open()
    answer = client.connect(
        client_id, level=V5, properties=Properties(**properties) if properties else None
    )
    assert len(answer) == 1 and isinstance(answer[0], ConnAck), answer
    assert answer[0].return_code == 0, answer
    return client, answer[0]


def subscribe5(
    client: Client, *subscriptions: Subscription, subscription_id: int | None = None
) -> SubAck:
    properties = (
        Properties(subscription_identifiers=(subscription_id,)) if subscription_id else None
    )
    packet_id = client.next_id()
    client.send(Subscribe(packet_id, subscriptions, properties))
    suback = client.received_first()
    assert isinstance(suback, SubAck), suback
    return suback


def publish5(client: Client, topic: str, payload: bytes, qos: int = 0, **properties: Any) -> list:
    packet_id = client.next_id() if qos else None
    props = Properties(**properties) if properties else None
    client.send(Publish(topic, payload, qos, False, False, packet_id, properties=props))
    return client.received_rest()


def the_publish(client: Client) -> Publish:
    packets = client.received_rest()
    assert len(packets) == 1 and isinstance(packets[0], Publish), packets
    return packets[0]


def disconnect_reason(client: Client, packets: list | None = None) -> int:
    """The reason code of the DISCONNECT the broker sent before closing (in
    `packets` if given: what a helper already took)."""
    packets = client.received_rest() if packets is None else packets
    assert packets and isinstance(packets[-1], Disconnect), packets
    assert client.closed
    return packets[-1].reason_code


# ---------------------------------------------------------------- CONNECT


def test_connack_tells_a_5_client_the_broker_limits(harness: Harness) -> None:
    """[MQTT-3.2.2-...] CONNACK properties: topic aliases; shared subscriptions are
    available, which is the default and goes unsaid."""
    _, connack = connect5(harness, "c1")
    assert connack.properties is not None
    assert connack.properties.topic_alias_maximum == 10
    assert connack.properties.shared_subscription_available is None
    assert connack.properties.receive_maximum is None  # 65535, the default, is not sent
    assert connack.properties.assigned_client_identifier is None


def test_empty_client_id_gets_an_assigned_identifier_even_without_clean_start(
    harness: Harness,
) -> None:
    """[MQTT-3.1.3-6 / 3.2.2-16] the broker assigns an id and says which."""
    client = harness.open()
    answer = client.connect("", clean_session=False, level=V5)
    assert isinstance(answer[0], ConnAck) and answer[0].return_code == 0
    assert answer[0].properties is not None
    assigned = answer[0].properties.assigned_client_identifier
    assert assigned and assigned in harness.broker.sessions


def test_max_keepalive_becomes_server_keep_alive(make_harness: MakeHarness) -> None:
    """[MQTT-3.2.2-21] a 5.0 client is told the keep-alive to use, not refused."""
    harness = make_harness(max_keepalive=60)
    client = harness.open()
    answer = client.connect("c1", keep_alive=600, level=V5)
    assert isinstance(answer[0], ConnAck) and answer[0].return_code == 0
    assert answer[0].properties is not None and answer[0].properties.server_keep_alive == 60
    harness.fire(89)
    assert not client.closed
    harness.fire(91)  # 1.5 x 60 s of silence
    assert disconnect_reason(client) == 0x8D


def test_unsupported_authentication_method_is_refused_with_0x8c(harness: Harness) -> None:
    """[MQTT-4.12.0-1] an authentication method the broker does not offer: 0x8C."""
    client = harness.open()
    answer = client.connect(
        "c1", level=V5, properties=Properties(authentication_method="SCRAM-SHA-1")
    )
    assert answer == [ConnAck(0x8C)]
    assert client.closed


def test_take_over_tells_the_old_5_connection_why(harness: Harness) -> None:
    """[MQTT-3.1.4-3] the old connection gets DISCONNECT 0x8E (session taken over)."""
    old, _ = connect5(harness, "c1")
    connect5(harness, "c1")
    assert disconnect_reason(old) == 0x8E


# ---------------------------------------------------------- session expiry


def test_session_expiry_zero_ends_the_session_with_the_connection(harness: Harness) -> None:
    """[MQTT-3.1.2-23] Session Expiry Interval absent or 0: no session after close."""
    client, _ = connect5(harness, "c1")
    client.drop()
    assert "c1" not in harness.broker.sessions


def test_session_expiry_keeps_the_session_until_the_interval_passes() -> None:
    harness = Harness(BrokerConfig().validate(), wall=WALL_START)
    client = harness.open()
    client.connect(
        "c1", clean_session=False, level=V5, properties=Properties(session_expiry_interval=30)
    )
    subscribe5(client, Subscription("t", 1))
    client.drop()
    harness.fire(1)
    harness.wall = WALL_START + 29
    harness.fire(29)
    assert "c1" in harness.broker.sessions
    harness.wall = WALL_START + 31
    harness.fire(31)
    assert "c1" not in harness.broker.sessions  # checked at its own time, not a minute later


def test_disconnect_may_not_revive_a_session_that_was_to_end(harness: Harness) -> None:
    """[MQTT-3.14.2-2] Session Expiry 0 at CONNECT, non-zero at DISCONNECT: 0x82."""
    client, _ = connect5(harness, "c1")
    client.send(Disconnect(0, Properties(session_expiry_interval=60)))
    assert disconnect_reason(client) == 0x82
    assert "c1" not in harness.broker.sessions


def test_disconnect_may_shorten_the_session_to_nothing(harness: Harness) -> None:
    client, _ = connect5(harness, "c1", session_expiry_interval=60)
    client.send(Disconnect(0, Properties(session_expiry_interval=0)))
    assert client.closed
    assert "c1" not in harness.broker.sessions


def test_disconnect_with_will_message_publishes_the_will(harness: Harness) -> None:
    """[MQTT-3.14.4-3] reason 0x04 keeps the will."""
    watcher, _ = connect5(harness, "w")
    subscribe5(watcher, Subscription("will/#", 0))
    client = harness.open()
    client.connect("c1", level=V5, will=Will("will/c1", b"gone"))
    client.send(Disconnect(0x04))
    assert the_publish(watcher).payload == b"gone"


# ------------------------------------------------------------ properties


def test_properties_reach_a_5_subscriber_unchanged_and_in_order(harness: Harness) -> None:
    """[MQTT-3.3.2-15..20] user properties in order, response topic, correlation data."""
    sub, _ = connect5(harness, "sub")
    subscribe5(sub, Subscription("t", 1))
    pub, _ = connect5(harness, "pub")
    pairs = (("b", "2"), ("a", "1"), ("b", "3"))
    answer = publish5(
        pub,
        "t",
        b"{}",
        1,
        user_properties=pairs,
        response_topic="reply/here",
        correlation_data=b"\x00\x01",
        content_type="application/json",
        payload_format_indicator=1,
    )
    assert [type(p) for p in answer] == [PubAck] and answer[0].reason_code == 0
    got = the_publish(sub).properties
    assert got is not None
    assert got.user_properties == pairs
    assert got.response_topic == "reply/here"
    assert got.correlation_data == b"\x00\x01"
    assert got.content_type == "application/json"
    assert got.payload_format_indicator == 1


def test_a_3_1_1_subscriber_gets_the_message_without_properties(harness: Harness) -> None:
    plain = harness.connect("plain")
    plain.subscribed(("t", 0))
    pub, _ = connect5(harness, "pub")
    publish5(pub, "t", b"x", 0, user_properties=(("k", "v"),))
    assert plain.received() == [Publish("t", b"x")]


def test_a_3_1_1_publisher_reaches_a_5_subscriber(harness: Harness) -> None:
    sub, _ = connect5(harness, "sub")
    subscribe5(sub, Subscription("t", 1))
    plain = harness.connect("plain")
    plain.published("t", b"old", 1)
    got = the_publish(sub)
    assert (got.topic, got.payload, got.properties) == ("t", b"old", None)


def test_puback_says_no_matching_subscribers(harness: Harness) -> None:
    """[MQTT-3.4.2.1] 0x10: accepted, but nobody subscribes."""
    pub, _ = connect5(harness, "pub")
    answer = publish5(pub, "nobody/listens", b"x", 1)
    assert isinstance(answer[0], PubAck) and answer[0].reason_code == 0x10


def test_invalid_utf8_with_format_indicator_is_refused_with_0x99(harness: Harness) -> None:
    sub, _ = connect5(harness, "sub")
    subscribe5(sub, Subscription("t", 1))
    pub, _ = connect5(harness, "pub")
    answer = publish5(pub, "t", b"\xff\xfe", 1, payload_format_indicator=1)
    assert isinstance(answer[0], PubAck) and answer[0].reason_code == 0x99
    assert sub.received_rest() == []


def test_a_client_publish_with_a_subscription_identifier_is_a_protocol_error(
    harness: Harness,
) -> None:
    """[MQTT-3.3.4-6]."""
    pub, _ = connect5(harness, "pub")
    publish5(pub, "t", b"x", 0, subscription_identifiers=(3,))
    assert pub.closed


# ------------------------------------------------------------ topic aliases


def test_a_client_topic_alias_is_set_then_reused(harness: Harness) -> None:
    """[MQTT-3.3.2-12] a topic and an alias set it; an empty topic and the alias use it."""
    sub, _ = connect5(harness, "sub")
    subscribe5(sub, Subscription("long/topic/name", 0))
    pub, _ = connect5(harness, "pub")
    publish5(pub, "long/topic/name", b"1", 0, topic_alias=3)
    publish5(pub, "", b"2", 0, topic_alias=3)
    assert [p.payload for p in sub.received_rest()] == [b"1", b"2"]


@pytest.mark.parametrize("alias", [11, 0])
def test_an_alias_outside_the_maximum_gets_disconnect_0x94(harness: Harness, alias: int) -> None:
    """[MQTT-3.3.2-9/10] alias 0, or above the broker's Topic Alias Maximum (10)."""
    pub, _ = connect5(harness, "pub")
    answer = publish5(pub, "t", b"x", 0, topic_alias=alias)
    assert disconnect_reason(pub, answer) == 0x94


def test_an_unknown_alias_with_an_empty_topic_is_a_protocol_error(harness: Harness) -> None:
    pub, _ = connect5(harness, "pub")
    answer = publish5(pub, "", b"x", 0, topic_alias=4)
    assert disconnect_reason(pub, answer) == 0x82


def test_the_broker_sends_aliases_to_a_client_that_allows_them(harness: Harness) -> None:
    """The first topics sent get an alias each; repeats then carry an empty topic."""
    sub, _ = connect5(harness, "sub", topic_alias_maximum=1)
    subscribe5(sub, Subscription("a/#", 0))
    pub, _ = connect5(harness, "pub")
    for topic in ("a/1", "a/1", "a/2", "a/2"):
        publish5(pub, topic, b"x")
    sent = sub.received_rest()
    seen = [(p.topic, p.properties.topic_alias if p.properties else None) for p in sent]
    assert seen == [("a/1", 1), ("", 1), ("a/2", None), ("a/2", None)]


# ---------------------------------------------------- limits of the client


def test_receive_maximum_bounds_what_is_in_flight_to_the_client(harness: Harness) -> None:
    """[MQTT-3.3.4-9] never more unacknowledged QoS 1 than the client's Receive Maximum."""
    sub, _ = connect5(harness, "sub", receive_maximum=2)
    subscribe5(sub, Subscription("t", 1))
    pub, _ = connect5(harness, "pub")
    for n in range(5):
        publish5(pub, "t", bytes([n]), 1)
    first = sub.received_rest()
    assert [p.payload for p in first] == [b"\x00", b"\x01"]
    sub.send(PubAck(first[0].packet_id or 0))
    assert [p.payload for p in sub.received_rest()] == [b"\x02"]


def test_a_message_larger_than_the_client_takes_is_skipped(harness: Harness) -> None:
    """[MQTT-3.1.2-24/25] discarded for that client as if sent; a later small one arrives."""
    sub, _ = connect5(harness, "sub", maximum_packet_size=64)
    subscribe5(sub, Subscription("t", 1))
    pub, _ = connect5(harness, "pub")
    publish5(pub, "t", b"x" * 100, 1)
    publish5(pub, "t", b"small", 1)
    assert [p.payload for p in sub.received_rest()] == [b"small"]
    assert harness.broker.stats.dropped_too_large == 1


def test_more_unreleased_qos2_than_receive_maximum_gets_0x93(make_harness: MakeHarness) -> None:
    """[MQTT-3.3.4-8] the broker's Receive Maximum is enforced."""
    harness = make_harness(receive_maximum=2)
    pub, connack = connect5(harness, "pub")
    assert connack.properties is not None and connack.properties.receive_maximum == 2
    for _ in range(2):
        answer = publish5(pub, "t", b"x", 2)
        assert isinstance(answer[0], PubRec)
    answer = publish5(pub, "t", b"x", 2)
    assert disconnect_reason(pub, answer) == 0x93


def test_pubrel_for_an_unknown_id_gets_pubcomp_0x92(harness: Harness) -> None:
    pub, _ = connect5(harness, "pub")
    pub.send(PubRel(77))
    assert pub.received() == [PubComp(77, 0x92)]


# ------------------------------------------------- subscription options


def test_no_local_keeps_a_client_own_messages_from_it(harness: Harness) -> None:
    """[MQTT-3.8.3-3]."""
    client, _ = connect5(harness, "c1")
    subscribe5(client, Subscription("t", 0, no_local=True))
    other, _ = connect5(harness, "c2")
    publish5(client, "t", b"mine")
    publish5(other, "t", b"theirs")
    assert [p.payload for p in client.received_rest()] == [b"theirs"]


def test_retain_as_published_keeps_the_retain_flag(harness: Harness) -> None:
    """[MQTT-3.3.1-12/13]."""
    keep, _ = connect5(harness, "keep")
    subscribe5(keep, Subscription("t", 0, retain_as_published=True))
    clear, _ = connect5(harness, "clear")
    subscribe5(clear, Subscription("t", 0))
    pub, _ = connect5(harness, "pub")
    pub.send(Publish("t", b"r", 0, True))
    assert the_publish(keep).retain is True
    assert the_publish(clear).retain is False


def test_retain_handling_1_and_2(harness: Harness) -> None:
    """[MQTT-3.3.1-9..11] 1: retained only for a new subscription; 2: never."""
    pub, _ = connect5(harness, "pub")
    pub.send(Publish("t", b"kept", 0, True))
    client, _ = connect5(harness, "c1")
    subscribe5(client, Subscription("t", 0, retain_handling=RETAIN_SEND_IF_NEW))
    assert [p.payload for p in client.received_rest()] == [b"kept"]
    subscribe5(client, Subscription("t", 0, retain_handling=RETAIN_SEND_IF_NEW))
    assert client.received_rest() == []
    subscribe5(client, Subscription("t", 0, retain_handling=RETAIN_SEND_NEVER))
    subscribe5(client, Subscription("u/#", 0, retain_handling=RETAIN_SEND_NEVER))
    assert client.received_rest() == []


def test_every_matching_subscription_identifier_comes_with_the_message(
    harness: Harness,
) -> None:
    """[MQTT-3.3.4-3/4] one copy, the highest QoS, all matching identifiers."""
    client, _ = connect5(harness, "c1")
    subscribe5(client, Subscription("a/+", 0), subscription_id=7)
    subscribe5(client, Subscription("a/#", 1), subscription_id=300)
    subscribe5(client, Subscription("b", 0), subscription_id=9)
    pub, _ = connect5(harness, "pub")
    publish5(pub, "a/x", b"m", 1)
    got = the_publish(client)
    assert got.qos == 1
    assert got.properties is not None and got.properties.subscription_identifiers == (7, 300)


def test_a_retained_message_carries_the_new_subscription_identifier(harness: Harness) -> None:
    pub, _ = connect5(harness, "pub")
    pub.send(Publish("t", b"kept", 0, True))
    client, _ = connect5(harness, "c1")
    subscribe5(client, Subscription("t", 0), subscription_id=5)
    got = the_publish(client)
    assert got.properties is not None and got.properties.subscription_identifiers == (5,)


def test_unsuback_says_which_filters_had_no_subscription(harness: Harness) -> None:
    """[MQTT-3.11.3-1] one reason code per filter."""
    client, _ = connect5(harness, "c1")
    subscribe5(client, Subscription("a", 0))
    client.send(Unsubscribe(9, ("a", "b")))
    assert client.received_rest() == [UnsubAck(9, (0x00, 0x11))]


def test_suback_reason_codes_name_the_refusal(harness: Harness) -> None:
    client, _ = connect5(harness, "c1")
    codes = subscribe5(client, Subscription("ok", 1), Subscription("bad/#/x", 0)).return_codes
    assert codes == (1, 0x8F)


# ----------------------------------------------------------- message expiry


def test_an_expired_message_is_never_delivered_from_a_queue() -> None:
    """[MQTT-3.3.2-5] and the remaining interval goes with a message that is delivered."""
    harness = Harness(BrokerConfig().validate(), wall=WALL_START)
    sub = harness.open()
    sub.connect("sub", level=V5, properties=Properties(session_expiry_interval=300))
    subscribe5(sub, Subscription("t", 1))
    sub.drop()
    pub, _ = connect5(harness, "pub")
    publish5(pub, "t", b"short", 1, message_expiry_interval=5)
    publish5(pub, "t", b"long", 1, message_expiry_interval=100)
    harness.wall = WALL_START + 10
    back = harness.open()
    answer = back.connect(
        "sub", clean_session=False, level=V5, properties=Properties(session_expiry_interval=300)
    )
    delivered = [p for p in answer if isinstance(p, Publish)]
    assert [p.payload for p in delivered] == [b"long"]
    assert delivered[0].properties is not None
    assert delivered[0].properties.message_expiry_interval == 90


def test_an_expired_retained_message_is_not_sent_to_new_subscribers() -> None:
    harness = Harness(BrokerConfig().validate(), wall=WALL_START)
    pub, _ = connect5(harness, "pub")
    pub.send(Publish("t", b"kept", 0, True, properties=Properties(message_expiry_interval=5)))
    harness.wall = WALL_START + 6
    client, _ = connect5(harness, "c1")
    subscribe5(client, Subscription("t", 0))
    assert client.received_rest() == []


# ------------------------------------------------------------ will delay


def _will_client(harness: Harness, delay: int, expiry: int) -> Client:
    client = harness.open()
    will = Will("will/c1", b"gone", 0, False, Properties(will_delay_interval=delay))
    answer = client.connect(
        "c1", level=V5, will=will, properties=Properties(session_expiry_interval=expiry)
    )
    assert isinstance(answer[0], ConnAck) and answer[0].return_code == 0
    return client


def test_a_delayed_will_waits_and_a_reconnect_cancels_it(harness: Harness) -> None:
    """[MQTT-3.1.3-9] a new connection to the session within the delay: no will."""
    watcher, _ = connect5(harness, "w")
    subscribe5(watcher, Subscription("will/#", 0))
    _will_client(harness, delay=10, expiry=100).drop()
    harness.fire(5)
    assert watcher.received_rest() == []
    back = harness.open()
    back.connect(
        "c1", clean_session=False, level=V5, properties=Properties(session_expiry_interval=100)
    )
    harness.fire(20)
    assert watcher.received_rest() == []


def test_a_delayed_will_goes_out_when_the_delay_passes(harness: Harness) -> None:
    watcher, _ = connect5(harness, "w")
    subscribe5(watcher, Subscription("will/#", 0))
    _will_client(harness, delay=10, expiry=100).drop()
    assert harness.broker.next_timer() == pytest.approx(harness.now + 10)
    harness.fire(9)
    assert watcher.received_rest() == []
    harness.fire(10)
    assert [p.payload for p in watcher.received_rest()] == [b"gone"]


def test_a_delayed_will_goes_out_when_the_session_ends_first(harness: Harness) -> None:
    """Whichever comes first: here the session, which ends with the connection."""
    watcher, _ = connect5(harness, "w")
    subscribe5(watcher, Subscription("will/#", 0))
    _will_client(harness, delay=60, expiry=0).drop()
    assert [p.payload for p in watcher.received_rest()] == [b"gone"]


# ---------------------------------------------------- shared subscriptions


def _members(harness: Harness, count: int, share: str = "$share/g/t/#") -> list[Client]:
    members = []
    for n in range(count):
        member, _ = connect5(harness, f"m{n}")
        assert subscribe5(member, Subscription(share, 1)).return_codes == (1,)
        members.append(member)
    return members


def test_each_message_goes_to_one_member_in_turn(harness: Harness) -> None:
    """[MQTT-4.8.2-...] round robin by default: one copy per message, members in turn."""
    members = _members(harness, 3)
    pub, _ = connect5(harness, "pub")
    for n in range(6):
        publish5(pub, f"t/{n}", bytes([n]), 1)
    got = [[p.payload[0] for p in m.received_rest()] for m in members]
    assert sorted(n for member in got for n in member) == list(range(6))
    assert [len(g) for g in got] == [2, 2, 2]


def test_a_3_1_1_client_may_share_too(harness: Harness) -> None:
    plain = harness.connect("plain")
    plain.subscribed(("$share/g/t", 0))
    pub, _ = connect5(harness, "pub")
    publish5(pub, "t", b"x")
    assert plain.received() == [Publish("t", b"x")]


def test_an_offline_member_is_skipped_while_another_is_online(harness: Harness) -> None:
    away = harness.open()
    away.connect("away", level=V5, properties=Properties(session_expiry_interval=60))
    subscribe5(away, Subscription("$share/g/t", 1))
    away.drop()
    (here,) = _members(harness, 1, "$share/g/t")
    pub, _ = connect5(harness, "pub")
    for n in range(4):
        publish5(pub, "t", bytes([n]), 1)
    assert len(here.received_rest()) == 4
    assert not harness.broker.sessions["away"].queue


def test_a_leaving_member_hands_its_unacknowledged_messages_on(harness: Harness) -> None:
    """The messages a member did not acknowledge go to another member."""
    first, second = _members(harness, 2, "$share/g/t")
    pub, _ = connect5(harness, "pub")
    for n in range(4):
        publish5(pub, "t", bytes([n]), 1)
    kept = [p.payload for p in first.received_rest()]
    taken = [p.payload for p in second.received_rest()]
    assert len(kept) == len(taken) == 2
    first.drop()  # never acknowledged its two
    assert sorted(p.payload for p in second.received_rest()) == sorted(kept)


def test_no_retained_messages_on_a_shared_subscription(harness: Harness) -> None:
    pub, _ = connect5(harness, "pub")
    pub.send(Publish("t", b"kept", 0, True))
    (member,) = _members(harness, 1, "$share/g/t")
    assert member.received_rest() == []


@pytest.mark.parametrize("bad", ["$share/g", "$share//t", "$share/g+/t", "$share/g/"])
def test_an_invalid_share_name_is_refused(harness: Harness, bad: str) -> None:
    """[MQTT-4.8.2-1/2] SUBACK 0x8F."""
    client, _ = connect5(harness, "c1")
    assert subscribe5(client, Subscription(bad, 0)).return_codes == (0x8F,)


def test_no_local_on_a_shared_subscription_is_a_protocol_error(harness: Harness) -> None:
    """[MQTT-3.8.3-4]."""
    client, _ = connect5(harness, "c1")
    client.send(Subscribe(1, (Subscription("$share/g/t", 0, no_local=True),)))
    assert disconnect_reason(client) == 0x82


def test_unsubscribing_leaves_the_group(harness: Harness) -> None:
    first, second = _members(harness, 2, "$share/g/t")
    first.send(Unsubscribe(50, ("$share/g/t",)))
    assert first.received_rest() == [UnsubAck(50, (0,))]
    pub, _ = connect5(harness, "pub")
    for n in range(3):
        publish5(pub, "t", bytes([n]), 1)
    assert len(second.received_rest()) == 3


@pytest.mark.parametrize("policy", ["random", "hash_client", "hash_topic"])
def test_other_policies_still_give_each_message_to_one_member(
    make_harness: MakeHarness, policy: str
) -> None:
    harness = make_harness(shared_subscription_policy=policy)
    members = _members(harness, 3, "$share/g/t/#")
    pub, _ = connect5(harness, "pub")
    for n in range(30):  # QoS 0: nothing waits for acknowledgements
        publish5(pub, f"t/{n % 3}", bytes([n]), 0)
    got = sorted(p.payload[0] for m in members for p in m.received_rest())
    assert got == list(range(30))


def test_hash_topic_keeps_a_topic_with_one_member(make_harness: MakeHarness) -> None:
    harness = make_harness(shared_subscription_policy="hash_topic")
    members = _members(harness, 3, "$share/g/t/#")
    pub, _ = connect5(harness, "pub")
    for _ in range(5):
        publish5(pub, "t/same", b"x", 1)
    counts = sorted(len(m.received_rest()) for m in members)
    assert counts == [0, 0, 5]
