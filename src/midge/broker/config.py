"""Broker settings: defaults, a TOML file, validation at start.

Every key is a field of `BrokerConfig`; the TOML file uses the same names at
top level. Unknown keys, wrong types and impossible values stop the start
with a `ConfigError` that names the key, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import functools
import ipaddress
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
QOS2_DELIVERY_MODES = ("on_publish", "on_release")
STORES = ("sqlite", "memory")
DURABILITY_LEVELS = ("full", "normal", "memory")
SLOW_CONSUMER_POLICIES = ("drop", "disconnect")
TRANSPORTS = ("tcp", "tls", "ws", "wss")
TLS_VERSIONS = ("1.2", "1.3")
SHARED_POLICIES = ("round_robin", "random", "hash_client", "hash_topic")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One `[[listeners]]` table: an address, a transport and who may connect there."""

    port: int
    host: str = ""  # "": the top-level `host`
    transport: str = "tcp"  # tcp, tls, ws (MQTT over WebSocket), wss (WebSocket over TLS)
    # None: the top-level allow_anonymous; if that is unset too, anonymous
    # clients are refused (the implicit listener of a config without
    # [[listeners]] admits them on a loopback address).
    allow_anonymous: bool | None = None
    # TLS (tls and wss): PEM files; cafile verifies client certificates.
    certfile: str = ""
    keyfile: str = ""
    cafile: str = ""
    require_certificate: bool = False  # mutual TLS: no valid client certificate, no connection
    use_identity_as_username: bool = False  # the client certificate's CN is the user name
    tls_version: str = "1.2"  # the oldest TLS version accepted

    @property
    def secure(self) -> bool:
        return self.transport in ("tls", "wss")

    @property
    def websocket(self) -> bool:
        return self.transport in ("ws", "wss")

    @property
    def label(self) -> str:
        """How logs name this listener's protocol stack."""
        return {"tcp": "mqtt", "tls": "mqtt+tls", "ws": "mqtt+ws", "wss": "mqtt+wss"}[
            self.transport
        ]

    def validate(self, key: str) -> None:
        _check(0 <= self.port <= 65535, f"{key}.port", "must be 0..65535")
        _check(self.transport in TRANSPORTS, f"{key}.transport", f"must be one of {TRANSPORTS}")
        _check(
            self.tls_version in TLS_VERSIONS, f"{key}.tls_version", f"must be one of {TLS_VERSIONS}"
        )
        tls_keys = ("certfile", "keyfile", "cafile", "require_certificate")
        if not self.secure:
            for name in (*tls_keys, "use_identity_as_username"):
                _check(
                    not getattr(self, name),
                    f"{key}.{name}",
                    f"only applies to transport 'tls' or 'wss', not {self.transport!r}",
                )
            return
        _check(bool(self.certfile), f"{key}.certfile", "required for a TLS listener")
        _check(bool(self.keyfile), f"{key}.keyfile", "required for a TLS listener")
        for name in ("certfile", "keyfile", "cafile"):
            path = getattr(self, name)
            if path:
                _check(Path(path).is_file(), f"{key}.{name}", f"file not found: {path}")
        if self.require_certificate or self.use_identity_as_username:
            _check(
                bool(self.cafile),
                f"{key}.cafile",
                "required to verify client certificates (require_certificate, "
                "use_identity_as_username)",
            )
        if self.use_identity_as_username:
            _check(
                self.require_certificate,
                f"{key}.require_certificate",
                "must be true when use_identity_as_username is",
            )


