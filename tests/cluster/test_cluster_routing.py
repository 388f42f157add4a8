"""Three Midge nodes on one Redis behave as one broker for routing (issue 14, first part).

Nodes A, B and C (n1, n2, n3) are separate `midge serve --cluster` processes
on the session's redis-server, shared by the tests of this module: each test
keeps to topics of its own. Clients are paho-mqtt (3.1.1 and 5.0) and
Debian's mosquitto_pub / mosquitto_sub.

A SUBACK is sent only once the route is stored in Redis, so a publish on
another node right after it must be forwarded: no test waits between a SUBACK
and a publish. Everything else that propagates asynchronously (an
unsubscribe, a disconnect) is waited for with a bound. Exactly-once is
checked with markers: a publisher sends a marker topic after its messages,
and, its order being kept across nodes, whatever came before the marker is
all it will get of them.

A few checks look into Redis (midge.cluster.keys names the keys): a node's
route set holds a filter once SUBACKed and drops it after an unsubscribe or
a clean disconnect, and a node that has no subscriber is forwarded nothing.
"""

from __future__ import annotations

import queue
import shutil
import time
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cluster_support import WAIT, Cluster, ClusterFactory, Node
from integration_support import MQTTV311, Paho, Paho5, paho, paho5, unique, wait_for
from test_mosquitto_clients import FORMAT, TOOLS, pub, subscribe

pytestmark = pytest.mark.timeout(60)

QOS = pytest.mark.parametrize("qos", [0, 1, 2])
VERSIONS = pytest.mark.parametrize("version", ["3.1.1", "5.0"])
needs_mosquitto_clients = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="needs mosquitto_pub, mosquitto_sub (apt-get install mosquitto-clients), stdbuf",
)

Client = Paho | Paho5


@pytest.fixture(scope="module")
def trio(module_cluster: ClusterFactory) -> Cluster:
    """Nodes n1, n2, n3 (A, B, C in the tests) on one Redis, for the whole module."""
    return module_cluster(3)


def new_base(what: str) -> str:
    return f"cl/{what}/{unique('t')}"


@contextmanager
def v311(node: Node, **options: Any) -> Iterator[Paho]:
    """A paho MQTT 3.1.1 client connected to `node` (CONNACK 0 checked), closed on exit."""
    with paho(node.host, node.port, protocol=MQTTV311, **options) as client:
        yield client


@contextmanager
def connected(node: Node, version: str = "3.1.1") -> Iterator[Client]:
    """A paho client connected to `node` at MQTT `version` ("3.1.1" or "5.0")."""
    if version == "5.0":
        with paho5(node.broker) as client5:
            yield client5
    else:
        with v311(node) as client:
            yield client


def granted(codes: list[Any]) -> list[int]:
    """The QoS granted by a SUBACK, from paho's reason codes."""
    return [int(code.value) for code in codes]


def receive_until(
    client: Client, markers: Collection[str], timeout: float = WAIT, who: str = "subscriber"
) -> list[mqtt.MQTTMessage]:
    """Every message up to the one that completes the set of `markers` topics."""
    deadline = time.monotonic() + timeout
    missing = set(markers)
    out: list[mqtt.MQTTMessage] = []
    while missing:
        remaining = deadline - time.monotonic()
        try:
            message = client.messages.get(timeout=max(remaining, 0.001))
        except queue.Empty:
            raise AssertionError(
                f"{who}: no message on {sorted(missing)} within {timeout:g}s; got {describe(out)}"
            ) from None
        out.append(message)
        missing.discard(message.topic)
    return out


def receive(
    client: Client, count: int, timeout: float = WAIT, who: str = "subscriber"
) -> list[mqtt.MQTTMessage]:
    deadline = time.monotonic() + timeout
    out: list[mqtt.MQTTMessage] = []
    while len(out) < count:
        remaining = deadline - time.monotonic()
        try:
            out.append(client.messages.get(timeout=max(remaining, 0.001)))
        except queue.Empty:
            raise AssertionError(
                f"{who}: got {len(out)} of {count} messages within {timeout:g}s; "
                f"the last ones: {describe(out[-5:])}"
            ) from None
    return out


def describe(messages: list[mqtt.MQTTMessage]) -> list[tuple[str, bytes]]:
    return [(message.topic, bytes(message.payload)) for message in messages]


