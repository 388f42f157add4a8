"""Publisher workers: QoS 0 floods, QoS 1/2 windows, paced latency probes, and pairs.

- `publisher_main`: flood QoS 0 (one pre-encoded block of at least 64 KB,
  written again and again with blocking `sendall`, so TCP flow control paces
  them to what the broker reads), or paced at a fixed rate with a
  perf_counter_ns timestamp in each payload (latency), or QoS 1/2 keeping at
  most `window` messages unacknowledged, counting what the broker accepted
  (PUBACK / PUBREC) apart from flows completed (PUBACK / PUBCOMP), with a
  `tag` after each sequence number when several publishers feed one
  subscriber that must tell their messages apart.
- Either speaks MQTT 3.1.1 or 5.0 (`spec.protocol`): at 5.0 every PUBLISH has
  an empty property block, and acknowledgements from the broker may carry a
  reason code (then they are read packet by packet).
- `pair_main`: one QoS 1/2 publisher and its subscriber in one loop, the
  publisher keeping at most `window` messages in flight end to end (sent and
  not yet received), from a pre-encoded ring of 65535 packets whose sequence
  numbers are patched in with strided slices.
"""

from __future__ import annotations

import selectors
import socket
import time
from array import array
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from midge.bench.counting import Counter, receive_all
from midge.bench.specs import (
    SETUP_TIMEOUT,
    STALL_SECONDS,
    Message,
    PublisherSpec,
    SubscriberSpec,
    guarded,
    now_ns,
    report,
)
from midge.bench.wire import (
    BATCH_BYTES,
    MQTT_5,
    PUBACK_FIRST,
    PUBCOMP_FIRST,
    PUBREC_FIRST,
    PUBREL_FIRST,
    RECV_BYTES,
    SEQ_BYTES,
    TAGGED_BYTES,
    BenchError,
    Client,
    PublishShape,
    acks,
    publish_packet,
    publish_stream,
    scan,
)

RING = 0xFFFF  # packet ids 1..65535: one pre-encoded packet each
SEND_BUFFER = 256 * 1024  # SO_SNDBUF of a flooding publisher


def publisher_main(spec: PublisherSpec, go: Event, results: Queue[Message]) -> None:
    guarded("publisher", spec.index, results, lambda: _publisher(spec, go, results))


def _publisher(spec: PublisherSpec, go: Event, results: Queue[Message]) -> None:
    client = Client.connect(spec.host, spec.port, spec.client_id, protocol=spec.protocol)
    report(results, "ready", "publisher", spec.index, None)
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
    report(results, "result", "publisher", spec.index, outcome)


def _flood(client: Client, spec: PublisherSpec) -> dict[str, Any]:
    """QoS 0 as fast as the broker takes it: one block, written again and again."""
    one_round = publish_stream(
        list(spec.topics), spec.payload, 0, 0, len(spec.topics), spec.retain, spec.protocol
    )
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
        data = bytearray(
            publish_stream(topics, spec.payload, spec.qos, 0, RING, protocol=spec.protocol)
        )
        self.shape = PublishShape.of(len(topics[0].encode()), spec.payload, spec.qos, spec.protocol)
        if spec.tag is not None:  # the same in every packet: written once, here
            if spec.payload < TAGGED_BYTES:
                raise BenchError(f"a tagged payload needs {TAGGED_BYTES} bytes at least")
            tag = array("I", (spec.tag,)).tobytes()
            at = self.shape.payload_at + SEQ_BYTES
            for byte in range(SEQ_BYTES):
                data[at + byte :: self.shape.size] = tag[byte : byte + 1] * RING
        self.data = bytes(data)

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


