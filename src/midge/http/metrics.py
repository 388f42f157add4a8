"""`/metrics`: the broker in Prometheus's text format, read at scrape time.

Nothing is counted for Prometheus on the hot path: the broker bumps plain
integers (`Stats`, the store writer's counters), and `BrokerCollector`
reads them, and the sizes of the broker's tables, only when Prometheus
scrapes. prometheus_client writes the exposition format (and OpenMetrics
when the scraper asks for it); its `ProcessCollector` adds the process's
RSS, CPU seconds, open files and start time (`process_*`). The registry is
private to each app, so embedding programs with their own prometheus_client
metrics see no clash.

Counters the broker does not keep yet read as 0, so the metric names stay
fixed from release to release.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from midge import __version__, compiled
from midge.broker.broker import Broker as Core
from midge.embedding.broker import Broker
from midge.http.health import StoreHealth

# Stats counter -> (metric name, help). Each is exported as NAME_total.
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("connections_total", "midge_connections", "CONNECTs accepted (CONNACK 0)"),
    ("connections_accepted", "midge_sockets_accepted", "sockets accepted (any listener)"),
    ("messages_received", "midge_messages_received", "application messages routed"),
    ("messages_sent", "midge_messages_sent", "PUBLISH packets sent to subscribers"),
    ("bytes_received", "midge_bytes_received", "MQTT bytes read from clients"),
    ("bytes_sent", "midge_bytes_sent", "MQTT bytes written to clients"),
    ("packets_received", "midge_packets_received", "MQTT packets handled"),
    ("packets_sent", "midge_packets_sent", "MQTT packets written"),
    ("publish_bytes_received", "midge_publish_payload_bytes_received", "PUBLISH payload bytes in"),
    ("publish_bytes_sent", "midge_publish_payload_bytes_sent", "PUBLISH payload bytes out"),
    ("protocol_violations", "midge_protocol_violations", "connections closed for a rule broken"),
    ("internal_errors", "midge_internal_errors", "connections closed by an internal error"),
    ("backpressure_episodes", "midge_backpressure_pauses", "times a receiver held publishers back"),
    ("publishers_held", "midge_publishers_held", "publisher connections held back, all episodes"),
    ("stalls", "midge_stalls", "receivers that stopped acknowledging while holding publishers"),
    ("auth_failures", "midge_auth_failures", "refused MQTT logins"),
    ("clients_expired", "midge_sessions_expired", "persistent sessions expired while offline"),
)
# Dropped messages by cause: label value -> Stats field.
DROP_CAUSES: tuple[tuple[str, str], ...] = (
    ("queue_full", "dropped_queue_full"),
    ("write_buffer", "dropped_write_buffer"),
    ("too_large", "dropped_too_large"),
    ("expired", "dropped_expired"),
    ("no_subscribers", "dropped_no_subscribers"),
    ("acl", "dropped_acl"),
)
QOS_LEVELS = ("0", "1", "2")


class BrokerCollector(Collector):
    """Reads the broker when collected; nothing happens between scrapes."""

    def __init__(self, broker: Broker, health: StoreHealth, http: Any = None) -> None:
        self.broker = broker
        self.health = health
        self.http = http  # what counts the HTTP API's own refusals (`auth_failures`)

    def collect(self) -> Iterator[Metric]:
        broker = self.broker
        core = broker.core
        stats = core.stats
        info = GaugeMetricFamily(
            "midge_info", "Midge version and build", labels=["version", "build"]
        )
        info.add_metric([__version__, "compiled" if compiled() else "pure"], 1)
        yield info
        yield _gauge(
            "midge_clients_connected",
            "clients connected now (in-process ones too)",
            len(core.connections),
        )
        yield _gauge(
            "midge_sockets_open", "sockets open now, connected or not", core.open_connections
        )
        yield _gauge(
            "midge_clients_maximum",
            "most clients connected at once",
            _get(stats, "clients_maximum"),
        )
        for field, name, documentation in COUNTERS:
            yield CounterMetricFamily(name, documentation, value=_get(stats, field))
        refused = CounterMetricFamily(
            "midge_connections_refused", "CONNECTs refused, by reason", labels=["reason"]
        )
        reasons = getattr(stats, "connections_refused", None)
        if isinstance(reasons, Mapping):
            for reason, count in sorted(reasons.items(), key=lambda item: str(item[0])):
                refused.add_metric([str(reason).lower()], count)
        yield refused
        sessions = GaugeMetricFamily("midge_sessions", "sessions by state", labels=["state"])
        online = len(core.connections)
        sessions.add_metric(["online"], online)
        sessions.add_metric(["offline"], max(len(core.sessions) - online, 0))
        yield sessions
        subscriptions = GaugeMetricFamily(
            "midge_subscriptions", "subscriptions by kind", labels=["kind"]
        )
        plain, shared = subscription_counts(core)
        subscriptions.add_metric(["plain"], plain)
        subscriptions.add_metric(["shared"], shared)
        yield subscriptions
        yield _gauge(
            "midge_retained_messages",
            "retained messages stored (not the broker's own $SYS ones)",
            retained_count(core),
        )
        for direction in ("received", "sent"):
            by_qos = CounterMetricFamily(
                f"midge_publish_{direction}",
                f"PUBLISH packets {direction}, by QoS",
                labels=["qos"],
            )
            for qos in QOS_LEVELS:
                by_qos.add_metric([qos], _get(stats, f"publish_{direction}_qos{qos}"))
            yield by_qos
        dropped = CounterMetricFamily(
            "midge_messages_dropped", "messages dropped, by cause", labels=["cause"]
        )
        for cause, field in DROP_CAUSES:
            dropped.add_metric([cause], _get(stats, field))
        yield dropped
        yield from self._store()
        yield from self._cluster()
        yield from self._bridges()
        yield CounterMetricFamily(
            "midge_http_auth_failures",
            "HTTP API requests refused for a missing or unknown API key",
            value=getattr(self.http, "auth_failures", 0),
        )

    def _cluster(self) -> Iterator[Metric]:
        """midge_cluster_*: this node's part in a cluster, when there is one."""
        cluster = self.broker.cluster
        if cluster is None:
            return
        for name, value in cluster.figures().items():
            if name in CLUSTER_GAUGES:
                yield _gauge(f"midge_cluster_{name}", CLUSTER_GAUGES[name], value)
            else:
                text = CLUSTER_COUNTERS.get(name, name.replace("_", " "))
                yield CounterMetricFamily(f"midge_cluster_{name}", text, value=value)

    def _bridges(self) -> Iterator[Metric]:
        """midge_bridge_*{bridge="name"}: one series per configured bridge."""
        bridges = self.broker.bridges
        if not bridges:
            return
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for name, text in BRIDGE_GAUGES.items():
            families[name] = GaugeMetricFamily(f"midge_bridge_{name}", text, labels=["bridge"])
        for name, text in BRIDGE_COUNTERS.items():
            families[name] = CounterMetricFamily(f"midge_bridge_{name}", text, labels=["bridge"])
        for bridge in bridges:
            for name, value in bridge.figures().items():
                families[name].add_metric([bridge.config.name], value)
        yield from families.values()

    def _store(self) -> Iterator[Metric]:
        writer = self.broker.core.persistence.committer
        yield CounterMetricFamily(
            "midge_store_commits", "store transactions committed", value=_get(writer, "commits")
        )
        yield CounterMetricFamily(
            "midge_store_operations",
            "store operations committed",
            value=_get(writer, "operations"),
        )
        yield _gauge(
            "midge_store_healthy",
            "1 while the store commits, 0 while it fails",
            int(self.health.check()),
        )
        histogram = _latency_histogram(writer)
        if histogram is not None:
            yield histogram


