"""The broker's side of durability: batches of store operations, commits, held output.

While the broker handles one batch of input it records what changes durable
state (`record`). At the end of the batch (`end_batch`) the operations get a
batch number, an *epoch*, and go to the committer: a group-commit thread for
SQLite, or straight into the store when there is none. Any packet a
connection sends after that batch recorded something is *held* here until
its epoch is committed (`Connection.send` asks `must_hold`), so a PUBACK,
PUBREC, PUBCOMP, SUBACK or stored delivery never leaves before what it
vouches for is on disk. Packets of one connection keep their order.

Everything about holding output lives in this one object; the broker gives
it, at construction, the committer and the callback that writes released
bytes out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from midge.broker.session import Awaiting, InflightMessage, Session
from midge.store.base import Operation, Store, StoredSession

if TYPE_CHECKING:
    from midge.broker.connection import Connection


class Committer(Protocol):
    """Commits batches away from the event loop (`store.writer.GroupCommitWriter`)."""

    def start(self, on_commit: Callable[[int], None]) -> None:
        """Begin; `on_commit(epoch)` is called (on the loop) once a batch is durable."""

    def submit(self, epoch: int, operations: list[Operation]) -> None: ...


class Persistence:
    __slots__ = (
        "_after_release",
        "barrier",
        "committed",
        "committer",
        "epoch",
        "hold_output",
        "holding",
        "operations",
        "store",
        "waiters",
    )

    def __init__(
        self,
        store: Store | None,
        hold: bool,
        after_release: Callable[[], None],
        committer: Committer | None = None,
    ) -> None:
        """`after_release()` writes what a commit released; without a `committer`
        each batch is applied to `store` before `end_batch` returns."""
        self.store = store
        self.hold_output = hold and store is not None  # durability "memory" acknowledges at once
        self.operations: list[Operation] = []
        self.barrier = False  # the current batch recorded something a reply vouches for
        self.epoch = 0  # the last batch submitted
        self.committed = 0  # the last batch known to be durable
        self.holding: set[Connection] = set()  # connections with output awaiting a commit
        self._after_release = after_release
        # (epoch, callback) to call once it is committed: the cluster's inbound
        # stream acknowledges what it delivered only then. Empty but there.
        self.waiters: list[tuple[int, Callable[[], None]]] = []
        self.committer = committer if store is not None else None
        if self.committer is not None:
            self.committer.start(self.on_commit)

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
        return self.hold_output and self.barrier

    def hold(self, connection: Connection, data: bytes, durable: bool) -> None:
        """Keep `data` until its batch commits: this batch if `durable`, else
        whatever the connection's last held bytes wait for (order is kept)."""
        held = connection.held
        epoch = self.epoch + 1 if durable and self.barrier else held[-1][0]
        if not held:
            self.holding.add(connection)
        held.append((epoch, data))

    def forget(self, connection: Connection) -> None:
        """A closed connection's held output is never sent."""
        connection.held.clear()
        self.holding.discard(connection)

    def end_batch(self) -> None:
        if self.operations:
            self.epoch += 1
            operations, self.operations = self.operations, []
            self.barrier = False
            if self.committer is not None:
                self.committer.submit(self.epoch, operations)
            else:
                assert self.store is not None
                self.store.apply(operations)
                self.on_commit(self.epoch)

    def on_commit(self, epoch: int) -> None:
        """Batches up to `epoch` are durable: release what waited for them."""
        self.committed = max(self.committed, epoch)
        for connection in list(self.holding):
            held = connection.held
            index = 0
            while index < len(held) and held[index][0] <= epoch:
                index += 1
            if index:
                connection.take_released([data for _, data in held[:index]])
                del held[:index]
            if not held:
                self.holding.discard(connection)
        if self.waiters:  # first: what they wake is written by the flush below
            self._call_waiters()
        self._after_release()

    def when_committed(self, epoch: int, callback: Callable[[], None]) -> None:
        """Call `callback()` once batch `epoch` is durable (at once if it is)."""
        if epoch <= self.committed:
            callback()
        else:
            self.waiters.append((epoch, callback))

    def _call_waiters(self) -> None:
        committed = self.committed
        due = [callback for epoch, callback in self.waiters if epoch <= committed]
        if due:
            self.waiters = [item for item in self.waiters if item[0] > committed]
            for callback in due:
                callback()


def restore_session(stored: StoredSession, now_wall: float) -> Session:
    """A persistent session as the store kept it: offline, with its messages in order."""
    session = Session(stored.client_id, persistent=True, expiry_interval=stored.expiry_interval)
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
