"""What a Mosquitto user brings to a Midge config out of habit: a
mosquitto.conf given as the config file (pointed to `midge config import`),
and Mosquitto's names for Midge's keys (in "did you mean" hints)."""

from __future__ import annotations

from pathlib import Path

# Directives that open most mosquitto.conf files: a file whose first
# directives are these (or named *.conf) gets a pointer to the importer.
_MOSQUITTO_WORDS = frozenset(
    """listener port bind_address protocol socket_domain allow_anonymous password_file
    acl_file per_listener_settings persistence persistence_location persistence_file
    autosave_interval log_dest log_type log_timestamp connection_messages include_dir
    user pid_file cafile capath certfile keyfile require_certificate tls_version
    max_connections max_inflight_messages max_queued_messages max_keepalive
    max_packet_size message_size_limit persistent_client_expiration sys_interval
    retain_available set_tcp_nodelay connection plugin auth_plugin""".split()  # noqa: SIM905
)


def mosquitto_hint(file: Path, text: str) -> str:
    """A pointer to `midge config import` when `text` looks like a mosquitto.conf."""
    first = _first_mosquitto_directive(text)
    if first is None and file.suffix != ".conf":
        return ""
    seen = f" (line {first[0]}: {first[1]!r})" if first else ""
    return (
        f"\nit looks like a Mosquitto config{seen}; Midge reads TOML: translate it once "
        f"with `midge config import {file} > midge.toml` and start with "
        '`midge serve --config midge.toml` (docs/configuration.md, "Coming from Mosquitto")'
    )


def _first_mosquitto_directive(text: str) -> tuple[int, str] | None:
    meaningful = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] in _MOSQUITTO_WORDS and "=" not in line:
            return number, line
        meaningful += 1
        if meaningful == 3:  # a TOML file with one odd line is still a TOML file
            return None
    return None


# What a Mosquitto user may write out of habit, and Midge's name for it.
MOSQUITTO_NAMES = {
    "listener": "listeners",
    "bind_address": "host",
    "protocol": "transport",
    "persistence": "store",
    "persistence_location": "data_dir",
    "persistent_client_expiration": "persistent_session_expiry",
    "log_type": "log_level",
    "per_listener_settings": "[[listeners]] with their own allow_anonymous",
    "message_size_limit": "max_packet_size",
}
