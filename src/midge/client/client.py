"""The asyncio MQTT client: moves bytes between a stream and `ClientProtocol`.

All protocol decisions (packet ids, QoS flows, re-sending, keep-alive) are
made by the sans-IO `ClientProtocol`; this layer only opens connections
(`connecting.connect_once` makes each attempt, CONNECT to CONNACK), writes
what the protocol wants written, runs its timer, and resolves the futures
that `publish`, `subscribe` and `unsubscribe` wait on when the protocol
reports the matching acknowledgement. QoS state therefore never
lives in a future: a lost connection loses no protocol state, and with
`reconnect=True` waiting calls simply complete after the next connection.

One reader task per connection; `_read_loop` is the one place that turns
every way a connection can end (EOF, OSError, a protocol violation by the
broker) into `_connection_lost`, which either starts the reconnect loop or
fails every waiting call with `ConnectionLost` so nothing hangs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl as _ssl
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from midge.client.connecting import READ_SIZE, OpenStream, Streams, connect_once
from midge.client.errors import (
    AuthenticationError,
    ClientError,
    ConnectionLost,
    ConnectionRefused,
    KeepAliveTimeout,
    NotConnected,
    PublishError,
    SubscribeError,
    UnsubscribeError,
    disconnect_message,
    lost_because,
    os_error_text,
)
from midge.client.events import (
    Connected,
    Disconnected,
    Event,
    MessageReceived,
    PublishCompleted,
    Reauthenticated,
    Subscribed,
    TimedOut,
    Unsubscribed,
)
from midge.client.options import Authenticator, ServerLimits
from midge.client.protocol import ClientProtocol, ConnectOptions, State, SubscriptionSpec, Trace
from midge.client.requests import RequestResponse, Responses
from midge.client.streams import MessageStream
from midge.client.websocket import open_websocket, websocket_url
from midge.protocol.errors import MQTTError
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1,
    PROTOCOL_MQTT_3_1_1,
    Subscription,
    Will,
)
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode

log = logging.getLogger("midge.client")

TRANSPORTS = ("tcp", "websocket")
# After these DISCONNECT reasons a reconnect would only repeat the fight
# (two clients with one id take the session from each other in turn).
NO_RECONNECT = frozenset((ReasonCode.SESSION_TAKEN_OVER, ReasonCode.BANNED))
_REAUTH = 0  # the waiter key of a re-authentication: packet ids start at 1


@dataclass(slots=True)
class _Link:
    """One live connection: its streams and the task reading from it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None


