#!/usr/bin/env python3
"""What the cluster costs Redis: commands and bytes per forwarded message and
per session change, measured on a real redis-server (docs/cluster.md turns
them into a capacity model).

A fresh redis-server and two Midge nodes on loopback; each workload runs
between two snapshots of Redis's own counters (INFO commandstats and stats:
calls per command, total_net_input_bytes and total_net_output_bytes), so the
figures are what Redis did, including the nodes' background reads (heartbeats,
change log, inbound stream). Workloads:

- qos1-cross: a clean-session subscriber on node 2, N QoS 1 messages
  published on node 1 (every one crosses nodes);
- qos0-cross: the same at QoS 0;
- qos1-local: subscriber and publisher both on node 1 (nothing crosses):
  what the cluster costs a message that stays on its node;
- qos1-persistent: the subscriber on node 2 has a persistent session
  (its queue and in-flight messages are kept in Redis);
- connect: N clean-session CONNECT/DISCONNECT pairs on node 1 (claims);
- subscribe: N SUBSCRIBE/UNSUBSCRIBE pairs of a new filter (routes);
- memory: Redis's used_memory per persistent session (one subscription,
  nothing queued) and per owner key of a clean-session client, and the
  memory a node's replica of the routes takes per remote filter
  (cluster/routes.py RemoteRoutes, measured with tracemalloc).

Run from the repository root:

    .venv/bin/python benchmarks/cluster_cost.py --messages 20000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import redis

HOST = "127.0.0.1"
LISTENING = re.compile(r"listening on \S+:(\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(folder: Path) -> Iterator[int]:
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [binary, "--port", str(port), "--bind", HOST, "--dir", str(folder), "--save", ""]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(host=HOST, port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(5)


@contextmanager
def node(url: str, name: str) -> Iterator[int]:
    args = [sys.executable, "-m", "midge", "serve", "--port", "0", "--cluster", url]
    args += ["--node-name", name, "--log-level", "info"]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            match = LISTENING.search(line)
            if match:
                break
        else:
            raise RuntimeError(f"node {name} did not start")
        threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # type: ignore[union-attr]
        yield int(match.group(1))
    finally:
        process.terminate()
        process.wait(10)


def client(port: int, client_id: str, clean: bool = True) -> mqtt.Client:
    made = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    made.max_inflight_messages_set(100)
    made.connect(HOST, port)
    made.loop_start()
    return made


def snapshot(redis_client: redis.Redis) -> tuple[dict[str, int], int, int]:
    stats = redis_client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    traffic = redis_client.info("stats")
    return calls, int(traffic["total_net_input_bytes"]), int(traffic["total_net_output_bytes"])


def flow(pub_port: int, sub_port: int, count: int, qos: int, clean: bool) -> None:
    received = threading.Event()
    seen = [0]

    def on_message(_c: object, _u: object, _m: object) -> None:
        seen[0] += 1
        if seen[0] >= count:
            received.set()

    subscriber = client(sub_port, f"cost-sub-{qos}-{clean}", clean)
    subscriber.on_message = on_message
    subscriber.subscribe("cost/#", qos)
    time.sleep(0.5)
    publisher = client(pub_port, "cost-pub")
    payload = b"x" * 64
    infos = [publisher.publish(f"cost/{i % 10}", payload, qos) for i in range(count)]
    for info in infos:
        info.wait_for_publish(30)
    received.wait(60)
    publisher.disconnect()
    subscriber.disconnect()
    if not clean:  # the session goes, so that the next run starts clean
        client(sub_port, f"cost-sub-{qos}-{clean}", True).disconnect()


def connects(port: int, count: int) -> None:
    """Each CONNECT answered (a claim) before its DISCONNECT."""
    for i in range(count):
        connected = threading.Event()
        made = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cost-conn-{i}")
        made.on_connect = lambda *_args, done=connected: done.set()
        made.connect(HOST, port)
        made.loop_start()
        if not connected.wait(10):
            raise RuntimeError("no CONNACK")
        made.disconnect()
        made.loop_stop()


def subscribes(port: int, count: int) -> None:
    made = client(port, "cost-subscriber")
    for i in range(count):
        made.subscribe(f"cost/filter/{i}", 1)
        made.unsubscribe(f"cost/filter/{i}")
        time.sleep(0.002)
    time.sleep(0.5)
    made.disconnect()


def sessions_memory(redis_client: redis.Redis, port: int, count: int) -> dict[str, object]:
    """Redis bytes per persistent session, then per clean client's owner key."""
    time.sleep(1.0)
    before = int(redis_client.info("memory")["used_memory"])
    for i in range(count):
        made = client(port, f"cost-persistent-{i}", clean=False)
        made.subscribe(f"devices/{i}/commands", 1)
        time.sleep(0.001)
        made.disconnect()
        made.loop_stop()
    time.sleep(1.0)
    middle = int(redis_client.info("memory")["used_memory"])
    connects(port, count)
    time.sleep(1.0)
    after = int(redis_client.info("memory")["used_memory"])
    return {
        "workload": "memory",
        "redis_bytes_per_persistent_session": round((middle - before) / count),
        "redis_bytes_per_clean_client": round((after - middle) / count),
        "node_bytes_per_remote_route": routes_memory(),
    }


