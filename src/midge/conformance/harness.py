"""A blocking-socket MQTT test client and the target a check run talks to.

`RawClient` speaks MQTT through `midge.protocol` but lets a scenario send any
bytes and assert exactly what comes back: `expect` a packet of one class,
`expect_closed`, `expect_nothing`. Every failed expectation raises
`ScenarioFailed` with a message that says which client waited for what.

`Target` names the broker and a per-scenario prefix that makes client ids and
topics unique, so checks can run against a shared broker; it remembers the
clients it made and, in `cleanup`, removes the retained messages and
persistent sessions they left behind. Its `username` and `password` (for a
broker that requires them) go into every CONNECT its clients send through
`RawClient.connect` / `connect_packet`; hand-built CONNECT bytes carry none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypedDict, TypeVar, Unpack

from midge.protocol.codec import Decoder, encode
from midge.protocol.errors import MQTTError
from midge.protocol.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)

DEFAULT_TIMEOUT = 2.0
"""Seconds a client waits for an expected packet."""

QUIET_PERIOD = 0.5
"""Seconds of silence that count as "the broker sends nothing"."""

MAX_STRICT_CLIENT_ID = 23
MAX_PREFIX = 12
"""A run prefix (8) plus a scenario id (4): client ids keep room for an 11-character name."""

P = TypeVar("P", bound=Packet)


class ConnectOptions(TypedDict, total=False):
    """What `RawClient.connect` / `connect_packet` may set in a CONNECT besides the client id.

    Unset: clean session, keep alive 60, no will, protocol level 4, protocol
    name "MQTT"; `username` / `password` unset or None: the client's own.
    """

    clean_session: bool
    keep_alive: int
    will: Will | None
    username: str | None
    password: bytes | None
    protocol_level: int
    protocol_name: str


class ScenarioFailed(Exception):
    """The broker did not behave as the scenario requires."""


class _Timeout(Exception):
    pass


def describe(packet: Packet) -> str:
    """A short human-readable rendering of a packet for failure messages."""
    if isinstance(packet, Publish):
        payload = packet.payload if len(packet.payload) <= 40 else packet.payload[:40] + b"..."
        return (
            f"PUBLISH(topic={packet.topic!r}, payload={payload!r}, qos={packet.qos}, "
            f"retain={int(packet.retain)}, dup={int(packet.dup)}, id={packet.packet_id})"
        )
    return f"{type(packet).__name__.upper()}{_fields(packet)}"


def _fields(packet: Packet) -> str:
    # dataclasses.fields, not __slots__: mypyc-compiled packet classes have none.
    values = [f"{item.name}={getattr(packet, item.name)!r}" for item in dataclasses.fields(packet)]
    return f"({', '.join(values)})" if values else ""


class RawClient:
    """One TCP connection to the broker with blocking, bounded reads."""

    def __init__(
        self,
        host: str,
        port: int,
        name: str = "client",
        timeout: float = DEFAULT_TIMEOUT,
        username: str | None = None,
        password: bytes | None = None,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.username = username
        self.password = password
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ScenarioFailed(f"{name}: cannot connect to {host}:{port}: {exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder()
        self.backlog: deque[Packet] = deque()
        self.client_id: str | None = None
        self.clean_session = True
        self.connack: ConnAck | None = None
        self.retained_topics: set[str] = set()
        self.eof = False
        self.open = True
        self._next_id = 0

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> RawClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket without DISCONNECT: to the broker, an abrupt network failure."""
        if self.open:
            self.open = False
            self.sock.close()

    def disconnect(self) -> None:
        """Send DISCONNECT (if the connection still stands) and close."""
        if self.open and not self.eof:
            with contextlib.suppress(OSError):
                self.sock.sendall(encode(Disconnect()))
        self.close()

    # -------------------------------------------------------------- sending

    def send(self, item: Packet | bytes, allow_closed: bool = False) -> None:
        """Send a packet or raw bytes; `allow_closed` ignores a connection the broker closed."""
        data = item if isinstance(item, bytes) else encode(item)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            if not allow_closed:
                what = f"{len(data)} bytes" if isinstance(item, bytes) else describe(item)
                raise ScenarioFailed(f"{self.name}: sending {what} failed: {exc}") from None

    def new_packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    # ------------------------------------------------------------ receiving

    def _receive(self, deadline: float) -> Packet | None:
        """The next packet, None once the broker closed; `_Timeout` at the deadline."""
        while True:
            try:
                packet = self.decoder.next_packet()
            except MQTTError as exc:
                raise ScenarioFailed(f"{self.name}: the broker sent bad bytes: {exc}") from None
            if packet is not None:
                return packet
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise _Timeout from None
            except OSError:
                data = b""  # reset or aborted: the broker closed the connection
            if not data:
                self.eof = True
            self.decoder.feed(data)

    def receive(self, timeout: float | None = None, waiting_for: str = "a packet") -> Packet:
        """The next packet (backlog first); fails on close or timeout."""
        if self.backlog:
            return self.backlog.popleft()
        timeout = self.timeout if timeout is None else timeout
        try:
            packet = self._receive(time.monotonic() + timeout)
        except _Timeout:
            raise ScenarioFailed(f"{self.name}: no {waiting_for} within {timeout:g}s") from None
        if packet is None:
            raise ScenarioFailed(
                f"{self.name}: connection closed by the broker while waiting for {waiting_for}"
            )
        return packet

    def expect(self, cls: type[P], timeout: float | None = None) -> P:
        """The next packet, which must be of class `cls`."""
        wanted = cls.__name__.upper()
        packet = self.receive(timeout, wanted)
        if not isinstance(packet, cls):
            raise ScenarioFailed(f"{self.name}: expected {wanted}, got {describe(packet)}")
        return packet

    def _expect_stashing(self, cls: type[P], timeout: float | None = None) -> P:
        """Like `expect`, but PUBLISH packets arriving first are kept in the backlog."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        stashed: list[Packet] = []
        try:
            while True:
                packet = self._wait_until(deadline, cls.__name__.upper())
                if isinstance(packet, cls):
                    return packet
                if not isinstance(packet, Publish):
                    raise ScenarioFailed(
                        f"{self.name}: expected {cls.__name__.upper()}, got {describe(packet)}"
                    )
                stashed.append(packet)
        finally:
            self.backlog.extend(stashed)

    def _wait_until(self, deadline: float, waiting_for: str) -> Packet:
        return self.receive(max(deadline - time.monotonic(), 0.0), waiting_for)

    def expect_closed(self, timeout: float | None = None) -> None:
        """The broker closes the connection without sending (another) packet first."""
        timeout = self.timeout if timeout is None else timeout
        if self.backlog:
            raise ScenarioFailed(
                f"{self.name}: expected the broker to close the connection, "
                f"got {describe(self.backlog[0])}"
            )
        try:
            packet = self._receive(time.monotonic() + timeout)
        except _Timeout:
            raise ScenarioFailed(
                f"{self.name}: the broker did not close the connection within {timeout:g}s"
            ) from None
        if packet is not None:
            raise ScenarioFailed(
                f"{self.name}: expected the broker to close the connection, got {describe(packet)}"
            )

    def collect(self, duration: float, allow_close: bool = False) -> list[Packet]:
        """Every packet arriving within `duration` seconds (backlog first)."""
        packets = list(self.backlog)
        self.backlog.clear()
        deadline = time.monotonic() + duration
        while True:
            try:
                packet = self._receive(deadline)
            except _Timeout:
                return packets
            if packet is None:
                if allow_close:
                    return packets
                raise ScenarioFailed(
                    f"{self.name}: connection closed by the broker "
                    f"(after {len(packets)} packets) while it should stay open"
                )
            packets.append(packet)

    def expect_nothing(self, duration: float = QUIET_PERIOD) -> None:
        """Neither a packet nor a close arrives within `duration` seconds."""
        packets = self.collect(duration)
        if packets:
            raise ScenarioFailed(
                f"{self.name}: expected nothing for {duration:g}s, got {describe(packets[0])}"
            )

    def still_connected(self) -> None:
        """A PINGREQ is answered: the connection is up and the broker serves it."""
        self.send(PingReq())
        self.expect(PingResp)

    # ------------------------------------------------------------- sessions

    def connect(self, client_id: str, **options: Unpack[ConnectOptions]) -> ConnAck:
        """Send CONNECT and return the CONNACK (whatever its return code).

        `username` / `password` None: this client's own (the target's credentials).
        """
        packet = self.connect_packet(client_id, **options)
        self.client_id = client_id
        self.clean_session = packet.clean_session
        if packet.will is not None and packet.will.retain:
            self.retained_topics.add(packet.will.topic)
        self.send(packet)
        self.connack = self.expect(ConnAck)
        return self.connack

    def connect_packet(self, client_id: str, **options: Unpack[ConnectOptions]) -> Connect:
        """A CONNECT carrying this client's credentials unless others are given."""
        username = options.get("username")
        password = options.get("password")
        return Connect(
            client_id=client_id,
            clean_session=options.get("clean_session", True),
            keep_alive=options.get("keep_alive", 60),
            username=self.username if username is None else username,
            password=self.password if password is None else password,
            will=options.get("will"),
            protocol_level=options.get("protocol_level", 4),
            protocol_name=options.get("protocol_name", "MQTT"),
        )

    def subscribe(self, *subscriptions: tuple[str, int]) -> tuple[int, ...]:
        """SUBSCRIBE and return the SUBACK return codes (checking its packet id)."""
        packet_id = self.new_packet_id()
        subs = tuple(Subscription(topic_filter, qos) for topic_filter, qos in subscriptions)
        self.send(Subscribe(packet_id, subs))
        suback = self._expect_stashing(SubAck)
        if suback.packet_id != packet_id:
            raise ScenarioFailed(
                f"{self.name}: SUBACK packet id {suback.packet_id}, SUBSCRIBE had {packet_id}"
            )
        return suback.return_codes

    def unsubscribe(self, *topic_filters: str) -> None:
        packet_id = self.new_packet_id()
        self.send(Unsubscribe(packet_id, topic_filters))
        unsuback = self._expect_stashing(UnsubAck)
        if unsuback.packet_id != packet_id:
            raise ScenarioFailed(
                f"{self.name}: UNSUBACK packet id {unsuback.packet_id}, UNSUBSCRIBE had {packet_id}"
            )

    # ------------------------------------------------------------- messages

    def publish(
        self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False
    ) -> int | None:
        """PUBLISH and complete the publisher side of the QoS flow; returns the packet id."""
        if retain:
            self.retained_topics.add(topic)
        packet_id = self.new_packet_id() if qos else None
        self.send(Publish(topic, payload, qos, retain, packet_id=packet_id))
        if qos == 1:
            self._expect_ack(PubAck, packet_id)
        elif qos == 2:
            self._expect_ack(PubRec, packet_id)
            self.send(PubRel(packet_id or 0))
            self._expect_ack(PubComp, packet_id)
        return packet_id

    def _expect_ack(self, cls: type[PubAck | PubRec | PubComp], packet_id: int | None) -> None:
        ack = self._expect_stashing(cls)
        if ack.packet_id != packet_id:
            raise ScenarioFailed(
                f"{self.name}: {cls.__name__.upper()} for packet id {ack.packet_id}, "
                f"expected {packet_id}"
            )

    def acknowledge(self, publish: Publish) -> None:
        """Complete the receiver side of the QoS flow of a delivered PUBLISH."""
        if publish.qos == 1:
            self.send(PubAck(publish.packet_id or 0))
        elif publish.qos == 2:
            self.send(PubRec(publish.packet_id or 0))
            pubrel = self.expect(PubRel)
            if pubrel.packet_id != publish.packet_id:
                raise ScenarioFailed(
                    f"{self.name}: PUBREL for packet id {pubrel.packet_id}, "
                    f"expected {publish.packet_id}"
                )
            self.send(PubComp(publish.packet_id or 0))

    def expect_publish(
        self,
        topic: str,
        payload: bytes | None = None,
        qos: int | None = None,
        retain: bool | None = None,
        dup: bool | None = None,
        ack: bool = True,
        timeout: float | None = None,
    ) -> Publish:
        """The next packet is a PUBLISH with these fields (None: any); acknowledged if `ack`."""
        publish = self.expect(Publish, timeout)
        wanted = {"topic": topic, "payload": payload, "qos": qos, "retain": retain, "dup": dup}
        wrong = [
            f"{name}={getattr(publish, name)!r} (expected {value!r})"
            for name, value in wanted.items()
            if value is not None and getattr(publish, name) != value
        ]
        if wrong:
            raise ScenarioFailed(
                f"{self.name}: unexpected PUBLISH {', '.join(wrong)}: {describe(publish)}"
            )
        if publish.qos and not publish.packet_id:
            raise ScenarioFailed(f"{self.name}: QoS {publish.qos} PUBLISH without packet id")
        if ack:
            self.acknowledge(publish)
        return publish


