"""The sans-IO broker over a store: what survives a restart, and when acks go out.

A "restart" builds a new Broker from `store.load()` (the SQLite file, or the
connection to Redis, closed and reopened), as the server does at start; by
default the old broker just vanishes, as in a crash. Every test runs over
every kind of store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from midge.cluster.store import RedisStore
from midge.message import Message
from midge.protocol.packets import (
    ConnAck,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
)
from midge.store.base import (
    Operation,
    OutboundAdded,
    OutboundDeleted,
    OutboundRow,
    ReleasePending,
    Store,
    StoredSession,
    StoredState,
)
from midge.store.sqlite import SQLiteStore
from sansio import WALL_START

MakeNode = Callable[..., Any]


def stored(store: Store) -> dict[str, StoredSession]:
    return {session.client_id: session for session in store.load().sessions}


def stored_retained(store: Store) -> dict[str, Message]:
    return {message.topic: message for message in store.load().retained}


def publishes(packets: list[Packet]) -> list[tuple[str, bytes, int, bool, bool]]:
    """(topic, payload, qos, retain, dup) of every PUBLISH, in order."""
    return [(p.topic, p.payload, p.qos, p.retain, p.dup) for p in packets if isinstance(p, Publish)]


# ----------------------------------------------------------- what survives


def test_offline_queue_subscriptions_and_retained_survive_a_restart(make_node: MakeNode) -> None:
    node = make_node()
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("t/#", 2), ("low/#", 1))
    sub.disconnect()
    pub = node.connect("pub")
    expected = []
    for n in range(1, 9):
        qos = 1 if n % 2 else 2
        pub.published(f"t/{n}", f"m{n}\x00".encode(), qos)
        expected.append((f"t/{n}", f"m{n}\x00".encode(), qos, False, False))
    pub.published("low/x", b"downgraded", 2)  # granted QoS 1
    expected.append(("low/x", b"downgraded", 1, False, False))
    pub.published("r/1", b"retained one", 1, retain=True)
    pub.published("r/0", b"retained zero", 0, retain=True)
    pub.published("r/gone", b"soon gone", 1, retain=True)
    pub.published("r/gone", b"", 0, retain=True)  # an empty retained payload deletes it
    assert len(stored(node.store)["sub"].outbound) == 9

    node.restart()
    sub, after = node.resume("sub")
    assert publishes(after) == expected
    packet_ids = [p.packet_id for p in after if isinstance(p, Publish)]
    assert len(set(packet_ids)) == len(packet_ids)
    assert 0 not in packet_ids
    assert None not in packet_ids
    sub.acknowledge(after)
    assert stored(node.store)["sub"].outbound == []

    # The subscriptions came back too: new messages arrive without a SUBSCRIBE.
    pub = node.connect("pub")
    pub.published("t/new", b"after", 1)
    pub.published("low/y", b"after low", 2)
    got = sub.received()
    assert publishes(got) == [
        ("t/new", b"after", 1, False, False),
        ("low/y", b"after low", 1, False, False),
    ]
    sub.acknowledge(got)
    assert stored(node.store)["sub"].subscriptions == {"t/#": 2, "low/#": 1}

    # Retained messages, QoS 0 too; the deleted one stays deleted.
    other = node.connect("other")
    other.send(Subscribe(1, (Subscription("r/#", 2),)))
    answer = other.received()
    assert answer[0] == SubAck(1, (2,))
    assert sorted(publishes(answer[1:])) == [
        ("r/0", b"retained zero", 0, True, False),
        ("r/1", b"retained one", 1, True, False),
    ]
    assert set(stored_retained(node.store)) == {"r/0", "r/1"}
    node.restart()
    assert set(stored_retained(node.store)) == {"r/0", "r/1"}
    assert {m.topic for m in node.broker.retained.match("r/#")} == {"r/0", "r/1"}


def test_retained_delete_survives_restart_after_the_set_did(make_node: MakeNode) -> None:
    node = make_node()
    pub = node.connect("pub")
    pub.published("r", b"v1", 1, retain=True)
    node.restart()
    assert stored_retained(node.store) == {"r": Message("r", b"v1", 1, True)}
    pub = node.connect("pub")
    pub.published("r", b"", 1, retain=True)
    node.restart()
    assert stored_retained(node.store) == {}
    late = node.connect("late")
    late.subscribed(("r", 1))
    assert late.received() == []


@pytest.mark.parametrize("clean_shutdown", [False, True], ids=["crash", "shutdown"])
def test_in_flight_state_survives_a_restart(make_node: MakeNode, clean_shutdown: bool) -> None:
    node = make_node()
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("t", 2))
    pub = node.connect("pub")
    pub.published("t", b"one", 1)
    [first] = sub.received()  # not acknowledged
    assert isinstance(first, Publish)
    assert (first.qos, first.dup) == (1, False)
    pub.published("t", b"two", 2)
    [second] = sub.received()
    assert isinstance(second, Publish)
    assert second.packet_id is not None
    sub.send(PubRec(second.packet_id))  # and no PUBCOMP
    assert sub.received() == [PubRel(second.packet_id)]
    pub.published("t", b"three", 2)
    [third] = sub.received()  # no PUBREC
    assert isinstance(third, Publish)

    node.restart(clean=clean_shutdown)
    sub, after = node.resume("sub")
    assert after == [
        Publish("t", b"one", 1, False, True, first.packet_id),
        PubRel(second.packet_id),
        Publish("t", b"three", 2, False, True, third.packet_id),
    ]
    # Completing the flows after the restart empties the store.
    assert first.packet_id is not None
    assert third.packet_id is not None
    sub.send(PubAck(first.packet_id), PubComp(second.packet_id), PubRec(third.packet_id))
    assert sub.received() == [PubRel(third.packet_id)]
    node.restart()
    sub, after = node.resume("sub")
    assert after == [PubRel(third.packet_id)]
    sub.send(PubComp(third.packet_id))
    assert stored(node.store)["sub"].outbound == []
    node.restart()
    sub, after = node.resume("sub")
    assert after == []
    # New packet ids do not collide with anything: a fresh message flows normally.
    pub = node.connect("pub")
    pub.published("t", b"four", 1)
    [fourth] = sub.received()
    assert publishes([fourth]) == [("t", b"four", 1, False, False)]


@pytest.mark.parametrize("mode", ["on_publish", "on_release"])
def test_inbound_qos2_is_delivered_exactly_once_across_a_restart(
    make_node: MakeNode, mode: str
) -> None:
    node = make_node(qos2_delivery=mode)
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("x", 2))
    pub = node.connect("pub", clean_session=False)
    assert pub.publish("x", b"once", 2, packet_id=7) == [PubRec(7)]
    held = Message("x", b"once", 2, False) if mode == "on_release" else None
    assert stored(node.store)["pub"].pending_releases == {7: held}
    copies: list[Packet] = []
    before = sub.received()
    assert len(before) == (1 if mode == "on_publish" else 0)
    copies += before
    sub.acknowledge(before)

    node.restart()
    sub, after = node.resume("sub")
    copies += after
    sub.acknowledge(after)
    pub, resent = node.resume("pub")
    assert resent == []
    # The client did not see the PUBREC: it sends the PUBLISH again, DUP set.
    assert pub.publish("x", b"once", 2, packet_id=7, dup=True) == [PubRec(7)]
    more = sub.received()
    copies += more
    sub.acknowledge(more)
    pub.send(PubRel(7))
    assert pub.received() == [PubComp(7)]
    more = sub.received()
    copies += more
    sub.acknowledge(more)

    assert publishes(copies) == [("x", b"once", 2, False, False)]
    assert stored(node.store)["pub"].pending_releases == {}
    assert stored(node.store)["sub"].outbound == []
    # And the id is free again: the same id now carries a new message.
    assert pub.publish("x", b"next", 2, packet_id=7) == [PubRec(7)]
    pub.send(PubRel(7))
    assert pub.received() == [PubComp(7)]
    assert publishes(sub.received()) == [("x", b"next", 2, False, False)]


@pytest.mark.parametrize("mode", ["on_publish", "on_release"])
def test_inbound_qos2_to_an_offline_subscriber_across_a_restart(
    make_node: MakeNode, mode: str
) -> None:
    node = make_node(qos2_delivery=mode)
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("x", 1))
    sub.disconnect()
    pub = node.connect("pub", clean_session=False)
    assert pub.publish("x", b"once", 2, packet_id=3) == [PubRec(3)]
    node.restart()
    pub, _ = node.resume("pub")
    assert pub.publish("x", b"once", 2, packet_id=3, dup=True) == [PubRec(3)]
    pub.send(PubRel(3))
    assert pub.received() == [PubComp(3)]
    node.restart()
    sub, after = node.resume("sub")
    assert publishes(after) == [("x", b"once", 1, False, False)]


# -------------------------------------------------------- clean sessions


def test_clean_sessions_write_nothing_to_the_store(make_node: MakeNode) -> None:
    node = make_node()
    clean = node.connect("clean")
    clean.subscribed(("t", 2), ("u/#", 1))
    pub = node.connect("pub")
    pub.published("t", b"a", 1)
    pub.published("t", b"b", 2)
    assert pub.publish("u/1", b"c", 2, packet_id=40) == [PubRec(40)]  # not yet released
    clean.acknowledge(clean.received())
    clean.drop()
    pub.disconnect()
    assert node.store.load() == StoredState([], [])
    assert node.broker.persistence.epoch == 0  # not one batch of operations
    node.restart()
    node.connect("clean", present=False)
    node.connect("pub", present=False)


def test_reconnecting_with_clean_session_deletes_the_stored_session(
    make_node: MakeNode,
) -> None:
    node = make_node()
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    sub.disconnect()
    pub = node.connect("pub", clean_session=False)
    pub.published("t", b"queued", 1)
    assert pub.publish("t", b"pending", 2, packet_id=9) == [PubRec(9)]
    pub.disconnect()
    assert set(stored(node.store)) == {"sub", "pub"}
    node.restart()
    node.connect("sub", present=False, clean_session=True)
    assert set(stored(node.store)) == {"pub"}
    node.connect("pub", present=False, clean_session=True).disconnect()
    assert node.store.load().sessions == []
    node.restart()
    node.connect("sub", present=False, clean_session=False)
    node.connect("pub", present=False, clean_session=False)


# ------------------------------------------------ acknowledgements wait


class Recorder:
    """Stands in for the writer thread (the broker's committer): keeps submitted
    batches; `commit` applies them to the store and tells the broker, as the
    writer's on_commit would."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.batches: list[tuple[int, list[Operation]]] = []
        self.applied = 0
        self.on_commit: Callable[[int], None] = lambda epoch: None
        node.use_committer(self)

    def start(self, on_commit: Callable[[int], None]) -> None:
        self.on_commit = on_commit

    def submit(self, epoch: int, operations: list[Operation]) -> None:
        self.batches.append((epoch, list(operations)))

    def commit(self, upto: int | None = None) -> None:
        """Everything pending up to `upto` in one transaction, as the writer does."""
        if upto is None:
            upto = self.node.broker.persistence.epoch
        pending = [op for epoch, ops in self.batches if self.applied < epoch <= upto for op in ops]
        if pending:
            self.node.store.apply(pending)
        self.applied = max(self.applied, upto)
        self.on_commit(upto)


def persistent_offline_subscriber(node: Any, recorder: Recorder, topic: str) -> None:
    sub = node.open()
    assert sub.connect("sub", clean_session=False) == []  # SessionSaved not committed yet
    recorder.commit()
    assert sub.received() == [ConnAck(0, False)]
    sub.send(Subscribe(1, (Subscription(topic, 2),)))
    assert sub.received() == []  # the SUBACK vouches for a stored subscription
    recorder.commit()
    assert sub.received() == [SubAck(1, (2,))]
    sub.disconnect()
    recorder.commit()


def test_acks_wait_for_the_commit_of_what_they_vouch_for(make_node: MakeNode) -> None:
    node = make_node()
    recorder = Recorder(node)
    persistent_offline_subscriber(node, recorder, "t")
    pub = node.connect("pub")  # a clean session: no persistent work, CONNACK at once
    committed_before = node.broker.persistence.epoch

    assert pub.publish("t", b"one", 1, packet_id=1) == []
    first = node.broker.persistence.epoch
    assert first == committed_before + 1
    assert [type(op) for op in recorder.batches[-1][1]] == [OutboundAdded]
    assert pub.publish("t", b"two", 2, packet_id=2) == []
    second = node.broker.persistence.epoch
    assert second == first + 1
    pub.send(PingReq())  # nothing to store, but it must not overtake the held acks
    assert pub.received() == []
    assert stored(node.store)["sub"].outbound == []

    recorder.on_commit(first - 1)  # an older commit releases nothing
    assert pub.received() == []
    recorder.commit(first)
    assert pub.received() == [PubAck(1)]
    recorder.commit(second)
    assert pub.received() == [PubRec(2), PingResp()]
    assert [row.message.payload for row in stored(node.store)["sub"].outbound] == [b"one", b"two"]
    pub.send(PubRel(2))  # a clean publisher's PUBREL stores nothing: PUBCOMP at once
    assert pub.received() == [PubComp(2)]


def test_held_acks_come_out_in_order_at_one_commit(make_node: MakeNode) -> None:
    node = make_node()
    recorder = Recorder(node)
    persistent_offline_subscriber(node, recorder, "t")
    pub = node.connect("pub")
    for packet_id in range(1, 7):
        assert pub.publish("t", b"m", 1 + packet_id % 2, packet_id=packet_id) == []
    recorder.commit()
    assert pub.received() == [PubAck(n) if n % 2 == 0 else PubRec(n) for n in range(1, 7)]


def test_qos2_deliveries_to_a_persistent_subscriber_wait_for_the_commit(
    make_node: MakeNode,
) -> None:
    """Sent before the commit, a crash would make the publisher's re-send a second copy."""
    node = make_node()
    recorder = Recorder(node)
    sub = node.open()
    sub.connect("sub", clean_session=False)
    sub.send(Subscribe(1, (Subscription("t", 2),)))
    recorder.commit()
    assert sub.received() == [ConnAck(0, False), SubAck(1, (2,))]
    pub = node.connect("pub")
    assert pub.publish("t", b"x", 2, packet_id=5) == []
    assert sub.received() == []
    recorder.commit()
    assert pub.received() == [PubRec(5)]
    assert publishes(sub.received()) == [("t", b"x", 2, False, False)]


def test_qos1_delivery_goes_out_before_the_commit_and_an_early_ack_is_never_written(
    make_node: MakeNode,
) -> None:
    """A crash before the commit can only repeat a QoS 1 message: no need to wait.
    The publisher's PUBACK still waits; if the subscriber acknowledges first, the
    commit writes nothing for the message."""
    node = make_node()
    recorder = Recorder(node)
    sub = node.open()
    sub.connect("sub", clean_session=False)
    sub.send(Subscribe(1, (Subscription("t", 1),)))
    recorder.commit()
    assert sub.received() == [ConnAck(0, False), SubAck(1, (1,))]
    pub = node.connect("pub")
    assert pub.publish("t", b"x", 1, packet_id=5) == []  # PUBACK held
    [delivery] = sub.received()
    assert publishes([delivery]) == [("t", b"x", 1, False, False)]
    assert isinstance(delivery, Publish) and delivery.packet_id is not None
    sub.send(PubAck(delivery.packet_id))
    pending = [op for epoch, ops in recorder.batches if epoch > recorder.applied for op in ops]
    assert [type(op) for op in pending] == [OutboundAdded, OutboundDeleted]
    store = node.store
    statements: list[str] = []
    if isinstance(store, SQLiteStore):
        store._db.set_trace_callback(statements.append)
    commands = redis_commands(store)
    recorder.commit()
    assert pub.received() == [PubAck(5)]
    assert statements == []  # the message was never written: not even a transaction
    if isinstance(store, RedisStore):  # nor a command, let alone a pipeline
        assert redis_commands(store) == commands + 1  # only the INFO of the first count


def redis_commands(store: Store) -> int:
    """The commands the Redis under a RedisStore ran (each count is one more); 0 for others."""
    if not isinstance(store, RedisStore):
        return 0
    return int(store.client.info("stats")["total_commands_processed"])


def test_qos0_to_a_clean_subscriber_is_written_at_once(make_node: MakeNode) -> None:
    node = make_node()
    recorder = Recorder(node)
    persistent_offline_subscriber(node, recorder, "t")  # QoS 0 is not queued for it
    batches = len(recorder.batches)
    clean = node.connect("clean")
    clean.subscribed(("t", 2))
    pub = node.connect("pub")
    assert pub.publish("t", b"zero", 0) == []
    assert publishes(clean.received()) == [("t", b"zero", 0, False, False)]
    # QoS 1 between two clean sessions stores nothing either: PUBACK at once.
    clean.send(Subscribe(2, (Subscription("only/clean", 1),)))
    assert clean.received() == [SubAck(2, (1,))]
    assert pub.publish("only/clean", b"one", 1, packet_id=3) == [PubAck(3)]
    assert publishes(clean.received()) == [("only/clean", b"one", 1, False, False)]
    assert len(recorder.batches) == batches
    assert not node.broker.persistence.holding


def test_durability_memory_acknowledges_before_the_commit(make_node: MakeNode) -> None:
    node = make_node(durability="memory")
    recorder = Recorder(node)
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("t", 2))
    sub.disconnect()
    pub = node.connect("pub", clean_session=False)
    assert pub.publish("t", b"one", 1, packet_id=1) == [PubAck(1)]
    assert pub.publish("t", b"two", 2, packet_id=2) == [PubRec(2)]
    # ... while the operations still went to the store's writer.
    assert recorder.applied == 0
    kinds = {type(op) for _, ops in recorder.batches for op in ops}
    assert {OutboundAdded, ReleasePending} <= kinds
    recorder.commit()
    assert [row.message.payload for row in stored(node.store)["sub"].outbound] == [b"one", b"two"]


