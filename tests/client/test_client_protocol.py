"""The sans-IO client state machine, byte for byte, with time as an argument.

Expected bytes are written out by hand from the MQTT 3.1.1 specification,
not produced by Midge's encoder, so an encoder bug cannot hide here.
"""

from __future__ import annotations

import pytest

from midge.client.errors import (
    ConnectionRefused,
    NotConnected,
    PacketIdsExhausted,
    SubscribeError,
)
from midge.client.events import (
    Connected,
    Message,
    MessageReceived,
    PublishCompleted,
    Refused,
    Subscribed,
    TimedOut,
    Unsubscribed,
)
from midge.client.protocol import ClientProtocol, ConnectOptions, Stage, State
from midge.protocol.errors import MalformedPacket, ProtocolError
from midge.protocol.packets import Will

CONNACK_OK = bytes.fromhex("20020000")
CONNACK_SESSION = bytes.fromhex("20020100")
PINGREQ = bytes.fromhex("c000")
PINGRESP = bytes.fromhex("d000")
DISCONNECT = bytes.fromhex("e000")


def ack(kind: int, packet_id: int) -> bytes:
    """PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70, UNSUBACK 0xB0."""
    return bytes((kind, 2)) + packet_id.to_bytes(2, "big")


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, **flags: bool) -> bytes:
    first = 0x30 | qos << 1 | (8 if flags.get("dup") else 0) | (1 if flags.get("retain") else 0)
    body = len(topic).to_bytes(2, "big") + topic.encode()
    body += packet_id.to_bytes(2, "big") if qos else b""
    body += payload
    return bytes((first, len(body))) + body


def connected(
    client_id: str = "c1", clean: bool = True, keepalive: int = 0, present: bool = False
) -> ClientProtocol:
    """A protocol that has sent CONNECT and read CONNACK 0 at time 0."""
    proto = ClientProtocol(ConnectOptions(client_id, clean, keepalive))
    proto.connect(0.0)
    proto.data_to_send()
    proto.receive_data(CONNACK_SESSION if present else CONNACK_OK, 0)
    assert proto.events_received()[0].__class__ is Connected
    return proto


def reconnect(proto: ClientProtocol, connack: bytes, now: float = 100.0) -> bytes:
    """Lose the connection, connect again, read `connack`; the bytes sent after CONNECT."""
    proto.connection_lost()
    proto.connect(now)
    proto.data_to_send()
    proto.receive_data(connack, now)
    assert proto.events_received() == [Connected(connack == CONNACK_SESSION)]
    return proto.data_to_send()


# ------------------------------------------------------------------ CONNECT


def test_connect_bytes_mqtt_3_1_1():
    proto = ClientProtocol(ConnectOptions("", keepalive=60))
    proto.connect(0.0)
    assert proto.data_to_send() == bytes.fromhex("100c00044d5154540402003c0000")
    assert proto.state is State.CONNECTING


def test_connect_bytes_mqtt_3_1_with_will_user_password():
    will = Will("w", b"x", qos=1, retain=True)
    options = ConnectOptions(
        "id", clean_session=False, keepalive=10, username="u", password=b"p",
        will=will, protocol_version=3,
    )  # fmt: skip
    proto = ClientProtocol(options)
    proto.connect(0.0)
    # MQIsdp, level 3, flags: user 0x80 | password 0x40 | will retain 0x20 | will QoS 1
    # 0x08 | will 0x04 = 0xEC; keep-alive 10; then id, will topic, will payload, user, password.
    body = (
        bytes.fromhex("00064d514973647003ec000a")
        + b"\x00\x02id" + b"\x00\x01w" + b"\x00\x01x" + b"\x00\x01u" + b"\x00\x01p"
    )  # fmt: skip
    assert proto.data_to_send() == bytes((0x10, len(body))) + body


