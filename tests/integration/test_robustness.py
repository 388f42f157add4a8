"""Bad input and bad behaviour from one client never disturb the others.

A paho subscriber stays connected to one broker for the whole module; each
test sends something broken on raw sockets and then checks that the
subscriber still receives a fresh message and that a new client can connect.
The slow-consumer tests watch the broker's memory (VmRSS) while a client that
never reads is subscribed to a heavy stream.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from integration_support import (
    DISCONNECT,
    PINGREQ,
    WAIT,
    Paho,
    RawClient,
    connect_packet,
    open_fds,
    packet,
    paho,
    publish_packet,
    raw_client,
    rss_bytes,
    unique,
    wait_for,
)

from brokers import Broker, start_midge

pytestmark = pytest.mark.timeout(60)

CONNECT_TIMEOUT = 1.0  # seconds a socket may stay silent before CONNECT


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with start_midge(config_toml=f"connect_timeout = {CONNECT_TIMEOUT}\n") as running:
        yield running


@pytest.fixture(scope="module")
def subscriber(broker: Broker) -> Iterator[Paho]:
    host, port, _ = broker
    with paho(host, port, client_id=unique("watch")) as client:
        client.subscribe("robust/#", 1)
        yield client


def assert_healthy(broker: Broker, subscriber: Paho, expected: tuple[str, ...] = ()) -> None:
    """The broker still routes to the old subscriber and accepts a new client.

    `expected` lists topics (e.g. wills) that must arrive before the fresh
    message; anything else arriving in between is a failure.
    """
    host, port, process = broker
    assert process.poll() is None, "the broker died"
    fresh = f"robust/fresh/{unique('f')}"
    with paho(host, port) as newcomer:
        newcomer.publish(fresh, b"still here", 1)
    received = [m.topic for m in subscriber.until(fresh)]
    assert sorted(received[:-1]) == sorted(expected)


def will_for(case: str) -> tuple[str, bytes, int, bool]:
    return (f"robust/will/{case}", b"died", 1, False)


# ------------------------------------------------------------ before CONNECT

BEFORE_CONNECT = {
    "http-request": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "random-bytes": random.Random(1883).randbytes(4096),
    "reserved-type-0": b"\x00\x00",
    "reserved-type-15": b"\xf0\x00",
    "five-byte-length": b"\x10\xff\xff\xff\xff\x01",
    "publish-first": publish_packet("robust/early", b"x"),
    "unknown-protocol-name": packet(0x10, b"\x00\x04HTTP\x04\x02\x00\x3c\x00\x01x"),
    "connect-reserved-flag": packet(0x10, b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x01x"),
    "connect-bad-utf8-id": packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x02\xc3\x28"),
    "connect-truncated-field": packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x09ab"),
}


@pytest.mark.parametrize("data", BEFORE_CONNECT.values(), ids=BEFORE_CONNECT.keys())
def test_bad_bytes_before_connect(broker: Broker, subscriber: Paho, data: bytes):
    host, port, _ = broker
    with raw_client(host, port) as bad:
        bad.send(data)
        assert bad.closed_by_peer(), "the broker kept a connection that sent garbage"
    assert_healthy(broker, subscriber)


def test_unsupported_protocol_level_gets_connack_1(broker: Broker, subscriber: Paho):
    host, port, _ = broker
    with raw_client(host, port) as old:
        old.send(packet(0x10, b"\x00\x04MQTT\x06\x02\x00\x3c\x00\x01x"))  # no such level
        first, body = old.read_packet()
        assert (first, body) == (0x20, b"\x00\x01")
        assert old.closed_by_peer()
    assert_healthy(broker, subscriber)


# ------------------------------------------------------------- after CONNECT

AFTER_CONNECT = {
    "reserved-type-15": b"\xf0\x00",
    "five-byte-length": b"\x30\xff\xff\xff\xff\x01",
    "invalid-utf8-topic": publish_packet(b"robust/\xff\xfe", b"bad"),
    "surrogate-in-topic": publish_packet(b"robust/\xed\xa0\x80", b"bad"),
    "nul-in-topic": publish_packet(b"robust/a\x00b", b"bad"),
    "plus-in-topic": publish_packet("robust/+", b"bad"),
    "hash-in-topic": publish_packet("robust/#", b"bad"),
    "wildcard-mid-topic": publish_packet("robust/a+b/c", b"bad", qos=1),
    "empty-topic": publish_packet("", b"bad"),
    "publish-qos-3": b"\x36" + publish_packet("robust/q3", b"bad", qos=1)[1:],
    "qos0-with-dup": b"\x38" + publish_packet("robust/dup", b"bad")[1:],
    "packet-id-0": publish_packet("robust/id0", b"bad", qos=1, packet_id=0),
    "second-connect": connect_packet("again"),
    "subscribe-bad-flags": packet(0x80, b"\x00\x01\x00\x08robust/x\x00"),
    "subscribe-qos-3": packet(0x82, b"\x00\x01\x00\x08robust/x\x03"),
    "subscribe-no-filters": packet(0x82, b"\x00\x01"),
    "pingreq-with-body": b"\xc0\x01\x00",
    "server-only-connack": b"\x20\x02\x00\x00",
    "random-bytes": random.Random(3).randbytes(4096),
}


@pytest.mark.parametrize("data", AFTER_CONNECT.values(), ids=AFTER_CONNECT.keys())
def test_bad_packet_after_connect(broker: Broker, subscriber: Paho, data: bytes, request):
    host, port, _ = broker
    case = request.node.callspec.id
    with raw_client(host, port) as bad:
        bad.connect_ok(unique("bad"), will=will_for(case))
        bad.send(data)
        assert bad.closed_by_peer(), "the broker kept a connection after a protocol violation"
    # A protocol violation closes the connection without DISCONNECT: the will
    # is published [MQTT-3.1.2-8]; the broken PUBLISH itself never is.
    assert_healthy(broker, subscriber, expected=(f"robust/will/{case}",))


def test_truncated_packet_then_close(broker: Broker, subscriber: Paho):
    host, port, _ = broker
    with raw_client(host, port) as bad:
        bad.connect_ok(unique("cut"), will=will_for("truncated"))
        whole = publish_packet("robust/truncated", b"p" * 1000, qos=1)
        bad.send(whole[: len(whole) // 2])
        time.sleep(0.05)  # let the broker buffer the half packet
    assert_healthy(broker, subscriber, expected=("robust/will/truncated",))


def test_truncated_header_then_close(broker: Broker, subscriber: Paho):
    host, port, _ = broker
    with raw_client(host, port) as bad:
        bad.send(b"\x10\xff\xff")  # a CONNECT whose length never ends
    with raw_client(host, port) as bad:
        bad.connect_ok(unique("cut"))
        bad.send(b"\x30")  # a lone first byte
    assert_healthy(broker, subscriber)


def test_silent_socket_closed_after_connect_timeout(broker: Broker, subscriber: Paho):
    host, port, _ = broker
    with raw_client(host, port) as silent:
        started = time.monotonic()
        assert silent.closed_by_peer(timeout=CONNECT_TIMEOUT + 3)
        assert time.monotonic() - started >= CONNECT_TIMEOUT * 0.8
    assert_healthy(broker, subscriber)


def test_keep_alive_expiry_closes_silent_client_and_publishes_will(
    broker: Broker, subscriber: Paho
):
    host, port, _ = broker
    with raw_client(host, port) as quiet:
        quiet.connect_ok(unique("ka"), keep_alive=1, will=will_for("keep-alive"))
        started = time.monotonic()
        assert quiet.closed_by_peer(timeout=4), "no disconnect after 1.5 x keep-alive"
        assert time.monotonic() - started >= 1.0  # not before the keep-alive ran out
    with raw_client(host, port) as pinging:  # PINGREQ keeps a connection alive
        pinging.connect_ok(unique("ka"), keep_alive=1)
        for _ in range(4):
            time.sleep(0.5)
            pinging.send(PINGREQ)
            assert pinging.read_packet() == (0xD0, b"")
    assert_healthy(broker, subscriber, expected=("robust/will/keep-alive",))


def test_many_connections_opened_and_dropped(broker: Broker, subscriber: Paho):
    host, port, process = broker
    baseline = open_fds(process.pid)
    clients = []
    for index in range(200):
        client = RawClient(host, port)
        kind = index % 4
        if kind == 1:
            client.send(connect_packet(f"churn{index}")[:7])  # half a CONNECT
        elif kind == 2:
            client.send(connect_packet(f"churn{index}", will=will_for("churn")))
        elif kind == 3:
            client.send(connect_packet(f"churn{index}") + DISCONNECT)
        clients.append(client)
    for index, client in enumerate(clients):
        if index % 2:
            client.reset()
        else:
            client.close()
    # Every socket is closed on the broker's side too: no descriptor leaks.
    assert wait_for(lambda: open_fds(process.pid) <= baseline, timeout=WAIT), (
        f"broker holds {open_fds(process.pid)} descriptors, {baseline} before"
    )
    # The clients that sent a whole CONNECT without DISCONNECT left a will each,
    # unless the RST came before the broker read their CONNECT.
    deadline = time.monotonic() + WAIT
    fresh = f"robust/fresh/{unique('f')}"
    with paho(host, port) as newcomer:
        newcomer.publish(fresh, b"still here", 1)
    topics = [m.topic for m in subscriber.until(fresh, timeout=deadline - time.monotonic())]
    assert set(topics[:-1]) <= {"robust/will/churn"}
    assert len(topics) - 1 <= 50
    assert_healthy(broker, subscriber)


def test_flood_of_ten_thousand_publishes_in_one_write(broker: Broker, subscriber: Paho):
    host, port, _ = broker
    count = 10_000
    with paho(host, port) as counter:
        counter.subscribe("robust/flood", 0)
        with raw_client(host, port) as flooder:
            flooder.connect_ok(unique("flood"))
            flood = b"".join(publish_packet("robust/flood", b"%d" % i) for i in range(count))
            flooder.send(flood + PINGREQ)
            first, _ = flooder.read_packet()  # PINGRESP: the broker read it all
            assert first == 0xD0
        received = counter.get_many(count, timeout=30)
        assert [m.payload for m in received] == [b"%d" % i for i in range(count)]
    flood_messages = subscriber.get_many(count, timeout=30)
    assert [m.payload for m in flood_messages[-3:]] == [b"9997", b"9998", b"9999"]
    assert_healthy(broker, subscriber)


# ------------------------------------------------------------- slow consumer

MAX_WRITE_BUFFER = 1024 * 1024
MESSAGE_SIZE = 64 * 1024
MESSAGES = 800  # 800 x 64 KiB = 50 MiB in total
RSS_ALLOWANCE = 32 * 1024 * 1024  # well below the 50 MiB a broker buffering it all would hold


class RssSampler:
    """Polls VmRSS of a process on a thread; `peak` is the highest value seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT)
        self.peak = max(self.peak, rss_bytes(self.pid))


