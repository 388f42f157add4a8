"""The load generator: worker processes driven by one parent (`Swarm`).

Each worker is a process of its own (multiprocessing, forkserver), so the
generator spreads over the CPUs rather than sharing one interpreter. Every
worker connects (and subscribes) first and reports; the parent starts them
all at once with one event, so setup never counts as load. Workers report
over one queue; the parent tells subscribers how many messages to expect
over a pipe each. As always with multiprocessing, a script that uses this
module must guard its entry point with `if __name__ == "__main__":`.

- publishers (`publisher_main`): flood QoS 0 (one pre-encoded block of at
  least 64 KB, written again and again with blocking `sendall`, so TCP flow
  control paces them to what the broker reads), or paced at a fixed rate
  with a perf_counter_ns timestamp in each payload (latency).
- subscribers (`subscriber_main`): several connections in one process
  behind a selector; count PUBLISH packets from their fixed headers. A QoS 0
  subscriber sets SO_RCVLOWAT, so the kernel wakes it once 32 KB wait rather
  than for every packet a broker writes on its own.
- pairs (`pair_main`): one QoS 1/2 publisher and its subscriber in one loop,
  the publisher keeping at most `window` messages in flight end to end
  (sent and not yet received), from a pre-encoded ring of 65535 packets
  whose sequence numbers are patched in with strided slices; the subscriber
  acknowledges with PUBACK / PUBREC / PUBCOMP built from strided slices too.
- connection openers (`opener_main`): open many idle connections, hold
  them until told, then close them.
- the sink (`sink_main`): a TCP server that answers CONNECT, PINGREQ and
  SUBSCRIBE and otherwise only reads and discards, or streams PUBLISH
  packets to a subscriber as fast as it can: the generator's own ceiling.

Every loop ends by a deadline; workers that do not report in time are
terminated by the parent (only the processes it started, by their PID).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import selectors
import socket
import time
import traceback
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.context import ForkServerContext, ForkServerProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from midge.bench.wire import (
    BATCH_BYTES,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK_FIRST,
    PUBCOMP_FIRST,
    PUBLISH,
    PUBREC_FIRST,
    PUBREL_FIRST,
    RECV_BYTES,
    SEQ_BYTES,
    BenchError,
    Client,
    PublishShape,
    acks,
    publish_stream,
    raise_fd_limit,
    scan,
    seq_column,
)
from midge.protocol.codec import encode, encode_publish
from midge.protocol.packets import Connect

SETUP_TIMEOUT = 60.0  # connecting and subscribing, per phase
STALL_SECONDS = 10.0  # a windowed publisher without an acknowledgement for this long gives up
RING = 0xFFFF  # packet ids 1..65535: one pre-encoded packet each
SEND_BUFFER = 256 * 1024  # SO_SNDBUF of a flooding publisher
LOW_WATER = 32 * 1024  # a QoS 0 subscriber wakes when this much has arrived ...
IDLE_SECONDS = 0.005  # ... or after this long without a wake-up, to take the rest
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


# ------------------------------------------------------------------ workers


def _report(results: Queue[Message], kind: str, role: str, index: int, data: Any) -> None:
    results.put((kind, role, index, data))


def _guarded(role: str, index: int, results: Queue[Message], body: Callable[[], None]) -> None:
    raise_fd_limit()
    try:
        body()
    except BaseException:
        _report(results, "error", role, index, traceback.format_exc())


def publisher_main(spec: PublisherSpec, go: Event, results: Queue[Message]) -> None:
    _guarded("publisher", spec.index, results, lambda: _publisher(spec, go, results))


def _publisher(spec: PublisherSpec, go: Event, results: Queue[Message]) -> None:
    client = Client.connect(spec.host, spec.port, spec.client_id)
    _report(results, "ready", "publisher", spec.index, None)
    if not go.wait(SETUP_TIMEOUT):
        raise BenchError("no start signal")
    cpu = time.process_time()
    if spec.rate > 0:
        outcome = _paced(client, spec)
    elif spec.qos:
        outcome = _windowed(client, spec, None)
    else:
        outcome = _flood(client, spec)
    outcome["cpu_seconds"] = time.process_time() - cpu
    client.close()
    _report(results, "result", "publisher", spec.index, outcome)


def _flood(client: Client, spec: PublisherSpec) -> dict[str, Any]:
    """QoS 0 as fast as the broker takes it: one block, written again and again."""
    one_round = publish_stream(list(spec.topics), spec.payload, 0, 0, len(spec.topics), spec.retain)
    repeat = max(1, -(-BATCH_BYTES // len(one_round)))
    block = one_round * repeat
    per_block = len(spec.topics) * repeat
    sock = client.sock
    sock.settimeout(spec.drain)
    # A small send buffer keeps what is still on its way when time is up small.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    sent = 0
    start = now_ns()
    deadline = time.monotonic() + spec.duration
    while (not sent or sent + per_block <= spec.max_messages) and time.monotonic() < deadline:
        sock.sendall(block)
        sent += per_block
    sent_ns = now_ns()
    client.ping(spec.drain)  # the broker has read everything once PINGRESP comes
    return {"sent": sent, "start_ns": start, "sent_ns": sent_ns, "done_ns": now_ns(), "acked": sent}


class _Ring:
    """65535 pre-encoded QoS 1/2 PUBLISH packets (packet ids 1..65535); sequence numbers
    are patched into a copy of a slice with strided assignment."""

    def __init__(self, spec: PublisherSpec) -> None:
        topics = list(spec.topics)
        self.data = publish_stream(topics, spec.payload, spec.qos, 0, RING)
        self.shape = PublishShape.of(len(topics[0].encode()), spec.payload, spec.qos)

    def batch(self, seq: int, count: int) -> bytes:
        """Messages seq .. seq+count-1 (not wrapping the ring: count <= RING - seq % RING)."""
        size = self.shape.size
        at = seq % RING
        chunk = bytearray(self.data[at * size : (at + count) * size])
        seqs = array("I", range(seq, seq + count)).tobytes()
        first = self.shape.payload_at
        for byte in range(SEQ_BYTES):
            chunk[first + byte :: size] = seqs[byte::SEQ_BYTES]
        return bytes(chunk)


def _windowed(client: Client, spec: PublisherSpec, receiver: _Counter | None) -> dict[str, Any]:
    """QoS 1/2 keeping at most `window` messages in flight: not yet acknowledged
    (PUBACK / PUBCOMP) and, with `receiver` (the subscriber, driven by the same
    loop), not yet received end to end."""
    ring = _Ring(spec)
    sock = client.sock
    sock.settimeout(spec.drain)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, None)
    if receiver is not None:
        selector.register(receiver.client.sock, selectors.EVENT_READ, receiver)
    sent = done = 0
    pending = bytearray(client.buffer)
    start = now_ns()
    deadline = time.monotonic() + spec.duration
    last_progress = time.monotonic()
    sent_ns = start
    while True:
        now = time.monotonic()
        sending = sent < spec.max_messages and now < deadline
        if not sending and done >= sent:
            break
        if now - last_progress > STALL_SECONDS:
            break  # what is not acknowledged by now counts as lost at the subscriber
        arrived = done if receiver is None else min(done, receiver.distinct)
        room = spec.window - (sent - arrived)
        # Refill at once, however little: waiting to send more would leave the
        # broker's small acknowledgements stuck behind Nagle and delayed ACKs.
        if sending and room > 0:
            count = min(room, spec.max_messages - sent, RING - sent % RING)
            sock.sendall(ring.batch(sent, count))
            sent += count
            sent_ns = now_ns()
        publisher_ready = False
        for key, _ in selector.select(0.5):
            if key.data is None:
                publisher_ready = True
            elif key.data.read():
                last_progress = time.monotonic()
        if not publisher_ready:
            continue
        data = sock.recv(RECV_BYTES)
        if not data:
            raise BenchError("the broker closed the publisher's connection")
        pending += data
        completed, replies = _acknowledgements(pending, spec.qos)
        if replies:
            sock.sendall(replies)
        if completed:
            done += completed
            last_progress = time.monotonic()
    selector.close()
    return {"sent": sent, "start_ns": start, "sent_ns": sent_ns, "done_ns": now_ns(), "acked": done}


def _acknowledgements(pending: bytearray, qos: int) -> tuple[int, bytes]:
    """Take the 4-byte acknowledgements from `pending`: (flows completed, PUBRELs to send)."""
    whole = len(pending) - len(pending) % 4
    if qos == 1:
        del pending[:whole]
        return whole // 4, b""
    firsts = pending[0:whole:4]
    completed = firsts.count(PUBCOMP_FIRST)
    if firsts.count(PUBREC_FIRST) == len(firsts):
        replies = acks(PUBREL_FIRST, pending[2:whole:4], pending[3:whole:4])
    else:
        out = []
        for at in range(0, whole, 4):
            if pending[at] == PUBREC_FIRST:
                out.append(bytes((PUBREL_FIRST, 2)) + pending[at + 2 : at + 4])
        replies = b"".join(out)
    del pending[:whole]
    return completed, replies


def _paced(client: Client, spec: PublisherSpec) -> dict[str, Any]:
    """One message every 1/rate s, its payload starting with perf_counter_ns at send."""
    sock = client.sock
    sock.settimeout(spec.drain)
    topic = spec.topics[0]
    padding = b"x" * max(0, spec.payload - 8)
    interval = 1.0 / spec.rate
    begin = time.perf_counter()
    end = begin + spec.duration
    start = now_ns()
    sent = acked = 0
    while sent < spec.max_messages:
        target = begin + sent * interval
        if target >= end:
            break
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        packet_id = sent % RING + 1 if spec.qos else None
        stamp = now_ns().to_bytes(8, "little")
        sock.sendall(encode_publish(topic, stamp + padding, spec.qos, False, False, packet_id))
        sent += 1
        if spec.qos:
            acked += client.discard_available()
    sent_ns = now_ns()
    client.ping(spec.drain)
    return {
        "sent": sent,
        "start_ns": start,
        "sent_ns": sent_ns,
        "done_ns": now_ns(),
        "acked": acked,
    }


# ------------------------------------------------------------------ subscriber


@dataclass(slots=True)
class _Counter:
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
                self.seen.update(seq_column(data, shape.payload_at, shape.size, count))
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
                if mode == "ack":
                    self.seen.add(
                        int.from_bytes(buffer[payload_at : payload_at + SEQ_BYTES], "little")
                    )
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
    _guarded("subscriber", spec.index, results, lambda: _subscriber(spec, go, control, results))


def _subscriber(spec: SubscriberSpec, go: Event, control: Pipe, results: Queue[Message]) -> None:
    clients = [
        Client.connect(
            spec.host, spec.port, conn.client_id, conn.clean_session, timeout=SETUP_TIMEOUT
        )
        for conn in spec.connections
    ]
    started = now_ns()
    for client, conn in zip(clients, spec.connections, strict=True):
        client.send_subscribe(list(conn.filters))
    for client, conn in zip(clients, spec.connections, strict=True):
        client.expect_suback(len(conn.filters), SETUP_TIMEOUT)
    _report(
        results, "subscribed", "subscriber", spec.index, {"start_ns": started, "end_ns": now_ns()}
    )
    counters = [_Counter(client, spec) for client in clients]
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
    _report(results, "result", "subscriber", spec.index, outcome)


def _receive(counters: list[_Counter], control: Pipe, spec: SubscriberSpec) -> None:
    """Count until every connection has what it should, `quiet` s pass without data
    once that is known, or the hard deadline."""
    batched = spec.mode == "count"
    selector = selectors.DefaultSelector()
    for counter in counters:
        counter.prepare(batched)
        selector.register(counter.client.sock, selectors.EVENT_READ, counter)
    selector.register(control, selectors.EVENT_READ, None)
    hard_deadline = time.monotonic() + spec.max_seconds
    expectation_known = False
    last_data = time.monotonic()
    try:
        while time.monotonic() < hard_deadline:
            if expectation_known:
                if all(counter.satisfied for counter in counters):
                    return
                if time.monotonic() - last_data > spec.quiet:
                    return  # what has not come by now is lost
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
                    continue
                if counter.closed:
                    continue
                if counter.read():
                    last_data = time.monotonic()
                elif counter.closed:
                    selector.unregister(counter.client.sock)
    finally:
        selector.close()


def pair_main(pub: PublisherSpec, sub: SubscriberSpec, go: Event, results: Queue[Message]) -> None:
    _guarded("pair", 0, results, lambda: _pair(pub, sub, go, results))


def _pair(pub: PublisherSpec, sub: SubscriberSpec, go: Event, results: Queue[Message]) -> None:
    """One publisher and one subscriber in one loop, so the publisher's window can
    count messages until they arrive (QoS 1/2 end to end) without any IPC."""
    conn = sub.connections[0]
    subscriber = Client.connect(
        sub.host, sub.port, conn.client_id, conn.clean_session, timeout=SETUP_TIMEOUT
    )
    subscriber.subscribe(list(conn.filters), SETUP_TIMEOUT)
    publisher = Client.connect(pub.host, pub.port, pub.client_id, timeout=SETUP_TIMEOUT)
    receiver = _Counter(subscriber, sub)
    receiver.prepare(False)
    _report(results, "ready", "pair", 0, None)
    if not go.wait(SETUP_TIMEOUT):
        raise BenchError("no start signal")
    cpu = time.process_time()
    if subscriber.buffer:
        data, subscriber.buffer = bytes(subscriber.buffer), bytearray()
        receiver.feed(data, now_ns())
    outcome = _windowed(publisher, pub, receiver)
    receive_all(receiver, outcome["sent"], sub.quiet, sub.max_seconds)
    outcome |= {
        "connection": receiver.result(),
        "cpu_seconds": time.process_time() - cpu,
        "end_ns": now_ns(),
    }
    publisher.close()
    subscriber.close()
    _report(results, "result", "pair", 0, outcome)


# ------------------------------------------------------------------ connections


def opener_main(spec: OpenerSpec, go: Event, control: Pipe, results: Queue[Message]) -> None:
    _guarded("opener", spec.index, results, lambda: _opener(spec, go, control, results))


def _opener(spec: OpenerSpec, go: Event, control: Pipe, results: Queue[Message]) -> None:
    _report(results, "ready", "opener", spec.index, None)
    if not go.wait(SETUP_TIMEOUT):
        raise BenchError("no start signal")
    socks: list[socket.socket] = []
    try:
        cpu = time.process_time()
        start = now_ns()
        for first in range(0, spec.count, spec.batch):
            group = []
            for number in range(first, min(first + spec.batch, spec.count)):
                sock = socket.create_connection((spec.host, spec.port), timeout=SETUP_TIMEOUT)
                socks.append(sock)
                sock.sendall(encode(Connect(f"{spec.id_prefix}-{number}")))
                group.append(sock)
            for sock in group:
                connack = b""
                while len(connack) < 4:
                    chunk = sock.recv(4 - len(connack))
                    if not chunk:
                        raise BenchError("the broker closed a new connection")
                    connack += chunk
                if connack != b"\x20\x02\x00\x00":
                    raise BenchError(f"CONNACK refused: {connack.hex()}")
        end = now_ns()
        _report(
            results,
            "connected",
            "opener",
            spec.index,
            {
                "start_ns": start,
                "end_ns": end,
                "count": len(socks),
                "cpu_seconds": time.process_time() - cpu,
            },
        )
        control.poll(spec.hold)
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.sendall(DISCONNECT)
            sock.close()
    _report(results, "result", "opener", spec.index, {"closed": len(socks)})


# ------------------------------------------------------------------ sink


def sink_main(spec: SinkSpec, stop: Event, results: Queue[Message]) -> None:
    _guarded("sink", 0, results, lambda: _sink(spec, stop, results))


@dataclass(slots=True)
class _SinkConn:
    sock: socket.socket
    greeted: bool = False
    source: bool = False
    read: int = 0
    written: int = 0


def _sink(spec: SinkSpec, stop: Event, results: Queue[Message]) -> None:
    """Answer CONNECT, PINGREQ and SUBSCRIBE; discard everything else, or stream
    PUBLISH packets to a connection that subscribed. Our own clients only: a
    PINGREQ is recognised as the last two bytes of a read, which holds for the
    generator (it waits for PINGRESP after sending one)."""
    stream = publish_stream([spec.topic], spec.payload, 0, 0, 1) * max(1, (4 * BATCH_BYTES) // 100)
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    _report(results, "listening", "sink", 0, listener.getsockname()[1])
    buffer = bytearray(RECV_BYTES)
    deadline = time.monotonic() + spec.max_seconds
    totals = {"read_bytes": 0, "written_bytes": 0}
    while not stop.is_set() and time.monotonic() < deadline:
        for key, events in selector.select(0.1):
            if key.data is None:
                sock, _ = listener.accept()
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, _SinkConn(sock))
                continue
            conn: _SinkConn = key.data
            try:
                if events & selectors.EVENT_READ and not _sink_read(conn, buffer, selector):
                    selector.unregister(conn.sock)
                    conn.sock.close()
                    continue
                if events & selectors.EVENT_WRITE:
                    conn.written += conn.sock.send(stream)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                selector.unregister(conn.sock)
                conn.sock.close()
            totals["read_bytes"] += conn.read
            totals["written_bytes"] += conn.written
            conn.read = conn.written = 0
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()
    _report(results, "result", "sink", 0, totals)


def _sink_read(conn: _SinkConn, buffer: bytearray, selector: selectors.BaseSelector) -> bool:
    size = conn.sock.recv_into(buffer)
    if not size:
        return False
    conn.read += size
    data = buffer[:size]
    if not conn.greeted:
        conn.greeted = True
        conn.sock.sendall(b"\x20\x02\x00\x00")
    elif data[0] == 0x82 and not conn.source:
        packets = list(scan(bytearray(data)))
        if packets:
            _first, start, end = packets[0]
            body = data[start:end]
            filters = 0
            at = 2
            while at < len(body):
                at += 2 + ((body[at] << 8) | body[at + 1]) + 1
                filters += 1
            conn.sock.sendall(bytes((0x90, 2 + filters)) + bytes(body[:2]) + b"\x00" * filters)
            conn.source = True
            selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
    elif data.endswith(PINGREQ):
        conn.sock.sendall(PINGRESP)
    elif data.endswith(DISCONNECT):
        return False
    return True


# ------------------------------------------------------------------ parent


class Swarm:
    """Starts workers, gathers their reports, and stops them (only the ones it started)."""

    def __init__(self) -> None:
        raise_fd_limit()
        self.ctx: ForkServerContext = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(["midge.bench.loadgen"])
        self.results: Queue[Message] = self.ctx.Queue()
        self.go = self.ctx.Event()
        self.processes: list[ForkServerProcess] = []
        self.pipes: dict[tuple[str, int], Pipe] = {}
        self.inbox: dict[tuple[str, str, int], Any] = {}

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(self, role: str, index: int, target: Callable[..., None], *args: Any) -> None:
        """Start `target(*args, results_queue)` in a worker process."""
        process = self.ctx.Process(
            target=target,
            args=(*args, self.results),
            name=f"midge-bench-{role}-{index}",
            daemon=True,
        )
        process.start()
        self.processes.append(process)

    def _control(self, role: str, index: int) -> Pipe:
        ours, theirs = self.ctx.Pipe()
        self.pipes[role, index] = ours
        return theirs

    def publishers(self, specs: list[PublisherSpec]) -> None:
        for spec in specs:
            self.spawn("publisher", spec.index, publisher_main, spec, self.go)

    def subscribers(self, specs: list[SubscriberSpec]) -> None:
        for spec in specs:
            control = self._control("subscriber", spec.index)
            self.spawn("subscriber", spec.index, subscriber_main, spec, self.go, control)

    def openers(self, specs: list[OpenerSpec]) -> None:
        for spec in specs:
            control = self._control("opener", spec.index)
            self.spawn("opener", spec.index, opener_main, spec, self.go, control)

    def send(self, role: str, index: int, message: Any) -> None:
        self.pipes[role, index].send(message)

    def wait(self, kind: str, role: str, count: int, timeout: float) -> list[Any]:
        """The `kind` reports of workers 0..count-1 of `role`, in index order."""
        deadline = time.monotonic() + timeout
        wanted = [(kind, role, index) for index in range(count)]
        while not all(key in self.inbox for key in wanted):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [key for key in wanted if key not in self.inbox]
                raise BenchError(f"workers did not report in {timeout:g} s: {missing}")
            try:
                message = self.results.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                dead = [p.name for p in self.processes if p.exitcode not in (None, 0)]
                if dead:
                    raise BenchError(f"workers died: {dead}") from None
                continue
            got_kind, got_role, got_index, data = message
            if got_kind == "error":
                raise BenchError(f"{got_role} {got_index} failed:\n{data}")
            self.inbox[got_kind, got_role, got_index] = data
        return [self.inbox[key] for key in wanted]

    def close(self) -> None:
        self.go.set()  # a worker still waiting for the start leaves its wait
        for pipe in self.pipes.values():
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        deadline = time.monotonic() + 10.0
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # by its own PID: only the workers started here
                process.join(5.0)
        for pipe in self.pipes.values():
            pipe.close()
        self.results.close()
        self.results.join_thread()


@contextlib.contextmanager
def sink(spec: SinkSpec) -> Iterator[tuple[int, Swarm]]:
    """A sink server in a worker process; yields its port."""
    with Swarm() as swarm:
        stop = swarm.ctx.Event()
        swarm.spawn("sink", 0, sink_main, spec, stop)
        port = swarm.wait("listening", "sink", 1, SETUP_TIMEOUT)[0]
        try:
            yield int(port), swarm
        finally:
            stop.set()


def make_counter(
    client: Client, mode: str, shape: PublishShape | None, first_byte: int
) -> _Counter:
    """A receiving side for a client driven in this process (see `receive_all`)."""
    spec = SubscriberSpec(0, "", 0, (), mode, shape, first_byte)
    return _Counter(client, spec)


def receive_all(count: _Counter, expected: int, quiet: float, max_seconds: float) -> None:
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
