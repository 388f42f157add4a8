"""Wills that wait for their Will Delay Interval (MQTT 5.0, section 3.1.3.2.2).

A 5.0 client may ask that its will be published only if it stays away for a
while: a reconnect that resumes the session within the delay cancels the
will [MQTT-3.1.3-9]; the end of the session publishes it at once, whichever
comes first [MQTT-3.1.3-9]. Waiting wills live in memory only: a restart
forgets them, as Mosquitto does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from midge.message import Message

if TYPE_CHECKING:
    from midge.broker.connection import Connection

Publish = Callable[[Message, "Connection"], None]


class DelayedWills:
    __slots__ = ("_pending", "_publish")

    def __init__(self, publish: Publish) -> None:
        """`publish(message, origin)` routes a will as its client's own message."""
        self._publish = publish
        # client id -> (when it is due, loop time; the will; the connection it came from)
        self._pending: dict[str, tuple[float, Message, Connection]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def hold(self, client_id: str, due: float, will: Message, origin: Connection) -> None:
        self._pending[client_id] = (due, will, origin)

    def cancel(self, client_id: str) -> None:
        """The client came back to its session in time: no will."""
        self._pending.pop(client_id, None)

    def release(self, client_id: str) -> None:
        """The session ended: its waiting will goes out now."""
        entry = self._pending.pop(client_id, None)
        if entry is not None:
            self._publish(entry[1], entry[2])

    def publish_due(self, now: float) -> None:
        due = [client_id for client_id, entry in self._pending.items() if entry[0] <= now]
        for client_id in due:
            self.release(client_id)

    def next_due(self) -> float | None:
        if not self._pending:
            return None
        return min(entry[0] for entry in self._pending.values())
