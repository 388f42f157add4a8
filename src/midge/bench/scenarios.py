"""The benchmark scenarios: each runs against any broker, stops by itself, counts losses.

A scenario is a function `(Target, Params) -> Outcome`. It starts its
workers (`loadgen.Swarm`), lets them connect and subscribe, starts them all
at once, and when the publishers are done tells each subscriber how many
messages it should have; a subscriber stops when it has them, or after
`quiet` seconds without data (the rest is lost), or at its hard deadline.
Every rate is measured from the first publish to the last message received.

`flows` holds what they are made of (`Params`, `Target`, `Outcome`, the
flows that drive the workers); `scale` holds connections, wildcard and
retained, `overload` the overload scenarios; every scenario and the
registry `SCENARIOS` are importable here.

| scenario | what |
|---|---|
| qos0-fan-in | 4 publishers flood QoS 0 to their own topics; 1 subscriber to `bench/in/+` |
| qos0-fan-out | 1 publisher floods QoS 0 to one topic; 8 subscribers to it |
| qos1 | 1 publisher, QoS 1, `window` unacknowledged at most; 1 subscriber acknowledging |
| qos2 | the same with QoS 2 (PUBREC / PUBREL / PUBCOMP both ways) |
| latency | 1 publisher paced at `rate` msg/s, QoS 0, a timestamp in each payload |
| latency-qos1 | the same at QoS 1 (publisher and subscriber) |
| connections | `connections` idle clients connect; rate, and the broker's RSS per connection |
| wildcard | 100 connections x 100 distinct filters (+ and #); each message matches 2 |
| retained | `retained` retained messages stored, then a `#` subscriber gets them all |
| persistent-qos1 | qos1 to a clean-session-0 subscriber; Midge on its SQLite store |
| slow-consumer | qos0-fan-out twice: as is, then with 1 more subscriber that never reads |
| qos1-overload-N | N publishers (1 or 4), QoS 1, window by broker PUBACK -> 1 subscriber |
| qos2-overload-N | the same at QoS 2; `lost` = acknowledged and never delivered (`overload`) |

Every scenario but `connections` also runs with MQTT 5.0 clients
(`Params.protocol`, `at_protocol`): the same load, each packet in its 5.0
form (see `wire`), named `NAME@5.0` in results.
"""

from __future__ import annotations

import socket
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from midge.bench.brokers import BrokerSettings
from midge.bench.flows import (
    PUBLISH_RATE,
    RATE,
    Flow,
    Outcome,
    Params,
    Target,
    broker_rss,
    pub_spec,
    run_flow,
    run_pair,
    split,
    sub_spec,
)
from midge.bench.loadgen import sink
from midge.bench.overload import (
    LOST,
    qos1_overload_1,
    qos1_overload_4,
    qos2_overload_1,
    qos2_overload_4,
)
from midge.bench.scale import WildcardPlan, connections, retained, wildcard
from midge.bench.specs import SETUP_TIMEOUT, SinkSpec, SubscriberConn
from midge.bench.wire import (
    HOST,
    MQTT_3_1_1,
    MQTT_5,
    BenchError,
    Client,
    PublishShape,
    connect_packet,
    percentile,
)

__all__ = [
    "FAN_OUT_TOPIC",
    "PUBLISH_RATE",
    "RATE",
    "RSS_INTERVAL",
    "SCENARIOS",
    "SLOW_RCVBUF",
    "Flow",
    "Metric",
    "Outcome",
    "Params",
    "Scenario",
    "Target",
    "WildcardPlan",
    "at_protocol",
    "connections",
    "generator_ceiling",
    "latency",
    "latency_qos1",
    "persistent_qos1",
    "qos0_fan_in",
    "qos0_fan_out",
    "qos1",
    "qos1_overload_1",
    "qos1_overload_4",
    "qos2",
    "qos2_overload_1",
    "qos2_overload_4",
    "retained",
    "run_flow",
    "run_pair",
    "slow_consumer",
    "slow_subscriber",
    "wildcard",
]


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Target, Params], Outcome]
    metrics: tuple[Metric, ...]  # the first is the headline
    settings: BrokerSettings = field(default_factory=BrokerSettings)
    loss_allowed: bool = False  # QoS 0 under overload may drop; QoS 1/2 may not
    # `lost` counts messages the broker acknowledged and never delivered: what the
    # overload scenarios look for, so the runner shows it loudly (and does not fail).
    acknowledged_loss: bool = False
    mqtt5: bool = True  # whether it can run with MQTT 5.0 clients (`at_protocol`)
    base: str = ""  # for a variant made by `at_protocol`: the scenario it runs
    protocol: int = MQTT_3_1_1


