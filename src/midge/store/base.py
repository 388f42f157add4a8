"""The Store interface: what the broker persists, as a stream of operations.

The broker never reads the store while it runs: it keeps its state in
memory and describes every change to durable state as an operation
(`SessionSaved`, `OutboundAdded`, ...). A batch of operations is applied in
one transaction (`Store.apply`) and the acknowledgements that depend on it
are released when that returns. At start the broker reads everything back
once (`Store.load`). Three methods, so a Redis store can implement it too.

Only persistent sessions (clean session 0) and retained messages are
stored; a clean session ends with its connection anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from midge.message import Message


class StoreError(Exception):
    """The store cannot be used; the message names the file and what to do."""


# ---------------------------------------------------------------- operations
# Immutable by convention, not frozen: the broker creates one or more per
# message it routes, and a frozen dataclass costs almost four times as much to
# create (577 ns against 158 ns, measured). The three made per message write
# their own `__init__`, as Message does: mypyc compiles that one, while the one
# `dataclass` would generate runs as interpreted Python.


@dataclass(slots=True)
class SessionSaved:
    """A persistent session exists; `disconnected_at` (wall clock) when offline;
    `expiry_interval` a 5.0 session's Session Expiry Interval (None: 3.1.1).
    Each one sets both: the store keeps what the last one said."""

    client_id: str
    disconnected_at: float | None = None
    expiry_interval: int | None = None


@dataclass(slots=True)
class SessionDeleted:
    """The session and everything it holds are gone."""

    client_id: str


@dataclass(slots=True)
class SubscriptionSet:
    """`qos`: the subscription's QoS for a 3.1.1 client, its subscription options
    packed in one int for a 5.0 one; the store keeps any non-negative int."""

    client_id: str
    topic_filter: str
    qos: int


@dataclass(slots=True)
class SubscriptionDeleted:
    client_id: str
    topic_filter: str


@dataclass(slots=True, init=False)
class OutboundAdded:
    """A message for the session, queued (packet_id None) or already in flight."""

    client_id: str
    seq: int
    message: Message
    packet_id: int | None = None
    awaiting: int | None = None

    def __init__(
        self,
        client_id: str,
        seq: int,
        message: Message,
        packet_id: int | None = None,
        awaiting: int | None = None,
    ) -> None:
        self.client_id = client_id
        self.seq = seq
        self.message = message
        self.packet_id = packet_id
        self.awaiting = awaiting


@dataclass(slots=True, init=False)
class OutboundSent:
    """An outbound message went out, or moved on (PUBREC received: awaits PUBCOMP)."""

    client_id: str
    seq: int
    packet_id: int
    awaiting: int

    def __init__(self, client_id: str, seq: int, packet_id: int, awaiting: int) -> None:
        self.client_id = client_id
        self.seq = seq
        self.packet_id = packet_id
        self.awaiting = awaiting


@dataclass(slots=True, init=False)
class OutboundDeleted:
    """Acknowledged (or, for QoS 0, sent): no longer the broker's to deliver."""

    client_id: str
    seq: int

    def __init__(self, client_id: str, seq: int) -> None:
        self.client_id = client_id
        self.seq = seq


@dataclass(slots=True)
class ReleasePending:
    """An inbound QoS 2 packet id received and not yet released by PUBREL;
    `message` is kept only when delivery waits for the PUBREL (method A)."""

    client_id: str
    packet_id: int
    message: Message | None


@dataclass(slots=True)
class ReleaseDone:
    client_id: str
    packet_id: int


@dataclass(slots=True)
class RetainedSet:
    message: Message


@dataclass(slots=True)
class RetainedDeleted:
    topic: str


# ------------------------------------------------- cluster operations
# Only a cluster's store (cluster/store.py) is given these: they ride in the
# same batches, so a PUBACK or SUBACK waits for them as for a stored row.


@dataclass(slots=True, init=False)
class Forwarded:
    """`message` goes to cluster node `node`: to its plain subscribers when
    `plain`, and to one member of each shared subscription in `shares`; or,
    with a `target`, to that one session only (a relay, cluster/claims.py).
    `position` is the sender's place in the change log when it routed it."""

    node: str
    message: Message
    plain: bool
    shares: tuple[str, ...]
    position: bytes
    target: str
    # A number the sender's run increases per forward: a batch written again
    # after a failed write adds records the receiver has seen (dropped).
    sequence: int

    def __init__(
        self,
        node: str,
        message: Message,
        plain: bool,
        shares: tuple[str, ...],
        position: bytes = b"",
        target: str = "",
        sequence: int = 0,
    ) -> None:
        self.node = node
        self.message = message
        self.plain = plain
        self.shares = shares
        self.position = position
        self.target = target
        self.sequence = sequence


@dataclass(slots=True)
class SessionReleased:
    """Another node owns the session now: this one keeps no claim on it
    (the session's data stays, for the new owner)."""

    client_id: str


@dataclass(slots=True)
class OwnerReleased:
    """This node's session of the client ended: it no longer owns the client id
    (unless another node does by now)."""

    client_id: str


@dataclass(slots=True)
class WillStored:
    """A connected client's will, kept so that another node can publish it
    if this one dies; `expiry_interval` its Message Expiry Interval."""

    client_id: str
    message: Message
    expiry_interval: int | None


@dataclass(slots=True)
class WillDeleted:
    """The connection ended: its will was published or discarded."""

    client_id: str


@dataclass(slots=True)
class InboundCursor:
    """This node's inbound stream was delivered up to entry `entry_id`
    (stored with what the delivery stored: a restart skips what it had)."""

    node: str
    entry_id: bytes


@dataclass(slots=True)
class RouteSet:
    """This node has a subscriber for `topic_filter` (a `$share/...` one too)."""

    node: str
    topic_filter: str


@dataclass(slots=True)
class RouteDeleted:
    """This node has no subscriber for `topic_filter` any more."""

    node: str
    topic_filter: str


Operation = (
    SessionSaved
    | SessionDeleted
    | SubscriptionSet
    | SubscriptionDeleted
    | OutboundAdded
    | OutboundSent
    | OutboundDeleted
    | ReleasePending
    | ReleaseDone
    | RetainedSet
    | RetainedDeleted
    | Forwarded
    | SessionReleased
    | OwnerReleased
    | WillStored
    | WillDeleted
    | InboundCursor
    | RouteSet
    | RouteDeleted
)


# ------------------------------------------------------------ loaded state


@dataclass(frozen=True, slots=True)
class OutboundRow:
    seq: int
    message: Message
    packet_id: int | None = None
    awaiting: int | None = None


@dataclass(slots=True)
class StoredSession:
    client_id: str
    disconnected_at: float | None = None
    # filter -> the int SubscriptionSet gave (QoS, or 5.0's packed subscription options)
    subscriptions: dict[str, int] = field(default_factory=dict)
    outbound: list[OutboundRow] = field(default_factory=list)  # in seq order
    pending_releases: dict[int, Message | None] = field(default_factory=dict)
    expiry_interval: int | None = None  # as the last SessionSaved gave it


@dataclass(slots=True)
class StoredState:
    sessions: list[StoredSession] = field(default_factory=list)
    retained: list[Message] = field(default_factory=list)


class Store(Protocol):
    """Durable broker state. `apply` is durable when it returns."""

    description: str  # for logs: "sqlite data/midge.db", "memory"

    def load(self) -> StoredState: ...

    def apply(self, operations: Sequence[Operation]) -> None: ...

    def close(self) -> None: ...
