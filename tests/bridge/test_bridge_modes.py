"""A bridge's start types, queue bound, failover, WebSocket transport and figures (issue 15).

Each test runs its own local `midge serve` with one bridge to a real remote
(Debian's mosquitto, or a second `midge serve` where a WebSocket listener or
the bridge flag is needed), retrying quickly (bridge_support.FAST_RETRY):

- lazy: no link until `threshold` messages wait; then they all go, in
  order; after `idle_timeout` without traffic the link ends, and the next
  threshold starts it again;
- once: one attempt; a remote that is not there is not tried again;
- the queue bound while the remote is away: `drop_new` keeps the first
  `queue_limit` messages, `drop_oldest` the last ones, and both count what
  they dropped;
- failover: the first address has no listener, the second does: the bridge
  connects there; with `round_robin` it goes on from the last address;
- WebSocket: the bridge reaches a Midge WebSocket listener;
- the figures: `GET /api/v1/bridges`, `/metrics` and `$SYS` say the link is
  up and count what went through.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from bridge_support import Peer, Peers, bridge_table, rule, state_topic, wait_connected
from integration_support import paho

from brokers import free_port
from streams import WAIT, wait_until

pytestmark = pytest.mark.timeout(60)


def publish_numbers(local: Peer, topic: str, numbers: range, qos: int = 1) -> None:
    with paho(local.host, local.port) as publisher:
        for number in numbers:
            publisher.publish(topic, str(number).encode(), qos)


def received_numbers(client: Any, count: int, timeout: float = 2 * WAIT) -> list[int]:
    return [int(message.payload) for message in client.get_many(count, timeout)]


# ------------------------------------------------------------------ start types


def test_a_lazy_bridge_connects_at_its_threshold_and_leaves_when_idle(peers: Peers) -> None:
    remote = peers.mosquitto("remote")
    table = bridge_table(
        "lazy",
        remote.address,
        [rule("lazy/#", "out", 1)],
        start="lazy",
        threshold=5,
        idle_timeout=1.0,
    )
    local = peers.midge("local", table)
    with paho(remote.host, remote.port) as subscriber:
        subscriber.subscribe("lazy/#", 1)
        publish_numbers(local, "lazy/n", range(4))
        assert not wait_until(lambda: local.log.matching(r"bridge lazy: connected"), 1.5), (
            "the lazy bridge connected below its threshold"
        )
        publish_numbers(local, "lazy/n", range(4, 5))
        wait_connected(local, "lazy")
        assert received_numbers(subscriber, 5) == list(range(5))
        local.log.wait_for(r"bridge lazy: idle for 1 s: disconnecting", 1, 3 * WAIT)
        publish_numbers(local, "lazy/n", range(5, 10))
        wait_connected(local, "lazy", count=2)
        assert received_numbers(subscriber, 5) == list(range(5, 10))


def test_a_bridge_started_once_does_not_try_again(peers: Peers) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    local = peers.midge("local", bridge_table("once", nobody, [rule("x/#", "out")], start="once"))
    local.log.wait_for(r"bridge once: cannot connect to", 1, WAIT)
    assert not wait_until(lambda: len(local.log.matching(r"bridge once: next attempt")), 1.5)
    with paho(local.host, local.port) as client:  # the broker serves on
        client.subscribe("x/#", 1)
        client.publish("x/1", b"local", 1)
        assert client.get().payload == b"local"


# ------------------------------------------------------------------ the queue bound


@pytest.mark.parametrize(
    ("policy", "kept"), [("drop_new", range(5)), ("drop_oldest", range(7, 12))]
)
def test_the_queue_bound_while_the_remote_is_away(peers: Peers, policy: str, kept: range) -> None:
    remote = peers.mosquitto("remote", persistent=True)
    with paho(remote.host, remote.port, client_id="far", clean_session=False) as subscriber:
        subscriber.subscribe("q/#", 1)
    table = bridge_table(
        "bounded", remote.address, [rule("q/#", "out", 1)], queue_limit=5, queue_full=policy
    )
    local = peers.midge("local", table)
    wait_connected(local, "bounded")
    remote.stop()
    local.log.wait_for(r"bridge bounded: connection to .* lost", 1, WAIT)
    publish_numbers(local, "q/n", range(12))
    local.log.wait_for(r"dropping messages for '\$bridge/bounded'", 1, WAIT)
    remote.start()
    wait_connected(local, "bounded", count=2, timeout=3 * WAIT)
    with paho(remote.host, remote.port, client_id="far", clean_session=False) as subscriber:
        assert received_numbers(subscriber, 5) == list(kept)
        assert not wait_until(lambda: not subscriber.messages.empty(), 1.0), "more than kept"


# ------------------------------------------------------------------ addresses


@pytest.mark.parametrize("round_robin", [False, True])
def test_an_address_that_does_not_answer_is_passed_over(peers: Peers, round_robin: bool) -> None:
    remote = peers.mosquitto("remote")
    dead = f"127.0.0.1:{free_port()}"
    table = bridge_table(
        "failover", [dead, remote.address], [rule("f/#", "out", 1)], round_robin=round_robin
    )
    local = peers.midge("local", table)
    line = wait_connected(local, "failover")[0]
    assert remote.address in line
    assert local.log.matching(rf"bridge failover: cannot connect to {dead}")
    with paho(remote.host, remote.port) as subscriber:
        subscriber.subscribe("f/#", 1)
        publish_numbers(local, "f/n", range(3))
        assert received_numbers(subscriber, 3) == [0, 1, 2]


def test_a_bridge_over_websocket(peers: Peers) -> None:
    port = free_port()
    remote = peers.midge(
        "remote",
        "allow_anonymous = true\n"
        f'[[listeners]]\nport = 0\n\n[[listeners]]\nport = {port}\ntransport = "ws"\n',
    )
    table = bridge_table(
        "ws", f"127.0.0.1:{port}", [rule("w/#", "both", 1)], transport="ws", protocol="5"
    )
    local = peers.midge("local", table)
    wait_connected(local, "ws")
    with paho(remote.host, remote.port) as far, paho(local.host, local.port) as near:
        far.subscribe("w/out", 1)
        near.subscribe("w/in", 1)
        near.publish("w/out", b"over a websocket", 1)
        far.publish("w/in", b"and back", 1)
        assert far.get().payload == b"over a websocket"
        assert near.get().payload == b"and back"


# ------------------------------------------------------------------ figures


def read_key(keys: Path) -> str:
    """A read key made as a user makes one: `midge apikey create`."""
    command = [sys.executable, "-m", "midge", "apikey", "create", "viewer", "--role", "read"]
    made = subprocess.run(
        [*command, "--file", str(keys)],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT,
    )
    return made.stdout.strip()


def test_the_bridge_figures_in_the_api_metrics_and_sys(peers: Peers) -> None:
    remote = peers.mosquitto("remote")
    http = free_port()
    reader = read_key(peers.folder / "keys")
    config = (
        f'sys_interval = 1\nallow_anonymous = true\napi_key_file = "{peers.folder / "keys"}"\n'
        f'[[listeners]]\nport = 0\n\n[[listeners]]\nport = {http}\ntransport = "http"\n\n'
        + bridge_table("seen", remote.address, [rule("s/#", "out", 1), rule("r/#", "in", 1)])
    )
    local = peers.midge("local", config)
    wait_connected(local, "seen")
    with paho(remote.host, remote.port) as far:
        far.subscribe("s/#", 1)
        publish_numbers(local, "s/n", range(3))
        assert received_numbers(far, 3) == [0, 1, 2]
    with paho(local.host, local.port) as near:
        near.subscribe("$SYS/broker/midge/bridges/seen/sent", 0)
        near.subscribe(state_topic("seen"), 0)
        wait_until(lambda: near.messages.qsize() >= 2, 3 * WAIT)
        seen = {message.topic: message.payload for message in near.drain()}
        assert seen[state_topic("seen")] == b"1"
        assert seen["$SYS/broker/midge/bridges/seen/sent"] == b"3"
    request = urllib.request.Request(
        f"http://127.0.0.1:{http}/api/v1/bridges", headers={"Authorization": f"Bearer {reader}"}
    )
    with urllib.request.urlopen(request, timeout=WAIT) as answer:
        [bridge] = json.load(answer)["bridges"]
    assert (bridge["name"], bridge["state"], bridge["address"]) == ("seen", "up", remote.address)
    assert (bridge["connected"], bridge["sent"], bridge["queued"]) == (1, 3, 0)
    assert [rule["direction"] for rule in bridge["topics"]] == ["out", "in"]
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=WAIT) as answer:
        text = answer.read().decode()
    assert 'midge_bridge_connected{bridge="seen"} 1.0' in text
    assert 'midge_bridge_sent_total{bridge="seen"} 3.0' in text


# ------------------------------------------------------------------ a bridge taken out


def test_a_bridge_taken_out_of_the_config_leaves_no_session_behind(peers: Peers) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    local = peers.midge("local", bridge_table("old", nobody, [rule("old/#", "out", 1)]))
    publish_numbers(local, "old/n", range(3))  # they wait for a remote that is not there
    local.stop()
    local.config = ""  # the same broker and store, the bridge gone from its config
    local.start()
    local.log.wait_for(
        r"bridge old is no longer configured: its session goes, with 3 messages", 1, WAIT
    )
    local.stop()
    local.start()  # and it stays gone
    assert not local.log.matching(r"no longer configured")


# ------------------------------------------------------------------ the state at the remote


@pytest.mark.parametrize("kind", ["mosquitto", "midge"])
def test_the_state_at_the_remote_and_its_will(peers: Peers, kind: str) -> None:
    """notifications_remote: "1" retained at the remote once up; when the local
    broker dies, the remote publishes the bridge's will, "0" (a Midge remote
    takes it under $SYS/ from a client with the bridge flag)."""
    remote = peers.mosquitto("remote") if kind == "mosquitto" else peers.midge("remote")
    table = bridge_table(
        "cloud",
        remote.address,
        [rule("n/#", "out", 1)],
        client_id="edge.cloud",
        notifications_remote=True,
    )
    local = peers.midge("local", table)
    wait_connected(local, "cloud")
    topic = "$SYS/broker/connection/edge.cloud/state"
    with paho(remote.host, remote.port) as watcher:
        watcher.subscribe(topic, 1)
        first = watcher.get()
        assert (first.topic, first.payload, first.retain) == (topic, b"1", True)
        local.kill()
        last = watcher.get()
        assert (last.topic, last.payload) == (topic, b"0")


def test_without_round_robin_the_bridge_goes_back_to_the_first_address(peers: Peers) -> None:
    primary = peers.mosquitto("primary")
    primary.stop()  # its port stays its own: it comes back there
    backup = peers.mosquitto("backup")
    table = bridge_table(
        "back", [primary.address, backup.address], [rule("p/#", "out", 1)], primary_retry=0.5
    )
    local = peers.midge("local", table)
    assert backup.address in wait_connected(local, "back")[0]
    primary.start()
    local.log.wait_for(rf"bridge back: {primary.address} answers again: going back to it", 1, WAIT)
    assert primary.address in wait_connected(local, "back", count=2)[1]
    with paho(primary.host, primary.port) as subscriber:
        subscriber.subscribe("p/#", 1)
        publish_numbers(local, "p/n", range(2))
        assert received_numbers(subscriber, 2) == [0, 1]
