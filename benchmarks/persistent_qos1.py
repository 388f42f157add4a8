#!/usr/bin/env python3
"""QoS 1 throughput to a persistent subscriber: Midge (memory, SQLite) against Mosquitto.

For each target a fresh broker starts on a free loopback port with its own
temporary data dir. A subscriber connects with clean session 0, subscribes
at QoS 1 and stays connected, acknowledging everything. One publisher sends
N QoS 1 messages keeping a window of unacknowledged messages in flight. The
time runs from the first publish until the subscriber has received all N
distinct messages; `lost` counts those that never arrived (it must be 0).
Targets alternate within every round, so drift on the machine (thermal,
other load) spreads over all of them; the table shows the median of the
rounds and their range.

Both clients are raw sockets driven by one thread with select(): every
PUBLISH is encoded before the clock starts (midge.protocol.codec), the
publisher only counts 4-byte PUBACKs, and the subscriber reads fixed headers
plus the packet id and sequence number at known offsets and answers with
pre-built PUBACK bytes. On a small machine that leaves the broker as the
bottleneck rather than the client.

Run from the repository root with the project's venv:

    .venv/bin/python benchmarks/persistent_qos1.py --messages 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # brokers.py: start/stop real brokers by PID

from brokers import Broker, mosquitto_binary, start_midge, start_mosquitto  # noqa: E402
from midge.protocol.codec import encode, encode_publish  # noqa: E402
from midge.protocol.packets import (  # noqa: E402
    Connect,
    Disconnect,
    PubAck,
    Subscribe,
    Subscription,
)

TOPIC = "bench/persistent"
SUBSCRIBER_ID = "bench-sub"
PUBLISHER_ID = "bench-pub"
BROKER_INFLIGHT = 20  # max_inflight_messages, the same for every broker (Mosquitto's default)
STALL_SECONDS = 10.0  # no progress for this long ends a run; what is missing is lost
RESULTS = ROOT / "benchmarks" / "results" / "persistent_qos1.json"
SEQ_BYTES = 8  # each payload starts with its sequence number, big-endian
PUBACKS = [b""] + [encode(PubAck(packet_id)) for packet_id in range(1, 0x10000)]


# ------------------------------------------------------------------ targets

_COMMON_MIDGE = (
    # The subscriber keeps up, but nothing may be dropped if it briefly does not.
    f"max_queued_messages = 0\nmax_queued_bytes = 0\nmax_inflight_messages = {BROKER_INFLIGHT}\n"
)


@contextmanager
def midge_memory() -> Iterator[Broker]:
    with start_midge(_COMMON_MIDGE + 'store = "memory"\n') as broker:
        yield broker


@contextmanager
def midge_sqlite() -> Iterator[Broker]:
    config = _COMMON_MIDGE + 'store = "sqlite"\ndurability = "normal"\n'
    with start_midge(config) as broker:
        yield broker


@contextmanager
def mosquitto_persistent() -> Iterator[Broker]:
    with tempfile.TemporaryDirectory(prefix="mosquitto-bench-") as store:
        conf = (
            # Later lines override the helper's `persistence false`.
            f"persistence true\npersistence_location {store}/\n"
            f"max_queued_messages 0\nmax_inflight_messages {BROKER_INFLIGHT}\n"
            "log_type error\nlog_type warning\n"
        )
        if os.geteuid() == 0:
            # As root mosquitto switches to user "mosquitto", who cannot write here.
            conf += "user root\n"
        with start_mosquitto(conf) as broker:
            yield broker
        if not any(Path(store).iterdir()):
            print(f"warning: mosquitto saved nothing in {store}", file=sys.stderr)


TARGETS: dict[str, Callable[[], AbstractContextManager[Broker]]] = {
    "midge-memory": midge_memory,
    "midge-sqlite": midge_sqlite,
    "mosquitto": mosquitto_persistent,
}


# ------------------------------------------------------------------ clients


def connect(host: str, port: int, client_id: str, clean_session: bool) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=STALL_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(encode(Connect(client_id, clean_session=clean_session)))
    connack = read_exactly(sock, 4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"{client_id}: CONNACK refused: {connack.hex()}")
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise RuntimeError("broker closed the connection")
        data += chunk
    return data


def subscribe(sock: socket.socket) -> None:
    sock.sendall(encode(Subscribe(1, (Subscription(TOPIC, 1),))))
    suback = read_exactly(sock, 5)
    if suback != bytes((0x90, 3, 0, 1, 1)):
        raise RuntimeError(f"unexpected SUBACK {suback.hex()}")


def disconnect(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.sendall(encode(Disconnect()))
    sock.close()


def encode_stream(first_seq: int, count: int, payload_size: int) -> tuple[bytes, list[int]]:
    """All PUBLISH packets back to back, and the offset where each starts (plus the end)."""
    padding = b"x" * max(0, payload_size - SEQ_BYTES)
    packets = [
        encode_publish(
            TOPIC, seq.to_bytes(SEQ_BYTES, "big") + padding, 1, packet_id=seq % 0xFFFF + 1
        )
        for seq in range(first_seq, first_seq + count)
    ]
    offsets = [0]
    for packet in packets:
        offsets.append(offsets[-1] + len(packet))
    return b"".join(packets), offsets


@dataclass
class Run:
    messages: int
    seconds: float
    msg_per_s: float
    lost: int
    duplicates: int
    wrong_qos: int
    client_cpu: float  # share of one CPU the clients used while timed: near 1.0, they limit


class Publisher:
    """Sends pre-encoded PUBLISH packets keeping `window` unacknowledged; counts PUBACKs."""

    def __init__(self, sock: socket.socket, stream: bytes, offsets: list[int], window: int):
        self.sock = sock
        self.view = memoryview(stream)
        self.offsets = offsets
        self.count = len(offsets) - 1
        self.window = window
        self.sent = 0
        self.ack_bytes = 0  # nothing but 4-byte PUBACKs comes to the publisher

    def fill(self) -> None:
        in_flight = self.sent - self.ack_bytes // 4
        if self.sent < self.count and in_flight < self.window:
            upto = min(self.count, self.sent + self.window - in_flight)
            self.sock.sendall(self.view[self.offsets[self.sent] : self.offsets[upto]])
            self.sent = upto

    def readable(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise RuntimeError("broker closed the publisher's connection")
        self.ack_bytes += len(data)

    def collect_acks(self) -> None:
        """Take the acknowledgements still on their way, so the next batch starts clean."""
        deadline = time.monotonic() + STALL_SECONDS
        self.sock.settimeout(STALL_SECONDS)
        try:
            while self.ack_bytes < 4 * self.count and time.monotonic() < deadline:
                self.readable()
        finally:
            self.sock.settimeout(None)


class Subscriber:
    """Reads fixed headers, the packet id and the payload's sequence number; PUBACKs at once."""

    def __init__(self, sock: socket.socket, first_seq: int, count: int) -> None:
        self.sock = sock
        self.first_seq = first_seq
        self.seen = bytearray(count)
        self.distinct = self.duplicates = self.wrong_qos = 0
        self.buffer = bytearray()
        # PUBLISH after its fixed header: topic length and topic, packet id, payload.
        self.topic_end = 2 + len(TOPIC.encode())

    def readable(self) -> None:
        data = self.sock.recv(1 << 18)
        if not data:
            raise RuntimeError("broker closed the subscriber's connection")
        buffer = self.buffer
        buffer += data
        acks = []
        pos = 0
        size = len(buffer)
        while pos + 2 <= size:
            first = buffer[pos]
            length = shift = 0
            index = pos + 1
            while index < size:
                byte = buffer[index]
                index += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            else:
                break  # the remaining length is not complete yet
            end = index + length
            if end > size:
                break
            if first >> 4 == 3:  # PUBLISH
                at = index + self.topic_end
                acks.append(PUBACKS[(buffer[at] << 8) | buffer[at + 1]])
                self._count(first, int.from_bytes(buffer[at + 2 : at + 2 + SEQ_BYTES], "big"))
            pos = end
        del buffer[:pos]
        if acks:
            self.sock.sendall(b"".join(acks))

    def _count(self, first_byte: int, seq: int) -> None:
        if (first_byte >> 1) & 3 != 1:
            self.wrong_qos += 1
        seq -= self.first_seq
        if 0 <= seq < len(self.seen) and not self.seen[seq]:
            self.seen[seq] = 1
            self.distinct += 1
        else:
            self.duplicates += 1


