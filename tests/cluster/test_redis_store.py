"""The cluster's store (midge.cluster.store.RedisStore): what only Redis does.

The Store contract itself runs over RedisStore with the other stores
(tests/store, kind "redis"). Here: the cluster's own operations (messages
forwarded to other nodes' streams, route sets and the change log), one
node's sessions apart from another's, and failures: an unreachable URL, a
Redis killed and started again, a value Midge cannot read. All against a
real redis-server (tests/redis_server.py), each test under a key prefix of
its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import midge.cluster.store as store_module
from brokers import HOST, free_port
from midge.cluster.codec import (
    CorruptValue,
    Record,
    decode_bundle,
    decode_message,
    encode_message,
    encode_record,
)
from midge.cluster.keys import (
    RETAINED_DELETED,
    RETAINED_SET,
    ROUTE_DELETED,
    ROUTE_SET,
    ROUTES_RESET,
    Keys,
)
from midge.cluster.store import RedisStore, redact
from midge.message import Message
from midge.store.base import (
    Forwarded,
    InboundCursor,
    Operation,
    OutboundAdded,
    OutboundDeleted,
    OutboundRow,
    RetainedDeleted,
    RetainedSet,
    RouteDeleted,
    RouteSet,
    SessionDeleted,
    SessionSaved,
    StoredSession,
    StoreError,
    SubscriptionSet,
    WillDeleted,
)
from midge.store.writer import GroupCommitWriter
from redis_server import RedisServer

WAIT = 10.0  # seconds; only ever reached when a test is about to fail

MakeStore = Callable[..., RedisStore]


def msg(topic: str = "t", payload: bytes = b"p", qos: int = 1, retain: bool = False) -> Message:
    return Message(topic, payload, qos, retain)


@pytest.fixture
def make_store(redis_server: RedisServer, unique_prefix: str) -> Iterator[MakeStore]:
    """`make_store(node)`: a RedisStore of that node, all under this test's prefix."""
    opened: list[RedisStore] = []

    def make(node: str = "n1") -> RedisStore:
        store = RedisStore.open(redis_server.url, node, unique_prefix)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def entries(store: RedisStore, key: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in store.client.xrange(key)]


def members(store: RedisStore, key: str) -> set[bytes]:
    return set(store.client.smembers(key))


# ------------------------------------------------------- forwarded messages


def records(store: RedisStore, key: str) -> list[list[Record]]:
    """Each entry's bundle of records."""
    return [decode_bundle(fields[b"b"]) for fields in entries(store, key)]


def test_forwarded_messages_land_in_each_nodes_stream_in_order(
    make_store: MakeStore,
) -> None:
    store = make_store("a")
    first, second = msg("x/1", b"one", 1), msg("x/2", b"\x00two", 2, retain=True)
    store.apply(
        [
            Forwarded("b", first, True, (), b"5-1", "", 7),
            Forwarded("c", first, False, ("g1", "g/2"), b"5-1", "", 8),
            Forwarded("b", second, False, ("g",), b"", "someone", 9),
        ]
    )
    keys = store.keys
    # One batch, one entry per node: the node's records in order.
    (to_b,) = records(store, keys.inbound("b"))
    assert [decode_message(item.message) for item in to_b] == [first, second]
    assert [(item.plain, item.shares, item.target) for item in to_b] == [
        (True, (), ""),
        (False, ("g",), "someone"),
    ]
    assert [(item.position, item.sequence) for item in to_b] == [(b"5-1", 7), (b"", 9)]
    (to_c,) = records(store, keys.inbound("c"))
    assert [(item.shares, item.sequence) for item in to_c] == [(("g1", "g/2"), 8)]
    assert entries(store, keys.inbound("b"))[0][b"o"] == b"a"
    assert not store.client.exists(keys.inbound("a"))  # nothing to itself


def test_a_bundle_ends_where_another_kind_of_operation_comes(make_store: MakeStore) -> None:
    """Order across kinds is kept: forwards before a will's deletion are written before it."""
    store = make_store("a")
    store.apply(
        [
            Forwarded("b", msg("w/1"), True, ()),
            WillDeleted("gone"),
            Forwarded("b", msg("w/2"), True, ()),
        ]
    )
    assert [len(bundle) for bundle in records(store, store.keys.inbound("b"))] == [1, 1]


def test_a_bundle_that_is_not_one_is_refused() -> None:
    with pytest.raises(CorruptValue):
        decode_bundle(b"\x01\x00")
    record = Record(encode_message(msg()), True, ("s",), "t", b"1-1", 3)
    data = encode_record(record)
    with pytest.raises(CorruptValue):
        decode_bundle(data[:-1])
    (back,) = decode_bundle(data + b"")
    assert (back.shares, back.target, back.sequence) == (("s",), "t", 3)