@functools.cache  # asked for each CONNECT; a config names only a few hosts
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or "" (every address)


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
    # More listeners (TLS, WebSocket, other addresses): `[[listeners]]` tables.
    # When given they replace the plain TCP listener of `host` and `port`.
    listeners: tuple[ListenerConfig, ...] = field(default=())
    # Authentication: anonymous clients, and an optional password file in
    # Mosquitto's format (user:hash lines, `$6$` or `$7$` hashes). Unset (the
    # default), anonymous clients may connect only to the implicit listener of
    # a config without [[listeners]], on a loopback address (as Mosquitto 2).
    allow_anonymous: bool | None = None
    password_file: str = ""
    # MQTT 5.0 enhanced authentication: SCRAM-SHA-256 against this credentials
    # file (`midge passwd --scram` writes it); "": not offered.
    scram_file: str = ""
    # Authorization: a Mosquitto-format ACL file (with one, whatever it does not
    # grant is denied), and a hook class "package.module:ClassName" asked first.
    acl_file: str = ""
    auth_hook: str = ""
    # Client ids: when true, only 1-23 characters of 0-9a-zA-Z (MQTT-3.1.3-5).
    strict_client_id: bool = False
    max_connections: int = 0  # 0: no limit; beyond it CONNACK 3 (server unavailable)
    connect_timeout: float = 10.0  # seconds a new socket has to send CONNECT
    max_packet_size: int = 268_435_460  # bytes, whole packet; the protocol's maximum
    # Keep-alive above this (or 0, "never") is refused with CONNACK 2, as Mosquitto
    # does: 3.1.1 cannot tell a client to use another value. 0: no limit.
    max_keepalive: int = 0
    max_topic_length: int = 65535  # characters in a topic name or filter
    max_topic_levels: int = 200  # levels in a topic name or filter (Mosquitto's fixed limit)
    # After a failed login the next CONNACK to the same address waits this long,
    # doubling per failure up to auth_failure_max_delay; 0 turns it off.
    auth_failure_delay: float = 0.5
    auth_failure_max_delay: float = 10.0
    # Delivery to each client.
    max_inflight_messages: int = 20  # QoS 1/2 messages sent and not yet acknowledged
    max_queued_messages: int = 1000  # per session, beyond the in-flight window; 0: no limit
    max_queued_bytes: int = 16 * 1024 * 1024  # payload+topic bytes per session; 0: no limit
    queue_qos0_messages: bool = False  # queue QoS 0 for offline persistent sessions
    max_write_buffer: int = 1024 * 1024  # bytes waiting in the socket before it is "slow"
    # A full queue holds publishers back while its client acknowledges; after
    # stall_timeout seconds without an acknowledgement the client is stalled
    # and slow_consumer_policy applies: "drop" the message or "disconnect".
    stall_timeout: float = 5.0
    slow_consumer_policy: str = "drop"
    # QoS 2 from publishers: "on_publish" forwards at PUBLISH and remembers the
    # packet id (the spec's method B); "on_release" stores the message and
    # forwards it at PUBREL (method A).
    qos2_delivery: str = "on_publish"
    # MQTT 5.0 (docs/mqtt5.md). Topic aliases a client may set up on a connection
    # (0: none); QoS 1/2 messages a client may have unacknowledged (its Receive
    # Maximum; 65535 is the protocol's and is not announced); the longest
    # Session Expiry Interval granted, 0: whatever the client asks.
    max_topic_alias: int = 10
    receive_maximum: int = 65535
    max_session_expiry_interval: int = 0
    # A PUBLISH whose Payload Format Indicator says UTF-8 is checked, and refused
    # with reason code 0x99 when it is not.
    validate_utf8_payloads: bool = True
    # Response Information given to 5.0 clients that request it: a topic prefix
    # they may use for responses ("" : none is given). "{client_id}" is replaced.
    response_information: str = ""
    # Which member of a shared subscription ($share/group/filter) gets a message:
    # "round_robin", "random", "hash_client" (by publisher) or "hash_topic".
    shared_subscription_policy: str = "round_robin"

    def validate(self) -> BrokerConfig:
        _check(0 <= self.port <= 65535, "port", "must be 0..65535")
        _check(self.log_level in LOG_LEVELS, "log_level", f"must be one of {LOG_LEVELS}")
        _check(self.store in STORES, "store", f"must be one of {STORES}")
        _check(
            self.durability in DURABILITY_LEVELS,
            "durability",
            f"must be one of {DURABILITY_LEVELS}",
        )
        _check(self.persistent_session_expiry >= 0, "persistent_session_expiry", "must be >= 0")
        _check(self.max_connections >= 0, "max_connections", "must be >= 0")
        _check(self.connect_timeout > 0, "connect_timeout", "must be > 0")
        _check(self.max_packet_size >= 2, "max_packet_size", "must be >= 2")
        _check(0 <= self.max_keepalive <= 65535, "max_keepalive", "must be 0..65535")
        _check(1 <= self.max_topic_length <= 65535, "max_topic_length", "must be 1..65535")
        _check(self.max_topic_levels >= 1, "max_topic_levels", "must be >= 1")
        _check(self.auth_failure_delay >= 0, "auth_failure_delay", "must be >= 0")
        _check(
            self.auth_failure_max_delay >= self.auth_failure_delay,
            "auth_failure_max_delay",
            "must be >= auth_failure_delay",
        )
        for index, listener in enumerate(self.listeners):
            listener.validate(f"listeners[{index}]")
        _check(
            1 <= self.max_inflight_messages <= 65535,
            "max_inflight_messages",
            "must be 1..65535",
        )
        _check(self.max_queued_messages >= 0, "max_queued_messages", "must be >= 0")
        _check(self.max_queued_bytes >= 0, "max_queued_bytes", "must be >= 0")
        _check(self.max_write_buffer >= 1024, "max_write_buffer", "must be >= 1024")
        _check(self.stall_timeout > 0, "stall_timeout", "must be > 0")
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
        _check(0 <= self.max_topic_alias <= 65535, "max_topic_alias", "must be 0..65535")
        _check(1 <= self.receive_maximum <= 65535, "receive_maximum", "must be 1..65535")
        _check(
            self.shared_subscription_policy in SHARED_POLICIES,
            "shared_subscription_policy",
            f"must be one of {SHARED_POLICIES}",
        )
        _check(
            0 <= self.max_session_expiry_interval <= 0xFFFF_FFFF,
            "max_session_expiry_interval",
            "must be 0..4294967295",
        )
        if self.password_file:
            _check(Path(self.password_file).is_file(), "password_file", "file not found")
        if self.scram_file:
            _check(Path(self.scram_file).is_file(), "scram_file", "file not found")
        if self.acl_file:
            _check(Path(self.acl_file).is_file(), "acl_file", "file not found")
        if self.auth_hook:
            _check(":" in self.auth_hook, "auth_hook", "must be 'package.module:ClassName'")
        return self

    def override(self, **changes: Any) -> BrokerConfig:
        """A copy with the given (non-None) values: how command-line flags win.

        With `[[listeners]]`, `host` and `port` move the first listener.
        """
        given = {key: value for key, value in changes.items() if value is not None}
        if self.listeners:
            moved = {key: given.pop(key) for key in ("host", "port") if key in given}
            if moved:
                first = replace(self.listeners[0], **moved)
                given["listeners"] = (first, *self.listeners[1:])
        return _typed(given, "command line", base=self).validate()

    def effective_listeners(self) -> tuple[ListenerConfig, ...]:
        """Every listener to open, each with its host filled in."""
        listeners = self.listeners or (ListenerConfig(self.port),)
        return tuple(replace(item, host=item.host or self.host) for item in listeners)

    def anonymous_allowed(self, listener: ListenerConfig) -> bool:
        """The listener's own `allow_anonymous`, else the top-level one, else (as in
        Mosquitto 2) yes only on the implicit listener of a config without
        `[[listeners]]`, and only on a loopback address."""
        if listener.allow_anonymous is not None:
            return listener.allow_anonymous
        if self.allow_anonymous is not None:
            return self.allow_anonymous
        return not self.listeners and is_loopback(listener.host)


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


