"""The Store contract, one suite over every kind of store (MemoryStore,
SQLiteStore, the cluster's RedisStore); then SQLite alone.

Every operation type is applied and read back with `load()`; whatever one
store returns, the others must return too (the random-sequence tests check
that directly).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midge.message import Message
from midge.protocol.properties import Properties
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
    Store,
    StoredSession,
    StoredState,
    StoreError,
    SubscriptionDeleted,
    SubscriptionSet,
)
from midge.store.memory import MemoryStore
from midge.store.sqlite import SCHEMA_VERSION, SQLiteStore
from sansio import STORE_KINDS, StoreBox

T = 1_700_000_000.25  # a wall-clock instant


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    box = StoreBox(request.param, tmp_path / "m.db")
    yield box.store
    box.close()


def sessions(state: StoredState) -> dict[str, StoredSession]:
    by_id = {session.client_id: session for session in state.sessions}
    assert len(by_id) == len(state.sessions), "a session loaded twice"
    return by_id


def retained(state: StoredState) -> dict[str, Message]:
    by_topic = {message.topic: message for message in state.retained}
    assert len(by_topic) == len(state.retained), "a retained topic loaded twice"
    return by_topic


def msg(topic: str = "t", payload: bytes = b"p", qos: int = 1, retain: bool = False) -> Message:
    return Message(topic, payload, qos, retain)


# ------------------------------------------------------------ the contract


def test_empty_store_loads_nothing(store: Store) -> None:
    assert store.load() == StoredState([], [])
    assert isinstance(store.description, str)
    assert store.description


def test_session_saved_online_then_offline(store: Store) -> None:
    store.apply([SessionSaved("a"), SessionSaved("b", T)])
    loaded = sessions(store.load())
    assert loaded == {"a": StoredSession("a", None), "b": StoredSession("b", T)}
    # Saving again updates disconnected_at (both ways), never duplicates.
    store.apply([SessionSaved("a", T + 5), SessionSaved("b", None)])
    loaded = sessions(store.load())
    assert loaded["a"].disconnected_at == T + 5
    assert loaded["b"].disconnected_at is None


def test_session_saved_again_keeps_what_it_holds(store: Store) -> None:
    store.apply(
        [
            SessionSaved("a"),
            SubscriptionSet("a", "x/#", 2),
            OutboundAdded("a", 1, msg()),
            ReleasePending("a", 9, None),
        ]
    )
    store.apply([SessionSaved("a", T)])
    session = sessions(store.load())["a"]
    assert session.disconnected_at == T
    assert session.subscriptions == {"x/#": 2}
    assert session.outbound == [OutboundRow(1, msg())]
    assert session.pending_releases == {9: None}


def test_subscriptions_set_replace_delete(store: Store) -> None:
    store.apply(
        [
            SessionSaved("a"),
            SubscriptionSet("a", "x/+", 0),
            SubscriptionSet("a", "y/#", 1),
            SubscriptionSet("a", "z", 2),
        ]
    )
    assert sessions(store.load())["a"].subscriptions == {"x/+": 0, "y/#": 1, "z": 2}
    store.apply([SubscriptionSet("a", "x/+", 2)])  # the same filter again replaces
    assert sessions(store.load())["a"].subscriptions == {"x/+": 2, "y/#": 1, "z": 2}
    store.apply([SubscriptionDeleted("a", "y/#"), SubscriptionDeleted("a", "never")])
    assert sessions(store.load())["a"].subscriptions == {"x/+": 2, "z": 2}


def test_subscriptions_are_per_session(store: Store) -> None:
    store.apply(
        [
            SessionSaved("a"),
            SessionSaved("b"),
            SubscriptionSet("a", "f", 1),
            SubscriptionSet("b", "f", 2),
        ]
    )
    store.apply([SubscriptionDeleted("a", "f")])
    loaded = sessions(store.load())
    assert loaded["a"].subscriptions == {}
    assert loaded["b"].subscriptions == {"f": 2}


def test_outbound_queued_and_in_flight(store: Store) -> None:
    queued = msg("q", b"queued", 1)
    flying = msg("f", b"flying", 2, retain=True)
    store.apply(
        [
            SessionSaved("a"),
            OutboundAdded("a", 1, flying, packet_id=7, awaiting=2),
            OutboundAdded("a", 2, queued),
        ]
    )
    assert sessions(store.load())["a"].outbound == [
        OutboundRow(1, flying, 7, 2),
        OutboundRow(2, queued, None, None),
    ]


def test_outbound_sent_updates_packet_id_and_awaiting(store: Store) -> None:
    store.apply(
        [
            SessionSaved("a"),
            OutboundAdded("a", 1, msg("one", qos=2)),
            OutboundAdded("a", 2, msg("two", qos=1)),
        ]
    )
    store.apply([OutboundSent("a", 1, 5, 2)])
    rows = sessions(store.load())["a"].outbound
    assert rows == [OutboundRow(1, msg("one", qos=2), 5, 2), OutboundRow(2, msg("two", qos=1))]
    store.apply([OutboundSent("a", 1, 5, 3)])  # PUBREC came: now awaits PUBCOMP
    assert sessions(store.load())["a"].outbound[0] == OutboundRow(1, msg("one", qos=2), 5, 3)
    # A row that does not exist is not created by OutboundSent.
    store.apply([OutboundSent("a", 99, 6, 1)])
    assert [row.seq for row in sessions(store.load())["a"].outbound] == [1, 2]


def test_outbound_deleted(store: Store) -> None:
    store.apply([SessionSaved("a")] + [OutboundAdded("a", seq, msg(str(seq))) for seq in (1, 2, 3)])
    store.apply([OutboundDeleted("a", 2), OutboundDeleted("a", 42)])
    assert [row.seq for row in sessions(store.load())["a"].outbound] == [1, 3]
    store.apply([OutboundDeleted("a", 1), OutboundDeleted("a", 3)])
    assert sessions(store.load())["a"].outbound == []


def test_outbound_loads_in_seq_order_whatever_the_insert_order(store: Store) -> None:
    order = [5, 1, 12, 3, 100, 2, 11]
    store.apply([SessionSaved("a"), SessionSaved("b")])
    store.apply([OutboundAdded("a", seq, msg(f"m{seq}")) for seq in order])
    store.apply([OutboundAdded("b", seq, msg(f"b{seq}")) for seq in reversed(order)])
    loaded = sessions(store.load())
    for client_id, prefix in (("a", "m"), ("b", "b")):
        rows = loaded[client_id].outbound
        assert [row.seq for row in rows] == sorted(order)  # numeric, not text order
        assert [row.message.topic for row in rows] == [f"{prefix}{seq}" for seq in sorted(order)]


def test_release_pending_with_and_without_message_then_done(store: Store) -> None:
    held = msg("held/topic", b"\x00held", 2, retain=True)
    store.apply([SessionSaved("a"), ReleasePending("a", 1, None), ReleasePending("a", 2, held)])
    assert sessions(store.load())["a"].pending_releases == {1: None, 2: held}
    store.apply([ReleaseDone("a", 1)])
    assert sessions(store.load())["a"].pending_releases == {2: held}
    store.apply([ReleaseDone("a", 2), ReleaseDone("a", 3)])
    assert sessions(store.load())["a"].pending_releases == {}


def test_retained_set_replace_delete(store: Store) -> None:
    store.apply(
        [
            RetainedSet(msg("r/1", b"one", 1, retain=True)),
            RetainedSet(msg("r/2", b"two", 0, retain=True)),
        ]
    )
    assert retained(store.load()) == {
        "r/1": msg("r/1", b"one", 1, retain=True),
        "r/2": msg("r/2", b"two", 0, retain=True),
    }
    store.apply([RetainedSet(msg("r/1", b"newer", 2, retain=True))])
    assert retained(store.load())["r/1"] == msg("r/1", b"newer", 2, retain=True)
    store.apply([RetainedDeleted("r/2"), RetainedDeleted("never/set")])
    assert retained(store.load()) == {"r/1": msg("r/1", b"newer", 2, retain=True)}
    assert store.load().sessions == []  # retained messages belong to no session


def test_session_deleted_removes_all_its_rows_and_nobody_elses(store: Store) -> None:
    def fill(client_id: str) -> list[Operation]:
        return [
            SessionSaved(client_id, T),
            SubscriptionSet(client_id, "s/#", 1),
            OutboundAdded(client_id, 1, msg(f"{client_id}/1"), 3, 1),
            OutboundAdded(client_id, 2, msg(f"{client_id}/2")),
            ReleasePending(client_id, 4, None),
            ReleasePending(client_id, 5, msg("h")),
        ]

    store.apply([*fill("gone"), *fill("stays"), RetainedSet(msg("r", retain=True))])
    before = sessions(store.load())["stays"]
    store.apply([SessionDeleted("gone")])
    state = store.load()
    assert sessions(state) == {"stays": before}
    assert retained(state) == {"r": msg("r", retain=True)}
    # The same client id starts from nothing when it comes back.
    store.apply([SessionSaved("gone")])
    assert sessions(store.load())["gone"] == StoredSession("gone")


def test_many_operations_in_one_apply_in_order(store: Store) -> None:
    ops: list[Operation] = [SessionSaved("a")]
    ops += [OutboundAdded("a", seq, msg(f"t/{seq}", qos=1)) for seq in range(1, 201)]
    ops += [OutboundDeleted("a", seq) for seq in range(1, 201, 2)]
    ops += [OutboundSent("a", 2, 1, 1)]
    ops += [SubscriptionSet("a", f"f/{n}", n % 3) for n in range(50)]
    ops += [SubscriptionDeleted("a", f"f/{n}") for n in range(25)]
    # Later operations in the batch see earlier ones: set, delete, set again.
    ops += [RetainedSet(msg("r", b"1", retain=True)), RetainedDeleted("r")]
    ops += [RetainedSet(msg("r", b"3", retain=True))]
    ops += [SessionSaved("b"), SessionDeleted("b"), SessionSaved("c", T), SessionDeleted("c")]
    store.apply(ops)
    state = store.load()
    session = sessions(state)["a"]
    assert [row.seq for row in session.outbound] == list(range(2, 201, 2))
    assert session.outbound[0] == OutboundRow(2, msg("t/2", qos=1), 1, 1)
    assert session.subscriptions == {f"f/{n}": n % 3 for n in range(25, 50)}
    assert retained(state) == {"r": msg("r", b"3", retain=True)}
    assert set(sessions(state)) == {"a"}


def test_empty_apply_changes_nothing(store: Store) -> None:
    store.apply([SessionSaved("a", T)])
    store.apply([])
    assert sessions(store.load()) == {"a": StoredSession("a", T)}


BINARY = bytes(range(256)) + b"\x00\x00end\x00"


def test_binary_payloads_with_nul_bytes_round_trip(store: Store) -> None:
    empty = msg("e", b"", 1)
    store.apply(
        [
            SessionSaved("a"),
            OutboundAdded("a", 1, msg("b", BINARY, 2)),
            OutboundAdded("a", 2, empty),
            ReleasePending("a", 1, msg("p", BINARY, 2)),
            RetainedSet(msg("r", BINARY, 1, retain=True)),
        ]
    )
    state = store.load()
    session = sessions(state)["a"]
    assert session.outbound[0].message.payload == BINARY
    assert session.outbound[1].message == empty
    held = session.pending_releases[1]
    assert held is not None
    assert held.payload == BINARY
    assert retained(state)["r"].payload == BINARY
    for loaded in (session.outbound[0].message, held, retained(state)["r"]):
        assert type(loaded.payload) is bytes


def test_one_megabyte_payloads_round_trip(store: Store) -> None:
    big = os.urandom(1024 * 1024)
    store.apply(
        [
            SessionSaved("a"),
            OutboundAdded("a", 1, msg("big", big, 1)),
            RetainedSet(msg("big", big, 0, retain=True)),
        ]
    )
    state = store.load()
    assert sessions(state)["a"].outbound[0].message.payload == big
    assert retained(state)["big"].payload == big


UNICODE_TOPICS = ["ünïcödé/📡/日本語", "a/ b /\u200b/\uffff", "\u03a3/\u03c3/\u03c2", "x" * 1000]


def test_unicode_topics_and_client_ids_round_trip(store: Store) -> None:
    client = "клиент-🙂"
    ops: list[Operation] = [SessionSaved(client, T)]
    for n, topic in enumerate(UNICODE_TOPICS, 1):
        ops += [
            SubscriptionSet(client, topic + "/#", 1),
            OutboundAdded(client, n, msg(topic, topic.encode(), 1)),
            ReleasePending(client, n, msg(topic, b"held", 2)),
            RetainedSet(msg(topic, topic.encode(), 1, retain=True)),
        ]
    # Topics differing only in case or normalization are distinct.
    ops += [
        RetainedSet(msg("Case", b"C", retain=True)),
        RetainedSet(msg("case", b"c", retain=True)),
    ]
    ops += [RetainedSet(msg("\u00e9", b"nfc", retain=True))]
    ops += [RetainedSet(msg("e\u0301", b"nfd", retain=True))]
    store.apply(ops)
    state = store.load()
    session = sessions(state)[client]
    assert set(session.subscriptions) == {topic + "/#" for topic in UNICODE_TOPICS}
    assert [row.message.topic for row in session.outbound] == UNICODE_TOPICS
    assert {m.topic for m in session.pending_releases.values() if m} == set(UNICODE_TOPICS)
    loaded = retained(state)
    assert {topic: loaded[topic].payload for topic in UNICODE_TOPICS} == {
        topic: topic.encode() for topic in UNICODE_TOPICS
    }
    assert (loaded["Case"].payload, loaded["case"].payload) == (b"C", b"c")
    assert (loaded["\u00e9"].payload, loaded["e\u0301"].payload) == (b"nfc", b"nfd")


def test_load_returns_copies_not_live_state(store: Store) -> None:
    store.apply([SessionSaved("a"), SubscriptionSet("a", "f", 1), OutboundAdded("a", 1, msg())])
    first = store.load()
    first.sessions[0].subscriptions["other"] = 0
    first.sessions[0].outbound.clear()
    first.retained.append(msg("junk", retain=True))
    assert store.load() == StoredState(
        [StoredSession("a", None, {"f": 1}, [OutboundRow(1, msg())])], []
    )


def test_outbound_without_session_row_loads_the_same_from_both_stores(tmp_path: Path) -> None:
    ops: list[Operation] = [OutboundAdded("ghost", 1, msg())]
    memory, disk = MemoryStore(), SQLiteStore(tmp_path / "g.db")
    try:
        memory.apply(ops)
        disk.apply(ops)
        assert normalized(memory.load()) == normalized(disk.load())
    finally:
        disk.close()


# ------------------------------------------------ memory == sqlite, randomly

CLIENTS = ("a", "b", "ü")
TOPICS = ("t", "t/1", "ü/日本", "$x")


# The broker hands one Message object to every receiver of a delivery, which
# SQLite stores once: drawing from a pool makes batches share objects too.
POOL = [
    Message("t", b"shared", 1),
    Message("t/1", b"", 2, True),
    Message("$x", b"\x00", 0),
    Message("t", b"5", 1, False, Properties(user_properties=(("b", "1"), ("a", "2"))), T),
]

# What a 5.0 publisher may attach to a message (MQTT 5.0 section 3.3.2.3); its
# strings are UTF-8 without U+0000, as the decoder lets in [MQTT-1.5.4-2].
# What an MQTT UTF-8 string may hold: no U+0000, and no lone surrogate (which
# UTF-8 cannot encode, so no packet can carry one) [MQTT-1.5.4-1, 1.5.4-2].
mqtt_text = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=3
)
publish_properties = st.builds(
    Properties,
    payload_format_indicator=st.none() | st.integers(0, 1),
    content_type=st.none() | mqtt_text,
    response_topic=st.none() | st.sampled_from(TOPICS),
    correlation_data=st.none() | st.binary(max_size=6),
    user_properties=st.lists(st.tuples(mqtt_text, mqtt_text), max_size=3).map(tuple),
)


def messages(retain: Any = None) -> st.SearchStrategy[Message]:
    fresh = st.builds(
        Message,
        st.sampled_from(TOPICS),
        st.binary(max_size=12) | st.just(b"\x00"),
        st.integers(0, 2),
        st.booleans() if retain is None else st.just(retain),
        st.none() | publish_properties.filter(lambda p: not p.is_empty()),
        st.none() | st.floats(0, 4e9, allow_nan=False),
    )
    return fresh if retain is not None else fresh | st.sampled_from(POOL)


client_ids = st.sampled_from(CLIENTS)
seqs = st.integers(1, 6)
packet_ids = st.integers(1, 4)
awaiting = st.integers(1, 3)
wall_times = st.none() | st.floats(0, 4e9, allow_nan=False)
# 5.0 sessions' Session Expiry Interval; None for 3.1.1
expiry_intervals = st.none() | st.sampled_from([1, 3600, 0xFFFF_FFFF])
# A 3.1.1 QoS, or 5.0 subscription options packed (QoS, flags, identifier from bit 8)
subscription_options = st.integers(0, 2) | st.integers(0, 268_435_455 << 8 | 0x3F)

operations: st.SearchStrategy[Operation] = st.one_of(
    st.builds(SessionSaved, client_ids, wall_times, expiry_intervals),
    st.builds(SessionDeleted, client_ids),
    st.builds(SubscriptionSet, client_ids, st.sampled_from(TOPICS), subscription_options),
    st.builds(SubscriptionDeleted, client_ids, st.sampled_from(TOPICS)),
    st.builds(OutboundAdded, client_ids, seqs, messages(), st.none(), st.none()),
    st.builds(OutboundAdded, client_ids, seqs, messages(), packet_ids, awaiting),
    st.builds(OutboundSent, client_ids, seqs, packet_ids, awaiting),
    st.builds(OutboundDeleted, client_ids, seqs),
    st.builds(ReleasePending, client_ids, packet_ids, st.none() | messages()),
    st.builds(ReleaseDone, client_ids, packet_ids),
    # The broker keeps retained messages with their retain flag set.
    st.builds(RetainedSet, messages(retain=True)),
    st.builds(RetainedDeleted, st.sampled_from(TOPICS)),
)


def as_the_broker_writes(batches: list[list[Operation]]) -> list[list[Operation]]:
    """The broker saves a session before it writes anything under its id (and
    after SessionDeleted saves it anew): put a SessionSaved where it would be."""
    live: set[str] = set()
    fixed: list[list[Operation]] = []
    for batch in batches:
        out: list[Operation] = []
        for op in batch:
            if isinstance(op, SessionSaved):
                live.add(op.client_id)
            elif isinstance(op, SessionDeleted):
                live.discard(op.client_id)
            elif not isinstance(op, RetainedSet | RetainedDeleted) and op.client_id not in live:
                out.append(SessionSaved(op.client_id))
                live.add(op.client_id)
            out.append(op)
        fixed.append(out)
    return fixed


def normalized(state: StoredState) -> tuple[dict[str, Any], dict[str, Message]]:
    return (
        {
            session.client_id: (
                session.disconnected_at,
                session.expiry_interval,
                session.subscriptions,
                session.outbound,
                session.pending_releases,
            )
            for session in state.sessions
        },
        retained(state),
    )


def unreferenced_messages(store: SQLiteStore) -> int:
    """Shared messages no outbound row refers to any more: must be none."""
    (count,) = store._db.execute(
        "SELECT count(*) FROM messages WHERE id NOT IN "
        "(SELECT message_id FROM outbound WHERE message_id IS NOT NULL)"
    ).fetchone()
    return int(count)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches=st.lists(st.lists(operations, max_size=10), max_size=8))
def test_memory_and_sqlite_load_the_same_after_the_same_operations(
    batches: list[list[Operation]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        memory, disk = MemoryStore(), SQLiteStore(Path(folder) / "r.db")
        try:
            for batch in as_the_broker_writes(batches):
                memory.apply(batch)
                disk.apply(batch)
                assert normalized(memory.load()) == normalized(disk.load())
                assert unreferenced_messages(disk) == 0
            # And what SQLite has survives reopening the file unchanged.
            expected = normalized(disk.load())
            disk.close()
            disk = SQLiteStore(Path(folder) / "r.db")
            assert normalized(disk.load()) == expected
            # Outbound rows come back in seq order.
            for session in disk.load().sessions:
                assert [row.seq for row in session.outbound] == sorted(
                    row.seq for row in session.outbound
                )
        finally:
            disk.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches=st.lists(st.tuples(st.lists(operations, max_size=10), st.booleans()), max_size=8))
def test_memory_and_redis_load_the_same_after_the_same_operations(
    batches: list[tuple[list[Operation], bool]],
) -> None:
    """The cluster's store too; and a batch applied twice (the writer's retry
    after a failure, which may have written any part of it) is applied once."""
    memory, box = MemoryStore(), StoreBox("redis", Path("unused"))
    try:
        fixed = as_the_broker_writes([batch for batch, _ in batches])
        for batch, (_, again) in zip(fixed, batches, strict=True):
            memory.apply(batch)
            box.store.apply(batch)
            if again:
                box.store.apply(batch)
            assert normalized(memory.load()) == normalized(box.store.load())
        # What Redis has, a new connection (a restarted node) loads unchanged.
        expected = normalized(box.store.load())
        assert normalized(box.reopen().load()) == expected
    finally:
        box.close()


# ----------------------------------------------------------- SQLite alone


def everything() -> list[Operation]:
    return [
        SessionSaved("a", T),
        SubscriptionSet("a", "x/#", 2),
        OutboundAdded("a", 1, msg("x/1", b"\x00one", 1), 4, 1),
        OutboundAdded("a", 2, msg("x/2", b"two", 2)),
        ReleasePending("a", 3, None),
        ReleasePending("a", 4, msg("in", b"held", 2, True)),
        SessionSaved("b"),
        RetainedSet(msg("r", b"kept", 1, retain=True)),
    ]


def test_sqlite_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    first = SQLiteStore(path)
    first.apply(everything())
    expected = first.load()
    first.close()
    again = SQLiteStore(path)
    try:
        assert normalized(again.load()) == normalized(expected)
        reference = MemoryStore()
        reference.apply(everything())
        assert normalized(again.load()) == normalized(reference.load())
        # And it keeps working: more changes, another reopen.
        again.apply([SessionDeleted("a"), RetainedDeleted("r")])
    finally:
        again.close()
    third = SQLiteStore(path)
    try:
        assert third.load() == StoredState([StoredSession("b")], [])
    finally:
        third.close()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = SQLiteStore(path)
    store.close()
    # The journal mode is persistent: another connection sees it in the file.
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize(("level", "expected"), [("full", 2), ("normal", 1), ("off", 0)])
def test_sqlite_synchronous_level(tmp_path: Path, level: str, expected: int) -> None:
    store = SQLiteStore(tmp_path / "m.db", synchronous=level)
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == expected
        assert f"synchronous={level}" in store.description
        assert str(tmp_path / "m.db") in store.description
    finally:
        store.close()


def test_sqlite_default_synchronous_is_normal(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        store.close()


def test_sqlite_unknown_synchronous_level_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "m.db", synchronous="extra")
    assert not (tmp_path / "m.db").exists()


NOT_DATABASES: dict[str, Callable[[], bytes]] = {
    "random": lambda: os.urandom(8192),
    "text": lambda: b"retained = {}\n" * 300,
    "tiny": lambda: b"{}\n",
    "sqlite-header": lambda: b"SQLite format 3\x00" + os.urandom(4080),
}


@pytest.mark.parametrize("kind", sorted(NOT_DATABASES))
def test_sqlite_refuses_a_file_that_is_not_a_store_and_leaves_it_alone(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "midge.db"
    data = NOT_DATABASES[kind]()
    path.write_bytes(data)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    message = str(caught.value)
    assert str(path) in message
    assert "not a Midge store" in message
    assert "backup" in message
    assert "move it away" in message
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["midge.db"]


def test_sqlite_refuses_a_store_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "midge.db"
    store = SQLiteStore(path)
    store.apply(everything())
    store.close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 6}")
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"schema version {SCHEMA_VERSION + 6}" in message
    assert "newer Midge" in message
    # The data is still there for the newer version (nothing was dropped or migrated).
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 6
        assert db.execute("SELECT count(*) FROM outbound").fetchone()[0] == 2


def test_sqlite_leaves_a_refused_newer_store_untouched(tmp_path: Path) -> None:
    path = tmp_path / "midge.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.execute("CREATE TABLE future (x)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer Midge"):
        SQLiteStore(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["midge.db"]


def test_sqlite_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "midge.db"
    path.write_bytes(b"")
    store = SQLiteStore(path)
    try:
        assert store.load() == StoredState([], [])
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master")}
        assert {"sessions", "subscriptions", "outbound", "pending_releases", "retained"} <= tables
        store.apply(everything())
        assert len(store.load().sessions) == 2
    finally:
        store.close()


def test_sqlite_migrates_a_new_path_and_reopens_without_migrating_again(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = SQLiteStore(path)
    store.apply([SessionSaved("a")])
    store.close()
    again = SQLiteStore(path)  # a second CREATE TABLE would fail
    try:
        assert again.load() == StoredState([StoredSession("a")], [])
    finally:
        again.close()


def test_sqlite_missing_folder_is_a_store_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "midge.db"
    with pytest.raises(StoreError, match="cannot use the store") as caught:
        SQLiteStore(path)
    assert str(path) in str(caught.value)


def test_sqlite_apply_failing_midway_rolls_back_the_whole_batch(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    try:
        store.apply([SessionSaved("a"), SubscriptionSet("a", "kept", 1)])
        before = store.load()
        batch: list[Operation] = [
            SessionSaved("b"),
            SubscriptionSet("a", "lost", 1),
            SubscriptionDeleted("a", "kept"),
            OutboundAdded("a", 1, msg()),
            RetainedSet(msg("r", retain=True)),
            SessionDeleted("a"),
            # Refused by the trigger below: the last write fails after all the others ran.
            SubscriptionSet("a", "bad", 1),
        ]
        store._db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON subscriptions WHEN NEW.topic_filter = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        with pytest.raises(StoreError) as caught:
            store.apply(batch)
        assert str(tmp_path / "m.db") in str(caught.value)
        assert store.load() == before
        # The store is still usable, and the failed batch left no transaction open.
        assert not store._db.in_transaction
        store.apply([SessionSaved("c")])
        assert set(sessions(store.load())) == {"a", "c"}
    finally:
        store.close()
    reopened = SQLiteStore(tmp_path / "m.db")
    try:
        assert set(sessions(reopened.load())) == {"a", "c"}
        assert sessions(reopened.load())["a"].subscriptions == {"kept": 1}
    finally:
        reopened.close()


class FailingConnection:
    """Stands in for the sqlite3 connection: the n-th statement that writes rows
    (not BEGIN, COMMIT, ROLLBACK) raises `error`."""

    def __init__(self, real: sqlite3.Connection, fail_at: int, error: sqlite3.Error) -> None:
        self.real = real
        self.fail_at = fail_at
        self.error = error
        self.calls = 0

    def _count(self, sql: str) -> None:
        if sql not in ("BEGIN", "COMMIT", "ROLLBACK"):
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.error

    def execute(self, sql: str, *params: Any) -> Any:
        self._count(sql)
        return self.real.execute(sql, *params)

    def executemany(self, sql: str, rows: Any) -> Any:
        self._count(sql)
        return self.real.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (sqlite3.OperationalError("database or disk is full"), ["disk is full", "free some"]),
        (sqlite3.OperationalError("disk I/O error"), ["cannot use the store", "disk I/O"]),
    ],
)
def test_sqlite_apply_error_rolls_back_and_explains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: sqlite3.Error, words: list[str]
) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    try:
        store.apply([RetainedSet(msg("old", retain=True))])
        before = store.load()
        failing = FailingConnection(store._db, fail_at=3, error=error)
        monkeypatch.setattr(store, "_db", failing)
        monkeypatch.setattr(store._write, "_db", failing)
        with pytest.raises(StoreError) as caught:
            store.apply(
                [
                    SessionSaved("a"),  # statement 1 (by table: sessions first)
                    RetainedDeleted("old"),  # 3: fails
                    SubscriptionSet("a", "f", 1),  # 2
                    RetainedSet(msg("new", retain=True)),
                ]
            )
        assert failing.calls == 3
        for word in [str(tmp_path / "m.db"), *words]:
            assert word in str(caught.value)
        monkeypatch.undo()
        assert store.load() == before
        store.apply([SessionSaved("z")])
        assert set(sessions(store.load())) == {"z"}
    finally:
        store.close()


@pytest.mark.parametrize("content", [b"x", b"\x00", b"SQLite"])
def test_sqlite_refuses_a_tiny_foreign_file_instead_of_formatting_it(
    tmp_path: Path, content: bytes
) -> None:
    """SQLite itself would turn a 1-byte file into an empty database: never start empty
    over a file that was there."""
    path = tmp_path / "m.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not a Midge store"):
        SQLiteStore(path)
    assert path.read_bytes() == content
    assert not (tmp_path / "m.db-wal").exists()
