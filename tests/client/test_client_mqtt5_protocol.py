"""The sans-IO client's MQTT 5.0 decisions: limits from CONNACK, topic aliases,
reason codes, server DISCONNECT, enhanced authentication.

The CONNECT and CONNACK bytes are written out by hand from the MQTT 5.0
specification; the broker's other packets are encoded by the codec, and what
the client sends is decoded by it, so the assertions are about decisions.
"""

from __future__ import annotations

import pytest

from midge.client.errors import (
    AuthenticationError,
    ConnectionRefused,
    PacketTooLarge,
    PublishError,
    ReceiveMaximumExceeded,
    SubscribeError,
    reason_name,
)
from midge.client.events import (
    Connected,
    Disconnected,
    MessageReceived,
    PublishCompleted,
    Reauthenticated,
    Refused,
    Subscribed,
    Unsubscribed,
)
from midge.client.inflight import Stage
from midge.client.options import Authenticator, ConnectOptions
from midge.client.protocol import ClientProtocol, State
from midge.protocol.codec import decode_all, encode
from midge.protocol.errors import TopicAliasInvalid
from midge.protocol.packets import (
    Auth,
    ConnAck,
    Disconnect,
    Packet,
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
)
from midge.protocol.properties import Properties

V5 = 5
CONNACK_OK = bytes.fromhex("2003000000")  # flags 0, reason 0, no properties


def sent(proto: ClientProtocol) -> list[Packet]:
    return decode_all(proto.data_to_send(), V5)


def from_broker(proto: ClientProtocol, *packets: Packet, now: float = 1.0) -> None:
    proto.receive_data(b"".join(encode(p, V5) for p in packets), now)


def connected(
    connack: Properties | None = None,
    properties: Properties | None = None,
    clean: bool = True,
    **kwargs: object,
) -> ClientProtocol:
    """A 5.0 protocol past CONNACK 0 with `connack` properties; outputs drained."""
    options = ConnectOptions("c1", clean, protocol_version=V5, properties=properties)
    proto = ClientProtocol(options, **kwargs)  # type: ignore[arg-type]
    proto.connect(0.0)
    proto.data_to_send()
    from_broker(proto, ConnAck(0, False, connack), now=0.0)
    assert isinstance(proto.events_received()[0], Connected)
    return proto


# ------------------------------------------------------------- CONNECT / CONNACK


def test_connect_bytes_with_properties():
    props = Properties(session_expiry_interval=60, receive_maximum=5)
    proto = ClientProtocol(ConnectOptions("", keepalive=30, protocol_version=V5, properties=props))
    proto.connect(0.0)
    # "MQTT" level 5, flags: clean start, keep-alive 30; properties: 0x11 session
    # expiry 60, 0x21 receive maximum 5; then the empty client id.
    assert proto.data_to_send() == bytes.fromhex("101500044d5154540502001e08110000003c2100050000")


def test_connack_limits_assigned_id_and_server_keep_alive_are_adopted():
    proto = ClientProtocol(ConnectOptions("", keepalive=60, protocol_version=V5))
    proto.connect(0.0)
    proto.data_to_send()
    # CONNACK: properties (length 14): 0x12 "ab", 0x13 keep-alive 5, 0x21 receive max 2,
    # 0x22 topic alias maximum 3
    proto.receive_data(bytes.fromhex("201100000e1200026162130005210002220003"), 0)
    [event] = proto.events_received()
    assert isinstance(event, Connected)
    assert proto.options.client_id == "ab"
    assert proto.keepalive == 5
    assert (proto.limits.receive_maximum, proto.limits.topic_alias_maximum) == (2, 3)
    assert proto.timer_deadline() == 5.0


