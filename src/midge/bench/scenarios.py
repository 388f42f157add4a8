"""The benchmark scenarios: each runs against any broker, stops by itself, counts losses.

A scenario is a function `(Target, Params) -> Outcome`. It starts its
workers (`loadgen.Swarm`), lets them connect and subscribe, starts them all
at once, and when the publishers are done tells each subscriber how many
messages it should have; a subscriber stops when it has them, or after
`quiet` seconds without data (the rest is lost), or at its hard deadline.
Every rate is measured from the first publish to the last message received.

| scenario | what |
|---|---|
| qos0-fan-in | 4 publishers flood QoS 0 to their own topics; 1 subscriber to `bench/in/+` |
| qos0-fan-out | 1 publisher floods QoS 0 to one topic; 8 subscribers to it |
| qos1 | 1 publisher, QoS 1, `window` unacknowledged at most; 1 subscriber acknowledging |
| qos2 | the same with QoS 2 (PUBREC / PUBREL / PUBCOMP both ways) |
| latency | 1 publisher paced at `rate` msg/s, QoS 0, a timestamp in each payload |
| connections | `connections` idle clients connect; rate, and the broker's RSS per connection |
| wildcard | 100 connections x 100 distinct filters (+ and #); each message matches 2 |
| retained | `retained` retained messages stored, then a `#` subscriber gets them all |
| persistent-qos1 | qos1 to a clean-session-0 subscriber; Midge on its SQLite store |
| slow-consumer | qos0-fan-out twice: as is, then with 1 more subscriber that never reads |
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from midge.bench.brokers import BrokerSettings, cpu_seconds, rss_kib
from midge.bench.loadgen import (
    SETUP_TIMEOUT,
    OpenerSpec,
    PublisherSpec,
    SinkSpec,
    SubscriberConn,
    SubscriberSpec,
    Swarm,
    make_counter,
    now_ns,
    pair_main,
    receive_all,
    sink,
)
from midge.bench.wire import (
    BATCH_BYTES,
    HOST,
    BenchError,
    Client,
    PublishShape,
    percentile,
    publish_stream,
)
from midge.protocol.codec import encode
from midge.protocol.packets import Connect


@dataclass(frozen=True, slots=True)
class Params:
    duration: float = 5.0  # seconds of publishing (throughput and latency scenarios)
    payload: int = 64  # bytes per message
    window: int = 100  # QoS 1 publisher: messages in flight end to end at most
    # QoS 2 publisher: the same. Mosquitto counts incoming QoS 2 messages awaiting
    # PUBREL against max_inflight_messages (20) and drops the ones beyond it
    # while still answering PUBREC, so a larger window loses messages there.
    qos2_window: int = 20
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


@dataclass(frozen=True, slots=True)
class Target:
    host: str = HOST
    port: int = 1883
    pid: int | None = None  # known for brokers we started: RSS and CPU from /proc


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool


@dataclass(slots=True)
class Outcome:
    values: dict[str, float]
    expected: int = 0  # messages that should have arrived
    lost: int = 0
    duplicates: int = 0  # messages beyond the expected ones (QoS 0: extra deliveries)
    info: dict[str, Any] = field(default_factory=dict)  # CPU shares, details


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Target, Params], Outcome]
    metrics: tuple[Metric, ...]  # the first is the headline
    settings: BrokerSettings = field(default_factory=BrokerSettings)
    loss_allowed: bool = False  # QoS 0 under overload may drop; QoS 1/2 may not


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
        with _Clock(target) as clock:
            swarm.go.set()
            pubs = swarm.wait("result", "publisher", len(publishers), params.timeout)
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
        with _Clock(target) as clock:
            swarm.go.set()
            result = swarm.wait("result", "pair", 1, params.duration + 2 * params.timeout)[0]
    return Flow([result], [result["connection"]], [], clock.info([result]))


class _Clock:
    """The broker's CPU time and the wall time around the timed part of a flow."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.cpu_before: float | None = None
        self.cpu_after: float | None = None
        self.started_ns = self.ended_ns = 0

    def __enter__(self) -> _Clock:
        self.cpu_before = _cpu(self.target)
        self.started_ns = now_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ended_ns = now_ns()
        self.cpu_after = _cpu(self.target)

    def info(self, reports: list[dict[str, Any]]) -> dict[str, Any]:
        """Broker CPU share while the publishers ran; the generator's CPUs until it ended."""
        busy = max(1e-9, (self.ended_ns - self.started_ns) / 1e9)
        ended = max(int(r.get("end_ns", r.get("done_ns", 0))) for r in reports)
        generator = sum(float(r["cpu_seconds"]) for r in reports)
        info: dict[str, Any] = {
            "generator_cpu": generator / max(1e-9, (ended - self.started_ns) / 1e9),
            "generator_processes": len(reports),
        }
        if self.cpu_before is not None and self.cpu_after is not None:
            info["broker_cpu"] = (self.cpu_after - self.cpu_before) / busy
        return info


