"""How the SQLite store writes a batch: net changes, few statements, shared messages.

The contract suite (test_store_contract.py) checks *what* the store keeps,
against the memory store; this checks *how* it writes it: a message added
and deleted in one transaction is never written, a message queued for
several sessions is stored once, statements carry many rows, and a schema 1
file is migrated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from midge.message import Message
from midge.store.base import (
    Operation,
    OutboundAdded,
    OutboundDeleted,
    OutboundRow,
    OutboundSent,
    SessionDeleted,
    SessionSaved,
    StoredSession,
    StoreError,
)
from midge.store.sqlite import _MIGRATIONS, SCHEMA_VERSION, SQLiteStore
from midge.store.sqlite_writes import MultiRow


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "w.db")
    yield opened
    opened.close()


def traced(store: SQLiteStore, ops: list[Operation]) -> list[str]:
    """The statements one apply runs (parameters expanded)."""
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        store.apply(ops)
    finally:
        store._db.set_trace_callback(None)
    return statements


def on(table: str, statements: list[str]) -> list[str]:
    return [sql for sql in statements if f" {table} " in sql or f" {table}(" in sql]


def rows(store: SQLiteStore, client_id: str) -> list[OutboundRow]:
    for session in store.load().sessions:
        if session.client_id == client_id:
            return session.outbound
    return []


def count(store: SQLiteStore, table: str) -> int:
    return int(store._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# ------------------------------------------------------- never written


def test_a_message_added_and_deleted_in_one_apply_is_never_written(store: SQLiteStore) -> None:
    message = Message("t", b"p", 1)
    ops: list[Operation] = [
        SessionSaved("s"),
        OutboundAdded("s", 1, message, 7, 1),
        OutboundAdded("s", 2, Message("t", b"q", 1)),
        OutboundSent("s", 2, 8, 1),  # folded into the row's INSERT
        OutboundDeleted("s", 1),
        # A new session of the same client numbers from 1 again: its row is new.
        SessionDeleted("s"),
        SessionSaved("s"),
        OutboundAdded("s", 1, message, 1, 1),
        OutboundDeleted("s", 9),  # never written, so there is nothing to delete
    ]
    statements = on("outbound", traced(store, ops))
    assert statements == [
        "INSERT OR REPLACE INTO outbound (client_id, seq, packet_id, awaiting, topic, payload,"
        " qos, retain) VALUES ('s', 2, 8, 1, 't', x'71', 1, 0)",
        "DELETE FROM outbound WHERE client_id IN ('s')",
        "INSERT OR REPLACE INTO outbound (client_id, seq, packet_id, awaiting, topic, payload,"
        " qos, retain) VALUES ('s', 1, 1, 1, 't', x'70', 1, 0)",
    ]
    assert rows(store, "s") == [OutboundRow(1, message, 1, 1)]


def test_a_batch_that_nets_out_to_nothing_opens_no_transaction(store: SQLiteStore) -> None:
    store.apply([SessionSaved("s")])
    message = Message("t", b"p", 1)
    ops: list[Operation] = [OutboundAdded("s", 1, message), OutboundSent("s", 1, 1, 1)]
    assert traced(store, [*ops, OutboundDeleted("s", 1)]) == []
    assert rows(store, "s") == []


def test_one_statement_is_its_own_transaction(store: SQLiteStore) -> None:
    store.apply([SessionSaved("s"), OutboundAdded("s", 1, Message("t", b"x", 1))])
    assert traced(store, [OutboundDeleted("s", 1)]) == [
        "DELETE FROM outbound WHERE client_id = 's' AND seq IN (1)"
    ]
    two = traced(store, [SessionSaved("s", 5.0), OutboundAdded("s", 2, Message("t", b"y", 1))])
    assert (two[0], two[-1], len(two)) == ("BEGIN", "COMMIT", 4)


def test_a_row_written_before_is_deleted_and_updated_by_key(store: SQLiteStore) -> None:
    store.apply(
        [SessionSaved("s"), *[OutboundAdded("s", n, Message("t", b"x", 1)) for n in (1, 2)]]
    )
    statements = on(
        "outbound",
        traced(
            store,
            [
                OutboundDeleted("s", 1),
                OutboundSent("s", 2, 5, 1),
                OutboundAdded("s", 3, Message("t", b"y", 1)),
                OutboundDeleted("s", 3),  # above every seq written: nothing to do
            ],
        ),
    )
    assert statements == [
        "DELETE FROM outbound WHERE client_id = 's' AND seq IN (1)",
        "UPDATE outbound SET packet_id = CASE seq WHEN 2 THEN 5 END, awaiting = CASE seq"
        " WHEN 2 THEN 1 END WHERE client_id = 's' AND seq IN (2)",
    ]
    # What was written survives a reopen, and so does what the store knows of it:
    # seq 2 was written, so deleting it is a statement.
    store.close()
    again = SQLiteStore(store.path)
    try:
        assert on("outbound", traced(again, [OutboundDeleted("s", 2)])) == [
            "DELETE FROM outbound WHERE client_id = 's' AND seq IN (2)"
        ]
    finally:
        again.close()


def test_many_rows_go_in_few_statements(store: SQLiteStore) -> None:
    store.apply([SessionSaved("s")])
    added = [OutboundAdded("s", n, Message("t", bytes([n % 256]), 1)) for n in range(1, 201)]
    statements = on("outbound", traced(store, added))
    assert len(statements) == 3  # 200 = 128 + 64 + 8
    deleted: list[Operation] = [OutboundDeleted("s", n) for n in range(1, 201, 2)]
    assert len(on("outbound", traced(store, deleted))) == 1
    assert [row.seq for row in rows(store, "s")] == list(range(2, 201, 2))


def test_rows_going_in_flight_are_updated_in_one_statement(store: SQLiteStore) -> None:
    store.apply(
        [SessionSaved("s"), *[OutboundAdded("s", n, Message("t", b"x", 2)) for n in (1, 2, 3)]]
    )
    sent: list[Operation] = [OutboundSent("s", 1, 11, 2), OutboundSent("s", 3, 13, 2)]
    sent.append(OutboundSent("s", 1, 11, 3))  # PUBREC came: the last one counts
    assert len(on("outbound", traced(store, sent))) == 1
    assert [(row.seq, row.packet_id, row.awaiting) for row in rows(store, "s")] == [
        (1, 11, 3),
        (2, None, None),
        (3, 13, 2),
    ]


def test_statements_stay_within_the_variable_limit(store: SQLiteStore) -> None:
    store._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 20)
    store._write = MultiRow(store._db)
    ops: list[Operation] = [SessionSaved("s")]
    ops += [OutboundAdded("s", n, Message("t", b"x", 1)) for n in range(1, 51)]
    store.apply(ops)
    store.apply([OutboundSent("s", n, n, 1) for n in range(1, 51)])
    store.apply([OutboundDeleted("s", n) for n in range(1, 41)])
    assert [(row.seq, row.packet_id) for row in rows(store, "s")] == [(n, n) for n in range(41, 51)]


# ----------------------------------------------------- shared messages


def fan_out(message: Message, clients: list[str], seq: int = 1) -> list[Operation]:
    return [OutboundAdded(client_id, seq, message) for client_id in clients]


def test_a_message_for_several_sessions_is_stored_once(store: SQLiteStore) -> None:
    big = Message("fan/out", bytes(range(256)) * 40, 1)
    clients = ["a", "b", "c"]
    store.apply([*[SessionSaved(c) for c in clients], *fan_out(big, clients)])
    assert count(store, "messages") == 1
    assert store._db.execute("SELECT count(*) FROM outbound WHERE payload IS NULL").fetchone() == (
        3,
    )
    loaded = [session.outbound[0].message for session in store.load().sessions]
    assert loaded == [big] * 3
    assert loaded[0] is loaded[1] is loaded[2]  # one object again, as the broker had it
    # It goes with the last row that refers to it, however that row goes.
    store.apply([OutboundDeleted("a", 1)])
    assert count(store, "messages") == 1
    store.apply([SessionDeleted("b")])
    assert count(store, "messages") == 1
    store.apply([OutboundAdded("c", 1, Message("other", b"o", 1))])  # replaces its row
    assert count(store, "messages") == 0
    assert rows(store, "c") == [OutboundRow(1, Message("other", b"o", 1))]


def test_shared_messages_are_tracked_across_a_reopen(tmp_path: Path) -> None:
    message = Message("t", b"shared", 2)
    store = SQLiteStore(tmp_path / "s.db")
    store.apply([SessionSaved("a"), SessionSaved("b"), *fan_out(message, ["a", "b"], seq=4)])
    store.apply([OutboundSent("a", 4, 9, 2)])  # an update keeps the reference
    store.close()
    store = SQLiteStore(tmp_path / "s.db")
    try:
        assert rows(store, "a") == [OutboundRow(4, message, 9, 2)]
        store.apply([OutboundDeleted("a", 4)])
        assert count(store, "messages") == 1
        store.apply([OutboundDeleted("b", 4)])
        assert count(store, "messages") == 0
    finally:
        store.close()


def test_a_failed_apply_leaves_the_shared_messages_as_they_were(store: SQLiteStore) -> None:
    message = Message("t", b"shared", 1)
    store.apply([SessionSaved("a"), SessionSaved("b"), *fan_out(message, ["a", "b"])])
    store._db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON sessions WHEN NEW.client_id = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    with pytest.raises(StoreError):
        # Releases both rows (in memory) before the last statement fails.
        store.apply([SessionDeleted("a"), OutboundDeleted("b", 1), SessionSaved("bad")])
    assert [row.message for row in rows(store, "a") + rows(store, "b")] == [message] * 2
    store.apply([OutboundDeleted("a", 1)])
    assert count(store, "messages") == 1  # b still refers to it
    store.apply([OutboundDeleted("b", 1)])
    assert count(store, "messages") == 0


# ------------------------------------------------------------ migration


def test_a_schema_1_file_is_migrated_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for statement in _MIGRATIONS[0]:
        db.execute(statement)
    db.execute("INSERT INTO sessions VALUES ('a', 12.5)")
    db.execute("INSERT INTO subscriptions VALUES ('a', 'x/#', 1)")
    db.execute("INSERT INTO outbound VALUES ('a', 1, 'x/1', x'00ff', 2, 1, 7, 3)")
    db.execute("INSERT INTO outbound VALUES ('a', 2, 'x/2', x'', 1, 0, NULL, NULL)")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    try:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        (session,) = store.load().sessions
        assert session == StoredSession(
            "a",
            12.5,
            {"x/#": 1},
            [
                OutboundRow(1, Message("x/1", b"\x00\xff", 2, True), 7, 3),
                OutboundRow(2, Message("x/2", b"", 1, False)),
            ],
        )
        # And the migrated rows are written to like new ones.
        store.apply([OutboundDeleted("a", 1), OutboundAdded("a", 3, Message("x/3", b"3", 1))])
        assert [row.seq for row in store.load().sessions[0].outbound] == [2, 3]
    finally:
        store.close()