# ----------------------------------------------------------------- expiry


def test_offline_persistent_session_expires_with_its_rows(make_node: MakeNode) -> None:
    node = make_node(persistent_session_expiry=10)
    online = node.connect("online", clean_session=False)
    online.subscribed(("t", 1))
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    node.wall = WALL_START + 100
    sub.disconnect()
    assert stored(node.store)["sub"].disconnected_at == WALL_START + 100
    pub = node.connect("pub")
    pub.published("t", b"queued", 1)
    online.acknowledge(online.received())
    assert len(stored(node.store)["sub"].outbound) == 1

    node.fire(0)  # the first check: 0 s offline
    node.wall = WALL_START + 110  # exactly the expiry: not yet past it
    node.fire(60)
    assert "sub" in node.broker.sessions
    node.wall = WALL_START + 111
    node.fire(90)  # past it, but the next check is only due at 120
    assert "sub" in node.broker.sessions
    assert "sub" in stored(node.store)
    node.fire(120)
    assert "sub" not in node.broker.sessions
    assert set(stored(node.store)) == {"online"}  # connected sessions never expire
    # The subscription went with it: a new message is not queued for "sub".
    pub.published("t", b"after", 1)
    online.acknowledge(online.received())
    assert set(stored(node.store)) == {"online"}
    node.connect("sub", present=False, clean_session=False)


