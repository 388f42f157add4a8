"""A cluster under failures (issue 14): take-overs, moves, node kills and restarts, start errors.

Nodes A, B, C are n1, n2, n3: `midge serve --cluster` processes on one
redis-server, with a short heartbeat (failure_support.py `FAST`: a node
silent for 2 s is dead), driven by real peers (paho-mqtt, Debian's
mosquitto_pub / mosquitto_sub). What must hold, whatever fails: every
message a publisher got an acknowledgement for reaches the subscribers (at
QoS 1 perhaps twice, counted; at QoS 2 exactly once), and a client id has
one connection in the whole cluster.

The first tests share one cluster (none of them stops a node); each test
that kills or restarts a node has a cluster of its own. Redis outages are in
test_cluster_redis_outage.py. A test marked xfail shows a broker bug left
open, which its reason names.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cluster_support import WAIT, Cluster, ClusterFactory, Node
from failure_support import FAST, move, reconnect
from integration_support import MQTTV311, Paho, Paho5, paho, unique
from test_mosquitto_clients import FORMAT, TOOLS, Sub, pub, subscribe

from brokers import HOST, BrokerStartError, free_port
from streams import PACE, Inbox, Stream, wait_until

pytestmark = pytest.mark.timeout(60)

needs_mosquitto_clients = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="needs mosquitto_pub, mosquitto_sub (apt-get install mosquitto-clients), stdbuf",
)
SESSION_TAKEN_OVER = 0x8E
EXPIRY = 300  # a 5.0 session's expiry interval: persistent
QOS12 = pytest.mark.parametrize("qos", [1, 2])

# Broker bugs these tests find (reported with their diagnosis): QoS 2 delivered twice.
# Broker bugs these tests still find (issue 14, left open). Not strict: they
# depend on timing, and sometimes do not show.
REAPED_DUPLICATES = pytest.mark.xfail(
    strict=False,
    reason="claims.py / reaper.py: a client of a killed node that reconnects elsewhere while "
    "the node's place is being taken may get QoS 2 messages twice",
)


@pytest.fixture(scope="module")
def trio(module_cluster: ClusterFactory) -> Cluster:
    """A, B, C for the tests that leave every node running."""
    return module_cluster(3, settings=FAST)


def new_base(what: str) -> str:
    return f"cf/{what}/{unique('t')}"


def connected(node: Node, client_id: str = "", **options: Any) -> Paho:
    """A paho MQTT 3.1.1 client connected to `node` (CONNACK 0 checked): the
    caller closes it."""
    made = Paho(node.host, node.port, client_id=client_id, protocol=MQTTV311, **options)
    made.connect_ok()
    return made


def granted(codes: list[Any]) -> list[int]:
    return [int(code.value) for code in codes]


def nothing_more(client: Paho | Paho5, seconds: float = 0.3) -> bool:
    """Whether `client` gets no further message for `seconds` (a duplicate comes
    right after the original; a short look suffices)."""
    return not wait_until(lambda: not client.messages.empty(), seconds)


@contextmanager
def killed_in_a_stream(a: Node, c: Node, qos: int, what: str) -> Iterator[Paho]:
    """A persistent subscriber on A gets a stream at `qos` from C; in the middle
    of it A is killed (-9), and the block brings the subscriber (yielded) back.
    Then every acknowledged message must reach it (`what` names the case in the
    check) and the will of another client of A must reach C once."""
    base = new_base("killed")
    topic, will_topic = f"{base}/s", f"{base}/will"
    watcher = connected(c)
    with_will = connected(a, will=(will_topic, b"A was killed", 1, False))
    sub = connected(a, unique("kd"), clean_session=False)
    publisher = connected(c)
    try:
        assert granted(watcher.subscribe(will_topic, 1)) == [1]
        assert granted(sub.subscribe(topic, qos)) == [qos]
        inbox = Inbox(sub, topic)
        with Stream(publisher, topic, qos) as stream:
            inbox.wait_count(40)
            a.kill()
            yield sub
            stream.wait_acknowledged(stream.sent + 100)
        stream.wait_all_acknowledged()
        acknowledged = stream.acknowledged()
        inbox.wait_for(acknowledged)
        will = watcher.get(timeout=3 * WAIT)  # published once A is back, or its place is taken
        assert (will.topic, will.payload) == (will_topic, b"A was killed")
        assert nothing_more(watcher), "the will was published twice"
    finally:
        for made in (sub, publisher, with_will, watcher):
            made.close()
    inbox.check(acknowledged, qos, what)


# ------------------------------------------------- 1. take-over across nodes


def test_takeover_across_nodes_mqtt5(trio: Cluster) -> None:
    a, b, c = trio
    base = new_base("take5")
    client_id, will_topic = unique("tk"), f"{base}/will"
    with paho(c.host, c.port) as watcher:
        assert granted(watcher.subscribe(will_topic, 1)) == [1]
        first = Paho5(a.host, a.port, client_id)
        first.client.will_set(will_topic, b"first went away", 1)
        first.connect(clean_start=True, expiry=EXPIRY)
        second = Paho5(b.host, b.port, client_id)
        try:
            assert granted(first.subscribe(f"{base}/t", 1)) == [1]
            flags, _ = second.connect(clean_start=False, expiry=EXPIRY)
            assert flags.session_present, f"{b.name} took over {client_id} without its session"
            reason = first.disconnects.get(timeout=WAIT)
            assert reason.value == SESSION_TAKEN_OVER, (
                f"{a.name} closed the taken-over connection with {reason} ({reason.value:#x}), "
                f"not 0x8E Session taken over"
            )
            will = watcher.get()
            assert (will.topic, will.payload) == (will_topic, b"first went away")
            with paho(c.host, c.port) as publisher:  # the subscription went along to B
                publisher.publish(f"{base}/t", b"to the new connection", 1)
                message = second.get()
                assert (message.topic, message.payload) == (f"{base}/t", b"to the new connection")
            assert nothing_more(watcher), "the will was published twice"
            assert first.messages.empty(), "the old connection got what the new one should"
        finally:
            first.close()  # closed by A already, but for a failure before the take-over
            second.close()


def test_takeover_across_nodes_mqtt311(trio: Cluster) -> None:
    a, b, c = trio
    base = new_base("take3")
    client_id, will_topic = unique("tk"), f"{base}/will"
    with paho(c.host, c.port) as watcher:
        assert granted(watcher.subscribe(will_topic, 1)) == [1]
        first = connected(a, client_id, clean_session=False, will=(will_topic, b"gone", 1, False))
        second = Paho(b.host, b.port, client_id=client_id, clean_session=False)
        try:
            assert granted(first.subscribe(f"{base}/t", 1)) == [1]
            connack = second.connect_ok()
            assert connack.session_present, f"{b.name}'s CONNACK: session present 0"
            assert first.disconnected.wait(WAIT), (
                f"{a.name} kept {client_id}'s connection open after {b.name} took it over"
            )
            will = watcher.get()
            assert (will.topic, will.payload) == (will_topic, b"gone")
            assert nothing_more(watcher), "the will was published twice"
            assert a.log.matching(rf"client '{client_id}' moved to node {b.name}")
        finally:
            first.close()
            second.close()


# ------------------------------------------ 2. session resumed on another node


def test_session_resumes_on_another_node_with_its_queue(trio: Cluster) -> None:
    a, b, c = trio
    base = new_base("resume")
    client_id = unique("rs")
    first = connected(a, client_id, clean_session=False)
    try:
        assert granted(first.subscribe(f"{base}/#", 2)) == [2]
    finally:
        first.close()
    with paho(c.host, c.port) as publisher:
        for number in range(20):
            publisher.publish(f"{base}/q{1 + number % 2}", f"{number}".encode(), 1 + number % 2)
    back = Paho(b.host, b.port, client_id=client_id, clean_session=False)
    try:
        connack = back.connect_ok()
        assert connack.session_present, f"{b.name} did not find the session {a.name} had"
        got = back.get_many(20)
        assert nothing_more(back), "more than the 20 messages queued"
    finally:
        back.close()
    # In order per topic (paho hands a QoS 2 message over at its PUBREL, a QoS 1
    # message at once: across the two topics, the order is paho's).
    by_topic = {
        qos: [(m.payload, m.qos) for m in got if m.topic == f"{base}/q{qos}"] for qos in (1, 2)
    }
    for qos in (1, 2):
        assert by_topic[qos] == [(f"{n}".encode(), qos) for n in range(qos - 1, 20, 2)], (
            f"QoS {qos} messages queued while away, as the session got them on {b.name}: "
            f"{by_topic[qos]}"
        )


@needs_mosquitto_clients
def test_mosquitto_sub_resumes_on_another_node_with_its_queue(trio: Cluster) -> None:
    a, b, c = trio
    base = new_base("mresume")
    client_id = unique("ms")
    args = ("-c", "-i", client_id, "-q", "2", "-t", f"{base}/#", "-F", FORMAT)
    subscribe(a.broker, *args, "-E").finish()  # subscribe on A, then leave (-E)
    lines = "".join(f"message {n}\n" for n in range(5)).encode()
    pub(c.broker, "-q", "1", "-t", f"{base}/one", "-l", stdin=lines)
    pub(c.broker, "-q", "2", "-t", f"{base}/two", "-l", stdin=lines)
    back = Sub(b.broker, *args, "-C", "10")
    assert back.lines() == [f"0 1 {base}/one message {n}" for n in range(5)] + [
        f"0 2 {base}/two message {n}" for n in range(5)
    ]


# ------------------------------------------------ 3. a move in mid-stream


def moved_in_a_stream(
    trio: Cluster, publisher_on: Node, qos: int, moves: int, per_move: int, pace: float
) -> None:
    """A persistent subscriber on A moves to B, A, B, ... (`moves` times, each
    after `per_move` more messages) while `publisher_on` streams at `qos`, each
    time connecting to the other node while its old connection is still open.
    Every acknowledged message must arrive, in the publisher's order."""
    a, b, _c = trio
    topic = f"{new_base('move')}/s"
    client_id = unique("mv")
    sub = connected(a, client_id, clean_session=False)
    publisher = connected(publisher_on)
    path = [b if number % 2 else a for number in range(1, moves + 1)]
    try:
        assert granted(sub.subscribe(topic, qos)) == [qos]
        inbox = Inbox(sub, topic)
        with Stream(publisher, topic, qos, pace=pace) as stream:
            for number, there in enumerate(path, 1):
                inbox.wait_count(per_move * number)
                connack = move(sub, there)
                assert connack.session_present, (
                    f"{there.name} took over {client_id} without its session (move {number})"
                )
            stream.wait_acknowledged(stream.sent + 100)
        stream.wait_all_acknowledged()
        acknowledged = stream.acknowledged()
        inbox.wait_for(acknowledged)
    finally:
        sub.close()
        publisher.close()
    what = f"QoS {qos} from {publisher_on.name}, moved {moves} times"
    inbox.check(acknowledged, qos, what)
    overtaken = inbox.overtaken()
    assert not overtaken, (
        f"{what}: {len(overtaken)} messages came after a later one, (number, later): "
        f"{overtaken[:10]}"
    )