def _windowed(client: Client, spec: PublisherSpec, receiver: Counter | None) -> dict[str, Any]:
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
    sent = done = accepted = 0
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
        if spec.protocol >= MQTT_5 and not _short_forms(pending):
            completed, taken, replies = _acknowledgements5(pending)
        else:
            completed, taken, replies = _acknowledgements(pending, spec.qos)
        if replies:
            sock.sendall(replies)
        accepted += taken
        if completed:
            done += completed
            last_progress = time.monotonic()
    selector.close()
    return {
        "sent": sent,
        "start_ns": start,
        "sent_ns": sent_ns,
        "done_ns": now_ns(),
        "acked": done,
        "accepted": accepted,
    }


def _acknowledgements(pending: bytearray, qos: int) -> tuple[int, int, bytes]:
    """Take the 4-byte acknowledgements from `pending`: (flows completed, messages the
    broker took responsibility for (PUBACK / PUBREC), PUBRELs to send)."""
    whole = len(pending) - len(pending) % 4
    if qos == 1:
        del pending[:whole]
        return whole // 4, whole // 4, b""
    firsts = pending[0:whole:4]
    completed = firsts.count(PUBCOMP_FIRST)
    received = firsts.count(PUBREC_FIRST)
    if received == len(firsts):
        replies = acks(PUBREL_FIRST, pending[2:whole:4], pending[3:whole:4])
    else:
        out = []
        for at in range(0, whole, 4):
            if pending[at] == PUBREC_FIRST:
                out.append(bytes((PUBREL_FIRST, 2)) + pending[at + 2 : at + 4])
        replies = b"".join(out)
    del pending[:whole]
    return completed, received, replies


def _short_forms(pending: bytearray) -> bool:
    """Whether the whole 4-byte units of `pending` are all 4-byte acknowledgements
    (remaining length 2): always at 3.1.1, and at 5.0 unless a reason code or
    properties came. The first longer one breaks the pattern where it starts."""
    count = len(pending) // 4
    return pending[1 : 4 * count : 4].count(2) == count


def _acknowledgements5(pending: bytearray) -> tuple[int, int, bytes]:
    """`_acknowledgements` packet by packet, for 5.0 acknowledgements of any length:
    a reason code of 0x80 or more refuses the message (at QoS 2 the flow ends at
    that PUBREC), so it completes the flow without the broker taking the message."""
    completed = received = taken = 0
    replies = []
    for first, start, end in scan(pending):
        taken = end
        refused = end - start > 2 and pending[start + 2] >= 0x80
        if first == PUBACK_FIRST:
            completed += 1
            received += not refused
        elif first == PUBREC_FIRST:
            if refused:
                completed += 1
            else:
                received += 1
                replies.append(bytes((PUBREL_FIRST, 2)) + pending[start : start + 2])
        elif first == PUBCOMP_FIRST:
            completed += 1
    del pending[:taken]
    return completed, received, b"".join(replies)


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
        sock.sendall(
            publish_packet(topic, stamp + padding, spec.qos, False, packet_id, spec.protocol)
        )
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


# ------------------------------------------------------------------ pair


def pair_main(pub: PublisherSpec, sub: SubscriberSpec, go: Event, results: Queue[Message]) -> None:
    guarded("pair", 0, results, lambda: _pair(pub, sub, go, results))


def _pair(pub: PublisherSpec, sub: SubscriberSpec, go: Event, results: Queue[Message]) -> None:
    """One publisher and one subscriber in one loop, so the publisher's window can
    count messages until they arrive (QoS 1/2 end to end) without any IPC."""
    conn = sub.connections[0]
    subscriber = Client.connect(
        sub.host,
        sub.port,
        conn.client_id,
        conn.clean_session,
        timeout=SETUP_TIMEOUT,
        protocol=sub.protocol,
    )
    subscriber.subscribe(list(conn.filters), SETUP_TIMEOUT)
    publisher = Client.connect(
        pub.host, pub.port, pub.client_id, timeout=SETUP_TIMEOUT, protocol=pub.protocol
    )
    receiver = Counter(subscriber, sub)
    receiver.prepare(False)
    report(results, "ready", "pair", 0, None)
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
    report(results, "result", "pair", 0, outcome)
