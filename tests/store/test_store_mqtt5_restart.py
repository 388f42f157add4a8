"""MQTT 5.0 state through a broker restart (a crash, or a clean stop), on both
stores: session expiry keeps counting from when the client left, a queued
message keeps its properties and expiry, shared subscriptions come back."""

from __future__ import annotations

from collections.abc import Callable

from midge.protocol.packets import ConnAck, Publish, Subscribe, Subscription
from midge.protocol.properties import Properties
from sansio import WALL_START, Client, Harness

MakeNode = Callable[..., Harness]


def _connect5(
    node: Harness, client_id: str, expiry: int, clean: bool = True
) -> tuple[Client, list]:
    client = node.open()
    answer = client.connect(
        client_id,
        clean_session=clean,
        level=5,
        properties=Properties(session_expiry_interval=expiry),
    )
    assert isinstance(answer[0], ConnAck) and answer[0].return_code == 0, answer
    return client, answer


def _subscribe(client: Client, topic_filter: str) -> None:
    client.send(Subscribe(client.next_id(), (Subscription(topic_filter, 1),)))
    client.received()


def test_a_queued_5_0_message_survives_a_crash_with_its_properties(make_node: MakeNode) -> None:
    node = make_node()
    sub, _ = _connect5(node, "sub", expiry=300)
    _subscribe(sub, "t")
    sub.drop()
    pub, _ = _connect5(node, "pub", expiry=0)
    pub.send(
        Publish(
            "t",
            b"kept",
            1,
            packet_id=1,
            properties=Properties(
                user_properties=(("b", "2"), ("a", "1")),
                correlation_data=b"\x01",
                message_expiry_interval=100,
            ),
        )
    )
    pub.received()
    node.wall = WALL_START + 40
    node.restart()  # a crash: the new process starts from the store
    _, answer = _connect5(node, "sub", expiry=300, clean=False)
    assert answer[0].session_present
    (message,) = [p for p in answer if isinstance(p, Publish)]
    assert message.payload == b"kept"
    assert message.properties is not None
    assert message.properties.user_properties == (("b", "2"), ("a", "1"))
    assert message.properties.correlation_data == b"\x01"
    assert message.properties.message_expiry_interval == 60  # 100 s less the 40 away


def test_session_expiry_counts_across_a_restart(make_node: MakeNode) -> None:
    node = make_node()
    short, _ = _connect5(node, "short", expiry=20)
    _subscribe(short, "t")
    short.drop()  # offline since WALL_START
    long, _ = _connect5(node, "long", expiry=3600)
    _subscribe(long, "t")
    long.drop()
    node.wall = WALL_START + 25
    node.restart()
    node.fire(1)  # the first timer tick after the restart
    assert "short" not in node.broker.sessions
    assert "long" in node.broker.sessions
    _, answer = _connect5(node, "long", expiry=3600, clean=False)
    assert answer[0].session_present


def test_a_shared_subscription_comes_back_after_a_restart(make_node: MakeNode) -> None:
    node = make_node()
    member, _ = _connect5(node, "member", expiry=300)
    _subscribe(member, "$share/g/t")
    member.drop()
    node.restart()
    back, _ = _connect5(node, "member", expiry=300, clean=False)
    pub, _ = _connect5(node, "pub", expiry=0)
    pub.send(Publish("t", b"to the group", 1, packet_id=1))
    assert [p.payload for p in back.received() if isinstance(p, Publish)] == [b"to the group"]
