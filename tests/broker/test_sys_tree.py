"""$SYS/broker/...: names, payload formats, changed-only rounds and load averages
(broker/sys_topics.py), on readings of a sans-IO broker or made up."""

from __future__ import annotations

import math
import re

import pytest

from midge import __version__
from midge.broker.sys_topics import LOADS, MOSQUITTO_VALUES, SysTree, read_broker
from sansio import Harness

# What Mosquitto 2.0.11 published under $SYS/broker/ with sys_interval 1 (heap/*
# only when it knows its memory): Midge publishes every one of them.
MOSQUITTO_2_0_TOPICS = [
    "bytes/received",
    "bytes/sent",
    "clients/active",
    "clients/connected",
    "clients/disconnected",
    "clients/expired",
    "clients/inactive",
    "clients/maximum",
    "clients/total",
    "messages/received",
    "messages/sent",
    "messages/stored",
    "publish/bytes/received",
    "publish/bytes/sent",
    "publish/messages/dropped",
    "publish/messages/received",
    "publish/messages/sent",
    "retained messages/count",
    "shared_subscriptions/count",
    "store/messages/bytes",
    "store/messages/count",
    "subscriptions/count",
    "uptime",
    "version",
    *(
        f"load/{name}/{window}"
        for name in (
            "bytes/received",
            "bytes/sent",
            "connections",
            "messages/received",
            "messages/sent",
            "publish/dropped",
            "publish/received",
            "publish/sent",
            "sockets",
        )
        for window in ("1min", "5min", "15min")
    ),
]

INTEGER = re.compile(rb"\d+")
LOAD = re.compile(rb"\d+\.\d\d")


def first_round(harness: Harness, memory: tuple[int, int] | None = None) -> dict[str, bytes]:
    tree = SysTree("1.2.3", started=harness.now)
    return dict(tree.update(read_broker(harness.broker, None, memory), harness.now))


def test_the_first_round_publishes_every_name_mosquitto_publishes(harness: Harness) -> None:
    published = first_round(harness, memory=(1000, 2000))
    names = {topic.removeprefix("$SYS/broker/") for topic in published}
    assert set(MOSQUITTO_2_0_TOPICS) <= names
    assert {"heap/current", "heap/maximum", "messages/inflight"} <= names


def test_payloads_are_in_mosquittos_formats(harness: Harness) -> None:
    published = first_round(harness, memory=(1000, 2000))
    assert published["$SYS/broker/version"] == b"midge version 1.2.3"
    assert published["$SYS/broker/uptime"] == b"0 seconds"
    assert published["$SYS/broker/heap/current"] == b"1000"
    for topic, payload in published.items():
        if "/load/" in topic:
            assert payload == b"0.00", topic  # as Mosquitto's first round
        elif topic.removeprefix("$SYS/broker/") not in ("version", "uptime"):
            assert INTEGER.fullmatch(payload), (topic, payload)


def test_every_topic_is_under_sys_broker_and_midges_own_under_midge(harness: Harness) -> None:
    published = first_round(harness)
    assert all(topic.startswith("$SYS/broker/") for topic in published)
    mosquitto = {f"$SYS/broker/{topic}" for topic, _ in MOSQUITTO_VALUES}
    loads = {f"$SYS/broker/load/{topic}/" for topic, _ in LOADS}
    for topic in published:
        known = topic in mosquitto or topic.rpartition("/")[0] + "/" in loads
        assert (
            known
            or topic.startswith("$SYS/broker/midge/")
            or topic.endswith(("/version", "/uptime"))
        ), topic


def test_heap_is_left_out_when_the_memory_is_unknown(harness: Harness) -> None:
    published = first_round(harness, memory=None)
    assert not [topic for topic in published if "/heap/" in topic]


def test_the_counts_read_the_broker(harness: Harness) -> None:
    sub = harness.connect("sub")
    sub.subscribed("a/#", ("$share/g/b", 1))
    pub = harness.connect("pub")
    pub.published("a/1", b"hello", 1)
    pub.published("kept", b"r", 0, retain=True)
    sub.received()
    published = first_round(harness)

    def value(name: str) -> int:
        return int(published[f"$SYS/broker/{name}"])

    assert value("clients/connected") == value("clients/total") == 2
    assert value("clients/disconnected") == 0
    assert value("clients/maximum") == 2
    assert value("subscriptions/count") == 2
    assert value("shared_subscriptions/count") == 1
    assert value("retained messages/count") == 1
    assert value("store/messages/count") == 1  # the retained one; nothing queued
    assert value("store/messages/bytes") == len(b"kept") + len(b"r")
    assert value("publish/messages/received") == 2
    assert value("publish/messages/sent") == 1
    assert value("publish/bytes/received") == len(b"hello") + len(b"r")
    assert value("midge/messages/routed") == 2
    assert value("bytes/received") > value("publish/bytes/received")
    # CONNECT, SUBSCRIBE, CONNECT, PUBLISH, PUBLISH: packets of every type.
    assert value("messages/received") == 5
    # CONNACK, SUBACK, CONNACK, PUBACK, PUBLISH.
    assert value("messages/sent") == 5