def pump(
    pub: socket.socket,
    sub: socket.socket,
    first_seq: int,
    count: int,
    payload_size: int,
    window: int,
) -> Run:
    """Publish `count` messages with `window` in flight until the subscriber has them all."""
    publisher = Publisher(pub, *encode_stream(first_seq, count, payload_size), window)
    subscriber = Subscriber(sub, first_seq, count)
    readers = [pub, sub]
    cpu_start = time.process_time()
    last_progress = start = time.perf_counter()
    while subscriber.distinct < count:
        publisher.fill()
        ready, _, _ = select.select(readers, [], [], 1.0)
        now = time.perf_counter()
        if not ready:
            if now - last_progress > STALL_SECONDS:
                break  # what has not arrived by now is lost
            continue
        last_progress = now
        if pub in ready:
            publisher.readable()
        if sub in ready:
            subscriber.readable()
    elapsed = time.perf_counter() - start
    client_cpu = (time.process_time() - cpu_start) / elapsed
    if subscriber.distinct == count:
        publisher.collect_acks()
    return Run(
        count,
        elapsed,
        count / elapsed,
        count - subscriber.distinct,
        subscriber.duplicates,
        subscriber.wrong_qos,
        client_cpu,
    )


def measure(target: str, messages: int, payload: int, window: int, warmup: int) -> Run:
    with TARGETS[target]() as (host, port, _process):
        sub = connect(host, port, SUBSCRIBER_ID, clean_session=False)
        subscribe(sub)
        pub = connect(host, port, PUBLISHER_ID, clean_session=True)
        try:
            if warmup:
                pump(pub, sub, 0, warmup, payload, window)
            return pump(pub, sub, warmup, messages, payload, window)
        finally:
            disconnect(pub)
            disconnect(sub)


