"""Overload: QoS 1/2 publishers faster than their one subscriber, to catch a broker
that acknowledges messages and then drops them.

Each publisher (a worker process of its own) keeps `overload_window` messages
without their acknowledgement (PUBACK; at QoS 2 the flow until PUBCOMP) and
sends a new one as each acknowledgement arrives, so it goes as fast as the
broker *takes* messages, not as fast as the subscriber reads them. One
subscriber (clean session, another process) reads and acknowledges as fast
as it can. Unless the broker slows the publishers down (backpressure), the
subscriber's queue in the broker fills up, and what the broker does then is
what these scenarios measure: a message it acknowledged (PUBACK, or PUBREC
at QoS 2: the broker has taken responsibility for it) and then never
delivered is lost, which MQTT does not allow at QoS 1/2.

Every payload starts with a tagged id (sequence number, publisher index; see
`wire.TAGGED_BYTES`), so the subscriber counts distinct messages across the
publishers. When the publishers stop (after `duration`, once everything they
sent is acknowledged), the subscriber keeps reading until it has them all,
`quiet` seconds pass without data, or DRAIN_SECONDS pass.

    lost = acknowledged - delivered (distinct)

A non-zero `lost` is the finding these scenarios exist for: it is reported
(loudly, by the runner), never turned into a failed run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from midge.bench.flows import RATE, Flow, Outcome, Params, Target, pub_spec, run_flow, sub_spec
from midge.bench.specs import SubscriberConn
from midge.bench.wire import TAGGED_BYTES, PublishShape

TOPIC = "bench/overload"
DRAIN_SECONDS = 5.0  # after the publishers stop, the subscriber reads this long at most
ACKED = "acknowledged"  # values: PUBACKs (QoS 1) / PUBRECs (QoS 2) the publishers got
DELIVERED = "delivered"  # distinct messages the subscriber got
LOST = "lost"  # acknowledged - delivered
ACKED_RATE = "acked_msg_per_s"


def overload(target: Target, params: Params, qos: int, publishers: int) -> Outcome:
    prefix = f"bench-overload-q{qos}"
    # QoS 2 streams mix PUBLISH and PUBREL: counted packet by packet.
    shape = PublishShape.of(len(TOPIC), params.payload, qos, params.protocol) if qos == 1 else None
    conn = SubscriberConn(f"{prefix}-sub", ((TOPIC, qos),))
    sub = sub_spec(0, target, params, [conn], "ack", shape, 0x30 | qos << 1)
    sub = replace(sub, id_bytes=TAGGED_BYTES, drain=DRAIN_SECONDS)
    pubs = [
        pub_spec(
            index,
            target,
            params,
            f"{prefix}-pub-{index}",
            [TOPIC],
            qos=qos,
            window=params.overload_window,
            tag=index,
        )
        for index in range(publishers)
    ]
    # The subscriber is told to expect what the broker acknowledged, not what was
    # sent: a message never acknowledged was never the broker's to deliver.
    flow = run_flow(
        target, params, [sub], pubs, lambda done: [{0: sum(p["accepted"] for p in done)}]
    )
    return _outcome(flow, qos, params.overload_window)


def _outcome(flow: Flow, qos: int, window: int) -> Outcome:
    acked = sum(int(pub["accepted"]) for pub in flow.publishers)
    sent = flow.sent
    conn = flow.connections[0]
    delivered, received = int(conn["distinct"]), int(conn["received"])
    lost = max(0, acked - delivered)
    done_ns = max(int(pub["done_ns"]) for pub in flow.publishers)
    publishing = max(1e-9, (done_ns - flow.start_ns) / 1e9)
    values = {
        RATE: flow.delivery_rate(),
        LOST: float(lost),
        ACKED: float(acked),
        DELIVERED: float(delivered),
        ACKED_RATE: acked / publishing,
    }
    info: dict[str, Any] = dict(flow.info) | {
        "qos": qos,
        "publishers": len(flow.publishers),
        "window": window,
        "sent": sent,
        "acknowledged": acked,
        # Sent but never acknowledged (a publisher that gave up after STALL_SECONDS):
        # not the broker's to deliver, so not counted as lost.
        "unacknowledged": sent - acked,
        "completed": sum(int(pub["acked"]) for pub in flow.publishers),
        "delivered": delivered,
        "received": received,
        "delivered_beyond_acknowledged": max(0, delivered - acked),
        "dup_flag": conn["dup_flag"],
        "wrong_qos": conn["wrong_qos"],
        "publishing_s": publishing,
        # How long after the publishers were done the last message arrived: what the
        # broker still had queued for the subscriber then.
        "tail_s": max(0.0, (int(conn["last_ns"]) - done_ns) / 1e9) if received else None,
    }
    return Outcome(values, acked, lost, received - delivered, info)


def qos1_overload_1(target: Target, params: Params) -> Outcome:
    return overload(target, params, 1, 1)


def qos1_overload_4(target: Target, params: Params) -> Outcome:
    return overload(target, params, 1, 4)


def qos2_overload_1(target: Target, params: Params) -> Outcome:
    return overload(target, params, 2, 1)


def qos2_overload_4(target: Target, params: Params) -> Outcome:
    return overload(target, params, 2, 4)
