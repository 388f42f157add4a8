"""Bridges for `midge bench --bridge`: a local broker bridged to a fresh remote Mosquitto.

Every run gets a fresh remote Mosquitto (the single runner's) and a fresh
local broker bridged to it by one rule, `bench/#` out at QoS 2 (so every
message keeps its own QoS), each broker otherwise at its defaults:

- Midge: its `[[bridges]]` table (bridge/config.py);
- Mosquitto: a `connection` block (Mosquitto's own bridge).

Publishers connect to the local broker and subscribers to the remote one
(`Target.sub_port`), so every message crosses the bridge: local publisher ->
local broker -> bridge -> remote Mosquitto -> subscriber. Before the run a
probe message goes the same way, which shows the link is up. The local
broker's CPU share is reported as the broker's, the remote's beside it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from midge.bench.brokers import (
    BrokerSettings,
    RunningBroker,
    mosquitto_binary,
    mosquitto_version,
    start_midge,
    start_mosquitto,
)
from midge.bench.cli import BRIDGE_DEFAULT
from midge.bench.flows import Deployment, Target
from midge.bench.lineup import Lineup
from midge.bench.wire import HOST, BenchError, Client
from midge.protocol.codec import encode
from midge.protocol.packets import Publish

BROKERS = ("midge", "mosquitto")
DEFAULT_SCENARIOS = BRIDGE_DEFAULT
# Scenarios whose clients connect through flows.pub_spec / sub_spec (topics
# under bench/): publishers on the local broker, subscribers on the remote.
CROSS_BRIDGE = ("qos1", "qos2", "latency", "latency-qos1", "qos0-fan-in", "qos0-fan-out")
RULE = "bench/# out 2"  # Mosquitto's words; the Midge table below says the same
PROBE_TOPIC = "bench/probe"
PROBE_TIMEOUT = 15.0  # seconds for the first message to cross (the link comes up)


def _bridge_config(broker: str, remote_port: int) -> str:
    """What the local `broker`'s config adds: the bridge to the remote."""
    if broker == "midge":
        return (
            "\n[[bridges]]\n"
            'name = "bench"\n'
            f'addresses = ["{HOST}:{remote_port}"]\n'
            "restart_delay = 0.2\n"
            'topics = [{ pattern = "bench/#", direction = "out", qos = 2 }]\n'
        )
    return f"connection bench\naddress {HOST}:{remote_port}\ntopic {RULE}\nrestart_timeout 1\n"


@contextmanager
def start_bridged(broker: str, settings: BrokerSettings) -> Iterator[Deployment]:
    """A fresh remote Mosquitto and a fresh local `broker` bridged to it, the link up."""
    if broker not in BROKERS:
        raise BenchError(f"{broker} does not bridge here; choose from {BROKERS}")
    local_start = start_midge if broker == "midge" else start_mosquitto
    with (
        start_mosquitto(settings) as remote,
        local_start(settings, _bridge_config(broker, remote.port)) as local,
    ):
        probe(local, remote)
        target = Target(
            local.host,
            local.port,
            local.pid,
            sub_host=remote.host,
            sub_port=remote.port,
            helpers=(("remote", remote.pid),),
        )
        yield Deployment(target, (local, remote))


def probe(local: RunningBroker, remote: RunningBroker) -> None:
    """Publish on `local` until a subscriber on `remote` gets it: the bridge is up."""
    subscriber = Client.connect(remote.host, remote.port, f"bench-probe-sub-{os.getpid()}")
    publisher = Client.connect(local.host, local.port, f"bench-probe-pub-{os.getpid()}")
    try:
        subscriber.subscribe([(PROBE_TOPIC, 0)])
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            publisher.sock.sendall(encode(Publish(PROBE_TOPIC, b"probe", 0)))
            try:
                first, _ = subscriber.read_packet(timeout=0.5)
            except BenchError:
                continue
            if first >> 4 == 3:  # PUBLISH
                return
        raise BenchError(
            f"the bridge from {local.name} to {remote.name} did not pass a message "
            f"within {PROBE_TIMEOUT:g} s"
        )
    finally:
        subscriber.close()
        publisher.close()


def lineup(brokers: list[str]) -> Lineup:
    """What the runner needs to run scenarios through bridges."""

    @contextmanager
    def deploy(broker: str, settings: BrokerSettings) -> Iterator[Deployment]:
        with start_bridged(broker, settings) as deployed:
            yield deployed

    info = setup_info()
    return Lineup(deploy, _available, header(info), info)


def _available(broker: str) -> bool:
    return broker in BROKERS and mosquitto_binary() is not None


def setup_info() -> dict[str, Any]:
    return {
        "bridge": f"topic {RULE}",
        "remote": f"mosquitto {mosquitto_version()}",
        "publishers_on": "the local broker",
        "subscribers_on": "the remote Mosquitto",
        "fresh_per_run": "the remote Mosquitto and the local broker",
    }


def header(info: dict[str, Any]) -> str:
    return (
        f"bridge: each broker bridged to a fresh remote {info['remote']} ({info['bridge']}, "
        "loopback); publishers on the local broker, subscribers on the remote: every message "
        "crosses the bridge; 'broker CPU' is the local broker's"
    )
