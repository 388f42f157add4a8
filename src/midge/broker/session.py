"""Session state: what MQTT says the server keeps for a client id (section 4.1).

A session is plain data — subscriptions, QoS 1/2 messages in flight to the
client, messages queued for it, QoS 2 packet ids received from it and not yet
released — so it can outlive a connection, and a store can persist it. It
never touches the network: the broker decides when a queued message is sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from midge.message import Message

MAX_PACKET_ID = 0xFFFF


class Awaiting(IntEnum):
    """What the broker waits for from the client for an outbound message."""

    PUBACK = 1  # QoS 1 PUBLISH sent
    PUBREC = 2  # QoS 2 PUBLISH sent
    PUBCOMP = 3  # QoS 2 PUBREC received, PUBREL sent


@dataclass(slots=True)
class InflightMessage:
    packet_id: int
    message: Message
    awaiting: Awaiting
    seq: int  # its place in the session's outbound order; the store's key


class Session:
    """The server side of one client id's session."""

    __slots__ = (
        "_inflight",
        "_next_packet_id",
        "_next_seq",
        "_pending_releases",
        "_queue",
        "_subscriptions",
        "client_id",
        "connected",
        "disconnected_at",
        "dropped_messages",
        "dropping",
        "expiry_interval",
        "persistent",
        "queue_limits",
        "queued_bytes",
    )

    def __init__(
        self, client_id: str, persistent: bool, expiry_interval: int | None = None
    ) -> None:
        self.client_id = client_id
        # Whether it outlives its connection: clean session 0 (3.1.1), or a
        # Session Expiry Interval above 0 (5.0).
        self.persistent = persistent
        # A 5.0 session's Session Expiry Interval in seconds (0xFFFFFFFF: never);
        # None for 3.1.1 sessions, which expire after persistent_session_expiry.
        self.expiry_interval = expiry_interval
        self.connected = False
        # The containers below are made on first use (None until then): most
        # sessions of idle clients never need them, and an empty deque alone
        # costs 760 bytes. Their properties always return the real container.
        self._subscriptions: dict[str, int] | None = None
        self._inflight: dict[int, InflightMessage] | None = None
        self._queue: deque[tuple[int, Message]] | None = None
        self._pending_releases: dict[int, Message | None] | None = None
        self.queued_bytes = 0
        self.dropped_messages = 0
        # A bound of its own while offline or stalled (a bridge's session:
        # bridge/link.py): (messages, 0: none; drop the oldest rather than the
        # newest). None: the broker's max_queued_messages / max_queued_bytes.
        self.queue_limits: tuple[int, bool] | None = None
        self.dropping = False  # within an episode of drops (logged once per episode)
        self.disconnected_at: float | None = None  # wall clock, for session expiry
        self._next_packet_id = 1
        self._next_seq = 1

    @property
    def subscriptions(self) -> dict[str, int]:
        """Filter -> granted QoS; the router's trie holds the same facts, indexed."""
        subscriptions = self._subscriptions
        if subscriptions is None:
            subscriptions = self._subscriptions = {}
        return subscriptions

    @subscriptions.setter
    def subscriptions(self, value: dict[str, int]) -> None:
        self._subscriptions = value

    @property
    def inflight(self) -> dict[int, InflightMessage]:
        """Packet id -> message, in the order sent (dicts keep insertion order)."""
        inflight = self._inflight
        if inflight is None:
            inflight = self._inflight = {}
        return inflight

    @property
    def queue(self) -> deque[tuple[int, Message]]:
        """(seq, message) waiting for a free in-flight slot or for the client."""
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        return queue

    @property
    def pending_releases(self) -> dict[int, Message | None]:
        """Inbound QoS 2 ids not yet released; the value is the message itself when
        delivery waits for PUBREL (method A), None when it already went out (B)."""
        pending = self._pending_releases
        if pending is None:
            pending = self._pending_releases = {}
        return pending

    @pending_releases.setter
    def pending_releases(self, value: dict[int, Message | None]) -> None:
        self._pending_releases = value

    def has_subscriptions(self) -> bool:
        """Whether any filter is subscribed (without making the dict)."""
        return bool(self._subscriptions)

    def allocate_packet_id(self) -> int:
        """A non-zero id not used by any message in flight [MQTT-2.3.1-2]."""
        if len(self.inflight) >= MAX_PACKET_ID:
            raise RuntimeError("every packet id is in flight")
        packet_id = self._next_packet_id
        while packet_id in self.inflight:
            packet_id = packet_id % MAX_PACKET_ID + 1
        self._next_packet_id = packet_id % MAX_PACKET_ID + 1
        return packet_id

    def can_queue(self, message: Message, max_messages: int, max_bytes: int) -> bool:
        """Whether the queue has room; a limit of 0 means no limit."""
        queue = self._queue
        if max_messages and queue is not None and len(queue) >= max_messages:
            return False
        return not (max_bytes and self.queued_bytes + message.size > max_bytes)

    def next_seq(self) -> int:
        """Numbers outbound messages in the order the session got them."""
        seq = self._next_seq
        self._next_seq = seq + 1
        return seq

    def enqueue(self, seq: int, message: Message) -> None:
        self.queue.append((seq, message))
        self.queued_bytes += message.size
        self._next_seq = max(self._next_seq, seq + 1)

    def dequeue(self) -> tuple[int, Message]:
        seq, message = self.queue.popleft()
        self.queued_bytes -= message.size
        return seq, message

    def take_shared(self) -> list[tuple[int, Message]]:
        """Remove and return the queued messages sent through a shared subscription."""
        queue = self._queue
        if not queue or all(message.share is None for _, message in queue):
            return []
        taken = [item for item in queue if item[1].share is not None]
        kept = [item for item in queue if item[1].share is None]
        queue.clear()
        queue.extend(kept)
        self.queued_bytes -= sum(message.size for _, message in taken)
        return taken

    def restore_inflight(self, entry: InflightMessage) -> None:
        self.inflight[entry.packet_id] = entry
        self._next_seq = max(self._next_seq, entry.seq + 1)

    def clear_queue(self) -> None:
        if self._queue is not None:
            self._queue.clear()
        self.queued_bytes = 0
