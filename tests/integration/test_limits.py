"""Every limit against abuse, against a real broker: refuse or close, log, keep serving.

Each test starts a broker with small limits (`start_midge_with_log`, so the
test can read what the broker logged), keeps a `Bystander` paho client
round-tripping QoS 1 messages through it on a thread for the whole test,
abuses one limit from raw sockets, and checks three things: the offending
client is refused or closed exactly at the limit (and not before), the log
names it and the reason, and the bystander never stopped being served.

What test_robustness.py covers already (malformed packets, a single silent
socket, slow readers and memory) is not repeated here.
"""

from __future__ import annotations

import itertools
import re
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from integration_support import (
    DISCONNECT,
    WAIT,
    Paho,
    RawClient,
    connack_times,
    connect_packet,
    open_fds,
    packet,
    paho,
    publish_packet,
    raw_client,
    remaining_length,
    rss_bytes,
    unique,
    wait_for,
)

from brokers import RunningMidge, password_text, pbkdf2_line, start_midge_with_log

pytestmark = pytest.mark.timeout(60)

MAX_ROUND_TRIP = 1.0  # seconds: the bystander's slowest QoS 1 round trip allowed
SILENCE = 0.4  # seconds of quiet that count as "nothing more is coming" on loopback


# ---------------------------------------------------------------- helpers


class Bystander:
    """A paho client that keeps sending itself QoS 1 messages through the broker.

    A thread publishes message n, waits for it to come back, then n + 1, for
    as long as the test runs. `assert_served` checks that round trips are
    still completing now; leaving the context checks that none failed and
    none took longer than MAX_ROUND_TRIP.
    """

    def __init__(self, run: RunningMidge, **paho_kwargs: Any) -> None:
        client_id = unique("by")
        self.client = Paho(run.host, run.port, client_id=client_id, **paho_kwargs)
        self.topic = f"by/{client_id}"
        self.round_trips: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Bystander:
        self.client.connect_ok()
        self.client.subscribe(self.topic, 1)
        self._thread.start()
        self.assert_served()
        return self

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.client.publish(self.topic, str(number), qos=1, wait=False)
                message = self.client.get(timeout=WAIT)
                assert message.payload == str(number).encode(), (message.payload, number)
            except Exception as exc:  # AssertionError("no message within ...") among others
                self.errors.append(f"round trip {number}: {exc!r}")
                return
            self.round_trips.append(time.monotonic() - started)
            number += 1
            self._stop.wait(0.02)

    def assert_served(self) -> None:
        """Two more round trips complete from now (within WAIT), and none failed."""
        done = len(self.round_trips)
        progressed = wait_for(lambda: len(self.round_trips) >= done + 2 or self.errors, WAIT)
        assert not self.errors, self.errors
        assert progressed, f"the bystander's round trips stalled after {done}"

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT + 1)
        self.client.close()
        if exc[0] is None:
            assert not self.errors, self.errors
            slowest = max(self.round_trips)
            assert slowest < MAX_ROUND_TRIP, f"a bystander round trip took {slowest:.2f}s"


@contextmanager
def broker_with_bystander(
    config: str, **paho_kwargs: Any
) -> Iterator[tuple[RunningMidge, Bystander]]:
    with start_midge_with_log(config_toml=config) as run, Bystander(run, **paho_kwargs) as by:
        yield run, by
        assert run.process.poll() is None, "the broker died"
        by.assert_served()


def peer(client: RawClient) -> str:
    """How the broker names a client before its CONNECT is accepted: ADDRESS:PORT."""
    host, port = client.sock.getsockname()[:2]
    return f"{host}:{port}"


def closing_line(name: str, reason: str) -> str:
    """The regular expression of the broker's "closing NAME: REASON" log line."""
    return rf"INFO midge\.broker: closing {re.escape(name)}: {re.escape(reason)}"


def client_name(client_id: str, client: RawClient) -> str:
    """How the broker names a connected client: 'ID' (ADDRESS:PORT)."""
    return f"{client_id!r} ({peer(client)})"


