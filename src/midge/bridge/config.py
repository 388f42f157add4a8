"""The `[[bridges]]` tables: a connection from this broker to another one.

    [[bridges]]
    name = "cloud"
    addresses = ["mqtt.example.com:8883", "backup.example.com:8883"]
    protocol = "5"                       # or "3.1.1"
    username = "edge-1"
    password = "..."
    tls = true                           # ca_file, cert_file, key_file, insecure
    topics = [
        { pattern = "sensors/#", direction = "out", qos = 1, remote_prefix = "site1/" },
        { pattern = "commands/#", direction = "in", qos = 1 },
    ]

A topic rule is Mosquitto's `topic PATTERN DIRECTION QOS LOCAL_PREFIX
REMOTE_PREFIX`: the local topic is `local_prefix + pattern`, the remote one
`remote_prefix + pattern`. `midge config import` turns a mosquitto.conf
`connection` block into such a table (tools/mosquitto_conf_bridges.py).
docs/bridges.md says what each key does.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from midge.config_tables import typed_fields
from midge.protocol.topics import is_valid_topic_filter

DIRECTIONS: Final = ("in", "out", "both")
PROTOCOLS: Final = ("3.1.1", "5")
START_TYPES: Final = ("automatic", "lazy", "once")
TRANSPORTS: Final = ("tcp", "ws")  # as [[listeners]] say it; TLS is `tls`
QUEUE_POLICIES: Final = ("drop_new", "drop_oldest")
NOTIFICATION_TOPIC: Final = "$SYS/broker/connection/{name}/state"
# A bridge's own session in this broker is "$bridge/<name>": no network client
# may take that id (broker/connect.py), nor its messages for the remote.
BRIDGE_CLIENT_PREFIX: Final = "$bridge/"
_PATH_KEYS = ("ca_file", "cert_file", "key_file")
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True, slots=True)
class TopicRule:
    """What crosses the bridge: `pattern` (a filter) in one direction or both."""

    pattern: str = "#"
    direction: str = "out"
    qos: int = 0
    local_prefix: str = ""
    remote_prefix: str = ""

    @property
    def local_filter(self) -> str:
        return self.local_prefix + self.pattern

    @property
    def remote_filter(self) -> str:
        return self.remote_prefix + self.pattern

    @property
    def outgoing(self) -> bool:
        return self.direction in ("out", "both")

    @property
    def incoming(self) -> bool:
        return self.direction in ("in", "both")

    def problems(self, key: str) -> list[str]:
        found = []
        if self.direction not in DIRECTIONS:
            found.append(f"config key '{key}.direction': must be one of {DIRECTIONS}")
        if self.qos not in (0, 1, 2):
            found.append(f"config key '{key}.qos': must be 0, 1 or 2")
        for side, prefix in (("local", self.local_prefix), ("remote", self.remote_prefix)):
            if "+" in prefix or "#" in prefix:
                found.append(f"config key '{key}.{side}_prefix': no wildcards in a prefix")
        for side, value in (("local", self.local_filter), ("remote", self.remote_filter)):
            if not is_valid_topic_filter(value):
                found.append(
                    f"config key '{key}': the {side} filter {value!r} "
                    f"({side}_prefix + pattern) is not a valid topic filter"
                )
        return found


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    name: str = ""
    # "host:port" (port 1883 when left out; "[::1]:1883" for IPv6): tried in
    # turn when one cannot be reached.
    addresses: tuple[str, ...] = ()
    # False: every attempt starts again at the first address (the primary),
    # and a link to another one ends once the primary answers again (tried
    # every primary_retry seconds); True: the next attempt goes on from the
    # address after the last one.
    round_robin: bool = False
    primary_retry: float = 20.0
    client_id: str = ""  # "": "<host name>.<name>", as Mosquitto names its bridges
    username: str = ""
    password: str = ""
    protocol: str = "3.1.1"
    clean_session: bool = False
    # 5.0: how long the remote keeps the bridge's session while the link is down.
    session_expiry: int = 86400
    keepalive: int = 60
    # 3.1.1: tell the remote this is a bridge (protocol level 0x84), as
    # Mosquitto does; retried without when the remote refuses it.
    try_private: bool = True
    transport: str = "tcp"
    path: str = "/mqtt"  # the WebSocket path
    tls: bool = False
    ca_file: str = ""  # "": the system's CA certificates
    cert_file: str = ""
    key_file: str = ""
    insecure: bool = False  # True: the remote's certificate names are not checked
    topics: tuple[TopicRule, ...] = ()
    # False: what goes out is never retained at the remote.
    outgoing_retain: bool = True
    notifications: bool = True
    notification_topic: str = ""  # "": $SYS/broker/connection/<name>/state
    # Also at the remote (Mosquitto's notifications_local_only false): "1"
    # retained once up, and a will "0" the remote publishes if the link dies.
    notifications_remote: bool = False
    start: str = "automatic"
    threshold: int = 10  # lazy: queued messages that start the link
    idle_timeout: float = 60.0  # lazy: seconds without traffic that stop it
    restart_delay: float = 5.0  # seconds before the first retry, with jitter
    restart_delay_max: float = 30.0  # the longest wait between attempts
    connect_timeout: float = 10.0
    max_inflight: int = 20  # QoS 1/2 messages in flight to the remote
    # Messages kept for the remote while the link is down or slow; 0: no bound.
    queue_limit: int = 100_000
    queue_full: str = "drop_new"

    @property
    def remote_client_id(self) -> str:
        return self.client_id or f"{socket.gethostname().split('.')[0]}.{self.name}"

    @property
    def local_client_id(self) -> str:
        """The bridge's own session in this broker: what waits for the remote."""
        return BRIDGE_CLIENT_PREFIX + self.name

    @property
    def state_topic(self) -> str:
        return self.notification_topic or NOTIFICATION_TOPIC.format(name=self.name)

    @property
    def remote_state_topic(self) -> str:
        """The state topic at the remote: Mosquitto names it by the client id there."""
        return self.notification_topic or NOTIFICATION_TOPIC.format(name=self.remote_client_id)

    def problems(self, key: str) -> list[str]:
        found: list[str] = []

        def check(condition: bool, name: str, message: str) -> None:
            if not condition:
                found.append(f"config key '{key}.{name}': {message}")

        check(_is_name(self.name), "name", "required: letters, digits, '-', '_' and '.' only")
        check(bool(self.addresses), "addresses", 'required: ["host:port", ...]')
        for address in self.addresses:
            try:
                split_address(address)
            except ValueError as exc:
                check(False, "addresses", str(exc))
        check(self.protocol in PROTOCOLS, "protocol", f"must be one of {PROTOCOLS}")
        check(self.transport in TRANSPORTS, "transport", f"must be one of {TRANSPORTS}")
        check(self.path.startswith("/"), "path", "must start with '/'")
        check(self.start in START_TYPES, "start", f"must be one of {START_TYPES}")
        check(self.queue_full in QUEUE_POLICIES, "queue_full", f"must be one of {QUEUE_POLICIES}")
        check(0 <= self.keepalive <= 65535, "keepalive", "must be 0..65535")
        check(0 <= self.session_expiry <= 0xFFFFFFFF, "session_expiry", "must be 0..4294967295")
        check(1 <= self.max_inflight <= 65535, "max_inflight", "must be 1..65535")
        check(self.queue_limit >= 0, "queue_limit", "must be >= 0 (0: no bound)")
        check(self.threshold >= 1, "threshold", "must be >= 1")
        check(self.idle_timeout > 0, "idle_timeout", "must be > 0")
        check(self.restart_delay > 0, "restart_delay", "must be > 0")
        check(
            self.restart_delay_max >= self.restart_delay,
            "restart_delay_max",
            "must be at least restart_delay",
        )
        check(self.connect_timeout > 0, "connect_timeout", "must be > 0")
        check(self.primary_retry > 0, "primary_retry", "must be > 0")
        check(
            bool(self.username) or not self.password or self.protocol == "5",
            "password",
            "MQTT 3.1.1 sends a password only with a username",
        )
        check(bool(self.topics), "topics", "required: at least one topic rule")
        check(
            bool(self.cert_file) == bool(self.key_file),
            "cert_file",
            "cert_file and key_file go together",
        )
        check(
            self.tls or not (self.ca_file or self.cert_file or self.insecure),
            "tls",
            "ca_file, cert_file and insecure need tls = true",
        )
        check(
            is_valid_topic_filter(self.state_topic) and "+" not in self.state_topic,
            "notification_topic",
            "must be a topic name",
        )
        for index, rule in enumerate(self.topics):
            found.extend(rule.problems(f"{key}.topics[{index}]"))
        return found


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" -> (host, port); the port is 1883 when left out."""
    host, port = address, "1883"
    if address.startswith("["):  # [IPv6]:port
        end = address.find("]")
        host, rest = address[1:end], address[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"{address!r} is not host:port")
        port = rest[1:] or "1883"
    elif ":" in address:
        host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port (port 1..65535)")
    return host, int(port)


