"""The asyncio client against real brokers (Midge and Debian's Mosquitto) and scripted fakes.

Real brokers run on ephemeral loopback ports (tests/brokers.py); fakes
(client_support.fake_broker) do what real brokers will not do on demand:
go silent, break the protocol, hang up with a message in flight.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from client_support import HOST, WAIT, abort, fake_broker, read_packet, unique, wait_until

from brokers import Broker, free_port, start_midge, stop
from certificates import Certificates
from midge.client import (
    CannotConnect,
    Client,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    KeepAliveTimeout,
    SubscribeError,
    Will,
)
from midge.protocol.codec import Decoder
from midge.protocol.errors import MalformedPacket
from midge.protocol.packets import PubAck, Publish, Subscribe

pytestmark = pytest.mark.timeout(30)

CONNACK_OK = bytes.fromhex("20020000")


# ------------------------------------------------------------ publish/subscribe


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
async def test_publish_and_receive_at_each_qos(broker: Broker, pub_qos: int, sub_qos: int):
    """Both flows of every QoS: ours to the broker, and the broker's to us, at min(pub, sub)."""
    host, port, _ = broker
    topic = unique("q/")
    async with Client(host, port) as sub, Client(host, port) as pub:
        assert await sub.subscribe(f"{topic}/#", sub_qos) == [sub_qos]
        payloads = [f"m{i}".encode() for i in range(10)]
        for payload in payloads:
            await pub.publish(f"{topic}/x", payload, qos=pub_qos)
        received = [await sub.messages().get(WAIT) for _ in payloads]
    assert [m.payload for m in received] == payloads
    assert {(m.topic, m.qos, m.retain) for m in received} == {
        (f"{topic}/x", min(pub_qos, sub_qos), False)
    }


@pytest.mark.parametrize("qos", [1, 2])
async def test_many_in_flight_at_once_complete_in_order(broker: Broker, qos: int):
    host, port, _ = broker
    topic = unique("f/")
    count = 300
    async with Client(host, port) as sub, Client(host, port) as pub:
        await sub.subscribe(topic, qos)
        async with asyncio.timeout(15):
            await asyncio.gather(*(pub.publish(topic, str(i), qos) for i in range(count)))
            received = [(await sub.messages().get()).payload for _ in range(count)]
    assert received == [str(i).encode() for i in range(count)]
    assert pub.protocol.in_flight() == []


async def test_mqtt_3_1_and_filtered_streams(broker: Broker):
    host, port, _ = broker
    topic = unique("v3/")
    async with Client(host, port, protocol_version=3) as client:
        assert len(client.client_id) <= 23  # generated: 3.1 has no empty ids
        await client.subscribe([(f"{topic}/a/+", 1), (f"{topic}/b", 0)])
        async with client.messages(f"{topic}/a/+") as only_a:
            await client.publish(f"{topic}/b", "to inbox", qos=1)
            await client.publish(f"{topic}/a/1", "to stream", qos=1)
            assert (await only_a.get(WAIT)).payload == b"to stream"
            assert (await client.messages().get(WAIT)).payload == b"to inbox"


async def test_retained_messages(broker: Broker):
    host, port, _ = broker
    topic = unique("r/")
    async with Client(host, port) as pub:
        await pub.publish(topic, "kept", qos=1, retain=True)
        async with Client(host, port) as sub:
            await sub.subscribe(topic, 1)
            first = await sub.messages().get(WAIT)
            assert (first.payload, first.retain) == (b"kept", True)
            await pub.publish(topic, "live", qos=1, retain=True)
            live = await sub.messages().get(WAIT)
            assert (live.payload, live.retain) == (b"live", False)  # to existing subscribers
        await pub.publish(topic, b"", qos=1, retain=True)  # deletes it
        async with Client(host, port) as late:
            await late.subscribe(topic, 1)
            await pub.publish(topic, "marker", qos=1)
            assert (await late.messages().get(WAIT)).payload == b"marker"


async def test_will_on_abnormal_close_only(broker: Broker):
    host, port, _ = broker
    topic = unique("w/")
    async with Client(host, port) as watcher:
        await watcher.subscribe(f"{topic}/#", 1)
        polite = Client(host, port, will=Will(f"{topic}/polite", b"never", 1))
        await polite.connect()
        await polite.disconnect()  # DISCONNECT: the broker drops the will
        crashing = Client(host, port, will=Will(f"{topic}/crashed", b"gone", 1, retain=False))
        await crashing.connect()
        abort(crashing)
        will = await watcher.messages().get(WAIT)
        assert (will.topic, will.payload, will.qos) == (f"{topic}/crashed", b"gone", 1)
        with pytest.raises(ConnectionLost):
            await crashing.publish(f"{topic}/x", "after the crash", qos=1)
        await crashing.disconnect()