def parse_publish(first: int, body: bytes) -> tuple[str, int, bytes]:
    """(topic, packet id or 0, payload) of a PUBLISH packet."""
    assert first >> 4 == 3, f"expected PUBLISH, got first byte {first:#x}"
    (length,) = struct.unpack("!H", body[:2])
    topic = body[2 : 2 + length].decode()
    rest = body[2 + length :]
    if first & 0x06:
        return topic, struct.unpack("!H", rest[:2])[0], rest[2:]
    return topic, 0, rest


def puback(packet_id: int) -> bytes:
    return packet(0x40, struct.pack("!H", packet_id))


def expect_silence(client: RawClient, seconds: float = SILENCE) -> None:
    """The broker sends this client nothing for `seconds`."""
    client.sock.settimeout(seconds)
    try:
        first, body = client.read_packet()
    except TimeoutError:
        return
    finally:
        client.sock.settimeout(WAIT)
    raise AssertionError(f"unexpected packet {first:#x} {body[:40]!r}")


def read_publishes(client: RawClient, count: int) -> list[tuple[int, int, bytes]]:
    """The next `count` packets, each a PUBLISH: (first byte, packet id, payload)."""
    out = []
    for _ in range(count):
        first, body = client.read_packet()
        _topic, packet_id, payload = parse_publish(first, body)
        out.append((first, packet_id, payload))
    return out


def receive_acking(client: RawClient) -> list[bytes]:
    """Read QoS 1 PUBLISHes and PUBACK each, until the broker falls silent; the payloads."""
    payloads: list[bytes] = []
    while True:
        client.sock.settimeout(SILENCE)
        try:
            first, body = client.read_packet()
        except TimeoutError:
            return payloads
        finally:
            client.sock.settimeout(WAIT)
        _topic, packet_id, payload = parse_publish(first, body)
        payloads.append(payload)
        client.send(puback(packet_id))


def publish_all(run: RunningMidge, topic: str, count: int) -> None:
    """Publish messages b"0" .. b"count-1" at QoS 1, each acknowledged."""
    with paho(run.host, run.port) as publisher:
        for number in range(count):
            publisher.publish(topic, str(number), qos=1)


def numbers(count: int) -> list[bytes]:
    return [str(number).encode() for number in range(count)]


# ---------------------------------------------------------- max_connections

MAX_CONNECTIONS = 3


def test_max_connections_refuses_with_connack_3_but_allows_takeover() -> None:
    config = f"max_connections = {MAX_CONNECTIONS}\n"
    with broker_with_bystander(config) as (run, bystander), ExitStack() as stack:
        host, port = run.host, run.port
        refused: list[str] = []

        def refuse_one() -> None:
            """A new client id at the limit: CONNACK 3, closed, logged."""
            extra = stack.enter_context(raw_client(host, port))
            assert extra.connect(unique("over")) == (0, 3)
            assert extra.closed_by_peer()
            refused.append(peer(extra))
            run.log.wait_for(closing_line(peer(extra), "CONNECT refused: SERVER_UNAVAILABLE"))

        # The bystander plus two more: the broker is full.
        ids = [unique("a"), unique("b")]
        first, second = (stack.enter_context(raw_client(host, port)) for _ in ids)
        first.connect_ok(ids[0])
        second.connect_ok(ids[1])
        refuse_one()
        bystander.assert_served()

        # At the limit an existing client id may still take its session over.
        takeover = stack.enter_context(raw_client(host, port))
        takeover.connect_ok(ids[0])
        assert first.closed_by_peer()
        run.log.wait_for(
            closing_line(client_name(ids[0], first), "session taken over by a new connection")
        )
        refuse_one()  # still full: the takeover did not add a connection

        # A clean DISCONNECT frees a place...
        second.send(DISCONNECT)
        assert second.closed_by_peer()
        stack.enter_context(raw_client(host, port)).connect_ok(unique("c"))
        refuse_one()

        # ...and so does a connection the network drops.
        name = client_name(ids[0], takeover)
        takeover.reset()
        run.log.wait_for(closing_line(name, "connection closed by the network"))
        stack.enter_context(raw_client(host, port)).connect_ok(unique("d"))
        refuse_one()
        bystander.assert_served()

        lines = run.log.matching("CONNECT refused: SERVER_UNAVAILABLE")
        assert len(lines) == len(refused) == 4, lines


