"""Fault injection with a real broker process: SIGKILL under load, clean stops, bad stores.

The kill tests flood a persistent subscriber's session (clean session 0,
`dur/#` at QoS 2) with QoS 1 and QoS 2 messages from a raw-socket publisher
that keeps a window of messages in flight, kill the broker with SIGKILL at
random moments, restart it on the same data dir and let both clients resume
their sessions the way MQTT 3.1.1 says a client must (section 4.4: re-send
unacknowledged PUBLISH with DUP, re-send PUBREL for messages that had
PUBREC). The subscriber either drains at the end or receives all along and
is killed under too. Checked: every QoS 1 message with PUBACK arrived at
least once, every QoS 2 message with PUBREC exactly once, the first
deliveries per topic are in publish order, the sessions, the subscription
and a retained message survive.

With a small queue bound and the subscriber online, the same flood checks
backpressure: the publisher is held back instead of anything being dropped
(KILL9_STALL=0.001 makes the subscriber count as stalled at once, which is
the old drop-at-the-bound behaviour: those runs must fail, proving the test
can see a loss).

The randomness (when to kill, which topic each message goes to) is seeded:
set DURABILITY_SEED to repeat a run's choices. Timing still varies from run
to run, so a failure names the seed and what each broker life saw.

Then: a clean stop (SIGTERM) keeps everything, `store = "memory"` keeps
nothing, and a corrupt or newer store stops the start (exit 2) untouched.
"""

from __future__ import annotations

import os
import queue
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from durability_support import (
    WAIT,
    BrokerGone,
    RawClient,
    data_dir_args,
    store_path,
)

from brokers import LISTENING, OutputPump, start_midge, stop
from midge.protocol.codec import encode, encode_publish
from midge.protocol.packets import (
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
)

pytestmark = pytest.mark.timeout(60)

SEED = int(os.environ.get("DURABILITY_SEED", "20240611"))
KILLS = 3  # broker lives ended by SIGKILL; one more life finishes the run
KILL_DELAY = (0.1, 0.6)  # seconds of flooding before the kill, drawn per life
MAX_PER_LIFE = 20_000  # new messages per killed life at most: more than fit before the kill
FINAL_MESSAGES = 500  # new messages after the last restart
WINDOW = 64  # publisher's messages in flight
GIVE_UP = 2.0  # seconds of silence after which a subscriber missing messages stops waiting
TOPICS = {1: "dur/q1", 2: "dur/q2"}
RETAINED_TOPIC = "durable/retained"  # outside dur/#: checked by a fresh client
RETAINED_PAYLOAD = b"kept through kill -9"
PUBLISHER_ID = "dur-pub"
SUBSCRIBER_ID = "dur-sub"

# The subscriber is offline while thousands of messages pile up in its session.
UNBOUNDED = "max_queued_messages = 0\nmax_queued_bytes = 0\n"
# A bound the flood passes many times over while the subscriber lags.
BOUNDED = f"max_queued_messages = 100\nstall_timeout = {os.environ.get('KILL9_STALL', '5')}\n"


# ------------------------------------------------------------- the publisher


@dataclass
class Outgoing:
    qos: int
    seq: int
    packet_id: int
    released: bool = False  # QoS 2: PUBREC came and PUBREL went out; awaits PUBCOMP


