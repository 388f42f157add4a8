"""MQTT 5.0 against a real Midge process, from clients we did not write:
paho-mqtt 2.x with MQTTv5, and mosquitto_pub / mosquitto_sub -V mqttv5."""

from __future__ import annotations

import asyncio
import queue
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from integration_support import Paho5, paho5, unique
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from brokers import Broker, start_midge
from midge.client import Client, ConnectionRefused
from midge.protocol.properties import Properties
from midge.scram import ScramClient

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_paho5_every_qos_with_properties(midge_broker: Broker, pub_qos: int, sub_qos: int):
    topic = f"v5/{unique('t')}"
    with paho5(midge_broker) as sub, paho5(midge_broker) as pub:
        assert [code.value for code in sub.subscribe(topic, sub_qos)] == [sub_qos]
        pub.publish(
            topic,
            b"hello",
            pub_qos,
            UserProperty=[("b", "2"), ("a", "1")],
            ResponseTopic="reply/to",
            CorrelationData=b"\x01\x02",
            ContentType="text/plain",
        )
        message = sub.get()
        assert (message.payload, message.qos) == (b"hello", min(pub_qos, sub_qos))
        props = message.properties
        assert props.UserProperty == [("b", "2"), ("a", "1")]
        assert (props.ResponseTopic, props.CorrelationData) == ("reply/to", b"\x01\x02")
        assert props.ContentType == "text/plain"


def test_paho5_no_local_and_subscription_identifier(midge_broker: Broker):
    topic = f"v5/{unique('nl')}"
    with paho5(midge_broker) as client, paho5(midge_broker) as other:
        client.subscribe(topic, 1, subscription_id=42, noLocal=True)
        client.publish(topic, b"mine", 1)
        other.publish(topic, b"theirs", 1)
        message = client.get()
        assert message.payload == b"theirs"
        assert message.properties.SubscriptionIdentifier == [42]
        with pytest.raises(queue.Empty):
            client.messages.get(timeout=0.3)


def test_paho5_session_expiry_keeps_messages_for_an_offline_client(midge_broker: Broker):
    client_id = unique("exp")
    topic = f"v5/{unique('queue')}"
    with paho5(midge_broker, client_id, clean_start=True, expiry=60) as sub:
        sub.subscribe(topic, 1)
    with paho5(midge_broker) as pub:
        pub.publish(topic, b"while away", 1, MessageExpiryInterval=120)
    back = Paho5(midge_broker[0], midge_broker[1], client_id)
    flags, _ = back.connect(clean_start=False, expiry=60)
    try:
        assert flags.session_present
        message = back.get()
        assert message.payload == b"while away"
        assert 0 < message.properties.MessageExpiryInterval <= 120
    finally:
        back.close()


