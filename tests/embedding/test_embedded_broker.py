"""midge.Broker in the test's own event loop: lifecycle, in-process publish and
subscribe, views, disconnect, and a network client (midge.client over TCP)
beside the in-process ones."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

import midge
from midge.client import Client, ConnectionLost, Properties, SubscribeError, Will
from midge.client.errors import CannotConnect

WAIT = 5.0


async def test_port_0_is_bound_and_reported_and_served() -> None:
    async with midge.Broker(port=0, store="memory") as broker:
        (listener,) = broker.listeners
        assert listener.host == "127.0.0.1"
        assert listener.port > 0 and listener.port == broker.port
        assert (listener.transport, listener.label) == ("tcp", "mqtt")
        async with Client("127.0.0.1", broker.port, client_id="net") as client:
            await client.subscribe("t/#", qos=1)
            await broker.publish("t/1", b"from the app", qos=1)
            message = await client.messages().get(WAIT)
        assert (message.topic, message.payload, message.qos) == ("t/1", b"from the app", 1)
    with pytest.raises(CannotConnect):
        async with Client("127.0.0.1", listener.port, connect_timeout=2):
            pass


async def test_no_signal_handler_is_installed() -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    loop = asyncio.get_running_loop()
    async with midge.Broker(port=0, store="memory"):
        assert {s: signal.getsignal(s) for s in before} == before
        # asyncio's own registry of loop signal handlers stays empty too
        assert not getattr(loop, "_signal_handlers", {})


async def test_in_process_subscription_gets_network_publishes() -> None:
    async with midge.Broker(port=0, store="memory") as broker:
        subscription = broker.subscribe("sensors/+/temperature")
        async with subscription as messages, Client("127.0.0.1", broker.port) as client:
            await client.publish("sensors/kitchen/temperature", b"21.5", qos=1)
            await client.publish("sensors/kitchen/humidity", b"40", qos=1)
            await client.publish("sensors/hall/temperature", b"19", qos=0)
            first = await messages.get(WAIT)
            second = await messages.get(WAIT)
            with pytest.raises(TimeoutError):
                await messages.get(0.2)
        assert [(m.topic, m.payload) for m in (first, second)] == [
            ("sensors/kitchen/temperature", b"21.5"),
            ("sensors/hall/temperature", b"19"),
        ]
        await asyncio.sleep(0.05)  # the broker handles the DISCONNECT
        assert broker.clients() == []  # the subscription's own client left with it


async def test_publish_with_properties_and_retain() -> None:
    async with midge.Broker(port=0, store="memory") as broker:
        properties = Properties(user_properties=(("source", "app"),), content_type="text/plain")
        code = await broker.publish("r/1", "kept", qos=1, retain=True, properties=properties)
        assert code == 0x10  # nobody subscribed yet: No matching subscribers
        async with Client("127.0.0.1", broker.port, protocol_version=5) as client:
            await client.subscribe("r/#", qos=1)
            message = await client.messages().get(WAIT)
        assert message.retain and message.payload == b"kept"
        assert message.properties is not None
        assert message.properties.user_properties == (("source", "app"),)
        assert message.properties.content_type == "text/plain"
        (retained,) = broker.retained("r/+")
        assert (retained.topic, retained.payload, retained.qos) == ("r/1", b"kept", 1)
        assert broker.retained("other/#") == []
        await broker.publish("r/1", b"", retain=True)  # an empty payload deletes it
        assert broker.retained() == []


async def test_views_of_clients_sessions_and_subscriptions(tmp_path: Path) -> None:
    async with midge.Broker(port=0, data_dir=str(tmp_path)) as broker:
        async with Client(
            "127.0.0.1", broker.port, client_id="keeper", clean_session=False, username="ann"
        ) as client:
            await client.subscribe([("a/#", 1), ("b", 0)])
            (info,) = [c for c in broker.clients() if c.client_id == "keeper"]
            assert info.username == "ann" and info.protocol_version == 4
            assert info.listener == "mqtt" and info.persistent
            assert info.address.startswith("127.0.0.1:")
            assert broker.get_client("keeper") == info
        await asyncio.sleep(0.1)  # the broker sees the DISCONNECT
        assert broker.get_client("keeper") is None
        (session,) = [s for s in broker.sessions() if s.client_id == "keeper"]
        assert not session.connected and session.persistent
        assert session.disconnected_at is not None
        assert {(s.topic_filter, s.qos) for s in session.subscriptions} == {("a/#", 1), ("b", 0)}
        await broker.publish("a/x", b"for later", qos=1)
        (session,) = [s for s in broker.sessions() if s.client_id == "keeper"]
        assert session.queued == 1
        assert {(s.client_id, s.topic_filter) for s in broker.subscriptions()} >= {
            ("keeper", "a/#"),
            ("keeper", "b"),
        }


async def test_stop_keeps_sessions_and_queued_messages(tmp_path: Path) -> None:
    async with midge.Broker(port=0, data_dir=str(tmp_path)) as broker:
        async with Client("127.0.0.1", broker.port, client_id="s1", clean_session=False) as c:
            await c.subscribe("q", qos=1)
        await broker.publish("q", b"while offline", qos=1)
    async with midge.Broker(port=0, data_dir=str(tmp_path)) as broker:
        assert [s.client_id for s in broker.sessions()] == ["s1"]
        client = Client("127.0.0.1", broker.port, client_id="s1", clean_session=False)
        async with client:
            assert client.session_present
            message = await client.messages().get(WAIT)
        assert message.payload == b"while offline"


async def test_disconnect_a_client_publishes_its_will_and_tells_a_5_0_client() -> None:
    async with (
        midge.Broker(port=0, store="memory") as broker,
        broker.subscribe("wills/#") as wills,
    ):
        client = Client(
            "127.0.0.1",
            broker.port,
            client_id="victim",
            protocol_version=5,
            will=Will("wills/victim", b"gone", 1),
        )
        await client.connect()
        inbox = client.messages()
        assert await broker.disconnect("victim")
        with pytest.raises(ConnectionLost) as lost:
            await inbox.get(WAIT)
        assert lost.value.reason_code == 0x98  # Administrative action
        will = await wills.get(WAIT)
        assert (will.topic, will.payload) == ("wills/victim", b"gone")
        assert not await broker.disconnect("victim")
        await client.disconnect()


async def test_in_process_clients_bypass_the_acl(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("user nobody\ntopic read nothing\n")
    async with (
        midge.Broker(port=0, store="memory", acl_file=str(acl)) as broker,
        broker.subscribe("secret/#") as messages,
    ):
        await broker.publish("secret/1", b"s", qos=1)
        assert (await messages.get(WAIT)).payload == b"s"
        async with Client("127.0.0.1", broker.port, protocol_version=5) as outsider:
            with pytest.raises(SubscribeError) as refused:
                await outsider.subscribe("secret/#", qos=1)
            assert refused.value.granted == (0x80,)


async def test_a_started_broker_cannot_start_twice_and_stop_is_idempotent() -> None:
    broker = midge.Broker(port=0, store="memory")
    await broker.start()
    with pytest.raises(RuntimeError):
        await broker.start()
    await broker.stop()
    await broker.stop()
    with pytest.raises(RuntimeError, match="not running"):
        broker.clients()


async def test_a_port_in_use_fails_start_and_leaves_nothing_open(tmp_path: Path) -> None:
    async with midge.Broker(port=0, store="memory") as first:
        second = midge.Broker(port=first.port, data_dir=str(tmp_path))
        with pytest.raises(OSError):
            await second.start()
        # the store it opened is closed again: a third start on its data dir works
        async with midge.Broker(port=0, data_dir=str(tmp_path)):
            pass


async def test_config_file_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "midge.toml"
    config.write_text('store = "memory"\nport = 1\nmax_inflight_messages = 7\n')
    async with midge.Broker(config, port=0) as broker:
        assert broker.config.max_inflight_messages == 7
        assert broker.port != 1
    with pytest.raises(midge.ConfigError):
        midge.Broker(port=0, no_such_key=1)
