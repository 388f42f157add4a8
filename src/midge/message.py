"""The application message as the broker routes and stores it."""

from __future__ import annotations

from dataclasses import dataclass, field

from midge.protocol.codec import encode_publish_head


@dataclass(slots=True, unsafe_hash=True, init=False)  # hashable, as immutable by convention
class Message:
    """A message on its way to one receiver: `qos` and `retain` are as delivered.

    Plain data (no connection, no future), so sessions holding it can be
    written to a store as they are. Immutable by convention: one object is
    shared by every receiver and store row, so nothing may change it (not
    frozen only because a frozen dataclass costs four times as much to create,
    and one is created per routed message). For the same reason it writes its
    own `__init__`: mypyc compiles that one, while the one `dataclass` would
    generate runs as interpreted Python.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    # The encoded PUBLISH up to the packet id, built on first use and shared by
    # every receiver of this delivery variant: encode once, write many.
    _head: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self._head = None

    def with_delivery(self, qos: int, retain: bool) -> Message:
        """The same message at another QoS / retain flag (reused when nothing changes)."""
        if qos == self.qos and retain == self.retain:
            return self
        return Message(self.topic, self.payload, qos, retain)

    def reuse_head(self, head: bytes | None) -> None:
        """Adopt the header bytes of the PUBLISH this message arrived in (same QoS,
        retain and DUP clear), so forwarding it encodes nothing."""
        self._head = head

    def wire(self, packet_id: int | None) -> bytes:
        """The PUBLISH bytes for one receiver (DUP clear)."""
        head = self._head
        if head is None:
            head = self._head = encode_publish_head(
                self.topic, len(self.payload), self.qos, self.retain
            )
        if packet_id is None:
            return head + self.payload
        return head + packet_id.to_bytes(2, "big") + self.payload

    @property
    def size(self) -> int:
        """Bytes it costs in a queue: what bounds a slow consumer's memory."""
        return len(self.payload) + len(self.topic)