# ---------------------------------------------------------- max_packet_size

MAX_PACKET_SIZE = 1024
ANNOUNCED = 50_000_000  # a remaining length of 50 MB, of which only a few bytes are sent


def publish_of_size(topic: str, size: int) -> bytes:
    """A QoS 0 PUBLISH of exactly `size` bytes, fixed header included."""
    for payload_size in range(size, 0, -1):
        data = publish_packet(topic, b"p" * payload_size)
        if len(data) == size:
            return data
    raise AssertionError(f"no PUBLISH of {size} bytes")


@pytest.mark.parametrize("before_connect", [False, True], ids=["publish", "connect"])
def test_max_packet_size_closes_at_the_header_before_the_body(before_connect: bool) -> None:
    config = f"max_packet_size = {MAX_PACKET_SIZE}\n"
    with (
        broker_with_bystander(config) as (run, bystander),
        paho(run.host, run.port) as watcher,
    ):
        watcher.subscribe("big/#", 0)
        # Exactly at the limit a packet passes; one byte more closes.
        with raw_client(run.host, run.port) as client:
            client.connect_ok(unique("fit"))
            client.send(publish_of_size("big/fit", MAX_PACKET_SIZE))
            assert len(watcher.get().payload) == MAX_PACKET_SIZE - len("big/fit") - 5
            client.send(publish_of_size("big/over", MAX_PACKET_SIZE + 1))
            assert client.closed_by_peer()
            run.log.wait_for(
                f"closing .*: protocol violation: packet of {MAX_PACKET_SIZE + 1} bytes "
                f"exceeds {MAX_PACKET_SIZE}$"
            )

        # A packet announcing 50 MB: only its fixed header and 10 bytes are sent.
        rss_before = rss_bytes(run.process.pid)
        with raw_client(run.host, run.port) as client:
            if before_connect:
                name = peer(client)
                first_byte = 0x10
            else:
                client_id = unique("huge")
                client.connect_ok(client_id)
                name = client_name(client_id, client)
                first_byte = 0x30
            header = bytes((first_byte,)) + remaining_length(ANNOUNCED)
            client.send(header + b"\x00\x08big/huge")
            started = time.monotonic()
            # The close comes although the body never does: the broker judged
            # the packet by its length and buffered nothing of it.
            assert client.closed_by_peer(timeout=2), "the broker waited for the body"
            assert time.monotonic() - started < 1.0
        total = len(header) + ANNOUNCED
        run.log.wait_for(
            closing_line(
                name, f"protocol violation: packet of {total} bytes exceeds {MAX_PACKET_SIZE}"
            )
        )
        growth = rss_bytes(run.process.pid) - rss_before
        assert growth < ANNOUNCED // 10, f"broker RSS grew by {growth} bytes"
        bystander.assert_served()
        assert [m.topic for m in watcher.drain()] == []


# ---------------------------------------------------- max_inflight_messages

MAX_INFLIGHT = 3


def test_max_inflight_messages_holds_the_rest_until_acknowledged() -> None:
    config = f"max_inflight_messages = {MAX_INFLIGHT}\n"
    count = 8
    with (
        broker_with_bystander(config) as (run, bystander),
        raw_client(run.host, run.port) as subscriber,
    ):
        subscriber.connect_ok(unique("noack"))
        assert subscriber.subscribe([("inflight/x", 1)]) == b"\x01"
        publish_all(run, "inflight/x", count)  # every one routed (PUBACK) before we look

        window = read_publishes(subscriber, MAX_INFLIGHT)
        assert [payload for _, _, payload in window] == numbers(MAX_INFLIGHT)
        assert {first for first, _, _ in window} == {0x32}  # QoS 1, no DUP
        expect_silence(subscriber)  # the other five wait in the queue
        bystander.assert_served()

        # Each PUBACK opens the window by exactly one message.
        subscriber.send(puback(window[0][1]))
        (_, packet_id, payload), *_ = read_publishes(subscriber, 1)
        assert payload == str(MAX_INFLIGHT).encode()
        expect_silence(subscriber)

        for _, earlier_id, _ in window[1:]:
            subscriber.send(puback(earlier_id))
        subscriber.send(puback(packet_id))
        rest = receive_acking(subscriber)
        assert rest == numbers(count)[MAX_INFLIGHT + 1 :]
    assert run.log.matching("dropping messages") == []


