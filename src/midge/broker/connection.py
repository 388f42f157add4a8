"""One client connection: bytes in, packets to the broker's handlers, bytes out.

Theory of operation. A connection's state moves only along `TRANSITIONS`
and only through its own methods (`defer_connect`, `take_turn`, `attach`,
`mark_closed`). It starts in AWAITING_CONNECT; the only packet it accepts
there is CONNECT [MQTT-3.1.0-1]. Accepting one moves it to CONNECTED, where
a second CONNECT is a protocol violation [MQTT-3.1.0-2]. CLOSED is final:
nothing more is read or written. Every way out goes through
`Broker.close_connection`, which decides about the will, the session and the
log line, once.

The connection does no I/O itself: the front end calls `data_received` with
bytes and the current time, and `transport` (write, close, abort, pause and
resume reading) carries bytes out. That is what lets tests drive it byte by
byte. Every entry point from outside (bytes, a closed socket, a drained
socket, a timer, input released by backpressure) runs through `guarded`:
an unexpected exception costs this connection, never the broker.

Backpressure (see docs/backpressure.md): while a receiver this connection
publishes to is behind, the connection is *held back*. Its PUBLISH, PUBREL,
SUBSCRIBE, ... packets wait, in order, in `deferred`; the acknowledgements
it sends for our deliveries (PUBACK, PUBREC, PUBCOMP) and PINGREQ are still
handled, so a client that both publishes and subscribes keeps receiving.
Past `DEFERRED_INPUT_LIMIT` bytes the socket stops being read, and TCP
slows the client down.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Protocol

from midge.broker.closing import CloseReason
from midge.broker.enhanced_auth import PendingAuth
from midge.broker.mqtt5 import Mqtt5Link
from midge.broker.trace import trace_out
from midge.protocol.codec import Decoder
from midge.protocol.errors import MQTTError, ProtocolError
from midge.protocol.packets import (
    PROTOCOL_MQTT_5,
    Auth,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    Will,
)

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.config import ListenerConfig
    from midge.broker.session import Session

log = logging.getLogger("midge.connection")

THROTTLED_INPUT_LIMIT = 64 * 1024  # bytes a client may send while its CONNECT waits
DEFERRED_INPUT_LIMIT = 64 * 1024  # bytes of packets kept while held back, before TCP waits
# What a held-back client may still send: these concern the broker's own
# deliveries (or nothing), so handling them ahead of its waiting PUBLISHes
# changes no flow the client started.
_PASSES_WHILE_HELD = frozenset({PubAck, PubRec, PubComp, PingReq})


class Transport(Protocol):
    """What a front end gives a connection: a byte sink it can close and pause."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None:
        """Close after what is buffered has been sent."""

    def abort(self) -> None:
        """Close at once, discarding what is buffered."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """asyncio's: "peername" is the client's (host, port)."""


def peer_name(transport: Transport) -> str:
    """The client's address as logs show it: host:port."""
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


class State(Enum):
    AWAITING_CONNECT = "awaiting-connect"
    # A CONNECT arrived from an address with failed logins: it waits for its
    # turn (`LoginThrottle`) and later packets wait in the decoder's buffer.
    THROTTLED = "throttled"
    # A 5.0 CONNECT started enhanced authentication: only AUTH (or DISCONNECT)
    # may come until the exchange ends in CONNACK.
    AUTHENTICATING = "authenticating"
    # In a cluster, an accepted CONNECT waits while its client id is claimed
    # from the node that had it (cluster/claims.py); later packets wait too.
    CLAIMING = "claiming"
    CONNECTED = "connected"
    CLOSED = "closed"

    # Members are singletons compared by identity, so identity hashing agrees
    # with equality; Enum's own __hash__ is Python code, run on every lookup
    # in TRANSITIONS (twice per connection at least).
    __hash__ = object.__hash__


# Where each state may go; anything else is a bug, raised as one.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.AWAITING_CONNECT: frozenset(
        {State.THROTTLED, State.AUTHENTICATING, State.CLAIMING, State.CONNECTED, State.CLOSED}
    ),
    State.THROTTLED: frozenset({State.AWAITING_CONNECT, State.CLOSED}),
    State.AUTHENTICATING: frozenset({State.CLAIMING, State.CONNECTED, State.CLOSED}),
    State.CLAIMING: frozenset({State.CONNECTED, State.CLOSED}),
    State.CONNECTED: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}

# Final: compiled code compares with it directly (an Enum member is otherwise
# looked up by name for every packet).
CONNECTED: Final = State.CONNECTED