class Client(RequestResponse):
    """An MQTT 3.1 / 3.1.1 / 5.0 client; use `async with Client(host) as client:`.

    `protocol_version` 4 is MQTT 3.1.1, 3 is MQTT 3.1 (an empty `client_id`
    then gets a generated one, since 3.1 has no empty ids), 5 is MQTT 5.0:
    `properties` are then the CONNECT properties (Session Expiry Interval,
    which 5.0 needs for a session to outlive the connection; Receive Maximum,
    Maximum Packet Size, Topic Alias Maximum, User Properties, ...) and an
    `authenticator` answers the broker's challenges for the Authentication
    Method in them (see `midge.client.options.Authenticator`). `reconnect=True`
    reconnects after a lost connection with exponential backoff from
    `reconnect_min_delay` to `reconnect_max_delay` seconds, re-sends what was
    in flight and re-subscribes when the broker kept no session; waiting
    calls then keep waiting. The first connection is never retried: a wrong
    address or password should fail at once. At most `max_inflight` QoS 1/2
    messages are unacknowledged at once (0: no limit); more wait, in order.
    `ssl` wraps the TCP connection in TLS. `transport="websocket"` carries
    MQTT over a WebSocket (subprotocol `mqtt`) to `ws://host:port{path}`, or
    `wss://` when `ssl` is given. `open_stream` replaces the network altogether:
    an async callable giving the (reader, writer) pair to speak MQTT on (what
    `midge.Broker.client()` uses to connect in-process); `host` then only
    names the connection in messages.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        client_id: str = "",
        clean_session: bool = True,
        keepalive: int = 60,
        username: str | None = None,
        password: str | bytes | None = None,
        will: Will | None = None,
        protocol_version: int = PROTOCOL_MQTT_3_1_1,
        properties: Properties | None = None,
        authenticator: Authenticator | None = None,
        reconnect: bool = False,
        reconnect_min_delay: float = 0.1,
        reconnect_max_delay: float = 30.0,
        connect_timeout: float = 10.0,
        max_inflight: int = 20,
        ssl: _ssl.SSLContext | None = None,
        transport: str = "tcp",
        path: str = "/mqtt",
        trace: Trace | None = None,
        open_stream: OpenStream | None = None,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        if transport == "websocket" and not path.startswith("/"):
            raise ValueError(f"the WebSocket path must start with '/', not {path!r}")
        if not client_id and protocol_version == PROTOCOL_MQTT_3_1:
            client_id = f"midge-{secrets.token_hex(8)}"  # 22 characters: 3.1 allows 23
        secret = password.encode("utf-8") if isinstance(password, str) else password
        options = ConnectOptions(
            client_id,
            clean_session,
            keepalive,
            username,
            secret,
            will,
            protocol_version,
            properties,
            authenticator,
        )
        self.host = host
        self.port = port
        self.reconnect = reconnect
        self.reconnect_min_delay = reconnect_min_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.connect_timeout = connect_timeout
        self.ssl = ssl
        self.transport = transport
        self.path = path
        self._custom_stream = open_stream
        self._protocol = ClientProtocol(options, max_inflight=max_inflight, trace=trace)
        self._link: _Link | None = None
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._inbox = MessageStream(None)
        self._streams: list[MessageStream] = []
        self._timer: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        self._failure: ClientError | None = None
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._connack: Properties | None = None
        self._responses = Responses()

    @property
    def client_id(self) -> str:
        """The client identifier; with MQTT 5.0, the one the broker assigned to an empty one."""
        return self._protocol.options.client_id

    @property
    def connack_properties(self) -> Properties | None:
        """MQTT 5.0: the properties of the latest CONNACK (None before, and in 3.1.1)."""
        return self._connack

    @property
    def limits(self) -> ServerLimits:
        """What the broker allows on this connection (Receive Maximum, Maximum
        Packet Size, Topic Alias Maximum, Maximum QoS, Retain Available)."""
        return self._protocol.limits

    @property
    def session_present(self) -> bool:
        """CONNACK's session present flag of the latest connection."""
        return self._protocol.session_present

    @property
    def connected(self) -> bool:
        return self._protocol.state is State.CONNECTED

    @property
    def protocol(self) -> ClientProtocol:
        """The sans-IO state machine (for inspection and tests)."""
        return self._protocol

    @property
    def address(self) -> str:
        """host:port, or the URL with the WebSocket transport (for messages)."""
        if self._custom_stream is not None:
            return self.host
        if self.transport == "websocket":
            return websocket_url(self.host, self.port, self.path, secure=self.ssl is not None)
        return f"{self.host}:{self.port}"

    # ----------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        """Connect once. Raises CannotConnect, ConnectTimeout, ConnectionRefused
        or ConnectionLost (the broker closed or broke the protocol before CONNACK)."""
        if self._link is not None or self._closing:
            raise RuntimeError("connect() on a client that is connected or closed")
        await self._open()

    async def disconnect(self, reason_code: int = 0, properties: Properties | None = None) -> None:
        """Send DISCONNECT (the broker discards the will) and close. Calls still
        waiting get ConnectionLost; message streams end after their buffer.

        MQTT 5.0: `reason_code` 0x04 asks the broker to publish the will all the
        same; `properties` may change the Session Expiry Interval (not from 0).
        """
        if self._closing:
            return
        now = asyncio.get_running_loop().time()
        self._protocol.disconnect(now, reason_code, properties)  # ValueError before closing
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        link = self._link
        self._flush()
        self._link = None
        self._cancel_timer()
        if link is not None:
            if link.task is not None:
                link.task.cancel()
            link.writer.close()
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await link.writer.wait_closed()
            except (OSError, TimeoutError):
                pass  # the DISCONNECT is written or the socket is gone: either way, done
        self._fail(NotConnected("the client has disconnected"), clean=True)

    async def _open(self) -> None:
        """One connection attempt (see `connecting`); then read from it."""
        reader, writer, events = await connect_once(
            self._protocol, self._open_stream, self.address, self.connect_timeout
        )
        link = _Link(reader, writer)
        self._link = link
        link.task = asyncio.create_task(self._read_loop(link), name=f"mqtt-{self.address}")
        self._flush()  # what the protocol re-sends after CONNACK
        self._handle_events(events)
        self._schedule_timer()

    async def _open_stream(self) -> Streams:
        """The byte stream under MQTT: TCP, TLS over TCP, or a WebSocket over either."""
        if self._custom_stream is not None:
            return await self._custom_stream()
        if self.transport == "websocket":
            return await open_websocket(self.host, self.port, self.path, ssl=self.ssl)
        return await asyncio.open_connection(self.host, self.port, ssl=self.ssl)

    async def _read_loop(self, link: _Link) -> None:
        """Feed the protocol until the connection ends, then report how it ended."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await link.reader.read(READ_SIZE)
                if not data:
                    raise ConnectionLost(f"the broker at {self.address} closed the connection")
                self._protocol.receive_data(data, loop.time())
                self._pump()
        except ConnectionLost as exc:
            error = exc
        except MQTTError as exc:
            self._pump()  # the packets before the bad one count: deliver and acknowledge them
            error = lost_because(
                f"the broker at {self.address} broke the MQTT protocol: {exc}", exc
            )
        except AuthenticationError as exc:
            self._pump()  # our DISCONNECT
            error = lost_because(f"re-authentication with {self.address} failed: {exc}", exc)
        except OSError as exc:
            error = lost_because(f"connection to {self.address} lost: {os_error_text(exc)}", exc)
        except Exception as exc:  # a bug here must not leave callers hanging
            log.exception("client reader failed")
            error = lost_because(f"internal error in the MQTT client: {exc!r}", exc)
        self._connection_lost(link, error)

    def _connection_lost(self, link: _Link, error: ClientError) -> None:
        if self._link is not link:
            return
        self._link = None
        self._cancel_timer()
        self._protocol.connection_lost()
        link.writer.transport.abort()
        if link.task is not None and link.task is not asyncio.current_task():
            link.task.cancel()
        self._changed.set()
        if self._closing:
            return
        final = isinstance(error, ConnectionLost) and error.reason_code in NO_RECONNECT
        if self.reconnect and not final:
            log.warning("%s; reconnecting", error)
            self._reconnect_task = asyncio.create_task(self._reconnect_loop())
        else:
            self._fail(error)

    async def _reconnect_loop(self) -> None:
        """Retry with exponential backoff until connected, or a refusal that is final."""
        delay = self.reconnect_min_delay
        while not self._closing:
            try:
                await self._open()
                log.info("reconnected to %s", self.address)
                return
            except ConnectionRefused as exc:
                if not exc.transient:
                    self._fail(lost_because(f"reconnecting to {self.address} failed: {exc}", exc))
                    return
                log.warning("reconnect: %s; retrying in %.1f s", exc, delay)
            except ClientError as exc:
                log.info("reconnect: %s; retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_delay)

    def _fail(self, error: ClientError, *, clean: bool = False) -> None:
        """The client is finished: every waiting call and stream learns why."""
        if self._failure is None:
            self._failure = error
        waiters, self._waiters = self._waiters, {}
        for future in waiters.values():
            if not future.done():
                future.set_exception(lost_because(str(error), error))
        end = None if clean else error
        self._responses.fail(lost_because(str(error), error))
        self._inbox.finish(end)
        for stream in self._streams:
            stream.finish(end)
        self._changed.set()

    # ------------------------------------------------ protocol <-> stream

    def _flush(self) -> None:
        data = self._protocol.data_to_send()
        if data and self._link is not None and not self._link.writer.is_closing():
            self._link.writer.write(data)

    def _pump(self) -> None:
        """After the protocol ran: write its bytes, act on its events, re-arm its timer."""
        self._flush()
        self._handle_events(self._protocol.events_received())
        self._schedule_timer()

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, MessageReceived):
                self._route(event)
            elif isinstance(event, PublishCompleted | Unsubscribed | Subscribed):
                self._resolve(event.packet_id, event)
            elif isinstance(event, Connected):
                self._connack = event.properties
                self._changed.set()
            elif isinstance(event, Reauthenticated):
                self._resolve(_REAUTH, event)
            elif isinstance(event, TimedOut) and self._link is not None:
                message = f"keep-alive: {self.address} silent for {event.silent_for:.1f} s"
                self._connection_lost(self._link, KeepAliveTimeout(message))
            elif isinstance(event, Disconnected) and self._link is not None:
                text = disconnect_message(self.address, event.reason_code, event.properties)
                self._connection_lost(self._link, ConnectionLost(text, event.reason_code))

    def _route(self, event: MessageReceived) -> None:
        message = event.message
        if self._responses.take(message):
            return
        taken = False
        for stream in self._streams:
            if stream.matches(message.topic):
                stream.push(message)
                taken = True
        if not taken:
            self._inbox.push(message)

    def _resolve(self, packet_id: int, value: object) -> None:
        future = self._waiters.pop(packet_id, None)  # None: our own re-subscribe
        if future is not None and not future.done():
            future.set_result(value)

    def _schedule_timer(self) -> None:
        deadline = self._protocol.timer_deadline()
        if deadline is None:
            self._cancel_timer()
        elif self._timer is None or self._timer.when() > deadline:
            # A timer that fires before the deadline is harmless: it re-arms.
            self._cancel_timer()
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._protocol.handle_timer(asyncio.get_running_loop().time())
        self._pump()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -------------------------------------------------------- application

    async def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> int:
        """Publish and wait until the QoS flow completes (QoS 0: until written).

        With reconnect on, QoS 1/2 messages wait across reconnects and are
        re-sent with DUP set; QoS 0 waits for a connection, then is sent once.
        Returns the reason code of the acknowledgement (MQTT 5.0: 0, or 0x10
        no matching subscribers; otherwise 0). MQTT 5.0 `properties`: Message
        Expiry Interval, Content Type, Payload Format Indicator, Response
        Topic, Correlation Data, User Properties (topic aliases are automatic).
        Raises PublishError when the broker refuses the message (5.0 reason
        0x80 and above), PacketTooLarge above the broker's Maximum Packet Size.
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        loop = asyncio.get_running_loop()
        if qos == 0:
            await self._wait_connected()
            self._protocol.publish(topic, data, 0, retain, now=loop.time(), properties=properties)
            self._flush()
            await self._drain(required=True)
            return 0
        self._check_usable()
        packet_id = self._protocol.publish(
            topic, data, qos, retain, now=loop.time(), properties=properties
        )
        assert packet_id is not None
        event = await self._wait_for(packet_id)
        assert isinstance(event, PublishCompleted)
        if event.reason_code >= 0x80:
            raise PublishError(topic, event.reason_code, event.properties)
        return event.reason_code

    async def subscribe(
        self,
        topic: str | Sequence[tuple[str, int] | Subscription],
        qos: int = 0,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        properties: Properties | None = None,
    ) -> list[int]:
        """Subscribe to one filter at `qos`, or to a list of (filter, qos) or `Subscription`.

        Returns the granted QoS per filter. Raises SubscribeError (which has
        `.granted`, one code per filter) if the broker refused any filter (0x80,
        or a 5.0 reason code). MQTT 5.0: the subscription options apply to
        `topic` and to each (filter, qos) pair (a `Subscription` has its own);
        `properties` may carry a Subscription Identifier and User Properties.
        """
        pairs = [(topic, qos)] if isinstance(topic, str) else list(topic)
        subscriptions: list[SubscriptionSpec] = [
            pair
            if isinstance(pair, Subscription)
            else Subscription(pair[0], pair[1], no_local, retain_as_published, retain_handling)
            for pair in pairs
        ]
        self._check_usable()
        now = asyncio.get_running_loop().time()
        packet_id = self._protocol.subscribe(subscriptions, now, properties)
        event = await self._wait_for(packet_id)
        assert isinstance(event, Subscribed)
        if any(code >= 0x80 for code in event.granted):
            raise SubscribeError(event.filters, event.granted, event.properties)
        return list(event.granted)

    async def unsubscribe(
        self, topic: str | Sequence[str], *, properties: Properties | None = None
    ) -> list[int]:
        """Unsubscribe from one filter or several; returns at UNSUBACK.

        Returns MQTT 5.0's reason code per filter (0 success, 0x11 no
        subscription existed; an empty list in 3.1.1, whose UNSUBACK has none).
        Raises UnsubscribeError when the broker refused any (0x80 and above).
        """
        filters = [topic] if isinstance(topic, str) else list(topic)
        self._check_usable()
        now = asyncio.get_running_loop().time()
        packet_id = self._protocol.unsubscribe(filters, now, properties)
        event = await self._wait_for(packet_id)
        assert isinstance(event, Unsubscribed)
        if any(code >= 0x80 for code in event.reason_codes):
            raise UnsubscribeError(tuple(filters), event.reason_codes, event.properties)
        return list(event.reason_codes)

    async def reauthenticate(self, data: bytes | None = None) -> Properties | None:
        """MQTT 5.0 re-authentication with the CONNECT's method: AUTH 0x19 with
        `data`, then the authenticator answers challenges until the broker's
        AUTH 0 (its properties are returned); a broker that refuses disconnects."""
        self._check_usable()
        self._protocol.reauthenticate(asyncio.get_running_loop().time(), data)
        event = await self._wait_for(_REAUTH)
        assert isinstance(event, Reauthenticated)
        return event.properties

    def messages(self, topic_filter: str | None = None) -> MessageStream:
        """Received messages as an async iterator.

        Without a filter: the client's inbox, every message no filtered stream
        took, buffered from the moment the client was created. With a filter:
        a new stream of the messages matching it from now on, until closed
        (`async with client.messages("a/+") as stream:` closes it).
        """
        if topic_filter is None:
            return self._inbox
        stream = MessageStream(topic_filter, self._streams.remove)
        self._streams.append(stream)
        if self._failure is not None:
            stream.finish(None if self._closing else self._failure)
        return stream

    async def _wait_for(self, packet_id: int) -> object:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[packet_id] = future
        self._flush()
        await self._drain(required=False)
        return await future

    async def _drain(self, *, required: bool) -> None:
        """Wait while the socket's buffer is full (backpressure)."""
        link = self._link
        if link is None:
            if required:
                raise ConnectionLost(f"connection to {self.address} lost before the write")
            return
        try:
            await link.writer.drain()
        except OSError as exc:
            if required:
                raise lost_because(
                    f"connection to {self.address} lost: {os_error_text(exc)}", exc
                ) from exc

    def _check_usable(self) -> None:
        """Raise unless a request can be sent now or after the reconnect under way."""
        if self._failure is not None:
            raise lost_because(str(self._failure), self._failure)
        if self._link is None and self._reconnect_task is None:
            raise NotConnected("not connected: use `async with Client(...)` or connect()")

    async def _wait_connected(self) -> None:
        while self._protocol.state is not State.CONNECTED:
            self._check_usable()
            self._changed.clear()
            await self._changed.wait()