def test_restore_deletes_sessions_that_expired_while_the_broker_was_down(
    make_node: MakeNode,
) -> None:
    node = make_node(persistent_session_expiry=10)
    old = node.connect("old", clean_session=False)
    old.subscribed(("t", 1))
    old.disconnect()  # offline since WALL_START
    node.wall = WALL_START + 5
    recent = node.connect("recent", clean_session=False)
    recent.subscribed(("t", 1))
    recent.disconnect()  # offline since WALL_START + 5
    pub = node.connect("pub")
    pub.published("t", b"queued", 1)
    node.wall = WALL_START + 14  # "old" 14 s offline, "recent" 9 s
    node.restart()
    assert "old" not in node.broker.sessions
    assert "recent" in node.broker.sessions
    assert "old" not in node.broker.subscriptions.match("t")
    node.broker.flush()  # the end of the broker's first batch (a timer tick)
    assert set(stored(node.store)) == {"recent"}
    node.connect("old", present=False, clean_session=False)
    _, after = node.resume("recent")
    assert publishes(after) == [("t", b"queued", 1, False, False)]


def test_a_session_online_at_a_crash_expires_from_the_restart(make_node: MakeNode) -> None:
    node = make_node(persistent_session_expiry=10)
    node.connect("s", clean_session=False).subscribed(("t", 1))
    node.wall = WALL_START + 1000
    node.restart()  # crash: the store never saw the disconnect
    assert "s" in node.broker.sessions  # offline since the restart, not since ever
    node.fire(0)
    assert "s" in node.broker.sessions
    node.wall = WALL_START + 1011
    node.fire(60)
    assert "s" not in node.broker.sessions
    assert stored(node.store) == {}


