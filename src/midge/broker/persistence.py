"""The broker's side of durability: batches of store operations and commits.

While the broker handles one batch of input it records what changes durable
state (`record`). At the end of the batch (`end_batch`) the operations get a
batch number, an *epoch*, and go to `submit`: straight into the store for
the memory store, to the group-commit thread for SQLite. Any packet a
connection sends after that batch recorded something waits until its epoch
is committed (`Connection.send` asks `must_hold`), so a PUBACK, PUBREC,
PUBCOMP, SUBACK or stored delivery never leaves before what it vouches for
is on disk. Packets of one connection keep their order.
"""

from __future__ import annotations

from collections.abc import Callable

from midge.broker.session import Awaiting, InflightMessage, Session
from midge.store.base import Operation, Store, StoredSession


class Persistence:
    __slots__ = (
        "barrier",
        "committed",
        "epoch",
        "hold",
        "on_commit",
        "operations",
        "store",
        "submit",
    )

    def __init__(self, store: Store | None, hold: bool) -> None:
        self.store = store
        self.hold = hold and store is not None  # durability "memory" acknowledges at once
        self.operations: list[Operation] = []
        self.barrier = False  # the current batch recorded something a reply vouches for
        self.epoch = 0  # the last batch submitted
        self.committed = 0  # the last batch known to be durable
        self.on_commit: Callable[[int], None] = lambda epoch: None
        # Where batches go: applied here at once, unless a writer thread takes over.
        self.submit: Callable[[int, list[Operation]], None] = self._apply_now

    def record(self, operation: Operation, barrier: bool = True) -> None:
        """Add to the current batch. A *barrier* operation holds every later send of
        the batch until it commits; pass False for one no reply depends on (an
        acknowledged message's deletion: if a crash loses it, the message is sent
        again, which QoS 1 and a PUBREL re-send allow)."""
        if self.store is not None:
            self.operations.append(operation)
            self.barrier = self.barrier or barrier

    def must_hold(self) -> bool:
        """Whether what is sent now has to wait for the current batch's commit."""
        return self.hold and self.barrier

    @property
    def next_epoch(self) -> int:
        return self.epoch + 1

    def end_batch(self) -> None:
        if self.operations:
            self.epoch += 1
            operations, self.operations = self.operations, []
            self.barrier = False
            self.submit(self.epoch, operations)

    def _apply_now(self, epoch: int, operations: list[Operation]) -> None:
        assert self.store is not None
        self.store.apply(operations)
        self.on_commit(epoch)


def restore_session(stored: StoredSession, now_wall: float) -> Session:
    """A persistent session as the store kept it: offline, with its messages in order."""
    session = Session(stored.client_id, persistent=True)
    # A session that was online when the broker stopped went offline then.
    offline_since = stored.disconnected_at
    session.disconnected_at = now_wall if offline_since is None else offline_since
    session.subscriptions = dict(stored.subscriptions)
    for row in stored.outbound:
        if row.packet_id is None or row.awaiting is None:
            session.enqueue(row.seq, row.message)
        else:
            entry = InflightMessage(row.packet_id, row.message, Awaiting(row.awaiting), row.seq)
            session.restore_inflight(entry)
    session.pending_releases = dict(stored.pending_releases)
    return session