# ------------------------------------------- max_queued_messages, slow_consumer_policy

QUEUE_INFLIGHT = 2
MAX_QUEUED = 3


@pytest.mark.parametrize("policy", ["drop", "disconnect"])
def test_max_queued_messages_and_slow_consumer_policy(policy: str) -> None:
    config = (
        f"max_inflight_messages = {QUEUE_INFLIGHT}\nmax_queued_messages = {MAX_QUEUED}\n"
        f'slow_consumer_policy = "{policy}"\nstall_timeout = 0.5\n'
    )
    count = 8
    # What an online client that stops acknowledging holds: its window, its
    # queue, and the one message that went in past the mark while it still
    # counted as behind (the publisher was held back then, until it stalled).
    kept = QUEUE_INFLIGHT + MAX_QUEUED + 1
    with broker_with_bystander(config) as (run, bystander):
        host, port = run.host, run.port

        # An offline persistent session keeps only MAX_QUEUED messages, the oldest,
        # under either policy (there is no connection to close).
        offline_id = unique("off")
        with raw_client(host, port) as offline:
            offline.connect_ok(offline_id, clean_session=False)
            assert offline.subscribe([("queue/off", 1)]) == b"\x01"
            offline.send(DISCONNECT)
            assert offline.closed_by_peer()
        publish_all(run, "queue/off", count)
        bystander.assert_served()
        with raw_client(host, port) as offline:
            assert offline.connect(offline_id, clean_session=False) == (1, 0)
            assert receive_acking(offline) == numbers(MAX_QUEUED)
        dropped = f"dropping messages for {offline_id!r}: message queue full"
        assert len(run.log.wait_for(re.escape(dropped))) == 1  # once per session

        # An online client that stops acknowledging: window, then queue, then (once
        # stalled after stall_timeout) the policy.
        slow_id = unique("slow")
        with raw_client(host, port) as slow:
            slow.connect_ok(slow_id, clean_session=False)
            assert slow.subscribe([("queue/on", 1)]) == b"\x01"
            publish_all(run, "queue/on", count)
            bystander.assert_served()
            window = read_publishes(slow, QUEUE_INFLIGHT)
            assert [payload for _, _, payload in window] == numbers(QUEUE_INFLIGHT)
            if policy == "drop":
                expect_silence(slow)  # still connected, the rest queued or dropped
                run.log.wait_for(
                    re.escape(f"dropping messages for {slow_id!r}: message queue full")
                )
                for _, packet_id, _ in window:
                    slow.send(puback(packet_id))
                assert receive_acking(slow) == numbers(kept)[QUEUE_INFLIGHT:]
            else:
                assert slow.closed_by_peer(), "a slow consumer with a full queue stayed"
                run.log.wait_for(
                    closing_line(client_name(slow_id, slow), "slow consumer: message queue full")
                )
        if policy == "disconnect":
            # Its persistent session stayed: unacknowledged messages again (DUP), then the queue.
            with raw_client(host, port) as slow:
                assert slow.connect(slow_id, clean_session=False) == (1, 0)
                resent = read_publishes(slow, QUEUE_INFLIGHT)
                assert [(first, payload) for first, _, payload in resent] == [
                    (0x3A, payload) for payload in numbers(QUEUE_INFLIGHT)
                ]
                for _, packet_id, _ in resent:
                    slow.send(puback(packet_id))
                assert receive_acking(slow) == numbers(kept)[QUEUE_INFLIGHT:]
        bystander.assert_served()


# ------------------------------------------------------------ max_keepalive

MAX_KEEPALIVE = 10