def test_after_the_first_round_only_what_changed_is_published(harness: Harness) -> None:
    tree = SysTree("1.2.3", started=harness.now)
    tree.update(read_broker(harness.broker), harness.now)
    harness.connect("one")
    changed = dict(tree.update(read_broker(harness.broker), harness.now + 10))
    assert "$SYS/broker/version" not in changed
    assert changed["$SYS/broker/uptime"] == b"10 seconds"
    assert changed["$SYS/broker/clients/connected"] == b"1"
    assert changed["$SYS/broker/clients/maximum"] == b"1"
    assert "$SYS/broker/clients/expired" not in changed
    assert "$SYS/broker/retained messages/count" not in changed
    # Two packets in the last 10 s: load moved off 0.00.
    assert changed["$SYS/broker/load/messages/received/1min"] != b"0.00"
    again = dict(tree.update(read_broker(harness.broker), harness.now + 10))
    assert set(again) <= {"$SYS/broker/uptime"} | {t for t in again if "/load/" in t}
    assert "$SYS/broker/clients/connected" not in again


def readings(**values: int) -> dict[str, int]:
    return values


def test_load_averages_are_mosquittos_moving_averages_of_a_per_minute_rate() -> None:
    tree = SysTree("x", started=0.0)
    first = dict(tree.update(readings(packets_received=0), 0.0))
    assert first["$SYS/broker/load/messages/received/1min"] == b"0.00"
    # 100 packets in 10 s: 600 a minute, folded in with weight exp(-10 / window).
    loads = dict(tree.update(readings(packets_received=100), 10.0))
    for window, seconds in (("1min", 60), ("5min", 300), ("15min", 900)):
        expected = 600 * (1 - math.exp(-10 / seconds))
        assert loads[f"$SYS/broker/load/messages/received/{window}"] == b"%.2f" % expected
    # No traffic for the next 50 s: each average decays towards 0.
    later = dict(tree.update(readings(packets_received=100), 60.0))
    one_minute = 600 * (1 - math.exp(-10 / 60)) * math.exp(-50 / 60)
    assert later["$SYS/broker/load/messages/received/1min"] == b"%.2f" % one_minute


def test_a_steady_rate_converges_to_itself() -> None:
    tree = SysTree("x", started=0.0)
    tree.update(readings(bytes_sent=0), 0.0)
    for step in range(1, 200):
        tree.update(readings(bytes_sent=step * 1000), step * 10.0)  # 6000 bytes a minute
    load = dict(tree.update(readings(bytes_sent=200 * 1000), 2000.0))
    assert float(load.get("$SYS/broker/load/bytes/sent/1min", b"6000.00")) == pytest.approx(6000)


def test_sockets_and_connections_loads() -> None:
    tree = SysTree("x", started=0.0)
    tree.update(readings(connections_accepted=0, connects=0), 0.0)
    loads = dict(tree.update(readings(connections_accepted=6, connects=3), 60.0))
    weight = 1 - math.exp(-1)
    assert loads["$SYS/broker/load/sockets/1min"] == b"%.2f" % (6 * weight)
    assert loads["$SYS/broker/load/connections/1min"] == b"%.2f" % (3 * weight)


def test_refused_connections_are_published_per_reason() -> None:
    tree = SysTree("x", started=0.0)
    published = dict(tree.update({"refused/not_authorized": 2}, 0.0))
    assert published["$SYS/broker/midge/connections/refused/not_authorized"] == b"2"


def test_commit_latency_is_the_mean_of_the_last_rounds_commits() -> None:
    tree = SysTree("x", started=0.0)
    first = dict(tree.update(readings(store_commits=0, store_commit_us=0), 0.0))
    assert "$SYS/broker/midge/store/commit_latency/average" not in first  # no commit yet
    published = dict(tree.update(readings(store_commits=4, store_commit_us=6000), 10.0))
    assert published["$SYS/broker/midge/store/commit_latency/average"] == b"1.500"
    assert published["$SYS/broker/midge/store/commits"] == b"4"
    idle = dict(tree.update(readings(store_commits=4, store_commit_us=6000), 20.0))
    assert "$SYS/broker/midge/store/commit_latency/average" not in idle


def test_the_version_is_midges(harness: Harness) -> None:
    tree = SysTree(__version__, started=harness.now)
    published = dict(tree.update(read_broker(harness.broker), harness.now))
    assert published["$SYS/broker/version"] == f"midge version {__version__}".encode()