def test_connack_accepted_reports_session_present():
    proto = connected("c1", clean=False, present=True)
    assert proto.state is State.CONNECTED
    assert proto.session_present is True


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (1, "unacceptable protocol version"),
        (2, "identifier rejected"),
        (3, "server unavailable"),
        (4, "bad user name or password"),
        (5, "not authorized"),
    ],
)
def test_refused_connack(code: int, meaning: str):
    proto = ClientProtocol(ConnectOptions("c1"))
    proto.connect(0.0)
    proto.receive_data(bytes((0x20, 2, 0, code)), 0.0)
    assert proto.events_received() == [Refused(code)]
    assert proto.state is State.DISCONNECTED
    error = ConnectionRefused(code)
    assert f"CONNACK {code} ({meaning})" in str(error)
    assert error.transient is (code == 3)


def test_session_present_for_a_clean_session_is_a_protocol_error():
    proto = ClientProtocol(ConnectOptions("c1"))
    proto.connect(0.0)
    with pytest.raises(ProtocolError, match="clean session"):
        proto.receive_data(CONNACK_SESSION, 0.0)
    assert proto.state is State.DISCONNECTED


@pytest.mark.parametrize(
    "data",
    [PINGRESP, ack(0x40, 1), bytes.fromhex("8206000100016100"), bytes.fromhex("c000")],
    ids=["pingresp-before-connack", "puback-before-connack", "subscribe", "pingreq"],
)
def test_unexpected_packets_are_protocol_errors(data: bytes):
    proto = ClientProtocol(ConnectOptions("c1"))
    proto.connect(0.0)
    if data in (bytes.fromhex("8206000100016100"), PINGREQ):
        proto.receive_data(CONNACK_OK, 0.0)  # never valid from a broker, in any state
    with pytest.raises(ProtocolError):
        proto.receive_data(data, 0.0)
    assert proto.state is State.DISCONNECTED


def test_garbage_is_malformed_and_the_packets_before_it_still_count():
    proto = connected()
    with pytest.raises(MalformedPacket):
        proto.receive_data(publish("t", b"ok", 1, 9) + b"\x00\x00", 1.0)
    assert proto.state is State.DISCONNECTED
    assert proto.events_received() == [MessageReceived(Message("t", b"ok", 1, packet_id=9))]
    assert proto.data_to_send() == ack(0x40, 9)  # may still be written before the close


def test_options_are_checked():
    with pytest.raises(ValueError, match="client_id"):
        ConnectOptions("", clean_session=False)
    with pytest.raises(ValueError, match="username"):
        ConnectOptions("c", password=b"p")
    ConnectOptions("c", password=b"p", protocol_version=3)  # 3.1 allows it
    with pytest.raises(ValueError, match="protocol_version"):
        ConnectOptions("c", protocol_version=6)
    with pytest.raises(ValueError, match="topic"):
        ConnectOptions("c", will=Will("a/#", b""))


# ---------------------------------------------------------------- packet ids


def test_packet_ids_count_up_wrap_and_skip_ids_in_use():
    proto = connected()
    assert [proto.publish("t", b"", 1, now=1) for _ in range(3)] == [1, 2, 3]
    proto.receive_data(ack(0x40, 2), 1)  # 2 is free again, but ids keep counting up
    assert proto.subscribe([("a", 0)], 1) == 4
    proto._next_id = 65535
    assert proto.publish("t", b"", 1, now=1) == 65535
    assert proto.publish("t", b"", 1, now=1) == 2  # wrapped; 1 is still in flight
    assert proto.unsubscribe(["a"], 1) == 5  # 3 and 4 in use


def test_packet_ids_exhausted():
    proto = ClientProtocol(ConnectOptions("c1"))  # disconnected: queued, nothing encoded
    for expected in range(1, 65536):
        assert proto.publish("t", b"", 1, now=0) == expected
    with pytest.raises(PacketIdsExhausted):
        proto.publish("t", b"", 1, now=0)


# -------------------------------------------------------- outgoing QoS flows


def test_qos0_publish_bytes():
    proto = connected()
    assert proto.publish("a/b", b"hi", 0, retain=True, now=1) is None
    assert proto.data_to_send() == bytes.fromhex("3107 0003 612f62 6869")


