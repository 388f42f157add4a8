"""MQTT 5.0 in the store: every field kept, over every kind of store, and schema 3.

A message's properties and expiry wherever a message is stored (outbound rows
queued and in flight, shared fan-out rows, pending releases, retained), a
session's Session Expiry Interval, and subscription options packed in the
subscription's int. Then SQLite alone: the columns stay NULL for 3.1.1 data,
a schema 2 file (as the previous Midge wrote it) is migrated with every row,
and a restart restores the session (`restore_session`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from midge.broker.persistence import restore_session
from midge.message import Message
from midge.protocol.properties import Properties
from midge.store.base import (
    OutboundAdded,
    OutboundRow,
    OutboundSent,
    ReleasePending,
    RetainedSet,
    SessionSaved,
    Store,
    StoredSession,
    StoreError,
    SubscriptionSet,
)
from midge.store.sqlite import SCHEMA_VERSION, SQLiteStore
from sansio import STORE_KINDS, StoreBox

T = 1_700_000_000.25  # a wall-clock instant
NEVER = 0xFFFF_FFFF  # Session Expiry Interval: the session never expires

PROPERTIES = Properties(
    payload_format_indicator=1,
    content_type="application/json; charset=utf-8",
    response_topic="reply/ü",
    correlation_data=b"\x00\xffcorr\x00",
    # Receivers must get them in this order, repeated names included.
    user_properties=(("z", "last?"), ("a", "1"), ("z", "again"), ("日本", ""), ("", "empty")),
)


def message5(topic: str = "t/5", qos: int = 1, retain: bool = False) -> Message:
    return Message(topic, b"\x00payload", qos, retain, PROPERTIES, T + 60.5)


@pytest.fixture(params=STORE_KINDS)
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBox]:
    opened = StoreBox(request.param, tmp_path / "m.db")
    yield opened
    opened.close()


@pytest.fixture
def store(box: StoreBox) -> Store:
    return box.store


def session_of(store: Store, client_id: str) -> StoredSession:
    (session,) = [s for s in store.load().sessions if s.client_id == client_id]
    return session


def reopened(box: StoreBox) -> Store:
    """The store opened again (what a restart reads); memory as it is."""
    return box.reopen()


# ------------------------------------------------------------ every store


def test_message_properties_and_expiry_round_trip_wherever_stored(
    store: Store, box: StoreBox
) -> None:
    queued, in_flight = message5("q"), message5("f", qos=2)
    held, kept = message5("held", qos=2, retain=True), message5("kept", retain=True)
    store.apply(
        [
            SessionSaved("a"),
            OutboundAdded("a", 1, in_flight, 7, 1),
            OutboundAdded("a", 2, queued),
            ReleasePending("a", 9, held),
            RetainedSet(kept),
        ]
    )
    store.apply([OutboundSent("a", 1, 7, 2)])  # PUBREC: the row keeps its message
    store = reopened(box)
    try:
        session = session_of(store, "a")
        assert session.outbound == [OutboundRow(1, in_flight, 7, 2), OutboundRow(2, queued)]
        assert session.pending_releases == {9: held}
        assert store.load().retained == [kept]
        loaded = session.outbound[1].message
        assert loaded.properties is not None
        assert loaded.properties.user_properties == PROPERTIES.user_properties
        assert loaded.properties.correlation_data == b"\x00\xffcorr\x00"
        assert loaded.expires_at == T + 60.5
    finally:
        store.close()


def test_shared_fan_out_rows_keep_properties_and_expiry(store: Store, box: StoreBox) -> None:
    message = message5("fan/out")
    clients = ["a", "b", "c"]
    store.apply(
        [*[SessionSaved(c) for c in clients], *[OutboundAdded(c, 1, message) for c in clients]]
    )
    store = reopened(box)
    try:
        for client_id in clients:
            assert session_of(store, client_id).outbound == [OutboundRow(1, message)]
    finally:
        store.close()


@pytest.mark.parametrize(
    "message",
    [
        Message("only/properties", b"p", 1, False, PROPERTIES),
        Message("only/expiry", b"p", 1, False, None, T),
        Message("only/user", b"p", 1, False, Properties(user_properties=(("k", "v"),))),
    ],
    ids=["properties", "expiry", "one-user-property"],
)
def test_either_field_alone_round_trips(store: Store, box: StoreBox, message: Message) -> None:
    kept = message.with_delivery(message.qos, True)  # as the broker keeps a retained one
    store.apply([SessionSaved("a"), OutboundAdded("a", 1, message), RetainedSet(kept)])
    store = reopened(box)
    try:
        assert session_of(store, "a").outbound == [OutboundRow(1, message)]
        assert store.load().retained == [kept]
    finally:
        store.close()


def test_every_property_a_publish_may_carry_round_trips(store: Store, box: StoreBox) -> None:
    everything = Properties(
        payload_format_indicator=0,
        message_expiry_interval=NEVER,
        content_type="",
        response_topic="r",
        correlation_data=b"",
        subscription_identifiers=(1, 268_435_455),
        topic_alias=3,
        user_properties=(("a", "b"),),
    )
    message = Message("t", b"", 0, False, everything, None)
    store.apply([SessionSaved("a"), OutboundAdded("a", 1, message)])
    store = reopened(box)
    try:
        assert session_of(store, "a").outbound[0].message.properties == everything
    finally:
        store.close()


def test_session_expiry_interval_round_trips_and_changes(store: Store, box: StoreBox) -> None:
    store.apply([SessionSaved("v3"), SessionSaved("v5", None, 3600), SessionSaved("w", T, NEVER)])
    store = reopened(box)
    try:
        loaded = {s.client_id: s.expiry_interval for s in store.load().sessions}
        assert loaded == {"v3": None, "v5": 3600, "w": NEVER}
        # DISCONNECT changes it; a 3.1.1 reconnect clears it; both keep disconnected_at.
        store.apply([SessionSaved("v5", T, 60), SessionSaved("w", T + 1, None)])
        assert session_of(store, "v5").expiry_interval == 60
        assert session_of(store, "v5").disconnected_at == T
        assert session_of(store, "w").expiry_interval is None
        assert session_of(store, "w").disconnected_at == T + 1
    finally:
        store.close()


PACKED = 2 | 4 | 8 | (2 << 4) | (268_435_455 << 8)  # QoS 2, NL, RAP, RH 2, id max


@pytest.mark.parametrize("options", [0, 2, PACKED, 2**36])
def test_packed_subscription_options_round_trip(store: Store, box: StoreBox, options: int) -> None:
    store.apply([SessionSaved("a"), SubscriptionSet("a", "x/#", options)])
    store = reopened(box)
    try:
        assert session_of(store, "a").subscriptions == {"x/#": options}
    finally:
        store.close()


# ------------------------------------------------------------ SQLite alone


def nulls(db: sqlite3.Connection, table: str) -> list[tuple[object, object]]:
    return list(db.execute(f"SELECT properties, expires_at FROM {table}"))


def test_sqlite_stores_null_for_3_1_1_messages_and_sessions(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    try:
        plain, fan = Message("t", b"p", 1), Message("fan", b"f", 1)
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        store.apply(
            [
                SessionSaved("a"),
                SessionSaved("b"),
                OutboundAdded("a", 1, plain),
                OutboundAdded("a", 2, fan),
                OutboundAdded("b", 2, fan),
                ReleasePending("a", 3, plain),
                ReleasePending("a", 4, None),
                RetainedSet(Message("r", b"k", 0, True)),
            ]
        )
        store._db.set_trace_callback(None)
        db = store._db
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (1,)
        for table in ("outbound", "messages", "pending_releases", "retained"):
            assert set(nulls(db, table)) == {(None, None)}, table
        assert list(db.execute("SELECT expiry_interval FROM sessions")) == [(None,), (None,)]
        # And no statement even named the 5.0 columns: 3.1.1 rows bind no NULLs.
        assert not [sql for sql in statements if "properties" in sql]
    finally:
        store.close()


def test_sqlite_stores_properties_compactly(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    try:
        small = Properties(user_properties=(("k", "v"),))
        store.apply([SessionSaved("a"), OutboundAdded("a", 1, Message("t", b"", 1, False, small))])
        ((column,),) = store._db.execute("SELECT properties FROM outbound")
        # The PUBLISH property block: length, identifier 0x26, two length-prefixed strings.
        assert bytes(column) == b"\x07\x26\x00\x01k\x00\x01v"
    finally:
        store.close()


def test_sqlite_refuses_unreadable_stored_properties(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    try:
        store.apply([SessionSaved("a"), OutboundAdded("a", 1, message5())])
        store._db.execute("UPDATE outbound SET properties = x'0326000178'")  # cut short
        with pytest.raises(StoreError, match="properties cannot be read"):
            store.load()
        store._db.execute("UPDATE outbound SET properties = x'0001'")  # bytes after the block
        with pytest.raises(StoreError, match="corrupt"):
            store.load()
    finally:
        store.close()


# The schema as Midge wrote it at version 2 (before MQTT 5.0), frozen here: the
# migration must keep working on such files whatever later versions change.
SCHEMA_2 = [
    "CREATE TABLE sessions (client_id TEXT PRIMARY KEY, disconnected_at REAL)",
    """CREATE TABLE subscriptions (client_id TEXT NOT NULL, topic_filter TEXT NOT NULL,
        qos INTEGER NOT NULL, PRIMARY KEY (client_id, topic_filter)) WITHOUT ROWID""",
    """CREATE TABLE pending_releases (client_id TEXT NOT NULL, packet_id INTEGER NOT NULL,
        topic TEXT, payload BLOB, qos INTEGER, retain INTEGER,
        PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID""",
    """CREATE TABLE retained (topic TEXT PRIMARY KEY, payload BLOB NOT NULL,
        qos INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE messages (id INTEGER PRIMARY KEY, topic TEXT NOT NULL,
        payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)""",
    """CREATE TABLE outbound (client_id TEXT NOT NULL, seq INTEGER NOT NULL,
        packet_id INTEGER, awaiting INTEGER, message_id INTEGER, topic TEXT, payload BLOB,
        qos INTEGER, retain INTEGER, PRIMARY KEY (client_id, seq)) WITHOUT ROWID""",
    "PRAGMA user_version=2",
]
SCHEMA_2_ROWS = [
    "INSERT INTO sessions VALUES ('a', 12.5), ('b', NULL)",
    "INSERT INTO subscriptions VALUES ('a', 'x/#', 1), ('b', 'y', 2)",
    "INSERT INTO messages VALUES (5, 'fan', x'00', 1, 0)",
    "INSERT INTO outbound VALUES ('a', 1, 7, 1, NULL, 'x/1', x'00ff', 1, 1)",
    "INSERT INTO outbound VALUES ('a', 2, 0, 0, 5, NULL, NULL, NULL, NULL)",
    "INSERT INTO outbound VALUES ('b', 4, 0, 0, 5, NULL, NULL, NULL, NULL)",
    "INSERT INTO pending_releases VALUES ('a', 3, 'in', x'68', 2, 0)",
    "INSERT INTO pending_releases VALUES ('a', 4, NULL, NULL, NULL, NULL)",
    "INSERT INTO retained VALUES ('r', x'6b', 1)",
]


def schema_2_file(path: Path) -> None:
    db = sqlite3.connect(path)
    for statement in SCHEMA_2 + SCHEMA_2_ROWS:
        db.execute(statement)
    db.commit()
    db.close()


def test_a_schema_2_file_is_migrated_with_every_row(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    schema_2_file(path)
    store = SQLiteStore(path)
    try:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        state = store.load()
        fan = Message("fan", b"\x00", 1)
        sessions = {s.client_id: s for s in state.sessions}
        assert sessions == {
            "a": StoredSession(
                "a",
                12.5,
                {"x/#": 1},
                [OutboundRow(1, Message("x/1", b"\x00\xff", 1, True), 7, 1), OutboundRow(2, fan)],
                {3: Message("in", b"h", 2), 4: None},
                None,
            ),
            "b": StoredSession("b", None, {"y": 2}, [OutboundRow(4, fan)]),
        }
        assert state.retained == [Message("r", b"k", 1, True)]
        for message in [fan, *state.retained, sessions["a"].outbound[0].message]:
            assert message.properties is None and message.expires_at is None
        # The migrated file takes 5.0 data, and keeps it across a reopen.
        store.apply([SessionSaved("a", None, 30), OutboundAdded("a", 9, message5())])
    finally:
        store.close()
    store = SQLiteStore(path)
    try:
        session = session_of(store, "a")
        assert session.expiry_interval == 30
        assert session.outbound[-1] == OutboundRow(9, message5())
    finally:
        store.close()


def columns(path: Path) -> dict[str, list[tuple[object, ...]]]:
    db = sqlite3.connect(path)
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: list(db.execute(f"PRAGMA table_info({t})")) for t in sorted(tables)}
    finally:
        db.close()


def test_a_migrated_file_has_the_columns_of_a_new_one(tmp_path: Path) -> None:
    schema_2_file(tmp_path / "old.db")
    for name in ("old.db", "new.db"):
        SQLiteStore(tmp_path / name).close()
    migrated, fresh = columns(tmp_path / "old.db"), columns(tmp_path / "new.db")
    assert {t: [c[1:3] for c in cs] for t, cs in migrated.items()} == {
        t: [c[1:3] for c in cs] for t, cs in fresh.items()
    }
    assert ("properties", "BLOB") in [c[1:3] for c in fresh["outbound"]]
    assert ("expiry_interval", "INTEGER") in [c[1:3] for c in fresh["sessions"]]


# ----------------------------------------------------------- restart


def test_restore_session_keeps_expiry_interval_and_5_0_messages() -> None:
    queued, in_flight = message5("q"), message5("f")
    stored = StoredSession(
        "a",
        T,
        {"x/#": PACKED},
        [OutboundRow(1, in_flight, 3, 1), OutboundRow(2, queued)],
        {9: message5("held", qos=2)},
        expiry_interval=NEVER,
    )
    session = restore_session(stored, T + 5)
    assert session.persistent
    assert session.expiry_interval == NEVER
    assert session.disconnected_at == T
    assert session.subscriptions == {"x/#": PACKED}
    assert [entry.message for entry in session.inflight.values()] == [in_flight]
    assert list(session.queue) == [(2, queued)]
    assert session.pending_releases == {9: message5("held", qos=2)}
    assert restore_session(StoredSession("b"), T).expiry_interval is None
