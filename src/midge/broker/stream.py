"""The asyncio protocol of an MQTT connection over TCP or TLS: bytes in, bytes out.

The event loop calls `data_received` for every read, so this class is
compiled with the core (setup.py's HOT_MODULES), unlike the rest of the front ends
in listeners.py. It needs no asyncio import: the loop duck-types protocols
(it tells only a BufferedProtocol apart), so the socket and the loop are
described here by just what is used of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from midge.broker.connection import peer_name
from midge.broker.tls import certificate_identity

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.config import ListenerConfig
    from midge.broker.connection import Connection


class Socket(Protocol):
    """What the protocol uses of an asyncio transport."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...


class Clock(Protocol):
    """What the protocol uses of the event loop."""

    def time(self) -> float: ...


class MQTTProtocol:
    """One TCP (or TLS) connection.

    Flow control: the transport's high-water mark is the broker's
    `max_write_buffer`. Above it the connection counts as blocked (the broker
    drops or queues what it would send) and we stop reading from it, so a
    client that sends without reading our answers cannot grow our buffers.
    """

    __slots__ = ("broker", "connection", "listener", "loop", "transport")

    def __init__(self, broker: Broker, loop: Clock, listener: ListenerConfig) -> None:
        self.broker = broker
        self.loop = loop
        self.listener = listener
        self.connection: Connection | None = None
        self.transport: Socket | None = None

    def connection_made(self, transport: Socket) -> None:
        self.transport = transport
        high = self.broker.config.max_write_buffer
        transport.set_write_buffer_limits(high=high, low=high // 4)
        listener = self.listener
        peer: str | None = None
        identity: str | None = None
        if listener.secure:
            # Only a TLS handshake can have verified a client certificate. The
            # address is read now: a TLS transport may forget it once closed.
            peer = peer_name(transport)
            identity = certificate_identity(transport.get_extra_info("peercert"))
        # Plain TCP: no address yet; the connection asks the transport (which
        # keeps it after the close) when a log line or login throttling first
        # needs it, which most connections never do.
        self.connection = self.broker.connection_made(
            transport, peer, self.loop.time(), listener, identity
        )

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        if connection is not None:
            connection.data_received(data, self.loop.time())

    def eof_received(self) -> bool:
        return False  # half-closed by the client: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        connection = self.connection
        if connection is not None:
            connection.connection_lost(self.loop.time())
            self.connection = None

    def pause_writing(self) -> None:
        # The connection decides about reading: it also stops for backpressure.
        connection = self.connection
        if connection is not None:
            connection.write_paused()
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        connection = self.connection
        if connection is not None:
            connection.writable(self.loop.time())
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