class FloodPublisher:
    """A persistent-session publisher keeping its side of the QoS 1/2 flows."""

    def __init__(self, rng: random.Random, window: int) -> None:
        self.rng = rng
        self.window = window
        self.inflight: dict[int, Outgoing] = {}  # packet id -> message, in send order
        self.next_seq = {1: 0, 2: 0}
        self.acked: dict[int, set[int]] = {1: set(), 2: set()}  # PUBACK / PUBCOMP seen
        self.pubrec: set[int] = set()  # QoS 2 seqs that got PUBREC
        self.anomalies: list[str] = []  # acknowledgements the broker should not send
        self._next_packet_id = 1
        self.client: RawClient | None = None

    def sent(self, qos: int) -> int:
        return self.next_seq[qos]

    def _allocate(self) -> int:
        packet_id = self._next_packet_id
        while packet_id in self.inflight:
            packet_id = packet_id % 0xFFFF + 1
        self._next_packet_id = packet_id % 0xFFFF + 1
        return packet_id

    def connect(self, host: str, port: int) -> bool:
        """Connect with clean session 0, re-send what is unacknowledged; session present?"""
        self.client = RawClient(host, port, PUBLISHER_ID, clean_session=False)
        resend = []
        for entry in self.inflight.values():  # in the order first sent
            if entry.released:
                resend.append(encode(PubRel(entry.packet_id)))
            else:
                resend.append(self._publish_bytes(entry, dup=True))
        if resend:
            self.client.send(b"".join(resend))
        return self.client.session_present

    def _publish_bytes(self, entry: Outgoing, dup: bool) -> bytes:
        payload = str(entry.seq).encode()
        return encode_publish(TOPICS[entry.qos], payload, entry.qos, False, dup, entry.packet_id)

    def run(self, budget: int, until_closed: bool) -> str:
        """Send up to `budget` new messages keeping the window full, handle acks.

        Returns "closed" when the broker went away, "done" when the budget is
        sent and acknowledged (only when not `until_closed`).
        """
        client = self.client
        assert client is not None
        try:
            while True:
                batch = []
                while budget and len(self.inflight) < self.window:
                    qos = 1 if self.rng.random() < 0.5 else 2
                    entry = Outgoing(qos, self.next_seq[qos], self._allocate())
                    self.next_seq[qos] += 1
                    self.inflight[entry.packet_id] = entry
                    batch.append(self._publish_bytes(entry, dup=False))
                    budget -= 1
                if batch:
                    client.send(b"".join(batch))
                if not budget and not self.inflight and not until_closed:
                    return "done"
                # Idle while waiting for the kill: a generous read, still bounded.
                self._handle(client.read(WAIT))
        except BrokerGone:
            client.close()
            self.client = None
            return "closed"

    def _handle(self, packet: Packet) -> None:
        assert self.client is not None
        if isinstance(packet, PubAck | PubComp):
            entry = self.inflight.get(packet.packet_id)
            expected_qos = 1 if isinstance(packet, PubAck) else 2
            if (
                entry is None
                or entry.qos != expected_qos
                or (expected_qos == 2 and not entry.released)
            ):
                self.anomalies.append(f"unexpected {packet!r} (in flight: {entry!r})")
                return
            del self.inflight[packet.packet_id]
            self.acked[entry.qos].add(entry.seq)
        elif isinstance(packet, PubRec):
            entry = self.inflight.get(packet.packet_id)
            if entry is None or entry.qos != 2:
                self.anomalies.append(f"unexpected {packet!r} (in flight: {entry!r})")
                return
            entry.released = True
            self.pubrec.add(entry.seq)
            self.client.send(encode(PubRel(packet.packet_id)))
        else:
            self.anomalies.append(f"unexpected packet {packet!r}")

    def disconnect(self) -> None:
        assert self.client is not None
        self.client.disconnect()
        self.client = None


# ------------------------------------------------------------ the subscriber