def test_refusal_reason_code_and_its_words():
    proto = ClientProtocol(ConnectOptions("c", protocol_version=V5))
    proto.connect(0.0)
    from_broker(proto, ConnAck(0x87, False, Properties(reason_string="no way")))
    [event] = proto.events_received()
    assert event == Refused(0x87, Properties(reason_string="no way"))
    error = ConnectionRefused(event.return_code, event.properties)
    assert "CONNACK 135 (not authorized: no way)" in str(error)
    assert not error.transient and ConnectionRefused(0x89).transient
    assert str(ConnectionRefused(4)).endswith("(bad user name or password)")  # 3.1.1 unchanged


def test_reason_names():
    assert reason_name(0x97) == "quota exceeded"
    assert reason_name(0x9B) == "QoS not supported"
    assert reason_name(0x85) == "client identifier not valid"
    assert reason_name(0x42) == "reason code 0x42"


# -------------------------------------------------------- receive maximum


def test_receive_maximum_queues_the_rest_in_order():
    proto = connected(Properties(receive_maximum=2), max_inflight=20)
    ids = [proto.publish("t", b"%d" % i, 1, now=1) for i in range(4)]
    assert [p.packet_id for p in sent(proto)] == ids[:2]  # type: ignore[union-attr]
    from_broker(proto, PubAck(ids[1]))
    assert [p.packet_id for p in sent(proto)] == [ids[2]]  # type: ignore[union-attr]
    assert proto.in_flight()[-1] == (ids[3], Stage.UNSENT)


def test_max_inflight_smaller_than_receive_maximum_wins():
    proto = connected(Properties(receive_maximum=10), max_inflight=1)
    proto.publish("t", b"1", 1, now=1)
    proto.publish("t", b"2", 1, now=1)
    assert len(sent(proto)) == 1


def test_reconnect_with_a_smaller_receive_maximum_resends_only_what_fits():
    proto = connected(Properties(receive_maximum=3), clean=False)
    ids = [proto.publish("t", b"%d" % i, 1, now=1) for i in range(3)]
    sent(proto)
    proto.connection_lost()
    proto.connect(2.0)
    proto.data_to_send()
    from_broker(proto, ConnAck(0, True, Properties(receive_maximum=1)))
    proto.events_received()
    [again] = sent(proto)
    assert isinstance(again, Publish) and again.packet_id == ids[0] and again.dup
    from_broker(proto, PubAck(ids[0]))
    [second] = sent(proto)
    assert isinstance(second, Publish) and second.packet_id == ids[1] and second.dup


def test_more_unreleased_qos2_than_our_receive_maximum_is_an_error():
    proto = connected(properties=Properties(receive_maximum=1))
    from_broker(proto, Publish("t", b"1", 2, packet_id=1))
    with pytest.raises(ReceiveMaximumExceeded):
        from_broker(proto, Publish("t", b"2", 2, packet_id=2))
    assert sent(proto)[-1] == Disconnect(0x93)
    assert proto.state is State.DISCONNECTED


# ----------------------------------------------------- maximum packet size


def test_publish_larger_than_maximum_packet_size_is_refused_before_sending():
    proto = connected(Properties(maximum_packet_size=64))
    with pytest.raises(PacketTooLarge, match="maximum packet size of 64"):
        proto.publish("t", b"x" * 100, 0, now=1)
    with pytest.raises(PacketTooLarge):
        proto.publish("t", b"x" * 100, 1, now=1)
    assert proto.data_to_send() == b"" and proto.in_flight() == []
    proto.publish("t", b"x" * 10, 1, now=1)  # a small one still goes
    assert len(sent(proto)) == 1
    with pytest.raises(PacketTooLarge):
        proto.subscribe([("f" * 80, 0)], 1)


def test_message_queued_offline_and_too_large_for_the_new_connection_fails_with_0x95():
    proto = ClientProtocol(ConnectOptions("c", protocol_version=V5))
    packet_id = proto.publish("t", b"x" * 100, 1, now=0)
    proto.connect(0.0)
    proto.data_to_send()
    from_broker(proto, ConnAck(0, False, Properties(maximum_packet_size=64)))
    assert proto.events_received()[1] == PublishCompleted(packet_id or 0, 0x95)  # type: ignore[index]
    assert proto.data_to_send() == b""