@pytest.mark.parametrize("qos", [1, 2])
@pytest.mark.parametrize("publisher_on", ["C", "B"])
def test_subscriber_moves_in_the_middle_of_a_stream(
    trio: Cluster, qos: int, publisher_on: str
) -> None:
    """A -> B -> A -> B with the publisher on a third node, or on B."""
    _a, b, c = trio
    moved_in_a_stream(trio, c if publisher_on == "C" else b, qos, 3, 40, PACE)


def test_order_of_one_publisher_is_kept_when_its_subscriber_moves_to_its_node(
    trio: Cluster,
) -> None:
    """MQTT keeps one publisher's order per topic; the cluster says it keeps it
    across nodes: a faster stream, and more moves, onto the publisher's node."""
    _a, b, _c = trio
    moved_in_a_stream(trio, b, 1, 5, 100, 0.001)  # many messages during each claim


# ------------------------------------------------- 4. kill -9 the subscriber's node


@pytest.mark.parametrize("qos", [1, pytest.param(2, marks=REAPED_DUPLICATES)])
def test_subscriber_node_killed_in_the_middle_of_a_stream(
    cluster: ClusterFactory, qos: int
) -> None:
    a, b, c = cluster(3, settings=FAST)
    with killed_in_a_stream(a, c, qos, f"QoS {qos}, A killed, resumed on B") as sub:
        # Its CONNECT waits while the dead node's place is taken (retried if refused).
        connack = reconnect(sub, b)
        assert connack.session_present, f"{b.name} did not resume {a.name}'s session"
    reapers = [
        node for node in (b, c) if node.log.matching(rf"node {a.name} is gone .*taking its place")
    ]
    assert len(reapers) == 1, f"{len(reapers)} nodes logged taking {a.name}'s place"


