"""The asyncio client speaking MQTT 5.0 to Midge and Debian's Mosquitto 2.0.11.

The brokers run on ephemeral loopback ports (tests/brokers.py); a Mosquitto with
limits (Receive Maximum 3, Maximum Packet Size 300, an ACL) shows that the
client honours what a CONNACK says and reports reason codes. Every wait is
bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_support import HOST, WAIT, fake_broker, read_packet, unique

from brokers import Broker, mosquitto_binary, start_mosquitto
from midge.client import (
    Client,
    ConnectionLost,
    ConnectionRefused,
    PacketTooLarge,
    Properties,
    PublishError,
    Subscription,
)
from midge.protocol.codec import Decoder, encode
from midge.protocol.packets import ConnAck, Disconnect, Packet, Publish

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed"),
]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Mosquitto with Receive Maximum 3, Maximum Packet Size 300 and an ACL."""
    acl: Path = tmp_path_factory.mktemp("acl") / "acl"
    acl.write_text("topic readwrite ok/#\ntopic read ro/#\n", encoding="utf-8")
    conf = f"max_inflight_messages 3\nmax_packet_size 300\nacl_file {acl}\nuser root\n"
    with start_mosquitto(conf) as broker:
        yield broker


def v5(broker: Broker, **kwargs: object) -> Client:
    host, port, _ = broker
    return Client(host, port, protocol_version=5, **kwargs)  # type: ignore[arg-type]


async def test_properties_reach_the_subscriber(broker: Broker):
    topic = unique("p5/")
    props = Properties(
        payload_format_indicator=1,
        message_expiry_interval=60,
        content_type="text/plain",
        response_topic=f"{topic}/reply",
        correlation_data=b"\x00\x01",
        user_properties=(("k", "v"), ("k", "w")),
    )
    async with v5(broker) as sub, v5(broker) as pub:
        sub_id = Properties(subscription_identifiers=(42,))
        assert await sub.subscribe(f"{topic}/#", 1, properties=sub_id) == [1]
        assert await pub.publish(f"{topic}/a", "hi", 1, properties=props) == 0
        message = await sub.messages().get(WAIT)
    assert (message.topic, message.payload) == (f"{topic}/a", b"hi")
    got = message.properties
    assert got is not None
    assert got.user_properties == (("k", "v"), ("k", "w"))
    assert (got.content_type, got.correlation_data) == ("text/plain", b"\x00\x01")
    assert (got.response_topic, got.payload_format_indicator) == (f"{topic}/reply", 1)
    assert got.subscription_identifiers == (42,)
    assert 0 < (got.message_expiry_interval or 0) <= 60


async def test_assigned_client_id_and_connack_limits(limited: Broker):
    async with v5(limited) as client:
        assert client.client_id.startswith("auto-")  # Mosquitto's assigned identifier
        assert client.limits.receive_maximum == 3
        assert client.limits.maximum_packet_size == 300


async def test_receive_maximum_is_never_exceeded(limited: Broker):
    outstanding, peak = set(), 0

    def trace(direction: str, packet: Packet) -> None:
        nonlocal peak
        if direction == "sent" and isinstance(packet, Publish) and packet.qos:
            outstanding.add(packet.packet_id)
            peak = max(peak, len(outstanding))
        elif direction == "received" and not isinstance(packet, Publish):
            outstanding.discard(getattr(packet, "packet_id", None))

    async with v5(limited, trace=trace, max_inflight=0) as client:
        codes = await asyncio.gather(*(client.publish("ok/rm", b"%d" % i, 1) for i in range(30)))
    assert codes == [0x10] * 30  # no matching subscribers, every one acknowledged
    assert peak == 3


async def test_packet_too_large_is_refused_and_the_connection_lives_on(limited: Broker):
    async with v5(limited) as client:
        with pytest.raises(PacketTooLarge, match="300 bytes"):
            await client.publish("ok/big", b"x" * 400, 1)
        assert await client.publish("ok/small", b"x", 1) == 0x10


async def test_puback_refusal_raises_publish_error(limited: Broker):
    async with v5(limited) as client:
        with pytest.raises(PublishError, match=r"not authorized \(0x87\)") as caught:
            await client.publish("ro/x", b"", 1)
        assert caught.value.reason_code == 0x87
        assert await client.publish("ok/x", b"", 1) == 0x10  # still connected