def _cpu(target: Target) -> float | None:
    if target.pid is None:
        return None
    with contextlib.suppress(OSError):
        return cpu_seconds(target.pid)
    return None


def _sub(
    index: int,
    target: Target,
    params: Params,
    conns: list[SubscriberConn],
    mode: str = "count",
    shape: PublishShape | None = None,
    first_byte: int = 0x30,
) -> SubscriberSpec:
    return SubscriberSpec(
        index,
        target.host,
        target.port,
        tuple(conns),
        mode,
        shape,
        first_byte,
        params.quiet,
        params.duration + params.timeout,
    )


def _pub(
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
        **kw,
    )


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items)))
    return [items[index::parts] for index in range(parts)]


# ------------------------------------------------------------------ QoS 0


def qos0_fan_in(target: Target, params: Params) -> Outcome:
    topics = [f"bench/in/{index}" for index in range(params.publishers)]
    width = len(topics[-1])
    topics = [topic.ljust(width, "_") for topic in topics]  # one length: one packet size
    shape = PublishShape.of(width, params.payload, 0)
    conn = SubscriberConn("bench-fan-in-sub", (("bench/in/+", 0),))
    subs = [_sub(0, target, params, [conn], shape=shape)]
    pubs = [
        _pub(i, target, params, f"bench-fan-in-pub-{i}", [topic]) for i, topic in enumerate(topics)
    ]
    flow = run_flow(target, params, subs, pubs, lambda done: [{0: sum(p["sent"] for p in done)}])
    return flow.outcome({RATE: flow.delivery_rate(), PUBLISH_RATE: flow.publish_rate()})


def _fan_out_flow(target: Target, params: Params, prefix: str = "bench-fan-out") -> Flow:
    topic = FAN_OUT_TOPIC
    shape = PublishShape.of(len(topic), params.payload, 0)
    conns = [SubscriberConn(f"{prefix}-sub-{i}", ((topic, 0),)) for i in range(params.subscribers)]
    groups = _split(conns, 2)
    subs = [_sub(i, target, params, group, shape=shape) for i, group in enumerate(groups)]
    pubs = [_pub(0, target, params, f"{prefix}-pub", [topic])]

    def expect(done: list[dict[str, Any]]) -> list[dict[int, int]]:
        return [dict.fromkeys(range(len(group)), done[0]["sent"]) for group in groups]

    return run_flow(target, params, subs, pubs, expect)


def qos0_fan_out(target: Target, params: Params) -> Outcome:
    flow = _fan_out_flow(target, params)
    return flow.outcome({RATE: flow.delivery_rate(), PUBLISH_RATE: flow.publish_rate()})


# ------------------------------------------------------------------ slow consumer

FAN_OUT_TOPIC = "bench/out"
SLOW_RCVBUF = 4096  # SO_RCVBUF of the subscriber that never reads
RSS_INTERVAL = 0.05  # seconds between two samples of the broker's RSS


