"""The application message as the broker routes and stores it.

A message from a 5.0 client may carry properties (user properties, response
topic, correlation data, content type, payload format) that travel with it
unchanged, and an expiry. Per-hop properties (topic alias, subscription
identifiers) never live here: each receiver's are added when its PUBLISH is
encoded (broker/outbound.py). A 3.1.1 message has neither: no cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from midge.protocol.codec import encode_publish_head
from midge.protocol.properties import Properties

EMPTY_PROPERTIES = b"\x00"  # a 5.0 property block with nothing in it


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
    # What a 5.0 publisher attached that receivers get unchanged (None: nothing).
    properties: Properties | None = None
    # Wall-clock time (time.time()) after which it is never delivered, from a
    # Message Expiry Interval; None: it never expires.
    expires_at: float | None = None
    # The shared subscription ("$share/g/f") this copy was sent through, so that
    # another member gets it if its receiver goes away unacknowledged. Not stored.
    share: str | None = field(default=None, compare=False)
    # The encoded PUBLISH up to the packet id, built on first use and shared by
    # every receiver of this delivery variant: encode once, write many.
    _head: bytes | None = field(default=None, init=False, repr=False, compare=False)
    # The same for 5.0 receivers of a message without properties (whose
    # PUBLISH differs only by its empty property block); at QoS 0, where no
    # packet id comes between, it ends with that block (one byte, 0).
    _head5: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        expires_at: float | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.expires_at = expires_at
        self.share = None
        self._head = None
        self._head5 = None

    def with_delivery(self, qos: int, retain: bool) -> Message:
        """The same message at another QoS / retain flag (reused when nothing changes)."""
        if qos == self.qos and retain == self.retain:
            return self
        return Message(self.topic, self.payload, qos, retain, self.properties, self.expires_at)

    def with_expiry(self, interval: int | None, wall_now: float) -> Message:
        """The same message expiring `interval` seconds (a Message Expiry
        Interval) after `wall_now`; unchanged when `interval` is None."""
        if interval is None:
            return self
        expires_at = wall_now + interval
        return Message(self.topic, self.payload, self.qos, self.retain, self.properties, expires_at)

    def expired(self, wall_now: float) -> bool:
        expires_at = self.expires_at
        return expires_at is not None and wall_now >= expires_at

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

    def reuse_head5(self, head: bytes | None) -> None:
        """`reuse_head` for 5.0 receivers: the head of the 5.0 PUBLISH this message
        arrived in, with an empty property block (same QoS, retain and DUP clear),
        as `_head5` keeps it."""
        self._head5 = head

    def wire5(self, packet_id: int | None) -> bytes:
        """The 5.0 PUBLISH bytes of a message without properties (DUP clear, no
        topic alias), encoded once for all 5.0 receivers."""
        head = self._head5
        if head is None:
            # The property block (one byte, length 0) counts like payload here.
            head = encode_publish_head(self.topic, len(self.payload) + 1, self.qos, self.retain)
            if not self.qos:
                head += EMPTY_PROPERTIES
            self._head5 = head
        if packet_id is None:
            return head + self.payload  # QoS 0: the head ends with the property block
        # The packet id, then the empty property block: 3 bytes from one int.
        return head + (packet_id << 8).to_bytes(3, "big") + self.payload

    @property
    def size(self) -> int:
        """Bytes it costs in a queue: what bounds a slow consumer's memory."""
        return len(self.payload) + len(self.topic)