def test_qos1_outgoing_flow():
    proto = connected()
    packet_id = proto.publish("a/b", b"hi", 1, now=1)
    assert proto.data_to_send() == bytes.fromhex("3209 0003612f62 0001 6869")
    assert proto.in_flight() == [(1, Stage.PUBACK)]
    proto.receive_data(ack(0x40, 1), 2)
    assert proto.events_received() == [PublishCompleted(packet_id or 0)]
    assert proto.in_flight() == []


def test_qos2_outgoing_flow():
    proto = connected()
    proto.publish("a/b", b"hi", 2, now=1)
    assert proto.data_to_send() == bytes.fromhex("3409 0003612f62 0001 6869")
    proto.receive_data(ack(0x50, 1), 2)
    assert proto.data_to_send() == ack(0x62, 1)  # PUBREL
    assert proto.events_received() == []
    proto.receive_data(ack(0x50, 1), 2)  # a repeated PUBREC gets PUBREL again
    assert proto.data_to_send() == ack(0x62, 1)
    proto.receive_data(ack(0x70, 1), 3)
    assert proto.events_received() == [PublishCompleted(1)]


@pytest.mark.parametrize(
    ("qos", "reply", "match"),
    [
        (2, ack(0x40, 1), "PUBACK for QoS 2"),
        (2, ack(0x70, 1), "PUBCOMP for QoS 2 message 1 waiting for PUBREC"),
        (1, ack(0x50, 1), "PUBREC for QoS 1"),
        (1, ack(0x40, 9), "not in flight"),
        (0, bytes.fromhex("9003000900"), "no such SUBSCRIBE"),
        (0, ack(0xB0, 9), "no such UNSUBSCRIBE"),
    ],
)
def test_wrong_acknowledgements_are_protocol_errors(qos: int, reply: bytes, match: str):
    proto = connected()
    if qos:
        proto.publish("t", b"", qos, now=1)
    with pytest.raises(ProtocolError, match=match):
        proto.receive_data(reply, 2)


# -------------------------------------------------------- incoming QoS flows


def test_incoming_qos0_and_qos1():
    proto = connected()
    proto.receive_data(publish("a", b"0") + publish("b", b"1", 1, 7, retain=True), 1)
    assert proto.events_received() == [
        MessageReceived(Message("a", b"0")),
        MessageReceived(Message("b", b"1", 1, retain=True, packet_id=7)),
    ]
    assert proto.data_to_send() == ack(0x40, 7)


def test_incoming_qos2_is_delivered_exactly_once():
    proto = connected()
    proto.receive_data(publish("a", b"x", 2, 5), 1)
    assert proto.events_received() == [MessageReceived(Message("a", b"x", 2, packet_id=5))]
    assert proto.data_to_send() == ack(0x50, 5)
    proto.receive_data(publish("a", b"x", 2, 5, dup=True), 2)  # repeated before PUBREL
    assert proto.events_received() == []
    assert proto.data_to_send() == ack(0x50, 5)
    proto.receive_data(ack(0x62, 5), 3)
    assert proto.data_to_send() == ack(0x70, 5)
    proto.receive_data(publish("a", b"y", 2, 5), 4)  # the id is free again: a new message
    assert [e.message.payload for e in proto.events_received()] == [b"y"]  # type: ignore[union-attr]


def test_pubrel_for_an_unknown_id_gets_pubcomp():
    proto = connected()
    proto.receive_data(ack(0x62, 42), 1)
    assert proto.data_to_send() == ack(0x70, 42)


def test_incoming_qos2_ids_survive_a_reconnect_only_with_the_session():
    proto = connected("c1", clean=False)
    proto.receive_data(publish("a", b"x", 2, 5), 1)
    proto.events_received()
    reconnect(proto, CONNACK_SESSION)
    proto.receive_data(publish("a", b"x", 2, 5, dup=True), 101)
    assert proto.events_received() == []  # the broker re-sent it; we had it already
    reconnect(proto, CONNACK_OK, 200)  # the broker lost the session
    proto.receive_data(publish("a", b"x", 2, 5), 201)
    assert len(proto.events_received()) == 1