# ----------------------------------------------------------------- limits


def test_max_queued_messages_bounds_what_is_stored(make_node: MakeNode) -> None:
    node = make_node(max_queued_messages=3)
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    sub.disconnect()
    pub = node.connect("pub")
    for n in range(1, 6):
        pub.published("t", f"m{n}".encode(), 1)
    rows = stored(node.store)["sub"].outbound
    assert [row.message.payload for row in rows] == [b"m1", b"m2", b"m3"]
    assert node.broker.stats.messages_dropped == 2
    node.restart()
    _, after = node.resume("sub")
    assert [p for _, p, *_ in publishes(after)] == [b"m1", b"m2", b"m3"]


@pytest.mark.parametrize("queue_qos0", [True, False])
def test_queue_qos0_messages_decides_whether_qos0_is_stored(
    make_node: MakeNode, queue_qos0: bool
) -> None:
    node = make_node(queue_qos0_messages=queue_qos0)
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    sub.disconnect()
    pub = node.connect("pub")
    pub.published("t", b"zero", 0)
    pub.published("t", b"one", 1)
    rows = stored(node.store)["sub"].outbound
    zero = Message("t", b"zero", 0, False)
    expected = [zero] if queue_qos0 else []
    assert [row.message for row in rows] == [*expected, Message("t", b"one", 1, False)]
    assert all(row.packet_id is None for row in rows)
    node.restart()
    sub, after = node.resume("sub")
    assert [(p[1], p[2]) for p in publishes(after)] == [
        *([(b"zero", 0)] if queue_qos0 else []),
        (b"one", 1),
    ]
    sub.acknowledge(after)
    assert stored(node.store)["sub"].outbound == []  # the sent QoS 0 left the store too