# ------------------------------------------------------------ topic aliases


def test_outgoing_alias_for_a_repeated_topic():
    proto = connected(Properties(topic_alias_maximum=1))
    for _ in range(3):
        proto.publish("a/b", b"m", 0, now=1)
    proto.publish("c", b"m", 0, now=1)
    proto.publish("c", b"m", 0, now=1)  # the only alias is taken: c stays in full
    packets = sent(proto)
    shapes = [(p.topic, p.properties and p.properties.topic_alias) for p in packets]  # type: ignore[union-attr]
    assert shapes == [("a/b", None), ("a/b", 1), ("", 1), ("c", None), ("c", None)]


def test_no_alias_without_the_broker_allowing_it_nor_after_reconnect():
    proto = connected()
    proto.publish("a", b"", 0, now=1)
    proto.publish("a", b"", 0, now=1)
    assert all(p.properties is None for p in sent(proto))  # type: ignore[union-attr]
    proto = connected(Properties(topic_alias_maximum=5))
    proto.publish("a", b"", 0, now=1)
    proto.publish("a", b"", 0, now=1)
    sent(proto)
    proto.connection_lost()
    proto.connect(2.0)
    proto.data_to_send()
    from_broker(proto, ConnAck(0, False, Properties(topic_alias_maximum=5)))
    proto.publish("a", b"", 0, now=3)
    [packet] = sent(proto)
    assert isinstance(packet, Publish) and packet.topic == "a"  # the mapping did not survive


def test_qos1_resent_after_reconnect_carries_its_full_topic():
    proto = connected(Properties(topic_alias_maximum=5), clean=False)
    proto.publish("a", b"", 1, now=1)
    proto.publish("a", b"", 1, now=1)
    proto.publish("a", b"", 1, now=1)
    assert [p.topic for p in sent(proto)] == ["a", "a", ""]  # type: ignore[union-attr]
    proto.connection_lost()
    proto.connect(2.0)
    proto.data_to_send()
    from_broker(proto, ConnAck(0, True))
    assert [p.topic for p in sent(proto)] == ["a", "a", "a"]  # type: ignore[union-attr]


def test_incoming_aliases_are_resolved():
    proto = connected(properties=Properties(topic_alias_maximum=2))
    from_broker(
        proto,
        Publish("x/y", b"1", properties=Properties(topic_alias=2)),
        Publish("", b"2", properties=Properties(topic_alias=2)),
    )
    events = proto.events_received()
    assert [e.message.topic for e in events if isinstance(e, MessageReceived)] == ["x/y", "x/y"]


@pytest.mark.parametrize(
    ("topic", "alias"), [("t", 3), ("", 1)], ids=["above-maximum", "never-set-up"]
)
def test_bad_incoming_alias_is_0x94(topic: str, alias: int):
    proto = connected(properties=Properties(topic_alias_maximum=2))
    with pytest.raises(TopicAliasInvalid):
        from_broker(proto, Publish(topic, b"", properties=Properties(topic_alias=alias)))
    assert sent(proto) == [Disconnect(0x94)]


# ------------------------------------------------------------ reason codes


def test_puback_failure_ends_the_flow_with_its_reason():
    proto = connected()
    packet_id = proto.publish("t", b"", 1, now=1) or 0
    sent(proto)
    from_broker(proto, PubAck(packet_id, 0x87, Properties(reason_string="acl")))
    assert proto.events_received() == [
        PublishCompleted(packet_id, 0x87, Properties(reason_string="acl"))
    ]
    assert proto.in_flight() == []
    error = PublishError("t", 0x87, Properties(reason_string="acl"))
    assert str(error) == "publish to 't' refused by the broker: not authorized (0x87): acl"


def test_pubrec_failure_sends_no_pubrel():
    proto = connected()
    packet_id = proto.publish("t", b"", 2, now=1) or 0
    sent(proto)
    from_broker(proto, PubRec(packet_id, 0x97))
    assert proto.events_received() == [PublishCompleted(packet_id, 0x97)]
    assert sent(proto) == []


