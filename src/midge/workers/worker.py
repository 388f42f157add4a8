"""What a process started by `midge serve --workers N` does differently.

The supervisor starts each worker as `midge serve` with the user's own
arguments plus `--workers 1 --node-name NAME-wK` and two hidden flags:

- `--worker-ports P[,P...]`: the ports the supervisor reserved, one per MQTT
  listener in config order; the worker binds them with SO_REUSEPORT;
- `--worker-no-http`: the HTTP API listeners stay with worker 1, so that
  /metrics and the API answer for one node rather than a random one; so do
  the bridges (`[[bridges]]`): one connection per bridge to its remote (N
  would take the one client id there over from each other), and the other
  workers' messages for it reach worker 1 through the cluster.

Its log lines carry its node name (`[edge-w2]`, or a `node` field in JSON),
since every worker writes to the supervisor's standard error. It never
outlives the supervisor: Linux sends it SIGTERM when the supervisor dies
(sockets.py), and a watchdog ends it if that stop does not finish in time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace

from midge.broker.config import BrokerConfig, ConfigError
from midge.logs import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(node)s] %(name)s: %(message)s"
# Seconds a worker has to stop: the supervisor's wait before SIGKILL, and the
# watchdog's once the supervisor is gone.
STOP_TIMEOUT = 20.0
PARENT_CHECK_INTERVAL = 1.0

log = logging.getLogger("midge.workers")


def become_worker(config: BrokerConfig, ports: str, http: bool) -> BrokerConfig:
    """`config` as worker `ports` runs it; its log lines labelled from now on."""
    label_log_lines(config.cluster.node_name if config.cluster is not None else "worker")
    exit_after_parent(os.getppid())
    listening = on_ports(config, _parse_ports(ports))
    if http:
        return listening
    mqtt_only = tuple(item for item in listening.listeners if not item.http)
    return replace(listening, listeners=mqtt_only, bridges=())


def on_ports(config: BrokerConfig, ports: list[int]) -> BrokerConfig:
    """`config` with its MQTT listeners (the implicit one, or the MQTT
    `[[listeners]]` in order) moved to `ports`."""
    indices = [index for index, item in enumerate(config.listeners) if not item.http]
    wanted = len(indices) or 1
    if len(ports) != wanted:
        raise ConfigError(f"--worker-ports: {len(ports)} ports for {wanted} MQTT listeners")
    if not indices:
        return replace(config, port=ports[0])
    listeners = list(config.listeners)
    for index, port in zip(indices, ports, strict=True):
        listeners[index] = replace(listeners[index], port=port)
    return replace(config, listeners=tuple(listeners))


def _parse_ports(text: str) -> list[int]:
    try:
        ports = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--worker-ports: expected PORT[,PORT...], got {text!r}") from None
    if not all(0 < port < 65536 for port in ports):
        raise ConfigError(f"--worker-ports: a port out of range in {text!r}")
    return ports


def exit_after_parent(parent: int) -> None:
    """A daemon thread ends this process STOP_TIMEOUT after `parent` is gone:
    the SIGTERM Linux sends then starts a clean stop, and this bounds a stop
    that hangs, which nobody else would end."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_INTERVAL)
        time.sleep(STOP_TIMEOUT)
        log.error("the supervisor is gone and this worker did not stop within %g s", STOP_TIMEOUT)
        os._exit(1)

    threading.Thread(target=watch, name="midge-supervisor-watch", daemon=True).start()


class _NodeName(logging.Filter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


def label_log_lines(node: str) -> None:
    """Every line of the root logger's handlers names `node`: in the text
    format as `[node]`, in JSON as a `node` field (an extra of the record)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NodeName(node))
        if not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(logging.Formatter(TEXT_FORMAT))