def test_stored_outbound_rows_match_the_session(make_node: MakeNode) -> None:
    """The rows the broker writes are exactly what restore_session reads back."""
    node = make_node()
    sub = node.connect("sub", clean_session=False)
    sub.subscribed(("t", 2))
    pub = node.connect("pub")
    pub.published("t", b"a", 1)
    pub.published("t", b"b", 2)
    [a, b] = sub.received()
    assert isinstance(a, Publish)
    assert isinstance(b, Publish)
    assert b.packet_id is not None
    sub.send(PubRec(b.packet_id))
    sub.received()
    sub.drop()
    pub.published("t", b"c", 2)
    rows = stored(node.store)["sub"].outbound
    assert rows == [
        OutboundRow(1, Message("t", b"a", 1), a.packet_id, 1),
        OutboundRow(2, Message("t", b"b", 2), b.packet_id, 3),
        OutboundRow(3, Message("t", b"c", 2), None, None),
    ]
    assert stored(node.store)["sub"].disconnected_at == WALL_START


def _online_persistent_subscriber(node: Any, recorder: Recorder, qos: int) -> Any:
    sub = node.open()
    sub.connect("sub", clean_session=False)
    sub.send(Subscribe(1, (Subscription("t", qos),)))
    recorder.commit()
    assert sub.received() == [ConnAck(0, False), SubAck(1, (qos,))]
    return sub