def without(messages: list[mqtt.MQTTMessage], topics: Collection[str]) -> list[mqtt.MQTTMessage]:
    return [message for message in messages if message.topic not in topics]


# ------------------------------------------------------- (a) every QoS


@VERSIONS
@QOS
def test_subscriber_on_a_gets_what_b_and_c_publish(trio: Cluster, version: str, qos: int) -> None:
    a, b, c = trio
    base = new_base("qos")
    markers = {f"{base}/end/b", f"{base}/end/c"}
    with (
        connected(a, version) as sub,
        connected(b, version) as pub_b,
        connected(c, version) as pub_c,
    ):
        assert granted(sub.subscribe(f"{base}/#", qos)) == [qos]
        for number in range(3):
            pub_b.publish(f"{base}/b", f"b{number}".encode(), qos)
            pub_c.publish(f"{base}/c", f"c{number}".encode(), qos)
        pub_b.publish(f"{base}/end/b", b"", qos)
        pub_c.publish(f"{base}/end/c", b"", qos)
        got = without(receive_until(sub, markers, who=f"subscriber on {a.name}"), markers)
    from_b = [m.payload for m in got if m.topic == f"{base}/b"]
    from_c = [m.payload for m in got if m.topic == f"{base}/c"]
    # Each once, in each publisher's order (the two publishers may interleave).
    for node, payloads, sent in ((b, from_b, b"b"), (c, from_c, b"c")):
        assert payloads == [sent + b"%d" % n for n in range(3)], (
            f"what {node.name} published right after the SUBACK on {a.name}, as {a.name}'s "
            f"subscriber got it: {describe(got)}"
        )
    assert len(got) == 6, describe(got)
    assert {(m.qos, m.retain) for m in got} == {(qos, False)}


@needs_mosquitto_clients
@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
@QOS
def test_mosquitto_sub_on_a_gets_what_mosquitto_pub_sends_on_b_and_c(
    trio: Cluster, version: str, qos: int
) -> None:
    a, b, c = trio
    base = new_base("mosq")
    common = ("-V", version, "-q", str(qos))
    # -C: exit after 4 messages; -W 5: or fail after 5 seconds.
    sub = subscribe(a.broker, *common, "-t", f"{base}/#", "-F", FORMAT, "-C", "4", "-W", "5")
    pub(b.broker, *common, "-t", f"{base}/b", "-m", "one from b")
    pub(c.broker, *common, "-t", f"{base}/c", "-m", "one from c")
    pub(b.broker, *common, "-t", f"{base}/b", "-m", "two from b")
    pub(c.broker, *common, "-t", f"{base}/c", "-m", "two from c")
    lines = sub.lines()
    assert [line for line in lines if line.startswith(f"0 {qos} {base}/b ")] == [
        f"0 {qos} {base}/b one from b",
        f"0 {qos} {base}/b two from b",
    ], lines
    assert [line for line in lines if line.startswith(f"0 {qos} {base}/c ")] == [
        f"0 {qos} {base}/c one from c",
        f"0 {qos} {base}/c two from c",
    ], lines
    assert len(lines) == 4, lines


# ------------------------------------------------------- (b) wildcards


def test_wildcards_match_across_nodes(trio: Cluster) -> None:
    a, b, c = trio
    base = new_base("wild")
    markers = {f"{base}/end/b", f"{base}/end/c"}
    with (
        connected(a) as plus_and_hash,
        connected(c) as everything,
        connected(b) as pub_b,
        connected(c) as pub_c,
    ):
        for topic_filter in (f"{base}/+/x", f"{base}/w/#", f"{base}/end/+"):
            assert granted(plus_and_hash.subscribe(topic_filter, 1)) == [1]
        assert granted(everything.subscribe(f"{base}/#", 1)) == [1]
        from_b = {
            f"{base}/p/x": True,  # + one level
            f"{base}/p/y": False,
            f"{base}/p/q/x": False,  # + is one level only
            f"{base}/w": True,  # w/# matches its parent w
            f"{base}/w/1/2/3": True,
            f"{base}x/w/1": False,
        }
        from_c = {f"{base}/c/x": True, f"{base}/w/c": True, f"{base}/c/x/z": False}
        for publisher, topics in ((pub_b, from_b), (pub_c, from_c)):
            for topic in topics:
                publisher.publish(topic, topic.encode(), 1)
        pub_b.publish(f"{base}/end/b", b"", 1)
        pub_c.publish(f"{base}/end/c", b"", 1)
        got_a = receive_until(plus_and_hash, markers, who=f"+ and # subscriber on {a.name}")
        got_c = receive_until(everything, markers, who=f"# subscriber on {c.name}")
    matching = [topic for topic, matches in {**from_b, **from_c}.items() if matches]
    received_a = Counter(m.topic for m in without(got_a, markers))
    assert received_a == Counter(matching), (
        f"{a.name} with {base}/+/x and {base}/w/#: {describe(got_a)}"
    )
    under_base = [t for t in (*from_b, *from_c) if t.startswith(f"{base}/")]
    received_c = Counter(m.topic for m in without(got_c, markers))
    assert received_c == Counter(under_base), f"{c.name} with {base}/#: {describe(got_c)}"


