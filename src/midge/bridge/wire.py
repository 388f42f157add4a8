"""One side of a bridge on the wire: a byte stream, its codec, CONNECT and CONNACK.

`open_remote` opens the stream to the other broker (TCP, TLS, or a
WebSocket over either), `open_local` an in-process one to this broker (no
socket: embedding/pipe.py). `Side` reads whole packets and writes encoded
ones; `handshake` sends CONNECT and waits, bounded, for CONNACK. Every way
this fails is a `LinkError` whose text is what the log says.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from midge.bridge.config import BridgeConfig, split_address
from midge.client.errors import connack_meaning, os_error_text, reason_name
from midge.client.websocket import open_websocket
from midge.embedding.pipe import Pipe
from midge.protocol.codec import Decoder, encode
from midge.protocol.errors import MQTTError
from midge.protocol.packets import PROTOCOL_MQTT_5, ConnAck, Connect, Disconnect, Packet

if TYPE_CHECKING:
    from midge.broker.broker import Broker

READ_SIZE = 65536


class LinkError(Exception):
    """The link cannot be made or went down; the text says why."""


class Refused(LinkError):
    """The broker answered CONNECT with a refusal."""

    def __init__(self, name: str, return_code: int) -> None:
        super().__init__(
            f"{name} refused the connection: CONNACK {return_code} ({connack_meaning(return_code)})"
        )
        self.return_code = return_code


class Side:
    """A stream MQTT runs on, from a client's point of view."""

    def __init__(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: int
    ) -> None:
        self.name = name  # for the log: "mqtt.example.com:8883", "this broker"
        self.reader = reader
        self.writer = writer
        self.version = version
        self.decoder = Decoder(version)
        self.pending: list[Packet] = []  # read with the CONNACK, not taken yet
        self.received_at = 0.0  # loop time of the last packet read

    def send(self, packets: list[Packet]) -> None:
        if packets:
            version = self.version
            self.writer.write(b"".join(encode(packet, version) for packet in packets))
            packets.clear()

    async def packets(self) -> list[Packet]:
        """The next packets read (at least one); LinkError when the stream ends."""
        if self.pending:
            found, self.pending = self.pending, []
            return found
        while True:
            try:
                data = await self.reader.read(READ_SIZE)
            except OSError as exc:
                raise LinkError(f"connection to {self.name} failed: {os_error_text(exc)}") from exc
            if not data:
                raise LinkError(f"{self.name} closed the connection")
            self.received_at = asyncio.get_running_loop().time()
            self.decoder.feed(data)
            found = []
            try:
                while (packet := self.decoder.next_packet()) is not None:
                    found.append(packet)
            except MQTTError as exc:
                raise LinkError(f"{self.name} broke the MQTT protocol: {exc}") from exc
            if found:
                return found

    async def drain(self) -> None:
        """Until the stream's write buffer is low again; LinkError if it broke."""
        try:
            await self.writer.drain()
        except OSError as exc:
            raise LinkError(f"connection to {self.name} failed: {os_error_text(exc)}") from exc

    def close(self, disconnect: bool = False) -> None:
        """End the stream; with `disconnect`, a DISCONNECT first (a normal end)."""
        if disconnect and not self.writer.is_closing():
            self.send([Disconnect()])
        self.writer.close()


async def handshake(side: Side, connect: Connect, timeout: float) -> ConnAck:
    """Send CONNECT; the CONNACK that accepts it, or Refused / LinkError."""
    side.send([connect])
    try:
        async with asyncio.timeout(timeout):
            packets = await side.packets()
    except TimeoutError:
        raise LinkError(f"{side.name} sent no CONNACK within {timeout:g} s") from None
    first = packets[0]
    if not isinstance(first, ConnAck):
        raise LinkError(f"{side.name} answered CONNECT with {type(first).__name__}")
    if first.return_code:
        raise Refused(side.name, first.return_code)
    side.pending = packets[1:]  # what a resumed session re-sends may come with it
    return first


async def open_remote(config: BridgeConfig, address: str, timeout: float) -> Side:
    """The stream to the remote broker at `address` (host:port)."""
    host, port = split_address(address)
    context = tls_context(config) if config.tls else None
    try:
        async with asyncio.timeout(timeout):
            if config.transport == "ws":
                reader, writer = await open_websocket(host, port, config.path, ssl=context)
            else:
                reader, writer = await asyncio.open_connection(host, port, ssl=context)
    except TimeoutError:
        raise LinkError(f"cannot connect to {address}: timed out after {timeout:g} s") from None
    except ssl.SSLError as exc:
        raise LinkError(f"TLS handshake with {address} failed: {exc.reason or exc}") from exc
    except (OSError, ConnectionError) as exc:
        raise LinkError(f"cannot connect to {address}: {os_error_text(exc)}") from exc
    version = PROTOCOL_MQTT_5 if config.protocol == "5" else 4
    return Side(address, reader, writer, version)


def open_local(core: Broker) -> Side:
    """An in-process stream to this broker (trusted: no login, no ACL)."""
    pipe = Pipe(core, asyncio.get_running_loop())
    return Side("this broker", pipe.reader, pipe.writer, PROTOCOL_MQTT_5)


def tls_context(config: BridgeConfig) -> ssl.SSLContext:
    """The client TLS context: the remote's certificate checked against
    `ca_file` (or the system's CAs), its name too unless `insecure`."""
    context = ssl.create_default_context(cafile=config.ca_file or None)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    if config.insecure:
        context.check_hostname = False
    return context


def disconnect_reason(packet: Disconnect) -> str:
    text = reason_name(packet.reason_code)
    if packet.properties is not None and packet.properties.reason_string:
        text += f": {packet.properties.reason_string}"
    return text