def _is_name(text: str) -> bool:
    return bool(text) and set(text) <= _NAME_CHARACTERS


def bridges_from_tables(
    value: Any, source: str, problems: list[str], folder: Path | None = None
) -> tuple[BridgeConfig, ...]:
    """The `[[bridges]]` tables; each bad key adds a problem. Relative file
    paths are taken from `folder`, the config file's."""
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        problems.append(f"config key 'bridges' in {source}: expected [[bridges]] tables")
        return ()
    bridges = []
    for index, table in enumerate(value):
        values = typed_fields(
            table, BridgeConfig(), f"bridges[{index}]", source, problems, raw=("topics",)
        )
        rules = values.pop("topics", [])
        topics = _rules(rules, f"bridges[{index}].topics", source, problems)
        for name in _PATH_KEYS:
            if folder is not None and values.get(name):
                values[name] = str(folder / values[name])  # an absolute one stays as it is
        bridges.append(replace(BridgeConfig(), topics=topics, **values))
    names = [bridge.name for bridge in bridges]
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"config key 'bridges' in {source}: two bridges are named {name!r}")
    return tuple(bridges)


def _rules(value: Any, key: str, source: str, problems: list[str]) -> tuple[TopicRule, ...]:
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        problems.append(
            f"config key {key!r} in {source}: expected a list of tables "
            '({ pattern = "a/#", direction = "out", qos = 1 })'
        )
        return ()
    return tuple(
        replace(TopicRule(), **typed_fields(rule, TopicRule(), f"{key}[{index}]", source, problems))
        for index, rule in enumerate(value)
    )
