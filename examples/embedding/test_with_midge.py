"""pytest fixtures that give each test a Midge broker on a free port (docs/embedding.md).

Copy the fixtures into your conftest.py. `mqtt_broker` is for asyncio tests
(pytest-asyncio); `mqtt_broker_thread` for tests with blocking clients such
as paho-mqtt: the broker then runs on a thread of its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Iterator

import paho.mqtt.client as paho
import pytest
import pytest_asyncio

import midge
from midge.client import Client


@pytest_asyncio.fixture
async def mqtt_broker() -> AsyncIterator[midge.Broker]:
    async with midge.Broker(port=0, store="memory") as broker:
        yield broker


@pytest.fixture
def mqtt_broker_thread() -> Iterator[midge.BrokerThread]:
    with midge.BrokerThread(port=0, store="memory") as running:
        yield running


@pytest.mark.asyncio
async def test_a_device_reports_online(mqtt_broker: midge.Broker) -> None:
    async with mqtt_broker.subscribe("devices/#") as messages:
        # the code under test: here a client that announces itself
        async with Client("127.0.0.1", mqtt_broker.port, client_id="d1") as device:
            await device.publish("devices/d1/status", b"online", qos=1)
        message = await messages.get(timeout=5)
    assert (message.topic, message.payload) == ("devices/d1/status", b"online")
    assert mqtt_broker.sessions() == []  # clean sessions end with their connections


def test_paho_receives_what_the_app_publishes(mqtt_broker_thread: midge.BrokerThread) -> None:
    received: queue.Queue[paho.MQTTMessage] = queue.Queue()
    subscribed = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="listener")
    client.on_message = lambda _client, _data, message: received.put(message)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda *_: client.subscribe("alerts/#", qos=1)
    client.connect("127.0.0.1", mqtt_broker_thread.port)
    client.loop_start()
    try:
        assert subscribed.wait(5)
        # publish as the application would, on the broker's own loop
        mqtt_broker_thread.call(lambda broker: broker.publish("alerts/door", b"open", qos=1))
        message = received.get(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()
    assert (message.topic, message.payload) == ("alerts/door", b"open")