def test_a_qos1_puback_lets_the_next_queued_message_out_before_any_commit(
    make_node: MakeNode,
) -> None:
    """Deleting an acknowledged QoS 1 message and numbering the next one vouch for
    nothing a crash could contradict (a re-send is a permitted QoS 1 duplicate), so
    the subscriber's window refills without waiting for the disk."""
    node = make_node(max_inflight_messages=1)
    recorder = Recorder(node)
    sub = _online_persistent_subscriber(node, recorder, 1)
    pub = node.connect("pub")
    pub.publish("t", b"a", 1, packet_id=1)
    pub.publish("t", b"b", 1, packet_id=2)
    recorder.commit()
    first = sub.received()
    assert publishes(first) == [("t", b"a", 1, False, False)]
    batches = len(recorder.batches)
    sub.acknowledge(first)
    assert publishes(sub.received()) == [("t", b"b", 1, False, False)]  # no commit needed
    assert len(recorder.batches) == batches + 1  # but the changes are still stored


def test_a_qos2_delivery_from_the_queue_waits_for_its_packet_id_to_commit(
    make_node: MakeNode,
) -> None:
    """A QoS 2 message sent under a packet id the store does not know yet could be
    sent again under another id after a crash: a duplicate QoS 2 forbids."""
    node = make_node(max_inflight_messages=1)
    recorder = Recorder(node)
    sub = _online_persistent_subscriber(node, recorder, 2)
    pub = node.connect("pub")
    pub.publish("t", b"a", 2, packet_id=1)
    pub.publish("t", b"b", 2, packet_id=2)
    recorder.commit()
    first = sub.received()
    assert publishes(first) == [("t", b"a", 2, False, False)]
    assert first[0].packet_id is not None
    sub.send(PubRec(first[0].packet_id))
    assert sub.received() == []  # PUBREL waits for "PUBREC received" to be stored
    recorder.commit()
    assert sub.received() == [PubRel(first[0].packet_id)]
    sub.send(PubComp(first[0].packet_id))
    assert sub.received() == []  # the next QoS 2 PUBLISH waits for its packet id
    recorder.commit()
    assert publishes(sub.received()) == [("t", b"b", 2, False, False)]
