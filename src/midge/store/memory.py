"""A Store in process memory: for tests, and for users who want no disk.

It applies every operation to plain dicts, so `load` after `apply` returns
exactly what a disk store would: the shared store test suite runs against it.
Nothing survives the process.
"""

from __future__ import annotations

from collections.abc import Sequence

from midge.message import Message
from midge.store.base import (
    Operation,
    OutboundAdded,
    OutboundDeleted,
    OutboundRow,
    OutboundSent,
    ReleaseDone,
    ReleasePending,
    RetainedDeleted,
    RetainedSet,
    SessionDeleted,
    SessionSaved,
    StoredSession,
    StoredState,
    SubscriptionDeleted,
    SubscriptionSet,
)


class MemoryStore:
    description = "memory (nothing survives a restart)"

    def __init__(self) -> None:
        self._sessions: dict[str, StoredSession] = {}
        self._outbound: dict[str, dict[int, OutboundRow]] = {}
        self._retained: dict[str, Message] = {}

    def load(self) -> StoredState:
        sessions = []
        # A client with outbound rows is a session, saved or not (as in SQLite).
        for client_id in self._sessions | dict.fromkeys(self._outbound):
            # Read-only: loading must not create the session rows it reports.
            stored = self._sessions.get(client_id) or StoredSession(client_id)
            rows = self._outbound.get(client_id, {})
            sessions.append(
                StoredSession(
                    client_id,
                    stored.disconnected_at,
                    dict(stored.subscriptions),
                    [rows[seq] for seq in sorted(rows)],
                    dict(stored.pending_releases),
                    stored.expiry_interval,
                )
            )
        return StoredState(sessions, list(self._retained.values()))

    def apply(self, operations: Sequence[Operation]) -> None:
        for operation in operations:
            self._apply(operation)

    def _apply(self, op: Operation) -> None:
        match op:
            case SessionSaved():
                session = self._sessions.setdefault(op.client_id, StoredSession(op.client_id))
                session.disconnected_at = op.disconnected_at
                session.expiry_interval = op.expiry_interval
            case SessionDeleted():
                self._sessions.pop(op.client_id, None)
                self._outbound.pop(op.client_id, None)
            case SubscriptionSet():
                self._session(op.client_id).subscriptions[op.topic_filter] = op.qos
            case SubscriptionDeleted():
                self._session(op.client_id).subscriptions.pop(op.topic_filter, None)
            case OutboundAdded():
                rows = self._outbound.setdefault(op.client_id, {})
                rows[op.seq] = OutboundRow(op.seq, op.message, op.packet_id, op.awaiting)
            case OutboundSent():
                rows = self._outbound.get(op.client_id, {})
                row = rows.get(op.seq)
                if row is not None:
                    rows[op.seq] = OutboundRow(op.seq, row.message, op.packet_id, op.awaiting)
            case OutboundDeleted():
                self._outbound.get(op.client_id, {}).pop(op.seq, None)
            case ReleasePending():
                self._session(op.client_id).pending_releases[op.packet_id] = op.message
            case ReleaseDone():
                self._session(op.client_id).pending_releases.pop(op.packet_id, None)
            case RetainedSet():
                self._retained[op.message.topic] = op.message
            case RetainedDeleted():
                self._retained.pop(op.topic, None)

    def _session(self, client_id: str) -> StoredSession:
        return self._sessions.setdefault(client_id, StoredSession(client_id))

    def close(self) -> None:
        pass