_OPTIONAL_BOOLS = frozenset({"allow_anonymous"})
"""Keys whose default None means "decide per listener"; a value must be a bool."""


def _typed(data: dict[str, Any], source: str, base: BrokerConfig) -> BrokerConfig:
    values = dict(data)
    for key, value in data.items():
        if key == "listeners":
            if not isinstance(value, tuple):
                values[key] = _listeners(value, source)
            continue
        _check_type(BrokerConfig(), key, value, source, key)
    return replace(base, **values)


def _check_type(defaults: object, key: str, value: Any, source: str, name: str) -> None:
    """Raise ConfigError unless `value` has the type of `defaults`'s field `key`."""
    if key not in {item.name for item in fields(defaults)}:  # type: ignore[arg-type]
        raise ConfigError(f"unknown config key {name!r} in {source}")
    default = getattr(defaults, key)
    expected: type = bool if key in _OPTIONAL_BOOLS else type(default)
    if expected is float and type(value) is int:
        return
    if type(value) is not expected:
        raise ConfigError(
            f"config key {name!r} in {source}: expected {expected.__name__}, "
            f"got {type(value).__name__} {value!r}"
        )


def _listeners(value: Any, source: str) -> tuple[ListenerConfig, ...]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(
            f"config key 'listeners' in {source}: expected [[listeners]] tables, got {value!r}"
        )
    listeners = []
    for index, table in enumerate(value):
        name = f"listeners[{index}]"
        if "port" not in table:
            raise ConfigError(f"config key '{name}.port' in {source}: required")
        template = ListenerConfig(port=0)  # typed defaults to compare
        for key, item in table.items():
            _check_type(template, key, item, source, f"{name}.{key}")
        listeners.append(ListenerConfig(**table))
    return tuple(listeners)
