"""Drive the sans-IO broker core byte for byte, without sockets.

`FakeTransport` records what the broker writes and whether it closed or
aborted the "socket". `Client` wraps one broker connection and its transport:
it encodes packets with the real codec, feeds them to
`Connection.data_received`, and decodes everything the broker wrote since the
last look with `decode_all` (so a half-written packet fails the test).
`Harness` owns a broker and the clock: time only moves when a test moves it.

Test modules get these through fixtures (`harness`, `make_harness`,
`password_file`), never by importing this file: several directories of the
suite have a conftest.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from midge.broker.auth import Authenticator
from midge.broker.broker import Broker
from midge.broker.config import BrokerConfig
from midge.broker.connection import Connection
from midge.protocol.codec import decode_all, encode
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1_1,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
)

START = 1000.0  # the clock of every harness starts here; tests use offsets from it


class FakeTransport:
    """A byte sink that remembers what was written and how it was closed."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted = False
        self.write_calls = 0
        self.writes_after_close = 0

    def write(self, data: bytes) -> None:
        if self.closed or self.aborted:
            self.writes_after_close += 1
        self.write_calls += 1
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def take(self) -> bytes:
        """The bytes written since the last take."""
        data = bytes(self.data)
        self.data.clear()
        return data


class Client:
    """One connection to the broker, as a test's MQTT client sees it."""

    def __init__(self, harness: Harness, peer: str) -> None:
        self.harness = harness
        self.transport = FakeTransport()
        self.connection: Connection = harness.broker.connection_made(
            self.transport, peer, harness.now
        )
        self.version = PROTOCOL_MQTT_3_1_1
        self._next_id = 1

    # ---------------------------------------------------------------- output

    def raw(self) -> bytes:
        """Every byte the broker wrote to this client since the last look."""
        return self.transport.take()

    def received(self) -> list[Packet]:
        """The packets the broker wrote since the last look (whole packets only)."""
        return decode_all(self.transport.take(), self.version)

    @property
    def closed(self) -> bool:
        """The broker closed or aborted the socket."""
        return self.transport.closed or self.transport.aborted

    # ----------------------------------------------------------------- input

    def send(self, *items: Packet | bytes, now: float | None = None) -> None:
        """Feed packets (encoded here) or raw bytes to the broker, one chunk each."""
        for item in items:
            data = item if isinstance(item, bytes | bytearray) else encode(item, self.version)
            self.connection.data_received(bytes(data), self.harness.now if now is None else now)

    def next_id(self) -> int:
        packet_id = self._next_id
        self._next_id = packet_id % 0xFFFF + 1
        return packet_id

    def connect(
        self,
        client_id: str = "",
        *,
        clean_session: bool = True,
        keep_alive: int = 0,
        will: Will | None = None,
        username: str | None = None,
        password: bytes | None = None,
        level: int = PROTOCOL_MQTT_3_1_1,
        name: str = "MQTT",
    ) -> list[Packet]:
        """Send CONNECT; return what the broker answered."""
        if level in (3, 4):
            self.version = level
        self.send(
            Connect(
                client_id=client_id,
                clean_session=clean_session,
                keep_alive=keep_alive,
                username=username,
                password=password,
                will=will,
                protocol_level=level,
                protocol_name=name,
            )
        )
        return self.received()

    def subscribe(self, *subscriptions: tuple[str, int] | str) -> list[Packet]:
        """SUBSCRIBE (filter, qos) pairs or bare filters (QoS 0); return the answer."""
        subs = tuple(
            Subscription(item, 0) if isinstance(item, str) else Subscription(*item)
            for item in subscriptions
        )
        self.last_id = self.next_id()
        self.send(Subscribe(self.last_id, subs))
        return self.received()

    def subscribed(self, *subscriptions: tuple[str, int] | str) -> None:
        """SUBSCRIBE and insist on a SUBACK granting exactly what was asked, and nothing else."""
        answer = self.subscribe(*subscriptions)
        codes = tuple(0 if isinstance(item, str) else item[1] for item in subscriptions)
        assert answer == [SubAck(self.last_id, codes)]

    def unsubscribe(self, *topic_filters: str) -> list[Packet]:
        self.last_id = self.next_id()
        self.send(Unsubscribe(self.last_id, topic_filters))
        return self.received()

    def publish(
        self,
        topic: str,
        payload: bytes = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        packet_id: int | None = None,
        dup: bool = False,
    ) -> list[Packet]:
        """Send one PUBLISH; return the broker's answer (PUBACK / PUBREC / nothing)."""
        if qos and packet_id is None:
            packet_id = self.next_id()
        self.last_id = packet_id
        self.send(Publish(topic, payload, qos, retain, dup, packet_id if qos else None))
        return self.received()

    def published(
        self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False
    ) -> None:
        """PUBLISH through the whole handshake of its QoS, checking every acknowledgement."""
        answer = self.publish(topic, payload, qos, retain)
        if qos == 0:
            assert answer == []
        elif qos == 1:
            assert answer == [PubAck(self.last_id)]
        else:
            packet_id = self.last_id
            assert packet_id is not None
            assert answer == [PubRec(packet_id)]
            self.send(PubRel(packet_id))
            assert self.received() == [PubComp(packet_id)]

    def acknowledge(self, packets: Iterable[Packet]) -> None:
        """Complete the flow of every QoS 1/2 PUBLISH in `packets`, checking the broker's side."""
        for packet in packets:
            if not isinstance(packet, Publish) or not packet.qos:
                continue
            assert packet.packet_id is not None
            if packet.qos == 1:
                self.send(PubAck(packet.packet_id))
            else:
                self.send(PubRec(packet.packet_id))
                answer = self.received()
                assert answer[:1] == [PubRel(packet.packet_id)], answer
                self.send(PubComp(packet.packet_id))

    def disconnect(self) -> None:
        self.send(Disconnect())

    def drop(self) -> None:
        """The network connection is lost under the broker's feet."""
        self.connection.connection_lost()