class Receiver:
    """The persistent subscriber: its side of the flows, kept across connections.

    QoS 2 uses the receiver's method B: a PUBLISH is delivered (recorded) when
    it arrives and its packet id is kept until PUBREL; a DUP re-send of a kept
    id after a reconnect is the same message, answered but not delivered again.
    """

    def __init__(self) -> None:
        # topic -> (seq, qos, dup) of each delivery to the application, in order.
        self.arrivals: dict[str, list[tuple[int, int, bool]]] = {t: [] for t in TOPICS.values()}
        self.distinct: dict[str, set[int]] = {t: set() for t in TOPICS.values()}
        self.awaiting_release: dict[int, int] = {}  # packet id -> connection it came on
        self.expected: dict[str, int] | None = None  # set when the publisher is done
        self.expected_at = 0.0
        self.oddities: list[str] = []  # what a correct broker never sends
        self.completed_here: set[int] = set()  # QoS 2 ids completed on this connection
        self.stale_releases = 0  # PUBREL re-sent after a restart for an id already completed
        self.connections = 0
        self.client: RawClient | None = None

    def connect(self, host: str, port: int) -> bool:
        self.client = RawClient(host, port, SUBSCRIBER_ID, clean_session=False)
        self.connections += 1
        self.completed_here.clear()
        return self.client.session_present

    def complete(self) -> bool:
        expected = self.expected
        return (
            expected is not None
            and not self.awaiting_release
            and all(len(self.distinct[topic]) >= count for topic, count in expected.items())
        )

    def expect(self, counts: dict[str, int]) -> None:
        """The publisher is done: `counts[topic]` messages, seqs 0..count-1."""
        self.expected_at = time.monotonic()
        self.expected = counts

    def run(self, stop: threading.Event, timeout: float = 40.0) -> str:
        """Receive until the broker goes ("closed"), `stop` is set ("stopped"),
        everything expected arrived followed by 0.5 s of quiet ("done"), or
        nothing came for GIVE_UP seconds while something is missing ("incomplete")."""
        client = self.client
        assert client is not None
        deadline = time.monotonic() + timeout
        last_packet = time.monotonic()
        quiet_from: float | None = None
        try:
            while not stop.is_set():
                now = time.monotonic()
                if quiet_from is None and self.complete():
                    quiet_from = now
                if quiet_from is not None and now - quiet_from >= 0.5:
                    return "done"
                if self.expected is not None and now - max(last_packet, self.expected_at) > GIVE_UP:
                    return "incomplete"
                if now > deadline:
                    return "timeout"
                try:
                    packet = client.read(0.1)
                except TimeoutError:
                    continue
                last_packet = time.monotonic()
                self._handle(client, packet)
            return "stopped"
        except BrokerGone:
            client.close()
            self.client = None
            return "closed"

    def _handle(self, client: RawClient, packet: Packet) -> None:
        if isinstance(packet, Publish):
            packet_id = packet.packet_id or 0
            if packet.qos == 2 and packet_id in self.awaiting_release:
                # Only a re-send after a reconnect may repeat a kept id, with DUP.
                if self.awaiting_release[packet_id] == self.connections or not packet.dup:
                    self.oddities.append(f"QoS 2 id {packet_id} repeated before PUBREL: {packet}")
            else:
                self._deliver(packet)
            self.completed_here.discard(packet_id)
            if packet.qos == 1:
                client.send(encode(PubAck(packet_id)))
            elif packet.qos == 2:
                self.awaiting_release[packet_id] = self.connections
                client.send(encode(PubRec(packet_id)))
        elif isinstance(packet, PubRel):
            if self.awaiting_release.pop(packet.packet_id, None) is not None:
                self.completed_here.add(packet.packet_id)
            elif packet.packet_id in self.completed_here:
                self.oddities.append(f"PUBREL again after PUBCOMP on one connection: {packet}")
            else:
                # Our PUBCOMP went out, the broker died before storing it (section 4.3.3).
                self.stale_releases += 1
            client.send(encode(PubComp(packet.packet_id)))
        else:
            self.oddities.append(f"unexpected packet {packet!r}")

    def _deliver(self, packet: Publish) -> None:
        if packet.topic not in self.arrivals:
            self.oddities.append(f"message on an unexpected topic: {packet}")
            return
        seq = int(packet.payload)
        self.arrivals[packet.topic].append((seq, packet.qos, packet.dup))
        self.distinct[packet.topic].add(seq)

    def disconnect(self) -> None:
        assert self.client is not None
        self.client.disconnect()
        self.client = None


