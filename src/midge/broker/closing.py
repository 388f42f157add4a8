"""Why a connection ends: one typed reason per way out, never a string compared in code.

Each reason carries the text the log line starts with and the MQTT 5.0
reason code a server DISCONNECT would name (section 3.14.2.1), so the 5.0
broker can tell a client why it is being closed from the same value.
"""

from __future__ import annotations

from enum import Enum


class CloseReason(Enum):
    # (log text, MQTT 5 DISCONNECT reason code; None where nothing may be sent)
    CLIENT_DISCONNECT = ("client sent DISCONNECT", None)
    NETWORK = ("connection closed by the network", None)
    PROTOCOL_VIOLATION = ("protocol violation", 0x82)
    INTERNAL_ERROR = ("internal error", 0x80)
    CONNECT_TIMEOUT = ("no CONNECT within connect_timeout", None)
    KEEP_ALIVE_TIMEOUT = ("keep-alive timeout", 0x8D)
    TAKEN_OVER = ("session taken over by a new connection", 0x8E)
    SLOW_CONSUMER = ("slow consumer: message queue full", 0x97)
    CONNECT_REFUSED = ("CONNECT refused", None)
    THROTTLED_INPUT = ("sent too much while its CONNECT waited", None)
    SHUTDOWN = ("broker shutting down", 0x8B)
    WEBSOCKET_ERROR = ("WebSocket protocol error", None)
    AUTHENTICATION_FAILED = ("re-authentication failed", 0x87)
    ADMINISTRATIVE = ("disconnected by the embedding program", 0x98)

    def __init__(self, text: str, reason_code: int | None) -> None:
        self.text = text
        self.reason_code = reason_code

    def describe(self, detail: str = "") -> str:
        """The log line's reason: the fixed text, then what this case adds."""
        return f"{self.text}: {detail}" if detail else self.text