# ------------------------------------------------------------------ report


def summarise(runs: dict[str, list[Run]]) -> dict[str, dict[str, float]]:
    summary = {}
    for target, target_runs in runs.items():
        rates = [run.msg_per_s for run in target_runs]
        summary[target] = {
            "median_msg_per_s": statistics.median(rates),
            "min_msg_per_s": min(rates),
            "max_msg_per_s": max(rates),
            "lost": sum(run.lost for run in target_runs),
            "duplicates": sum(run.duplicates for run in target_runs),
            "wrong_qos": sum(run.wrong_qos for run in target_runs),
            "client_cpu_max": max(run.client_cpu for run in target_runs),
        }
    return summary


def ratios(summary: dict[str, dict[str, float]]) -> dict[str, float]:
    pairs = {
        "midge-sqlite / midge-memory": ("midge-sqlite", "midge-memory"),
        "midge-sqlite / mosquitto": ("midge-sqlite", "mosquitto"),
        "midge-memory / mosquitto": ("midge-memory", "mosquitto"),
    }
    return {
        name: summary[a]["median_msg_per_s"] / summary[b]["median_msg_per_s"]
        for name, (a, b) in pairs.items()
        if a in summary and b in summary
    }


def table(summary: dict[str, dict[str, float]], found: dict[str, float]) -> str:
    lines = [
        f"{'target':<14} {'median msg/s':>13} {'min-max msg/s':>19} {'lost':>5} {'dup':>5}"
        f" {'client CPU':>10}",
    ]
    for target, row in summary.items():
        span = f"{row['min_msg_per_s']:,.0f}-{row['max_msg_per_s']:,.0f}"
        lines.append(
            f"{target:<14} {row['median_msg_per_s']:>13,.0f} {span:>19} "
            f"{row['lost']:>5.0f} {row['duplicates']:>5.0f} {row['client_cpu_max']:>10.0%}"
        )
    lines.extend(f"{name}: {value:.2f}" for name, value in found.items())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000, help="timed messages per run")
    parser.add_argument("--payload", type=int, default=64, help="payload bytes (>= 8)")
    parser.add_argument("--window", type=int, default=100, help="publisher's messages in flight")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target, alternating")
    parser.add_argument("--warmup", type=int, default=1000, help="untimed messages first")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated subset of {','.join(TARGETS)}",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    if args.payload < SEQ_BYTES or args.messages < 1 or not 1 <= args.window <= 60000:
        parser.error("need --payload >= 8, --messages >= 1, --window 1..60000")
    targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = [name for name in targets if name not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {list(TARGETS)}")
    if "mosquitto" in targets and mosquitto_binary() is None:
        print("mosquitto is not installed: skipping it", file=sys.stderr)
        targets.remove("mosquitto")

    runs: dict[str, list[Run]] = {name: [] for name in targets}
    for round_number in range(1, args.rounds + 1):
        for target in targets:
            run = measure(target, args.messages, args.payload, args.window, args.warmup)
            runs[target].append(run)
            print(
                f"round {round_number} {target:<13} {run.msg_per_s:>9,.0f} msg/s "
                f"({run.seconds:.2f} s, lost {run.lost}, duplicates {run.duplicates}, "
                f"client CPU {run.client_cpu:.0%})",
                flush=True,
            )
    summary = summarise(runs)
    found = ratios(summary)
    print()
    print(
        f"QoS 1 to a persistent subscriber: {args.messages} messages x {args.payload} B, "
        f"publisher window {args.window}, broker in-flight {BROKER_INFLIGHT}, "
        f"{args.rounds} rounds"
    )
    print(table(summary, found))
    result = {
        "benchmark": "persistent_qos1",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parameters": {**vars(args), "output": str(args.output), "targets": targets},
        "broker_max_inflight_messages": BROKER_INFLIGHT,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "runs": {name: [asdict(run) for run in target_runs] for name, target_runs in runs.items()},
        "summary": summary,
        "ratios": found,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.output}")
    lost = sum(row["lost"] for row in summary.values())
    if lost:
        print(f"FAILED: {lost:.0f} messages lost", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