# -------------------------------------------- (c) subscribers on two nodes


def test_subscribers_on_two_nodes_each_get_it_once_and_a_third_node_nothing(trio: Cluster) -> None:
    a, b, c = trio
    base = new_base("two")
    topic, end = f"{base}/t", f"{base}/end"
    with (
        connected(a) as sub_a,
        connected(c) as sub_c,
        connected(b) as bystander,
        connected(a) as pub_a,
        connected(b) as pub_b,
    ):
        for sub in (sub_a, sub_c):
            assert granted(sub.subscribe(topic, 1)) == [1]
            assert granted(sub.subscribe(end, 1)) == [1]
        # On B, filters close to the topic that do not match it.
        assert granted(bystander.subscribe(f"{base}/t/+", 1)) == [1]
        assert granted(bystander.subscribe(f"{base}/u", 1)) == [1]

        forwarded_to_b = trio.inbound_added(b.name)
        pub_a.publish(topic, b"from a", 1)
        pub_a.publish(end, b"1", 1)
        for node, sub in ((a, sub_a), (c, sub_c)):
            got = receive_until(sub, {end}, who=f"subscriber on {node.name}")
            assert describe(got) == [(topic, b"from a"), (end, b"1")], node.name
        assert trio.inbound_added(b.name) == forwarded_to_b, (
            f"{b.name} has no subscriber for {topic} but was forwarded messages"
        )

        pub_b.publish(topic, b"from b", 1)
        pub_b.publish(end, b"2", 1)
        for node, sub in ((a, sub_a), (c, sub_c)):
            got = receive_until(sub, {end}, who=f"subscriber on {node.name}")
            assert describe(got) == [(topic, b"from b"), (end, b"2")], node.name

        # The bystander's own filter works, and nothing of `topic` came before.
        pub_a.publish(f"{base}/u", b"sibling", 1)
        got = receive_until(bystander, {f"{base}/u"}, who=f"bystander on {b.name}")
        assert describe(got) == [(f"{base}/u", b"sibling")]


# ------------------------------------------------- (d) unsubscribe, leave


def _probe(trio: Cluster, sub: Paho, publisher: Paho, gone: str, end: str, number: int) -> bool:
    """One round: `gone` and then `end` published on B; True when A's client got
    nothing on `gone` and A's node was forwarded nothing but (at most) `end`."""
    node = trio[0].name
    before = trio.inbound_added(node)
    publisher.publish(gone, f"after {number}".encode(), 1)
    publisher.publish(end, str(number).encode(), 1)
    got = receive_until(sub, {end}, who=f"subscriber on {node}")
    forwarded = trio.inbound_added(node) - before
    return [m.topic for m in got] == [end] and forwarded <= 1