def slow_subscriber(target: Target, client_id: str, topic: str) -> Client:
    """A subscriber with a small receive buffer (set before connecting, so the window
    it announces is small too) that subscribes and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        sock.settimeout(SETUP_TIMEOUT)
        sock.connect((target.host, target.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(encode(Connect(client_id)))
    except BaseException:
        sock.close()
        raise
    client = Client(sock, client_id)
    try:
        client.expect_connack()
        client.subscribe([(topic, 0)], SETUP_TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return client


class _RssPeak:
    """The broker's highest VmRSS while the block runs, sampled by a thread."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.peak: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)

    def _sample(self) -> None:
        while True:
            rss = _rss(self.target)
            if rss is not None:
                self.peak = rss if self.peak is None else max(self.peak, rss)
            if self.stop.wait(RSS_INTERVAL):
                return

    def __enter__(self) -> _RssPeak:
        if self.target.pid is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(5.0)
        rss = _rss(self.target)  # the last word, after the publishers' drain
        if rss is not None:
            self.peak = rss if self.peak is None else max(self.peak, rss)


def slow_consumer(target: Target, params: Params) -> Outcome:
    """qos0-fan-out twice: as is, then with one more subscriber to the same topic
    that never reads (SO_RCVBUF 4096). The reading subscribers' rate with it
    over their rate without it, their losses, and the broker's RSS growth
    (peak during the slow phase minus RSS before it) when its PID is known."""
    baseline = _fan_out_flow(target, params, "bench-slow-base")
    rss_base = _rss(target)
    slow = slow_subscriber(target, "bench-slow-consumer", FAN_OUT_TOPIC)
    try:
        rss_before = _rss(target)
        with _RssPeak(target) as peak:
            loaded = _fan_out_flow(target, params, "bench-slow-with")
    finally:
        slow.sock.close()  # no DISCONNECT: the broker may not be reading it any more
    rate_base, rate_slow = baseline.delivery_rate(), loaded.delivery_rate()
    values = {
        RATE: rate_slow,
        "baseline_msg_per_s": rate_base,
        "slow_ratio": rate_slow / rate_base if rate_base else float("nan"),
    }
    first, second = baseline.outcome({}), loaded.outcome({})
    values["lost_with_slow"] = float(second.lost)
    info: dict[str, Any] = dict(loaded.info) | {
        "baseline": {"expected": first.expected, "lost": first.lost, **baseline.info},
        "with_slow": {"expected": second.expected, "lost": second.lost},
        "slow_rcvbuf": SLOW_RCVBUF,
        "reading_subscribers": params.subscribers,
    }
    if rss_before is not None and peak.peak is not None:
        values["rss_growth_kib"] = float(peak.peak - rss_before)
        info |= {"rss_baseline_end_kib": rss_base, "rss_before_kib": rss_before}
        info["rss_peak_kib"] = peak.peak
    return Outcome(
        values,
        first.expected + second.expected,
        first.lost + second.lost,
        first.duplicates + second.duplicates,
        info,
    )


# ------------------------------------------------------------------ QoS 1 / 2


def _end_to_end(target: Target, params: Params, qos: int, persistent: bool) -> Outcome:
    topic = f"bench/qos{qos}"
    # QoS 2 streams mix PUBLISH and PUBREL: counted packet by packet.
    shape = PublishShape.of(len(topic), params.payload, qos) if qos == 1 else None
    sub_id = "bench-persistent-sub" if persistent else f"bench-qos{qos}-sub"
    conn = SubscriberConn(sub_id, ((topic, qos),), clean_session=not persistent)
    subs = [_sub(0, target, params, [conn], "ack", shape, 0x30 | qos << 1)]
    window = params.qos2_window if qos == 2 else params.window
    pub = _pub(0, target, params, f"bench-qos{qos}-pub", [topic], qos=qos, window=window)
    flow = run_pair(target, params, pub, subs[0])
    return flow.outcome({RATE: flow.delivery_rate()})


def qos1(target: Target, params: Params) -> Outcome:
    return _end_to_end(target, params, 1, persistent=False)


