"""The cluster fixtures' own process handling, on plain brokers (no --cluster flags):
start, read the port, stop and kill by PID, start again on the same port."""

from __future__ import annotations

import signal
import socket

import pytest
from cluster_support import ClusterFactory, redis_command
from integration_support import paho

from brokers import HOST
from redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)


def accepts(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def test_nodes_stop_kill_and_start_again_on_their_port(cluster: ClusterFactory) -> None:
    plain = cluster(2, clustered=False)
    one, two = plain
    assert (one.name, two.name) == ("n1", "n2")
    assert one.running and two.running and one.port != two.port
    assert one.log.matching(rf"listening on {HOST}:{one.port}")
    with paho(one.host, one.port) as client:
        client.subscribe("harness/t", 1)
        client.publish("harness/t", b"x", 1)
        assert client.get().payload == b"x"

    first_pid, port = one.pid, one.port
    one.kill()
    assert not one.running and one.runs[-1].process.returncode == -signal.SIGKILL
    assert not accepts(port)
    assert two.running, "killing one node touched another"
    one.start()
    assert one.port == port and one.pid != first_pid and len(one.runs) == 2
    assert accepts(port)

    two.stop()
    assert two.runs[-1].process.returncode is not None and not accepts(two.port)
    two.stop()  # a second stop does nothing
    two.start()
    assert two.running


def test_redis_command_speaks_resp(redis_server: RedisServer, unique_prefix: str) -> None:
    port = redis_server.port
    key = f"{unique_prefix}:harness"
    assert redis_command(port, "PING") == b"PONG"
    assert redis_command(port, "SADD", key, "a", "b") == 2
    assert sorted(redis_command(port, "SMEMBERS", key)) == [b"a", b"b"]
    assert redis_command(port, "GET", f"{key}:none") is None
    assert redis_command(port, "DEL", key) == 1