def test_bytes_may_arrive_one_at_a_time():
    proto = ClientProtocol(ConnectOptions("c1"))
    proto.connect(0)
    for byte in CONNACK_OK + publish("t", b"abc", 1, 3):
        proto.receive_data(bytes((byte,)), 1)
    events = proto.events_received()
    assert events[1:] == [MessageReceived(Message("t", b"abc", 1, packet_id=3))]


# -------------------------------------------------------------- reconnecting


def test_resend_after_reconnect_keeps_the_original_order_with_dup():
    """[MQTT-4.4.0-1]: PUBLISH (DUP) and PUBREL, in the order first sent."""
    proto = connected("c1", clean=False)
    proto.publish("a", b"1", 1, now=1)
    proto.publish("b", b"2", 2, now=1)
    proto.publish("c", b"3", 2, now=1)
    proto.publish("d", b"4", 1, now=1)
    proto.receive_data(ack(0x50, 3), 2)  # message 3 is past PUBREC
    proto.data_to_send()
    resent = reconnect(proto, CONNACK_SESSION)
    assert resent == (
        publish("a", b"1", 1, 1, dup=True)
        + publish("b", b"2", 2, 2, dup=True)
        + ack(0x62, 3)
        + publish("d", b"4", 1, 4, dup=True)
    )
    assert proto.in_flight() == [
        (1, Stage.PUBACK), (2, Stage.PUBREC), (3, Stage.PUBCOMP), (4, Stage.PUBACK)
    ]  # fmt: skip
    for reply in (ack(0x40, 1), ack(0x50, 2), ack(0x70, 3), ack(0x40, 4)):
        proto.receive_data(reply, 101)
    assert proto.events_received() == [
        PublishCompleted(1), PublishCompleted(3), PublishCompleted(4)
    ]  # fmt: skip
    assert proto.data_to_send() == ack(0x62, 2)


def test_the_inflight_window_holds_messages_back_in_order():
    proto = ClientProtocol(ConnectOptions("c1", clean_session=False), max_inflight=2)
    proto.connect(0)
    proto.receive_data(CONNACK_OK, 0)
    proto.data_to_send()
    for payload in (b"1", b"2", b"3", b"4"):
        proto.publish("t", payload, 1, now=1)
    assert proto.data_to_send() == publish("t", b"1", 1, 1) + publish("t", b"2", 1, 2)
    proto.receive_data(ack(0x40, 2), 2)
    assert proto.data_to_send() == publish("t", b"3", 1, 3)
    assert proto.events_received() == [Connected(False), PublishCompleted(2)]
    resent = reconnect(proto, CONNACK_SESSION)  # 1 and 3 again (DUP); 4 waits for room
    assert resent == publish("t", b"1", 1, 1, dup=True) + publish("t", b"3", 1, 3, dup=True)
    proto.receive_data(ack(0x40, 1), 101)
    assert proto.data_to_send() == publish("t", b"4", 1, 4)
    assert proto.in_flight() == [(3, Stage.PUBACK), (4, Stage.PUBACK)]


def test_messages_published_while_disconnected_go_out_after_connack_without_dup():
    proto = connected("c1", clean=False)
    proto.connection_lost()
    assert proto.publish("a", b"q", 1, now=5) == 1
    with pytest.raises(NotConnected):
        proto.publish("a", b"q0", 0, now=5)  # at most once: not queued
    proto.connect(6)
    assert proto.data_to_send()[:1] == b"\x10"  # CONNECT and nothing else before CONNACK
    proto.receive_data(CONNACK_OK, 6)
    assert proto.data_to_send() == publish("a", b"q", 1, 1)