def first_deliveries(arrivals: list[tuple[int, int, bool]]) -> list[int]:
    seen: set[int] = set()
    order = []
    for seq, _, _ in arrivals:
        if seq not in seen:
            seen.add(seq)
            order.append(seq)
    return order


def check_deliveries(
    publisher: FloodPublisher, receiver: Receiver, context: Callable[[], str]
) -> None:
    """The guarantees, checked on what the subscriber's application got."""
    assert not publisher.anomalies, f"{publisher.anomalies[:5]}; {context()}"
    assert not receiver.oddities, f"{receiver.oddities[:5]}; {context()}"
    counts = {TOPICS[qos]: publisher.sent(qos) for qos in (1, 2)}
    # The last life finished every flow, so every message sent was acknowledged.
    assert not publisher.inflight, context()
    assert publisher.acked[1] == set(range(counts[TOPICS[1]])), context()
    assert publisher.acked[2] == set(range(counts[TOPICS[2]])), context()
    assert publisher.pubrec == publisher.acked[2], context()
    q1, q2 = receiver.arrivals[TOPICS[1]], receiver.arrivals[TOPICS[2]]
    # QoS as granted: min(publish QoS, subscription QoS 2).
    assert {qos for _, qos, _ in q1} == {1}, context()
    assert {qos for _, qos, _ in q2} == {2}, context()
    # QoS 1: every acknowledged message at least once.
    missing_q1 = publisher.acked[1] - {seq for seq, _, _ in q1}
    assert not missing_q1, f"QoS 1 lost: {sorted(missing_q1)[:20]}; {context()}"
    # QoS 2: every message with PUBREC / PUBCOMP exactly once.
    q2_seqs = [seq for seq, _, _ in q2]
    missing_q2 = publisher.pubrec - set(q2_seqs)
    assert not missing_q2, f"QoS 2 lost: {sorted(missing_q2)[:20]}; {context()}"
    duplicates_q2 = sorted(seq for seq, n in Counter(q2_seqs).items() if n > 1)
    assert not duplicates_q2, f"QoS 2 duplicated: {duplicates_q2[:20]}; {context()}"
    for topic, arrivals in receiver.arrivals.items():
        unknown = {seq for seq, _, _ in arrivals if not 0 <= seq < counts[topic]}
        assert not unknown, f"{topic}: never published: {sorted(unknown)[:20]}; {context()}"
        # The first delivery of each message keeps publish order (QoS 1 repeats allowed).
        order = first_deliveries(arrivals)
        expected = sorted(order)
        assert order == expected, (
            f"{topic}: first deliveries out of order at index "
            f"{next(i for i, (a, b) in enumerate(zip(order, expected, strict=True)) if a != b)}: "
            f"{order[:3]}...; {context()}"
        )


# ------------------------------------------------------------------- tests


class Outcome:
    """A function run on a thread; `result` is what it returned."""

    def __init__(self, function: Callable[[threading.Event], str], stop: threading.Event):
        self.result: str | None = None
        self._thread = threading.Thread(target=self._run, args=(function, stop), daemon=True)
        self._thread.start()

    def _run(self, function: Callable[[threading.Event], str], stop: threading.Event) -> None:
        self.result = function(stop)

    def join(self, stop: threading.Event, timeout: float = WAIT) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            stop.set()
            self._thread.join(WAIT)


