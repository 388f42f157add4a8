"""The default Store: one SQLite file in the data folder, WAL mode.

Each `apply` is one transaction. The batch is first folded into its net
change per row (`changes.py`), then written with a few multi-row statements
per table (`sqlite_writes.py`): SQLite's cost, and the writer thread's GIL
hand-offs with the event loop, go by statement much more than by row. Durability follows
`synchronous`: FULL fsyncs every commit (survives power loss), NORMAL (with
WAL) survives the broker being killed, OFF leaves flushing to the operating
system.

A message queued for several sessions in one batch (a fan-out) is written
once, to `messages`, and each session's `outbound` row refers to it; a
message for one session stays inline in its row, which is cheaper than two
rows. The writer keeps which rows refer to a shared message (shared.py) and
deletes the message with the last of them.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from midge.message import Message
from midge.protocol.errors import MQTTError
from midge.store.base import (
    Operation,
    OutboundRow,
    StoredSession,
    StoredState,
    StoreError,
)
from midge.store.changes import Changes, segments
from midge.store.lock import StoreLock, lock_path
from midge.store.shared import OutboundIndex
from midge.store.sqlite_writes import (
    CACHED_STATEMENTS,
    INSERT_RELEASES,
    INSERT_RETAINED,
    MultiRow,
    OutboundWrites,
    Rows,
    blob,
    by_client,
    message_columns,
    properties_from_column,
)

SCHEMA_VERSION = 3
SQLITE_HEADER = b"SQLite format 3\x00"
SYNCHRONOUS_LEVELS = ("full", "normal", "off")

# Each migration is a list of statements, run in one transaction.
_MIGRATIONS: list[list[str]] = [
    # 0 -> 1: the first schema.
    [
        """CREATE TABLE sessions (
            client_id TEXT PRIMARY KEY,
            disconnected_at REAL
        )""",
        """CREATE TABLE subscriptions (
            client_id TEXT NOT NULL,
            topic_filter TEXT NOT NULL,
            qos INTEGER NOT NULL,
            PRIMARY KEY (client_id, topic_filter)
        ) WITHOUT ROWID""",
        """CREATE TABLE outbound (
            client_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            packet_id INTEGER,
            awaiting INTEGER,
            PRIMARY KEY (client_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE pending_releases (
            client_id TEXT NOT NULL,
            packet_id INTEGER NOT NULL,
            topic TEXT,
            payload BLOB,
            qos INTEGER,
            retain INTEGER,
            PRIMARY KEY (client_id, packet_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE retained (
            topic TEXT PRIMARY KEY,
            payload BLOB NOT NULL,
            qos INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ],
    # 1 -> 2: a message for several sessions is stored once, in `messages`; an
    # outbound row holds either its message (topic ... retain) or message_id.
    [
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL
        )""",
        "ALTER TABLE outbound RENAME TO outbound_v1",
        """CREATE TABLE outbound (
            client_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            packet_id INTEGER,
            awaiting INTEGER,
            message_id INTEGER,
            topic TEXT,
            payload BLOB,
            qos INTEGER,
            retain INTEGER,
            PRIMARY KEY (client_id, seq)
        ) WITHOUT ROWID""",
        """INSERT INTO outbound (client_id, seq, packet_id, awaiting, topic, payload, qos, retain)
            SELECT client_id, seq, packet_id, awaiting, topic, payload, qos, retain
            FROM outbound_v1""",
        "DROP TABLE outbound_v1",
    ],
    # 2 -> 3: MQTT 5.0. A message's properties (the block a PUBLISH carries) and
    # the wall-clock time it expires, wherever a message is stored; a session's
    # Session Expiry Interval. NULL for 3.1.1 data: adding a nullable column
    # without a default rewrites no row, and a NULL costs a row one header byte.
    [
        *(
            f"ALTER TABLE {table} ADD COLUMN {column}"
            for table in ("outbound", "messages", "pending_releases", "retained")
            for column in ("properties BLOB", "expires_at REAL")
        ),
        "ALTER TABLE sessions ADD COLUMN expiry_interval INTEGER",
    ],
]

_SESSION_TABLES = ("subscriptions", "outbound", "pending_releases", "sessions")
# What `_load` reads; a message's columns always end in these.
_MESSAGE = "topic, payload, qos, retain, properties, expires_at"


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
            self._db = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=CACHED_STATEMENTS,
            )
        except sqlite3.Error as exc:
            raise StoreError(self._explain(exc)) from None
        try:
            self._check_version()  # before anything writes to the file
            self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._migrate()
            self._write = MultiRow(self._db)
            (last,) = self._db.execute("SELECT max(id) FROM messages").fetchone()
            # Ids of shared messages: only this store's writer adds them.
            self._message_ids = itertools.count((last or 0) + 1)
            self._index: OutboundIndex | None = OutboundIndex(self._db)
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
            for statement in _MIGRATIONS[target]:
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={target + 1}")
            self._db.execute("COMMIT")

    def load(self) -> StoredState:
        try:
            return self._load()
        except sqlite3.Error as exc:
            raise StoreError(self._explain(exc)) from None
        except MQTTError as exc:  # from properties_from_column
            raise StoreError(
                f"{self.path}: a stored message's properties cannot be read ({exc}); the "
                "store is corrupt. Restore it from a backup, or move it away to start empty."
            ) from None

    def _load(self) -> StoredState:
        db = self._db
        sessions: dict[str, StoredSession] = {}
        for client_id, disconnected_at, expiry_interval in db.execute(
            "SELECT client_id, disconnected_at, expiry_interval FROM sessions"
        ):
            sessions[client_id] = StoredSession(
                client_id, disconnected_at, expiry_interval=expiry_interval
            )

        def session(client_id: str) -> StoredSession:
            return sessions.setdefault(client_id, StoredSession(client_id))

        for client_id, topic_filter, qos in db.execute(
            "SELECT client_id, topic_filter, qos FROM subscriptions"
        ):
            session(client_id).subscriptions[topic_filter] = qos
        # One object per shared message, as the broker had it: memory, not copies.
        shared = {
            row[0]: _message(*row[1:]) for row in db.execute(f"SELECT id, {_MESSAGE} FROM messages")
        }
        for row in db.execute(
            f"SELECT client_id, seq, packet_id, awaiting, message_id, {_MESSAGE}"
            " FROM outbound ORDER BY client_id, seq"
        ):
            client_id, seq, packet_id, awaiting, message_id = row[:5]
            # 0: not in flight, as written since schema 2 (schema 1 wrote NULL).
            packet_id, awaiting = packet_id or None, awaiting or None
            message = _message(*row[5:]) if message_id is None else shared[message_id]
            session(client_id).outbound.append(OutboundRow(seq, message, packet_id, awaiting))
        for row in db.execute(f"SELECT client_id, packet_id, {_MESSAGE} FROM pending_releases"):
            client_id, packet_id, topic = row[:3]
            held = None if topic is None else _message(*row[2:])
            session(client_id).pending_releases[packet_id] = held
        # A retained message is kept with its retain flag set.
        retained = [
            _message(*row)
            for row in db.execute(
                "SELECT topic, payload, qos, 1, properties, expires_at FROM retained"
            )
        ]
        return StoredState(list(sessions.values()), retained)

    def apply(self, operations: Sequence[Operation]) -> None:
        db = self._db
        write = self._write
        try:
            # After a failed apply the index may know rows that were rolled back.
            index = self._index or OutboundIndex(db)
            self._index = None  # until this transaction commits
            unreferenced: list[int] = []
            for segment in segments(operations, index.written):
                if isinstance(segment, Changes):
                    self._write_changes(segment, index, unreferenced)
                    continue
                # SessionDeleted: every row of these clients goes.
                for table in _SESSION_TABLES:
                    write.within(f"DELETE FROM {table} WHERE client_id IN", (), segment)
                for client_id in segment:
                    index.release_session(client_id, unreferenced)
            write.within("DELETE FROM messages WHERE id IN", (), unreferenced)
            write.commit()
            self._index = index
        except sqlite3.Error as exc:
            write.discard()
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(self._explain(exc)) from None

    def _write_changes(
        self, changes: Changes, index: OutboundIndex, unreferenced: list[int]
    ) -> None:
        """One segment's net change. Its keys are distinct, so the order of the
        statements does not matter; deletes go first only to keep pages small."""
        if changes.outbound:
            self._write_outbound(changes, index, unreferenced)
        write = self._write
        params: list[Any]
        if changes.sessions:
            params = []
            for saved in changes.sessions.values():
                params += (saved.client_id, saved.disconnected_at, saved.expiry_interval)
            write.values(
                "INSERT INTO sessions (client_id, disconnected_at, expiry_interval)",
                3,
                params,
                " ON CONFLICT (client_id) DO UPDATE SET disconnected_at ="
                " excluded.disconnected_at, expiry_interval = excluded.expiry_interval",
            )
        if changes.subscriptions:
            gone: list[tuple[str, Any]] = []
            params = []
            for (client_id, topic_filter), subscription in changes.subscriptions.items():
                if subscription is None:
                    gone.append((client_id, topic_filter))
                else:
                    params += (client_id, topic_filter, subscription.qos)
            for client_id, keys in by_client(gone).items():
                write.within(
                    "DELETE FROM subscriptions WHERE client_id = ? AND topic_filter IN",
                    (client_id,),
                    keys,
                )
            write.values("INSERT OR REPLACE INTO subscriptions", 3, params)
        if changes.releases:
            gone = []
            releases = Rows(INSERT_RELEASES)
            for (client_id, packet_id), pending in changes.releases.items():
                if pending is None:
                    gone.append((client_id, packet_id))
                else:
                    held = pending.message
                    releases.add((client_id, packet_id, *message_columns(held)), held)
            for client_id, keys in by_client(gone).items():
                write.within(
                    "DELETE FROM pending_releases WHERE client_id = ? AND packet_id IN",
                    (client_id,),
                    keys,
                )
            releases.run(write)
        if changes.retained:
            topics = [topic for topic, message in changes.retained.items() if message is None]
            write.within("DELETE FROM retained WHERE topic IN", (), topics)
            retained = Rows(INSERT_RETAINED)
            for message in changes.retained.values():
                if message is not None:
                    retained.add((message.topic, blob(message.payload), message.qos), message)
            retained.run(write)

    def _write_outbound(
        self, changes: Changes, index: OutboundIndex, unreferenced: list[int]
    ) -> None:
        writes = OutboundWrites()
        added: list[tuple[str, int, Message, int | None, int | None]] = []
        written = index.written
        tracked = index.rows  # empty unless some stored row shares its message
        for (client_id, seq), change in changes.outbound.items():
            if change is None:
                writes.delete(client_id, seq)
                if tracked:
                    index.release(client_id, seq, unreferenced)
                continue
            message, packet_id, awaiting = change
            if message is None:  # from OutboundSent alone, which sets both
                assert packet_id is not None and awaiting is not None
                writes.update(client_id, seq, packet_id, int(awaiting))
                continue
            if tracked:  # INSERT OR REPLACE: the row it replaces lets go of its message
                index.release(client_id, seq, unreferenced)
            if seq > written.get(client_id, 0):
                written[client_id] = seq
            added.append((client_id, seq, message, packet_id, awaiting))
        # A fan-out's rows are neighbours: the broker records one OutboundAdded
        # per receiver in a row, all with the same Message object, and the fold
        # keeps keys in the order it first saw them.
        last = len(added) - 1
        message_id = 0
        for n, (client_id, seq, message, packet_id, awaiting) in enumerate(added):
            if n and added[n - 1][2] is message:
                pass  # the same shared message as the row before
            elif n < last and added[n + 1][2] is message:
                message_id = next(self._message_ids)
                writes.share(message_id, message)
            else:
                writes.add(client_id, seq, packet_id, awaiting, message, None)
                continue
            index.refer(client_id, seq, message_id)
            writes.add(client_id, seq, packet_id, awaiting, message, message_id)
        writes.run(self._write)

    def close(self) -> None:
        self._db.close()
        self._lock.release()  # after the last write: the next broker may open the file


def _message(
    topic: str,
    payload: bytes,
    qos: int,
    retain: int,
    properties: bytes | None,
    expires_at: float | None,
) -> Message:
    """A message from its stored columns (`_MESSAGE`)."""
    return Message(
        topic, bytes(payload), qos, bool(retain), properties_from_column(properties), expires_at
    )
