"""The sans-IO parts of the cluster: route tables, the forwarder, the message codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from midge.broker.connection import State
from midge.cluster.codec import CorruptValue, decode_message, encode_message
from midge.cluster.forwarding import MAX_BACKLOG, Forwarder
from midge.cluster.routes import LocalRoutes, RemoteRoutes
from midge.message import Message
from midge.protocol.properties import Properties
from midge.store.base import Forwarded, Operation, RouteDeleted, RouteSet


def test_local_routes_record_the_first_and_last_subscriber_of_a_filter():
    recorded: list[Operation] = []
    routes = LocalRoutes("a", recorded.append)
    routes.added("t/#")
    routes.added("t/#")
    routes.removed("t/#")
    assert recorded == [RouteSet("a", "t/#")]
    routes.removed("t/#")
    assert recorded == [RouteSet("a", "t/#"), RouteDeleted("a", "t/#")]
    routes.removed("t/#")  # one too many (a bug elsewhere) records nothing more
    assert len(recorded) == 2 and routes.filters() == []


def test_local_routes_count_silently_until_announced():
    routes = LocalRoutes("a")
    routes.added("x")
    routes.added("$share/g/y")
    assert routes.filters() == ["x", "$share/g/y"]


def test_remote_routes_match_plain_and_shared_filters_by_node():
    routes = RemoteRoutes()
    routes.add("b", "sensors/+/t")
    routes.add("c", "sensors/#")
    routes.add("c", "$share/g/sensors/#")
    routes.add("b", "$share/g/sensors/#")
    assert set(routes.nodes_for("sensors/1/t")) == {"b", "c"}
    assert set(routes.nodes_for("sensors/1/h")) == {"c"}
    assert set(routes.shares_for("sensors/1/h")) == {"$share/g/sensors/#"}
    assert routes.share_nodes["$share/g/sensors/#"] == ["c", "b"]
    routes.remove("c", "$share/g/sensors/#")
    routes.remove("b", "$share/g/sensors/#")
    assert routes.shares_for("sensors/1/h") == {}
    routes.replace("c", ["other"])
    assert set(routes.nodes_for("sensors/1/h")) == set()
    assert routes.count == 2
    routes.forget("b")
    assert routes.nodes_for("sensors/1/t") == {} and routes.count == 1


def test_remote_routes_ignore_an_invalid_share_name():
    routes = RemoteRoutes()
    routes.add("b", "$share//x")
    assert routes.shares_for("x") == {}


class Batches:
    """What a Forwarder uses of Persistence: record into a batch; epochs."""

    def __init__(self) -> None:
        self.recorded: list[tuple[Operation, bool]] = []
        self.epoch = 0
        self.committed = 0

    def record(self, operation: Operation, barrier: bool = True) -> None:
        self.recorded.append((operation, barrier))

    def when_committed(self, epoch: int, callback: object) -> None:
        self.waiting = (epoch, callback)


def _forwarder(routes: RemoteRoutes) -> tuple[Forwarder, list[tuple[Operation, bool]]]:
    batches = Batches()
    return Forwarder("a", routes, batches), batches.recorded  # type: ignore[arg-type]


class Publisher:
    """What the Forwarder touches of a publishing Connection."""

    def __init__(self) -> None:
        self.holders = 0
        self.state = State.CONNECTED


def test_publishers_are_held_back_while_too_many_forwards_wait_for_redis():
    routes = RemoteRoutes()
    routes.add("b", "t")
    batches = Batches()
    woken: list[Publisher] = []
    forwarder = Forwarder("a", routes, batches, None, woken.append)  # type: ignore[arg-type]
    publisher, other = Publisher(), Publisher()
    for _ in range(MAX_BACKLOG):
        forwarder.forward(Message("t", b"", 1), None, publisher)  # type: ignore[arg-type]
    assert forwarder.backlog() == MAX_BACKLOG and publisher.holders == 0
    forwarder.forward(Message("t", b"", 0), None, publisher)  # type: ignore[arg-type]
    forwarder.forward(Message("t", b"", 0), None, other)  # type: ignore[arg-type]
    # Nothing is dropped: both messages go, both publishers wait.
    assert forwarder.dropped == 0 and forwarder.backlog() == MAX_BACKLOG + 2
    assert publisher.holders == other.holders == 1
    batches.epoch = batches.committed = 1  # the batch reached Redis
    forwarder.release()
    assert (publisher.holders == other.holders == 0 and woken == [publisher, other]) or set(
        map(id, woken)
    ) == {id(publisher), id(other)}


def test_qos0_is_dropped_and_counted_while_redis_is_out_of_reach():
    routes = RemoteRoutes()
    routes.add("b", "t")
    forwarder, recorded = _forwarder(routes)
    forwarder.offline = True
    assert forwarder.forward(Message("t", b"", 0), None) == (True, None)
    forwarder.forward(Message("t", b"", 2), None)
    assert forwarder.dropped == 1 and len(recorded) == 1


def test_a_message_goes_once_to_each_node_that_wants_it():
    routes = RemoteRoutes()
    routes.add("b", "t/+")
    routes.add("b", "t/#")
    routes.add("c", "t/1")
    forwarder, recorded = _forwarder(routes)
    message = Message("t/1", b"x", 1)
    assert forwarder.forward(message, None) == (True, None)
    assert sorted((op.node, barrier) for op, barrier in recorded if isinstance(op, Forwarded)) == [
        ("b", True),
        ("c", True),
    ]
    assert all(
        isinstance(op, Forwarded) and op.plain and op.message is message for op, _ in recorded
    )


def test_qos0_is_no_barrier_and_an_unwanted_topic_costs_nothing():
    routes = RemoteRoutes()
    routes.add("b", "t")
    forwarder, recorded = _forwarder(routes)
    assert forwarder.forward(Message("other", b""), ["$share/g/other"]) == (
        False,
        ["$share/g/other"],
    )
    forwarder.forward(Message("t", b"", 0), None)
    assert [barrier for _, barrier in recorded] == [False]


def test_a_shared_subscription_takes_turns_across_nodes_and_this_one():
    routes = RemoteRoutes()
    routes.add("b", "$share/g/t")
    forwarder, recorded = _forwarder(routes)
    here_count = 0
    for _ in range(4):
        forwarded, here = forwarder.forward(Message("t", b"", 1), ["$share/g/t"])
        assert forwarded
        here_count += len(here or [])
    sent = [op for op, _ in recorded if isinstance(op, Forwarded)]
    assert here_count == 2 and len(sent) == 2
    assert all(op.node == "b" and not op.plain and op.shares == ("$share/g/t",) for op in sent)


topics = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)


@given(
    topic=topics,
    payload=st.binary(max_size=200),
    qos=st.integers(0, 2),
    retain=st.booleans(),
    expires=st.none() | st.floats(0, 2e9),
    user=st.lists(st.tuples(topics, topics), max_size=3),
)
def test_the_codec_gives_back_the_message_it_was_given(topic, payload, qos, retain, expires, user):
    properties = Properties(user_properties=tuple(user), content_type="t") if user else None
    message = Message(topic, payload, qos, retain, properties, expires)
    assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x03\x00\x01a",
        b"\x40\x00\x00",
        b"\x00\x00\x09ab",
        b"\x10\x00\x00\x01",
        b"\x08\x00\x00\x05",
    ],
)
def test_the_codec_refuses_what_it_did_not_write(data):
    with pytest.raises(CorruptValue):
        decode_message(data)
