"""midge.Broker embedded in a program's own thread, served to real peers:
paho-mqtt (3.1.1 and 5.0) and mosquitto_pub / mosquitto_sub."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest
from integration_support import Paho, paho5, unique

import midge

WAIT = 5.0


def test_paho_clients_and_the_program_talk_through_a_broker_in_a_thread() -> None:
    with midge.BrokerThread(port=0, store="memory") as running:
        subscriber = Paho("127.0.0.1", running.port, client_id=unique("sub"))
        subscriber.connect_ok()
        try:
            subscriber.subscribe("home/#", 1)
            running.call(lambda broker: broker.publish("home/lamp", b"on", qos=1))
            message = subscriber.get(WAIT)
            assert (message.topic, message.payload, message.qos) == ("home/lamp", b"on", 1)
            ids = running.read(lambda broker: [c.client_id for c in broker.clients()])
            assert subscriber.client._client_id.decode() in ids
        finally:
            subscriber.close()


def test_a_paho5_publish_reaches_an_in_process_subscription() -> None:
    with midge.BrokerThread(port=0, store="memory") as running:

        async def first_message(broker: midge.Broker) -> midge.Message:
            async with broker.subscribe("sensors/#") as messages:
                ready.set()
                return await messages.get(WAIT)

        ready = threading.Event()
        result: list[midge.Message] = []
        waiter = threading.Thread(target=lambda: result.append(running.call(first_message, WAIT)))
        waiter.start()
        assert ready.wait(WAIT)
        with paho5(("127.0.0.1", running.port, None)) as client:
            client.publish("sensors/t", b"21.5", 1, UserProperty=[("unit", "C")])
        waiter.join(WAIT)
        (message,) = result
        assert (message.topic, message.payload) == ("sensors/t", b"21.5")
        assert message.properties is not None
        assert message.properties.user_properties == (("unit", "C"),)


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto-clients missing")
def test_mosquitto_clients_against_an_embedded_broker() -> None:
    with midge.BrokerThread(port=0, store="memory") as running:
        port = str(running.port)
        sub = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t", "m/#", "-C", "1", "-W", "5"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            for _ in range(50):  # until the subscription exists
                subscriptions = running.read(lambda broker: broker.subscriptions())
                if any(s.topic_filter == "m/#" for s in subscriptions):
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("mosquitto_sub did not subscribe")
            running.call(lambda broker: broker.publish("m/1", b"hello mosquitto", qos=1))
            out, _ = sub.communicate(timeout=WAIT)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait()
        assert out.strip() == "hello mosquitto"