class KillRun:
    """One publisher, one subscriber, one data dir, several broker lives."""

    def __init__(
        self,
        data_dir: Path,
        subscriber_online: bool,
        qos2_delivery: str,
        how: str = "SIGKILL",
        bounded: bool = False,
    ) -> None:
        self.how = how  # SIGKILL, or SIGTERM for a clean stop under the same load
        # Bounded: the default queue bound, which an online subscriber that keeps
        # acknowledging never loses a message to (backpressure holds the publisher).
        self.bounded = bounded
        limits = BOUNDED if bounded else UNBOUNDED
        self.config = f'{limits}qos2_delivery = "{qos2_delivery}"\n'
        self.data_dir = data_dir
        self.subscriber_online = subscriber_online
        self.qos2_delivery = qos2_delivery
        self.kill_rng = random.Random(SEED)  # its own generator: the delays repeat run to run
        self.publisher = FloodPublisher(random.Random(SEED + 1), WINDOW)
        self.receiver = Receiver()
        self.lives: list[str] = []
        self.in_flight_at_kills = 0

    def context(self) -> str:
        online = "online" if self.subscriber_online else "offline"
        bound = ", bounded queue" if self.bounded else ""
        return f"seed={SEED}, {self.how}, subscriber {online}{bound}, {self.qos2_delivery}; " + (
            "; ".join(self.lives)
        )

    def set_the_scene(self, host: str, port: int) -> None:
        """The subscriber's session and subscription, and a retained message."""
        assert not self.receiver.connect(host, port)
        assert self.receiver.client is not None
        assert self.receiver.client.subscribe("dur/#", 2) == (2,)
        self.receiver.disconnect()
        setter = RawClient(host, port, "dur-retain")
        setter.publish(RETAINED_TOPIC, RETAINED_PAYLOAD, qos=1, retain=True)
        setter.disconnect()

    def connect_clients(
        self, host: str, port: int, life: int, stop: threading.Event
    ) -> Outcome | None:
        """The publisher resumes its session; an online subscriber starts receiving
        (first, with a bounded queue: offline, the bound would apply)."""
        listening = None
        if self.subscriber_online and self.bounded:
            assert self.receiver.connect(host, port), f"subscriber session lost; {self.context()}"
            listening = Outcome(self.receiver.run, stop)
        present = self.publisher.connect(host, port)
        assert present == (life > 0), f"publisher session present={present}; {self.context()}"
        if not self.subscriber_online or listening is not None:
            return listening
        assert self.receiver.connect(host, port), f"subscriber session lost; {self.context()}"
        return Outcome(self.receiver.run, stop)

    def killed_life(
        self,
        life: int,
        process: subprocess.Popen[str],
        listening: Outcome | None,
        stop: threading.Event,
    ) -> None:
        publisher = self.publisher
        delay = self.kill_rng.uniform(*KILL_DELAY)
        killer = threading.Timer(
            delay, process.kill if self.how == "SIGKILL" else process.terminate
        )
        before = {qos: len(publisher.acked[qos]) for qos in (1, 2)}
        killer.start()
        try:
            outcome = publisher.run(MAX_PER_LIFE, until_closed=True)
        finally:
            killer.join(timeout=WAIT)
            process.wait(timeout=WAIT)
            if listening is not None:
                listening.join(stop)
        assert outcome == "closed", self.context()
        if self.how == "SIGTERM":
            assert process.returncode == 0, f"exit status {process.returncode}; {self.context()}"
        assert listening is None or listening.result == "closed", self.context()
        released = sum(entry.released for entry in publisher.inflight.values())
        self.in_flight_at_kills += len(publisher.inflight)
        received = sum(map(len, self.receiver.arrivals.values()))
        self.lives.append(
            f"life {life}: {self.how} after {delay:.3f} s, "
            f"acked q1 +{len(publisher.acked[1]) - before[1]} "
            f"q2 +{len(publisher.acked[2]) - before[2]}, in flight at the kill: "
            f"{len(publisher.inflight) - released} unacknowledged, "
            f"{released} QoS 2 awaiting PUBCOMP; subscriber has {received}"
        )

    def final_life(
        self, life: int, host: str, port: int, listening: Outcome | None, stop: threading.Event
    ) -> str:
        """Finish publishing, let the subscriber drain; how the drain ended."""
        publisher, receiver = self.publisher, self.receiver
        outcome = publisher.run(FINAL_MESSAGES, until_closed=False)
        assert outcome == "done", self.context()
        publisher.disconnect()
        receiver.expect({TOPICS[qos]: publisher.sent(qos) for qos in (1, 2)})
        self.lives.append(f"life {life}: sent q1 {publisher.sent(1)} q2 {publisher.sent(2)}")
        if listening is None:
            assert receiver.connect(host, port), f"subscriber session lost; {self.context()}"
            drained = receiver.run(stop)
        else:
            listening.join(stop, timeout=40.0)
            drained = listening.result or "stuck"
        if receiver.client is not None:
            receiver.disconnect()
        return drained

    def run(self) -> None:
        print(f"durability seed={SEED} (set DURABILITY_SEED to repeat)")
        for life in range(KILLS + 1):
            with start_midge(self.config, data_dir_args(self.data_dir)) as (host, port, process):
                if life == 0:
                    self.set_the_scene(host, port)
                stop = threading.Event()
                try:
                    listening = self.connect_clients(host, port, life, stop)
                    if life < KILLS:
                        self.killed_life(life, process, listening, stop)
                    else:
                        drained = self.final_life(life, host, port, listening, stop)
                finally:
                    stop.set()
                if life == KILLS:
                    # What is missing or repeated, then how the drain ended.
                    check_deliveries(self.publisher, self.receiver, self.context)
                    awaiting = sorted(self.receiver.awaiting_release)
                    assert drained == "done", f"{drained}, awaiting PUBREL {awaiting[:10]}; " + (
                        self.context()
                    )
                    check_retained_and_live_subscription(host, port, self.context)
        # Otherwise every kill hit an idle broker and the test proved little.
        assert self.in_flight_at_kills, f"no kill caught a message in flight; {self.context()}"
        receiver = self.receiver
        duplicates = len(receiver.arrivals[TOPICS[1]]) - len(receiver.distinct[TOPICS[1]])
        print(
            f"{self.context()}; QoS 1 duplicates delivered: {duplicates}, "
            f"PUBREL re-sent for completed ids: {receiver.stale_releases}"
        )