class Harness:
    """One broker, its clock, and helpers to open client connections."""

    def __init__(self, config: BrokerConfig, authenticator: Authenticator | None = None) -> None:
        self.broker = Broker(config, authenticator)
        self.now = START
        self.clients: list[Client] = []

    def open(self) -> Client:
        """A new socket that has sent nothing yet."""
        client = Client(self, f"192.0.2.1:{40001 + len(self.clients)}")
        self.clients.append(client)
        return client

    def connect(self, client_id: str, *, present: bool = False, **options: Any) -> Client:
        """A client connected with CONNACK 0; `present` is the expected session present flag."""
        client = self.open()
        answer = client.connect(client_id, **options)
        assert answer == [ConnAck(0, present)], answer
        return client

    def advance(self, seconds: float) -> None:
        """Move the clock without firing timers."""
        self.now += seconds

    def fire(self, at: float) -> None:
        """Run the broker's timers as of START + `at` seconds (and move the clock there)."""
        self.now = START + at
        self.broker.handle_timer(self.now)


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    """Factory: `make_harness(**BrokerConfig fields)` -> a fresh broker harness.

    At teardown every transport of every harness is checked: the broker must never
    write to a socket after closing or aborting it.
    """
    made: list[Harness] = []

    def make(authenticator: Authenticator | None = None, **config: Any) -> Harness:
        harness = Harness(BrokerConfig(**config).validate(), authenticator)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        for client in harness.clients:
            assert client.transport.writes_after_close == 0, client.connection


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    """A broker with the default configuration."""
    return make_harness()


def pbkdf2_line(username: str, password: str, iterations: int = 101) -> str:
    """A `$7$` password-file line as mosquitto_passwd writes it, built with hashlib."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"{username}:$7${iterations}${encoded[0]}${encoded[1]}"


def sha512_line(username: str, password: str) -> str:
    """A `$6$` password-file line (SHA-512 of password + salt)."""
    salt = os.urandom(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"{username}:$6${encoded[0]}${encoded[1]}"


@pytest.fixture
def password_lines() -> dict[str, Callable[[str, str], str]]:
    """Builders of password-file lines without the mosquitto_passwd binary."""
    return {"7": pbkdf2_line, "6": sha512_line}


@pytest.fixture
def password_file(tmp_path: Path) -> Callable[[Iterable[str]], str]:
    """Factory: write the given lines to a password file, return its path."""

    def write(lines: Iterable[str]) -> str:
        path = tmp_path / "passwd"
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        return str(path)

    return write
