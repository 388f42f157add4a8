"""The bridge flag of an MQTT 3.1.1 bridge (issue 15): `try_private`, and falling back without it.

A 3.1.1 bridge connects with protocol level 0x84 (4 with Mosquitto's bridge
bit, 0x80): the remote then neither sends back what the bridge published
(No Local) nor clears the retain flag of what it forwards to it. A remote
that does not know the bit answers CONNACK 1 (unacceptable protocol
version), and the bridge tries again without it. Here a `Gate`
(bridge_support.py) stands between the bridge and Debian's mosquitto: one
that refuses the bit, one that closes the first connection as a load
balancer with no backend does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bridge_support import BRIDGE_LEVEL, Gate, Peer, Peers, bridge_table, rule, wait_connected
from integration_support import paho, unique

from streams import wait_until

pytestmark = pytest.mark.timeout(60)

QUIET = 1.0  # seconds to watch for a message coming back


@pytest.fixture
def remote(peers: Peers) -> Peer:
    return peers.mosquitto("mosquitto")


@pytest.fixture
def gates() -> Iterator[list[Gate]]:
    made: list[Gate] = []
    try:
        yield made
    finally:
        for gate in made:
            gate.close()


def arrivals_here(local: Peer, remote: Peer, name: str) -> list[tuple[str, bytes]]:
    """What a local subscriber gets of one message published here on a `both`
    topic: the message itself, and again if it came back from the remote."""
    topic = f"loop/{name}/{unique('t')}"
    with paho(local.host, local.port) as here, paho(remote.host, remote.port) as there:
        here.subscribe(topic, 1)
        there.subscribe(topic, 1)
        here.publish(topic, "once", 1)
        assert there.get().payload == b"once"  # it crossed
        wait_until(lambda: False, QUIET)
        return [(message.topic, message.payload) for message in here.drain()]


def test_a_remote_that_refuses_the_flag_gets_a_plain_connect(
    peers: Peers, remote: Peer, gates: list[Gate]
) -> None:
    gate = Gate((remote.host, remote.port), refuse_bridge_flag=True)
    gates.append(gate)
    table = bridge_table("strict", gate.address, [rule("loop/strict/#", "both", 1)])
    local = peers.midge("local", table)
    line = wait_connected(local, "strict")[0]
    assert f"connected to {gate.address} (MQTT 3.1.1, session new)" in line, line
    assert local.log.matching(
        rf"bridge strict: {gate.address} does not take the bridge flag: without it"
    )
    assert gate.seen == [BRIDGE_LEVEL, 4]


def test_a_connection_closed_once_does_not_cost_the_bridge_flag(
    peers: Peers, remote: Peer, gates: list[Gate]
) -> None:
    gate = Gate((remote.host, remote.port), close_first=1)
    gates.append(gate)
    table = bridge_table("lb", gate.address, [rule("loop/lb/#", "both", 1)])
    local = peers.midge("local", table)
    line = wait_connected(local, "lb")[0]
    got = arrivals_here(local, remote, "lb")
    assert gate.seen[0] == BRIDGE_LEVEL  # the first attempt, closed by the gate
    assert f"connected to {gate.address} (MQTT 3.1.1, as a bridge, " in line, (
        f"{line.strip()}; the gate saw protocol levels {gate.seen}"
    )
    assert len(got) == 1, f"the message came back: {got}"


def test_without_the_flag_a_both_topic_comes_back_once(peers: Peers, remote: Peer) -> None:
    """What the flag is for: the same bridge with try_private = false loops once
    (mosquitto sends the message back; the local session's No Local stops it there)."""
    table = bridge_table(
        "plain", remote.address, [rule("loop/plain/#", "both", 1)], try_private=False
    )
    local = peers.midge("local", table)
    line = wait_connected(local, "plain")[0]
    assert "(MQTT 3.1.1, session new)" in line, line
    got = arrivals_here(local, remote, "plain")
    assert len(got) == 2, got  # the message, and the same again from the remote
