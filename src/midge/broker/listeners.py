"""asyncio front ends: move bytes between sockets and connections, nothing more."""

from __future__ import annotations

import asyncio
from typing import cast

from midge.broker.broker import Broker
from midge.broker.connection import Connection


class MQTTProtocol(asyncio.Protocol):
    """One TCP connection.

    Flow control: the transport's high-water mark is the broker's
    `max_write_buffer`. Above it the connection counts as blocked (the broker
    drops or queues what it would send) and we stop reading from it, so a
    client that sends without reading our answers cannot grow our buffers.
    """

    __slots__ = ("broker", "connection", "loop", "transport")

    def __init__(self, broker: Broker, loop: asyncio.AbstractEventLoop) -> None:
        self.broker = broker
        self.loop = loop
        self.connection: Connection | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = self.transport = cast(asyncio.Transport, transport)
        high = self.broker.config.max_write_buffer
        stream.set_write_buffer_limits(high=high, low=high // 4)
        peer = stream.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.connection = self.broker.connection_made(stream, address, self.loop.time())

    def data_received(self, data: bytes) -> None:
        if self.connection is not None:
            self.connection.data_received(data, self.loop.time())

    def eof_received(self) -> bool:
        return False  # half-closed by the client: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connection is not None:
            self.connection.connection_lost()
            self.connection = None

    def pause_writing(self) -> None:
        if self.connection is not None:
            self.connection.write_blocked = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        if self.connection is not None:
            self.connection.writable(self.loop.time())


async def start_tcp_listener(broker: Broker, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: MQTTProtocol(broker, loop), host, port, reuse_address=True, backlog=1024
    )
