"""A cluster whose Redis goes away in the middle of traffic, and comes back (issue 14).

Each test starts a redis-server of its own (tests/redis_server.py: append-only,
fsync on every write) and three nodes on it, A, B and C (n1, n2, n3, with
failure_support.py `FAST` heartbeats). A QoS 1 stream flows from a publisher
on B to persistent subscribers on A and C; Redis is stopped (SIGTERM) or killed
(SIGKILL) for a second (shorter than the nodes' timeout) or three (longer:
the heartbeat keys expire meanwhile), and started again on the same port
and data. What must hold:

- nothing a publisher got a PUBACK for is lost (the acknowledgements of
  cross-node messages wait while Redis is away);
- while Redis is away, two clients of the same node go on exchanging QoS 1
  (clean sessions: nothing of theirs needs Redis);
- each node logs the outage once, and once that Redis "answers again";
- no client is closed (no node is taken for dead: none could heartbeat);
- afterwards the nodes work as one again: a subscription made on C after
  the outage gets what A publishes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import WAIT, Cluster, ClusterFactory, Node
from failure_support import FAST
from integration_support import MQTTV311, Paho, unique

from redis_server import RedisServer
from streams import Inbox, Stream

pytestmark = pytest.mark.timeout(60)

LOST = r"cluster: lost Redis at "
BACK = r"cluster: Redis at \S+ answers again"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, which it stops, kills and starts again."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def connected(node: Node, client_id: str = "", clean_session: bool = True) -> Paho:
    made = Paho(
        node.host, node.port, client_id=client_id, protocol=MQTTV311, clean_session=clean_session
    )
    made.connect_ok()
    return made


def outage(
    redis: RedisServer,
    how: str,
    seconds: float,
    nodes: Cluster,
    local: Paho,
    during: Paho,
    topic: str,
) -> None:
    """Take Redis away (`how`: "stop" or "kill") for `seconds`, checking
    meanwhile that QoS 1 between two clean-session clients of one node (`local`
    to `during`, on `topic`) flows; then start it again."""
    went = time.monotonic()
    if how == "stop":
        redis.stop()
    else:
        redis.kill()
    for node in nodes:
        node.log.wait_for(LOST, timeout=WAIT)
    for number in range(5):
        local.publish(topic, f"local {number}".encode(), 1)  # waits for the PUBACK
        message = during.get()
        assert (message.topic, message.payload) == (topic, f"local {number}".encode())
    time.sleep(max(0.0, seconds - (time.monotonic() - went)))  # the outage's length
    redis.start()


@pytest.mark.parametrize(
    ("how", "seconds", "times"),
    [
        # Shorter than node_timeout, three times in a row.
        pytest.param(
            "stop",
            1.0,
            3,
            id="stop-1s-thrice",
        ),
        # Longer than node_timeout: the heartbeat keys expire meanwhile.
        pytest.param(
            "stop",
            3.0,
            1,
            id="stop-3s",
        ),
        pytest.param(
            "kill",
            3.0,
            1,
            id="kill-3s",
        ),
    ],
)
def test_redis_goes_away_in_the_middle_of_a_stream_and_comes_back(
    own_redis: RedisServer, cluster: ClusterFactory, how: str, seconds: float, times: int
) -> None:
    trio = cluster(3, settings=FAST, redis=own_redis)
    a, b, c = trio
    base = f"ro/{unique('t')}"
    topic, local_topic = f"{base}/s", f"{base}/local"
    subs = {a: connected(a, unique("ro"), False), c: connected(c, unique("ro"), False)}
    publisher = connected(b)
    local_sub, local_pub = connected(a), connected(a)
    clients = {
        "subscriber on A": subs[a],
        "subscriber on C": subs[c],
        "publisher on B": publisher,
        "local subscriber on A": local_sub,
        "local publisher on A": local_pub,
    }
    try:
        for sub in subs.values():
            assert sub.subscribe(topic, 1)[0].value == 1
        assert local_sub.subscribe(local_topic, 1)[0].value == 1
        inboxes = {node: Inbox(sub, topic) for node, sub in subs.items()}
        with Stream(publisher, topic, 1, pace=0.001) as stream:  # the writers kept busy
            for number in range(1, times + 1):
                for inbox in inboxes.values():
                    inbox.wait_count(len(inbox.numbers) + 40)  # it flows (again)
                outage(own_redis, how, seconds, trio, local_pub, local_sub, local_topic)
                for node in trio:
                    node.log.wait_for(BACK, count=number, timeout=3 * WAIT)
                for node in trio:
                    wrong = node.log.matching("taking its place|taken for dead|Traceback")
                    assert not wrong, (
                        f"{node.name} after outage {number}: {wrong}; its log ends with\n"
                        + "".join(node.log.lines()[-12:])
                    )
                closed = [name for name, made in clients.items() if made.disconnected.is_set()]
                assert not closed, f"clients closed by the outage: {closed}"
            stream.wait_acknowledged(stream.sent + 100)
        stream.wait_all_acknowledged()
        acknowledged = stream.acknowledged()
        for inbox in inboxes.values():
            inbox.wait_for(acknowledged)

        after = f"{base}/after"  # a route made after the outage
        later = connected(c)
        try:
            assert later.subscribe(after, 1)[0].value == 1
            local_pub.publish(after, b"after the outage", 1)
            message = later.get()
            assert (message.topic, message.payload) == (after, b"after the outage")
        finally:
            later.close()
    finally:
        for made in clients.values():
            made.close()
    for node, inbox in inboxes.items():
        what = f"QoS 1 from B to {node.name}, Redis {how} {times}x{seconds:g} s"
        inbox.check(acknowledged, 1, what)
    for node in trio:  # each outage logged once, and its end once
        assert len(node.log.matching(LOST)) == times, node.log.matching(LOST)
        assert len(node.log.matching(BACK)) == times, node.log.matching(BACK)