PROTOCOL_SUFFIX = "@5.0"  # NAME@5.0: the scenario NAME with MQTT 5.0 clients


def at_protocol(scenario: Scenario, protocol: int) -> Scenario:
    """The scenario with every client speaking `protocol` (4: 3.1.1, itself; 5: 5.0,
    named NAME@5.0)."""
    if protocol == MQTT_3_1_1:
        return scenario
    if protocol != MQTT_5 or not scenario.mqtt5:
        raise BenchError(f"{scenario.name} does not run at protocol level {protocol}")
    run = scenario.run

    def at_level(target: Target, params: Params) -> Outcome:
        return run(target, replace(params, protocol=protocol))

    return replace(
        scenario,
        name=scenario.name + PROTOCOL_SUFFIX,
        title=f"{scenario.title} (MQTT 5.0 clients)",
        run=at_level,
        base=scenario.name,
        protocol=protocol,
    )


# ------------------------------------------------------------------ QoS 0


def qos0_fan_in(target: Target, params: Params) -> Outcome:
    topics = [f"bench/in/{index}" for index in range(params.publishers)]
    width = len(topics[-1])
    topics = [topic.ljust(width, "_") for topic in topics]  # one length: one packet size
    shape = PublishShape.of(width, params.payload, 0, params.protocol)
    conn = SubscriberConn("bench-fan-in-sub", (("bench/in/+", 0),))
    subs = [sub_spec(0, target, params, [conn], shape=shape)]
    pubs = [
        pub_spec(i, target, params, f"bench-fan-in-pub-{i}", [topic])
        for i, topic in enumerate(topics)
    ]
    flow = run_flow(target, params, subs, pubs, lambda done: [{0: sum(p["sent"] for p in done)}])
    return flow.outcome({RATE: flow.delivery_rate(), PUBLISH_RATE: flow.publish_rate()})


def _fan_out_flow(target: Target, params: Params, prefix: str = "bench-fan-out") -> Flow:
    topic = FAN_OUT_TOPIC
    shape = PublishShape.of(len(topic), params.payload, 0, params.protocol)
    conns = [SubscriberConn(f"{prefix}-sub-{i}", ((topic, 0),)) for i in range(params.subscribers)]
    groups = split(conns, 2)
    subs = [sub_spec(i, target, params, group, shape=shape) for i, group in enumerate(groups)]
    pubs = [pub_spec(0, target, params, f"{prefix}-pub", [topic])]

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


