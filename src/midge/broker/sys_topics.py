"""$SYS/broker/...: the broker's state as Mosquitto publishes it, worked out sans-IO.

`read_broker` reads the counters (`stats.Stats`, the store writer's) and the
gauges (clients, subscriptions, stored messages) of a broker core into one
flat dict of integers; `SysTree.update(readings, now)` turns that into the
(topic, payload) pairs to publish this round. The asyncio side
(`embedding/sys_service.py`) calls both every `sys_interval` seconds and
publishes the pairs retained, at QoS 0.

The names and payloads are Mosquitto 2.0's (man mosquitto(8), "BROKER
STATUS", and its sys_tree.c): decimal integers; load averages with two
decimals; "N seconds" for the uptime; "midge version X" for the version, as
Mosquitto's "mosquitto version X". As in Mosquitto, a topic is published
only when its payload changed since the last round (the first round
publishes all of them), and the loads are exponentially weighted moving
averages of a per-minute rate over 1, 5 and 15 minutes, all 0.00 in the
first round. Midge's own figures are under `$SYS/broker/midge/`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from midge.broker.broker import Broker

SYS_ROOT = "$SYS/broker/"
LOAD_WINDOWS = (("1min", 60.0), ("5min", 300.0), ("15min", 900.0))

# Mosquitto's counters and gauges: topic under $SYS/broker/ -> reading.
MOSQUITTO_VALUES: tuple[tuple[str, str], ...] = (
    ("clients/total", "clients_total"),
    ("clients/connected", "clients_connected"),
    ("clients/active", "clients_connected"),  # Mosquitto's older name, still published
    ("clients/disconnected", "clients_disconnected"),
    ("clients/inactive", "clients_disconnected"),  # ditto
    ("clients/expired", "clients_expired"),
    ("clients/maximum", "clients_maximum"),
    ("messages/received", "packets_received"),  # every packet type, as in Mosquitto
    ("messages/sent", "packets_sent"),
    ("messages/inflight", "inflight"),  # in man mosquitto(8), not sent by Mosquitto 2.0
    ("messages/stored", "store_messages"),
    ("store/messages/count", "store_messages"),
    ("store/messages/bytes", "store_bytes"),
    ("subscriptions/count", "subscriptions"),
    ("shared_subscriptions/count", "shared_subscriptions"),
    ("retained messages/count", "retained"),
    ("publish/messages/received", "publish_received"),
    ("publish/messages/sent", "publish_sent"),
    ("publish/messages/dropped", "messages_dropped"),
    ("publish/bytes/received", "publish_bytes_received"),
    ("publish/bytes/sent", "publish_bytes_sent"),
    ("bytes/received", "bytes_received"),
    ("bytes/sent", "bytes_sent"),
    ("heap/current", "heap_current"),  # only when the process's memory could be read
    ("heap/maximum", "heap_maximum"),
)

# Mosquitto's load averages: topic under $SYS/broker/load/ (then /1min, /5min,
# /15min) -> the counter whose rate it averages.
LOADS: tuple[tuple[str, str], ...] = (
    ("messages/received", "packets_received"),
    ("messages/sent", "packets_sent"),
    ("publish/dropped", "messages_dropped"),
    ("publish/received", "publish_received"),
    ("publish/sent", "publish_sent"),
    ("bytes/received", "bytes_received"),
    ("bytes/sent", "bytes_sent"),
    ("sockets", "connections_accepted"),
    ("connections", "connects"),  # CONNECTs answered: accepted or refused
)

# Midge's own, under $SYS/broker/midge/.
MIDGE_VALUES: tuple[tuple[str, str], ...] = (
    ("messages/routed", "messages_received"),
    ("dropped/queue_full", "dropped_queue_full"),
    ("dropped/write_buffer", "dropped_write_buffer"),
    ("dropped/too_large", "dropped_too_large"),
    ("dropped/expired", "dropped_expired"),
    ("dropped/no_subscribers", "dropped_no_subscribers"),
    ("dropped/acl", "dropped_acl"),
    ("backpressure/episodes", "backpressure_episodes"),
    ("backpressure/publishers_held", "publishers_held"),
    ("backpressure/stalls", "stalls"),
    ("connections/total", "connections_total"),
    ("auth/failures", "auth_failures"),
    ("errors/protocol_violations", "protocol_violations"),
    ("errors/internal", "internal_errors"),
    ("store/commits", "store_commits"),
    ("store/operations", "store_operations"),
)
# Readings "refused/<reason>", published as $SYS/broker/midge/connections/refused/<reason>.
REFUSED_PREFIX = "refused/"
# Readings "cluster/<name>" (cluster/node.py figures), as $SYS/broker/midge/cluster/<name>.
CLUSTER_PREFIX = "cluster/"
# Readings "bridges/<name>/<figure>" (bridge/link.py), as $SYS/broker/midge/bridges/<name>/<figure>.
BRIDGE_PREFIX = "bridges/"
COMMIT_LATENCY_TOPIC = SYS_ROOT + "midge/store/commit_latency/average"  # ms, over the last round

# What `read_broker` copies from Stats as it is.
_STATS_FIELDS = (
    "connections_accepted",
    "connections_total",
    "clients_expired",
    "clients_maximum",
    "packets_received",
    "packets_sent",
    "bytes_received",
    "bytes_sent",
    "publish_received",
    "publish_sent",
    "publish_bytes_received",
    "publish_bytes_sent",
    "messages_received",
    "messages_dropped",
    "dropped_queue_full",
    "dropped_write_buffer",
    "dropped_too_large",
    "dropped_expired",
    "dropped_no_subscribers",
    "dropped_acl",
    "backpressure_episodes",
    "publishers_held",
    "stalls",
    "auth_failures",
    "protocol_violations",
    "internal_errors",
)


class WriterCounters(Protocol):
    """What is read of the store's group-commit writer (`store.writer.GroupCommitWriter`)."""

    commits: int
    operations: int
    commit_seconds_total: float


