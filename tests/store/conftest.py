"""Helpers for the store tests: both stores, and the sans-IO broker over a store.

`store_kind` / `make_store` give the contract suite one store of each kind.
`Node` is one broker over a store plus its two clocks (monotonic `now` for
timers, `wall` for session expiry); `Node.restart()` builds a new `Broker`
from what the store's `load()` returns, as a restarted process would (the
SQLite file is closed and opened again). `Client` wraps one connection and
its `FakeTransport`: packets in through the real codec, bytes out decoded
with `decode_all`, so a half-written packet fails the test.

Test modules use these through fixtures (`make_store`, `make_node`), never
by importing this file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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
)
from midge.store.base import Store
from midge.store.memory import MemoryStore
from midge.store.sqlite import SQLiteStore

START = 1000.0  # the monotonic clock of every node starts here
WALL_START = 1_700_000_000.0  # and its wall clock here

STORE_KINDS = ("memory", "sqlite")


# ------------------------------------------------------------------ stores


class StoreBox:
    """One durable store of a kind; `reopen` is what a process restart does to it."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.store: Store = self._open()

    def _open(self) -> Store:
        if self.kind == "memory":
            return MemoryStore()
        return SQLiteStore(self.path)

    def reopen(self) -> Store:
        """The memory store lives on in the process; the SQLite file is closed and reopened."""
        if self.kind == "sqlite":
            self.store.close()
            self.store = SQLiteStore(self.path)
        return self.store

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(store_kind: str, tmp_path: Path) -> Iterator[Callable[[], StoreBox]]:
    """Factory of stores of the parametrized kind, closed at teardown."""
    made: list[StoreBox] = []

    def make() -> StoreBox:
        box = StoreBox(store_kind, tmp_path / f"store{len(made)}.db")
        made.append(box)
        return box

    yield make
    for box in made:
        box.close()


# ------------------------------------------------------------------ broker


class FakeTransport:
    """A byte sink that remembers what was written and how it was closed."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted = False
        self.writes_after_close = 0

    def write(self, data: bytes) -> None:
        if self.closed or self.aborted:
            self.writes_after_close += 1
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def take(self) -> bytes:
        data = bytes(self.data)
        self.data.clear()
        return data


class Client:
    """One connection to a node's current broker, as an MQTT client sees it."""

    def __init__(self, node: Node, peer: str) -> None:
        self.node = node
        self.transport = FakeTransport()
        self.connection: Connection = node.broker.connection_made(self.transport, peer, node.now)
        self.version = PROTOCOL_MQTT_3_1_1
        self._next_id = 1
        self.last_id: int | None = None

    def received(self) -> list[Packet]:
        """The packets the broker wrote since the last look (whole packets only)."""
        return decode_all(self.transport.take(), self.version)

    def send(self, *packets: Packet) -> None:
        for packet in packets:
            self.connection.data_received(encode(packet, self.version), self.node.now)

    def next_id(self) -> int:
        packet_id = self._next_id
        self._next_id = packet_id % 0xFFFF + 1
        return packet_id

    def connect(self, client_id: str, *, clean_session: bool = True) -> list[Packet]:
        self.send(Connect(client_id=client_id, clean_session=clean_session))
        return self.received()

    def subscribed(self, *subscriptions: tuple[str, int]) -> None:
        """SUBSCRIBE and insist on a SUBACK granting exactly what was asked."""
        packet_id = self.next_id()
        self.send(Subscribe(packet_id, tuple(Subscription(*item) for item in subscriptions)))
        codes = tuple(qos for _, qos in subscriptions)
        assert self.received() == [SubAck(packet_id, codes)]

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
        """One PUBLISH; returns the broker's answer (PUBACK / PUBREC / nothing)."""
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
        packet_id = self.last_id
        if qos == 0:
            assert answer == []
        elif qos == 1:
            assert answer == [PubAck(packet_id or 0)]
        else:
            assert packet_id is not None
            assert answer == [PubRec(packet_id)]
            self.send(PubRel(packet_id))
            assert self.received() == [PubComp(packet_id)]

    def acknowledge(self, packets: list[Packet]) -> None:
        """Complete the flow of every QoS 1/2 PUBLISH (and PUBREL) in `packets`."""
        for packet in packets:
            if isinstance(packet, PubRel):
                self.send(PubComp(packet.packet_id))
            elif isinstance(packet, Publish) and packet.qos:
                assert packet.packet_id is not None
                if packet.qos == 1:
                    self.send(PubAck(packet.packet_id))
                else:
                    self.send(PubRec(packet.packet_id))
                    assert self.received() == [PubRel(packet.packet_id)]
                    self.send(PubComp(packet.packet_id))

    def disconnect(self) -> None:
        self.send(Disconnect())

    def drop(self) -> None:
        self.connection.connection_lost()


class Node:
    """A broker over a durable store, with clocks that move only when a test moves them."""

    def __init__(self, box: StoreBox, config: BrokerConfig) -> None:
        self.box = box
        self.config = config
        self.now = START
        self.wall = WALL_START
        self.clients: list[Client] = []
        self.broker = self._start()

    @property
    def store(self) -> Store:
        return self.box.store

    def _start(self) -> Broker:
        broker = Broker(self.config, store=self.box.store, wall_clock=lambda: self.wall)
        broker.restore(self.box.store.load())
        return broker

    def restart(self, *, clean: bool = False) -> None:
        """A new process over the same store. Without `clean` the old broker just
        vanishes (a crash: nothing more reaches the store); with it, it closes
        every connection and flushes first, as a shutdown does."""
        if clean:
            self.broker.close_all("test restart")
        self.box.reopen()
        self.broker = self._start()

    def open(self) -> Client:
        client = Client(self, f"192.0.2.1:{40001 + len(self.clients)}")
        self.clients.append(client)
        return client

    def connect(
        self, client_id: str, *, present: bool = False, clean_session: bool = True
    ) -> Client:
        """A client connected with CONNACK 0 and the expected session present flag."""
        client = self.open()
        answer = client.connect(client_id, clean_session=clean_session)
        assert answer == [ConnAck(0, present)], answer
        return client

    def resume(self, client_id: str) -> tuple[Client, list[Packet]]:
        """Reconnect with clean session 0 expecting session present 1; returns
        the client and what the broker sent after the CONNACK."""
        client = self.open()
        answer = client.connect(client_id, clean_session=False)
        assert answer[:1] == [ConnAck(0, True)], answer
        return client, answer[1:]

    def fire(self, at: float) -> None:
        """Run the broker's timers as of START + `at` seconds."""
        self.now = START + at
        self.broker.handle_timer(self.now)


@pytest.fixture
def make_node(make_store: Callable[[], StoreBox]) -> Iterator[Callable[..., Node]]:
    """Factory: `make_node(**BrokerConfig fields)` -> a broker over a fresh store.

    At teardown: the broker never wrote to a socket after closing it.
    """
    made: list[Node] = []

    def make(**config: Any) -> Node:
        node = Node(make_store(), BrokerConfig(**config).validate())
        made.append(node)
        return node

    yield make
    for node in made:
        for client in node.clients:
            assert client.transport.writes_after_close == 0, client.connection