# --------------------------------------------------------------------- refused


# Mosquitto 2.0 answers a wrong password with 5 (not authorized), Midge with 4.
WRONG_PASSWORD = {"midge": 4, "mosquitto": 5}


@pytest.mark.parametrize("name", ["midge", "mosquitto"])
async def test_refused_connack_names_the_code(auth_brokers: dict[str, Broker], name: str):
    host, port, _ = auth_brokers[name]
    with pytest.raises(ConnectionRefused) as wrong:
        await Client(host, port, username="alice", password="wrong").connect()
    code = WRONG_PASSWORD[name]
    assert wrong.value.return_code == code
    meaning = {4: "bad user name or password", 5: "not authorized"}[code]
    assert f"CONNACK {code} ({meaning})" in str(wrong.value)
    with pytest.raises(ConnectionRefused, match=r"CONNACK 5 \(not authorized\)"):
        await Client(host, port).connect()  # anonymous
    async with Client(host, port, username="alice", password="s3cret") as ok:
        assert await ok.subscribe("auth/#", 1) == [1]


# ------------------------------------------------------------ failing cleanly


async def test_connect_errors_are_clear():
    port = free_port()  # nothing listens there now
    with pytest.raises(CannotConnect, match=f"{HOST}:{port}: Connection refused"):
        await Client(HOST, port).connect()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(WAIT)

    async with fake_broker(silent) as port:
        with pytest.raises(ConnectTimeout, match=f"0.3 s waiting for CONNACK from {HOST}:{port}"):
            await Client(HOST, port, connect_timeout=0.3).connect()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_packet(reader, Decoder())

    async with fake_broker(hang_up) as port:
        with pytest.raises(ConnectionLost, match="before CONNACK"):
            await Client(HOST, port).connect()


async def test_lost_connection_fails_every_waiting_call():
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder()
        await read_packet(reader, decoder)  # CONNECT
        writer.write(CONNACK_OK)
        subscribe = await read_packet(reader, decoder)
        assert isinstance(subscribe, Subscribe)
        writer.write(bytes.fromhex("9003") + subscribe.packet_id.to_bytes(2, "big") + b"\x01")
        assert isinstance(await read_packet(reader, decoder), Publish)  # never acknowledged

    async with fake_broker(script) as port:
        client = Client(HOST, port)
        await client.connect()
        await client.subscribe("a", 1)
        stream = client.messages("a")
        with pytest.raises(ConnectionLost, match="closed the connection"):
            await asyncio.wait_for(client.publish("a", "x", qos=1), WAIT)
        with pytest.raises(ConnectionLost):
            await stream.get(WAIT)
        with pytest.raises(ConnectionLost):
            await client.messages().get(WAIT)
        with pytest.raises(ConnectionLost):
            await client.subscribe("b")
        await client.disconnect()


async def test_broker_stopping_ends_the_message_stream():
    with start_midge() as (host, port, process):
        async with Client(host, port) as client:
            await client.subscribe("x/#")
            await asyncio.to_thread(stop, process)
            with pytest.raises(ConnectionLost):
                await client.messages().get(WAIT)


async def test_silent_broker_is_caught_by_keepalive():
    async def no_pingresp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder()
        await read_packet(reader, decoder)
        writer.write(CONNACK_OK)
        while True:
            await read_packet(reader, decoder)  # PINGREQ, unanswered

    async with fake_broker(no_pingresp) as port:
        loop = asyncio.get_running_loop()
        async with Client(HOST, port, keepalive=1) as client:
            started = loop.time()
            with pytest.raises(ConnectionLost, match="keep-alive") as lost:
                await client.messages().get(WAIT)
            assert isinstance(lost.value.__cause__, KeepAliveTimeout)
            assert 1.5 <= loop.time() - started < 4  # PINGREQ at 1 s, given up at 2 s


@pytest.mark.parametrize(
    ("after_connack", "error"),
    [
        (b"\xf0\x00", MalformedPacket),  # reserved packet type 15
        (bytes.fromhex("9003 0001 80"), SubscribeError),  # filter refused (0x80)
    ],
)
async def test_broker_faults_are_reported_not_swallowed(after_connack: bytes, error: type):
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder()
        await read_packet(reader, decoder)
        writer.write(CONNACK_OK)
        await read_packet(reader, decoder)  # SUBSCRIBE, id 1
        writer.write(after_connack)
        await asyncio.sleep(WAIT)

    async with fake_broker(script) as port, Client(HOST, port) as client:
        with pytest.raises((ConnectionLost, SubscribeError)) as raised:
            await asyncio.wait_for(client.subscribe("a/#", 1), WAIT)
        if error is SubscribeError:
            assert isinstance(raised.value, SubscribeError)
            assert raised.value.granted == (0x80,)
        else:
            assert "broke the MQTT protocol" in str(raised.value)
            assert isinstance(raised.value.__cause__, ConnectionLost)
            assert isinstance(raised.value.__cause__.__cause__, error)