@pytest.mark.parametrize(
    ("subscriber_online", "qos2_delivery"),
    [(False, "on_publish"), (True, "on_publish"), (True, "on_release")],
    ids=["offline-subscriber", "online-subscriber", "online-subscriber-qos2-on-release"],
)
def test_acknowledged_messages_survive_repeated_kill_9(
    tmp_path: Path, subscriber_online: bool, qos2_delivery: str
):
    """SIGKILL mid-flood, KILLS times; the subscriber drains at the end ("offline"),
    or receives all along and is killed under too ("online")."""
    KillRun(tmp_path / "data", subscriber_online, qos2_delivery).run()


@pytest.mark.parametrize("qos2_delivery", ["on_publish", "on_release"])
def test_backpressure_loses_nothing_acknowledged_through_kill_9(tmp_path: Path, qos2_delivery):
    """A small queue bound (100) with an online subscriber slower than the
    flood: backpressure holds the publisher instead of dropping, and SIGKILL
    in the middle still loses nothing acknowledged."""
    KillRun(tmp_path / "data", True, qos2_delivery, bounded=True).run()


def test_clean_stops_under_load_lose_nothing(tmp_path: Path):
    """The same flood stopped by SIGTERM instead: exit status 0 and the same guarantees."""
    KillRun(tmp_path / "data", True, "on_publish", how="SIGTERM").run()


def check_retained_and_live_subscription(host: str, port: int, context: Callable[[], str]) -> None:
    fresh = RawClient(host, port, "dur-fresh")
    assert fresh.subscribe("durable/#", 1) == (1,)
    retained = fresh.receive()
    assert (retained.topic, retained.payload, retained.retain) == (
        RETAINED_TOPIC,
        RETAINED_PAYLOAD,
        True,
    ), context()
    fresh.disconnect()
    # The subscription restored from the store still routes new messages.
    subscriber = RawClient(host, port, SUBSCRIBER_ID, clean_session=False)
    assert subscriber.session_present
    publisher = RawClient(host, port, "dur-live")
    publisher.publish("dur/live", b"after the kills", qos=1, packet_id=7)
    live = subscriber.receive()
    assert (live.topic, live.payload, live.qos) == ("dur/live", b"after the kills", 1), context()
    publisher.disconnect()
    subscriber.disconnect()