def routes_memory(count: int = 100_000) -> int:
    import tracemalloc  # noqa: PLC0415

    from midge.cluster.routes import RemoteRoutes  # noqa: PLC0415

    tracemalloc.start()
    routes = RemoteRoutes()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        routes.add(f"node{i % 4}", f"devices/{i}/commands")
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return round(used / count)


def measure(
    redis_client: redis.Redis, label: str, units: int, work: Callable[[], None]
) -> dict[str, object]:
    time.sleep(1.0)
    before, bytes_in, bytes_out = snapshot(redis_client)
    started = time.monotonic()
    work()
    elapsed = time.monotonic() - started
    after, bytes_in2, bytes_out2 = snapshot(redis_client)
    calls = {name: after[name] - before.get(name, 0) for name in after}
    calls = {name: count for name, count in calls.items() if count and name != "info"}
    total = sum(calls.values())
    # The nodes' background traffic (heartbeats, blocking reads) runs during
    # the workload too: it is part of what the cluster costs, per second.
    return {
        "workload": label,
        "units": units,
        "seconds": round(elapsed, 2),
        "commands_per_unit": round(total / units, 2),
        "bytes_in_per_unit": round((bytes_in2 - bytes_in) / units),
        "bytes_out_per_unit": round((bytes_out2 - bytes_out) / units),
        "commands": dict(sorted(calls.items(), key=lambda item: -item[1])[:8]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--sessions", type=int, default=2_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cluster-cost-"))
    results = []
    try:
        with redis_server(folder) as port:
            url = f"redis://{HOST}:{port}/0"
            rc = redis.Redis(host=HOST, port=port)
            with node(url, "cost1") as one, node(url, "cost2") as two:
                n, s = args.messages, args.sessions
                results.append(measure(rc, "qos1-cross", n, lambda: flow(one, two, n, 1, True)))
                results.append(measure(rc, "qos0-cross", n, lambda: flow(one, two, n, 0, True)))
                results.append(measure(rc, "qos1-local", n, lambda: flow(one, one, n, 1, True)))
                results.append(
                    measure(rc, "qos1-persistent", n, lambda: flow(one, two, n, 1, False))
                )
                results.append(measure(rc, "connect", s, lambda: connects(one, s)))
                results.append(measure(rc, "subscribe", s, lambda: subscribes(one, s)))
                results.append(sessions_memory(rc, one, s))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for row in results:
        print(json.dumps(row))


if __name__ == "__main__":
    os.environ.setdefault("MIDGE_PURE", "1")
    main()