# ------------------------------------------------- 5. kill -9 the publisher's node


def test_publisher_node_killed_in_the_middle_of_a_stream(cluster: ClusterFactory) -> None:
    a, _b, c = cluster(3, settings=FAST)
    topic = f"{new_base('pkill')}/s"
    sub = connected(a, unique("pk"), clean_session=False)
    publisher = connected(c)
    try:
        assert granted(sub.subscribe(topic, 1)) == [1]
        inbox = Inbox(sub, topic)
        with Stream(publisher, topic, 1) as stream:
            inbox.wait_count(40)
            c.kill()
            assert publisher.disconnected.wait(WAIT)
        acknowledged = stream.acknowledged()  # no more: its connection is gone
        inbox.wait_for(acknowledged)
    finally:
        sub.close()
        publisher.close()
    assert len(acknowledged) >= 40
    inbox.check(acknowledged, 1, "QoS 1 from C, C killed")


# ------------------------------------------- 6. killed and restarted at once


@QOS12
def test_node_killed_and_restarted_at_once_under_its_name(
    cluster: ClusterFactory, qos: int
) -> None:
    # A heartbeat good for 5 s: the node is back before any other takes its place.
    a, b, c = cluster(3, settings={"heartbeat_interval": 0.5, "node_timeout": 5.0})
    with killed_in_a_stream(a, c, qos, f"QoS {qos}, A killed and restarted") as sub:
        a.start()  # raises if it refuses its own name
        connack = reconnect(sub, a)
        assert connack.session_present, f"restarted {a.name} lost the persistent session"
    assert a.log.matching(rf"node {a.name}: the previous run on this host is gone")
    a.log.wait_for(rf"published 1 wills of node {a.name}'s clients")
    for node in (b, c):
        assert not node.log.matching("taking its place"), f"{node.name} reaped a restarted node"