def check_before_connack(state: State, packet: Packet) -> None:
    """Before CONNACK 0 only CONNECT may come, and during enhanced
    authentication only AUTH (or DISCONNECT)."""
    if state is State.AWAITING_CONNECT:
        if type(packet) is not Connect:
            raise ProtocolError(f"first packet is {type(packet).__name__}, not CONNECT")
    elif state is State.AUTHENTICATING and type(packet) not in (Auth, Disconnect):
        raise ProtocolError(f"{type(packet).__name__} before authentication completed")


# Typed as plain State so checks after the handlers ran are not "unreachable"
# to mypy: a handler may close the connection.
_CLOSED: State = State.CLOSED
_THROTTLED: State = State.THROTTLED
_CLAIMING: State = State.CLAIMING


class Connection:
    __slots__ = (
        "_held",
        "_peer",
        "auth",
        "bridge",
        "broker",
        "client_id",
        "decoder",
        "deferred",
        "deferred_bytes",
        "deferred_connect",
        "feeders",
        "holders",
        "keep_alive",
        "last_activity",
        "listener",
        "mqtt5",
        "opened_at",
        "outbox",
        "pending_claim",
        "reading",
        "session",
        "stalled",
        "state",
        "timer_at",
        "tls_identity",
        "transport",
        "username",
        "version",
        "waiting_since",
        "will",
        "will_stored",
        "write_blocked",
    )

    def __init__(
        self,
        broker: Broker,
        transport: Transport,
        peer: str | None,
        now: float,
        listener: ListenerConfig,
        tls_identity: str | None = None,
    ) -> None:
        """`peer` is the client's address; None: ask `transport` when first needed."""
        self.broker = broker
        self.transport = transport
        self._peer = peer
        self.listener = listener  # where the client connected: its anonymous and TLS rules
        # The verified client certificate's common name, on a TLS listener.
        self.tls_identity = tls_identity
        self.username: str | None = None  # who the client logged in as (ACLs check it)
        # (turn, CONNECT) while THROTTLED: the CONNECT and when it will be answered.
        self.deferred_connect: tuple[float, Connect] | None = None
        self.pending_claim: object = None  # while CLAIMING (await_claim)
        self.opened_at = now
        self.last_activity = now
        self.state = State.AWAITING_CONNECT
        self.decoder = Decoder(max_packet_size=broker.config.max_packet_size)
        self.client_id = ""
        self.version = 0
        self.bridge = False  # another broker's bridge (Connect.bridge)
        self.keep_alive = 0
        self.will: Will | None = None
        self.will_stored = False  # a cluster keeps this will in Redis (broker/clustered.py)
        self.session: Session | None = None
        self.mqtt5: Mqtt5Link | None = None  # what a 5.0 client negotiated; None below 5.0
        self.auth: PendingAuth | None = None  # an enhanced authentication under way
        # Set while the socket's buffer is above its high-water mark: the client
        # is not reading fast enough, so QoS 0 is dropped and QoS 1/2 waits.
        self.write_blocked = False
        self.reading = True  # whether the transport is asked for input
        self.timer_at: float | None = None  # the broker's next deadline check
        # Bytes sent during one batch of input, written to the socket in one
        # call by `Broker.flush`: a syscall per batch, not per packet. None
        # between batches, so an idle connection keeps no list.
        self.outbox: list[bytes] | None = None
        self._held: list[tuple[int, bytes]] | None = None  # see `held`
        # Backpressure, as a publisher: how many receivers hold it back, and
        # the packets that wait meanwhile (None while nothing waits).
        self.holders = 0
        self.deferred: deque[Packet] | None = None
        self.deferred_bytes = 0
        # Backpressure, as a receiver: the publishers it holds back (None: none),
        # since when it owes an acknowledgement, and whether it stopped giving them.
        self.feeders: set[Connection] | None = None
        self.waiting_since: float | None = None
        self.stalled = False

    def __repr__(self) -> str:
        return f"<Connection {self.client_id or '?'} from {self.peer} {self.state.value}>"

    @property
    def held(self) -> list[tuple[int, bytes]]:
        """(epoch, bytes) that wait for the store to commit that batch (managed by
        `Persistence`, which owns holding output); made on first use."""
        held = self._held
        if held is None:
            held = self._held = []
        return held

    @property
    def peer(self) -> str:
        """The client's address, host:port (read from the socket on first use:
        formatting it costs more than most connections ever need it)."""
        peer = self._peer
        if peer is None:
            peer = self._peer = peer_name(self.transport)
        return peer

    @property
    def address(self) -> str:
        """The client's IP address, without the port (what login throttling counts)."""
        return self.peer.rpartition(":")[0] or self.peer

    @property
    def name(self) -> str:
        """How logs name this client: its id once known, else its address."""
        return f"{self.client_id!r} ({self.peer})" if self.client_id else self.peer

    def log_fields(self, reason: str | None = None) -> dict[str, str | None]:
        """The fields a log line about this client carries apart (`extra=`), for
        the JSON log format: client_id, user, address, reason."""
        return {
            "client_id": self.client_id or None,
            "user": self.username,
            "address": self.peer,
            "reason": reason,
        }

    def served_session(self) -> Session:
        """The session of a connection past CONNECT (what every handler after
        CONNECT works on)."""
        session = self.session
        assert session is not None, "handlers after CONNECT always have a session"
        return session

    # ------------------------------------------------------------ state

    def _move(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{self!r}: no transition {self.state.value} -> {new.value}")
        self.state = new

    def defer_connect(self, turn: float, packet: Connect) -> None:
        """Login throttling: the CONNECT is answered at `turn`; input waits till then."""
        self._move(State.THROTTLED)
        self.deferred_connect = (turn, packet)

    def await_auth(self, pending: PendingAuth) -> None:
        """Enhanced authentication goes on: the CONNECT waits for its end."""
        if self.state is not State.AUTHENTICATING:
            self._move(State.AUTHENTICATING)
            self.decoder.version = PROTOCOL_MQTT_5  # AUTH exists in 5.0 only
        self.auth = pending

    def await_claim(self, pending: object) -> None:
        """Cluster: the accepted CONNECT waits for its client id (`pending` is
        what finishing it needs: cluster code's business)."""
        self._move(State.CLAIMING)
        self.pending_claim = pending

    def take_turn(self) -> tuple[float, Connect]:
        """The throttled CONNECT, back to be answered now."""
        assert self.deferred_connect is not None
        deferred, self.deferred_connect = self.deferred_connect, None
        self._move(State.AWAITING_CONNECT)
        return deferred

    def attach(self, client_id: str, session: Session, packet: Connect, now: float) -> None:
        """The CONNECT was accepted: the connection now serves `session`."""
        self._move(State.CONNECTED)
        self.client_id = client_id
        self.session = session
        self.version = packet.protocol_level
        self.decoder.version = packet.protocol_level
        self.bridge = packet.bridge
        if packet.protocol_level == PROTOCOL_MQTT_5:
            self.mqtt5 = Mqtt5Link(packet)
        self.keep_alive = packet.keep_alive
        self.will = packet.will
        self.last_activity = now

    def mark_closed(self) -> bool:
        """Enter CLOSED; False if it already was (closing happens once)."""
        if self.state is _CLOSED:
            return False
        self._move(State.CLOSED)
        self.deferred = None
        return True

    # ----------------------------------------------------- entry points

    def guarded(self, step: Callable[[float], None], now: float) -> None:
        """Run one entry point: a protocol violation or a bug closes this
        connection (the bug logged with its traceback), and the batch's output
        is written either way."""
        broker = self.broker
        broker.now = now  # what closing (a will's delay, a session's expiry) counts from
        try:
            step(now)
        except MQTTError as exc:
            broker.close_connection(
                self, CloseReason.PROTOCOL_VIOLATION, str(exc), reason_code=exc.reason_code
            )
        except Exception as exc:
            # A bug must cost one connection, never the broker or other clients.
            broker.internal_error(self, exc)
        broker.flush()

    def data_received(self, data: bytes, now: float) -> None:
        """Handle every whole packet in `data`; any violation closes the connection."""
        if self.state is _CLOSED:
            return
        self.broker.stats.bytes_received += len(data)
        self.last_activity = now
        self.decoder.feed(data)
        self.guarded(self.read_packets, now)

    def read_packets(self, now: float) -> None:
        """Handle what the decoder holds, as far as the state allows."""
        state = self.state
        if state is _THROTTLED or state is _CLAIMING:
            if self.decoder.buffered() > THROTTLED_INPUT_LIMIT:
                self.broker.close_connection(self, CloseReason.THROTTLED_INPUT)
            return
        broker = self.broker
        decoder = self.decoder
        while (state := self.state) is not _CLOSED and state is not _THROTTLED:
            if state is _CLAIMING:
                return  # the CONNECT just read waits for its client id: so does the rest
            if self.holders:
                self._read_held_back(now)
                return
            packet = decoder.next_packet()
            if packet is None:
                return
            broker.handle_packet(self, packet, now)

    def _read_held_back(self, now: float) -> None:
        """Held back: acknowledgements pass, everything else waits in order."""
        decoder = self.decoder
        while self.holders and self.state is not _CLOSED:
            if self.deferred_bytes >= DEFERRED_INPUT_LIMIT:
                self.update_reading()  # enough waits: let TCP hold the rest
                return
            packet = decoder.next_packet()
            if packet is None:
                return
            if type(packet) in _PASSES_WHILE_HELD:
                self.broker.handle_packet(self, packet, now)
                continue
            if self.deferred is None:
                self.deferred = deque()
            self.deferred.append(packet)
            self.deferred_bytes += _cost(packet)

    def release_deferred(self, now: float) -> None:
        """No receiver holds this connection back any more: handle what waited."""
        deferred = self.deferred
        broker = self.broker
        while deferred and not self.holders and self.state is not _CLOSED:
            packet = deferred.popleft()
            self.deferred_bytes -= _cost(packet)
            broker.handle_packet(self, packet, now)
        if not deferred:
            self.deferred = None
            self.deferred_bytes = 0
        self.update_reading()
        self.read_packets(now)

    def connection_lost(self, now: float) -> None:
        """The front end saw the socket close (by the peer, or after our close)."""
        self.guarded(self._lost, now)

    def _lost(self, now: float) -> None:
        self.broker.close_connection(self, CloseReason.NETWORK)

    def write_paused(self) -> None:
        """The socket's buffer passed its high-water mark: the client reads too slowly."""
        self.write_blocked = True
        if self.waiting_since is None:
            self.waiting_since = self.broker.now  # it owes us reading from now on
        self.update_reading()

    def writable(self, now: float) -> None:
        """The socket drained below its low-water mark: send what waited."""
        self.write_blocked = False
        self.guarded(self._resume_sending, now)

    def _resume_sending(self, now: float) -> None:
        self.update_reading()
        session = self.session
        if self.state is State.CONNECTED and session is not None:
            delivery = self.broker.delivery
            delivery.progress(self, session, now)  # it read what we sent
            delivery.resume(self, now)

    def update_reading(self) -> None:
        """Read the socket unless the client does not read ours, or is held back
        with enough of its input waiting already."""
        want = self.state is not _CLOSED and not self.write_blocked
        if want and self.holders:
            want = self.deferred_bytes < DEFERRED_INPUT_LIMIT
        if want is not self.reading:
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    # ----------------------------------------------------------- output

    def send(self, data: bytes, durable: bool = True) -> None:
        """Queue bytes for the socket; `Broker.flush` writes them.

        Bytes that follow a change to durable state wait for its commit, and
        so does everything after them: one connection's packets keep order.
        `durable=False` marks bytes that need not wait for this batch's
        commit (a QoS 1 delivery: if a crash loses the batch, the client can
        only get the message again, which QoS 1 allows); they still queue
        behind bytes already held.
        """
        if self.state is _CLOSED:
            return
        persistence = self.broker.persistence
        if self._held or (durable and persistence.must_hold()):
            persistence.hold(self, data, durable)
            return
        outbox = self.outbox
        if outbox is None:
            self.outbox = [data]
            self.broker.mark_pending(self)
        else:
            outbox.append(data)

    def send_last(self, data: bytes) -> None:
        """The last bytes before closing (a 5.0 DISCONNECT): they wait for no
        commit, since bytes still held for one are dropped with the connection."""
        if self.outbox is None:
            self.outbox = []
            self.broker.mark_pending(self)
        self.outbox.append(data)

    def take_released(self, data: list[bytes]) -> None:
        """Held bytes whose batch committed: they go out with the next flush."""
        outbox = self.outbox
        if outbox is None:
            outbox = self.outbox = []
            self.broker.mark_pending(self)
        outbox.extend(data)

    def write_outbox(self) -> None:
        outbox = self.outbox
        if outbox is not None:
            self.outbox = None
            if outbox:
                data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
                broker = self.broker
                stats = broker.stats
                stats.bytes_sent += len(data)
                stats.packets_sent += len(outbox)  # one packet per send
                if broker.trace:
                    trace_out(self, outbox, broker.config.log_payloads)
                self.transport.write(data)


def _cost(packet: Packet) -> int:
    """What a waiting packet counts against DEFERRED_INPUT_LIMIT."""
    if type(packet) is Publish:
        return len(packet.payload) + len(packet.topic) + 8
    return 64
