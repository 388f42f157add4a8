"""Broker settings: defaults, a TOML file, validation at start.

Every key is a field of `BrokerConfig`; the TOML file uses the same names at
top level. Unknown keys (with a "did you mean" for a near miss), wrong types
and impossible values stop the start with a `ConfigError` that lists every
problem of the file at once, each naming its key, so a typo never silently
falls back to a default and a file is fixed in one pass, not one error per
start. Paths in a file are relative to the file's folder (a config means the
same wherever the broker is started); command-line values stay relative to
the working directory, as every command's arguments are.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from midge.bridge.config import BridgeConfig, bridges_from_tables
from midge.broker.config_hints import MOSQUITTO_NAMES, mosquitto_hint
from midge.cluster.config import ClusterConfig, cluster_from_table

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
QOS2_DELIVERY_MODES = ("on_publish", "on_release")
STORES = ("sqlite", "memory")
DURABILITY_LEVELS = ("full", "normal", "memory")
SLOW_CONSUMER_POLICIES = ("drop", "disconnect")
TRANSPORTS = ("tcp", "tls", "ws", "wss", "http", "https")
# The HTTP API and /metrics (midge.http): not MQTT listeners.
HTTP_TRANSPORTS = ("http", "https")
# MQTT-only listener keys, refused on an HTTP listener: the HTTP API
# authenticates by API key (api_key_file), not by MQTT login.
_MQTT_ONLY_LISTENER_KEYS = ("allow_anonymous", "use_identity_as_username")
TLS_VERSIONS = ("1.2", "1.3")
SHARED_POLICIES = ("round_robin", "random", "hash_client", "hash_topic")


class ConfigError(ValueError):
    """Configuration values that cannot be used; each problem names its key.

    `problems` holds every one found (a file with three mistakes reports
    three); str() puts each on its own line.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = problems


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One `[[listeners]]` table: an address, a transport and who may connect there."""

    port: int
    host: str = ""  # "": the top-level `host`
    transport: str = "tcp"  # tcp, tls, ws (MQTT over WebSocket), wss (WebSocket over TLS)
    # ... or http / https: the HTTP API and /metrics (midge.http), not MQTT
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
        return self.transport in ("tls", "wss", "https")

    @property
    def http(self) -> bool:
        """The HTTP API's listener (http or https), not an MQTT one."""
        return self.transport in HTTP_TRANSPORTS

    @property
    def websocket(self) -> bool:
        return self.transport in ("ws", "wss")

    @property
    def label(self) -> str:
        """How logs name this listener's protocol stack."""
        return {
            "tcp": "mqtt",
            "tls": "mqtt+tls",
            "ws": "mqtt+ws",
            "wss": "mqtt+wss",
            "http": "http",
            "https": "https",
        }[self.transport]

    def validate(self, key: str) -> None:
        """Raise ConfigError listing every problem of this listener (`key`: its name)."""
        problems = self.problems(key)
        if problems:
            raise ConfigError(*problems)

    def problems(self, key: str) -> list[str]:
        """Every impossible value of this listener, as `config key ...` lines."""
        check = _Checker()
        check(0 <= self.port <= 65535, f"{key}.port", "must be 0..65535")
        check(self.transport in TRANSPORTS, f"{key}.transport", f"must be one of {TRANSPORTS}")
        check(
            self.tls_version in TLS_VERSIONS, f"{key}.tls_version", f"must be one of {TLS_VERSIONS}"
        )
        if self.secure:
            self._tls_problems(key, check)
        else:
            for name in (
                "certfile",
                "keyfile",
                "cafile",
                "require_certificate",
                "use_identity_as_username",
            ):
                check(
                    not getattr(self, name),
                    f"{key}.{name}",
                    f"only applies to transport 'tls', 'wss' or 'https', not {self.transport!r}",
                )
        if self.http:
            for name in _MQTT_ONLY_LISTENER_KEYS:
                check(
                    getattr(self, name) in (None, False),
                    f"{key}.{name}",
                    "an MQTT login setting: an HTTP listener authenticates by API key "
                    "(api_key_file)",
                )
        return check.problems

    def _tls_problems(self, key: str, check: _Checker) -> None:
        check(bool(self.certfile), f"{key}.certfile", "required for a TLS listener")
        check(bool(self.keyfile), f"{key}.keyfile", "required for a TLS listener")
        for name in ("certfile", "keyfile", "cafile"):
            path = getattr(self, name)
            if path:
                check(Path(path).is_file(), f"{key}.{name}", _not_found(path))
        if self.require_certificate or self.use_identity_as_username:
            check(
                bool(self.cafile),
                f"{key}.cafile",
                "required to verify client certificates (require_certificate, "
                "use_identity_as_username)",
            )
        if self.use_identity_as_username:
            check(
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
    # `midge serve`'s log lines: "text", or "json" (one object per line, midge/logs.py).
    log_format: str = "text"
    # The debug packet trace (log_level "debug") shows PUBLISH payloads only when true.
    log_payloads: bool = False
    # Seconds between $SYS/broker/... updates (retained, QoS 0); 0: no $SYS topics.
    sys_interval: int = 10
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
    # Event hooks: "package.module:ClassName" each, made with no arguments and
    # told what happens in the broker (docs/embedding.md).
    hooks: tuple[str, ...] = ()
    # The HTTP API ([[listeners]] with transport "http" or "https"): its API keys
    # (`midge apikey create` writes the file; reloaded on SIGHUP), whether
    # /metrics needs a key too, and the largest request body, in bytes.
    api_key_file: str = ""
    metrics_require_key: bool = False
    http_max_body: int = 1024 * 1024
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
    # Nodes clustered on Redis (`[cluster]`, docs/cluster.md); None: a lone broker
    # with its own store. A node keeps its sessions and retained messages in Redis.
    cluster: ClusterConfig | None = None
    # Connections to other brokers (`[[bridges]]`, docs/bridges.md).
    bridges: tuple[BridgeConfig, ...] = ()

    def validate(self) -> BrokerConfig:
        """This config, or ConfigError listing every impossible value."""
        problems = self.problems()
        if problems:
            raise ConfigError(*problems)
        return self

    def problems(self) -> list[str]:
        """Every impossible value, as `config key ...` lines (none: a usable config)."""
        check = _Checker()
        self._core_problems(check)
        self._limit_problems(check)
        self._delivery_problems(check)
        self._file_problems(check)
        for index, listener in enumerate(self.listeners):
            check.problems.extend(listener.problems(f"listeners[{index}]"))
        if self.cluster is not None:
            check.problems.extend(self.cluster.problems())
        for index, bridge in enumerate(self.bridges):
            check.problems.extend(bridge.problems(f"bridges[{index}]"))
        return check.problems

    def _core_problems(self, check: _Checker) -> None:
        check(0 <= self.port <= 65535, "port", "must be 0..65535")
        check(self.log_level in LOG_LEVELS, "log_level", f"must be one of {LOG_LEVELS}")
        check(self.log_format in LOG_FORMATS, "log_format", f"must be one of {LOG_FORMATS}")
        check(self.sys_interval >= 0, "sys_interval", "must be >= 0 (0: no $SYS topics)")
        check(self.store in STORES, "store", f"must be one of {STORES}")
        check(
            self.durability in DURABILITY_LEVELS,
            "durability",
            f"must be one of {DURABILITY_LEVELS}",
        )
        check(self.persistent_session_expiry >= 0, "persistent_session_expiry", "must be >= 0")
        if self.auth_hook:
            check(_is_class_spec(self.auth_hook), "auth_hook", f"must be {CLASS_SPEC}")
        for spec in self.hooks:
            check(_is_class_spec(spec), "hooks", f"{spec!r} is not {CLASS_SPEC}")

    def _limit_problems(self, check: _Checker) -> None:
        check(self.max_connections >= 0, "max_connections", "must be >= 0")
        check(self.connect_timeout > 0, "connect_timeout", "must be > 0")
        check(self.max_packet_size >= 2, "max_packet_size", "must be >= 2")
        check(0 <= self.max_keepalive <= 65535, "max_keepalive", "must be 0..65535")
        check(1 <= self.max_topic_length <= 65535, "max_topic_length", "must be 1..65535")
        check(self.max_topic_levels >= 1, "max_topic_levels", "must be >= 1")
        check(self.http_max_body >= 1024, "http_max_body", "must be >= 1024")
        check(self.auth_failure_delay >= 0, "auth_failure_delay", "must be >= 0")
        check(
            self.auth_failure_max_delay >= self.auth_failure_delay,
            "auth_failure_max_delay",
            "must be >= auth_failure_delay",
        )

    def _delivery_problems(self, check: _Checker) -> None:
        check(
            1 <= self.max_inflight_messages <= 65535,
            "max_inflight_messages",
            "must be 1..65535",
        )
        check(self.max_queued_messages >= 0, "max_queued_messages", "must be >= 0")
        check(self.max_queued_bytes >= 0, "max_queued_bytes", "must be >= 0")
        check(self.max_write_buffer >= 1024, "max_write_buffer", "must be >= 1024")
        check(self.stall_timeout > 0, "stall_timeout", "must be > 0")
        check(
            self.slow_consumer_policy in SLOW_CONSUMER_POLICIES,
            "slow_consumer_policy",
            f"must be one of {SLOW_CONSUMER_POLICIES}",
        )
        check(
            self.qos2_delivery in QOS2_DELIVERY_MODES,
            "qos2_delivery",
            f"must be one of {QOS2_DELIVERY_MODES}",
        )
        check(0 <= self.max_topic_alias <= 65535, "max_topic_alias", "must be 0..65535")
        check(1 <= self.receive_maximum <= 65535, "receive_maximum", "must be 1..65535")
        check(
            self.shared_subscription_policy in SHARED_POLICIES,
            "shared_subscription_policy",
            f"must be one of {SHARED_POLICIES}",
        )
        check(
            0 <= self.max_session_expiry_interval <= 0xFFFF_FFFF,
            "max_session_expiry_interval",
            "must be 0..4294967295",
        )

    def _file_problems(self, check: _Checker) -> None:
        for key in ("password_file", "scram_file", "acl_file", "api_key_file"):
            path = getattr(self, key)
            if path:
                check(Path(path).is_file(), key, _not_found(path))
        if self.store == "sqlite" and self.cluster is None:
            parent = Path(self.data_dir).absolute().parent
            check(parent.is_dir(), "data_dir", _missing_parent(self.data_dir))

    def override(self, **changes: Any) -> BrokerConfig:
        """A copy with the given (non-None) values: how command-line flags win.

        With MQTT `[[listeners]]`, `host` and `port` move the first of them
        (HTTP listeners are never moved).
        """
        return _checked(self, changes, [])

    def _overridden(self, changes: Mapping[str, Any], problems: list[str]) -> BrokerConfig:
        given = {key: value for key, value in changes.items() if value is not None}
        flags = [given.pop(key, None) for key in ("cluster_url", "node_name", "cluster_prefix")]
        if any(flag is not None for flag in flags):
            given["cluster"] = (self.cluster or ClusterConfig()).with_flags(*flags)
        first = next((i for i, item in enumerate(self.listeners) if not item.http), None)
        if first is not None:
            moved = {key: given.pop(key) for key in ("host", "port") if key in given}
            if moved:
                listeners = list(self.listeners)
                listeners[first] = replace(listeners[first], **moved)
                given["listeners"] = tuple(listeners)
        return _typed(given, "command line", self, problems)

    def effective_listeners(self) -> tuple[ListenerConfig, ...]:
        """Every MQTT listener to open, each with its host filled in. HTTP
        listeners are not MQTT ones: with only those in `[[listeners]]`, the
        implicit MQTT listener of `host` and `port` stays."""
        listeners = self._mqtt_listeners() or (ListenerConfig(self.port),)
        return tuple(replace(item, host=item.host or self.host) for item in listeners)

    def http_listeners(self) -> tuple[ListenerConfig, ...]:
        """The HTTP API's listeners (transport http or https), hosts filled in."""
        return tuple(
            replace(item, host=item.host or self.host) for item in self.listeners if item.http
        )

    def _mqtt_listeners(self) -> tuple[ListenerConfig, ...]:
        return tuple(item for item in self.listeners if not item.http)

    def anonymous_allowed(self, listener: ListenerConfig) -> bool:
        """The listener's own `allow_anonymous`, else the top-level one, else (as in
        Mosquitto 2) yes only on the implicit listener of a config without
        MQTT `[[listeners]]`, and only on a loopback address."""
        if listener.allow_anonymous is not None:
            return listener.allow_anonymous
        if self.allow_anonymous is not None:
            return self.allow_anonymous
        return not self._mqtt_listeners() and is_loopback(listener.host)


CLASS_SPEC = "'package.module:ClassName'"


class _Checker:
    """Collects `config key 'KEY': MESSAGE` lines for the conditions that fail."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def __call__(self, condition: bool, key: str, message: str) -> None:
        if not condition:
            self.problems.append(f"config key {key!r}: {message}")


def _is_class_spec(spec: str) -> bool:
    module, colon, name = spec.partition(":")
    return (
        bool(colon)
        and name.isidentifier()
        and all(part.isidentifier() for part in module.split("."))
    )


def _not_found(path: str) -> str:
    return f"file not found: {Path(path).absolute()}"


def _missing_parent(data_dir: str) -> str:
    path = Path(data_dir).absolute()
    return (
        f"the folder {path.parent} does not exist; midge creates only the last folder "
        f"of the data dir {path}, so a typo in the path is not silently made into a new tree"
    )


def prepare_data_dir(config: BrokerConfig) -> None:
    """Create the data dir's last folder if it is missing (never its parents).

    ConfigError names the missing parent or what stops the folder's use. A
    memory store keeps no file, so it needs no folder.
    """
    if config.store == "memory" or config.cluster is not None:
        return
    path = Path(config.data_dir).absolute()
    if path.is_dir():
        return
    if not path.parent.is_dir():
        raise ConfigError(f"data dir: {_missing_parent(config.data_dir)}")
    try:
        path.mkdir()
    except OSError as exc:
        raise ConfigError(f"cannot use data dir {path}: {exc.strerror}") from None


def load_config(path: str | Path | None, **overrides: Any) -> BrokerConfig:
    """Defaults, updated from the TOML file at `path` when one is given, then by
    `overrides` (command-line values; None: not given), validated once.

    ConfigError lists every problem of the file and the overrides together.
    Relative paths in the file are taken from the file's folder.
    """
    if path is None:
        return _checked(BrokerConfig(), overrides, [])
    file = Path(path).absolute()
    return _from_data(_read_toml(file), str(file), file.parent, overrides)


def config_from_toml(text: str, source: str, folder: Path) -> BrokerConfig:
    """The config of a TOML text, read as a file named `source` in `folder` would be.

    ConfigError lists its problems (`midge config import` checks its output so).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {source} is not valid TOML: {exc}") from None
    return _from_data(data, source, folder.absolute(), {})


def _from_data(
    data: Mapping[str, Any], source: str, folder: Path, overrides: Mapping[str, Any]
) -> BrokerConfig:
    problems: list[str] = []
    config = _typed(data, source, BrokerConfig(), problems, folder=folder)
    return _checked(config, overrides, problems)


def _checked(
    config: BrokerConfig, overrides: Mapping[str, Any], problems: list[str]
) -> BrokerConfig:
    config = config._overridden(overrides, problems)
    problems.extend(config.problems())
    if problems:
        raise ConfigError(*problems)
    return config


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        text = raw.decode("utf-8", errors="replace")
        hint = mosquitto_hint(file, text)
        raise ConfigError(f"config file {file} is not valid TOML: {exc}{hint}") from None


_OPTIONAL_BOOLS = frozenset({"allow_anonymous"})
"""Keys whose default None means "decide per listener"; a value must be a bool."""

_PATH_KEYS = frozenset({"password_file", "scram_file", "acl_file", "data_dir", "api_key_file"})
_LISTENER_PATH_KEYS = frozenset({"certfile", "keyfile", "cafile"})
"""Keys whose relative values in a file are taken from the file's folder."""


def _typed(
    data: Mapping[str, Any],
    source: str,
    base: BrokerConfig,
    problems: list[str],
    folder: Path | None = None,
) -> BrokerConfig:
    """`base` with the well-typed values of `data`; each bad one adds a problem.

    `folder`: the config file's folder, which relative paths are taken from.
    """
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "listeners":
            listeners = (
                value if isinstance(value, tuple) else _listeners(value, source, problems, folder)
            )
            values[key] = listeners
            continue
        if key == "bridges":
            bridges = (
                value
                if isinstance(value, tuple)
                else bridges_from_tables(value, source, problems, folder)
            )
            values[key] = bridges
            continue
        if key == "cluster":
            if isinstance(value, ClusterConfig):
                values[key] = value
            else:
                values[key] = cluster_from_table(value, source, problems)
            continue
        problem = _type_problem(BrokerConfig(), key, value, source, key)
        if problem:
            problems.append(problem)
            continue
        values[key] = tuple(value) if key == "hooks" else _in_folder(folder, key, value)
    return replace(base, **values)


def _in_folder(folder: Path | None, key: str, value: Any) -> Any:
    """A path key's relative value taken from the config file's `folder`."""
    if folder is None or not value or key not in _PATH_KEYS | _LISTENER_PATH_KEYS:
        return value
    return str(folder / value)  # an absolute value stays as it is


def _type_problem(defaults: object, key: str, value: Any, source: str, name: str) -> str | None:
    """Why `value` cannot be `defaults`'s field `key` (None: it can)."""
    known = [item.name for item in fields(defaults)]  # type: ignore[arg-type]
    if key not in known:
        return f"unknown config key {name!r} in {source}{_suggestion(key, known)}"
    default = getattr(defaults, key)
    if isinstance(default, tuple):  # a list of strings in TOML
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return None
        return f"config key {name!r} in {source}: expected a list of strings, got {value!r}"
    expected: type = bool if key in _OPTIONAL_BOOLS else type(default)
    if type(value) is expected or (expected is float and type(value) is int):
        return None
    return (
        f"config key {name!r} in {source}: expected {expected.__name__}, "
        f"got {type(value).__name__} {value!r}"
    )


def _suggestion(key: str, known: Iterable[str]) -> str:
    if key in MOSQUITTO_NAMES:
        return f" (Mosquitto's {key!r}; Midge's is {MOSQUITTO_NAMES[key]!r})"
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listeners(
    value: Any, source: str, problems: list[str], folder: Path | None
) -> tuple[ListenerConfig, ...]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        problems.append(
            f"config key 'listeners' in {source}: expected [[listeners]] tables, got {value!r}"
        )
        return ()
    template = ListenerConfig(port=0)  # typed defaults to compare
    listeners = []
    for index, table in enumerate(value):
        name = f"listeners[{index}]"
        if "port" not in table:
            problems.append(f"config key '{name}.port' in {source}: required")
        # A listener keeps its place (and index) even with bad values, so
        # every later problem names the right table; the error stops the start.
        values: dict[str, Any] = {"port": 0}
        for key, item in table.items():
            problem = _type_problem(template, key, item, source, f"{name}.{key}")
            if problem:
                problems.append(problem)
                continue
            values[key] = _in_folder(folder, key, item)
        listeners.append(ListenerConfig(**values))
    return tuple(listeners)