def test_clean_shutdown_keeps_retained_qos0_and_queued_qos1(tmp_path: Path):
    data_dir = tmp_path / "data"
    with start_midge(None, data_dir_args(data_dir)) as (host, port, process):
        subscriber = RawClient(host, port, "term-sub", clean_session=False)
        assert subscriber.subscribe("term/#", 1) == (1,)
        subscriber.disconnect()
        publisher = RawClient(host, port, "term-pub")
        publisher.publish("term/retained0", b"retained at qos 0", qos=0, retain=True)
        publisher.publish("term/queued1", b"queued at qos 1", qos=1, packet_id=3)
        # A PINGRESP proves the broker handled the QoS 0 PUBLISH before it (same socket).
        publisher.send(encode(PingReq()))
        assert publisher.read() == PingResp()
        publisher.disconnect()
        stop(process)
        assert process.returncode == 0
    assert store_path(data_dir).exists()

    with start_midge(None, data_dir_args(data_dir)) as (host, port, process):
        subscriber = RawClient(host, port, "term-sub", clean_session=False)
        assert subscriber.session_present
        queued = subscriber.receive()
        assert (queued.topic, queued.payload, queued.qos) == ("term/queued1", b"queued at qos 1", 1)
        # QoS 0 is not queued for an offline session (queue_qos0_messages = false).
        subscriber.expect_silence(0.3)
        # The subscription came back too.
        publisher = RawClient(host, port, "term-pub")
        publisher.publish("term/after", b"after the restart", qos=1, packet_id=4)
        publisher.disconnect()
        after = subscriber.receive()
        assert (after.topic, after.payload) == ("term/after", b"after the restart")
        subscriber.disconnect()
        fresh = RawClient(host, port, "term-fresh")
        assert fresh.subscribe("term/retained0", 1) == (1,)
        retained = fresh.receive()
        assert (retained.payload, retained.qos, retained.retain) == (
            b"retained at qos 0",
            0,
            True,
        )
        fresh.disconnect()


def test_memory_store_keeps_nothing_across_a_restart(tmp_path: Path):
    """store = "memory": same flow as above, but a restart starts empty (by design)."""
    data_dir = tmp_path / "data"
    config = 'store = "memory"\n'
    with start_midge(config, data_dir_args(data_dir)) as (host, port, process):
        subscriber = RawClient(host, port, "mem-sub", clean_session=False)
        assert subscriber.subscribe("mem/#", 1) == (1,)
        subscriber.disconnect()
        publisher = RawClient(host, port, "mem-pub")
        publisher.publish("mem/retained", b"gone after restart", qos=1, retain=True)
        publisher.publish("mem/queued", b"gone after restart", qos=1, packet_id=2)
        publisher.disconnect()
        # While it runs, the memory store serves persistent sessions like the disk one.
        subscriber = RawClient(host, port, "mem-sub", clean_session=False)
        assert subscriber.session_present
        assert {subscriber.receive().topic for _ in range(2)} == {"mem/retained", "mem/queued"}
        subscriber.disconnect()
        publisher = RawClient(host, port, "mem-pub")
        publisher.publish("mem/queued", b"gone after restart", qos=1, packet_id=2)
        publisher.disconnect()
        stop(process)
        assert process.returncode == 0
    assert not store_path(data_dir).exists()

    with start_midge(config, data_dir_args(data_dir)) as (host, port, process):
        subscriber = RawClient(host, port, "mem-sub", clean_session=False)
        assert not subscriber.session_present  # the session, its queue and subscription: gone
        subscriber.expect_silence(0.3)
        subscriber.disconnect()
        fresh = RawClient(host, port, "mem-fresh")
        assert fresh.subscribe("mem/#", 1) == (1,)
        fresh.expect_silence(0.3)  # no retained message either
        fresh.disconnect()


