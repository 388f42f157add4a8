"""A batch of operations folded into its net change, row by row.

SQLite pays per statement it steps, and the writer thread releases and
retakes the GIL for each one, while the event loop competes for it. Applied
one by one, a busy broker's batch is a long alternation (PUBACK in:
OutboundDeleted; next message out: OutboundSent; ...) of one-row statements.
Folded, it is a handful of multi-row statements per table.

The fold is exact for any sequence, not just the broker's: every operation
but one sets or removes one row by its key, so the last operation on a key
decides (an OutboundSent after an OutboundAdded of the same key becomes part
of the row to insert, one after an OutboundDeleted changes nothing). The
exception, SessionDeleted, removes rows of several tables at once: the
caller folds the operations between two SessionDeleted separately, in order
(`segments`).

One shortcut needs knowledge of the store: a message added and acknowledged
within one batch (a QoS 1 message delivered and PUBACKed before its commit
began, the common case under load) needs no write at all, not an INSERT
and a DELETE, nor a DELETE alone. That is exact only for a row that was
never written before, so the store passes `written`, the highest seq it
has ever written per client: the broker numbers a session's messages
upwards, and a seq above that has no row to delete.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from midge.message import Message
from midge.store.base import (
    Operation,
    OutboundAdded,
    OutboundDeleted,
    OutboundSent,
    ReleaseDone,
    ReleasePending,
    RetainedDeleted,
    RetainedSet,
    SessionDeleted,
    SessionSaved,
    SubscriptionDeleted,
    SubscriptionSet,
)

# An outbound key's net change: DELETE, or (message, packet_id, awaiting) where
# a message means "insert (or replace) this row" and None "update the existing
# row's packet_id and awaiting, if there is one".
DELETE = None
OutboundChange = tuple[Message | None, int | None, int | None] | None


class Changes:
    """The net effect of operations that contain no SessionDeleted."""

    __slots__ = ("outbound", "releases", "retained", "sessions", "subscriptions", "written")

    def __init__(self, written: dict[str, int]) -> None:
        """`written`: client id -> the highest seq ever written for it (see above)."""
        self.written = written
        self.sessions: dict[str, SessionSaved] = {}  # upserts only
        self.subscriptions: dict[tuple[str, str], SubscriptionSet | None] = {}  # or DELETE
        self.outbound: dict[tuple[str, int], OutboundChange] = {}
        # (client id, packet id) -> ReleasePending to write, or DELETE
        self.releases: dict[tuple[str, int], ReleasePending | None] = {}
        self.retained: dict[str, Message | None] = {}  # message, or DELETE

    def add(self, op: Operation) -> None:
        kind = type(op)
        # The broker's hot three first, by exact type: the common case costs least.
        if kind is OutboundDeleted:
            assert isinstance(op, OutboundDeleted)
            key = (op.client_id, op.seq)
            if op.seq > self.written.get(op.client_id, 0):
                self.outbound.pop(key, None)  # never written: nothing to write at all
            else:
                self.outbound[key] = DELETE
        elif kind is OutboundSent:
            assert isinstance(op, OutboundSent)
            key = (op.client_id, op.seq)
            outbound = self.outbound
            if key not in outbound:
                outbound[key] = (None, op.packet_id, op.awaiting)
            else:
                current = outbound[key]
                if current is not DELETE:  # a deleted row stays deleted
                    outbound[key] = (current[0], op.packet_id, op.awaiting)
        elif kind is OutboundAdded:
            assert isinstance(op, OutboundAdded)
            self.outbound[(op.client_id, op.seq)] = (op.message, op.packet_id, op.awaiting)
        else:
            self._add_other(op)

    def _add_other(self, op: Operation) -> None:
        match op:
            case SessionSaved():
                self.sessions[op.client_id] = op
            case SubscriptionSet():
                self.subscriptions[(op.client_id, op.topic_filter)] = op
            case SubscriptionDeleted():
                self.subscriptions[(op.client_id, op.topic_filter)] = DELETE
            case ReleasePending():
                self.releases[(op.client_id, op.packet_id)] = op
            case ReleaseDone():
                self.releases[(op.client_id, op.packet_id)] = DELETE
            case RetainedSet():
                self.retained[op.message.topic] = op.message
            case RetainedDeleted():
                self.retained[op.topic] = DELETE
            case _:  # pragma: no cover - SessionDeleted is split off by `segments`
                raise TypeError(f"cannot fold {op!r}")


def segments(
    operations: Sequence[Operation], written: dict[str, int]
) -> Iterator[Changes | list[str]]:
    """The batch in order as folded Changes and, between them, the client ids of
    consecutive SessionDeleted operations. Each is folded only once the caller
    has written the one before, so `written` is up to date for it."""
    changes: Changes | None = None
    deleted: list[str] = []
    for op in operations:
        if type(op) is SessionDeleted:
            if changes is not None:
                yield changes
                changes = None
            deleted.append(op.client_id)
            continue
        if deleted:
            yield deleted
            deleted = []
        if changes is None:
            changes = Changes(written)
        changes.add(op)
    if changes is not None:
        yield changes
    if deleted:
        yield deleted