def test_unsubscribe_stops_the_forwarding(trio: Cluster) -> None:
    a, b, _c = trio
    base = new_base("unsub")
    gone, end = f"{base}/gone", f"{base}/end"
    with v311(a) as sub, v311(b) as publisher:
        assert granted(sub.subscribe(gone, 1)) == [1]
        assert granted(sub.subscribe(end, 1)) == [1]
        assert {gone, end} <= trio.routes(a.name), "SUBACK sent before the route was in Redis"
        publisher.publish(gone, b"before", 1)
        publisher.publish(end, b"0", 1)
        got = receive_until(sub, {end})
        assert describe(got) == [(gone, b"before"), (end, b"0")]

        sub.unsubscribe(gone)
        assert wait_for(lambda: gone not in trio.routes(a.name), WAIT), (
            f"{gone} still in {a.name}'s routes {WAIT:g}s after UNSUBACK"
        )
        assert end in trio.routes(a.name)
        rounds = iter(range(1, 1000))
        assert wait_for(lambda: _probe(trio, sub, publisher, gone, end, next(rounds)), WAIT), (
            f"publishes on {b.name} to {gone} still reach {a.name} {WAIT:g}s after UNSUBACK"
        )
        for _ in range(3):  # and it stays so
            assert _probe(trio, sub, publisher, gone, end, next(rounds)), (
                f"a publish on {b.name} to {gone} reached {a.name} after the unsubscribe"
            )


def test_clean_session_disconnect_drops_its_routes(trio: Cluster) -> None:
    a, b, _c = trio
    base = new_base("leave")
    topic = f"{base}/t"
    with v311(a) as sub:
        assert granted(sub.subscribe(topic, 1)) == [1]
        assert topic in trio.routes(a.name), "SUBACK sent before the route was in Redis"
    assert wait_for(lambda: topic not in trio.routes(a.name), WAIT), (
        f"{topic} still in {a.name}'s routes {WAIT:g}s after its only subscriber "
        f"(clean session) disconnected"
    )
    with v311(b) as publisher:

        def nothing_forwarded() -> bool:
            before = trio.inbound_added(a.name)
            publisher.publish(topic, b"nobody", 1)  # returns once PUBACKed
            return trio.inbound_added(a.name) == before

        assert wait_for(nothing_forwarded, WAIT), (
            f"publishes on {b.name} to {topic} still forwarded to {a.name} {WAIT:g}s after "
            f"its subscriber left"
        )


# -------------------------------------------------- (e) shared subscription


def test_shared_subscription_across_nodes_gives_each_message_to_one_member(trio: Cluster) -> None:
    a, b, c = trio
    base = new_base("share")
    count = 200
    with (
        connected(a, "5.0") as member_a,
        connected(c, "5.0") as member_c,
        v311(b) as publisher,
    ):
        for member in (member_a, member_c):
            assert granted(member.subscribe(f"$share/g/{base}/#", 1)) == [1]
        infos = [
            publisher.publish(f"{base}/m", str(n).encode(), 1, wait=False) for n in range(count)
        ]
        for info in infos:
            info.wait_for_publish(WAIT)
            assert info.is_published(), f"no PUBACK for message {info.mid} within {WAIT:g}s"
        received: dict[str, list[mqtt.MQTTMessage]] = {a.name: [], c.name: []}
        members = {a.name: member_a, c.name: member_c}
        deadline = time.monotonic() + 2 * WAIT

        def total() -> int:
            return sum(len(messages) for messages in received.values())

        while total() < count and time.monotonic() < deadline:
            for name, member in members.items():
                with suppress(queue.Empty):
                    received[name].append(member.messages.get(timeout=0.01))
        # A duplicate would come just after: give it a moment, then take everything.
        time.sleep(0.3)
        for name, member in members.items():
            while not member.messages.empty():
                received[name].append(member.messages.get_nowait())
    seen = Counter(int(m.payload) for messages in received.values() for m in messages)
    missing = sorted(set(range(count)) - set(seen))
    twice = sorted(n for n, times in seen.items() if times > 1)
    assert not missing, f"{len(missing)} messages reached no member: {missing[:20]}"
    assert not twice, f"{len(twice)} messages reached the group more than once: {twice[:20]}"
    assert sum(seen.values()) == count
    sizes = {name: len(messages) for name, messages in received.items()}
    assert all(sizes.values()), f"one member got nothing: {sizes}"
    assert {m.qos for messages in received.values() for m in messages} == {1}


# ------------------------------------------------------------- (f) retained