def test_max_keepalive_refuses_longer_and_zero_with_connack_2() -> None:
    config = f"max_keepalive = {MAX_KEEPALIVE}\n"
    expected = {MAX_KEEPALIVE + 1: 2, 65535: 2, 0: 2, MAX_KEEPALIVE: 0, 1: 0}
    with broker_with_bystander(config, keepalive=MAX_KEEPALIVE) as (run, bystander):
        answers = {}
        for keep_alive in expected:
            with raw_client(run.host, run.port) as client:
                client_id = unique("ka")
                answers[keep_alive] = client.connect(client_id, keep_alive=keep_alive)[1]
                if answers[keep_alive]:
                    assert client.closed_by_peer()
                    run.log.wait_for(
                        re.escape(
                            f"{peer(client)}: keep-alive {keep_alive} s is not within "
                            f"max_keepalive {MAX_KEEPALIVE} s"
                        )
                    )
                    run.log.wait_for(
                        closing_line(peer(client), "CONNECT refused: IDENTIFIER_REJECTED")
                    )
                else:
                    run.log.wait_for(
                        rf"client '{client_id}' connected .*keep-alive {keep_alive} s\)"
                    )
            bystander.assert_served()
        assert answers == expected


# ----------------------------------------------------------- connect_timeout

CONNECT_TIMEOUT = 1.0
FLOOD = 500
CLOSED_PORT = re.compile(r"closing 127\.0\.0\.1:(\d+): no CONNECT within connect_timeout$")


def test_flood_of_idle_sockets_closed_after_connect_timeout_while_others_served() -> None:
    config = f"connect_timeout = {CONNECT_TIMEOUT}\n"
    with broker_with_bystander(config) as (run, bystander):
        baseline = open_fds(run.process.pid)
        opened: dict[socket.socket, float] = {}
        try:
            for index in range(FLOOD):
                sock = socket.create_connection((run.host, run.port), timeout=WAIT)
                opened[sock] = time.monotonic()
                if index % 2:  # half of them start a CONNECT and never finish it
                    sock.sendall(connect_packet(f"slowloris{index}")[:5])
            flood_done = time.monotonic()
            ports = {sock.getsockname()[1] for sock in opened}

            # While every idle socket is open, a newcomer connects and publishes.
            with paho(run.host, run.port) as newcomer:
                newcomer.subscribe("flood/newcomer", 1)
                newcomer.publish("flood/newcomer", b"in", qos=1)
                assert newcomer.get().payload == b"in"
            assert time.monotonic() - flood_done < CONNECT_TIMEOUT, "the newcomer waited"
            bystander.assert_served()

            closed_after = wait_for_closes(opened, deadline=flood_done + CONNECT_TIMEOUT + 4)
        finally:
            for sock in opened:
                sock.close()
        assert len(closed_after) == FLOOD, f"{FLOOD - len(closed_after)} idle sockets stayed open"
        assert min(closed_after) >= CONNECT_TIMEOUT - 0.05, "closed before connect_timeout"
        assert max(closed_after) < CONNECT_TIMEOUT + 2.0

        lines = run.log.wait_for(r"no CONNECT within connect_timeout", count=FLOOD)
        logged = {int(match[1]) for line in lines if (match := CLOSED_PORT.search(line))}
        assert len(lines) == FLOOD and logged == ports
        assert wait_for(lambda: open_fds(run.process.pid) <= baseline), "descriptors leaked"


def wait_for_closes(opened: dict[socket.socket, float], deadline: float) -> list[float]:
    """For each socket the broker closes before `deadline`: seconds from its opening."""
    closed_after = []
    with selectors.DefaultSelector() as selector:
        for sock in opened:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, sock)
        while selector.get_map() and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=remaining):
                sock = key.data
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                assert data == b"", f"the broker sent {data!r} before any CONNECT"
                closed_after.append(time.monotonic() - opened[sock])
                selector.unregister(sock)
    return closed_after


# ------------------------------------------------ max_topic_length / levels

MAX_TOPIC_LENGTH = 32
MAX_TOPIC_LEVELS = 4
TOPIC_CONFIG = f"max_topic_length = {MAX_TOPIC_LENGTH}\nmax_topic_levels = {MAX_TOPIC_LEVELS}\n"