def test_resubscribe_when_the_broker_kept_no_session():
    proto = connected()
    proto.subscribe([("a/#", 1), ("b", 2)], 1)
    proto.data_to_send()
    proto.receive_data(bytes.fromhex("9004 0001 0180"), 1)  # b refused
    assert proto.events_received() == [Subscribed(1, ("a/#", "b"), (1, 0x80))]
    assert proto.granted() == {"a/#": 1}
    assert reconnect(proto, CONNACK_OK) == bytes.fromhex("8208 0002 0003612f23 01")
    proto.receive_data(bytes.fromhex("9003000201"), 101)
    assert proto.events_received() == [Subscribed(2, ("a/#",), (1,))]


def test_no_resubscribe_when_the_session_is_present():
    proto = connected("c1", clean=False)
    proto.subscribe([("a", 1)], 1)
    proto.receive_data(bytes.fromhex("9003000101"), 1)
    proto.data_to_send()
    proto.events_received()
    assert reconnect(proto, CONNACK_SESSION) == b""


def test_unacknowledged_requests_are_sent_again():
    proto = connected()
    proto.subscribe([("a", 0)], 1)
    proto.unsubscribe(["a"], 1)
    sent = proto.data_to_send()
    assert reconnect(proto, CONNACK_OK) == sent
    proto.receive_data(bytes.fromhex("9003000100") + ack(0xB0, 2), 101)
    assert proto.events_received() == [Subscribed(1, ("a",), (0,)), Unsubscribed(2)]
    assert proto.granted() == {}


def test_suback_must_have_one_code_per_filter():
    proto = connected()
    proto.subscribe([("a", 0), ("b", 0)], 1)
    with pytest.raises(ProtocolError, match="1 return codes for 2 filters"):
        proto.receive_data(bytes.fromhex("9003000100"), 1)


def test_subscribe_error_names_the_refused_filters():
    error = SubscribeError(("a", "b", "c"), (0, 0x80, 0x80))
    assert "b, c" in str(error) and "a," not in str(error)


# ---------------------------------------------------------------- keep-alive


def test_keepalive_sends_pingreq_when_idle_and_expects_pingresp():
    proto = connected(keepalive=10)
    assert proto.timer_deadline() == 10
    proto.handle_timer(9.9)
    assert proto.data_to_send() == b""
    proto.handle_timer(10)
    assert proto.data_to_send() == PINGREQ
    assert proto.timer_deadline() == 20  # PINGRESP due by then
    proto.receive_data(PINGRESP, 12)
    assert proto.timer_deadline() == 20  # nothing sent since 10
    proto.handle_timer(20)
    assert proto.data_to_send() == PINGREQ
    proto.handle_timer(29.9)
    assert proto.events_received() == []
    proto.handle_timer(30)
    assert proto.events_received() == [TimedOut(18)]  # last packet received at 12
    assert proto.state is State.DISCONNECTED


def test_a_busy_publisher_still_notices_a_silent_broker():
    """Sending alone does not prove the broker is there: silence triggers PINGREQ."""
    proto = connected(keepalive=10)
    for second in range(1, 10):
        proto.publish("t", b"", 0, now=second)
    proto.handle_timer(10)  # nothing received for 10 s
    assert proto.data_to_send().endswith(PINGREQ)


def test_keepalive_zero_has_no_timer():
    proto = connected(keepalive=0)
    assert proto.timer_deadline() is None


# -------------------------------------------------------------------- close


def test_disconnect_sends_disconnect_and_closes_for_good():
    proto = connected()
    proto.disconnect(5)
    assert proto.data_to_send() == DISCONNECT
    assert proto.state is State.CLOSED
    with pytest.raises(NotConnected):
        proto.publish("t", b"", 1, now=6)
    proto.receive_data(publish("t", b"late"), 6)  # ignored after close
    assert proto.events_received() == []


def test_oversized_publish_is_refused_before_any_state_changes(monkeypatch: pytest.MonkeyPatch):
    from midge.client import protocol  # noqa: PLC0415

    monkeypatch.setattr(protocol, "MAX_REMAINING_LENGTH", 10)
    proto = connected()
    with pytest.raises(ValueError, match="exceeds"):
        proto.publish("t", b"x" * 6, 1, now=1)
    assert proto.in_flight() == [] and proto.data_to_send() == b""