def qos2(target: Target, params: Params) -> Outcome:
    return _end_to_end(target, params, 2, persistent=False)


def persistent_qos1(target: Target, params: Params) -> Outcome:
    return _end_to_end(target, params, 1, persistent=True)


# ------------------------------------------------------------------ latency


def latency(target: Target, params: Params) -> Outcome:
    topic = "bench/latency"
    conn = SubscriberConn("bench-latency-sub", ((topic, 0),))
    subs = [_sub(0, target, params, [conn], "latency")]
    pubs = [_pub(0, target, params, "bench-latency-pub", [topic], rate=params.rate)]
    flow = run_flow(target, params, subs, pubs, lambda done: [{0: done[0]["sent"]}])
    samples = sorted(ns / 1000 for c in flow.connections for ns in c["latencies_ns"])
    values = {
        "p50_us": percentile(samples, 0.50),
        "p99_us": percentile(samples, 0.99),
        "max_us": samples[-1] if samples else float("nan"),
        "mean_us": statistics.fmean(samples) if samples else float("nan"),
    }
    return flow.outcome(values)


# ------------------------------------------------------------------ connections


def connections(target: Target, params: Params) -> Outcome:
    """Open `connections` idle clients (2 processes, 25 handshakes in flight each);
    the broker's RSS before and after gives its memory per connection."""
    count = params.connections
    shares = [count // 2, count - count // 2] if count > 1 else [count]
    specs = [
        OpenerSpec(i, target.host, target.port, share, f"bench-idle-{i}", hold=params.timeout)
        for i, share in enumerate(shares)
    ]
    with Swarm() as swarm:
        swarm.openers(specs)
        swarm.wait("ready", "opener", len(specs), SETUP_TIMEOUT)
        rss_before = _rss(target)
        with _Clock(target) as clock:
            swarm.go.set()
            opened = swarm.wait("connected", "opener", len(specs), params.timeout)
        time.sleep(1.0)  # let the broker settle (buffers, lazy allocations)
        rss_after = _rss(target)
        for spec in specs:
            swarm.send("opener", spec.index, ("close",))
        swarm.wait("result", "opener", len(specs), params.timeout)
    start = min(o["start_ns"] for o in opened)
    end = max(o["end_ns"] for o in opened)
    values = {"connections_per_s": count / max(1e-9, (end - start) / 1e9)}
    info = clock.info(opened) | {"connections": count}
    if rss_before is not None and rss_after is not None:
        values["kib_per_connection"] = (rss_after - rss_before) / count
        info |= {"rss_before_kib": rss_before, "rss_after_kib": rss_after}
    return Outcome(values, info=info)


def _rss(target: Target) -> int | None:
    if target.pid is None:
        return None
    with contextlib.suppress(OSError):
        return rss_kib(target.pid)
    return None


# ------------------------------------------------------------------ wildcard


@dataclass(frozen=True, slots=True)
class WildcardPlan:
    """Half the connections are rows, half columns; topics are `r/ROW/COL`.

    Row connection r holds `r/ROW/+`, column connection c holds `r/+/COL/#`,
    so every topic matches exactly two connections, each by exactly one of
    its filters (no overlap inside one client, where brokers may differ).
    Every connection also holds `filters - 1` distinct filters that match no
    published topic but populate the tree at every level, with + and #.
    """

    connections: int
    filters: int

    @property
    def rows(self) -> int:
        return self.connections // 2

    @property
    def width(self) -> int:
        return len(str(max(self.rows, 1) - 1))

    def topics(self) -> list[str]:
        w = self.width
        return [f"r/{row:0{w}}/{col:0{w}}" for row in range(self.rows) for col in range(self.rows)]


def _wildcard_filters(plan: WildcardPlan, conn: int) -> list[str]:
    w = plan.width
    row, is_column = conn % plan.rows, conn >= plan.rows
    own = f"r/+/{row:0{w}}/#" if is_column else f"r/{row:0{w}}/+"
    out = [own]
    for f in range(1, plan.filters):
        kind = f % 5
        if kind == 0:
            out.append(f"r/{conn:0{w}}/+/n{f}")
        elif kind == 1:
            out.append(f"+/{conn:0{w}}/n{f}")
        elif kind == 2:
            out.append(f"r/+/n{conn}x{f}/#")
        elif kind == 3:
            out.append(f"n/{conn}/{f}/#")
        else:
            out.append(f"r/{conn:0{w}}/{f}x")
    return out


def wildcard(target: Target, params: Params) -> Outcome:
    plan = WildcardPlan(
        max(2, params.wildcard_connections // 2 * 2), max(1, params.wildcard_filters)
    )
    topics = plan.topics()
    shape = PublishShape.of(len(topics[0]), params.payload, 0)
    conns = [
        SubscriberConn(f"bench-wild-{conn}", tuple((f, 0) for f in _wildcard_filters(plan, conn)))
        for conn in range(plan.connections)
    ]
    # One process: the subscribe time is then one measurement, not several overlapping.
    subs = [_sub(0, target, params, conns, shape=shape)]
    pubs = [_pub(0, target, params, "bench-wild-pub", topics)]

    def expect(done: list[dict[str, Any]]) -> list[dict[int, int]]:
        per_topic = done[0]["sent"] // len(topics)  # whole blocks of every topic
        return [dict.fromkeys(range(plan.connections), per_topic * plan.rows)]

    flow = run_flow(target, params, subs, pubs, expect)
    subscribed = flow.subscribed[0]
    sub_seconds = (subscribed["end_ns"] - subscribed["start_ns"]) / 1e9
    values = {
        RATE: flow.delivery_rate(),
        PUBLISH_RATE: flow.publish_rate(),
        "subscriptions_per_s": plan.connections * plan.filters / max(sub_seconds, 1e-9),
    }
    outcome = flow.outcome(values)
    outcome.info |= {"filters": plan.connections * plan.filters, "topics": len(topics)}
    return outcome


# ------------------------------------------------------------------ retained


def retained(target: Target, params: Params) -> Outcome:
    """Store `retained` retained messages (PINGRESP marks the end), then time a `#`
    subscriber until it has them all."""
    count = params.retained
    topics = [f"ret/{index:07d}" for index in range(count)]
    stream = publish_stream(topics, params.payload, 0, 0, count, retain=True)
    rss_before = _rss(target)
    publisher = Client.connect(
        target.host, target.port, "bench-retained-pub", timeout=SETUP_TIMEOUT
    )
    try:
        publisher.sock.settimeout(params.timeout)
        view = memoryview(stream)
        start = now_ns()
        for offset in range(0, len(stream), BATCH_BYTES):
            publisher.sock.sendall(view[offset : offset + BATCH_BYTES])
        publisher.ping(params.timeout)
        stored = now_ns()
    finally:
        publisher.close()
    rss_after = _rss(target)
    subscriber = Client.connect(
        target.host, target.port, "bench-retained-sub", timeout=SETUP_TIMEOUT
    )
    try:
        receiving = make_counter(
            subscriber, "count", PublishShape.of(len(topics[0]), params.payload, 0), 0x31
        )
        subscribed = now_ns()
        subscriber.send_subscribe([("#", 0)])
        receive_all(receiving, count, params.quiet, params.timeout)
    finally:
        subscriber.close()
    delivered = receiving.received
    seconds = (receiving.last_ns - subscribed) / 1e9 if delivered else float("nan")
    values = {
        "delivery_s": seconds,
        "store_msg_per_s": count / max(1e-9, (stored - start) / 1e9),
        "delivery_msg_per_s": delivered / seconds if delivered else 0.0,
    }
    info: dict[str, Any] = {"retained": count}
    if rss_before is not None and rss_after is not None:
        values["kib_per_retained"] = (rss_after - rss_before) / count
    return Outcome(values, count, max(0, count - delivered), max(0, delivered - count), info)


# ------------------------------------------------------------------ registry

_RATE = Metric(RATE, "delivered msg/s", True)
_PUBLISH = Metric(PUBLISH_RATE, "published msg/s", True)
_UNLIMITED = BrokerSettings(max_queued_messages=0)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "qos0-fan-in",
            "QoS 0 fan-in: publishers -> 1 wildcard subscriber",
            qos0_fan_in,
            (_RATE, _PUBLISH),
            loss_allowed=True,
        ),
        Scenario(
            "qos0-fan-out",
            "QoS 0 fan-out: 1 publisher -> subscribers",
            qos0_fan_out,
            (_RATE, _PUBLISH),
            loss_allowed=True,
        ),
        Scenario("qos1", "QoS 1 end to end, windowed publisher", qos1, (_RATE,)),
        Scenario("qos2", "QoS 2 end to end, windowed publisher", qos2, (_RATE,)),
        Scenario(
            "latency",
            "latency at a paced rate, QoS 0",
            latency,
            (
                Metric("p50_us", "p50 latency us", False),
                Metric("p99_us", "p99 latency us", False),
                Metric("max_us", "max latency us", False),
            ),
            settings=BrokerSettings(tcp_nodelay=True),
        ),
        Scenario(
            "connections",
            "idle connections: connect rate and broker memory",
            connections,
            (
                Metric("connections_per_s", "connections/s", True),
                Metric("kib_per_connection", "KiB RSS per connection", False),
            ),
        ),
        Scenario(
            "wildcard",
            "wildcard routing: 100 x 100 filters, 2 matches per message",
            wildcard,
            (
                Metric(RATE, "routed deliveries/s", True),
                _PUBLISH,
                Metric("subscriptions_per_s", "subscriptions/s", True),
            ),
            loss_allowed=True,
        ),
        Scenario(
            "retained",
            "retained messages, then a # subscriber",
            retained,
            (
                Metric("delivery_s", "seconds until # has all", False),
                Metric("store_msg_per_s", "retained stored msg/s", True),
                Metric("kib_per_retained", "KiB RSS per retained msg", False),
            ),
            settings=_UNLIMITED,
        ),
        Scenario(
            "persistent-qos1",
            "QoS 1 to a persistent session (Midge: SQLite store)",
            persistent_qos1,
            (_RATE,),
            settings=BrokerSettings(persistent=True, max_queued_messages=0),
        ),
        Scenario(
            "slow-consumer",
            "QoS 0 fan-out without and with 1 subscriber that never reads",
            slow_consumer,
            (
                Metric(RATE, "delivered msg/s, 1 slow", True),
                Metric("baseline_msg_per_s", "delivered msg/s, none slow", True),
                Metric("slow_ratio", "with slow / without", True),
                Metric("rss_growth_kib", "KiB RSS growth, slow phase", False),
            ),
            loss_allowed=True,
        ),
    )
}


# ------------------------------------------------------------------ ceiling


def generator_ceiling(params: Params, scenario: str = "qos0-fan-in") -> dict[str, float]:
    """A flood scenario against the sink instead of a broker: the generator's own limits.

    Publishers write into a server that only reads; subscribers count what the
    sink streams to them as fast as it can. A broker measured near these
    figures is measured at the generator's limit, not its own.
    """
    runner = {"qos0-fan-in": qos0_fan_in, "qos0-fan-out": qos0_fan_out}.get(scenario)
    if runner is None:
        raise BenchError(f"the sink serves qos0-fan-in and qos0-fan-out, not {scenario}")
    topic = "bench/in/0" if scenario == "qos0-fan-in" else FAN_OUT_TOPIC
    with sink(SinkSpec(topic, params.payload, max_seconds=params.duration + params.timeout)) as (
        port,
        _,
    ):
        outcome = runner(Target(HOST, port), params)
    return {
        "publish_msg_per_s": outcome.values[PUBLISH_RATE],
        "subscribe_msg_per_s": outcome.values[RATE],
        "generator_cpu": outcome.info.get("generator_cpu", float("nan")),
    }