def test_each_message_is_encoded_once_per_apply(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store("a")
    encoded: list[Message] = []

    def counting(message: Message) -> bytes:
        encoded.append(message)
        return encode_message(message)

    monkeypatch.setattr(store_module, "encode_message", counting)
    fan_out, other = msg("fan/out"), msg("other")
    store.apply(
        [
            SessionSaved("local1"),
            SessionSaved("local2"),
            *[Forwarded(node, fan_out, True, ()) for node in ("b", "c", "d")],
            OutboundAdded("local1", 1, fan_out),
            OutboundAdded("local2", 1, fan_out),
            Forwarded("b", other, True, ()),
        ]
    )
    assert encoded == [fan_out, other]
    assert len(entries(store, store.keys.inbound("d"))) == 1
    loaded = {s.client_id: s.outbound for s in store.load().sessions}
    assert loaded == {"local1": [OutboundRow(1, fan_out)], "local2": [OutboundRow(1, fan_out)]}


def test_forwarded_entries_go_with_the_batchs_other_writes_in_one_apply(
    make_store: MakeStore,
) -> None:
    store = make_store("a")
    batch: list[Operation] = [
        SessionSaved("s"),
        OutboundAdded("s", 1, msg()),
        Forwarded("b", msg(), True, ()),
        OutboundDeleted("s", 1),  # folded away with its OutboundAdded
        RetainedSet(msg("r", retain=True)),
    ]
    store.apply(batch)
    assert len(entries(store, store.keys.inbound("b"))) == 1
    state = store.load()
    assert state.sessions == [StoredSession("s")]
    assert state.retained == [msg("r", retain=True)]


def test_a_batch_cut_short_never_marks_entries_delivered_without_their_deliveries(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node killed while it writes a batch leaves a prefix of the batch in
    Redis, and nobody writes the rest. Whatever the prefix, the inbound cursor
    (entries delivered) is not there without the rows their delivery stored:
    the node taking its place delivers those entries again, none is lost."""
    store = make_store("a")
    queue = RedisStore._queue
    cut, total = [0], [0]

    def cut_short(self: RedisStore, pipe: Any, operations: Any, popped: Any) -> None:
        queue(self, pipe, operations, popped)
        total[0] = len(pipe.command_stack)
        del pipe.command_stack[cut[0] :]

    monkeypatch.setattr(RedisStore, "_queue", cut_short)
    while True:
        client, owner = f"s{cut[0]}", f"n{cut[0]}"
        store.apply(
            [
                InboundCursor(owner, b"5-0"),
                Forwarded("b", msg(), True, ()),
                SessionSaved(client),
                OutboundAdded(client, 1, msg()),
            ]
        )
        if store.client.get(store.keys.cursor(owner)) is not None:
            sessions = {item.client_id: item for item in store.load().sessions}
            assert client in sessions, f"the cursor without the session, cut at {cut[0]}"
            assert sessions[client].outbound == [OutboundRow(1, msg())]
        if cut[0] >= total[0]:
            break
        cut[0] += 1
    assert store.client.get(store.keys.cursor(f"n{total[0]}")) == b"5-0"  # whole: all there


# ------------------------------------------------- routes and the change log


def test_route_operations_write_the_set_and_the_change_log_in_order(
    make_store: MakeStore,
) -> None:
    store = make_store("a")
    store.apply(
        [
            RouteSet("a", "x/#"),
            RouteSet("a", "$share/g/y"),
            RouteDeleted("a", "x/#"),
            RouteSet("a", "x/#"),
            RouteDeleted("a", "never/set"),
        ]
    )
    keys = store.keys
    assert members(store, keys.routes("a")) == {b"x/#", b"$share/g/y"}
    assert entries(store, keys.changes) == [
        {b"k": ROUTE_SET, b"n": b"a", b"f": b"x/#"},
        {b"k": ROUTE_SET, b"n": b"a", b"f": b"$share/g/y"},
        {b"k": ROUTE_DELETED, b"n": b"a", b"f": b"x/#"},
        {b"k": ROUTE_SET, b"n": b"a", b"f": b"x/#"},
        {b"k": ROUTE_DELETED, b"n": b"a", b"f": b"never/set"},
    ]


def test_replace_routes_sets_the_whole_set_and_announces_it(make_store: MakeStore) -> None:
    store, other = make_store("a"), make_store("b")
    store.apply([RouteSet("a", "old"), RouteSet("a", "kept")])
    other.apply([RouteSet("b", "theirs")])
    store.replace_routes(iter(["kept", "new/+", "ü/#"]))
    keys = store.keys
    assert members(store, keys.routes("a")) == {b"kept", b"new/+", "ü/#".encode()}
    assert members(store, keys.routes("b")) == {b"theirs"}  # another node's set untouched
    assert entries(store, keys.changes)[-1] == {b"k": ROUTES_RESET, b"n": b"a"}
    store.replace_routes([])  # a node with no subscriber at all
    assert members(store, keys.routes("a")) == set()
    assert entries(store, keys.changes)[-2:] == [{b"k": ROUTES_RESET, b"n": b"a"}] * 2


def test_retained_changes_go_to_the_change_log_with_the_message(
    make_store: MakeStore,
) -> None:
    store = make_store("a")
    kept = msg("r/1", b"\x00one", 2, retain=True)
    store.apply([RetainedSet(kept), RetainedSet(msg("r/2", retain=True)), RetainedDeleted("r/2")])
    changes = entries(store, store.keys.changes)
    # Folded as the hash is: the net change per topic, one entry each.
    assert changes == [
        {b"k": RETAINED_SET, b"n": b"a", b"f": b"r/1", b"m": encode_message(kept)},
        {b"k": RETAINED_DELETED, b"n": b"a", b"f": b"r/2"},
    ]
    assert store.load().retained == [kept]


def test_the_change_log_keeps_about_its_last_entries_only(
    redis_server: RedisServer, unique_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    store = RedisStore(client, "a", Keys(unique_prefix), redis_server.url, change_log_max=10)
    try:
        for n in range(30):
            store.apply([RouteSet("a", f"f/{m}") for m in range(n * 100, n * 100 + 100)])
        # MAXLEN ~ trims whole stream nodes (100 entries by default): roughly 10.
        assert 10 <= store.client.xlen(store.keys.changes) < 300
        assert len(members(store, store.keys.routes("a"))) == 3000
    finally:
        store.close()


# ---------------------------------------------------------------- sessions


def test_a_node_loads_its_own_sessions_and_every_retained_message(
    make_store: MakeStore,
) -> None:
    a, b = make_store("a"), make_store("b")
    a.apply(
        [SessionSaved("on-a"), SubscriptionSet("on-a", "x", 1), RetainedSet(msg("ra", retain=True))]
    )
    b.apply([SessionSaved("on-b", 5.0), RetainedSet(msg("rb", retain=True))])
    for store, own in ((a, "on-a"), (b, "on-b")):
        state = store.load()
        assert [session.client_id for session in state.sessions] == [own]
        assert sorted(message.topic for message in state.retained) == ["ra", "rb"]
    # B takes a session over (its SessionSaved says it owns it now): A no longer
    # loads it, even though A's set, which only A changes, still names it.
    b.apply([SessionSaved("on-a", None)])
    assert a.load().sessions == []
    assert sorted(session.client_id for session in b.load().sessions) == ["on-a", "on-b"]
    assert b"on-a" in members(a, a.keys.node_sessions("a"))


def test_session_deleted_removes_every_key_of_the_client(make_store: MakeStore) -> None:
    store = make_store("a")
    store.apply(
        [
            SessionSaved("c", 1.5, 60),
            SubscriptionSet("c", "f", 1),
            OutboundAdded("c", 1, msg(), 3, 1),
            OutboundAdded("c", 2, msg()),
        ]
    )
    store.apply([SessionDeleted("c")])
    assert store.client.exists(*store.keys.client_keys("c")) == 0
    assert members(store, store.keys.node_sessions("a")) == set()


def test_an_apply_before_any_load_deletes_rows_a_previous_process_wrote(
    make_store: MakeStore,
) -> None:
    """The fold skips deleting a row never written: a new store must first learn
    which rows are (as SQLite does at open), or it would leave these behind."""
    first = make_store("a")
    first.apply([SessionSaved("c"), *[OutboundAdded("c", seq, msg(str(seq))) for seq in (1, 2, 3)]])
    second = make_store("a")  # a restarted node, before its load
    second.apply([OutboundDeleted("c", 2), OutboundDeleted("c", 3)])
    assert [row.seq for row in second.load().sessions[0].outbound] == [1]


# ---------------------------------------------------------------- failures


def test_an_unreachable_url_is_a_store_error_naming_it_without_the_password() -> None:
    port = free_port()
    with pytest.raises(StoreError) as caught:
        RedisStore.open(f"redis://user:s3cret-pw@{HOST}:{port}/0", "a")
    message = str(caught.value)
    assert f"cannot reach Redis at redis://{HOST}:{port}/0" in message
    assert "s3cret" not in message
    assert "user" not in message


def test_a_wrong_password_is_a_store_error_without_the_password(
    redis_server: RedisServer,
) -> None:
    url = f"redis://:s3cret-pw@{HOST}:{redis_server.port}/0"  # this Redis asks for none
    with pytest.raises(StoreError) as caught:
        RedisStore.open(url, "a")
    assert f"cannot reach Redis at redis://{HOST}:{redis_server.port}/0: " in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0", "redis://h:6379/0"),
        ("rediss://user:s3cret%40@w@h:6380/2", "rediss://h:6380/2"),
        ("redis://h:6379/0?password=s3cret&db=1", "redis://h:6379/0?password=***&db=1"),
        ("unix://user:s3cret@/run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
        ("redis://h/0", "redis://h/0"),
    ],
)
def test_description_and_errors_never_show_a_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    # A client of a port where nothing listens: every command fails.
    client = redis.Redis.from_url(f"redis://{HOST}:{free_port()}/0", socket_connect_timeout=1)
    store = RedisStore(client, "n", Keys("p"), url)
    try:
        assert store.description == f"redis {shown} (node n)"
        for attempt in (store.load, lambda: store.apply([SessionSaved("c")])):
            with pytest.raises(StoreError) as caught:
                attempt()
            assert f"Redis at {shown}: " in str(caught.value)
            assert "s3cret" not in str(caught.value)
    finally:
        store.close()


def test_a_redis_killed_midway_fails_the_apply_then_it_works_again(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    store = RedisStore.open(server.url, "a", "k")
    try:
        store.apply([SessionSaved("c"), OutboundAdded("c", 1, msg("before"))])
        server.kill()
        batch: list[Operation] = [OutboundAdded("c", 2, msg("during")), RouteSet("a", "f")]
        with pytest.raises(StoreError) as caught:
            store.apply(batch)
        assert f"cannot write to Redis at {server.url}" in str(caught.value)
        with pytest.raises(StoreError, match="cannot read from Redis"):
            store.load()
        server.start()  # same port, same folder: the append-only file kept the data
        store.apply(batch)  # the writer's retry: the whole batch again
        session = store.load().sessions[0]
        assert [row.message.topic for row in session.outbound] == ["before", "during"]
        assert members(store, store.keys.routes("a")) == {b"f"}
    finally:
        store.close()
        server.stop()


def test_the_writer_holds_a_batch_while_redis_is_down_and_commits_it_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("midge.store.writer.RETRY_SECONDS", 0.05)
    server = RedisServer(tmp_path / "redis").start()
    store = RedisStore.open(server.url, "a", "w")
    committed = threading.Event()
    writer = GroupCommitWriter(store)
    writer.start(lambda epoch: committed.set())
    try:
        server.kill()
        with caplog.at_level(logging.ERROR, logger="midge.store"):
            writer.submit(1, [SessionSaved("c"), Forwarded("b", msg(), True, ())])
            deadline = time.monotonic() + WAIT
            while "cannot write the store" not in caplog.text:
                assert time.monotonic() < deadline, "the failure was never logged"
                time.sleep(0.01)
        assert not committed.is_set()
        server.start()
        assert committed.wait(WAIT)
        assert [session.client_id for session in store.load().sessions] == ["c"]
        assert len(entries(store, store.keys.inbound("b"))) >= 1  # a retry may repeat it
    finally:
        writer.stop()
        store.close()
        server.stop()


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("outbound", b"\xff\xff"),
        ("outbound_sent", b"seven"),
        ("session", b"yesterday"),
        ("subscriptions", b"two"),
        ("releases", b"\x07"),
        ("retained", b"\x03\x00"),
    ],
)
def test_a_value_midge_cannot_read_is_a_store_error_naming_its_key(
    make_store: MakeStore, where: str, value: bytes
) -> None:
    store = make_store("a")
    store.apply(
        [
            SessionSaved("c", 1.5),
            SubscriptionSet("c", "f", 1),
            OutboundAdded("c", 1, msg(), 3, 1),
            RetainedSet(msg("r", retain=True)),
        ]
    )
    keys = store.keys
    key, field = {
        "outbound": (keys.outbound("c"), "1"),
        "outbound_sent": (keys.outbound_sent("c"), "1"),
        "session": (keys.session("c"), "disconnected_at"),
        "subscriptions": (keys.subscriptions("c"), "f"),
        "releases": (keys.releases("c"), "4"),
        "retained": (keys.retained, "r"),
    }[where]
    store.client.hset(key, field, value)
    with pytest.raises(StoreError) as caught:
        store.load()
    assert key in str(caught.value)
    assert "cannot read" in str(caught.value)