# (topic at the limit, topic one beyond it); the watcher's filters match both.
TOPIC_CASES = {
    "length": ("lim/" + "x" * (MAX_TOPIC_LENGTH - 4), "lim/" + "x" * (MAX_TOPIC_LENGTH - 3)),
    "levels": ("a/b/c/d", "a/b/c/d/e"),
    "empty-levels": ("a///", "a////"),
}


@pytest.mark.parametrize(("at_limit", "beyond"), TOPIC_CASES.values(), ids=TOPIC_CASES.keys())
def test_publish_beyond_topic_limits_closes_that_client(at_limit: str, beyond: str) -> None:
    with (
        broker_with_bystander(TOPIC_CONFIG) as (run, bystander),
        paho(run.host, run.port) as watcher,
    ):
        watcher.subscribe("lim/#", 1)
        watcher.subscribe("a/#", 1)
        with raw_client(run.host, run.port) as client:
            client_id = unique("topic")
            client.connect_ok(client_id, will=("lim/will", b"gone", 1, False))
            client.send(publish_packet(at_limit, b"fits", qos=1))
            assert client.read_packet() == (0x40, b"\x00\x01")  # PUBACK
            client.send(publish_packet(beyond, b"too far", qos=1, packet_id=2))
            assert client.closed_by_peer()
            run.log.wait_for(
                closing_line(
                    client_name(client_id, client),
                    "protocol violation: topic beyond max_topic_length / max_topic_levels: "
                    f"{beyond!r}...",
                )
            )
        bystander.assert_served()
        with paho(run.host, run.port) as other:
            other.publish("lim/after", b"after", qos=1)
        # The watcher got the message at the limit, the will, and never the one beyond it.
        received = [(m.topic, m.payload) for m in watcher.until("lim/after")]
        assert received == [(at_limit, b"fits"), ("lim/will", b"gone"), ("lim/after", b"after")]


def test_subscribe_beyond_topic_limits_refuses_only_that_filter() -> None:
    long_filter = "lim/" + "y" * (MAX_TOPIC_LENGTH - 3)
    deep_filter = "a/+/c/d/#"
    filters = [
        ("lim/ok", 1),
        (long_filter, 1),
        ("z" * MAX_TOPIC_LENGTH, 0),  # exactly at the length limit
        (deep_filter, 0),
        ("a/+/c/#", 1),  # exactly at the levels limit
    ]
    with (
        broker_with_bystander(TOPIC_CONFIG) as (run, bystander),
        raw_client(run.host, run.port) as client,
    ):
        client_id = unique("subs")
        client.connect_ok(client_id)
        assert client.subscribe(filters) == bytes((1, 0x80, 0, 0x80, 1))
        name = client_name(client_id, client)
        for refused in (long_filter, deep_filter):
            run.log.wait_for(
                re.escape(
                    f"{name}: refusing topic filter beyond max_topic_length / "
                    f"max_topic_levels: {refused!r}..."
                )
            )
        # Still connected, and the granted filters work.
        publish_all(run, "a/b/c/d", 1)
        topic, packet_id, payload = parse_publish(*client.read_packet())
        assert (topic, payload) == ("a/b/c/d", b"0")
        client.send(puback(packet_id))
        publish_all(run, "lim/ok", 1)
        assert parse_publish(*client.read_packet())[0] == "lim/ok"
        bystander.assert_served()


def test_will_topic_beyond_topic_limits_closes_at_connect() -> None:
    """A will is a PUBLISH made later: the CONNECT carrying one beyond the limits is closed."""
    with (
        broker_with_bystander(TOPIC_CONFIG) as (run, bystander),
        paho(run.host, run.port) as watcher,
    ):
        watcher.subscribe("lim/#", 1)
        beyond = "lim/" + "w" * (MAX_TOPIC_LENGTH - 3)
        with raw_client(run.host, run.port) as client:
            client.send(connect_packet(unique("will"), will=(beyond, b"never", 1, True)))
            assert client.closed_by_peer(), "a CONNECT with a will beyond the limits was accepted"
            run.log.wait_for(
                closing_line(
                    peer(client),
                    "protocol violation: will topic beyond max_topic_length / "
                    f"max_topic_levels: {beyond!r}...",
                )
            )
        bystander.assert_served()
        with paho(run.host, run.port) as other:
            other.publish("lim/after", b"after", qos=1)
        assert [m.topic for m in watcher.until("lim/after")] == ["lim/after"]


