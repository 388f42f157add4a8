"""One connection attempt of `Client`: open the byte stream, send CONNECT, read until CONNACK.

The whole attempt runs under one timeout, so a broker that accepts the TCP
connection and then says nothing cannot hang `connect()`. With MQTT 5.0
enhanced authentication the broker may send AUTH challenges before CONNACK:
the protocol answers them and the answers are written here. Every way an
attempt fails becomes one `ClientError` that names the address and how far
the attempt got, and the transport is aborted, so the caller only has to
retry or report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from midge.client.errors import (
    CannotConnect,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    os_error_text,
)
from midge.client.events import Connected, Event, Refused
from midge.client.protocol import ClientProtocol
from midge.protocol.errors import MQTTError

READ_SIZE = 65536

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
OpenStream = Callable[[], Awaitable[Streams]]
"""Opens the stream under MQTT: TCP, TLS over TCP, or a WebSocket over either."""


async def connect_once(
    protocol: ClientProtocol, open_stream: OpenStream, address: str, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, list[Event]]:
    """The streams of a connection whose CONNACK accepted us, and the events so far.

    Raises CannotConnect, ConnectTimeout, ConnectionRefused or ConnectionLost
    (the broker closed or broke the protocol before CONNACK).
    """
    stage = "connecting to"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await open_stream()
            stage = "waiting for CONNACK from"
            try:
                events = await _handshake(protocol, reader, writer, address)
            except BaseException:
                protocol.connection_lost()
                writer.transport.abort()
                raise
    except TimeoutError:
        raise ConnectTimeout(f"timed out after {timeout:g} s {stage} {address}") from None
    except OSError as exc:
        raise CannotConnect(f"cannot connect to {address}: {os_error_text(exc)}") from exc
    return reader, writer, events


async def _handshake(
    protocol: ClientProtocol,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    address: str,
) -> list[Event]:
    """Send CONNECT, read until CONNACK; the events include what came with it."""
    loop = asyncio.get_running_loop()
    protocol.connect(loop.time())
    writer.write(protocol.data_to_send())
    while True:
        data = await reader.read(READ_SIZE)
        if not data:
            raise ConnectionLost(f"{address} closed the connection before CONNACK")
        try:
            protocol.receive_data(data, loop.time())
        except MQTTError as exc:
            raise ConnectionLost(f"{address} broke the MQTT protocol: {exc}") from exc
        # Enhanced authentication answers the broker's AUTH before CONNACK.
        answer = protocol.data_to_send()
        if answer:
            writer.write(answer)
        events = protocol.events_received()
        for event in events:
            if isinstance(event, Refused):
                raise ConnectionRefused(event.return_code, event.properties)
        if any(isinstance(event, Connected) for event in events):
            return events
