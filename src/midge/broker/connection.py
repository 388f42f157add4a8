"""One client connection: bytes in, packets to the broker's handlers, bytes out.

Theory of operation. A connection starts in AWAITING_CONNECT; the only
packet it accepts there is CONNECT [MQTT-3.1.0-1]. The CONNECT handler moves
it to CONNECTED, where a second CONNECT is a protocol violation
[MQTT-3.1.0-2]. CLOSED is final: nothing more is read or written. Every way
out of the first two states goes through `Broker.close_connection`, which
decides about the will, the session and the log line, once.

The connection does no I/O itself: the front end calls `data_received` with
bytes and the current time, and `transport` (anything with `write` and
`close`) carries bytes out. That is what lets tests drive it byte by byte.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from midge.protocol.codec import Decoder
from midge.protocol.errors import MQTTError
from midge.protocol.packets import Connect, Will

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.config import ListenerConfig
    from midge.broker.session import Session

log = logging.getLogger("midge.connection")

THROTTLED_INPUT_LIMIT = 64 * 1024  # bytes a client may send while its CONNECT waits


class Transport(Protocol):
    """What a front end gives a connection: a byte sink it can close."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None:
        """Close after what is buffered has been sent."""

    def abort(self) -> None:
        """Close at once, discarding what is buffered."""


class State(Enum):
    AWAITING_CONNECT = "awaiting-connect"
    # A CONNECT arrived from an address with failed logins: it waits for its
    # turn (`LoginThrottle`) and later packets wait in the decoder's buffer.
    THROTTLED = "throttled"
    CONNECTED = "connected"
    CLOSED = "closed"


# Typed as plain State so checks after the handlers ran are not "unreachable"
# to mypy: a handler may close the connection.
_CLOSED: State = State.CLOSED
_THROTTLED: State = State.THROTTLED


class Connection:
    __slots__ = (
        "broker",
        "client_id",
        "decoder",
        "deferred_connect",
        "held",
        "keep_alive",
        "last_activity",
        "listener",
        "opened_at",
        "outbox",
        "peer",
        "session",
        "state",
        "timer_at",
        "tls_identity",
        "transport",
        "username",
        "version",
        "will",
        "write_blocked",
    )

    def __init__(
        self,
        broker: Broker,
        transport: Transport,
        peer: str,
        now: float,
        listener: ListenerConfig,
        tls_identity: str | None = None,
    ) -> None:
        self.broker = broker
        self.transport = transport
        self.peer = peer
        self.listener = listener  # where the client connected: its anonymous and TLS rules
        # The verified client certificate's common name, on a TLS listener.
        self.tls_identity = tls_identity
        self.username: str | None = None  # who the client logged in as (ACLs check it)
        # (turn, CONNECT) while THROTTLED: the CONNECT and when it will be answered.
        self.deferred_connect: tuple[float, Connect] | None = None
        self.opened_at = now
        self.last_activity = now
        self.state = State.AWAITING_CONNECT
        self.decoder = Decoder(max_packet_size=broker.config.max_packet_size)
        self.client_id = ""
        self.version = 0
        self.keep_alive = 0
        self.will: Will | None = None
        self.session: Session | None = None
        # Set while the socket's buffer is above its high-water mark: the client
        # is not reading fast enough, so QoS 0 is dropped and QoS 1/2 waits.
        self.write_blocked = False
        self.timer_at: float | None = None  # the broker's next deadline check
        # Bytes sent during one batch of input, written to the socket in one
        # call by `Broker.flush`: a syscall per batch, not per packet.
        self.outbox: list[bytes] = []
        # (epoch, bytes) that wait for the store to commit that batch.
        self.held: list[tuple[int, bytes]] = []

    def __repr__(self) -> str:
        return f"<Connection {self.client_id or '?'} from {self.peer} {self.state.value}>"

    @property
    def address(self) -> str:
        """The client's IP address, without the port (what login throttling counts)."""
        return self.peer.rpartition(":")[0] or self.peer

    @property
    def name(self) -> str:
        """How logs name this client: its id once known, else its address."""
        return f"{self.client_id!r} ({self.peer})" if self.client_id else self.peer

    def data_received(self, data: bytes, now: float) -> None:
        """Handle every whole packet in `data`; any violation closes the connection."""
        if self.state is _CLOSED:
            return
        self.last_activity = now
        self.decoder.feed(data)
        if self.state is _THROTTLED and self.decoder.buffered() > THROTTLED_INPUT_LIMIT:
            self.broker.close_connection(self, "sent too much while its CONNECT waited")
            self.broker.flush()
            return
        try:
            while self.state is not _CLOSED and self.state is not _THROTTLED:
                packet = self.decoder.next_packet()
                if packet is None:
                    break
                self.broker.handle_packet(self, packet, now)
        except MQTTError as exc:
            self.broker.close_connection(self, f"protocol violation: {exc}")
        except Exception:
            # A bug must cost one connection, never the broker or other clients.
            log.exception("internal error handling data from %s", self.name)
            self.broker.close_connection(self, "internal error")
        self.broker.flush()

    def connection_lost(self) -> None:
        """The front end saw the socket close (by the peer, or after our close)."""
        self.broker.close_connection(self, "connection closed by the network")
        self.broker.flush()

    def writable(self, now: float) -> None:
        """The socket drained below its low-water mark: send what waited."""
        self.write_blocked = False
        if self.state is State.CONNECTED:
            self.broker.resume_delivery(self)
            self.broker.flush()

    def send(self, data: bytes, durable: bool = True) -> None:
        """Queue bytes for the socket; `Broker.flush` writes them.

        Bytes that follow a change to durable state wait for its commit, and
        so does everything after them: one connection's packets keep order.
        `durable=False` marks bytes that need not wait for this batch's
        commit (a QoS 1 delivery: if a crash loses the batch, the client can
        only get the message again, which QoS 1 allows); they still queue
        behind bytes already held.
        """
        if self.state is State.CLOSED:
            return
        persistence = self.broker.persistence
        if self.held or (durable and persistence.must_hold()):
            wait_for_batch = durable and persistence.barrier
            epoch = persistence.next_epoch if wait_for_batch else self.held[-1][0]
            if not self.held:
                self.broker.holding.add(self)
            self.held.append((epoch, data))
            return
        if not self.outbox:
            self.broker.mark_pending(self)
        self.outbox.append(data)

    def release_held(self, committed: int) -> None:
        held = self.held
        index = 0
        while index < len(held) and held[index][0] <= committed:
            index += 1
        if index:
            if not self.outbox:
                self.broker.mark_pending(self)
            self.outbox.extend(data for _, data in held[:index])
            del held[:index]
        if not held:
            self.broker.holding.discard(self)

    def write_outbox(self) -> None:
        outbox = self.outbox
        if outbox:
            data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
            outbox.clear()
            self.transport.write(data)
