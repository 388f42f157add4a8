"""Subscriber workers: the receiving side that counts, acknowledges and times.

- `subscriber_main`: several connections in one process behind a selector;
  count PUBLISH packets from their fixed headers. A QoS 0 subscriber sets
  SO_RCVLOWAT, so the kernel wakes it once 32 KB wait rather than for every
  packet a broker writes on its own. QoS 1/2 subscribers acknowledge with
  PUBACK / PUBREC / PUBCOMP built from strided slices, and count distinct
  ids (sequence numbers, or tagged ids of 8 bytes: `spec.id_bytes`).
- `Counter`: one connection's receiving side, also driven outside a worker
  (`make_counter`, `receive_all`): by a pair, or by a scenario itself.
"""

from __future__ import annotations

import selectors
import socket
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from midge.bench.specs import (
    SETUP_TIMEOUT,
    STALL_SECONDS,
    Message,
    SubscriberSpec,
    guarded,
    now_ns,
    report,
)
from midge.bench.wire import (
    PUBACK_FIRST,
    PUBCOMP_FIRST,
    PUBLISH,
    PUBREC_FIRST,
    PUBREL_FIRST,
    RECV_BYTES,
    BenchError,
    Client,
    PublishShape,
    acks,
    payload_start,
    scan,
    seq_column,
)

LOW_WATER = 32 * 1024  # a QoS 0 subscriber wakes when this much has arrived ...
IDLE_SECONDS = 0.005  # ... or after this long without a wake-up, to take the rest


@dataclass(slots=True)
class Counter:
    """One subscriber connection's receiving side."""

    client: Client
    spec: SubscriberSpec
    received: int = 0
    dup_flag: int = 0
    wrong_qos: int = 0
    first_ns: int = 0
    last_ns: int = 0
    expected: int = -1
    closed: bool = False
    seen: set[int] = field(default_factory=set)
    latencies: list[int] = field(default_factory=list)
    pending: bytes = b""

    @property
    def distinct(self) -> int:
        return len(self.seen) if self.spec.mode == "ack" else self.received

    @property
    def satisfied(self) -> bool:
        return self.closed or (self.expected >= 0 and self.distinct >= self.expected)

    def prepare(self, batched: bool) -> None:
        """Batched (QoS 0 counting): wake only once LOW_WATER bytes wait (SO_RCVLOWAT),
        so a broker that writes packet by packet does not make us read packet by
        packet; the socket is non-blocking so tails below the mark can be taken."""
        sock = self.client.sock
        if batched:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, LOW_WATER)
            sock.setblocking(False)
        else:
            sock.settimeout(STALL_SECONDS)  # sendall of acknowledgements may wait

    def read(self) -> bool:
        """One recv into the counter; False when nothing came (or the broker closed)."""
        try:
            data = self.client.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return False
        if not data:
            self.closed = True
            return False
        self.feed(data, now_ns())
        return True

    def feed(self, data: bytes, now: int) -> None:
        if self.pending:
            data = self.pending + data
        before = self.received
        shape = self.spec.shape
        if shape is not None and self._uniform(data, shape):
            count = len(data) // shape.size
            used = count * shape.size
            self.received += count
            if self.spec.mode == "ack":
                self.seen.update(
                    seq_column(data, shape.payload_at, shape.size, count, self.spec.id_bytes)
                )
                qos = (self.spec.first_byte >> 1) & 3
                first = PUBACK_FIRST if qos == 1 else PUBREC_FIRST
                at = shape.packet_id_at
                self.client.sock.sendall(
                    acks(first, data[at : used : shape.size], data[at + 1 : used : shape.size])
                )
            self.pending = data[used:]
        else:
            self.pending = self._generic(bytearray(data), now)
        if self.received != before:
            if not self.first_ns:
                self.first_ns = now
            self.last_ns = now

    def _uniform(self, data: bytes, shape: PublishShape) -> bool:
        count = len(data) // shape.size
        if not count:
            return False
        used = count * shape.size
        return (
            data[0 : used : shape.size].count(self.spec.first_byte) == count
            and data[1 : used : shape.size].count(shape.second) == count
        )

    def _generic(self, buffer: bytearray, now: int) -> bytes:
        """Packet by packet, for streams that are not uniform PUBLISH runs."""
        replies = []
        taken = 0
        mode = self.spec.mode
        protocol = self.spec.protocol
        for first, start, end in scan(buffer):
            taken = end
            kind = first >> 4
            if kind == PUBLISH:
                self.received += 1
                qos = (first >> 1) & 3
                if first & 0x08:
                    self.dup_flag += 1
                if qos != (self.spec.first_byte >> 1) & 3:
                    self.wrong_qos += 1
                payload_at = start + 2 + ((buffer[start] << 8) | buffer[start + 1])
                if qos:
                    packet_id = buffer[payload_at : payload_at + 2]
                    payload_at += 2
                    replies.append(
                        bytes((PUBACK_FIRST if qos == 1 else PUBREC_FIRST, 2)) + packet_id
                    )
                payload_at = payload_start(buffer, payload_at, protocol)
                if mode == "ack":  # native order, as `seq_column` reads them
                    id_end = payload_at + self.spec.id_bytes
                    self.seen.add(int.from_bytes(buffer[payload_at:id_end], sys.byteorder))
                elif mode == "latency":
                    stamp = int.from_bytes(buffer[payload_at : payload_at + 8], "little")
                    self.latencies.append(now - stamp)
            elif first == PUBREL_FIRST:
                replies.append(bytes((PUBCOMP_FIRST, 2)) + buffer[start : start + 2])
        if replies:
            self.client.sock.sendall(b"".join(replies))
        return bytes(buffer[taken:])

    def result(self) -> dict[str, Any]:
        lat = self.latencies
        return {
            "client_id": self.client.client_id,
            "received": self.received,
            "distinct": self.distinct,
            "dup_flag": self.dup_flag,
            "wrong_qos": self.wrong_qos,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "expected": self.expected,
            "latencies_ns": lat,
        }


