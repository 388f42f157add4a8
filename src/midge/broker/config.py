"""Broker settings: defaults, a TOML file, validation at start.

Every key is a field of `BrokerConfig`; the TOML file uses the same names at
top level. Unknown keys, wrong types and impossible values stop the start
with a `ConfigError` that names the key, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
QOS2_DELIVERY_MODES = ("on_publish", "on_release")
STORES = ("sqlite", "memory")
DURABILITY_LEVELS = ("full", "normal", "memory")
SLOW_CONSUMER_POLICIES = ("drop", "disconnect")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    data_dir: str = "data"
    log_level: str = "info"
    # Persistence: "sqlite" (data_dir/midge.db) or "memory" (nothing survives).
    store: str = "sqlite"
    # "full": every commit fsynced (survives power loss); "normal": survives a
    # broker crash or kill -9; "memory": acknowledge before the commit (a
    # crash loses what arrived in the last milliseconds).
    durability: str = "normal"
    persistent_session_expiry: int = 0  # seconds offline before a session is deleted; 0: never
    # Authentication: anonymous clients, and an optional password file in
    # Mosquitto's format (user:hash lines, `$6$` or `$7$` hashes).
    allow_anonymous: bool = True
    password_file: str = ""
    # Client ids: when true, only 1-23 characters of 0-9a-zA-Z (MQTT-3.1.3-5).
    strict_client_id: bool = False
    max_connections: int = 0  # 0: no limit; beyond it CONNACK 3 (server unavailable)
    connect_timeout: float = 10.0  # seconds a new socket has to send CONNECT
    max_packet_size: int = 268_435_460  # bytes, whole packet; the protocol's maximum
    # Delivery to each client.
    max_inflight_messages: int = 20  # QoS 1/2 messages sent and not yet acknowledged
    max_queued_messages: int = 1000  # per session, beyond the in-flight window; 0: no limit
    max_queued_bytes: int = 16 * 1024 * 1024  # payload+topic bytes per session; 0: no limit
    queue_qos0_messages: bool = False  # queue QoS 0 for offline persistent sessions
    max_write_buffer: int = 1024 * 1024  # bytes waiting in the socket before it is "slow"
    slow_consumer_policy: str = "drop"  # at a full queue: "drop" the message or "disconnect"
    # QoS 2 from publishers: "on_publish" forwards at PUBLISH and remembers the
    # packet id (the spec's method B); "on_release" stores the message and
    # forwards it at PUBREL (method A).
    qos2_delivery: str = "on_publish"

    def validate(self) -> BrokerConfig:
        _check(0 <= self.port <= 65535, "port", "must be 0..65535")
        _check(self.log_level in LOG_LEVELS, "log_level", f"must be one of {LOG_LEVELS}")
        _check(self.store in STORES, "store", f"must be one of {STORES}")
        _check(
            self.durability in DURABILITY_LEVELS,
            "durability",
            f"must be one of {DURABILITY_LEVELS}",
        )
        _check(
            self.persistent_session_expiry >= 0, "persistent_session_expiry", "must be >= 0"
        )
        _check(self.max_connections >= 0, "max_connections", "must be >= 0")
        _check(self.connect_timeout > 0, "connect_timeout", "must be > 0")
        _check(self.max_packet_size >= 2, "max_packet_size", "must be >= 2")
        _check(
            1 <= self.max_inflight_messages <= 65535,
            "max_inflight_messages",
            "must be 1..65535",
        )
        _check(self.max_queued_messages >= 0, "max_queued_messages", "must be >= 0")
        _check(self.max_queued_bytes >= 0, "max_queued_bytes", "must be >= 0")
        _check(self.max_write_buffer >= 1024, "max_write_buffer", "must be >= 1024")
        _check(
            self.slow_consumer_policy in SLOW_CONSUMER_POLICIES,
            "slow_consumer_policy",
            f"must be one of {SLOW_CONSUMER_POLICIES}",
        )
        _check(
            self.qos2_delivery in QOS2_DELIVERY_MODES,
            "qos2_delivery",
            f"must be one of {QOS2_DELIVERY_MODES}",
        )
        if self.password_file:
            _check(Path(self.password_file).is_file(), "password_file", "file not found")
        return self

    def override(self, **changes: Any) -> BrokerConfig:
        """A copy with the given (non-None) values: how command-line flags win."""
        given = {key: value for key, value in changes.items() if value is not None}
        return _typed(given, "command line", base=self).validate()


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config key {key!r}: {message}")


def load_config(path: str | Path | None) -> BrokerConfig:
    """Defaults, updated from the TOML file at `path` when one is given."""
    if path is None:
        return BrokerConfig().validate()
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return _typed(data, str(path), base=BrokerConfig()).validate()


def _typed(data: dict[str, Any], source: str, base: BrokerConfig) -> BrokerConfig:
    known = {field.name: field for field in fields(BrokerConfig)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown config key {key!r} in {source}")
        expected = type(getattr(base, key))
        if expected is float and type(value) is int:
            continue
        if type(value) is not expected:
            raise ConfigError(
                f"config key {key!r} in {source}: expected {expected.__name__}, "
                f"got {type(value).__name__} {value!r}"
            )
    return replace(base, **data)
