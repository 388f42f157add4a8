"""An in-memory byte pipe between a `midge.client.Client` and the broker: no socket.

The broker's side is a `Transport` for its `Connection`; the client's side
is an asyncio (StreamReader, StreamWriter) pair, which is what `Client`
reads and writes. Bytes cross on the next loop iteration (`call_soon`, in
order), never inside the writer's call, so neither side re-enters the
other. Flow control maps onto the broker's own: a client that does not
read fills its StreamReader, which pauses the pipe, which the broker sees
as a socket buffer above its high-water mark (QoS 0 dropped, QoS 1/2
queued, publishers held back); a broker that stops reading (backpressure)
leaves the client's bytes here, and past `BUFFER_LIMIT` the client's
`drain()` waits.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

from midge.broker.internal import INTERNAL_LISTENER

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.config import ListenerConfig
    from midge.broker.connection import Connection

BUFFER_LIMIT = 256 * 1024  # client bytes held while the broker does not read
READER_LIMIT = 256 * 1024  # the client's StreamReader: past twice this the broker pauses

_numbers = itertools.count(1)


class Pipe:
    """One in-process connection: both ends and what waits between them."""

    def __init__(
        self,
        broker: Broker,
        loop: asyncio.AbstractEventLoop,
        listener: ListenerConfig = INTERNAL_LISTENER,
    ) -> None:
        """`listener`: INTERNAL_LISTENER (trusted) or API_LISTENER (the ACL applies)."""
        self.loop = loop
        self.name = ("in-process", next(_numbers))
        self.reader = asyncio.StreamReader(limit=READER_LIMIT, loop=loop)
        self.protocol = asyncio.StreamReaderProtocol(self.reader, loop=loop)
        self.client_transport = ClientTransport(self)
        self.protocol.connection_made(self.client_transport)
        self.writer = asyncio.StreamWriter(self.client_transport, self.protocol, self.reader, loop)
        self.broker_reading = True
        self.waiting: list[bytes] = []  # client bytes the broker has not asked for yet
        self.writing_paused = False
        self.closed = False
        self.connection: Connection = broker.connection_made(
            BrokerTransport(self), f"in-process:{self.name[1]}", loop.time(), listener
        )

    # --------------------------------------------------- client -> broker

    def to_broker(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if self.broker_reading and not self.waiting:
            # At once, as a socket's data_received would be soon: the broker
            # answers through to_client (a later loop step), so the client's
            # code is never re-entered, and a QoS 0 publish has been routed by
            # the time the client's write returns.
            self._feed_broker(data)
            return
        self.waiting.append(data)
        if not self.writing_paused and sum(map(len, self.waiting)) > BUFFER_LIMIT:
            self.writing_paused = True
            self.protocol.pause_writing()

    def _feed_broker(self, data: bytes) -> None:
        if not self.closed:
            self.connection.data_received(data, self.loop.time())

    def broker_resumes(self) -> None:
        self.broker_reading = True
        if self.waiting:
            data, self.waiting = b"".join(self.waiting), []
            self.loop.call_soon(self._feed_broker, data)
        if self.writing_paused:
            self.writing_paused = False
            self.protocol.resume_writing()

    # --------------------------------------------------- broker -> client

    def to_client(self, data: bytes) -> None:
        if not self.closed:
            self.loop.call_soon(self._feed_client, data)

    def _feed_client(self, data: bytes) -> None:
        if not self.closed:
            self.protocol.data_received(data)

    def client_reads(self, reading: bool) -> None:
        """The client's StreamReader filled up (False) or drained (True)."""
        if self.closed:
            return
        if reading:
            self.connection.writable(self.loop.time())
        else:
            self.connection.write_paused()

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Either side closed: after what is already on its way, both ends learn it."""
        if self.closed:
            return
        self.loop.call_soon(self._closed)

    def _closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.waiting.clear()
        self.protocol.connection_lost(None)
        self.connection.connection_lost(self.loop.time())


class BrokerTransport:
    """The broker's end: what its Connection writes to and pauses."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe

    def write(self, data: bytes) -> None:
        self.pipe.to_client(data)

    def close(self) -> None:
        self.pipe.close()

    def abort(self) -> None:
        self.pipe.close()

    def pause_reading(self) -> None:
        self.pipe.broker_reading = False

    def resume_reading(self) -> None:
        self.pipe.broker_resumes()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.pipe.name if name == "peername" else default


class ClientTransport(asyncio.Transport):
    """The client's end: what its StreamWriter writes to and its StreamReader pauses."""

    def __init__(self, pipe: Pipe) -> None:
        super().__init__({"peername": pipe.name})
        self.pipe = pipe
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.pipe.to_broker(bytes(data))

    def is_closing(self) -> bool:
        return self._closing or self.pipe.closed

    def close(self) -> None:
        self._closing = True
        self.pipe.close()

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.pipe.waiting))

    def pause_reading(self) -> None:
        self.pipe.client_reads(False)

    def resume_reading(self) -> None:
        self.pipe.client_reads(True)

    def is_reading(self) -> bool:
        return not self.pipe.connection.write_blocked
