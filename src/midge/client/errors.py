"""The client's exceptions: one family, each saying what a caller can do about it.

`ClientError` is the base. Protocol violations by the broker are not wrapped
into something vaguer: they end the connection and become the `__cause__`
of the `ConnectionLost` that every waiting call gets, so the broker's exact
fault is never swallowed.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl

from midge.protocol.errors import ProtocolError
from midge.protocol.packets import ConnectReturnCode
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode

CONNACK_MEANINGS: dict[int, str] = {
    ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION: "unacceptable protocol version",
    ConnectReturnCode.IDENTIFIER_REJECTED: "identifier rejected",
    ConnectReturnCode.SERVER_UNAVAILABLE: "server unavailable",
    ConnectReturnCode.BAD_USERNAME_OR_PASSWORD: "bad user name or password",
    ConnectReturnCode.NOT_AUTHORIZED: "not authorized",
}
"""What each CONNACK refusal means (MQTT 3.1.1 table 3.1)."""


_SPELLING = {"QOS": "QoS", "IDENTIFIER": "identifier", "IDENTIFIERS": "identifiers"}


def reason_name(code: int) -> str:
    """The MQTT 5.0 name of a reason code (table 2-6), e.g. "not authorized"."""
    try:
        name = ReasonCode(code).name
    except ValueError:
        return f"reason code 0x{code:02X}"
    return " ".join(_SPELLING.get(word, word.lower()) for word in name.split("_"))


def connack_meaning(return_code: int) -> str:
    """The spec's words for a CONNACK code: 1-5 are 3.1.1's, 0x80 and up 5.0's."""
    if return_code >= 0x80:
        return reason_name(return_code)
    return CONNACK_MEANINGS.get(return_code, "reserved return code")


def _explained(code: int, properties: Properties | None) -> str:
    """`name (0xNN)`, with the broker's Reason String when it sent one."""
    text = f"{reason_name(code)} (0x{code:02X})"
    if properties is not None and properties.reason_string:
        text += f": {properties.reason_string}"
    return text


TRANSIENT_REFUSALS = frozenset(
    (
        ConnectReturnCode.SERVER_UNAVAILABLE,
        ReasonCode.SERVER_UNAVAILABLE,
        ReasonCode.SERVER_BUSY,
        ReasonCode.CONNECTION_RATE_EXCEEDED,
    )
)


class ClientError(Exception):
    """Base of every error the client library raises on purpose."""


class ConnectionRefused(ClientError):
    """The broker answered CONNECT with a non-zero CONNACK return code."""

    def __init__(self, return_code: int, properties: Properties | None = None) -> None:
        self.return_code = return_code
        self.properties = properties
        meaning = connack_meaning(return_code)
        if properties is not None and properties.reason_string:
            meaning += f": {properties.reason_string}"
        super().__init__(f"connection refused by the broker: CONNACK {return_code} ({meaning})")

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (server unavailable or busy)."""
        return self.return_code in TRANSIENT_REFUSALS


class ConnectionLost(ClientError):
    """The connection ended while a call was waiting on it, or was never made.

    Raised by every waiting call (publish, subscribe, the message iterators)
    when the connection drops and automatic reconnect is off, so nothing
    hangs. `__cause__` holds the underlying error (an OSError, the broker's
    protocol violation, a keep-alive timeout). `reason_code` is the reason of
    the broker's MQTT 5.0 DISCONNECT (e.g. 0x8E session taken over), or None.
    """

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


def lost_because(message: str, cause: BaseException) -> ConnectionLost:
    """A ConnectionLost caused by `cause`, keeping a broker DISCONNECT's reason code."""
    error = ConnectionLost(
        message, cause.reason_code if isinstance(cause, ConnectionLost) else None
    )
    error.__cause__ = cause
    return error


