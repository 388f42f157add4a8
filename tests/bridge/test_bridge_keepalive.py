"""A remote that hangs is found out by the bridge's keep-alive (issue 15).

A bridge with `keepalive = 1` to a second `midge serve`, which is then
frozen (SIGSTOP: a hung process, or a network that drops everything, keeps
its TCP connection open and answers nothing). What must hold: the bridge
logs, within about two keep-alive periods, that the remote did not answer
PINGREQ, and tries again with backoff (`connect_timeout` bounds each attempt
the frozen remote never answers); once the remote runs again (SIGCONT) the
bridge connects, resumes its session and carries messages.

The other connection options (start types, queue bounds, failover,
WebSocket) are in test_bridge_modes.py.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from bridge_support import Peers, bridge_table, rule, wait_connected
from integration_support import paho, unique

from streams import WAIT

pytestmark = pytest.mark.timeout(60)

KEEPALIVE = 1  # seconds


def test_a_hung_remote_is_found_out_by_the_keepalive(peers: Peers) -> None:
    remote = peers.midge("remote")
    table = bridge_table(
        "hung", remote.address, [rule("k/#", "out", 1)], keepalive=KEEPALIVE, connect_timeout=1.0
    )
    local = peers.midge("local", table)
    wait_connected(local, "hung")
    os.kill(remote.process.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        local.log.wait_for(
            rf"bridge hung: connection to {remote.address} lost: "
            rf"{remote.address} did not answer PINGREQ within {KEEPALIVE} s",
            timeout=4 * KEEPALIVE,
        )
        found_out = time.monotonic() - stopped
        assert found_out < 3.5 * KEEPALIVE, f"found out after {found_out:.1f} s"
        local.log.wait_for(r"bridge hung: next attempt in ")
    finally:
        os.kill(remote.process.pid, signal.SIGCONT)
    line = wait_connected(local, "hung", count=2, timeout=2 * WAIT)[1]
    assert "session resumed" in line, line
    topic = f"k/{unique('t')}"
    with paho(remote.host, remote.port) as sub, paho(local.host, local.port) as pub:
        sub.subscribe(topic, 1)
        pub.publish(topic, "after", 1)
        assert sub.get().payload == b"after"