def slow_subscriber(
    target: Target, client_id: str, topic: str, protocol: int = MQTT_3_1_1
) -> Client:
    """A subscriber with a small receive buffer (set before connecting, so the window
    it announces is small too) that subscribes and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        sock.settimeout(SETUP_TIMEOUT)
        sock.connect((target.host, target.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(client_id, True, protocol))
    except BaseException:
        sock.close()
        raise
    client = Client(sock, client_id, protocol)
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
            rss = broker_rss(self.target)
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
        rss = broker_rss(self.target)  # the last word, after the publishers' drain
        if rss is not None:
            self.peak = rss if self.peak is None else max(self.peak, rss)


def slow_consumer(target: Target, params: Params) -> Outcome:
    """qos0-fan-out twice: as is, then with one more subscriber to the same topic
    that never reads (SO_RCVBUF 4096). The reading subscribers' rate with it
    over their rate without it, their losses, and the broker's RSS growth
    (peak during the slow phase minus RSS before it) when its PID is known."""
    baseline = _fan_out_flow(target, params, "bench-slow-base")
    rss_base = broker_rss(target)
    slow = slow_subscriber(target, "bench-slow-consumer", FAN_OUT_TOPIC, params.protocol)
    try:
        rss_before = broker_rss(target)
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
    shape = PublishShape.of(len(topic), params.payload, qos, params.protocol) if qos == 1 else None
    sub_id = "bench-persistent-sub" if persistent else f"bench-qos{qos}-sub"
    conn = SubscriberConn(sub_id, ((topic, qos),), clean_session=not persistent)
    subs = [sub_spec(0, target, params, [conn], "ack", shape, 0x30 | qos << 1)]
    window = params.qos2_window if qos == 2 else params.window
    pub = pub_spec(0, target, params, f"bench-qos{qos}-pub", [topic], qos=qos, window=window)
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
    return _latency(target, params, 0)


def latency_qos1(target: Target, params: Params) -> Outcome:
    """`latency` at QoS 1 both ways: the time to the subscriber includes whatever
    the broker does before it forwards a QoS 1 message (a cluster: Redis)."""
    return _latency(target, params, 1)


def _latency(target: Target, params: Params, qos: int) -> Outcome:
    name = "bench-latency" + (f"-qos{qos}" if qos else "")  # QoS 0: the names it always had
    topic = name.replace("bench-", "bench/")
    conn = SubscriberConn(f"{name}-sub", ((topic, qos),))
    subs = [sub_spec(0, target, params, [conn], "latency", first_byte=0x30 | qos << 1)]
    pubs = [pub_spec(0, target, params, f"{name}-pub", [topic], rate=params.rate, qos=qos)]
    flow = run_flow(target, params, subs, pubs, lambda done: [{0: done[0]["sent"]}])
    samples = sorted(ns / 1000 for c in flow.connections for ns in c["latencies_ns"])
    values = {
        "p50_us": percentile(samples, 0.50),
        "p99_us": percentile(samples, 0.99),
        "max_us": samples[-1] if samples else float("nan"),
        "mean_us": statistics.fmean(samples) if samples else float("nan"),
    }
    return flow.outcome(values)


# ------------------------------------------------------------------ registry

_RATE = Metric(RATE, "delivered msg/s", True)
_PUBLISH = Metric(PUBLISH_RATE, "published msg/s", True)
_UNLIMITED = BrokerSettings(max_queued_messages=0)
_LOST = Metric(LOST, "lost: acked, not delivered", False)
_LATENCY = (
    Metric("p50_us", "p50 latency us", False),
    Metric("p99_us", "p99 latency us", False),
    Metric("max_us", "max latency us", False),
)

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
            _LATENCY,
            settings=BrokerSettings(tcp_nodelay=True),
        ),
        Scenario(
            "latency-qos1",
            "latency at a paced rate, QoS 1",
            latency_qos1,
            _LATENCY,
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
            mqtt5=False,  # its openers write CONNECT and read CONNACK as raw 3.1.1 bytes
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
        *(
            Scenario(
                name,
                f"QoS {qos} overload: {count} publisher(s) windowed by broker acks -> 1 sub",
                run,
                # Not the acknowledged rate: a broker that acknowledges and drops
                # would look better by it (it is in the JSON, as `acked_msg_per_s`).
                (_RATE, _LOST),
                loss_allowed=True,  # reported, not failed: see `overload`
                acknowledged_loss=True,
            )
            for name, qos, count, run in (
                ("qos1-overload-1", 1, 1, qos1_overload_1),
                ("qos1-overload-4", 1, 4, qos1_overload_4),
                ("qos2-overload-1", 2, 1, qos2_overload_1),
                ("qos2-overload-4", 2, 4, qos2_overload_4),
            )
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
    params = replace(params, protocol=MQTT_3_1_1)  # the sink answers in 3.1.1
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
