"""The default Store: one SQLite file in the data folder, WAL mode.

Each `apply` is one transaction; consecutive operations of one kind go to
SQLite in one `executemany`. Durability follows `synchronous`: FULL fsyncs
every commit (survives power loss), NORMAL (with WAL) survives the broker
being killed, OFF leaves flushing to the operating system.

The schema is versioned with SQLite's `user_version`; `_MIGRATIONS[n]`
takes a store from version n to n + 1. A store written by a newer Midge is
refused rather than misread, and a file that is not a Midge store (or is
corrupt) stops the start with a message naming it: the broker never starts
empty over data it could not read. While open, the store holds the lock of
store/lock.py, so a second broker on the same file refuses to start.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
    StoreError,
    SubscriptionDeleted,
    SubscriptionSet,
)
from midge.store.lock import StoreLock, lock_path

SCHEMA_VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"
SYNCHRONOUS_LEVELS = ("full", "normal", "off")

_MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE sessions (
        client_id TEXT PRIMARY KEY,
        disconnected_at REAL
    );
    CREATE TABLE subscriptions (
        client_id TEXT NOT NULL,
        topic_filter TEXT NOT NULL,
        qos INTEGER NOT NULL,
        PRIMARY KEY (client_id, topic_filter)
    ) WITHOUT ROWID;
    CREATE TABLE outbound (
        client_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        qos INTEGER NOT NULL,
        retain INTEGER NOT NULL,
        packet_id INTEGER,
        awaiting INTEGER,
        PRIMARY KEY (client_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE pending_releases (
        client_id TEXT NOT NULL,
        packet_id INTEGER NOT NULL,
        topic TEXT,
        payload BLOB,
        qos INTEGER,
        retain INTEGER,
        PRIMARY KEY (client_id, packet_id)
    ) WITHOUT ROWID;
    CREATE TABLE retained (
        topic TEXT PRIMARY KEY,
        payload BLOB NOT NULL,
        qos INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
]

# Operation type -> (SQL, row builder). Deleting a session deletes its rows too.
_Row = tuple[Any, ...]
_STATEMENTS: dict[type, tuple[str, Callable[[Any], _Row]]] = {
    SessionSaved: (
        "INSERT INTO sessions VALUES (?, ?) "
        "ON CONFLICT (client_id) DO UPDATE SET disconnected_at = excluded.disconnected_at",
        lambda op: (op.client_id, op.disconnected_at),
    ),
    SubscriptionSet: (
        "INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?)",
        lambda op: (op.client_id, op.topic_filter, op.qos),
    ),
    SubscriptionDeleted: (
        "DELETE FROM subscriptions WHERE client_id = ? AND topic_filter = ?",
        lambda op: (op.client_id, op.topic_filter),
    ),
    OutboundAdded: (
        "INSERT OR REPLACE INTO outbound VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        lambda op: (
            op.client_id,
            op.seq,
            op.message.topic,
            op.message.payload,
            op.message.qos,
            op.message.retain,
            op.packet_id,
            op.awaiting,
        ),
    ),
    OutboundSent: (
        "UPDATE outbound SET packet_id = ?, awaiting = ? WHERE client_id = ? AND seq = ?",
        lambda op: (op.packet_id, op.awaiting, op.client_id, op.seq),
    ),
    OutboundDeleted: (
        "DELETE FROM outbound WHERE client_id = ? AND seq = ?",
        lambda op: (op.client_id, op.seq),
    ),
    ReleasePending: (
        "INSERT OR REPLACE INTO pending_releases VALUES (?, ?, ?, ?, ?, ?)",
        lambda op: (op.client_id, op.packet_id, *_message_columns(op.message)),
    ),
    ReleaseDone: (
        "DELETE FROM pending_releases WHERE client_id = ? AND packet_id = ?",
        lambda op: (op.client_id, op.packet_id),
    ),
    RetainedSet: (
        "INSERT OR REPLACE INTO retained VALUES (?, ?, ?)",
        lambda op: (op.message.topic, op.message.payload, op.message.qos),
    ),
    RetainedDeleted: (
        "DELETE FROM retained WHERE topic = ?",
        lambda op: (op.topic,),
    ),
}

_SESSION_TABLES = ("subscriptions", "outbound", "pending_releases", "sessions")


def _message_columns(message: Message | None) -> _Row:
    if message is None:
        return (None, None, None, None)
    return (message.topic, message.payload, message.qos, message.retain)


class SQLiteStore:
    _db: sqlite3.Connection

    def __init__(self, path: str | Path, synchronous: str = "normal") -> None:
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}")
        self.path = Path(path)
        self.description = f"sqlite {self.path} (synchronous={synchronous})"
        # Before the file is read, let alone migrated: another broker may be using it.
        self._lock = self._take_lock()
        try:
            self._open(synchronous)
        except BaseException:
            self._lock.release()
            raise

    def _take_lock(self) -> StoreLock:
        path = lock_path(self.path)
        try:
            return StoreLock.acquire(path)
        except OSError as exc:
            raise StoreError(
                f"{self.path}: cannot use the store (lock file {path}: {exc.strerror})."
            ) from None

    def _open(self, synchronous: str) -> None:
        self._refuse_foreign_file()
        try:
            # The writer thread uses the connection after the loading thread did;
            # never two threads at once.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(self._explain(exc)) from None
        try:
            self._check_version()  # before anything writes to the file
            self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(self._explain(exc)) from None
        except StoreError:
            self._db.close()
            raise

    def _refuse_foreign_file(self) -> None:
        """SQLite would silently format a tiny non-empty file; refuse it instead."""
        try:
            with open(self.path, "rb") as file:
                head = file.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read the store ({exc.strerror}).") from None
        if head and head != SQLITE_HEADER:
            raise StoreError(
                f"{self.path} is not a Midge store or is corrupt (no SQLite header). The "
                "broker will not start over it: restore it from a backup, or move it away "
                "to start empty."
            )

    def _explain(self, exc: sqlite3.Error) -> str:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
            return (
                f"{self.path} is not a Midge store or is corrupt ({text}). The broker will "
                "not start over it: restore it from a backup, or move it away to start empty."
            )
        if "full" in text:
            return f"{self.path}: the disk is full ({text}); free some space and start again."
        return f"{self.path}: cannot use the store ({text})."

    def _check_version(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, written by a newer Midge; this "
                f"one knows up to version {SCHEMA_VERSION}. Run the newer Midge, or restore "
                "a backup made by this version."
            )

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for target in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _MIGRATIONS[target].split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={target + 1}")
            self._db.execute("COMMIT")

    def load(self) -> StoredState:
        try:
            return self._load()
        except sqlite3.Error as exc:
            raise StoreError(self._explain(exc)) from None

    def _load(self) -> StoredState:
        db = self._db
        sessions: dict[str, StoredSession] = {
            client_id: StoredSession(client_id, disconnected_at)
            for client_id, disconnected_at in db.execute("SELECT * FROM sessions")
        }

        def session(client_id: str) -> StoredSession:
            return sessions.setdefault(client_id, StoredSession(client_id))

        for client_id, topic_filter, qos in db.execute("SELECT * FROM subscriptions"):
            session(client_id).subscriptions[topic_filter] = qos
        for row in db.execute("SELECT * FROM outbound ORDER BY client_id, seq"):
            client_id, seq, topic, payload, qos, retain, packet_id, awaiting = row
            message = Message(topic, bytes(payload), qos, bool(retain))
            session(client_id).outbound.append(OutboundRow(seq, message, packet_id, awaiting))
        for client_id, packet_id, topic, payload, qos, retain in db.execute(
            "SELECT * FROM pending_releases"
        ):
            held = None if topic is None else Message(topic, bytes(payload), qos, bool(retain))
            session(client_id).pending_releases[packet_id] = held
        retained = [
            Message(topic, bytes(payload), qos, True)
            for topic, payload, qos in db.execute("SELECT * FROM retained")
        ]
        return StoredState(list(sessions.values()), retained)

    def apply(self, operations: Sequence[Operation]) -> None:
        db = self._db
        try:
            db.execute("BEGIN")
            for kind, group in itertools.groupby(operations, type):
                if kind is SessionDeleted:
                    rows = [(op.client_id,) for op in group if isinstance(op, SessionDeleted)]
                    for table in _SESSION_TABLES:
                        db.executemany(f"DELETE FROM {table} WHERE client_id = ?", rows)
                    continue
                sql, to_row = _STATEMENTS[kind]
                db.executemany(sql, [to_row(op) for op in group])
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(self._explain(exc)) from None

    def close(self) -> None:
        self._db.close()
        self._lock.release()  # after the last write: the next broker may open the file