async def test_messages_before_a_malformed_packet_are_delivered_and_acknowledged():
    acks: list[object] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder()
        await read_packet(reader, decoder)
        writer.write(CONNACK_OK)
        await read_packet(reader, decoder)  # SUBSCRIBE
        # SUBACK, a QoS 1 PUBLISH (id 7), then a reserved packet type, in one write
        writer.write(bytes.fromhex("9003 0001 01 3207 0001 61 0007 6f6b f000"))
        acks.append(await read_packet(reader, decoder))
        await asyncio.sleep(WAIT)

    async with fake_broker(script) as port, Client(HOST, port) as client:
        assert await client.subscribe("a", 1) == [1]
        message = await client.messages().get(WAIT)
        assert (message.topic, message.payload, message.packet_id) == ("a", b"ok", 7)
        with pytest.raises(ConnectionLost, match="broke the MQTT protocol"):
            await client.messages().get(WAIT)
        await wait_until(lambda: bool(acks))
        assert acks == [PubAck(7)]


# ------------------------------------------------------------------ reconnect


async def test_auto_reconnect_resubscribes_and_finishes_waiting_publishes(
    mosquitto_broker: Broker,
):
    host, port, _ = mosquitto_broker
    topic = unique("re/")
    async with Client(host, port, reconnect=True, reconnect_min_delay=0.05) as client:
        await client.subscribe(topic, 1)
        abort(client)
        # Published into the dying connection: kept, re-sent with DUP after reconnecting.
        done = asyncio.gather(*(client.publish(topic, f"p{i}", qos=i % 2 + 1) for i in range(6)))
        await asyncio.wait_for(done, WAIT)
        received = sorted([(await client.messages().get(WAIT)).payload for _ in range(6)])
        assert received == [f"p{i}".encode() for i in range(6)]
        assert client.connected and not client.session_present


async def test_persistent_qos2_session_survives_a_midge_restart(tmp_path: Path):
    """Publisher and subscriber keep persistent sessions and reconnect on their own
    while the broker restarts on its data dir: every QoS 2 message arrives exactly once."""
    port = free_port()
    args = ["--data-dir", str(tmp_path / "data"), "--port", str(port)]
    topic = unique("dur/")
    options = {"clean_session": False, "reconnect": True, "reconnect_max_delay": 0.2}
    sub = Client(HOST, port, client_id=unique("ds"), **options)  # type: ignore[arg-type]
    pub = Client(HOST, port, client_id=unique("dp"), **options)  # type: ignore[arg-type]
    count = 80
    with start_midge(extra_args=args) as (_, _, process):
        await sub.connect()
        await sub.subscribe(topic, 2)
        await pub.connect()
        first = [asyncio.create_task(pub.publish(topic, str(i), 2)) for i in range(count // 2)]
        await asyncio.sleep(0)  # some go out, then the broker stops under them
        await asyncio.to_thread(stop, process)
    with start_midge(extra_args=args):
        second = [pub.publish(topic, str(i), 2) for i in range(count // 2, count)]
        async with asyncio.timeout(20):
            await asyncio.gather(*first, *second)
            received = [(await sub.messages().get()).payload for _ in range(count)]
        assert sorted(received, key=int) == [str(i).encode() for i in range(count)]
        await asyncio.sleep(0.3)
        assert sub.messages()._queue.empty()  # nothing delivered twice
        assert sub.session_present and pub.session_present
        await sub.unsubscribe(topic)
        await pub.disconnect()
        await sub.disconnect()


# ------------------------------------------------------------------------ TLS


async def test_tls_connection(tls_mosquitto: tuple[Broker, int], tls_files: Certificates):
    import ssl  # noqa: PLC0415

    _, port = tls_mosquitto
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    async with Client(HOST, port, ssl=context) as client:
        await client.subscribe("tls/t", 2)
        await client.publish("tls/t", "secret", qos=2)
        assert (await client.messages().get(WAIT)).payload == b"secret"
    with pytest.raises(CannotConnect, match="TLS error"):
        await Client(HOST, port, ssl=ssl.create_default_context()).connect()  # unknown CA