def test_qos2_success_and_no_matching_subscribers():
    proto = connected()
    packet_id = proto.publish("t", b"", 2, now=1) or 0
    sent(proto)
    from_broker(proto, PubRec(packet_id, 0x10))
    assert sent(proto) == [PubRel(packet_id)]
    from_broker(proto, PubComp(packet_id))
    assert proto.events_received() == [PublishCompleted(packet_id)]


def test_suback_reason_codes_and_subscription_options():
    proto = connected()
    subs = [Subscription("a", 1, no_local=True, retain_handling=2), ("b", 2)]
    proto.subscribe(subs, 1, Properties(subscription_identifiers=(9,)))
    [packet] = sent(proto)
    assert isinstance(packet, Subscribe)
    assert packet.subscriptions[0] == Subscription("a", 1, True, False, 2)
    assert packet.properties == Properties(subscription_identifiers=(9,))
    from_broker(proto, SubAck(packet.packet_id, (1, 0x87)))
    assert proto.events_received() == [Subscribed(packet.packet_id, ("a", "b"), (1, 0x87))]
    assert proto.granted() == {"a": 1}
    assert "b (not authorized)" in str(SubscribeError(("a", "b"), (1, 0x87)))


def test_lost_session_restores_subscriptions_with_options_and_identifier():
    proto = connected()
    proto.subscribe(
        [Subscription("a", 1, no_local=True)], 1, Properties(subscription_identifiers=(4,))
    )
    [packet] = sent(proto)
    from_broker(proto, SubAck(packet.packet_id, (1,)))  # type: ignore[union-attr]
    proto.connection_lost()
    proto.connect(2.0)
    proto.data_to_send()
    from_broker(proto, ConnAck(0, False))
    [again] = sent(proto)
    assert isinstance(again, Subscribe)
    assert again.subscriptions == (Subscription("a", 1, no_local=True),)
    assert again.properties == Properties(subscription_identifiers=(4,))


def test_unsuback_reason_codes():
    proto = connected()
    proto.subscribe([("a", 0), ("b", 0)], 1)
    [sub] = sent(proto)
    from_broker(proto, SubAck(sub.packet_id, (0, 0)))  # type: ignore[union-attr]
    proto.unsubscribe(["a", "b"], 1)
    [unsub] = sent(proto)
    assert isinstance(unsub, Unsubscribe)
    from_broker(proto, UnsubAck(unsub.packet_id, (0x11, 0x87)))
    assert proto.events_received()[-1] == Unsubscribed(unsub.packet_id, (0x11, 0x87))
    assert proto.granted() == {"b": 0}  # refused: still subscribed


def test_properties_are_checked():
    proto = connected()
    with pytest.raises(ValueError, match="subscription_identifiers"):
        proto.publish("t", b"", properties=Properties(subscription_identifiers=(1,)), now=1)
    with pytest.raises(ValueError, match="session_expiry_interval"):
        proto.publish("t", b"", properties=Properties(session_expiry_interval=1), now=1)
    with pytest.raises(ValueError, match=r"MQTT 5\.0"):
        ConnectOptions("c", properties=Properties(receive_maximum=1))
    with pytest.raises(ValueError, match="from 0"):
        proto.disconnect(2.0, properties=Properties(session_expiry_interval=10))
    three = ClientProtocol(ConnectOptions("c"))
    with pytest.raises(ValueError, match=r"MQTT 5\.0"):
        three.subscribe([Subscription("a", no_local=True)], 0)


def test_maximum_qos_and_retain_available_are_honoured():
    proto = connected(Properties(maximum_qos=1, retain_available=0))
    with pytest.raises(ValueError, match="QoS 1 at most"):
        proto.publish("t", b"", 2, now=1)
    with pytest.raises(ValueError, match="retained"):
        proto.publish("t", b"", 0, True, now=1)