# ------------------------------------------------------- failed-login throttle

AUTH_FAILURE_DELAY = 0.3
CLOCK_GRAIN = 0.002  # uvloop's loop.time() and timers have millisecond steps
GUESSES = 5
# The broker answers a deferred CONNECT on its 0.1 s timer tick (server.TIMER_RESOLUTION),
# plus some scheduling noise in noting the arrival times here.
TIMER_SLACK = 0.13


def test_failed_logins_are_answered_one_at_a_time_per_address(tmp_path: Path) -> None:
    password_file = tmp_path / "passwd"
    password_file.write_text(
        password_text([pbkdf2_line("alice", "right"), pbkdf2_line("mallory", "real")])
    )
    guess = f"guess-{unique('pw')}"  # must never appear in the log
    config = (
        f'allow_anonymous = false\npassword_file = "{password_file}"\n'
        f"auth_failure_delay = {AUTH_FAILURE_DELAY}\n"
    )
    login = {"username": "alice", "password": "right"}
    with broker_with_bystander(config, **login) as (run, bystander), ExitStack() as stack:
        host, port = run.host, run.port
        guessers = [stack.enter_context(raw_client(host, port)) for _ in range(GUESSES)]
        ids = [unique("guess") for _ in guessers]
        # A thread notes when each CONNACK arrives while this one goes on.
        watch = stack.enter_context(ThreadPoolExecutor(max_workers=1))
        sent = time.monotonic()
        for client, client_id in zip(guessers, ids, strict=True):
            client.send(connect_packet(client_id, username="mallory", password=guess.encode()))
        arrivals = watch.submit(connack_times, guessers, deadline=sent + 10)

        # Meanwhile other addresses are answered at once, right or wrong.
        elsewhere = {}
        for source, password in (("127.0.0.2", b"right"), ("127.0.0.3", guess.encode())):
            client = RawClient(host, port, source=source)
            stack.callback(client.close)
            started = time.monotonic()
            code = client.connect(unique("else"), username="alice", password=password)[1]
            elsewhere[source] = (code, time.monotonic() - started)
        bystander.assert_served()

        answered = arrivals.result(timeout=15)
        assert [code for code, _ in answered] == [4] * GUESSES
        assert [elsewhere[s][0] for s in ("127.0.0.2", "127.0.0.3")] == [0, 4]
        assert max(delay for _, delay in elsewhere.values()) < AUTH_FAILURE_DELAY, elsewhere

        times = sorted(at - sent for _, at in answered)  # seconds after the guesses were sent
        assert times[0] < AUTH_FAILURE_DELAY, times  # the first guess is answered at once
        # The k-th answer waits for its turn, k delays after the first was handled
        # (which was after `sent`). uvloop's clock counts whole milliseconds and
        # rounds timer delays to them, so a turn may come up to CLOCK_GRAIN early.
        assert all(at >= k * AUTH_FAILURE_DELAY - CLOCK_GRAIN for k, at in enumerate(times)), times
        # One at a time, the wait doubling per booked turn as if they came one after
        # another: parallel guessing gains nothing. The broker answers on its timer
        # tick at or after each turn, so a gap may be up to one tick short.
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        for k, gap in enumerate(gaps):
            assert gap >= AUTH_FAILURE_DELAY * 2**k - TIMER_SLACK, (k, times)

        refusals = run.log.wait_for(r"login refused \(BAD_USERNAME_OR_PASSWORD\)", GUESSES + 1)
        for client, client_id in zip(guessers, ids, strict=True):
            assert any(
                f"client {client_id!r}, user 'mallory', from {peer(client)}" in line
                for line in refusals
            ), (client_id, refusals)
        deferred = run.log.matching(r"CONNECT answered in .* \(failed logins from 127\.0\.0\.1\)")
        assert len(deferred) == GUESSES - 1, deferred
        assert guess not in run.log.text()