def test_slow_consumer_memory_bounded_and_others_unaffected():
    """A subscriber that never reads costs the broker at most ~max_write_buffer.

    The publisher is paced (about 1 MiB, then it waits for the normal
    subscriber to catch up): Midge has no back-pressure on publishers and drops
    QoS 0 for *any* subscriber whose socket buffer is above max_write_buffer, so
    an unpaced 50 MiB burst outruns a Python subscriber that does read (see
    test_unpaced_burst_within_write_buffer_is_not_dropped for the sizing rule).
    """
    config = f"max_write_buffer = {MAX_WRITE_BUFFER}\n"
    with start_midge(config_toml=config) as (host, port, process):
        with (
            raw_client(host, port, rcvbuf=4096) as stalled,
            paho(host, port) as normal,
            raw_client(host, port) as publisher,
        ):
            stalled.connect_ok(unique("stall"))
            assert stalled.subscribe([("slow/#", 0)]) == b"\x00"
            normal.subscribe("slow/#", 0)
            publisher.connect_ok(unique("pub"))
            start_rss = rss_bytes(process.pid)
            filler = b"x" * (MESSAGE_SIZE - 8)
            batch = MAX_WRITE_BUFFER // MESSAGE_SIZE
            received = []
            with RssSampler(process.pid) as rss:
                for first in range(0, MESSAGES, batch):
                    numbers = range(first, min(first + batch, MESSAGES))
                    publisher.send(
                        b"".join(publish_packet("slow/x", b"%08d" % i + filler) for i in numbers)
                    )
                    received += normal.get_many(len(numbers), timeout=10)
                publisher.send(PINGREQ)
                assert publisher.read_packet()[0] == 0xD0
            assert [int(m.payload[:8]) for m in received] == list(range(MESSAGES))
            assert all(len(m.payload) == MESSAGE_SIZE for m in received)
            growth = rss.peak - start_rss
            assert growth < RSS_ALLOWANCE, (
                f"broker RSS grew by {growth / 2**20:.1f} MiB (start {start_rss / 2**20:.1f} MiB)"
            )
            # The broker still serves everyone, the stalled client included.
            with paho(host, port) as newcomer:
                newcomer.publish("slow/after", b"ok", 1)
            assert normal.until("slow/after")[-1].payload == b"ok"
        assert process.poll() is None


