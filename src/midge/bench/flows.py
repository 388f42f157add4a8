"""What every scenario is made of: its parameters, its target, its outcome, and flows.

A scenario is a function `(Target, Params) -> Outcome`. A flow (`run_flow`)
starts its workers (`loadgen.Swarm`), lets them connect and subscribe,
starts them all at once, and when the publishers are done tells each
subscriber how many messages it should have; a subscriber stops when it has
them, or after `quiet` seconds without data (the rest is lost), or at its
hard deadline. `run_pair` does the same for one QoS 1/2 publisher and its
subscriber driven by one process. Every rate is measured from the first
publish to the last message received.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from midge.bench.brokers import RunningBroker, cpu_seconds, rss_kib
from midge.bench.loadgen import Swarm
from midge.bench.publishing import pair_main
from midge.bench.specs import SETUP_TIMEOUT, PublisherSpec, SubscriberConn, SubscriberSpec, now_ns
from midge.bench.wire import HOST, MQTT_3_1_1, PublishShape


@dataclass(frozen=True, slots=True)
class Params:
    duration: float = 5.0  # seconds of publishing (throughput and latency scenarios)
    payload: int = 64  # bytes per message
    window: int = 100  # QoS 1 publisher: messages in flight end to end at most
    # QoS 2 publisher: the same. Mosquitto counts incoming QoS 2 messages awaiting
    # PUBREL against max_inflight_messages (20) and drops the ones beyond it
    # while still answering PUBREC, so a larger window loses messages there.
    qos2_window: int = 20
    # qos1/qos2-overload-N publishers: messages without their broker acknowledgement
    # (QoS 2: flows without PUBCOMP) at most, each; not end to end, so they outrun
    # the subscriber unless the broker holds them back.
    overload_window: int = 64
    rate: float = 1000.0  # latency: messages per second
    publishers: int = 4  # qos0-fan-in
    subscribers: int = 8  # qos0-fan-out
    connections: int = 5000  # connections scenario
    wildcard_connections: int = 100  # wildcard: connections (even) ...
    wildcard_filters: int = 100  # ... and distinct filters each
    retained: int = 100_000  # retained scenario
    max_messages: int = 10_000_000  # per publisher, at most (whichever comes first)
    quiet: float = 2.0  # seconds without data after which a subscriber stops
    timeout: float = 120.0  # hard limit for one phase of a scenario
    protocol: int = MQTT_3_1_1  # what every client speaks: 4 (MQTT 3.1.1) or 5 (MQTT 5.0)


@dataclass(frozen=True, slots=True)
class Target:
    host: str = HOST
    port: int = 1883
    pid: int | None = None  # known for brokers we started: RSS and CPU from /proc
    # A cluster: subscribers connect to this other node (publishers to host:port),
    # so that every message crosses nodes. None: the same address.
    sub_host: str | None = None
    sub_port: int | None = None
    # More processes the broker is made of (other nodes, Redis), by name: each
    # one's CPU share is reported beside the broker's, as NAME_cpu.
    helpers: tuple[tuple[str, int], ...] = ()

    @property
    def subscriber_address(self) -> tuple[str, int]:
        return self.sub_host or self.host, self.sub_port or self.port


@dataclass(frozen=True, slots=True)
class Deployment:
    """A broker under test as the runner started it: where the scenario points, and
    every process it is made of (one broker; or nodes and Redis), checked alive after."""

    target: Target
    processes: tuple[RunningBroker, ...]


@dataclass(slots=True)
class Outcome:
    values: dict[str, float]
    expected: int = 0  # messages that should have arrived
    lost: int = 0
    duplicates: int = 0  # messages beyond the expected ones (QoS 0: extra deliveries)
    info: dict[str, Any] = field(default_factory=dict)  # CPU shares, details


RATE = "msg_per_s"
PUBLISH_RATE = "publish_msg_per_s"


# ------------------------------------------------------------------ flows


@dataclass(slots=True)
class Flow:
    publishers: list[dict[str, Any]]
    connections: list[dict[str, Any]]  # every subscriber connection, in order
    subscribed: list[dict[str, Any]]
    info: dict[str, Any]

    @property
    def start_ns(self) -> int:
        return min(int(pub["start_ns"]) for pub in self.publishers)

    @property
    def sent(self) -> int:
        return sum(pub["sent"] for pub in self.publishers)

    @property
    def received(self) -> int:
        return sum(conn["received"] for conn in self.connections)

    @property
    def distinct(self) -> int:
        return sum(conn["distinct"] for conn in self.connections)

    @property
    def expected(self) -> int:
        return sum(max(0, conn["expected"]) for conn in self.connections)

    def delivery_rate(self) -> float:
        """Messages received per second, from the first publish to the last arrival."""
        last = max((int(c["last_ns"]) for c in self.connections if c["received"]), default=0)
        if not last:
            return 0.0
        return self.distinct / max(1e-9, (last - self.start_ns) / 1e9)

    def publish_rate(self) -> float:
        """Messages the broker took per second (until the publishers' last acknowledgement)."""
        done = max(pub["done_ns"] for pub in self.publishers)
        return float(self.sent / max(1e-9, (done - self.start_ns) / 1e9))

    def outcome(self, values: dict[str, float]) -> Outcome:
        """Lost and surplus messages, connection by connection: a subscriber that got
        too many (a duplicate, or a message its filters should not have matched)
        does not hide one that got too few."""
        lost = surplus = 0
        for conn in self.connections:
            expected, distinct, received = conn["expected"], conn["distinct"], conn["received"]
            if expected >= 0:
                lost += max(0, expected - distinct)
                surplus += max(0, received - distinct, received - expected)
            else:
                surplus += max(0, received - distinct)
        return Outcome(values, self.expected, lost, surplus, dict(self.info))


def run_flow(
    target: Target,
    params: Params,
    subscribers: list[SubscriberSpec],
    publishers: list[PublisherSpec],
    expect: Callable[[list[dict[str, Any]]], list[dict[int, int]]],
) -> Flow:
    """Subscribers subscribe, publishers connect, all start at once; see the module doc."""
    with Swarm() as swarm:
        swarm.subscribers(subscribers)
        subscribed = swarm.wait("subscribed", "subscriber", len(subscribers), SETUP_TIMEOUT)
        swarm.publishers(publishers)
        swarm.wait("ready", "publisher", len(publishers), SETUP_TIMEOUT)
        with Clock(target) as clock:
            swarm.go.set()
            pubs = swarm.wait("result", "publisher", len(publishers), params.timeout)
            # One broker: its CPU while the publishers ran. Across nodes the
            # subscribers' node delivers well after the publishers' node took the
            # messages (they wait in Redis): the clock runs until the subscribers are done.
            if target.sub_port is None:
                clock.stop()
            for index, mapping in enumerate(expect(pubs)):
                swarm.send("subscriber", index, ("expect", mapping))
            subs = swarm.wait("result", "subscriber", len(subscribers), params.timeout)
    connections = [conn for sub in subs for conn in sub["connections"]]
    return Flow(pubs, connections, subscribed, clock.info([*pubs, *subs]))


def run_pair(
    target: Target, params: Params, publisher: PublisherSpec, subscriber: SubscriberSpec
) -> Flow:
    """One publisher and one subscriber driven by one process (QoS 1/2 end to end)."""
    with Swarm() as swarm:
        swarm.spawn("pair", 0, pair_main, publisher, subscriber, swarm.go)
        swarm.wait("ready", "pair", 1, SETUP_TIMEOUT)
        with Clock(target) as clock:
            swarm.go.set()
            result = swarm.wait("result", "pair", 1, params.duration + 2 * params.timeout)[0]
    return Flow([result], [result["connection"]], [], clock.info([result]))


class Clock:
    """The broker's CPU time (and its helpers') and the wall time around the timed
    part of a flow: until `stop()`, or the end of the block, whichever is first."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.cpu_before: dict[str, float | None] = {}
        self.cpu_after: dict[str, float | None] = {}
        self.started_ns = self.ended_ns = 0

    def _cpu(self) -> dict[str, float | None]:
        pids = [("broker", self.target.pid), *self.target.helpers]
        return {name: process_cpu(pid) for name, pid in pids}

    def __enter__(self) -> Clock:
        self.cpu_before = self._cpu()
        self.started_ns = now_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self.ended_ns:
            self.ended_ns = now_ns()
            self.cpu_after = self._cpu()

    def info(self, reports: list[dict[str, Any]]) -> dict[str, Any]:
        """Broker CPU share while the clock ran (and each helper's, as NAME_cpu);
        the generator's CPUs until it ended."""
        busy = max(1e-9, (self.ended_ns - self.started_ns) / 1e9)
        ended = max(int(r.get("end_ns", r.get("done_ns", 0))) for r in reports)
        generator = sum(float(r["cpu_seconds"]) for r in reports)
        info: dict[str, Any] = {
            "generator_cpu": generator / max(1e-9, (ended - self.started_ns) / 1e9),
            "generator_processes": len(reports),
        }
        for name, before in self.cpu_before.items():
            after = self.cpu_after.get(name)
            if before is not None and after is not None:
                info[f"{name}_cpu"] = (after - before) / busy
        return info


def process_cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        return cpu_seconds(pid)
    return None


def broker_rss(target: Target) -> int | None:
    if target.pid is None:
        return None
    with contextlib.suppress(OSError):
        return rss_kib(target.pid)
    return None


def sub_spec(
    index: int,
    target: Target,
    params: Params,
    conns: list[SubscriberConn],
    mode: str = "count",
    shape: PublishShape | None = None,
    first_byte: int = 0x30,
) -> SubscriberSpec:
    host, port = target.subscriber_address
    return SubscriberSpec(
        index,
        host,
        port,
        tuple(conns),
        mode,
        shape,
        first_byte,
        params.quiet,
        params.duration + params.timeout,
        protocol=params.protocol,
    )


def pub_spec(
    index: int, target: Target, params: Params, client_id: str, topics: list[str], **kw: Any
) -> PublisherSpec:
    return PublisherSpec(
        index,
        target.host,
        target.port,
        client_id,
        tuple(topics),
        params.payload,
        duration=params.duration,
        max_messages=params.max_messages,
        drain=params.timeout,
        protocol=params.protocol,
        **kw,
    )


def split(items: list[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items)))
    return [items[index::parts] for index in range(parts)]
