"""Event hooks: each event, on_publish's verdicts (sync and async), failures
contained, order kept while an async hook decides, and no cost unconfigured."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

import midge
from midge.broker.handlers import HANDLERS
from midge.client import Client, PublishError, Will

WAIT = 5.0


class Recorder(midge.Hooks):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_connect(self, client: midge.ClientInfo) -> None:
        self.events.append(("connect", client.client_id, client.protocol_version))

    def on_disconnect(self, client: midge.ClientInfo, reason: str) -> None:
        self.events.append(("disconnect", client.client_id, reason))

    def on_subscribe(self, client: midge.ClientInfo, topic_filter: str, qos: int) -> None:
        self.events.append(("subscribe", client.client_id, topic_filter, qos))

    def on_unsubscribe(self, client: midge.ClientInfo, topic_filter: str) -> None:
        self.events.append(("unsubscribe", client.client_id, topic_filter))

    def on_deliver(self, client_id: str, message: midge.Message) -> None:
        self.events.append(("deliver", client_id, message.topic, message.payload))


async def test_every_event_reaches_the_hook() -> None:
    hook = Recorder()
    async with midge.Broker(port=0, store="memory", hooks=[hook]) as broker:
        async with Client("127.0.0.1", broker.port, client_id="c1", username="u") as client:
            await client.subscribe("t/#", qos=1)
            await client.publish("t/1", b"x", qos=1)
            await client.messages().get(WAIT)
            await client.unsubscribe("t/#")
        await asyncio.sleep(0.05)
    assert hook.events == [
        ("connect", "c1", 4),
        ("subscribe", "c1", "t/#", 1),
        ("deliver", "c1", "t/1", b"x"),
        ("unsubscribe", "c1", "t/#"),
        ("disconnect", "c1", "client sent DISCONNECT"),
    ]


class Censor(midge.Hooks):
    """Drops "secret/..." and upper-cases "shout/..."."""

    def on_publish(self, client: midge.ClientInfo | None, message: midge.Message) -> Any:
        if message.topic.startswith("secret/"):
            return False
        if message.topic.startswith("shout/"):
            return dataclasses.replace(message, payload=message.payload.upper())
        return None


@pytest.mark.parametrize("version", [4, 5])
async def test_on_publish_changes_and_drops(version: int) -> None:
    async with (
        midge.Broker(port=0, store="memory", hooks=[Censor()]) as broker,
        broker.subscribe("#") as seen,
    ):
        async with Client("127.0.0.1", broker.port, protocol_version=version) as client:
            dropped = await client.publish("secret/1", b"pin", qos=1)
            assert dropped == (0x10 if version == 5 else 0)
            await client.publish("secret/2", b"pin", qos=2)
            await client.publish("shout/1", b"hello", qos=2)
            await client.publish("plain", b"as is", qos=0)
        received = [await seen.get(WAIT), await seen.get(WAIT)]
        with pytest.raises(TimeoutError):
            await seen.get(0.2)
        stats = broker.core.stats
        # dropped ones were received all the same (secret/1 at QoS 1, secret/2 at 2)
        qos0, qos1 = stats.publish_received_qos0, stats.publish_received_qos1
        assert (qos0, qos1, stats.publish_received_qos2) == (1, 1, 2)
    assert [(m.topic, m.payload) for m in received] == [("shout/1", b"HELLO"), ("plain", b"as is")]


class SlowThenFast(midge.Hooks):
    """An async on_publish whose first answer takes longest: order must hold."""

    def __init__(self) -> None:
        self.delays = iter([0.3, 0.0, 0.1])

    async def on_publish(self, client: midge.ClientInfo | None, message: midge.Message) -> Any:
        await asyncio.sleep(next(self.delays, 0.0))
        return dataclasses.replace(message, payload=message.payload + b"!")


async def test_an_async_on_publish_is_awaited_and_keeps_the_order() -> None:
    async with (
        midge.Broker(port=0, store="memory", hooks=[SlowThenFast()]) as broker,
        broker.subscribe("o/#", qos=1) as seen,
    ):
        async with Client("127.0.0.1", broker.port) as client:
            await asyncio.gather(
                *(client.publish(f"o/{n}", str(n).encode(), qos=1) for n in range(3))
            )
        received = [await seen.get(WAIT) for _ in range(3)]
    assert [(m.topic, m.payload) for m in received] == [
        ("o/0", b"0!"),
        ("o/1", b"1!"),
        ("o/2", b"2!"),
    ]


class Broken(midge.Hooks):
    def on_connect(self, client: midge.ClientInfo) -> None:
        raise RuntimeError("bug in on_connect")

    async def on_subscribe(self, client: midge.ClientInfo, topic_filter: str, qos: int) -> None:
        raise RuntimeError("bug in an async on_subscribe")

    def on_publish(self, client: midge.ClientInfo | None, message: midge.Message) -> Any:
        if message.topic == "boom":
            raise RuntimeError("bug in on_publish")
        if message.topic == "odd":
            return 42  # not a verdict
        return None


async def test_a_failing_hook_costs_only_its_event(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        midge.Broker(port=0, store="memory", hooks=[Broken()]) as broker,
        broker.subscribe("#") as seen,
    ):
        async with Client("127.0.0.1", broker.port, protocol_version=5) as client:
            with pytest.raises(PublishError) as refused:
                await client.publish("boom", b"1", qos=1)
            assert refused.value.reason_code == 0x80
            with pytest.raises(PublishError):
                await client.publish("odd", b"2", qos=2)
            await client.publish("fine", b"3", qos=1)  # still connected
        message = await seen.get(WAIT)
        assert (message.topic, message.payload) == ("fine", b"3")
    text = caplog.text
    for bug in ("bug in on_connect", "bug in an async on_subscribe", "bug in on_publish"):
        assert bug in text
    assert "answered 42" in text


async def test_wills_pass_through_on_publish() -> None:
    async with (
        midge.Broker(port=0, store="memory", hooks=[Censor()]) as broker,
        broker.subscribe("#") as seen,
    ):
        for topic in ("secret/will", "shout/will"):
            client = Client("127.0.0.1", broker.port, client_id=topic, will=Will(topic, b"bye", 1))
            await client.connect()
            assert await broker.disconnect(topic)
            await client.disconnect()
        will = await seen.get(WAIT)
        with pytest.raises(TimeoutError):
            await seen.get(0.2)
    assert (will.topic, will.payload) == ("shout/will", b"BYE")


async def test_hooks_from_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_hooks.py").write_text(
        "import midge\n"
        "class Tag(midge.Hooks):\n"
        "    def on_publish(self, client, message):\n"
        "        import dataclasses\n"
        "        return dataclasses.replace(message, topic='tagged/' + message.topic)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "midge.toml"
    config.write_text('store = "memory"\nhooks = ["my_hooks:Tag"]\n')
    async with midge.Broker(config, port=0) as broker, broker.subscribe("tagged/#") as seen:
        await broker.publish("a", b"1", qos=1)
        assert (await seen.get(WAIT)).topic == "tagged/a"
    sys.modules.pop("my_hooks", None)
    config.write_text('store = "memory"\nhooks = ["my_hooks:Missing"]\n')
    with pytest.raises(midge.ConfigError, match="Missing"):
        midge.Broker(config)


async def test_without_hooks_the_hot_path_is_the_plain_one() -> None:
    async with midge.Broker(port=0, store="memory") as broker:
        assert broker.core.events is None
        assert broker.core.handlers is HANDLERS
        assert broker.core.delivery.events is None
    # hooks without on_publish / on_deliver leave those paths plain as well
    async with midge.Broker(port=0, store="memory", hooks=[midge.Hooks()]) as broker:
        assert broker.core.events is None
    async with midge.Broker(port=0, store="memory", hooks=[Recorder()]) as broker:
        assert broker.core.handlers is HANDLERS
        assert broker.core.delivery.events is not None