# ------------------------------------------------------------ unusable stores


@dataclass
class Exited:
    returncode: int | None  # None: it started listening instead, and was stopped
    stderr: str


def run_serve(data_dir: Path, timeout: float = 15.0) -> Exited:
    """`midge serve` on `data_dir`, expected to exit by itself; stopped if it listens."""
    args = [sys.executable, "-m", "midge", "serve", "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(
        [*args, "--data-dir", str(data_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    pump = OutputPump(process)
    deadline = time.monotonic() + timeout
    listened = False
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = pump.queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:  # stderr closed: it is exiting
                process.wait(timeout=WAIT)
                break
            if LISTENING.search(line):
                listened = True
                break
    finally:
        stop(process)
        pump.join()
    return Exited(None if listened else process.returncode, pump.text())


def valid_store(data_dir: Path) -> Path:
    """A real midge.db with a session, a subscription and a retained message in it."""
    with start_midge(None, data_dir_args(data_dir)) as (host, port, process):
        client = RawClient(host, port, "store-sub", clean_session=False)
        client.subscribe("s/#", 1)
        client.publish("other/retained", b"r", qos=1, retain=True, packet_id=2)
        client.disconnect()
        stop(process)
        assert process.returncode == 0
    return store_path(data_dir)


def _garbage(data_dir: Path) -> bytes:
    return random.Random(SEED).randbytes(8192)


def _text(data_dir: Path) -> bytes:
    return b"this is not a database\n" * 200


def _tiny(data_dir: Path) -> bytes:
    return b"x"  # SQLite itself would take one byte for an empty database and format it


def _truncated(data_dir: Path) -> bytes:
    good = valid_store(data_dir.parent / "donor").read_bytes()
    return good[: len(good) // 2]


def _scribbled(data_dir: Path) -> bytes:
    good = bytearray(valid_store(data_dir.parent / "donor").read_bytes())
    page_size = int.from_bytes(good[16:18], "big")
    good[page_size:] = random.Random(SEED).randbytes(len(good) - page_size)  # all but page 1
    return bytes(good)


def assert_refused_and_untouched(data_dir: Path, *named: str) -> None:
    """`midge serve` exits 2 naming the store, never listens, changes no file."""
    store = store_path(data_dir)
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    result = run_serve(data_dir)
    assert result.returncode == 2, result.stderr
    for text in (str(store), *named):
        assert text in result.stderr, result.stderr
    assert "listening on" not in result.stderr, result.stderr
    assert store.read_bytes() == before[store.name]
    after = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    assert after == before, f"files changed: {sorted(set(after) ^ set(before))}"


@pytest.mark.parametrize(
    "make",
    [_garbage, _text, _tiny, _truncated, _scribbled],
    ids=lambda f: f.__name__.strip("_"),
)
def test_corrupt_store_stops_the_start_and_is_left_alone(tmp_path: Path, make):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store_path(data_dir).write_bytes(make(data_dir))
    assert_refused_and_untouched(data_dir)


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_store_from_a_newer_schema_is_refused_and_left_alone(tmp_path: Path, journal_mode: str):
    """A midge.db as Midge writes it (WAL), and one a tool switched back to a rollback
    journal (switching it to WAL would rewrite the header)."""
    data_dir = tmp_path / "data"
    store = valid_store(data_dir)
    db = sqlite3.connect(store)
    assert db.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0] == journal_mode
    db.execute("PRAGMA user_version=99")
    db.close()
    assert_refused_and_untouched(data_dir, "99")
    db = sqlite3.connect(store)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 99
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == journal_mode
    db.close()
