"""Numbered message streams and what a subscriber got of them, for tests that break brokers.

A `Stream` publishes numbered messages (payload: the number) from a paho
client (integration_support.Paho) on a thread, paced, until stopped or until
its connection is gone; `acknowledged()` is the set of numbers the broker
acknowledged (PUBACK, or PUBCOMP at QoS 2). An `Inbox` collects the numbers
a subscriber received, across its connections (one paho client object
connected again, by `connect_again`, to the same broker after a restart or
to another one keeps one queue, and its QoS 2 state: a message whose PUBREC
it sent is delivered when the PUBREL comes, wherever it comes from).
`check_delivery` says what was lost and what came twice, `Inbox.overtaken`
what came after a later message of the same publisher.

Used by the cluster failure tests (tests/cluster/failure_support.py adds
moving clients between nodes) and the bridge tests (tests/bridge/).
Imported as `from streams import ...`, like `brokers`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, NamedTuple

import paho.mqtt.client as mqtt

if TYPE_CHECKING:  # tests/integration is on sys.path only for the suites that use it
    from integration_support import Connack, Paho

WAIT = 5.0  # seconds for anything that should happen "at once" on loopback
PACE = 0.004  # seconds between two messages of a stream (about 250 msg/s)
MOVED = "(connection changed)"  # not a topic anyone publishes to


class Stream:
    """Numbered messages on `topic` at `qos` from `publisher`, on a thread."""

    def __init__(self, publisher: Paho, topic: str, qos: int, pace: float = PACE) -> None:
        self.publisher = publisher
        self.topic = topic
        self.qos = qos
        self.pace = pace
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        client = self.publisher.client
        number = 0
        while not self._stop.is_set() and client.is_connected():
            info = client.publish(self.topic, str(number).encode(), self.qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # the connection is gone: what was not acknowledged never will be
            self.infos.append(info)
            number += 1
            self._stop.wait(self.pace)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)

    @property
    def sent(self) -> int:
        return len(self.infos)

    def acknowledged(self) -> set[int]:
        return {number for number, info in enumerate(list(self.infos)) if info.is_published()}

    def wait_acknowledged(self, count: int, timeout: float = 3 * WAIT) -> None:
        """Until at least `count` messages are acknowledged (the stream flows)."""
        assert wait_until(lambda: len(self.acknowledged()) >= count, timeout), (
            f"{self.topic}: {len(self.acknowledged())} of {count} messages acknowledged "
            f"within {timeout:g}s ({self.sent} sent)"
        )

    def wait_all_acknowledged(self, timeout: float = 3 * WAIT) -> None:
        """After `stop`: until every message sent is acknowledged."""
        assert wait_until(lambda: len(self.acknowledged()) == self.sent, timeout), (
            f"{self.topic}: {self.sent - len(self.acknowledged())} of {self.sent} messages "
            f"still unacknowledged {timeout:g}s after the stream stopped"
        )


class Inbox:
    """The numbers a subscriber got on `topic`, in arrival order, duplicates kept;
    and how each came (`arrivals`), to tell a resent PUBLISH from a second one."""

    def __init__(self, client: Paho, topic: str) -> None:
        self.client = client
        self.topic = topic
        self.numbers: list[int] = []
        self.arrivals: list[Arrival] = []
        self.connection = 1  # which of the client's connections brought it
        self.others: list[tuple[str, bytes]] = []  # messages on other topics

    def take(self) -> list[int]:
        while True:
            try:
                message = self.client.messages.get_nowait()
            except queue.Empty:
                return self.numbers
            if message.topic == MOVED:
                self.connection += 1
            elif message.topic == self.topic:
                number = int(message.payload)
                self.numbers.append(number)
                self.arrivals.append(Arrival(number, message.mid, message.dup, self.connection))
            else:
                self.others.append((message.topic, bytes(message.payload)))

    def wait_count(self, count: int, timeout: float = 2 * WAIT) -> None:
        assert wait_until(lambda: len(self.take()) >= count, timeout), (
            f"{self.topic}: the subscriber got {len(self.numbers)} of {count} messages "
            f"within {timeout:g}s"
        )

    def wait_for(self, numbers: Collection[int], timeout: float = 3 * WAIT) -> None:
        """Until every one of `numbers` has arrived (or `timeout`: the check says what not)."""
        wanted = set(numbers)
        wait_until(lambda: wanted <= set(self.take()), timeout)

    def overtaken(self) -> list[tuple[int, int]]:
        """(number, the higher number that came before it) for each message that
        came, the first time, after a later one of the same publisher had."""
        found: list[tuple[int, int]] = []
        seen: set[int] = set()
        highest = -1
        for number in self.numbers:
            if number in seen:
                continue  # a duplicate (QoS 1) may come late
            seen.add(number)
            if number < highest:
                found.append((number, highest))
            highest = max(highest, number)
        return found

    def check(self, acknowledged: set[int], qos: int, what: str) -> int:
        """`check_delivery` of what came, with how each duplicate came if any."""
        twice = {n for n, times in Counter(self.numbers).items() if times > 1}
        how = [arrival for arrival in self.arrivals if arrival.number in twice]
        return check_delivery(acknowledged, self.numbers, qos, f"{what} {how[:12]}")


class Arrival(NamedTuple):
    """How one message came to a subscriber."""

    number: int
    packet_id: int
    dup: bool  # the DUP flag: a PUBLISH sent again
    connection: int  # 1: the first connection, then one more per connection attempt


def check_delivery(acknowledged: set[int], got: list[int], qos: int, what: str) -> int:
    """Every acknowledged number arrived; at QoS 2 none twice. Returns the duplicates."""
    counts = Counter(got)
    missing = sorted(acknowledged - set(counts))
    assert not missing, (
        f"{what}: {len(missing)} of {len(acknowledged)} acknowledged messages never arrived: "
        f"{missing[:30]} (got {len(got)} messages, {len(counts)} distinct)"
    )
    twice = sorted(number for number, times in counts.items() if times > 1)
    assert qos < 2 or not twice, (
        f"{what}: {len(twice)} QoS 2 messages arrived more than once: {twice[:30]}"
    )
    duplicates = sum(times - 1 for times in counts.values())
    print(f"{what}: {len(acknowledged)} acknowledged, {len(got)} received, {duplicates} twice")
    return duplicates


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout`; whether it came true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def connect_again(client: Paho, host: str, port: int, timeout: float = WAIT) -> Connack:
    """Connect `client` (again) to host:port, its old connection left as it is;
    its `Inbox` counts a new connection from here on. The CONNACK, unchecked."""
    client.client.loop_stop()
    client.messages.put(mqtt.MQTTMessage(topic=MOVED.encode()))  # for Inbox: a new connection
    while not client.connacks.empty():  # an answer to an attempt given up on
        client.connacks.get_nowait()
    client.host, client.port = host, port
    return client.connect(timeout)
