"""Sans-IO MQTT 3.1 / 3.1.1 client: bytes and time in, events and bytes out.

Theory of operation. `ClientProtocol` holds everything a client must
remember, and nothing about sockets or clocks: the front end calls
`connect(now)` when a transport is up, feeds what it reads to
`receive_data(data, now)`, calls `handle_timer(now)` at `timer_deadline()`,
writes `data_to_send()` and acts on `events_received()`. The same object
lives across connections, which is what lets a reconnect resume a session.

States, and the only packets the broker may send in each:

    DISCONNECTED --connect()--> CONNECTING --CONNACK 0--> CONNECTED
    CONNECTING:  CONNACK (a refusal goes back to DISCONNECTED)
    CONNECTED:   PUBLISH PUBACK PUBREC PUBREL PUBCOMP SUBACK UNSUBACK PINGRESP
    any live state --connection_lost() / protocol error / keep-alive--> DISCONNECTED
    any state --disconnect()--> CLOSED (final; DISCONNECT is sent if connected)

A packet outside its state's set is the broker breaking the protocol:
`receive_data` raises `ProtocolError` (the codec raises `MalformedPacket`),
the state drops to DISCONNECTED and the front end must close the socket.

Session state that survives a lost connection (MQTT 3.1.1 section 4.1):
outgoing QoS 1/2 messages in the order they were first sent, each with the
acknowledgement it waits for; incoming QoS 2 packet ids received and not yet
released (so a repeated PUBLISH is not delivered twice); SUBSCRIBE and
UNSUBSCRIBE requests not yet acknowledged; the filters granted so far. After
the next CONNACK 0 unacknowledged PUBLISH packets are re-sent with DUP set and
PUBREL for those past PUBREC, in their original order [MQTT-4.4.0-1]. When
the broker reports no session (clean session, or it lost the session) the
incoming QoS 2 ids are forgotten and the granted filters are subscribed
again, so an automatically reconnecting client keeps receiving.

Keep-alive [MQTT-3.1.2-23]: when nothing was sent, or nothing was received,
for `keepalive` seconds a PINGREQ goes out; if its PINGRESP has not come
`keepalive` seconds later the broker counts as gone (`TimedOut`), which also
catches a half-open TCP connection that a busy publisher would never notice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

from midge.client.errors import NotConnected, PacketIdsExhausted
from midge.client.events import (
    Connected,
    Event,
    Message,
    MessageReceived,
    PublishCompleted,
    Refused,
    Subscribed,
    TimedOut,
    Unsubscribed,
)
from midge.protocol.codec import MAX_REMAINING_LENGTH, Decoder, encode
from midge.protocol.errors import MQTTError, ProtocolError
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1,
    PROTOCOL_MQTT_3_1_1,
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
from midge.protocol.topics import is_valid_topic_filter, is_valid_topic_name

MAX_PACKET_ID = 65535
PROTOCOL_NAMES = {PROTOCOL_MQTT_3_1: "MQIsdp", PROTOCOL_MQTT_3_1_1: "MQTT"}

Trace = Callable[[str, Packet], None]
"""Called with ("sent" | "received", packet) for every packet: debug output."""


class State(Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class Stage(IntEnum):
    """What an outgoing QoS 1/2 message waits for."""

    UNSENT = 0  # waits for a connection, or for room in the in-flight window
    PUBACK = 1
    PUBREC = 2
    PUBCOMP = 3  # PUBREL sent


@dataclass(slots=True)
class Outgoing:
    """One of our QoS 1/2 messages in flight: the packet and how far it got."""

    publish: Publish
    stage: Stage


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """What goes into CONNECT; checked here so the broker never sees nonsense."""

    client_id: str = ""
    clean_session: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    protocol_version: int = PROTOCOL_MQTT_3_1_1

    def __post_init__(self) -> None:
        if self.protocol_version not in PROTOCOL_NAMES:
            raise ValueError("protocol_version must be 3 (MQTT 3.1) or 4 (MQTT 3.1.1)")
        if not 0 <= self.keepalive <= 0xFFFF:
            raise ValueError("keepalive must be 0..65535 seconds")
        if not self.clean_session and not self.client_id:
            raise ValueError("a persistent session (clean_session=False) needs a client_id")
        no_user = self.password is not None and self.username is None
        if no_user and self.protocol_version >= PROTOCOL_MQTT_3_1_1:  # [MQTT-3.1.2-22]
            raise ValueError("a password needs a username in MQTT 3.1.1")
        if self.will is not None:
            _check_publish_args(self.will.topic, self.will.qos)

    def connect_packet(self) -> Connect:
        return Connect(
            client_id=self.client_id,
            clean_session=self.clean_session,
            keep_alive=self.keepalive,
            username=self.username,
            password=self.password,
            will=self.will,
            protocol_level=self.protocol_version,
            protocol_name=PROTOCOL_NAMES[self.protocol_version],
        )


def _check_publish_args(topic: str, qos: int) -> None:
    if not is_valid_topic_name(topic):
        raise ValueError(f"invalid topic name {topic!r} (empty, wildcard or too long)")
    if qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")


class ClientProtocol:
    """The client's whole protocol state; see the module docstring."""

    def __init__(
        self,
        options: ConnectOptions,
        *,
        max_inflight: int = 0,
        resubscribe: bool = True,
        trace: Trace | None = None,
    ) -> None:
        if not 0 <= max_inflight <= MAX_PACKET_ID:
            raise ValueError("max_inflight must be 0 (no limit) .. 65535")
        self.options = options
        self.max_inflight = max_inflight
        self.resubscribe = resubscribe
        self.trace = trace
        self.state = State.DISCONNECTED
        self.session_present = False
        self._decoder = Decoder(options.protocol_version)
        self._out: list[bytes] = []
        self._events: list[Event] = []
        # Insertion order is the original order; every sent entry comes before
        # every UNSENT one, which wait in `_unsent` for room in the window.
        self._outgoing: dict[int, Outgoing] = {}
        self._unsent: deque[int] = deque()
        self._sent = 0  # entries of _outgoing past UNSENT
        self._requests: dict[int, Subscribe | Unsubscribe] = {}
        self._awaiting_release: set[int] = set()
        self._granted: dict[str, int] = {}
        self._next_id = 1
        self._last_sent = 0.0
        self._last_received = 0.0
        self._ping_sent_at: float | None = None

    # ------------------------------------------------------------ lifecycle

    def connect(self, now: float) -> None:
        """A fresh transport is up: send CONNECT; nothing else goes out before CONNACK."""
        if self.state is not State.DISCONNECTED:
            raise RuntimeError(f"connect() while {self.state.value}")
        self._decoder = Decoder(self.options.protocol_version)
        self._out.clear()
        self._ping_sent_at = None
        self._last_received = now
        self.state = State.CONNECTING
        self._send(self.options.connect_packet(), now)

    def connection_lost(self) -> None:
        """The transport is gone; session state stays for the next `connect`."""
        if self.state is not State.CLOSED:
            self.state = State.DISCONNECTED
        self._out.clear()
        self._ping_sent_at = None

    def disconnect(self, now: float) -> None:
        """End for good: DISCONNECT if connected (the broker then drops the will)."""
        if self.state is State.CONNECTED:
            self._send(Disconnect(), now)
        self.state = State.CLOSED

    # ------------------------------------------------- application requests

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, *, now: float
    ) -> int | None:
        """Queue a PUBLISH; returns its packet id (None for QoS 0).

        QoS 1/2 messages may be published while disconnected: they go out
        after the next CONNACK. QoS 0 needs a connection (at most once).
        """
        _check_publish_args(topic, qos)
        size = 4 + len(topic.encode("utf-8")) + len(payload)  # topic length, packet id
        if size > MAX_REMAINING_LENGTH:
            raise ValueError(f"a PUBLISH of {size} bytes exceeds MQTT's {MAX_REMAINING_LENGTH}")
        if qos == 0:
            self._require_connected()
            self._send(Publish(topic, payload, 0, retain), now)
            return None
        self._require_open()
        packet_id = self._allocate_id()
        packet = Publish(topic, payload, qos, retain, False, packet_id)
        self._outgoing[packet_id] = Outgoing(packet, Stage.UNSENT)
        self._unsent.append(packet_id)
        self._fill_window(now)
        return packet_id

    def _fill_window(self, now: float) -> None:
        """Send waiting QoS 1/2 messages, in order, while the window has room.

        `max_inflight` (0: no limit) caps our unacknowledged messages: MQTT
        3.1.1 has no flow control, and a broker may mishandle more than it
        expects (Mosquitto 2.0 stalls beyond its 20 incoming QoS 2 messages).
        """
        if self.state is not State.CONNECTED:
            return
        limit = self.max_inflight or MAX_PACKET_ID
        while self._unsent and self._sent < limit:
            entry = self._outgoing[self._unsent.popleft()]
            self._sent += 1
            self._send_outgoing(entry, now)

    def subscribe(self, subscriptions: Iterable[tuple[str, int]], now: float) -> int:
        """Queue a SUBSCRIBE for (filter, qos) pairs; returns its packet id."""
        subs = tuple(Subscription(f, q) for f, q in subscriptions)
        if not subs:
            raise ValueError("subscribe needs at least one topic filter")  # [MQTT-3.8.3-3]
        for sub in subs:
            if not is_valid_topic_filter(sub.topic_filter):
                raise ValueError(f"invalid topic filter {sub.topic_filter!r}")
            if sub.qos not in (0, 1, 2):
                raise ValueError(f"qos must be 0, 1 or 2, not {sub.qos!r}")
        return self._request(lambda packet_id: Subscribe(packet_id, subs), now)

    def unsubscribe(self, filters: Iterable[str], now: float) -> int:
        """Queue an UNSUBSCRIBE; returns its packet id."""
        topic_filters = tuple(filters)
        if not topic_filters:
            raise ValueError("unsubscribe needs at least one topic filter")  # [MQTT-3.10.3-2]
        for topic_filter in topic_filters:
            if not is_valid_topic_filter(topic_filter):
                raise ValueError(f"invalid topic filter {topic_filter!r}")
        return self._request(lambda packet_id: Unsubscribe(packet_id, topic_filters), now)

    def _request(self, build: Callable[[int], Subscribe | Unsubscribe], now: float) -> int:
        self._require_open()
        packet_id = self._allocate_id()
        packet = build(packet_id)
        self._requests[packet_id] = packet
        if self.state is State.CONNECTED:
            self._send(packet, now)
        return packet_id

    def _require_open(self) -> None:
        if self.state is State.CLOSED:
            raise NotConnected("the client has disconnected")

    def _require_connected(self) -> None:
        if self.state is not State.CONNECTED:
            raise NotConnected(f"not connected ({self.state.value})")

    def _allocate_id(self) -> int:
        """The next free id after the last one handed out, wrapping 65535 -> 1."""
        for _ in range(MAX_PACKET_ID):
            packet_id = self._next_id
            self._next_id = packet_id % MAX_PACKET_ID + 1
            if packet_id not in self._outgoing and packet_id not in self._requests:
                return packet_id
        raise PacketIdsExhausted("all 65535 packet ids are in flight")

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the broker. Raises MQTTError (and drops to DISCONNECTED)
        when the broker breaks the protocol; the caller then closes the socket."""
        if not self.is_live():
            return  # after disconnect() or a refusal: nothing more to read
        self._decoder.feed(data)
        try:
            while self.is_live():
                packet = self._decoder.next_packet()
                if packet is None:
                    break
                self._last_received = now
                if self.trace is not None:
                    self.trace("received", packet)
                self._dispatch(packet, now)
        except MQTTError:
            # Bytes already queued answer the valid packets before the bad one
            # (PUBACK, PUBREC...): the front end may still write them, then close.
            self.state = State.DISCONNECTED
            self._ping_sent_at = None
            raise

    def is_live(self) -> bool:
        """Whether a transport is in use (CONNECTING or CONNECTED)."""
        return self.state in (State.CONNECTING, State.CONNECTED)

    def _dispatch(self, packet: Packet, now: float) -> None:
        allowed = _EXPECTED[self.state]
        handler = allowed.get(type(packet))
        if handler is None:
            raise ProtocolError(
                f"broker sent {type(packet).__name__.upper()} while {self.state.value}"
            )
        handler(self, packet, now)

    def timer_deadline(self) -> float | None:
        """When `handle_timer` must next run (keep-alive), or None."""
        keepalive = self.options.keepalive
        if self.state is not State.CONNECTED or not keepalive:
            return None
        if self._ping_sent_at is not None:
            return self._ping_sent_at + keepalive
        return min(self._last_sent, self._last_received) + keepalive

    def handle_timer(self, now: float) -> None:
        """Send PINGREQ when idle; report `TimedOut` when its PINGRESP is overdue."""
        deadline = self.timer_deadline()
        if deadline is None or now < deadline:
            return
        if self._ping_sent_at is None:
            self._ping_sent_at = now
            self._send(PingReq(), now)
            return
        self.connection_lost()
        self._events.append(TimedOut(now - self._last_received))

    # --------------------------------------------------------------- output

    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def events_received(self) -> list[Event]:
        events = self._events
        self._events = []
        return events

    def in_flight(self) -> list[tuple[int, Stage]]:
        """Outgoing QoS 1/2 messages not yet completed, in their original order."""
        return [(packet_id, entry.stage) for packet_id, entry in self._outgoing.items()]

    def pending_requests(self) -> list[int]:
        """Packet ids of SUBSCRIBE / UNSUBSCRIBE requests not yet acknowledged."""
        return list(self._requests)

    def granted(self) -> dict[str, int]:
        """The filters the broker granted and that were not unsubscribed since."""
        return dict(self._granted)

    def _send(self, packet: Packet, now: float) -> None:
        self._out.append(encode(packet, self.options.protocol_version))
        self._last_sent = now
        if self.trace is not None:
            self.trace("sent", packet)

    # ------------------------------------------------- handlers per packet

    def _on_connack(self, packet: ConnAck, now: float) -> None:
        if packet.return_code:
            self.connection_lost()
            self._events.append(Refused(packet.return_code))
            return
        if packet.session_present and self.options.clean_session:
            raise ProtocolError("CONNACK claims a session for a clean session")  # 3.2.2-1
        self.state = State.CONNECTED
        self.session_present = packet.session_present
        if not packet.session_present:
            self._awaiting_release.clear()
        self._events.append(Connected(packet.session_present))
        self._resume(now)

    def _resume(self, now: float) -> None:
        """After CONNACK 0: restore subscriptions, then re-send what is in flight."""
        pending = list(self._requests.values())
        if not self.session_present and self.resubscribe and self._granted:
            subs = tuple(Subscription(f, q) for f, q in self._granted.items())
            self._request(lambda packet_id: Subscribe(packet_id, subs), now)
        for entry in self._outgoing.values():
            if entry.stage is not Stage.UNSENT:
                self._send_outgoing(entry, now)
        self._fill_window(now)
        for request in pending:
            self._send(request, now)

    def _send_outgoing(self, entry: Outgoing, now: float) -> None:
        """First send, or re-send after a reconnect: PUBLISH (DUP if seen before) or PUBREL."""
        packet = entry.publish
        if entry.stage is Stage.PUBCOMP:
            self._send(PubRel(packet.packet_id or 0), now)
            return
        if entry.stage is Stage.UNSENT:
            entry.stage = Stage.PUBACK if packet.qos == 1 else Stage.PUBREC
        else:
            packet = entry.publish = Publish(
                packet.topic, packet.payload, packet.qos, packet.retain, True, packet.packet_id
            )  # [MQTT-3.3.1-1]: DUP on a re-delivery
        self._send(packet, now)

    def _on_publish(self, packet: Publish, now: float) -> None:
        packet_id = packet.packet_id or 0
        if packet.qos == 2:
            # Method B on the receiving side: deliver now, remember the id until
            # PUBREL so a repeated PUBLISH is acknowledged but not delivered.
            if packet_id not in self._awaiting_release:
                self._awaiting_release.add(packet_id)
                self._deliver(packet)
            self._send(PubRec(packet_id), now)
            return
        self._deliver(packet)
        if packet.qos == 1:
            self._send(PubAck(packet_id), now)

    def _deliver(self, packet: Publish) -> None:
        message = Message(
            packet.topic, packet.payload, packet.qos, packet.retain, packet.dup, packet.packet_id
        )
        self._events.append(MessageReceived(message))

    def _on_pubrel(self, packet: PubRel, now: float) -> None:
        # PUBCOMP even for an unknown id: the broker may repeat PUBREL after a
        # reconnect whose state we no longer hold (section 4.3.3).
        self._awaiting_release.discard(packet.packet_id)
        self._send(PubComp(packet.packet_id), now)

    def _on_puback(self, packet: PubAck, now: float) -> None:
        self._awaiting(packet.packet_id, "PUBACK", Stage.PUBACK)
        self._complete(packet.packet_id, now)

    def _on_pubrec(self, packet: PubRec, now: float) -> None:
        entry = self._awaiting(packet.packet_id, "PUBREC", Stage.PUBREC, Stage.PUBCOMP)
        entry.stage = Stage.PUBCOMP
        self._send(PubRel(packet.packet_id), now)  # again, too, for a repeated PUBREC

    def _on_pubcomp(self, packet: PubComp, now: float) -> None:
        self._awaiting(packet.packet_id, "PUBCOMP", Stage.PUBCOMP)
        self._complete(packet.packet_id, now)

    def _awaiting(self, packet_id: int, name: str, *stages: Stage) -> Outgoing:
        """The outgoing message `packet_id`, which must be at one of `stages`."""
        entry = self._outgoing.get(packet_id)
        if entry is None:
            raise ProtocolError(f"{name} for packet id {packet_id}, which is not in flight")
        if entry.stage not in stages:
            raise ProtocolError(
                f"{name} for QoS {entry.publish.qos} message {packet_id} "
                f"waiting for {entry.stage.name}"
            )
        return entry

    def _complete(self, packet_id: int, now: float) -> None:
        del self._outgoing[packet_id]
        self._sent -= 1
        self._events.append(PublishCompleted(packet_id))
        self._fill_window(now)

    def _on_suback(self, packet: SubAck, now: float) -> None:
        request = self._requests.get(packet.packet_id)
        if not isinstance(request, Subscribe):
            raise ProtocolError(f"SUBACK for packet id {packet.packet_id}: no such SUBSCRIBE")
        if len(packet.return_codes) != len(request.subscriptions):  # [MQTT-3.9.3-1]
            raise ProtocolError(
                f"SUBACK has {len(packet.return_codes)} return codes "
                f"for {len(request.subscriptions)} filters"
            )
        del self._requests[packet.packet_id]
        filters = tuple(sub.topic_filter for sub in request.subscriptions)
        for topic_filter, code in zip(filters, packet.return_codes, strict=True):
            if code != 0x80:
                self._granted[topic_filter] = code
        self._events.append(Subscribed(packet.packet_id, filters, packet.return_codes))

    def _on_unsuback(self, packet: UnsubAck, now: float) -> None:
        request = self._requests.get(packet.packet_id)
        if not isinstance(request, Unsubscribe):
            raise ProtocolError(f"UNSUBACK for packet id {packet.packet_id}: no such UNSUBSCRIBE")
        del self._requests[packet.packet_id]
        for topic_filter in request.topic_filters:
            self._granted.pop(topic_filter, None)
        self._events.append(Unsubscribed(packet.packet_id))

    def _on_pingresp(self, packet: PingResp, now: float) -> None:
        self._ping_sent_at = None


_Handler = Callable[[ClientProtocol, Any, float], None]  # Any: each takes its own packet

# The transition table: which packets the broker may send in each state.
_EXPECTED: dict[State, dict[type, _Handler]] = {
    State.DISCONNECTED: {},
    State.CLOSED: {},
    State.CONNECTING: {ConnAck: ClientProtocol._on_connack},
    State.CONNECTED: {
        Publish: ClientProtocol._on_publish,
        PubAck: ClientProtocol._on_puback,
        PubRec: ClientProtocol._on_pubrec,
        PubRel: ClientProtocol._on_pubrel,
        PubComp: ClientProtocol._on_pubcomp,
        SubAck: ClientProtocol._on_suback,
        UnsubAck: ClientProtocol._on_unsuback,
        PingResp: ClientProtocol._on_pingresp,
    },
}
