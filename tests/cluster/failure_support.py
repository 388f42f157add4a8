"""Helpers of the cluster failure tests: fast heartbeats, moving clients between nodes.

The numbered streams and what a subscriber got of them (`Stream`, `Inbox`,
`check_delivery`, `wait_until`) are in tests/streams.py, shared with the
bridge tests.

`move` connects a client to another node while its old connection stays
open (the old node must let go of it: a take-over); `reconnect` connects it
to a node after its own node died, retrying while the cluster answers
"Server unavailable" (the claim waits for the dead node's place to be taken).
"""

from __future__ import annotations

import socket
import time

from cluster_support import WAIT, Node
from integration_support import Connack, Paho

from streams import connect_again

RECONNECT_PAUSE = 0.2  # between two CONNECT attempts while a claim cannot be served
FAST = {"heartbeat_interval": 0.5, "node_timeout": 2.0}  # a dead node is reaped in ~2.5 s


def _connect_to(client: Paho, node: Node, timeout: float) -> Connack:
    return connect_again(client, node.host, node.port, timeout)


def move(client: Paho, node: Node, timeout: float = 2 * WAIT) -> Connack:
    """Connect `client` to `node` while its connection to another node stays open
    (a client that moved leaves a half-open TCP connection behind): the old
    node must close it when `node` claims the client id."""
    old = client.client.socket()
    kept = old.dup() if isinstance(old, socket.socket) else None  # paho closes its own
    try:
        connack = _connect_to(client, node, timeout)
    finally:
        if kept is not None:
            kept.close()
    assert not connack.reason.is_failure, f"CONNACK from {node.name}: {connack.reason}"
    return connack


def reconnect(client: Paho, node: Node, timeout: float = 6 * WAIT) -> Connack:
    """Connect `client` to `node`, again while it answers "Server unavailable"."""
    deadline = time.monotonic() + timeout
    attempts: list[str] = []
    while time.monotonic() < deadline:
        try:
            connack = _connect_to(client, node, max(deadline - time.monotonic(), 0.1))
        except (AssertionError, OSError) as error:
            attempts.append(str(error))
        else:
            if not connack.reason.is_failure:
                return connack
            attempts.append(str(connack.reason))
        time.sleep(RECONNECT_PAUSE)
    raise AssertionError(f"no CONNACK 0 from {node.name} within {timeout:g}s: {attempts}")