def subscriber_main(
    spec: SubscriberSpec, go: Event, control: Pipe, results: Queue[Message]
) -> None:
    guarded("subscriber", spec.index, results, lambda: _subscriber(spec, go, control, results))


def _subscriber(spec: SubscriberSpec, go: Event, control: Pipe, results: Queue[Message]) -> None:
    clients = [
        Client.connect(
            spec.host,
            spec.port,
            conn.client_id,
            conn.clean_session,
            timeout=SETUP_TIMEOUT,
            protocol=spec.protocol,
        )
        for conn in spec.connections
    ]
    started = now_ns()
    for client, conn in zip(clients, spec.connections, strict=True):
        client.send_subscribe(list(conn.filters))
    for client, conn in zip(clients, spec.connections, strict=True):
        client.expect_suback(len(conn.filters), SETUP_TIMEOUT)
    report(
        results, "subscribed", "subscriber", spec.index, {"start_ns": started, "end_ns": now_ns()}
    )
    counters = [Counter(client, spec) for client in clients]
    if not go.wait(SETUP_TIMEOUT):
        raise BenchError("no start signal")
    cpu = time.process_time()
    for counter in counters:
        if counter.client.buffer:  # bytes that came with the SUBACK
            data, counter.client.buffer = bytes(counter.client.buffer), bytearray()
            counter.feed(data, now_ns())
    _receive(counters, control, spec)
    outcome = {
        "connections": [c.result() for c in counters],
        "cpu_seconds": time.process_time() - cpu,
        "end_ns": now_ns(),
    }
    for counter in counters:
        counter.client.close()
    report(results, "result", "subscriber", spec.index, outcome)


def _receive(counters: list[Counter], control: Pipe, spec: SubscriberSpec) -> None:
    """Count until every connection has what it should, `quiet` s pass without data
    once that is known, `drain` s pass once it is known (when set), or the hard deadline."""
    batched = spec.mode == "count"
    selector = selectors.DefaultSelector()
    for counter in counters:
        counter.prepare(batched)
        selector.register(counter.client.sock, selectors.EVENT_READ, counter)
    selector.register(control, selectors.EVENT_READ, None)
    hard_deadline = time.monotonic() + spec.max_seconds
    expectation_known = False
    last_data = drain_deadline = time.monotonic()
    try:
        while time.monotonic() < hard_deadline:
            if expectation_known:
                if all(counter.satisfied for counter in counters):
                    return
                if time.monotonic() - last_data > spec.quiet:
                    return  # what has not come by now is lost
                if spec.drain and time.monotonic() > drain_deadline:
                    return  # a broker trickling messages must not hold the run
            ready = selector.select(IDLE_SECONDS if batched else 0.1)
            if not ready and batched:
                # Below the low-water mark nothing wakes us: take the tails now.
                ready = [(key, selectors.EVENT_READ) for key in selector.get_map().values()]
            for key, _ in ready:
                counter = key.data
                if counter is None:
                    if not control.poll():
                        continue
                    message = control.recv()
                    if message[0] == "stop":
                        return
                    for index, expected in message[1].items():
                        counters[index].expected = expected
                    expectation_known = True
                    last_data = max(last_data, time.monotonic())
                    drain_deadline = time.monotonic() + spec.drain
                    continue
                if counter.closed:
                    continue
                if counter.read():
                    last_data = time.monotonic()
                elif counter.closed:
                    selector.unregister(counter.client.sock)
    finally:
        selector.close()


def make_counter(client: Client, mode: str, shape: PublishShape | None, first_byte: int) -> Counter:
    """A receiving side for a client driven in this process (see `receive_all`)."""
    spec = SubscriberSpec(0, "", 0, (), mode, shape, first_byte, protocol=client.protocol)
    return Counter(client, spec)


def receive_all(count: Counter, expected: int, quiet: float, max_seconds: float) -> None:
    """Feed `count` from its socket until `expected` arrived, `quiet` s pass without data,
    or `max_seconds` in all."""
    count.expected = expected
    if count.client.buffer:
        data, count.client.buffer = bytes(count.client.buffer), bytearray()
        count.feed(data, now_ns())
    batched = count.spec.mode == "count"
    count.prepare(batched)
    deadline = time.monotonic() + max_seconds
    last_data = time.monotonic()
    with selectors.DefaultSelector() as selector:
        selector.register(count.client.sock, selectors.EVENT_READ)
        while not count.satisfied:
            now = time.monotonic()
            if now > deadline or now - last_data > quiet:
                return
            ready = selector.select(IDLE_SECONDS if batched else 0.1)
            if (ready or batched) and count.read():
                last_data = time.monotonic()
