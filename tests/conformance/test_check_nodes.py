"""`midge check A B C`: the clients of a scenario spread over the nodes of a cluster.

Plain loopback listeners stand for the nodes here (a connection that sends
nothing needs no broker), so these tests see exactly where each connection
went. tests/cluster/test_cluster_check.py runs every scenario against a real
3-node Midge cluster.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from brokers import HOST, Broker, free_port
from midge.cli import main as midge_main
from midge.conformance import runner
from midge.conformance.harness import RawClient
from midge.conformance.registry import Scenario
from midge.conformance.runner import run_one
from midge.conformance.target import Address, Target


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    """Three listening loopback sockets: the "nodes"."""
    sockets = [socket.create_server((HOST, 0)) for _ in range(3)]
    try:
        yield sockets
    finally:
        for server in sockets:
            server.close()


def addresses(listeners: list[socket.socket]) -> list[Address]:
    return [(HOST, server.getsockname()[1]) for server in listeners]


def landed(listeners: list[socket.socket]) -> list[int]:
    """Which listeners (0, 1, 2) the connections made since the last call reached."""
    indexes = []
    for index, server in enumerate(listeners):
        server.setblocking(False)
        while True:
            try:
                connection, _peer = server.accept()
            except BlockingIOError:
                break
            connection.close()
            indexes.append(index)
    return indexes


def connect(listeners: list[socket.socket], make: Callable[[str], RawClient], name: str) -> str:
    """Make a connection; check it reached one listener; its client's name@listener."""
    client = make(name)
    [index] = landed(listeners)
    return f"{client.name}>{index}"


def test_each_new_connection_goes_to_the_next_node(listeners: list[socket.socket]) -> None:
    target = Target.spread(addresses(listeners))
    assert target.addresses == tuple(addresses(listeners))
    scoped = target.scoped("0101")
    made = [connect(listeners, scoped.raw, name) for name in ("a", "b", "c", "d")]
    made.append(connect(listeners, scoped.untracked, "e"))  # the cleanup's take turns too
    assert made == ["a@node1>0", "b@node2>1", "c@node3>2", "d@node1>0", "e@node2>1"]
    scoped.cleanup()


def test_every_scenario_starts_on_the_first_node(listeners: list[socket.socket]) -> None:
    target = Target.spread(addresses(listeners))
    for suffix in ("0101", "0102"):
        scoped = target.scoped(suffix)
        assert connect(listeners, scoped.raw, "a") == "a@node1>0"
        scoped.cleanup()


def test_one_node_keeps_every_client_on_the_first(listeners: list[socket.socket]) -> None:
    scoped = Target.spread(addresses(listeners)).scoped("0101", one_node=True)
    made = [connect(listeners, scoped.raw, name) for name in ("a", "b", "c")]
    assert made == ["a>0", "b>0", "c>0"]
    scoped.cleanup()


def test_runner_keeps_one_node_scenarios_on_one_node(
    listeners: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def two_clients(target: Target) -> None:
        made.extend(connect(listeners, target.raw, name) for name in ("a", "b"))

    item = Scenario("99-01", "two clients", "none", two_clients)
    target = Target.spread(addresses(listeners))
    assert run_one(target, item).passed
    monkeypatch.setitem(runner.ONE_NODE, item.id, "needs one broker")
    assert run_one(target, item).passed
    assert made == ["a@node1>0", "b@node2>1", "a>0", "b>0"]


def test_one_address_is_a_lone_broker(listeners: list[socket.socket]) -> None:
    [address] = addresses(listeners)[:1]
    lone = Target.spread([address])
    assert lone == Target(*address, prefix=lone.prefix)
    assert (lone.nodes, lone.addresses) == ((), (address,))
    scoped = lone.scoped("0101")
    assert [connect(listeners, scoped.raw, name) for name in ("a", "b")] == ["a>0", "b>0"]
    scoped.cleanup()


def test_nodes_start_with_host_and_port() -> None:
    with pytest.raises(ValueError, match="must be"):
        Target(HOST, 1, nodes=((HOST, 2), (HOST, 1)))


def test_same_node_twice_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = midge_main(["check", "127.0.0.1:1883", "h:1", "127.0.0.1:1883"])
    assert code == 2
    assert "127.0.0.1:1883 given twice" in capsys.readouterr().err


def test_every_node_is_probed(midge_broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    host, port, _process = midge_broker
    closed = free_port()  # nothing listens there
    code = midge_main(["check", f"{host}:{port}", f"{HOST}:{closed}", "--only", "10"])
    assert code == 2
    assert f"cannot reach the broker at {HOST}:{closed}" in capsys.readouterr().err
