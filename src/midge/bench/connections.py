"""Workers that deal in connections rather than messages.

- `opener_main`: open many idle connections, hold them until told, then
  close them.
- `sink_main`: a TCP server that answers CONNECT, PINGREQ and SUBSCRIBE and
  otherwise only reads and discards, or streams PUBLISH packets to a
  subscriber as fast as it can: the generator's own ceiling.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from midge.bench.specs import SETUP_TIMEOUT, Message, OpenerSpec, SinkSpec, guarded, now_ns, report
from midge.bench.wire import (
    BATCH_BYTES,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    RECV_BYTES,
    BenchError,
    publish_stream,
    scan,
)
from midge.protocol.codec import encode
from midge.protocol.packets import Connect


def opener_main(spec: OpenerSpec, go: Event, control: Pipe, results: Queue[Message]) -> None:
    guarded("opener", spec.index, results, lambda: _opener(spec, go, control, results))


def _opener(spec: OpenerSpec, go: Event, control: Pipe, results: Queue[Message]) -> None:
    report(results, "ready", "opener", spec.index, None)
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
        report(
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
    report(results, "result", "opener", spec.index, {"closed": len(socks)})


# ------------------------------------------------------------------ sink


def sink_main(spec: SinkSpec, stop: Event, results: Queue[Message]) -> None:
    guarded("sink", 0, results, lambda: _sink(spec, stop, results))


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
    report(results, "listening", "sink", 0, listener.getsockname()[1])
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
    report(results, "result", "sink", 0, totals)


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
