"""paho-mqtt 2.x (callback API 2) against a real Midge process, at MQTT 3.1 and 3.1.1."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration_support import (
    PROTOCOLS,
    Paho,
    paho,
    publish_packet,
    raw_client,
    unique,
)

from brokers import Broker, start_midge

pytestmark = pytest.mark.timeout(30)

VERSIONS = pytest.mark.parametrize("protocol", PROTOCOLS.values(), ids=PROTOCOLS.keys())


@VERSIONS
@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_publish_qos_matrix(midge_broker: Broker, protocol: int, pub_qos: int, sub_qos: int):
    host, port, _ = midge_broker
    topic = f"matrix/{unique('t')}/{pub_qos}{sub_qos}"
    with paho(host, port, protocol=protocol) as sub, paho(host, port, protocol=protocol) as pub:
        assert sub.subscribe(topic, sub_qos) == [sub_qos]  # granted as requested
        sub.subscribe(f"{topic}/end", 0)
        pub.publish(topic, b"payload-\x00\xff", pub_qos)
        message = sub.get()
        assert message.topic == topic
        assert message.payload == b"payload-\x00\xff"
        assert message.qos == min(pub_qos, sub_qos)
        assert not message.retain  # a live forward carries retain 0 [MQTT-3.3.1-9]
        # Exactly once, even for QoS 2: a second message here would be a duplicate.
        pub.publish(f"{topic}/end", b"marker", 0)
        assert [m.topic for m in sub.until(f"{topic}/end")] == [f"{topic}/end"]


@VERSIONS
def test_wildcard_subscription_takes_highest_granted_qos(midge_broker: Broker, protocol: int):
    host, port, _ = midge_broker
    base = f"wild/{unique('t')}"
    with paho(host, port, protocol=protocol) as sub, paho(host, port, protocol=protocol) as pub:
        sub.subscribe(f"{base}/#", 0)
        sub.subscribe(f"{base}/+", 2)
        pub.publish(f"{base}/x", b"once", 2)
        message = sub.get()
        assert (message.payload, message.qos) == (b"once", 2)
        pub.publish(f"{base}/x/y", b"deep", 2)  # only the # filter matches
        message = sub.get()
        assert (message.topic, message.qos) == (f"{base}/x/y", 0)
        assert sub.drain() == []


@VERSIONS
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_retained_message_reaches_late_subscriber(midge_broker: Broker, protocol: int, qos: int):
    host, port, _ = midge_broker
    topic = f"retained/{unique('t')}"
    with paho(host, port, protocol=protocol) as pub:
        pub.publish(topic, b"kept", qos, retain=True)
    with paho(host, port, protocol=protocol) as late:
        late.subscribe(topic, 2)
        message = late.get()
        assert (message.topic, message.payload) == (topic, b"kept")
        assert message.retain, "a retained message for a new subscription has retain 1"
        assert message.qos == qos
        # Clearing it (empty retained payload) means the next subscriber gets nothing.
        late.publish(topic, b"", 0, retain=True)
        forwarded = late.get()  # the live forward of the clearing message itself
        assert (forwarded.payload, forwarded.retain) == (b"", False)
    with paho(host, port, protocol=protocol) as later:
        later.subscribe(topic, 1)
        later.subscribe(f"{topic}/marker", 0)
        later.publish(f"{topic}/marker", b"m")
        assert [m.topic for m in later.until(f"{topic}/marker")] == [f"{topic}/marker"]


@VERSIONS
def test_will_published_on_abrupt_close(midge_broker: Broker, protocol: int):
    host, port, _ = midge_broker
    topic = f"will/{unique('t')}"
    with paho(host, port, protocol=protocol) as watcher:
        watcher.subscribe(f"{topic}/#", 2)
        victim = Paho(host, port, protocol=protocol, will=(f"{topic}/a", b"gone", 1, False))
        victim.connect_ok()
        victim.drop()  # socket closed without DISCONNECT
        message = watcher.get()
        assert (message.topic, message.payload, message.qos) == (f"{topic}/a", b"gone", 1)

        # The same with a raw socket that never says goodbye (and a retained will).
        with raw_client(host, port) as raw:
            level = 4 if protocol == PROTOCOLS["v311"] else 3
            raw.connect_ok(unique("r"), level=level, will=(f"{topic}/b", b"raw", 2, True))
        message = watcher.get()
        assert (message.topic, message.payload, message.qos) == (f"{topic}/b", b"raw", 2)

    with paho(host, port, protocol=protocol) as late:
        late.subscribe(f"{topic}/b", 2)
        message = late.get()
        assert (message.payload, message.retain) == (b"raw", True)
        late.publish(f"{topic}/b", b"", retain=True)  # clean up


@VERSIONS
def test_no_will_after_clean_disconnect(midge_broker: Broker, protocol: int):
    host, port, _ = midge_broker
    topic = f"will/{unique('t')}"
    with paho(host, port, protocol=protocol) as watcher:
        watcher.subscribe(f"{topic}/#", 1)
        with paho(host, port, protocol=protocol, will=(f"{topic}/w", b"no", 1, False)):
            pass  # clean DISCONNECT discards the will [MQTT-3.14.4-3]
        watcher.publish(f"{topic}/marker", b"m")
        assert [m.topic for m in watcher.until(f"{topic}/marker")] == [f"{topic}/marker"]


@VERSIONS
def test_persistent_session_gets_messages_sent_while_away(midge_broker: Broker, protocol: int):
    host, port, _ = midge_broker
    client_id = unique("ps")
    topic = f"persist/{client_id}"
    first = Paho(host, port, client_id=client_id, protocol=protocol, clean_session=False)
    connack = first.connect_ok()
    assert not connack.session_present
    assert first.subscribe(f"{topic}/#", 2) == [2]
    first.disconnect()

    with paho(host, port, protocol=protocol) as pub:
        pub.publish(f"{topic}/zero", b"0", 0)  # QoS 0 is not queued for offline sessions
        pub.publish(f"{topic}/one", b"1", 1)
        pub.publish(f"{topic}/two", b"2", 2)
        pub.publish(f"{topic}/one", b"1b", 1)

    again = Paho(host, port, client_id=client_id, protocol=protocol, clean_session=False)
    try:
        connack = again.connect_ok()
        # MQTT 3.1 has no session present flag: its CONNACK byte is reserved (0).
        assert connack.session_present is (protocol == PROTOCOLS["v311"])
        received = [(m.topic, m.payload, m.qos) for m in again.get_many(3)]
        # paho hands a QoS 2 message to the application at PUBREL, so only the
        # order within one QoS is observable here.
        assert [r for r in received if r[2] == 1] == [
            (f"{topic}/one", b"1", 1),
            (f"{topic}/one", b"1b", 1),
        ]
        assert [r for r in received if r[2] == 2] == [(f"{topic}/two", b"2", 2)]
        # The subscription survived too: live messages still arrive without SUBSCRIBE.
        again.publish(f"{topic}/live", b"live", 1)
        assert again.get().payload == b"live"
        assert again.drain() == []
    finally:
        again.disconnect()

    # A clean session discards the stored one [MQTT-3.1.2-6].
    clean = Paho(host, port, client_id=client_id, protocol=protocol, clean_session=True)
    assert not clean.connect_ok().session_present
    clean.disconnect()
    with paho(host, port, protocol=protocol) as pub:
        pub.publish(f"{topic}/one", b"lost", 1)
    resumed = Paho(host, port, client_id=client_id, protocol=protocol, clean_session=False)
    try:
        assert not resumed.connect_ok().session_present
        resumed.subscribe(f"{topic}/marker", 0)
        resumed.publish(f"{topic}/marker", b"m")
        assert [m.topic for m in resumed.until(f"{topic}/marker")] == [f"{topic}/marker"]
    finally:
        resumed.disconnect()
    with paho(host, port, client_id=client_id, protocol=protocol, clean_session=True):
        pass  # leave no session behind


@VERSIONS
def test_unsubscribe_stops_delivery(midge_broker: Broker, protocol: int):
    host, port, _ = midge_broker
    topic = f"unsub/{unique('t')}"
    with paho(host, port, protocol=protocol) as sub, paho(host, port, protocol=protocol) as pub:
        sub.subscribe(topic, 1)
        sub.subscribe(f"{topic}/marker", 1)
        pub.publish(topic, b"before", 1)
        assert sub.get().payload == b"before"
        sub.unsubscribe(topic)
        pub.publish(topic, b"after", 1)
        pub.publish(f"{topic}/marker", b"m", 1)  # same publisher: ordered after "after"
        assert [m.payload for m in sub.until(f"{topic}/marker")] == [b"m"]
        sub.unsubscribe("never/subscribed")  # UNSUBACK even when nothing matched


@VERSIONS
def test_two_hundred_qos1_messages_in_order(midge_broker: Broker, protocol: int):
    host, port, _ = midge_broker
    topic = f"order/{unique('t')}"
    count = 200
    with paho(host, port, protocol=protocol) as sub, paho(host, port, protocol=protocol) as pub:
        sub.subscribe(topic, 1)
        infos = [pub.publish(topic, str(i).encode(), 1, wait=False) for i in range(count)]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
        received = sub.get_many(count, timeout=15)
        assert [m.payload for m in received] == [str(i).encode() for i in range(count)]
        assert {m.qos for m in received} == {1}
        assert sub.drain() == []


# ------------------------------------------------------------ passwords


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    path: Path = tmp_path_factory.mktemp("auth") / "passwords"
    for args in (
        ["-c", "-b", str(path), "alice", "s3cret"],  # -c: new file; default $7$ PBKDF2
        ["-b", str(path), "bob", "hunter2"],
        ["-H", "sha512", "-b", str(path), "carol", "pw:with:colons"],  # $6$
    ):
        subprocess.run([tool, *args], check=True, timeout=10, capture_output=True)
    assert path.read_text().count("\n") == 3
    # Many refusals from one address in a row: no login throttling in this module.
    config = f"allow_anonymous = false\npassword_file = {str(path)!r}\nauth_failure_delay = 0.0\n"
    with start_midge(config_toml=config) as broker:
        yield broker


GOOD = [("alice", "s3cret"), ("bob", "hunter2"), ("carol", "pw:with:colons")]
BAD = [("alice", "wrong"), ("alice", ""), ("mallory", "s3cret"), ("Alice", "s3cret")]


@VERSIONS
@pytest.mark.parametrize(("username", "password"), GOOD)
def test_good_credentials_connect(auth_broker: Broker, protocol: int, username, password):
    host, port, _ = auth_broker
    client = Paho(host, port, protocol=protocol, username=username, password=password)
    try:
        connack = client.connect()
        assert connack.reason == "Success"
        client.subscribe("auth/check", 1)
        client.publish("auth/check", b"ok", 1)
        assert client.get().payload == b"ok"
    finally:
        client.close()


@VERSIONS
@pytest.mark.parametrize(("username", "password"), BAD)
def test_bad_credentials_get_code_4(auth_broker: Broker, protocol: int, username, password):
    host, port, _ = auth_broker
    client = Paho(host, port, protocol=protocol, username=username, password=password)
    try:
        connack = client.connect()
        assert connack.reason == "Bad user name or password"
    finally:
        client.close()
    level = 4 if protocol == PROTOCOLS["v311"] else 3
    with raw_client(host, port) as raw:
        assert raw.connect(
            unique("r"), level=level, username=username, password=password.encode()
        ) == (0, 4)
        assert raw.closed_by_peer()


@VERSIONS
def test_anonymous_gets_code_5(auth_broker: Broker, protocol: int):
    host, port, _ = auth_broker
    client = Paho(host, port, protocol=protocol)
    try:
        assert client.connect().reason == "Not authorized"
    finally:
        client.close()
    level = 4 if protocol == PROTOCOLS["v311"] else 3
    with raw_client(host, port) as raw:
        assert raw.connect(unique("r"), level=level) == (0, 5)
        assert raw.closed_by_peer()
    # A user name without a password is a bad password, not anonymous.
    with raw_client(host, port) as raw:
        assert raw.connect(unique("r"), level=level, username="alice") == (0, 4)


# ------------------------------------------- raw-socket cross-checks of sessions


def test_client_id_rules(midge_broker: Broker):
    host, port, _ = midge_broker
    with raw_client(host, port) as raw:  # 3.1.1, empty id, clean: the broker assigns one
        raw.connect_ok("")
    with raw_client(host, port) as raw:  # empty id needs a clean session [MQTT-3.1.3-8]
        assert raw.connect("", clean_session=False) == (0, 2)
    with raw_client(host, port) as raw:  # MQTT 3.1 always needs an id
        assert raw.connect("", level=3) == (0, 2)


def test_qos2_publish_repeated_after_reconnect_is_forwarded_once(midge_broker: Broker):
    host, port, _ = midge_broker
    topic = f"exactly/{unique('t')}"
    publisher_id = unique("q2")
    with paho(host, port) as sub:
        sub.subscribe(topic, 2)
        sub.subscribe(f"{topic}/marker", 0)
        with raw_client(host, port) as first:
            first.connect_ok(publisher_id, clean_session=False)
            first.send(publish_packet(topic, b"once", qos=2, packet_id=7))
            assert first.read_packet() == (0x50, b"\x00\x07")  # PUBREC
        # Gone before PUBREL; it reconnects and repeats the PUBLISH with DUP set.
        with raw_client(host, port) as second:
            assert second.connect(publisher_id, clean_session=False) == (1, 0)
            second.send(b"\x3c" + publish_packet(topic, b"once", qos=2, packet_id=7)[1:])
            assert second.read_packet() == (0x50, b"\x00\x07")
            second.send(b"\x62\x02\x00\x07")  # PUBREL
            assert second.read_packet() == (0x70, b"\x00\x07")  # PUBCOMP
            second.send(publish_packet(f"{topic}/marker", b"m"))
            second.send(b"\xe0\x00")
        # paho hands a QoS 2 message over only at its PUBREL, so the QoS 0 marker
        # may overtake it: wait for both, then check that no second copy follows.
        payloads = [m.payload for m in sub.until(f"{topic}/marker")]
        if b"once" not in payloads:
            payloads += [m.payload for m in sub.until(topic)]
        assert sorted(payloads) == [b"m", b"once"]
        sub.publish(f"{topic}/marker", b"end", 0)
        assert [m.payload for m in sub.until(f"{topic}/marker")] == [b"end"]
        with raw_client(host, port) as cleanup:
            cleanup.connect_ok(publisher_id)


def test_unacknowledged_qos1_resent_with_dup_on_reconnect(midge_broker: Broker):
    host, port, _ = midge_broker
    topic = f"resend/{unique('t')}"
    client_id = unique("rs")
    with raw_client(host, port) as first:
        first.connect_ok(client_id, clean_session=False)
        assert first.subscribe([(topic, 1)]) == b"\x01"
        with paho(host, port) as pub:
            pub.publish(topic, b"ack me", 1)
        flags, body = first.read_packet()
        assert flags == 0x32  # PUBLISH QoS 1, no DUP
        packet_id = body[2 + len(topic) : 4 + len(topic)]
        # Leave without PUBACK.
    with raw_client(host, port) as second:
        assert second.connect(client_id, clean_session=False) == (1, 0)
        flags, body = second.read_packet()
        assert flags == 0x3A  # PUBLISH QoS 1 with DUP [MQTT-4.4.0-1]
        assert body == len(topic).to_bytes(2, "big") + topic.encode() + packet_id + b"ack me"
        second.send(b"\x40\x02" + packet_id)  # PUBACK
        second.send(b"\xc0\x00")
        assert second.read_packet() == (0xD0, b"")  # nothing else was pending
    with raw_client(host, port) as cleanup:
        cleanup.connect_ok(client_id)
