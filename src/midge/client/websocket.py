"""MQTT over WebSocket for the client: the `websockets` sans-I/O protocol under asyncio streams.

`open_websocket` returns the same `(StreamReader, StreamWriter)` pair as
`asyncio.open_connection`, so `Client` and its state machine do not know
which transport carries their bytes. `_WebSocketProtocol` sits on the TCP
(or TLS) connection: it sends the HTTP upgrade request (subprotocol `mqtt`),
and once the broker answered 101 it passes the payloads of binary frames up
to the stream and `WebSocketTransport` wraps what the stream writes in
binary frames. There is no task of its own: everything runs in the
transport's callbacks.

MQTT is a byte stream here [MQTT-6.0.0-2]: an incoming packet may span
frames and a frame may hold several packets; outgoing bytes go in binary
frames of at most `FRAME_SIZE` bytes, whatever packets they hold. The
library answers pings. A close frame, EOF, a text frame [MQTT-6.0.0-1] or a
WebSocket protocol error ends the stream as a lost TCP connection would: a
clean close (1000, or no code) as EOF, anything else as a `WebSocketError`.
A broker that selects no subprotocol is accepted (as browsers accept it);
one that selects another fails the upgrade.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl as _ssl
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidMessage, InvalidStatus, NegotiationError
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI

log = logging.getLogger("midge.client.websocket")

SUBPROTOCOL = Subprotocol("mqtt")  # [MQTT-6.0.0-3]
FRAME_SIZE = 65536  # bytes per outgoing frame: small enough for any broker's frame limit
CLEAN_CLOSE_CODES = (CloseCode.NORMAL_CLOSURE, CloseCode.NO_STATUS_RCVD)


class WebSocketError(ConnectionError):
    """The WebSocket under MQTT failed: upgrade refused, close with an error, protocol error."""


def websocket_url(host: str, port: int, path: str, *, secure: bool) -> str:
    """`ws://host:port/path` (`wss://` with TLS); an IPv6 address in brackets."""
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"{'wss' if secure else 'ws'}://{host}:{port}{path}"


async def open_websocket(
    host: str, port: int, path: str = "/mqtt", *, ssl: _ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, upgrade to a WebSocket with subprotocol `mqtt`, return the byte streams.

    Raises OSError: the TCP or TLS error, or `WebSocketError` when the upgrade
    fails (an HTTP error status, another subprotocol, no HTTP answer at all).
    """
    if not path.startswith("/"):
        raise ValueError(f"the WebSocket path must start with '/', not {path!r}")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    stream = asyncio.StreamReaderProtocol(reader, loop=loop)
    resource, _, query = path.partition("?")
    uri = WebSocketURI(ssl is not None, host, port, resource, query)
    websocket = ClientProtocol(uri, subprotocols=[SUBPROTOCOL], max_size=None, logger=log)
    _, adapter = await loop.create_connection(
        lambda: _WebSocketProtocol(websocket, stream, loop), host, port, ssl=ssl
    )
    try:
        await adapter.opened
    except BaseException:
        if not adapter.opened.done():
            adapter.opened.cancel()  # cancelled (connect timeout): nobody will read its outcome
        adapter.transport.abort()
        raise
    return reader, asyncio.StreamWriter(adapter.transport, stream, reader, loop)