def test_unpaced_burst_within_write_buffer_is_not_dropped():
    """With max_write_buffer above the burst size, a reading subscriber loses nothing."""
    count, size = 160, 64 * 1024  # 10 MiB in one go
    config = f"max_write_buffer = {32 * 1024 * 1024}\n"
    with (
        start_midge(config_toml=config) as (host, port, _),
        paho(host, port) as normal,
        raw_client(host, port) as publisher,
    ):
        normal.subscribe("burst/#", 0)
        publisher.connect_ok(unique("pub"))
        filler = b"y" * (size - 8)
        publisher.send(
            b"".join(publish_packet("burst/x", b"%08d" % i + filler) for i in range(count))
        )
        received = normal.get_many(count, timeout=20)
        assert [int(m.payload[:8]) for m in received] == list(range(count))


def test_keep_alive_expiry_disconnects_client_that_stopped_reading():
    config = f"max_write_buffer = {64 * 1024 * 1024}\n"
    with start_midge(config_toml=config) as (host, port, process):
        baseline = open_fds(process.pid)
        with raw_client(host, port, rcvbuf=4096) as stalled, raw_client(host, port) as pub:
            stalled.connect_ok(unique("stall"), keep_alive=1)
            stalled.subscribe([("ka/#", 0)])
            pub.connect_ok(unique("pub"), keep_alive=0)
            # 10 MB: more than the kernel buffers hold, less than max_write_buffer.
            pub.send(b"".join(publish_packet("ka/x", b"z" * 10_000) for _ in range(1000)))
            pub.send(PINGREQ)
            assert pub.read_packet()[0] == 0xD0
            # 1.5 x keep-alive of silence from `stalled`: the broker must drop it.
            closed = wait_for(lambda: open_fds(process.pid) <= baseline + 1, timeout=4)
            assert closed, "the stalled client's socket is still open on the broker"
