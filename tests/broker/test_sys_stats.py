"""The counters of broker/stats.py, where things happen (sans-IO), the store
writer's commit latency, and the broker's own $SYS messages: routed, retained,
never stored, never counted as received traffic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from midge.broker.config import BrokerConfig
from midge.broker.stats import Stats
from midge.message import Message
from midge.protocol.codec import encode
from midge.protocol.packets import ConnAck, PubAck, PubComp, Publish, PubRec, PubRel, SubAck
from midge.protocol.properties import Properties
from midge.store.base import Operation, RetainedSet
from midge.store.memory import MemoryStore
from midge.store.writer import COMMIT_LATENCY_BOUNDS, GroupCommitWriter
from sansio import WALL_START, Harness, StoreBox

MakeHarness = Callable[..., Harness]


def sys_publish(harness: Harness, topic: str, payload: bytes) -> None:
    """What the $SYS service does each round, for one topic."""
    core = harness.broker
    core.delivery.publish(Message(topic, payload, 0, True), None, harness.now)
    core.flush()


def test_traffic_is_counted_in_bytes_packets_and_publishes_per_qos(harness: Harness) -> None:
    sub = harness.connect("sub")
    sub.subscribed(("t", 2))
    pub = harness.connect("pub")
    for qos in (0, 1, 2):
        pub.published("t", b"x" * (qos + 1), qos)
    sub.acknowledge(sub.received())
    stats = harness.broker.stats
    assert (stats.publish_received_qos0, stats.publish_received_qos1) == (1, 1)
    assert stats.publish_received_qos2 == 1
    assert (stats.publish_sent_qos0, stats.publish_sent_qos1, stats.publish_sent_qos2) == (1, 1, 1)
    assert stats.publish_received == stats.publish_sent == stats.messages_sent == 3
    assert stats.publish_bytes_received == stats.publish_bytes_sent == 1 + 2 + 3
    # In: CONNECT, SUBSCRIBE, CONNECT, 3 PUBLISH, PUBREL, PUBACK, PUBREC, PUBCOMP.
    assert stats.packets_received == 10
    # Out: CONNACK, SUBACK, CONNACK, PUBACK, PUBREC, PUBCOMP, 3 PUBLISH, PUBREL.
    assert stats.packets_sent == 10
    written = [
        ConnAck(0),
        SubAck(1, (2,)),
        ConnAck(0),
        PubAck(1),
        PubRec(2),
        PubComp(2),
        Publish("t", b"x"),
        Publish("t", b"xx", 1, packet_id=1),
        Publish("t", b"xxx", 2, packet_id=2),
        PubRel(2),
    ]
    assert stats.bytes_sent == sum(len(encode(packet)) for packet in written)
    assert stats.bytes_received > stats.publish_bytes_received


def test_connections_sockets_and_the_most_at_once(harness: Harness) -> None:
    first = harness.connect("a")
    harness.connect("b")
    harness.open()  # a socket that never sends CONNECT
    first.disconnect()
    harness.connect("c")
    stats = harness.broker.stats
    assert stats.connections_accepted == 4
    assert stats.connections_total == 3
    assert stats.clients_maximum == 2


def test_refused_connections_are_counted_by_reason(
    make_harness: MakeHarness, password_file: Callable[..., str], password_lines: dict
) -> None:
    harness = make_harness(
        password_file=password_file([password_lines["7"]("alice", "right")]),
        allow_anonymous=False,
        auth_failure_delay=0,
    )
    harness.open().connect("x", username="alice", password=b"wrong")
    harness.open().connect("y")  # anonymous
    harness.open().connect("z", level=9)  # no such protocol level
    stats = harness.broker.stats
    assert stats.connections_refused == {
        "bad_user_name_or_password": 1,
        "not_authorized": 1,
        "unsupported_protocol_version": 1,
    }
    assert stats.connections_refused_total == 3
    assert stats.auth_failures == 2
    assert stats.connections_total == 0


def test_what_matched_nobody_and_what_the_acl_refused(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite alice/#\n", encoding="utf-8")
    harness = make_harness(acl_file=str(acl))
    alice = harness.connect("a", username="alice")
    alice.published("alice/nobody", b"1", 1)
    alice.published("alice/kept", b"1", 1, retain=True)  # retained: not dropped
    alice.published("bob/x", b"1", 1)  # the ACL refuses
    alice.published("$SYS/broker/fake", b"1", 1)  # nobody publishes there
    stats = harness.broker.stats
    assert stats.dropped_no_subscribers == 1
    assert stats.dropped_acl == 2
    assert stats.messages_received == 2  # routed: the first two
    assert stats.messages_dropped == 0  # counted apart


def test_messages_too_large_for_a_client_are_part_of_messages_dropped(harness: Harness) -> None:
    sub = harness.open()
    sub.connect("sub", level=5, properties=Properties(maximum_packet_size=64))
    sub.version = 5
    sub.subscribed("t")
    pub = harness.connect("pub")
    pub.published("t", b"x" * 100)
    stats = harness.broker.stats
    assert stats.dropped_too_large == 1
    assert stats.messages_dropped == 1


def test_queued_messages_that_expire_are_counted(harness: Harness) -> None:
    sub = harness.connect("sub", clean_session=False)
    sub.subscribed(("t", 1))
    sub.disconnect()
    pub = harness.open()
    pub.connect("pub", level=5)
    expiring = Properties(message_expiry_interval=1)
    pub.send(Publish("t", b"gone", 1, packet_id=1, properties=expiring))
    # Much later, by the wall clock delivery reads:
    harness.broker.delivery.wall_clock = lambda: WALL_START * 2
    back = harness.open()
    assert back.connect("sub", clean_session=False) == [ConnAck(0, True)]
    assert harness.broker.stats.dropped_expired == 1


def test_expired_sessions_are_counted(make_harness: MakeHarness) -> None:
    harness = make_harness(persistent_session_expiry=60)
    harness.connect("gone", clean_session=False).disconnect()
    harness.broker.expire_sessions(harness.broker.wall_clock() + 61)
    assert harness.broker.stats.clients_expired == 1
    assert "gone" not in harness.broker.sessions


def test_sys_messages_reach_subscribers_retained_but_count_as_no_received_traffic(
    harness: Harness,
) -> None:
    watcher = harness.connect("watcher")
    watcher.subscribed("$SYS/#", "#")
    before = Stats()
    sys_publish(harness, "$SYS/broker/uptime", b"5 seconds")
    assert watcher.received() == [Publish("$SYS/broker/uptime", b"5 seconds")]
    stats = harness.broker.stats
    assert stats.messages_received == before.messages_received
    assert stats.publish_received == 0
    assert stats.publish_sent == 1  # a delivery like any other
    late = harness.connect("late")
    answer = late.subscribe("$SYS/broker/#")
    assert answer[1:] == [Publish("$SYS/broker/uptime", b"5 seconds", retain=True)]


def test_hash_does_not_receive_sys(harness: Harness) -> None:
    everything = harness.connect("all")
    everything.subscribed("#", "+/broker/#")
    sys_publish(harness, "$SYS/broker/uptime", b"1 seconds")
    assert everything.received() == []


def test_sys_retained_messages_are_never_stored(tmp_path: Path) -> None:
    box = StoreBox("memory", tmp_path / "store.db")
    harness = Harness(BrokerConfig(), box=box, wall=WALL_START)
    applied: list[Operation] = []
    original = box.store.apply

    def apply(operations: list[Operation]) -> None:
        applied.extend(operations)
        original(operations)

    box.store.apply = apply  # type: ignore[method-assign]
    sys_publish(harness, "$SYS/broker/version", b"midge version 0")
    harness.connect("c").published("kept", b"1", 0, retain=True)
    assert [op.message.topic for op in applied if isinstance(op, RetainedSet)] == ["kept"]
    harness.restart()
    assert [message.topic for message in harness.broker.retained] == ["kept"]


def test_the_writer_times_its_commits() -> None:
    writer = GroupCommitWriter(MemoryStore())
    committed: list[int] = []
    writer.start(committed.append)
    writer.submit(1, [])
    writer.submit(2, [])
    writer.stop()
    assert writer.commits >= 1 and writer.commit_count == writer.commits
    assert sum(writer.commit_latency_buckets) == writer.commits
    assert len(writer.commit_latency_buckets) == len(COMMIT_LATENCY_BOUNDS) + 1
    assert 0 < writer.commit_seconds_total < 1
    assert committed[-1] == 2


def test_every_counter_starts_at_zero_and_is_an_int() -> None:
    stats = Stats()
    for name in stats.__dataclass_fields__:  # type: ignore[attr-defined]
        value = getattr(stats, name)
        assert value in (0, {}), name
