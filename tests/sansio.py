"""Drive the sans-IO broker core byte for byte, without sockets.

`FakeTransport` records what the broker writes and whether it closed or
aborted the "socket". `Client` wraps one broker connection and its transport:
it encodes packets with the real codec, feeds them to
`Connection.data_received`, and decodes everything the broker wrote since the
last look with `decode_all` (so a half-written packet fails the test).
`Harness` owns a broker and its clock: time only moves when a test moves it.
Given a `StoreBox` it is a broker over a durable store, with a wall clock of
its own for session expiry, and `Harness.restart()` builds a new `Broker`
from what the store's `load()` returns, as a restarted process would.

The fixtures of tests/broker/conftest.py (`harness`, `make_harness`) and
tests/store/conftest.py (`make_store`, `make_node`) are built on this module;
test modules import it as `from sansio import ...`, like tests/brokers.py.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from midge.broker.auth import Authenticator
from midge.broker.broker import Broker
from midge.broker.config import BrokerConfig
from midge.broker.connection import Connection
from midge.broker.persistence import Committer
from midge.cluster.store import RedisStore
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
from midge.protocol.properties import Properties
from midge.store.base import Store
from midge.store.memory import MemoryStore
from midge.store.sqlite import SQLiteStore
from redis_server import RedisServer

START = 1000.0  # the clock of every harness starts here; tests use offsets from it
WALL_START = 1_700_000_000.0  # and the wall clock of a harness that has its own (see Harness)

STORE_KINDS = ("memory", "sqlite", "redis")
REDIS_NODE = "n1"  # the cluster node name of a "redis" StoreBox


# ------------------------------------------------------------------ stores

_redis: RedisServer | None = None
_redis_prefixes = itertools.count(1)


def shared_redis() -> RedisServer:
    """The redis-server of every "redis" StoreBox of this process: started by
    the first (skipping the test where Redis is not installed, see
    require_redis), stopped at exit. Boxes keep apart by key prefix."""
    global _redis  # noqa: PLW0603 - one server per process, started lazily
    if _redis is None:
        folder = Path(tempfile.mkdtemp(prefix="sansio-redis-"))
        server = RedisServer(folder).start()
        atexit.register(shutil.rmtree, folder, True)
        atexit.register(server.stop)  # runs first: the folder goes after the server
        _redis = server
    return _redis


def fresh_redis_prefix() -> str:
    """A Redis key prefix no other store of this process uses."""
    return f"box{os.getpid()}x{next(_redis_prefixes)}"


class StoreBox:
    """One durable store of a kind; `reopen` is what a process restart does to it."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.redis_prefix = fresh_redis_prefix() if kind == "redis" else ""
        self.store: Store = self._open()

    def _open(self) -> Store:
        if self.kind == "memory":
            return MemoryStore()
        if self.kind == "redis":
            return RedisStore.open(shared_redis().url, REDIS_NODE, self.redis_prefix)
        return SQLiteStore(self.path)

    def reopen(self) -> Store:
        """The memory store lives on in the process; the SQLite file, or the
        connection to Redis, is closed and opened again."""
        if self.kind != "memory":
            self.store.close()
            self.store = self._open()
        return self.store

    def close(self) -> None:
        self.store.close()


# ---------------------------------------------------------------- transport


