"""The client's exceptions: one family, each saying what a caller can do about it.

`ClientError` is the base. Protocol violations by the broker are not wrapped
into something vaguer: they end the connection and become the `__cause__`
of the `ConnectionLost` that every waiting call gets, so the broker's exact
fault is never swallowed.
"""

from __future__ import annotations

from midge.protocol.packets import ConnectReturnCode

CONNACK_MEANINGS: dict[int, str] = {
    ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION: "unacceptable protocol version",
    ConnectReturnCode.IDENTIFIER_REJECTED: "identifier rejected",
    ConnectReturnCode.SERVER_UNAVAILABLE: "server unavailable",
    ConnectReturnCode.BAD_USERNAME_OR_PASSWORD: "bad user name or password",
    ConnectReturnCode.NOT_AUTHORIZED: "not authorized",
}
"""What each CONNACK refusal means (MQTT 3.1.1 table 3.1)."""


def connack_meaning(return_code: int) -> str:
    """The spec's words for a CONNACK return code; codes 6-255 are reserved."""
    return CONNACK_MEANINGS.get(return_code, "reserved return code")


class ClientError(Exception):
    """Base of every error the client library raises on purpose."""


class ConnectionRefused(ClientError):
    """The broker answered CONNECT with a non-zero CONNACK return code."""

    def __init__(self, return_code: int) -> None:
        self.return_code = return_code
        super().__init__(
            f"connection refused by the broker: CONNACK {return_code} "
            f"({connack_meaning(return_code)})"
        )

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (only 'server unavailable')."""
        return self.return_code == ConnectReturnCode.SERVER_UNAVAILABLE


class ConnectionLost(ClientError):
    """The connection ended while a call was waiting on it, or was never made.

    Raised by every waiting call (publish, subscribe, the message iterators)
    when the connection drops and automatic reconnect is off, so nothing
    hangs. `__cause__` holds the underlying error (an OSError, the broker's
    protocol violation, a keep-alive timeout).
    """


class ConnectTimeout(ClientError, TimeoutError):
    """No CONNACK (or no TCP/TLS connection) within `connect_timeout` seconds."""


class KeepAliveTimeout(ClientError, TimeoutError):
    """The broker stayed silent past the keep-alive deadline: the link is dead."""


class SubscribeError(ClientError):
    """The broker refused at least one topic filter of a SUBSCRIBE (return code 0x80).

    `granted` holds one code per requested filter, in order (0, 1, 2 or 0x80),
    so a caller that subscribed to several filters learns which ones work.
    """

    def __init__(self, filters: tuple[str, ...], granted: tuple[int, ...]) -> None:
        self.filters = filters
        self.granted = granted
        refused = [f for f, code in zip(filters, granted, strict=True) if code == 0x80]
        super().__init__(f"subscription refused by the broker for {', '.join(refused)}")


class PacketIdsExhausted(ClientError):
    """All 65535 packet ids are in flight; wait for some to complete first."""


class NotConnected(ClientError):
    """A call that needs a live connection was made without one."""


class CannotConnect(ClientError):
    """The TCP (or TLS, or WebSocket) connection could not be made: no broker
    listening, no route, DNS failure, certificate rejected, WebSocket upgrade
    refused (`midge.client.websocket.WebSocketError`). `__cause__` is the OSError."""