class _WebSocketProtocol(asyncio.Protocol):
    """The protocol of the TCP / TLS connection: upgrade, then frames <-> stream bytes."""

    def __init__(
        self,
        websocket: ClientProtocol,
        stream: asyncio.StreamReaderProtocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.websocket = websocket
        self.stream = stream  # the StreamReader's protocol: gets the MQTT bytes
        self.raw: asyncio.Transport | None = None
        self.transport = WebSocketTransport(self)
        self.opened: asyncio.Future[None] = loop.create_future()
        self.upgraded = False
        self.ended = False  # the stream was told the connection ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = cast(asyncio.Transport, transport)
        self.websocket.send_request(self.websocket.connect())
        self.send_pending()

    def data_received(self, data: bytes) -> None:
        websocket = self.websocket
        websocket.receive_data(data)
        payload = []
        error: WebSocketError | None = None
        for event in websocket.events_received():
            if not isinstance(event, Frame):
                continue  # the upgrade's Response: its outcome is in the protocol's state
            if event.opcode is Opcode.BINARY or event.opcode is Opcode.CONT:
                payload.append(event.data)
            elif event.opcode is Opcode.TEXT:
                websocket.fail(CloseCode.UNSUPPORTED_DATA, "MQTT needs binary frames")
                error = WebSocketError("the broker sent a text frame: MQTT needs binary frames")
                break
        self.send_pending()
        if not self.upgraded and not self._upgrade_done():
            return
        if payload and not self.ended:
            self.stream.data_received(b"".join(payload))
        if websocket.state is not State.OPEN:
            self._end(error or self._closing_error())

    def eof_received(self) -> bool:
        self.websocket.receive_eof()
        if not self.upgraded:
            self._upgrade_done()
        return False  # close the connection; connection_lost tells the stream

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            if exc is None:
                exc = WebSocketError("the connection closed during the WebSocket upgrade")
            self.opened.set_exception(exc)
        elif self.upgraded and not self.ended:
            self.ended = True
            self.stream.connection_lost(exc)

    def pause_writing(self) -> None:
        self.stream.pause_writing()

    def resume_writing(self) -> None:
        self.stream.resume_writing()

    def send_pending(self) -> None:
        """Write what the library wants written. Its end-of-stream marker (b"")
        needs no action: the connection is closed when the stream ends."""
        data = b"".join(self.websocket.data_to_send())
        if data and self.raw is not None and not self.raw.is_closing():
            self.raw.write(data)

    def _upgrade_done(self) -> bool:
        """After data or EOF during the upgrade: True once it succeeded; on
        failure the open fails with a WebSocketError and the connection closes."""
        websocket = self.websocket
        failure = websocket.handshake_exc
        if failure is not None:
            if not self.opened.done():
                error = WebSocketError(_describe_failure(failure))
                error.__cause__ = failure
                self.opened.set_exception(error)
            self.transport.abort()
            return False
        if websocket.state is State.CONNECTING:
            return False  # the response is not complete yet
        self.upgraded = True
        self.stream.connection_made(self.transport)
        if not self.opened.done():
            self.opened.set_result(None)
        return True

    def _closing_error(self) -> WebSocketError | None:
        """Why the WebSocket is closing: None for a clean close frame or EOF."""
        websocket = self.websocket
        received = websocket.close_rcvd
        if received is not None:
            if received.code in CLEAN_CLOSE_CODES:
                return None
            return WebSocketError(f"the broker closed the WebSocket: {received}")
        failure = websocket.parser_exc
        if failure is not None and not isinstance(failure, EOFError):
            return WebSocketError(f"WebSocket protocol error: {failure}")
        return None

    def _end(self, error: WebSocketError | None) -> None:
        """The WebSocket is closing: the stream ends now (EOF or `error`), then the TCP close."""
        if self.ended:
            return
        self.ended = True
        self.stream.connection_lost(error)
        if self.raw is not None:
            self.raw.close()  # after our close frame (the library's echo or our failure's)


class WebSocketTransport(asyncio.Transport):
    """What the stream writes to: binary frames over the TCP / TLS transport."""

    def __init__(self, adapter: _WebSocketProtocol) -> None:
        super().__init__()
        self._adapter = adapter

    @property
    def _raw(self) -> asyncio.Transport:
        raw = self._adapter.raw
        assert raw is not None, "the WebSocket transport is used before its connection"
        return raw

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        if self.is_closing():
            return  # as a closed socket's transport: the connection is gone or going
        websocket = self._adapter.websocket
        if len(data) <= FRAME_SIZE:
            websocket.send_binary(data)
        else:
            view = memoryview(data)
            for start in range(0, len(view), FRAME_SIZE):
                websocket.send_binary(view[start : start + FRAME_SIZE])
        self._adapter.send_pending()

    def is_closing(self) -> bool:
        adapter = self._adapter
        return (
            adapter.ended
            or adapter.raw is None
            or adapter.raw.is_closing()
            or adapter.websocket.state is not State.OPEN
        )

    def close(self) -> None:
        """A close frame (code 1000) after what is buffered, then the TCP close."""
        adapter = self._adapter
        if adapter.websocket.state is State.OPEN:
            adapter.websocket.send_close(CloseCode.NORMAL_CLOSURE)
            adapter.send_pending()
        if adapter.raw is not None:
            adapter.raw.close()

    def abort(self) -> None:
        if self._adapter.raw is not None:
            self._adapter.raw.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "subprotocol":
            return self._adapter.websocket.subprotocol
        return self._raw.get_extra_info(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._adapter.stream

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._adapter.stream = cast(asyncio.StreamReaderProtocol, protocol)

    def can_write_eof(self) -> bool:
        return False

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)


def _describe_failure(failure: Exception) -> str:
    """Why the upgrade failed, for the CannotConnect message (which names the URL)."""
    if isinstance(failure, InvalidStatus):
        response = failure.response
        return f"WebSocket upgrade refused: HTTP {response.status_code} {response.reason_phrase}"
    if isinstance(failure, InvalidMessage):
        if isinstance(failure.__cause__, EOFError):
            return "the server closed the connection instead of upgrading to a WebSocket"
        return "no WebSocket upgrade: the server's answer is not HTTP (not a WebSocket listener?)"
    if isinstance(failure, NegotiationError):
        return f"WebSocket upgrade failed: {failure} (MQTT needs subprotocol {SUBPROTOCOL})"
    return f"WebSocket upgrade failed: {failure}"