def read_broker(
    core: Broker, writer: WriterCounters | None = None, memory: tuple[int, int] | None = None
) -> dict[str, int]:
    """Every reading a round publishes, from `core` (and the store's `writer`,
    when it has one; `memory`: the process's current and highest resident
    bytes, when they could be read). O(sessions): for a round every few seconds."""
    stats = core.stats
    readings = {name: int(getattr(stats, name)) for name in _STATS_FIELDS}
    refused = stats.connections_refused
    readings["connects"] = stats.connections_total + sum(refused.values())
    for reason, count in refused.items():
        readings[REFUSED_PREFIX + reason] = count
    sessions = core.sessions
    connected = len(core.connections)
    readings["clients_total"] = len(sessions)
    readings["clients_connected"] = connected
    readings["clients_disconnected"] = max(len(sessions) - connected, 0)
    retained = core.retained
    inflight = 0
    queued = 0
    size = retained.bytes
    for session in sessions.values():
        inflight += len(session.inflight)
        queued += len(session.queue)
        size += session.queued_bytes
        for entry in session.inflight.values():
            size += entry.message.size
    readings["inflight"] = inflight
    readings["retained"] = retained.count
    readings["store_messages"] = retained.count + queued + inflight
    readings["store_bytes"] = size
    shared = sum(len(group.members) for group in core.delivery.shared.groups.values())
    readings["shared_subscriptions"] = shared
    readings["subscriptions"] = core.subscriptions.count + shared
    if writer is not None:
        readings["store_commits"] = writer.commits
        readings["store_operations"] = writer.operations
        readings["store_commit_us"] = int(writer.commit_seconds_total * 1_000_000)
    if memory is not None:
        readings["heap_current"], readings["heap_maximum"] = memory
    return readings


class SysTree:
    """What was last published, and the load averages: one per broker."""

    def __init__(self, version: str, started: float) -> None:
        """`started`: the broker's start, in the clock `update` is given."""
        self.version = version
        self.started = started
        self._published: dict[str, bytes] = {}  # topic -> the payload last published
        self._loads: dict[str, float] = {}  # load topic -> its current average
        self._previous: dict[str, int] | None = None  # the readings of the last round
        self._previous_at = started

    def update(self, readings: dict[str, int], now: float) -> list[tuple[str, bytes]]:
        """The (topic, payload) pairs to publish for `readings` taken at `now`:
        those whose payload changed since the last round (every one the first time)."""
        values: list[tuple[str, bytes]] = [
            (SYS_ROOT + "version", f"midge version {self.version}".encode()),
            (SYS_ROOT + "uptime", f"{int(now - self.started)} seconds".encode()),
        ]
        for topic, name in MOSQUITTO_VALUES:
            if name in readings:
                values.append((SYS_ROOT + topic, b"%d" % readings[name]))
        self._update_loads(readings, now, values)
        for topic, name in MIDGE_VALUES:
            if name in readings:
                values.append((SYS_ROOT + "midge/" + topic, b"%d" % readings[name]))
        for name, count in sorted(readings.items()):
            if name.startswith(REFUSED_PREFIX):
                topic = SYS_ROOT + "midge/connections/" + name
                values.append((topic, b"%d" % count))
            elif name.startswith((CLUSTER_PREFIX, BRIDGE_PREFIX)):
                values.append((SYS_ROOT + "midge/" + name, b"%d" % count))
        latency = self._commit_latency(readings)
        if latency is not None:
            values.append((COMMIT_LATENCY_TOPIC, b"%.3f" % latency))
        self._previous = dict(readings)
        self._previous_at = now
        published = self._published
        changed = [(topic, payload) for topic, payload in values if published.get(topic) != payload]
        published.update(changed)
        return changed

    def _update_loads(
        self, readings: dict[str, int], now: float, values: list[tuple[str, bytes]]
    ) -> None:
        """Mosquitto's load averages: the per-minute rate since the last round,
        folded into each window's average with weight exp(-elapsed / window)."""
        previous = self._previous
        elapsed = now - self._previous_at
        loads = self._loads
        for topic, name in LOADS:
            rate = 0.0
            if previous is not None and elapsed > 0:
                rate = (readings.get(name, 0) - previous.get(name, 0)) * 60.0 / elapsed
            for window, seconds in LOAD_WINDOWS:
                load_topic = f"{SYS_ROOT}load/{topic}/{window}"
                if previous is None:
                    average = 0.0
                elif elapsed > 0:
                    decay = math.exp(-elapsed / seconds)
                    average = rate + decay * (loads.get(load_topic, 0.0) - rate)
                else:
                    average = loads.get(load_topic, 0.0)
                loads[load_topic] = average
                values.append((load_topic, b"%.2f" % average))

    def _commit_latency(self, readings: dict[str, int]) -> float | None:
        """Milliseconds per store commit since the last round; None without commits."""
        previous = self._previous or {}
        commits = readings.get("store_commits", 0) - previous.get("store_commits", 0)
        if commits <= 0:
            return None
        spent = readings.get("store_commit_us", 0) - previous.get("store_commit_us", 0)
        return spent / commits / 1000.0