async def test_topic_aliases_are_used_and_resolved(broker: Broker):
    topic = unique("alias/")
    wire: list[Publish] = []

    def trace(direction: str, packet: Packet) -> None:
        if direction == "sent" and isinstance(packet, Publish):
            wire.append(packet)

    async with v5(broker) as sub, v5(broker, trace=trace) as pub:
        assert pub.limits.topic_alias_maximum > 0
        await sub.subscribe(topic, 1)
        for index in range(4):
            await pub.publish(topic, b"%d" % index, 1)
        received = [await sub.messages().get(WAIT) for _ in range(4)]
    assert [m.topic for m in received] == [topic] * 4
    assert [m.payload for m in received] == [b"0", b"1", b"2", b"3"]
    assert [p.topic for p in wire] == [topic, topic, "", ""]


async def test_no_local_and_retain_handling(broker: Broker):
    topic = unique("opt/")
    async with v5(broker) as client, v5(broker) as other:
        await other.publish(f"{topic}/kept", b"old", 1, retain=True)
        await client.subscribe([Subscription(f"{topic}/#", 1, no_local=True, retain_handling=2)])
        await client.publish(f"{topic}/mine", b"mine", 1)
        await other.publish(f"{topic}/theirs", b"theirs", 1)
        message = await client.messages().get(WAIT)
        await other.publish(f"{topic}/kept", b"", 1, retain=True)
    assert (message.topic, message.payload) == (f"{topic}/theirs", b"theirs")


async def test_retain_as_published(broker: Broker):
    topic = unique("rap/")
    async with v5(broker) as client:
        await client.subscribe(topic, 1, retain_as_published=True)
        await client.publish(topic, b"r", 1, retain=True)
        message = await client.messages().get(WAIT)
        await client.publish(topic, b"", 1, retain=True)
    assert message.retain  # without the option Mosquitto clears it on live delivery


async def test_request_and_reply(broker: Broker):
    service = unique("svc/")
    async with v5(broker) as requester, v5(broker) as responder:
        await responder.subscribe(service, 1)

        async def serve() -> None:
            async for question in responder.messages():
                await responder.reply(question, b"re:" + question.payload)

        server = asyncio.create_task(serve())
        answers = await asyncio.gather(
            *(requester.request(service, b"q%d" % i, timeout=WAIT) for i in range(5))
        )
        server.cancel()
    assert [a.payload for a in answers] == [b"re:q%d" % i for i in range(5)]
    with pytest.raises(TimeoutError):
        async with v5(broker) as lonely:
            await lonely.request(unique("nobody/"), b"?", timeout=0.3)


@pytest.mark.parametrize("reconnect", [False, True])
async def test_server_disconnect_is_reported_with_its_reason(reconnect: bool):
    """Mosquitto 2.0.11 closes a taken-over session without DISCONNECT: a fake broker
    sends one; 0x8E (session taken over) ends the client even with reconnect on."""
    connections = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_packet(reader, Decoder(5))
        why = Properties(reason_string="another client took it")
        writer.write(encode(ConnAck(0), 5) + encode(Disconnect(0x8E, why), 5))
        await reader.read(100)

    async with fake_broker(script) as port:
        client = Client(HOST, port, protocol_version=5, reconnect=reconnect)
        async with client:
            with pytest.raises(ConnectionLost) as lost:
                await client.messages().get(WAIT)
    assert lost.value.reason_code == 0x8E
    assert str(lost.value).endswith("session taken over (0x8E): another client took it")
    assert connections == 1


async def test_session_expiry_keeps_the_session(broker: Broker):
    identity, topic = unique("se"), unique("se/")
    expiry = Properties(session_expiry_interval=30)
    async with v5(broker, client_id=identity, clean_session=False, properties=expiry) as c:
        await c.subscribe(topic, 1)
    async with v5(broker) as pub:
        await pub.publish(topic, b"queued", 1)
    async with v5(broker, client_id=identity, clean_session=False, properties=expiry) as c:
        assert c.session_present
        message = await c.messages().get(WAIT)
        await c.disconnect(properties=Properties(session_expiry_interval=0))
    assert message.payload == b"queued"


async def test_refusal_carries_the_5_0_reason_code(auth_brokers: dict[str, Broker]):
    # Mosquitto 2.0.11 answers a wrong password with 0x87, not 0x86
    with pytest.raises(ConnectionRefused, match=r"CONNACK 135 \(not authorized\)"):
        async with v5(auth_brokers["mosquitto"], username="alice", password="wrong"):
            pass