@pytest.mark.parametrize("qos", [1, 2])
def test_retained_message_set_and_cleared_on_b_seen_on_c_and_a(trio: Cluster, qos: int) -> None:
    a, b, c = trio
    base = new_base("retain")
    kept, end = f"{base}/kept", f"{base}/end"
    with v311(b) as publisher:
        publisher.publish(kept, b"retained value", qos, retain=True)
        with v311(c) as late:
            assert granted(late.subscribe(f"{base}/#", 2)) == [2]
            message = receive(
                late, 1, who=f"new subscriber on {c.name} (retained set on {b.name})"
            )[0]
            assert (message.topic, message.payload) == (kept, b"retained value")
            assert message.retain, "a retained message for a new subscription has retain 1"
            assert message.qos == qos
            publisher.publish(end, b"live", 1)
            assert describe(receive_until(late, {end})) == [(end, b"live")], "sent twice"

        publisher.publish(kept, b"", qos, retain=True)
        with v311(a) as later:
            assert granted(later.subscribe(f"{base}/#", 2)) == [2]
            publisher.publish(end, b"live", 1)
            got = receive_until(later, {end}, who=f"new subscriber on {a.name}")
            assert describe(got) == [(end, b"live")], (
                f"the retained message cleared on {b.name} still reached a new subscriber "
                f"on {a.name}"
            )


# ------------------------------------------------------ (g) order, volume


def test_a_thousand_qos1_messages_arrive_complete_and_in_order(trio: Cluster) -> None:
    a, b, _c = trio
    base = new_base("order")
    count = 1000
    with v311(a) as sub, v311(b) as publisher:
        assert granted(sub.subscribe(f"{base}/#", 1)) == [1]
        infos = [
            publisher.publish(f"{base}/s", str(n).encode(), 1, wait=False) for n in range(count)
        ]
        publisher.publish(f"{base}/end", b"", 1, wait=False)
        got = receive_until(sub, {f"{base}/end"}, timeout=4 * WAIT, who=f"subscriber on {a.name}")
        for info in infos:
            info.wait_for_publish(WAIT)
            assert info.is_published(), f"no PUBACK for message {info.mid} within {WAIT:g}s"
    numbers = [int(m.payload) for m in got if m.topic == f"{base}/s"]
    seen = Counter(numbers)
    missing = sorted(set(range(count)) - set(seen))
    twice = sorted(n for n, times in seen.items() if times > 1)
    assert not missing, (
        f"{len(missing)} of {count} did not arrive before the end marker: {missing[:20]}"
    )
    assert not twice, f"{len(twice)} arrived more than once: {twice[:20]}"
    out_of_order = next((i for i, n in enumerate(numbers) if n != i), None)
    assert out_of_order is None, (
        f"out of order from index {out_of_order}: {numbers[out_of_order : out_of_order + 10]}"
    )
    assert {m.qos for m in got} == {1}


# ----------------------------------------------------- (h) persistent session


def test_persistent_subscriber_gets_what_was_published_elsewhere_while_away(trio: Cluster) -> None:
    a, b, _c = trio
    base = new_base("away")
    client_id = unique("ps")
    count = 20
    first = Paho(a.host, a.port, client_id=client_id, clean_session=False)
    try:
        first.connect_ok()
        assert granted(first.subscribe(f"{base}/#", 1)) == [1]
    finally:
        first.close()
    with v311(b) as publisher:
        for number in range(count):
            publisher.publish(f"{base}/q", f"queued {number}".encode(), 1)
    back = Paho(a.host, a.port, client_id=client_id, clean_session=False)
    try:
        connack = back.connect_ok()
        assert connack.session_present, "the persistent session was not found again"
        got = receive(back, count, who=f"{client_id} back on {a.name}")
        assert [m.payload for m in got] == [f"queued {n}".encode() for n in range(count)]
        assert {m.qos for m in got} == {1}
    finally:
        back.close()
    with v311(a, client_id=client_id):  # a clean session: discards the stored one
        pass


# ------------------------------------------------------- the [cluster] table


def test_nodes_configured_by_a_cluster_table(cluster: ClusterFactory) -> None:
    one, two = cluster(2, via_config=True)
    topic = new_base("config")
    with connected(one) as sub, connected(two) as publisher:
        assert granted(sub.subscribe(topic, 1)) == [1]
        publisher.publish(topic, b"through the [cluster] table", 1)
        message = receive(sub, 1, who=f"subscriber on {one.name}")[0]
        assert (message.topic, message.payload) == (topic, b"through the [cluster] table")
