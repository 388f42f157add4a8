"""asyncio front ends: move bytes between sockets and connections, nothing more.

`MQTTProtocol` (in stream.py, compiled with the core: it handles every
read) serves MQTT over TCP, with or without TLS (asyncio does the TLS; a
client certificate's common name is read once the handshake is done).
`WebSocketProtocol` serves MQTT over WebSocket: the `websockets` library's
sans-I/O `ServerProtocol` does the HTTP upgrade and the framing, and the
payloads of binary frames form the MQTT byte stream (an MQTT packet may
span frames and a frame may hold several packets [MQTT-6.0.0-2]).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State as WebSocketState
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from midge.broker.broker import Broker
from midge.broker.closing import CloseReason
from midge.broker.config import ListenerConfig
from midge.broker.connection import Connection, State, peer_name
from midge.broker.stream import MQTTProtocol
from midge.broker.tls import certificate_identity, server_context

__all__ = ["MQTTProtocol", "WebSocketProtocol", "start_listener"]

log = logging.getLogger("midge.listeners")
# The websockets library logs every upgrade at info; the broker's own line
# ("client ... connected") says what matters, so its handshake detail is debug.
_websocket_log = logging.getLogger("midge.websocket")
_websocket_log.setLevel(logging.WARNING)

# "mqtt" per the MQTT 3.1.1 and 5.0 specifications [MQTT-6.0.0-3]; clients of
# 3.1 (such as older Paho JavaScript) ask for "mqttv3.1".
WEBSOCKET_SUBPROTOCOLS = (Subprotocol("mqtt"), Subprotocol("mqttv3.1"))
MAX_FRAME_FLOOR = 1024 * 1024  # bytes a WebSocket frame may carry even if packets are smaller


class WebSocketStream:
    """The MQTT connection's transport on a WebSocket: bytes out as binary frames."""

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol: ServerProtocol, transport: asyncio.Transport) -> None:
        self.protocol = protocol
        self.transport = transport

    def write(self, data: bytes) -> None:
        # Once the client's close frame arrived the WebSocket takes no more
        # data frames; what the broker still answers is dropped with it.
        if self.protocol.state is WebSocketState.OPEN:
            self.protocol.send_binary(data)
            self.send_pending()

    def close(self) -> None:
        """A close frame after what is buffered, then the TCP close."""
        if not self.transport.is_closing():
            if self.protocol.state is WebSocketState.OPEN:
                self.protocol.send_close(1000)
            self.send_pending()
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def send_pending(self) -> None:
        chunks = self.protocol.data_to_send()
        data = b"".join(chunks)
        if data and not self.transport.is_closing():
            self.transport.write(data)
        if chunks and not chunks[-1]:  # the library asks for the TCP close
            self.transport.close()


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection (plain or over TLS) carrying MQTT.

    Flow control as in `MQTTProtocol`: above the broker's `max_write_buffer`
    the connection counts as blocked and decides about reading.
    """

    __slots__ = (
        "broker",
        "connection",
        "deadline",
        "listener",
        "loop",
        "stream",
        "transport",
        "websocket",
    )

    def __init__(
        self, broker: Broker, loop: asyncio.AbstractEventLoop, listener: ListenerConfig
    ) -> None:
        self.broker = broker
        self.loop = loop
        self.listener = listener
        self.connection: Connection | None = None
        self.transport: asyncio.Transport | None = None
        # A frame may hold several MQTT packets [MQTT-6.0.0-2], so its bound
        # is not max_packet_size itself: the library buffers a whole frame,
        # and this keeps that memory bounded while any client's batching fits.
        self.websocket = ServerProtocol(
            subprotocols=list(WEBSOCKET_SUBPROTOCOLS),
            max_size=max(broker.config.max_packet_size, MAX_FRAME_FLOOR),
            logger=_websocket_log,
        )
        self.stream: WebSocketStream | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = self.transport = cast(asyncio.Transport, transport)
        high = self.broker.config.max_write_buffer
        stream.set_write_buffer_limits(high=high, low=high // 4)
        self.stream = WebSocketStream(self.websocket, stream)
        # The MQTT connection starts once the upgrade succeeds; until then the
        # broker's connect timeout cannot see this socket, so bound it here.
        # Cancelled by the upgrade or the close, so it only fires (and logs)
        # for a socket still waiting.
        self.deadline = self.loop.call_later(
            self.broker.config.connect_timeout, self._handshake_deadline
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self.connection is not None:
            self.connection.connection_lost(self.loop.time())
            self.connection = None

    def eof_received(self) -> bool:
        return False  # half-closed by the client: close our side too

    def pause_writing(self) -> None:
        if self.connection is not None:
            self.connection.write_paused()
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.connection is not None:
            self.connection.writable(self.loop.time())
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        websocket, stream = self.websocket, self.stream
        assert stream is not None
        websocket.receive_data(data)
        payload = []
        for event in websocket.events_received():
            if isinstance(event, Request):
                self._upgrade(event)
            elif isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    # MQTT travels in binary frames only [MQTT-6.0.0-1].
                    websocket.fail(1003, "MQTT needs binary frames")
                    self._close("sent a text frame")
                    break
                if event.opcode in (Opcode.BINARY, Opcode.CONT):
                    payload.append(event.data)
        if payload and self.connection is not None:
            self.connection.data_received(b"".join(payload), self.loop.time())
        stream.send_pending()
        failure = websocket.parser_exc
        connection = self.connection
        if failure is not None and connection is not None and connection.state is not State.CLOSED:
            # An oversized or broken frame: the library has sent its close code.
            self._close(str(failure))

    def _upgrade(self, request: Request) -> None:
        websocket, stream = self.websocket, self.stream
        assert stream is not None and self.transport is not None
        response = websocket.accept(request)
        websocket.send_response(response)
        if response.status_code != 101:
            log.info("WebSocket upgrade refused (%d) for %s", response.status_code, self._peer())
            stream.send_pending()
            self.transport.close()
            return
        self._cancel_deadline()  # from here on the broker's connect timeout applies
        transport = self.transport
        self.connection = self.broker.connection_made(
            stream,
            peer_name(transport),
            self.loop.time(),
            self.listener,
            certificate_identity(transport.get_extra_info("peercert")),
        )

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _handshake_deadline(self) -> None:
        self.deadline = None
        # A refused upgrade closes the socket before connection_lost cancels this.
        transport = self.transport
        if self.connection is None and transport is not None and not transport.is_closing():
            self._close("no WebSocket upgrade within connect_timeout")

    def _close(self, reason: str) -> None:
        if self.connection is not None:
            # The broker's close logs it ("WebSocket protocol error: ...").
            self.broker.close_connection(self.connection, CloseReason.WEBSOCKET_ERROR, reason)
            self.broker.flush()
        elif self.transport is not None:
            log.info("closing WebSocket from %s: %s", self._peer(), reason)
            self.transport.close()

    def _peer(self) -> str:
        return peer_name(self.transport) if self.transport is not None else "?"


async def start_listener(
    broker: Broker, listener: ListenerConfig, reuse_port: bool = False, **server_options: Any
) -> asyncio.Server:
    """Open one listener; raises OSError if its address cannot be bound.
    `reuse_port`: SO_REUSEPORT, so that the workers of `midge serve --workers`
    listen on one port and the kernel spreads connections over them."""
    loop = asyncio.get_running_loop()
    websocket = listener.websocket

    def protocol() -> asyncio.BaseProtocol:
        if websocket:
            return WebSocketProtocol(broker, loop, listener)
        # An asyncio protocol by its methods (asyncio duck-types protocols),
        # not by inheritance: a compiled class cannot subclass asyncio.Protocol.
        return cast(asyncio.BaseProtocol, MQTTProtocol(broker, loop, listener))

    context = server_context(listener) if listener.secure else None
    if context is not None:
        server_options.setdefault("ssl_handshake_timeout", broker.config.connect_timeout)
    return await loop.create_server(
        protocol,
        listener.host,
        listener.port,
        ssl=context,
        reuse_address=True,
        reuse_port=reuse_port,
        backlog=1024,
        **server_options,
    )
