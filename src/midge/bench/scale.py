"""The scenarios that fill the broker up: idle connections, wildcard filters, retained messages.

- `connections`: `connections` idle clients connect; the rate, and the
  broker's RSS per connection.
- `wildcard`: 100 connections x 100 distinct filters (+ and #), laid out by
  `WildcardPlan` so that each message matches exactly 2 connections.
- `retained`: `retained` retained messages stored, then a `#` subscriber
  gets them all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from midge.bench.counting import make_counter, receive_all
from midge.bench.flows import (
    PUBLISH_RATE,
    RATE,
    Clock,
    Outcome,
    Params,
    Target,
    broker_rss,
    pub_spec,
    run_flow,
    sub_spec,
)
from midge.bench.loadgen import Swarm
from midge.bench.specs import SETUP_TIMEOUT, OpenerSpec, SubscriberConn, now_ns
from midge.bench.wire import BATCH_BYTES, Client, PublishShape, publish_stream

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
        rss_before = broker_rss(target)
        with Clock(target) as clock:
            swarm.go.set()
            opened = swarm.wait("connected", "opener", len(specs), params.timeout)
        time.sleep(1.0)  # let the broker settle (buffers, lazy allocations)
        rss_after = broker_rss(target)
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
    shape = PublishShape.of(len(topics[0]), params.payload, 0, params.protocol)
    conns = [
        SubscriberConn(f"bench-wild-{conn}", tuple((f, 0) for f in _wildcard_filters(plan, conn)))
        for conn in range(plan.connections)
    ]
    # One process: the subscribe time is then one measurement, not several overlapping.
    subs = [sub_spec(0, target, params, conns, shape=shape)]
    pubs = [pub_spec(0, target, params, "bench-wild-pub", topics)]

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
    stream = publish_stream(topics, params.payload, 0, 0, count, True, params.protocol)
    rss_before = broker_rss(target)
    publisher = Client.connect(
        target.host,
        target.port,
        "bench-retained-pub",
        timeout=SETUP_TIMEOUT,
        protocol=params.protocol,
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
    rss_after = broker_rss(target)
    subscriber = Client.connect(
        target.host,
        target.port,
        "bench-retained-sub",
        timeout=SETUP_TIMEOUT,
        protocol=params.protocol,
    )
    try:
        receiving = make_counter(
            subscriber,
            "count",
            PublishShape.of(len(topics[0]), params.payload, 0, params.protocol),
            0x31,
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
