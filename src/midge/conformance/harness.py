"""A blocking-socket MQTT test client and the target a check run talks to.

`RawClient` speaks MQTT through `midge.protocol` but lets a scenario send any
bytes and assert exactly what comes back: `expect` a packet of one class,
`expect_closed`, `expect_nothing`. Every failed expectation raises
`ScenarioFailed` with a message that says which client waited for what.

`midge.conformance.target.Target` makes these clients for a scenario.

A client speaks one protocol `version` (4: MQTT 3.1.1, 5: MQTT 5.0); every
packet is encoded and decoded at it. A 5.0 client resolves the topic aliases
the broker sends it, failing the scenario on an alias the broker may not use;
`midge.conformance.v5` holds the 5.0 expectations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from collections import deque
from types import TracebackType
from typing import TypedDict, TypeVar, Unpack

from midge.protocol.codec import Decoder, encode
from midge.protocol.errors import MQTTError
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1_1,
    PROTOCOL_MQTT_5,
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
from midge.protocol.properties import Properties

DEFAULT_TIMEOUT = 2.0
"""Seconds a client waits for an expected packet."""

QUIET_PERIOD = 0.5
"""Seconds of silence that count as "the broker sends nothing"."""

P = TypeVar("P", bound=Packet)
A = TypeVar("A", PubAck, PubRec, PubComp)


class ConnectOptions(TypedDict, total=False):
    """What `RawClient.connect` / `connect_packet` may set in a CONNECT besides the client id.

    Unset: clean session (5.0: Clean Start), keep alive 60, no will, the
    client's protocol level, protocol name "MQTT", no properties;
    `username` / `password` unset or None: the client's own.
    """

    clean_session: bool
    keep_alive: int
    will: Will | None
    username: str | None
    password: bytes | None
    protocol_level: int
    protocol_name: str
    properties: Properties | None


class ScenarioFailed(Exception):
    """The broker did not behave as the scenario requires."""


class NotApplicable(Exception):
    """The broker's configuration (read from CONNACK) rules out what the scenario checks."""


class _Timeout(Exception):
    pass