def new_prefix() -> str:
    """A short alphanumeric prefix unique to one run (client ids stay within 23 chars)."""
    return "mc" + secrets.token_hex(3)


def check(condition: bool, message: str) -> None:
    """Fail the scenario with `message` unless `condition` holds."""
    if not condition:
        raise ScenarioFailed(message)


@dataclass
class Target:
    """The broker under test and the prefix that keeps this run's names apart."""

    host: str
    port: int
    prefix: str = field(default_factory=new_prefix)
    timeout: float = DEFAULT_TIMEOUT
    username: str | None = None
    password: bytes | None = field(default=None, repr=False)
    clients: list[RawClient] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.prefix.isascii() and self.prefix.isalnum()) or len(self.prefix) > MAX_PREFIX:
            raise ValueError(
                f"prefix {self.prefix!r} must be 1-{MAX_PREFIX} ASCII letters and digits"
            )

    def scoped(self, suffix: str) -> Target:
        """A fresh target for one scenario: same broker, prefix extended by `suffix`."""
        return Target(
            self.host,
            self.port,
            f"{self.prefix}{suffix}",
            self.timeout,
            self.username,
            self.password,
        )

    def topic(self, name: str = "t") -> str:
        """A topic (or filter, when `name` has wildcards) under this target's prefix."""
        return f"midge-check/{self.prefix}/{name}"

    def client_id(self, name: str) -> str:
        """A client id of at most 23 alphanumeric characters, the range [MQTT-3.1.3-5] allows."""
        client_id = f"{self.prefix}{name}"
        if (
            len(client_id) > MAX_STRICT_CLIENT_ID
            or not client_id.isascii()
            or not client_id.isalnum()
        ):
            raise ValueError(f"client id {client_id!r} is not 1-23 alphanumeric characters")
        return client_id

    def raw(self, name: str = "raw") -> RawClient:
        """A new TCP connection that has sent nothing yet."""
        client = self.untracked(name)
        self.clients.append(client)
        return client

    def untracked(self, name: str) -> RawClient:
        """A new TCP connection with this target's credentials that `cleanup` ignores."""
        return RawClient(self.host, self.port, name, self.timeout, self.username, self.password)

    def client(
        self,
        name: str,
        clean_session: bool = True,
        keep_alive: int = 60,
        will: Will | None = None,
        session_present: bool | None = None,
    ) -> RawClient:
        """A connected client (CONNACK 0 required), id `client_id(name)`."""
        client = self.raw(name)
        connack = client.connect(
            self.client_id(name), clean_session=clean_session, keep_alive=keep_alive, will=will
        )
        check(
            connack.return_code == 0,
            f"{name}: CONNACK return code {connack.return_code}, expected 0",
        )
        if session_present is not None:
            check(
                connack.session_present == session_present,
                f"{name}: CONNACK session present {int(connack.session_present)}, "
                f"expected {int(session_present)}",
            )
        return client

    def cleanup(self) -> None:
        """Close every client; delete its persistent session and retained messages."""
        for client in self.clients:
            client.disconnect()
        sessions = {c.client_id for c in self.clients if c.client_id and not c.clean_session}
        retained = set().union(*(c.retained_topics for c in self.clients))
        self.clients.clear()
        for client_id in sorted(sessions):
            with self.untracked("cleanup") as client:
                client.connect(client_id, clean_session=True)
                client.disconnect()
        if retained:
            with self.untracked("cleanup") as client:
                client.connect(self.client_id("cleanup"), clean_session=True)
                for topic in sorted(retained):
                    client.publish(topic, b"", qos=1, retain=True)
                client.disconnect()
