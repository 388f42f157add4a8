"""The application message as the broker routes and stores it."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Message:
    """A message on its way to one receiver: `qos` and `retain` are as delivered.

    Plain data (no connection, no future), so sessions holding it can be
    written to a store as they are.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False

    def with_delivery(self, qos: int, retain: bool) -> Message:
        """The same message at another QoS / retain flag (reused when nothing changes)."""
        if qos == self.qos and retain == self.retain:
            return self
        return replace(self, qos=qos, retain=retain)

    @property
    def size(self) -> int:
        """Bytes it costs in a queue: what bounds a slow consumer's memory."""
        return len(self.payload) + len(self.topic)
