"""What the parent and its worker processes share: the specs it hands each
worker, the timeouts, the clock, and how a worker reports (see `loadgen`).

Every worker runs its body under `guarded`, which turns an exception into an
"error" report; every report is one `Message` on the parent's queue.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any

from midge.bench.wire import MQTT_3_1_1, PublishShape, raise_fd_limit

SETUP_TIMEOUT = 60.0  # connecting and subscribing, per phase
STALL_SECONDS = 10.0  # a windowed publisher without an acknowledgement for this long gives up
Message = tuple[str, str, int, Any]  # (kind, role, index, data)


def now_ns() -> int:
    return time.perf_counter_ns()  # CLOCK_MONOTONIC: comparable across processes


# ------------------------------------------------------------------ specs


@dataclass(frozen=True, slots=True)
class PublisherSpec:
    index: int
    host: str
    port: int
    client_id: str
    topics: tuple[str, ...]  # cycled; all of one encoded length
    payload: int
    qos: int = 0
    duration: float = 5.0  # seconds of sending
    max_messages: int = 10_000_000
    window: int = 100  # QoS 1/2: unacknowledged messages at most
    rate: float = 0.0  # > 0: paced, one message every 1/rate s, timestamp in the payload
    retain: bool = False
    drain: float = 30.0  # seconds to wait for the broker to take what was sent
    # QoS 1/2: 4 bytes after the sequence number in every payload (the publisher's
    # index), so that a subscriber reading tagged ids tells publishers apart.
    tag: int | None = None
    protocol: int = MQTT_3_1_1  # the protocol level it speaks: 4 (3.1.1) or 5 (5.0)


@dataclass(frozen=True, slots=True)
class SubscriberConn:
    client_id: str
    filters: tuple[tuple[str, int], ...]
    clean_session: bool = True


@dataclass(frozen=True, slots=True)
class SubscriberSpec:
    index: int
    host: str
    port: int
    connections: tuple[SubscriberConn, ...]
    mode: str = "count"  # count | ack (QoS 1/2 acknowledged, sequence numbers) | latency
    shape: PublishShape | None = None  # set when every PUBLISH has this shape
    first_byte: int = 0x30  # ... and this first byte
    quiet: float = 2.0  # once the expectation is known, stop after this long without data
    max_seconds: float = 60.0  # after the start, whatever happens
    id_bytes: int = 4  # "ack" mode: the id at the start of a payload (8: tagged, see wire)
    drain: float = 0.0  # > 0: once the expectation is known, stop after this long at most
    protocol: int = MQTT_3_1_1  # the protocol level its connections speak


@dataclass(frozen=True, slots=True)
class OpenerSpec:
    index: int
    host: str
    port: int
    count: int
    id_prefix: str
    batch: int = 25  # handshakes in flight at once
    hold: float = 120.0  # seconds to keep the connections at most


@dataclass(frozen=True, slots=True)
class SinkSpec:
    topic: str  # what the sink streams to a subscriber
    payload: int
    max_seconds: float = 120.0


# ------------------------------------------------------------------ reports


def report(results: Queue[Message], kind: str, role: str, index: int, data: Any) -> None:
    results.put((kind, role, index, data))


def guarded(role: str, index: int, results: Queue[Message], body: Callable[[], None]) -> None:
    raise_fd_limit()
    try:
        body()
    except BaseException:
        report(results, "error", role, index, traceback.format_exc())