def subscription_counts(core: Core) -> tuple[int, int]:
    """(plain, shared) subscriptions: counters the routing tables keep."""
    shared = sum(len(group.members) for group in core.delivery.shared.groups.values())
    return core.subscriptions.count, shared


def retained_count(core: Core) -> int:
    """Retained messages, less the broker's own $SYS ones (a walk of that branch only)."""
    own = sum(1 for _ in core.retained.match("$SYS/#"))
    return max(core.retained.count - own, 0)


def _latency_histogram(writer: object) -> HistogramMetricFamily | None:
    """The writer's commit latency histogram, when it keeps one: per-bucket
    counts `commit_latency_buckets` (one per bound, then one beyond the last),
    their upper bounds in seconds, `commit_seconds_total` and `commit_count`."""
    counts = getattr(writer, "commit_latency_buckets", None)
    bounds = _latency_bounds(writer)
    if not isinstance(counts, Sequence) or bounds is None:
        return None
    total = _get(writer, "commit_count")
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        buckets.append((_bound(bound), cumulative))
    buckets.append(("+Inf", max(total, cumulative)))
    return HistogramMetricFamily(
        "midge_store_commit_seconds",
        "time a store commit took",
        buckets=buckets,
        sum_value=float(getattr(writer, "commit_seconds_total", 0.0) or 0.0),
    )


def _latency_bounds(writer: object) -> Sequence[float] | None:
    for source in (writer, sys.modules.get(type(writer).__module__)):
        for name in ("commit_latency_bounds", "COMMIT_LATENCY_BOUNDS"):
            value = getattr(source, name, None)
            if isinstance(value, Sequence) and value:
                return value
    return None


def _bound(value: float) -> str:
    return repr(float(value))


CLUSTER_GAUGES = {
    "remote_routes": "filters other nodes have subscribers for (this node's replica)",
    "local_routes": "filters this node has subscribers for",
    "redis_up": "1 while Redis answers this node, 0 during an outage",
}
CLUSTER_COUNTERS = {
    "forwarded": "messages forwarded to other nodes (one per node)",
    "dropped_offline": "QoS 0 messages for other nodes dropped while Redis was out of reach",
    "received": "entries of this node's inbound stream delivered",
    "claims": "client ids this node took from another node or from none",
    "claims_failed": "claims that failed (the CONNECT was refused, retryable)",
    "released": "client ids this node let go to another node",
    "nodes_taken_over": "dead nodes whose place this node took",
}
BRIDGE_GAUGES = {
    "connected": "1 while the bridge's link to the remote broker is up",
    "queued": "messages waiting for the remote broker (in flight or queued)",
}
BRIDGE_COUNTERS = {
    "sent": "messages handed to the remote broker",
    "received": "messages the remote broker sent here",
    "refused": "messages the receiving side refused (5.0 reason code 0x80 and up)",
    "unrouted": "messages no topic rule took (acknowledged, dropped)",
    "too_large": "messages above the remote's Maximum Packet Size (acknowledged, dropped)",
    "dropped": "messages for the remote dropped at the bridge's queue bound",
    "connections": "times the link came up",
}


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _get(source: object, name: str) -> float:
    value = getattr(source, name, 0)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def make_registry(broker: Broker, health: StoreHealth, http: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker, health, http))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry's metrics in the format `accept` asks for (text 0.0.4 by default)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