class FakeTransport:
    """A byte sink that remembers what was written and how it was closed."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted = False
        self.write_calls = 0
        self.writes_after_close = 0
        self.reading = True  # what the connection last asked of the socket

    def write(self, data: bytes) -> None:
        if self.closed or self.aborted:
            self.writes_after_close += 1
        self.write_calls += 1
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def take(self) -> bytes:
        """The bytes written since the last take."""
        data = bytes(self.data)
        self.data.clear()
        return data


# ------------------------------------------------------------------- client


class Client:
    """One connection to a harness's current broker, as a test's MQTT client sees it."""

    def __init__(self, harness: Harness, peer: str) -> None:
        self.harness = harness
        self.transport = FakeTransport()
        self.connection: Connection = harness.broker.connection_made(
            self.transport, peer, harness.now
        )
        self.version = PROTOCOL_MQTT_3_1_1
        self._next_id = 1
        self.last_id: int | None = None
        self._unread: list[Packet] = []

    # ---------------------------------------------------------------- output

    def raw(self) -> bytes:
        """Every byte the broker wrote to this client since the last look."""
        return self.transport.take()

    def received(self) -> list[Packet]:
        """The packets the broker wrote since the last look (whole packets only)."""
        return decode_all(self.transport.take(), self.version)

    def received_first(self) -> Packet:
        """The first packet the broker wrote since the last look; the others
        wait for `received_rest` (a SUBACK, then the retained messages)."""
        packets = self.received()
        assert packets, "the broker sent nothing"
        self._unread = packets[1:]
        return packets[0]

    def received_rest(self) -> list[Packet]:
        """What `received_first` left, then what the broker wrote since."""
        packets, self._unread = self._unread, []
        return packets + self.received()

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
        properties: Properties | None = None,
        bridge: bool = False,
    ) -> list[Packet]:
        """Send CONNECT; return what the broker answered. `bridge`: say it is
        another broker's bridge (protocol level | 0x80, Connect.bridge)."""
        if level in (3, 4, 5):
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
                properties=properties,
                bridge=bridge,
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
        assert answer == [SubAck(self.last_id or 0, codes)]

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

    def acknowledge(self, packets: Iterable[Packet]) -> None:
        """Complete the flow of every QoS 1/2 PUBLISH (and PUBREL) in `packets`,
        checking the broker's side: its answer to a PUBREC is exactly the PUBREL."""
        for packet in packets:
            if isinstance(packet, PubRel):
                self.send(PubComp(packet.packet_id))
            elif isinstance(packet, Publish) and packet.qos:
                assert packet.packet_id is not None
                if packet.qos == 1:
                    self.send(PubAck(packet.packet_id))
                else:
                    self.send(PubRec(packet.packet_id))
                    answer = self.received()
                    assert answer == [PubRel(packet.packet_id)], answer
                    self.send(PubComp(packet.packet_id))

    def disconnect(self) -> None:
        self.send(Disconnect())

    def drop(self) -> None:
        """The network connection is lost under the broker's feet."""
        self.connection.connection_lost(self.harness.now)


# ------------------------------------------------------------------ harness


class Harness:
    """One broker, its clock, and helpers to open client connections.

    Without `box` the broker keeps nothing. With it (a `StoreBox`) the broker
    writes to that store and starts from what the store's `load()` returns, and
    `restart()` starts a new one over the same store. `wall` gives the broker a
    wall clock (session expiry) of its own, starting there and moved only by a
    test setting `self.wall`; without it the broker reads `time.time()`.
    """

    def __init__(
        self,
        config: BrokerConfig,
        authenticator: Authenticator | None = None,
        *,
        box: StoreBox | None = None,
        wall: float | None = None,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.box = box
        self.now = START
        self.wall = wall
        self._wall_clock: Callable[[], float] = time.time if wall is None else self._own_wall
        self.clients: list[Client] = []
        self.committer: Committer | None = None
        self.broker = self._start()

    def use_committer(self, committer: Committer) -> None:
        """A broker (new, before any client) that commits through `committer`."""
        assert not self.clients, "swap the committer before any client connects"
        self.committer = committer
        self.broker = self._start()

    def _own_wall(self) -> float:
        assert self.wall is not None
        return self.wall

    @property
    def store(self) -> Store:
        """The durable store under the broker (a harness made with a `box` only)."""
        assert self.box is not None, "this harness has no store"
        return self.box.store

    def _start(self) -> Broker:
        store = None if self.box is None else self.box.store
        broker = Broker(
            self.config,
            self.authenticator,
            store=store,
            wall_clock=self._wall_clock,
            committer=self.committer,
        )
        if store is not None:
            broker.restore(store.load())
        return broker

    def restart(self, *, clean: bool = False) -> None:
        """A new process over the same store. Without `clean` the old broker just
        vanishes (a crash: nothing more reaches the store); with it, it closes
        every connection and flushes first, as a shutdown does."""
        assert self.box is not None, "only a harness with a store restarts"
        if clean:
            self.broker.close_all()
        self.box.reopen()
        self.broker = self._start()

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

    def resume(self, client_id: str) -> tuple[Client, list[Packet]]:
        """Reconnect with clean session 0 expecting session present 1; returns
        the client and what the broker sent after the CONNACK."""
        client = self.open()
        answer = client.connect(client_id, clean_session=False)
        assert answer[:1] == [ConnAck(0, True)], answer
        return client, answer[1:]

    def advance(self, seconds: float) -> None:
        """Move the clock without firing timers."""
        self.now += seconds

    def fire(self, at: float) -> None:
        """Run the broker's timers as of START + `at` seconds (and move the clock there)."""
        self.now = START + at
        self.broker.handle_timer(self.now)

    def assert_no_writes_after_close(self) -> None:
        """The broker never wrote to a socket after closing or aborting it."""
        for client in self.clients:
            assert client.transport.writes_after_close == 0, client.connection