def test_received_message_exposes_its_properties():
    proto = connected()
    props = Properties(user_properties=(("k", "v"), ("k", "w")), subscription_identifiers=(1, 7))
    from_broker(proto, Publish("t", b"p", 1, packet_id=3, properties=props))
    [event] = proto.events_received()
    assert isinstance(event, MessageReceived) and event.message.properties == props


# ------------------------------------------------------- DISCONNECT, AUTH


def test_server_disconnect_reports_its_reason():
    proto = connected()
    from_broker(proto, Disconnect(0x8B, Properties(reason_string="bye")))
    assert proto.events_received() == [Disconnected(0x8B, Properties(reason_string="bye"))]
    assert proto.state is State.DISCONNECTED
    assert sent(proto) == []


def test_disconnect_with_reason_and_properties():
    proto = connected(properties=Properties(session_expiry_interval=60))
    proto.disconnect(2.0, 0x04, Properties(session_expiry_interval=0))
    assert sent(proto) == [Disconnect(0x04, Properties(session_expiry_interval=0))]


def scram_like(steps: list[tuple[str, bytes | None]]) -> Authenticator:
    def answer(method: str, data: bytes | None) -> bytes:
        steps.append((method, data))
        return b"response-%d" % len(steps)

    return answer


def test_enhanced_authentication_at_connect_and_reauthentication():
    steps: list[tuple[str, bytes | None]] = []
    method = Properties(authentication_method="TEST", authentication_data=b"first")
    options = ConnectOptions(
        "c", protocol_version=V5, properties=method, authenticator=scram_like(steps)
    )
    proto = ClientProtocol(options)
    proto.connect(0.0)
    [connect] = sent(proto)
    assert connect.properties == method  # type: ignore[union-attr]
    challenge = Properties(authentication_method="TEST", authentication_data=b"nonce")
    from_broker(proto, Auth(0x18, challenge))
    assert sent(proto) == [
        Auth(0x18, Properties(authentication_method="TEST", authentication_data=b"response-1"))
    ]
    from_broker(proto, ConnAck(0, False, Properties(authentication_method="TEST")))
    assert proto.state is State.CONNECTED and steps == [("TEST", b"nonce")]
    proto.events_received()
    proto.reauthenticate(2.0, b"again")
    assert sent(proto) == [
        Auth(0x19, Properties(authentication_method="TEST", authentication_data=b"again"))
    ]
    from_broker(proto, Auth(0x18, challenge), Auth(0, Properties(authentication_method="TEST")))
    assert len(sent(proto)) == 1
    assert proto.events_received() == [Reauthenticated(Properties(authentication_method="TEST"))]


def test_auth_with_another_method_or_without_authenticator_is_a_protocol_error():
    options = ConnectOptions(
        "c", protocol_version=V5, properties=Properties(authentication_method="TEST")
    )
    proto = ClientProtocol(options)
    proto.connect(0.0)
    with pytest.raises(Exception, match="authenticator"):
        from_broker(proto, Auth(0x18, Properties(authentication_method="TEST")))
    proto = ClientProtocol(options)
    proto.connect(0.0)
    with pytest.raises(Exception, match="method"):
        from_broker(proto, Auth(0x18, Properties(authentication_method="OTHER")))


def test_authenticator_failure_is_an_authentication_error():
    def refuse(method: str, data: bytes | None) -> bytes:
        raise RuntimeError("bad server signature")

    method = Properties(authentication_method="TEST")
    proto = ClientProtocol(
        ConnectOptions("c", protocol_version=V5, properties=method, authenticator=refuse)
    )
    proto.connect(0.0)
    with pytest.raises(AuthenticationError, match="bad server signature"):
        from_broker(proto, Auth(0x18, method))
    assert proto.state is State.DISCONNECTED


def test_mqtt_3_1_1_broker_disconnect_is_still_a_protocol_error():
    proto = ClientProtocol(ConnectOptions("c"))
    proto.connect(0.0)
    proto.receive_data(bytes.fromhex("20020000"), 0)
    with pytest.raises(Exception, match="DISCONNECT"):
        proto.receive_data(bytes.fromhex("e000"), 1)