# ---------------------------------------------------------- 9, 10. start errors


def serve(arguments: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """`midge serve` on loopback with `arguments`, expected to exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "midge", "serve", "--host", HOST, "--port", "0", *arguments],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_unreachable_redis_at_start_is_an_error_naming_the_url(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    plain = f"redis://{HOST}:{port}/0"
    result = serve(["--cluster", plain], tmp_path)
    assert result.returncode != 0, result.stderr
    assert plain in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr

    secret = f"redis://app:s3cr3t-pw@{HOST}:{port}/0"
    result = serve(["--cluster", secret], tmp_path)
    assert result.returncode != 0, result.stderr
    assert f"{HOST}:{port}/0" in result.stderr, result.stderr
    assert "s3cr3t-pw" not in result.stderr + result.stdout, "the password was printed"


def test_second_node_with_a_live_nodes_name_exits_with_a_clear_error(
    cluster: ClusterFactory,
) -> None:
    first, other = cluster(2, settings=FAST)
    twin = Node(first.cluster, first.name)
    try:
        with pytest.raises(BrokerStartError) as refused:
            twin.start()
    finally:
        twin.stop()
    message = str(refused.value)
    assert re.search(r"exited with code [1-9]", message), message
    assert f"cluster node name {first.name!r} is in use" in message, message
    topic = new_base("twin")  # the first one serves on, as before
    sub, publisher = connected(first), connected(other)
    try:
        assert granted(sub.subscribe(topic, 1)) == [1]
        publisher.publish(topic, b"still one n1", 1)
        assert sub.get().payload == b"still one n1"
    finally:
        sub.close()
        publisher.close()
