"""Sans-IO MQTT 3.1 / 3.1.1 / 5.0 client: bytes and time in, events and bytes out.

Theory of operation. `ClientProtocol` holds everything a client must
remember, and nothing about sockets or clocks: the front end calls
`connect(now)` when a transport is up, feeds what it reads to
`receive_data(data, now)`, calls `handle_timer(now)` at `timer_deadline()`,
writes `data_to_send()` and acts on `events_received()`. The same object
lives across connections, which is what lets a reconnect resume a session.

States, and the only packets the broker may send in each:

    DISCONNECTED --connect()--> CONNECTING --CONNACK 0--> CONNECTED
    CONNECTING:  CONNACK (a refusal goes back to DISCONNECTED); 5.0: AUTH
    CONNECTED:   PUBLISH PUBACK PUBREC PUBREL PUBCOMP SUBACK UNSUBACK PINGRESP;
                 5.0: DISCONNECT (back to DISCONNECTED), AUTH
    any live state --connection_lost() / protocol error / keep-alive--> DISCONNECTED
    any state --disconnect()--> CLOSED (final; DISCONNECT is sent if connected)

A packet outside its state's set is the broker breaking the protocol:
`receive_data` raises `ProtocolError` (the codec raises `MalformedPacket`),
the state drops to DISCONNECTED and the front end must close the socket; on
a 5.0 connection a DISCONNECT with the error's reason code is queued first.

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

MQTT 5.0 (section 3.2.2.3): the CONNACK's limits hold for its connection.
Receive Maximum caps our unacknowledged QoS 1/2 messages (with `max_inflight`,
the smaller wins; the rest wait in order); a packet above Maximum Packet Size
is refused (`PacketTooLarge`) rather than sent; Topic Alias Maximum lets
`aliases.OutgoingAliases` shorten repeated topics; Assigned Client
Identifier becomes `options.client_id` and Server Keep Alive the keep-alive.
Acknowledgements carry reason codes, reported in the events (a PUBACK or
PUBREC of 0x80 and above ends that message's flow as a failure).

Helpers, each with one job: `inflight` keeps the session's outgoing state,
`outbound` encodes under the broker's limits, `inbound` handles the broker's
PUBLISH flows (aliases, QoS 2 ids), `auth` the AUTH exchanges of 5.0.

Keep-alive [MQTT-3.1.2-23]: when nothing was sent, or nothing was received,
for `keepalive` seconds a PINGREQ goes out; if its PINGRESP has not come
`keepalive` seconds later the broker counts as gone (`TimedOut`), which also
catches a half-open TCP connection that a busy publisher would never notice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from enum import Enum
from functools import partial
from typing import Any

from midge.client.auth import EnhancedAuth
from midge.client.errors import AuthenticationError, NotConnected, PacketIdsExhausted
from midge.client.events import (
    Connected,
    Disconnected,
    Event,
    MessageReceived,
    PublishCompleted,
    Refused,
    TimedOut,
)
from midge.client.inbound import Inbound
from midge.client.inflight import InFlight, Outgoing, Stage, Subscriptions, duplicate
from midge.client.options import (
    UNLIMITED_PACKET_SIZE,
    ConnectOptions,
    ServerLimits,
    check_disconnect,
    check_properties,
    check_publish_args,
    check_subscription,
)
from midge.client.outbound import Outbound
from midge.protocol.codec import MAX_REMAINING_LENGTH, Decoder, encode
from midge.protocol.errors import MQTTError, ProtocolError
from midge.protocol.packets import (
    PROTOCOL_MQTT_5,
    Auth,
    ConnAck,
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
)
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode
from midge.protocol.topics import is_valid_topic_filter

__all__ = ["ClientProtocol", "ConnectOptions", "Outgoing", "Stage", "State", "Trace"]

MAX_PACKET_ID = 65535

Trace = Callable[[str, Packet], None]
"""Called with ("sent" | "received", packet) for every packet: debug output."""

SubscriptionSpec = tuple[str, int] | Subscription
"""A filter to subscribe to: (filter, qos), or a `Subscription` with 5.0 options."""


class State(Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


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
        self._outbound = Outbound(options.protocol_version)
        self.keepalive = options.keepalive  # the broker's Server Keep Alive overrides it
        self._v5 = options.protocol_version == PROTOCOL_MQTT_5
        ours = options.properties or Properties()
        self._max_packet_size = ours.maximum_packet_size or UNLIMITED_PACKET_SIZE
        self._inbound = Inbound(
            self._v5, ours.receive_maximum or MAX_PACKET_ID, ours.topic_alias_maximum or 0
        )
        self._auth = EnhancedAuth(options.auth_method, options.authenticator)
        self._decoder = self._new_decoder()
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._in_flight = InFlight()
        self._subscriptions = Subscriptions()
        self._next_id = 1
        self._last_sent = 0.0
        self._last_received = 0.0
        self._ping_sent_at: float | None = None

    @property
    def limits(self) -> ServerLimits:
        """What the broker's latest CONNACK allows (3.1.1: no limits)."""
        return self._outbound.limits

    def _new_decoder(self) -> Decoder:
        return Decoder(self.options.protocol_version, self._max_packet_size)

    # ------------------------------------------------------------ lifecycle

    def connect(self, now: float) -> None:
        """A fresh transport is up: send CONNECT; nothing else goes out before CONNACK."""
        if self.state is not State.DISCONNECTED:
            raise RuntimeError(f"connect() while {self.state.value}")
        self._decoder = self._new_decoder()
        self._out.clear()
        self._ping_sent_at = None
        self._auth.reauthenticating = False
        self._last_received = now
        self.state = State.CONNECTING
        self._send(self.options.connect_packet(), now)

    def connection_lost(self) -> None:
        """The transport is gone; session state stays for the next `connect`."""
        if self.state is not State.CLOSED:
            self.state = State.DISCONNECTED
        self._out.clear()
        self._ping_sent_at = None

    def disconnect(
        self, now: float, reason_code: int = 0, properties: Properties | None = None
    ) -> None:
        """End for good: DISCONNECT if connected (the broker then drops the will,
        unless 5.0's `reason_code` is 0x04, disconnect with will message)."""
        check_properties(properties, "DISCONNECT", self.options.protocol_version)
        if reason_code and not self._v5:
            raise ValueError("a DISCONNECT reason code needs MQTT 5.0")
        check_disconnect(self.options.properties, properties)
        if self.state is State.CONNECTED:
            self._send(Disconnect(reason_code, properties), now)
        self.state = State.CLOSED

    # ------------------------------------------------- application requests

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        *,
        now: float,
        properties: Properties | None = None,
    ) -> int | None:
        """Queue a PUBLISH; returns its packet id (None for QoS 0).

        QoS 1/2 messages may be published while disconnected: they go out
        after the next CONNACK. QoS 0 needs a connection (at most once).
        """
        check_publish_args(topic, qos)
        check_properties(properties, "PUBLISH", self.options.protocol_version)
        size = 4 + len(topic.encode("utf-8")) + len(payload)  # topic length, packet id
        if size > MAX_REMAINING_LENGTH:
            raise ValueError(f"a PUBLISH of {size} bytes exceeds MQTT's {MAX_REMAINING_LENGTH}")
        self.limits.check_publish(qos, retain)
        if qos == 0:
            self._require_connected()
            packet = Publish(topic, payload, 0, retain, properties=properties)
            if not self._send_publish(packet, now):
                raise self._outbound.too_large(packet, topic)
            return None
        self._require_open()
        packet = Publish(topic, payload, qos, retain, False, MAX_PACKET_ID, properties=properties)
        if self.state is State.CONNECTED:
            self._outbound.check_size(packet, topic)
        packet.packet_id = packet_id = self._allocate_id()
        self._in_flight.add(packet, packet_id)
        self._fill_window(now)
        return packet_id

    def _window(self) -> int:
        """How many QoS 1/2 messages may be unacknowledged: `max_inflight` (0: no
        limit; 3.1.1 has no flow control, and Mosquitto 2.0 stalls beyond its 20
        incoming QoS 2 messages) and the broker's Receive Maximum, the smaller."""
        return min(self.max_inflight or MAX_PACKET_ID, self.limits.receive_maximum)

    def _fill_window(self, now: float) -> None:
        """Send waiting QoS 1/2 messages, in order, while the window has room."""
        if self.state is not State.CONNECTED:
            return
        too_large = [
            packet_id
            for packet_id, entry in self._in_flight.take(self._window())
            if not self._send_outgoing(entry, now)
        ]
        for packet_id in too_large:
            self._complete(packet_id, now, ReasonCode.PACKET_TOO_LARGE)

    def subscribe(
        self,
        subscriptions: Iterable[SubscriptionSpec],
        now: float,
        properties: Properties | None = None,
    ) -> int:
        """Queue a SUBSCRIBE for (filter, qos) pairs or `Subscription`s; returns its packet id."""
        subs = tuple(s if isinstance(s, Subscription) else Subscription(*s) for s in subscriptions)
        if not subs:
            raise ValueError("subscribe needs at least one topic filter")  # [MQTT-3.8.3-3]
        for sub in subs:
            check_subscription(sub, self.options.protocol_version)
        check_properties(properties, "SUBSCRIBE", self.options.protocol_version)
        return self._request(lambda packet_id: Subscribe(packet_id, subs, properties), now)

    def unsubscribe(
        self, filters: Iterable[str], now: float, properties: Properties | None = None
    ) -> int:
        """Queue an UNSUBSCRIBE; returns its packet id."""
        topic_filters = tuple(filters)
        if not topic_filters:
            raise ValueError("unsubscribe needs at least one topic filter")  # [MQTT-3.10.3-2]
        for topic_filter in topic_filters:
            if not is_valid_topic_filter(topic_filter):
                raise ValueError(f"invalid topic filter {topic_filter!r}")
        check_properties(properties, "UNSUBSCRIBE", self.options.protocol_version)
        return self._request(
            lambda packet_id: Unsubscribe(packet_id, topic_filters, properties), now
        )

    def _request(self, build: Callable[[int], Subscribe | Unsubscribe], now: float) -> int:
        self._require_open()
        if self.state is State.CONNECTED:
            self._outbound.check_size(build(MAX_PACKET_ID))
        packet_id = self._allocate_id()
        packet = build(packet_id)
        self._subscriptions.requests[packet_id] = packet
        if self.state is State.CONNECTED:
            self._send(packet, now)
        return packet_id

    def reauthenticate(self, now: float, data: bytes | None = None) -> None:
        """5.0: start re-authentication (AUTH 0x19) with the CONNECT's method;
        `Reauthenticated` reports success, a DISCONNECT from the broker failure."""
        request = self._auth.reauthentication(data)  # no method: ValueError in any state
        self._require_connected()
        self._auth.reauthenticating = True
        self._send(request, now)

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
            in_use = packet_id in self._in_flight.entries
            if not in_use and packet_id not in self._subscriptions.requests:
                return packet_id
        raise PacketIdsExhausted("all 65535 packet ids are in flight")

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the broker. Raises MQTTError (and drops to DISCONNECTED)
        when the broker breaks the protocol; the caller then closes the socket.
        AuthenticationError when our authenticator refused to go on."""
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
        except MQTTError as exc:
            # Bytes already queued answer the valid packets before the bad one
            # (PUBACK, PUBREC...): the front end may still write them, then close.
            if self._v5 and self.state is State.CONNECTED:
                self._send(Disconnect(exc.reason_code), now)  # [MQTT-4.13.1-1]
            self._drop()
            raise
        except AuthenticationError:
            if self._v5 and self.state is State.CONNECTED:
                self._send(Disconnect(ReasonCode.NOT_AUTHORIZED), now)
            self._drop()
            raise

    def _drop(self) -> None:
        self.state = State.DISCONNECTED
        self._ping_sent_at = None

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
        keepalive = self.keepalive
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
        return [(packet_id, entry.stage) for packet_id, entry in self._in_flight.entries.items()]

    def pending_requests(self) -> list[int]:
        """Packet ids of SUBSCRIBE / UNSUBSCRIBE requests not yet acknowledged."""
        return list(self._subscriptions.requests)

    def granted(self) -> dict[str, int]:
        """The filters the broker granted (-> QoS) and that were not unsubscribed since."""
        granted = self._subscriptions.granted.items()
        return {topic_filter: entry.subscription.qos for topic_filter, entry in granted}

    def _send(self, packet: Packet, now: float, data: bytes | None = None) -> None:
        self._out.append(encode(packet, self.options.protocol_version) if data is None else data)
        self._last_sent = now
        if self.trace is not None:
            self.trace("sent", packet)

    def _send_publish(self, packet: Publish, now: float) -> bool:
        """Send `packet` as the broker's limits allow; False when it is too large."""
        sendable = self._outbound.publish(packet)
        if sendable is None:
            return False
        wire, data = sendable
        self._send(wire, now, data)
        return True

    # ------------------------------------------------- handlers per packet

    def _on_connack(self, packet: ConnAck, now: float) -> None:
        if packet.return_code:
            self.connection_lost()
            self._events.append(Refused(packet.return_code, packet.properties))
            return
        if packet.session_present and self.options.clean_session:
            raise ProtocolError("CONNACK claims a session for a clean session")  # 3.2.2-1
        self._adopt(packet.properties)
        self.state = State.CONNECTED
        self.session_present = packet.session_present
        if not packet.session_present:
            self._inbound.session_lost()
        self._events.append(Connected(packet.session_present, packet.properties))
        self._resume(now)

    def _adopt(self, properties: Properties | None) -> None:
        """What a 5.0 CONNACK tells the client for this connection (section 3.2.2.3)."""
        self._outbound.reset(ServerLimits.from_connack(properties))
        self._inbound.new_connection()
        self.keepalive = self.options.keepalive
        if properties is None:
            return
        self._auth.check_connack(properties)
        if properties.assigned_client_identifier:
            # Kept for the next connection, which can then resume the session.
            self.options = replace(self.options, client_id=properties.assigned_client_identifier)
        if properties.server_keep_alive is not None:
            self.keepalive = properties.server_keep_alive  # [MQTT-3.1.2-21]

    def _resume(self, now: float) -> None:
        """After CONNACK 0: restore subscriptions, then re-send what is in flight."""
        pending = list(self._subscriptions.requests.values())
        if not self.session_present and self.resubscribe:
            for subs, props in self._subscriptions.to_restore():
                self._request(partial(Subscribe, subscriptions=subs, properties=props), now)
        too_large = [
            packet_id
            for packet_id, entry in self._in_flight.to_resend(self._window())
            if not self._send_outgoing(entry, now)
        ]
        for packet_id in too_large:
            self._complete(packet_id, now, ReasonCode.PACKET_TOO_LARGE)
        self._fill_window(now)
        for request in pending:
            self._send(request, now)

    def _send_outgoing(self, entry: Outgoing, now: float) -> bool:
        """First send, or re-send after a reconnect: PUBLISH (DUP if seen before) or
        PUBREL. False when the PUBLISH exceeds the broker's Maximum Packet Size."""
        packet = entry.publish
        if entry.stage is Stage.PUBCOMP:
            self._send(PubRel(packet.packet_id or 0), now)
            return True
        if entry.stage is Stage.UNSENT:
            entry.stage = Stage.PUBACK if packet.qos == 1 else Stage.PUBREC
        else:
            packet = entry.publish = duplicate(packet)
        return self._send_publish(packet, now)

    def _on_publish(self, packet: Publish, now: float) -> None:
        message, ack = self._inbound.publish(packet)
        if message is not None:
            self._events.append(MessageReceived(message))
        if ack is not None:
            self._send(ack, now)

    def _on_pubrel(self, packet: PubRel, now: float) -> None:
        self._send(self._inbound.release(packet.packet_id), now)

    def _on_puback(self, packet: PubAck, now: float) -> None:
        self._in_flight.awaiting(packet.packet_id, "PUBACK", Stage.PUBACK)
        self._complete(packet.packet_id, now, packet.reason_code, packet.properties)

    def _on_pubrec(self, packet: PubRec, now: float) -> None:
        entry = self._in_flight.awaiting(packet.packet_id, "PUBREC", Stage.PUBREC, Stage.PUBCOMP)
        if packet.reason_code >= 0x80:  # refused: the flow ends here, no PUBREL [MQTT-4.3.3]
            self._complete(packet.packet_id, now, packet.reason_code, packet.properties)
            return
        entry.stage = Stage.PUBCOMP
        self._send(PubRel(packet.packet_id), now)  # again, too, for a repeated PUBREC

    def _on_pubcomp(self, packet: PubComp, now: float) -> None:
        self._in_flight.awaiting(packet.packet_id, "PUBCOMP", Stage.PUBCOMP)
        self._complete(packet.packet_id, now, packet.reason_code, packet.properties)

    def _complete(
        self,
        packet_id: int,
        now: float,
        reason_code: int = 0,
        properties: Properties | None = None,
    ) -> None:
        self._in_flight.remove(packet_id)
        self._events.append(PublishCompleted(packet_id, reason_code, properties))
        self._fill_window(now)

    def _on_suback(self, packet: SubAck, now: float) -> None:
        self._events.append(self._subscriptions.acknowledged(packet))

    def _on_unsuback(self, packet: UnsubAck, now: float) -> None:
        self._events.append(self._subscriptions.unacknowledged(packet, self._v5))

    def _on_pingresp(self, packet: PingResp, now: float) -> None:
        self._ping_sent_at = None

    def _on_disconnect(self, packet: Disconnect, now: float) -> None:
        if not self._v5:
            raise ProtocolError("broker sent DISCONNECT, which MQTT 3.1.1 does not allow")
        self._drop()
        self._events.append(Disconnected(packet.reason_code, packet.properties))

    def _on_auth(self, packet: Auth, now: float) -> None:
        """A step of enhanced authentication, at connect or re-authentication."""
        step = self._auth.step(packet, self.state is State.CONNECTED)
        if isinstance(step, Auth):
            self._send(step, now)
        else:
            self._events.append(step)


_Handler = Callable[[ClientProtocol, Any, float], None]  # Any: each takes its own packet

# The transition table: which packets the broker may send in each state.
_EXPECTED: dict[State, dict[type, _Handler]] = {
    State.DISCONNECTED: {},
    State.CLOSED: {},
    State.CONNECTING: {ConnAck: ClientProtocol._on_connack, Auth: ClientProtocol._on_auth},
    State.CONNECTED: {
        Publish: ClientProtocol._on_publish,
        PubAck: ClientProtocol._on_puback,
        PubRec: ClientProtocol._on_pubrec,
        PubRel: ClientProtocol._on_pubrel,
        PubComp: ClientProtocol._on_pubcomp,
        SubAck: ClientProtocol._on_suback,
        UnsubAck: ClientProtocol._on_unsuback,
        PingResp: ClientProtocol._on_pingresp,
        Disconnect: ClientProtocol._on_disconnect,
        Auth: ClientProtocol._on_auth,
    },
}