def os_error_text(exc: OSError) -> str:
    """An OSError as a user reads it: the reason without the errno noise."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)  # asyncio's text adds only the address we name anyway
    if f"[Errno {errno.ECONNREFUSED}]" in str(exc):  # every address of the host refused
        return os.strerror(errno.ECONNREFUSED)
    return str(exc) or type(exc).__name__


def disconnect_message(address: str, code: int, properties: Properties | None) -> str:
    return f"the broker at {address} disconnected: {_explained(code, properties)}"


class ConnectTimeout(ClientError, TimeoutError):
    """No CONNACK (or no TCP/TLS connection) within `connect_timeout` seconds."""


class KeepAliveTimeout(ClientError, TimeoutError):
    """The broker stayed silent past the keep-alive deadline: the link is dead."""


class SubscribeError(ClientError):
    """The broker refused at least one topic filter of a SUBSCRIBE (code 0x80 or above).

    `granted` holds one code per requested filter, in order (0, 1, 2, or a
    failure: 0x80 in 3.1.1, a 5.0 reason code such as 0x87 not authorized),
    so a caller that subscribed to several filters learns which ones work.
    """

    def __init__(
        self,
        filters: tuple[str, ...],
        granted: tuple[int, ...],
        properties: Properties | None = None,
    ) -> None:
        self.filters = filters
        self.granted = granted
        self.properties = properties
        super().__init__(f"subscription refused by the broker for {_refusals(filters, granted)}")

    @property
    def refused(self) -> list[str]:
        return [f for f, code in zip(self.filters, self.granted, strict=True) if code >= 0x80]


def _refusals(filters: tuple[str, ...], codes: tuple[int, ...]) -> str:
    """`a/b, c (not authorized)`: 3.1.1's bare 0x80 gets no words, 5.0's reasons do."""
    words = []
    for topic_filter, code in zip(filters, codes, strict=True):
        if code == 0x80:
            words.append(topic_filter)
        elif code > 0x80:
            words.append(f"{topic_filter} ({reason_name(code)})")
    return ", ".join(words)


class UnsubscribeError(ClientError):
    """MQTT 5.0: the broker refused to remove at least one filter (reason 0x80 or above).

    `reason_codes` holds one code per filter (0 success, 0x11 no subscription
    existed, 0x80 and above a failure).
    """

    def __init__(
        self,
        filters: tuple[str, ...],
        reason_codes: tuple[int, ...],
        properties: Properties | None = None,
    ) -> None:
        self.filters = filters
        self.reason_codes = reason_codes
        self.properties = properties
        super().__init__(
            f"unsubscribe refused by the broker for {_refusals(filters, reason_codes)}"
        )


class PublishError(ClientError):
    """MQTT 5.0: the broker's PUBACK or PUBREC reported a failure (0x80 or above).

    The message was not accepted; `reason_code` says why (0x87 not authorized,
    0x97 quota exceeded, ...), `properties` may hold the broker's Reason String.
    """

    def __init__(self, topic: str, reason_code: int, properties: Properties | None = None) -> None:
        self.topic = topic
        self.reason_code = reason_code
        self.properties = properties
        super().__init__(
            f"publish to {topic!r} refused by the broker: {_explained(reason_code, properties)}"
        )


class PacketTooLarge(ClientError, ValueError):
    """A packet larger than the broker's Maximum Packet Size (MQTT 5.0 CONNACK):
    the client refuses to send it, since the broker would disconnect."""


class AuthenticationError(ClientError):
    """Enhanced authentication failed on our side: the authenticator raised."""


class ReceiveMaximumExceeded(ProtocolError):
    """The broker sent more unacknowledged QoS 2 messages than our Receive Maximum."""

    reason_code = 0x93


class PacketIdsExhausted(ClientError):
    """All 65535 packet ids are in flight; wait for some to complete first."""


class NotConnected(ClientError):
    """A call that needs a live connection was made without one."""


class CannotConnect(ClientError):
    """The TCP (or TLS, or WebSocket) connection could not be made: no broker
    listening, no route, DNS failure, certificate rejected, WebSocket upgrade
    refused (`midge.client.websocket.WebSocketError`). `__cause__` is the OSError."""