def test_paho5_is_told_the_broker_limits(midge_broker: Broker):
    client = Paho5(midge_broker[0], midge_broker[1])
    try:
        _, props = client.connect()
        assert props.TopicAliasMaximum == 10
        assert not hasattr(props, "SharedSubscriptionAvailable")  # available: the default
    finally:
        client.close()


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients missing")
def test_mosquitto_clients_speak_5_with_properties(midge_broker: Broker):
    host, port = midge_broker[0], str(midge_broker[1])
    topic = f"v5/{unique('mosq')}"
    sub = subprocess.Popen(
        [
            *("mosquitto_sub", "-V", "mqttv5", "-h", host, "-p", port, "-t", topic, "-C", "1"),
            *("-W", "10", "-F", "%p|%P|%R|%C", "-D", "subscribe", "subscription-identifier", "3"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(50):  # until the subscription is in place
            pub = subprocess.run(
                [
                    *("mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", port, "-t", topic),
                    *("-m", "hi", "-q", "1", "-D", "publish", "user-property", "k", "v"),
                    *("-D", "publish", "response-topic", "r/t"),
                    *("-D", "publish", "content-type", "text/plain"),
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            assert pub.returncode == 0
            try:
                out, _ = sub.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            raise AssertionError("mosquitto_sub received nothing")
        assert out.strip() == "hi|k:v|r/t|text/plain"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def test_paho5_shared_subscription_gives_each_message_to_one_member(midge_broker: Broker):
    topic = f"v5/{unique('share')}"
    share = f"$share/workers/{topic}"
    with paho5(midge_broker) as one, paho5(midge_broker) as two, paho5(midge_broker) as pub:
        one.subscribe(share, 1)
        two.subscribe(share, 1)
        for n in range(10):
            pub.publish(topic, str(n).encode(), 1)
        got = []
        for member in (one, two):
            while True:
                try:
                    got.append(member.messages.get(timeout=0.5).payload)
                except queue.Empty:
                    break
        assert sorted(got) == sorted(str(n).encode() for n in range(10))


# ------------------------------------------------- enhanced authentication


def _scram_file(tmp_path: Path) -> Path:
    """A credentials file written by `midge passwd --scram`, as a user would."""
    path = tmp_path / "scram"
    midge = [sys.executable, "-m", "midge"]
    subprocess.run(
        [*midge, "passwd", "--scram", "-c", "-b", str(path), "alice", "s3cret"], check=True
    )
    assert path.read_text().startswith("alice:SCRAM-SHA-256$")
    return path


def test_midge_client_logs_in_with_scram_sha_256(tmp_path: Path) -> None:
    config = f'scram_file = "{_scram_file(tmp_path)}"\nallow_anonymous = false\n'
    with start_midge(config) as (host, port, _):

        async def session(password: str) -> bytes:
            sasl = ScramClient("alice", password)
            first = Properties(
                authentication_method="SCRAM-SHA-256", authentication_data=sasl.first()
            )
            client = Client(
                host,
                port,
                protocol_version=5,
                properties=first,
                authenticator=lambda method, data: sasl.final(data),
            )
            async with client:
                final = client.connack_properties
                assert final is not None and final.authentication_data is not None
                sasl.verify(final.authentication_data)  # the broker knew the credential
                await client.subscribe("scram/t", 1)
                await client.publish("scram/t", b"in", 1)
                async for message in client.messages():
                    return message.payload
            raise AssertionError("no message")

        assert asyncio.run(asyncio.wait_for(session("s3cret"), 10)) == b"in"
        with pytest.raises(ConnectionRefused) as refused:
            asyncio.run(asyncio.wait_for(session("wrong"), 10))
        assert refused.value.return_code == 0x86


def test_the_interoperability_suite_setup(tmp_path: Path) -> None:
    """The configuration the Paho MQTT 5.0 interoperability suite runs against
    (defaults, max_keepalive = 60, an ACL refusing test/nosubscribe), with the
    answers it expects: SUBACK 0x80 for the refused filter, Server Keep Alive."""
    acl = tmp_path / "acl"
    acl.write_text("topic deny test/nosubscribe\npattern readwrite #\n")
    config = f'max_keepalive = 60\nacl_file = "{acl}"\n'
    with start_midge(config) as broker:
        client = Paho5(broker[0], broker[1])
        try:
            _, props = client.connect()
            assert [code.value for code in client.subscribe("test/nosubscribe", 2)] == [0x80]
            assert [code.value for code in client.subscribe("test/ok", 2)] == [2]
        finally:
            client.close()
        slow = Paho5(broker[0], broker[1])
        slow.client.connect(broker[0], broker[1], keepalive=120)
        slow.client.loop_start()
        try:
            _, reason, props = slow.connacks.get(timeout=5)
            assert not reason.is_failure
            assert props.ServerKeepAlive == 60
        finally:
            slow.close()


def test_paho5_will_waits_for_its_delay(midge_broker: Broker):
    """As the Paho interoperability suite checks it: a dropped client's will
    comes after its Will Delay Interval, not at once and not at session end."""
    topic = f"v5/{unique('will')}"
    with paho5(midge_broker) as watcher:
        watcher.subscribe(topic, 1)
        dying = Paho5(midge_broker[0], midge_broker[1])
        will_properties = PahoProperties(PacketTypes.WILLMESSAGE)
        will_properties.WillDelayInterval = 2
        dying.client.will_set(topic, b"gone", 1, properties=will_properties)
        dying.connect(expiry=10)
        dying.client.loop_stop()
        dying.client.socket().close()  # no DISCONNECT: the will stands
        started = time.monotonic()
        message = watcher.messages.get(timeout=8)
        waited = time.monotonic() - started
        assert message.payload == b"gone"
        assert 1.8 <= waited <= 4.0, waited