def describe(packet: Packet) -> str:
    """A short human-readable rendering of a packet for failure messages."""
    if isinstance(packet, Publish):
        payload = packet.payload if len(packet.payload) <= 40 else packet.payload[:40] + b"..."
        properties = "" if packet.properties is None else f", {packet.properties!r}"
        return (
            f"PUBLISH(topic={packet.topic!r}, payload={payload!r}, qos={packet.qos}, "
            f"retain={int(packet.retain)}, dup={int(packet.dup)}, id={packet.packet_id}"
            f"{properties})"
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
        version: int = PROTOCOL_MQTT_3_1_1,
    ) -> None:
        self.name = name
        self.version = version
        self.timeout = timeout
        self.username = username
        self.password = password
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ScenarioFailed(f"{name}: cannot connect to {host}:{port}: {exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder(version)
        self.backlog: deque[Packet] = deque()
        self.client_id: str | None = None
        self.clean_session = True
        self.session_expiry = 0  # 5.0: the Session Expiry Interval last sent
        self.topic_alias_maximum = 0  # 5.0: the highest alias this client lets the broker use
        self.topic_aliases: dict[int, str] = {}  # 5.0: aliases the broker set, for this connection
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

    def disconnect(self, reason_code: int = 0, properties: Properties | None = None) -> None:
        """Send DISCONNECT (if the connection still stands) and close.

        `reason_code` and `properties` are for 5.0; a Session Expiry Interval
        among them is remembered, so `Target.cleanup` knows a session stays.
        """
        if properties is not None and properties.session_expiry_interval is not None:
            self.session_expiry = properties.session_expiry_interval or self.session_expiry
        if self.open and not self.eof:
            with contextlib.suppress(OSError):
                self.sock.sendall(encode(Disconnect(reason_code, properties), self.version))
        self.close()

    @property
    def leaves_session(self) -> bool:
        """Whether the broker may keep this client's session after it goes."""
        if self.version >= PROTOCOL_MQTT_5:
            return self.session_expiry != 0
        return not self.clean_session

    # -------------------------------------------------------------- sending

    def send(self, item: Packet | bytes, allow_closed: bool = False) -> None:
        """Send a packet or raw bytes; `allow_closed` ignores a connection the broker closed."""
        data = item if isinstance(item, bytes) else encode(item, self.version)
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
            if isinstance(packet, Publish) and packet.properties is not None:
                return self._resolve_alias(packet)
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

    def _resolve_alias(self, publish: Publish) -> Publish:
        """A PUBLISH with its topic filled in from the broker's Topic Alias (5.0, 3.3.2.3.4).

        Every scenario so checks that the broker uses only aliases this client
        allows [MQTT-3.1.2-26, MQTT-3.1.2-27] and sets each before using it.
        """
        alias = publish.properties.topic_alias if publish.properties else None
        if alias is None:
            return publish
        if not 0 < alias <= self.topic_alias_maximum:
            raise ScenarioFailed(
                f"{self.name}: the broker sent Topic Alias {alias}, above this client's "
                f"Topic Alias Maximum {self.topic_alias_maximum}: {describe(publish)}"
            )
        if publish.topic:
            self.topic_aliases[alias] = publish.topic
            return publish
        topic = self.topic_aliases.get(alias)
        if topic is None:
            raise ScenarioFailed(
                f"{self.name}: the broker used Topic Alias {alias} without setting it first"
            )
        return Publish(
            topic,
            publish.payload,
            publish.qos,
            publish.retain,
            publish.dup,
            publish.packet_id,
            properties=publish.properties,
        )

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

    def receive_or_close(
        self, timeout: float | None = None, waiting_for: str = "a packet"
    ) -> Packet | None:
        """The next packet, or None when the broker closes first; fails on timeout."""
        if self.backlog:
            return self.backlog.popleft()
        timeout = self.timeout if timeout is None else timeout
        try:
            return self._receive(time.monotonic() + timeout)
        except _Timeout:
            raise ScenarioFailed(f"{self.name}: no {waiting_for} within {timeout:g}s") from None

    def expect(self, cls: type[P], timeout: float | None = None) -> P:
        """The next packet, which must be of class `cls`."""
        wanted = cls.__name__.upper()
        packet = self.receive(timeout, wanted)
        if not isinstance(packet, cls):
            raise ScenarioFailed(f"{self.name}: expected {wanted}, got {describe(packet)}")
        return packet

    def expect_stashing(self, cls: type[P], timeout: float | None = None) -> P:
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
        self._remember_connect_properties(packet.properties)
        if packet.will is not None and packet.will.retain:
            self.retained_topics.add(packet.will.topic)
        self.send(packet)
        if packet.protocol_level == PROTOCOL_MQTT_5:
            self._negotiate_version()
        self.connack = self.expect(ConnAck)
        assigned = self.connack.properties and self.connack.properties.assigned_client_identifier
        if assigned:
            self.client_id = assigned
        return self.connack

    def _negotiate_version(self) -> None:
        """Decode the answer to a level 5 CONNECT at 5.0, unless it is a 3.1.1 CONNACK.

        A server without 5.0 answers CONNACK 1 in its 3.1.1 form (remaining
        length 2); a 5.0 CONNACK has at least 3 (reason code, property length).
        """
        data = b""
        deadline = time.monotonic() + self.timeout
        while len(data) < 2 and not self.eof and time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                chunk = b""
            self.eof = not chunk
            data += chunk
        three_one_one = data[:2] == b"\x20\x02"
        self.decoder.version = PROTOCOL_MQTT_3_1_1 if three_one_one else PROTOCOL_MQTT_5
        self.decoder.feed(data)

    def _remember_connect_properties(self, properties: Properties | None) -> None:
        self.topic_aliases.clear()  # aliases live for one connection [MQTT-3.3.2-7]
        if properties is None:
            self.session_expiry, self.topic_alias_maximum = 0, 0
            return
        self.session_expiry = properties.session_expiry_interval or 0
        self.topic_alias_maximum = properties.topic_alias_maximum or 0

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
            protocol_level=options.get("protocol_level", self.version),
            protocol_name=options.get("protocol_name", "MQTT"),
            properties=options.get("properties"),
        )

    def subscribe(self, *subscriptions: tuple[str, int]) -> tuple[int, ...]:
        """SUBSCRIBE and return the SUBACK return codes (checking its packet id)."""
        packet_id = self.new_packet_id()
        subs = tuple(Subscription(topic_filter, qos) for topic_filter, qos in subscriptions)
        self.send(Subscribe(packet_id, subs))
        suback = self.expect_stashing(SubAck)
        if suback.packet_id != packet_id:
            raise ScenarioFailed(
                f"{self.name}: SUBACK packet id {suback.packet_id}, SUBSCRIBE had {packet_id}"
            )
        return suback.return_codes

    def subscribe_with(
        self, *subscriptions: Subscription, properties: Properties | None = None
    ) -> SubAck:
        """SUBSCRIBE with full (5.0) subscription options and properties; the SUBACK."""
        packet_id = self.new_packet_id()
        self.send(Subscribe(packet_id, subscriptions, properties))
        suback = self.expect_stashing(SubAck)
        if suback.packet_id != packet_id:
            raise ScenarioFailed(
                f"{self.name}: SUBACK packet id {suback.packet_id}, SUBSCRIBE had {packet_id}"
            )
        return suback

    def unsubscribe(self, *topic_filters: str) -> UnsubAck:
        packet_id = self.new_packet_id()
        self.send(Unsubscribe(packet_id, topic_filters))
        unsuback = self.expect_stashing(UnsubAck)
        if unsuback.packet_id != packet_id:
            raise ScenarioFailed(
                f"{self.name}: UNSUBACK packet id {unsuback.packet_id}, UNSUBSCRIBE had {packet_id}"
            )
        return unsuback

    # ------------------------------------------------------------- messages

    def publish(
        self,
        topic: str,
        payload: bytes = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int | None:
        """PUBLISH and complete the publisher side of the QoS flow; returns the packet id."""
        self.publish_acked(topic, payload, qos, retain, properties)
        return None if qos == 0 else self._next_id

    def publish_acked(
        self,
        topic: str,
        payload: bytes = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> PubAck | PubRec | None:
        """`publish`, returning the PUBACK (QoS 1) or PUBREC (QoS 2) for its reason code.

        A QoS 2 flow continues with PUBREL / PUBCOMP only when the PUBREC
        accepted the message (5.0: a reason code below 0x80, section 4.3.3).
        """
        if retain:
            self.retained_topics.add(topic)
        packet_id = self.new_packet_id() if qos else None
        self.send(Publish(topic, payload, qos, retain, packet_id=packet_id, properties=properties))
        if qos == 1:
            return self.expect_ack(PubAck, packet_id)
        if qos == 2:
            pubrec = self.expect_ack(PubRec, packet_id)
            if pubrec.reason_code < 0x80:
                self.send(PubRel(packet_id or 0))
                self.expect_ack(PubComp, packet_id)
            return pubrec
        return None

    def expect_ack(self, cls: type[A], packet_id: int | None) -> A:
        """The next non-PUBLISH packet: a `cls` acknowledging `packet_id`."""
        ack = self.expect_stashing(cls)
        if ack.packet_id != packet_id:
            raise ScenarioFailed(
                f"{self.name}: {cls.__name__.upper()} for packet id {ack.packet_id}, "
                f"expected {packet_id}"
            )
        return ack

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


def check(condition: bool, message: str) -> None:
    """Fail the scenario with `message` unless `condition` holds."""
    if not condition:
        raise ScenarioFailed(message)
