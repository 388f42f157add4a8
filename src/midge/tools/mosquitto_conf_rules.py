"""How each global mosquitto.conf directive maps to Midge: a table of small rules.

A rule takes the directive and returns the Midge keys it sets, with a note
for the TOML comment (no keys: Midge already behaves that way), or raises
`Skip` saying why it cannot be translated. The listener options, the
security options (which may be per listener), persistence and logging are
translated together in `mosquitto_conf_translate`, because Midge's key
depends on several lines there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from midge.tools.mosquitto_conf import Directive, parse_duration

Result = tuple[dict[str, Any], str]
Rule = Callable[[Directive], Result]


class Skip(Exception):
    """A directive that cannot be translated; the message says why."""


def integer(directive: Directive) -> int:
    """A number as Mosquitto reads it: the first word."""
    try:
        return int(directive.first)
    except ValueError:
        raise Skip(f"{directive.first!r} is not a number (Mosquitto would refuse it)") from None


def flag(directive: Directive) -> bool:
    if directive.first in ("true", "false"):
        return directive.first == "true"
    raise Skip(f"expects true or false, not {directive.first!r} (Mosquitto would refuse it)")


def _inflight(directive: Directive) -> Result:
    count = integer(directive)
    if count <= 0 or count >= 65535:  # Mosquitto: 0 (or 65535) means no limit
        return {"max_inflight_messages": 65535}, "no limit in Mosquitto: Midge's largest window"
    return {"max_inflight_messages": count}, ""


def _count(key: str) -> Rule:
    def rule(directive: Directive) -> Result:
        return {key: max(integer(directive), 0)}, ""  # 0: no limit in both

    return rule


def _keepalive(directive: Directive) -> Result:
    seconds = integer(directive)
    if not 0 <= seconds <= 65535:
        raise Skip("must be 0..65535 (Mosquitto would refuse it)")
    return {"max_keepalive": seconds}, ""


def _packet_size(directive: Directive) -> Result:
    size = integer(directive)
    if size < 20:
        raise Skip("Mosquitto refuses values below 20")
    return {"max_packet_size": size}, ""


def _expiration(directive: Directive) -> Result:
    seconds = parse_duration(directive.first)
    if seconds is None:
        raise Skip("not a duration: a number and one of h d w m y, as 14d (Mosquitto refuses it)")
    return (
        {"persistent_session_expiry": seconds},
        f"{directive.first} in seconds (a month is 30 days, a year 365, as in Mosquitto)",
    )


def _boolean(key: str) -> Rule:
    def rule(directive: Directive) -> Result:
        return {key: flag(directive)}, ""

    return rule


def _same_when(value: bool, same: str, differs: str) -> Rule:
    """A switch Midge has no key for: translated when Midge already behaves so."""

    def rule(directive: Directive) -> Result:
        if flag(directive) is value:
            return {}, same
        raise Skip(differs)

    return rule


def _same_when_zero(differs: str) -> Rule:
    def rule(directive: Directive) -> Result:
        if integer(directive) == 0:
            return {}, "0: no limit, as in Midge"
        raise Skip(differs)

    return rule


def _never(why: str) -> Rule:
    def rule(directive: Directive) -> Result:
        raise Skip(why)

    return rule


def _ignored(why: str) -> Rule:
    def rule(directive: Directive) -> Result:
        return {}, why

    return rule


PLUGINS = (
    "Mosquitto plugins do not load in Midge; a Python class can do a plugin's work "
    "(auth_hook, or hooks: docs/configuration.md)"
)
NO_PSK = "Midge has no TLS-PSK; use certificates (certfile, keyfile)"

GLOBAL_RULES: dict[str, Rule] = {
    "max_inflight_messages": _inflight,
    "max_queued_messages": _count("max_queued_messages"),
    "max_queued_bytes": _count("max_queued_bytes"),
    "max_keepalive": _keepalive,
    "sys_interval": _count("sys_interval"),  # seconds; 0 turns $SYS off in both
    "max_packet_size": _packet_size,
    "persistent_client_expiration": _expiration,
    "queue_qos0_messages": _boolean("queue_qos0_messages"),
    "retain_available": _same_when(
        True,
        "Midge keeps retained messages",
        "Midge always keeps retained messages; it has no switch to refuse them",
    ),
    "allow_duplicate_messages": _ignored(
        "Midge sends a client one copy of a message its overlapping subscriptions "
        "match, at the highest QoS granted"
    ),
    "upgrade_outgoing_qos": _same_when(
        False,
        "Midge delivers at the lower of the message's and the subscription's QoS",
        "Midge never raises a message's QoS to the subscription's (MQTT forbids it)",
    ),
    "set_tcp_nodelay": _same_when(
        True,
        "Midge always sets TCP_NODELAY",
        "Midge always sets TCP_NODELAY (Nagle's algorithm off) and cannot turn it back on",
    ),
    "connection_messages": _same_when(
        True,
        "Midge logs each connection and disconnection at level info",
        'Midge logs connections at level info; log_level = "warning" hides them '
        "(with every other info line)",
    ),
    "log_timestamp": _same_when(
        True,
        "Midge's log lines start with a timestamp",
        "Midge's log lines always start with a timestamp",
    ),
    "allow_zero_length_clientid": _same_when(
        True,
        "Midge gives a client without an id one of its own (clean session)",
        "Midge always accepts an empty client id with clean session, as MQTT 3.1.1 allows; "
        "strict_client_id = true refuses it but also ids beyond 23 letters and digits",
    ),
    "message_size_limit": _same_when_zero(
        "no equivalent: max_packet_size is the nearest, but it closes the connection where "
        "Mosquitto drops the message and completes its QoS flow"
    ),
    "max_inflight_bytes": _same_when_zero(
        "Midge bounds in-flight messages by count only (max_inflight_messages)"
    ),
    "retry_interval": _ignored("Mosquitto 2 ignores it (the option is gone)"),
    "auto_id_prefix": _never("Midge names clients without an id itself, with no prefix setting"),
    "memory_limit": _never(
        "Midge has no heap limit: bound its queues (max_queued_messages, max_queued_bytes), "
        "or its process (systemd MemoryMax=)"
    ),
    "autosave_interval": _never(
        "Midge writes each change to its store as it happens (see `durability`): "
        "there is no save interval"
    ),
    "autosave_on_changes": _never(
        "Midge writes each change to its store as it happens (see `durability`)"
    ),
    "check_retain_source": _never("no equivalent key in Midge"),
    "clientid_prefixes": _never("no equivalent in Midge; an auth_hook can refuse client ids"),
    "log_facility": _never(
        "Midge logs to standard error; under systemd the journal keeps it (contrib/systemd)"
    ),
    "log_timestamp_format": _never("Midge's timestamp format is fixed (2024-01-31 12:00:00,123)"),
    "pid_file": _never(
        "Midge writes no PID file; while it runs its PID is in data_dir/midge.lock, "
        "and systemd tracks it (contrib/systemd)"
    ),
    "user": _never(
        "Midge does not switch users: start it as the user it should run as "
        "(systemd: User= or DynamicUser=, see contrib/systemd)"
    ),
    "websockets_log_level": _never("Midge's WebSocket listeners log through log_level"),
    "websockets_headers_size": _never(
        "no equivalent: Midge's WebSocket listeners use the websockets library's header limits"
    ),
    "psk_file": _never(NO_PSK),
    "auth_plugin": _never(PLUGINS),
    "plugin": _never(PLUGINS),
    "global_plugin": _never(PLUGINS),
    "auth_plugin_deny_special_chars": _never(PLUGINS),
}


def global_rule(name: str) -> Rule:
    """The rule of a global directive; unknown names are reported as such."""
    if name in GLOBAL_RULES:
        return GLOBAL_RULES[name]
    if name.startswith(("auth_opt_", "plugin_opt_")):
        return _never(PLUGINS)
    return _never("not a Mosquitto 2.0 directive (Mosquitto would refuse to start)")


# Listener options Midge has no key for, and why. (Translated ones are in
# mosquitto_conf_translate.)
LISTENER_REASONS = {
    "capath": "Midge takes the CA certificates from one file: concatenate the folder's PEM "
    "files into one and give it as cafile",
    "ciphers": "Midge uses Python's ssl defaults (forward-secret ciphers first)",
    "ciphers_tls1.3": "Midge uses Python's ssl defaults (forward-secret ciphers first)",
    "crlfile": "Midge does not check certificate revocation lists",
    "dhparamfile": "Midge's TLS uses ECDHE, which needs no DH parameters",
    "psk_hint": NO_PSK,
    "tls_engine": "no OpenSSL engines in Midge: the key must be a PEM file",
    "tls_engine_kpass_sha1": "no OpenSSL engines in Midge: the key must be a PEM file",
    "tls_keyform": "no OpenSSL engines in Midge: the key must be a PEM file",
    "mount_point": "Midge has no mount points: clients of this listener see the whole topic "
    "tree (an ACL file can confine them)",
    "bind_interface": "Midge binds addresses, not interfaces: give the interface's address "
    "in the listener line",
    "http_dir": "Midge's WebSocket listeners serve MQTT only, no files",
    "accept_protocol_versions": "Midge serves MQTT 3.1, 3.1.1 and 5.0 on every listener",
    "use_subject_as_username": "Midge can use the certificate's CN (use_identity_as_username), "
    "not its whole subject",
    "use_username_as_clientid": "no equivalent in Midge",
    "max_qos": "Midge grants QoS 2 on every listener",
    "maximum_qos": "Midge grants QoS 2 on every listener",
}

# Listener switches whose default Midge already follows: translated when so.
LISTENER_DEFAULTS = {
    "use_subject_as_username": "false",
    "use_username_as_clientid": "false",
    "max_qos": "2",
    "maximum_qos": "2",
}

# Bridge options Midge has no key for, and why. (Translated ones are in
# mosquitto_conf_bridges.)
NO_BRIDGE_PSK = "Midge's bridges have no TLS-PSK; use certificates (bridge_cafile, bridge_certfile)"
_BRIDGE_CIPHERS = "Midge's bridges use Python's ssl defaults (forward-secret ciphers first)"
BRIDGE_REASONS = {
    "bridge_alpn": "Midge's bridges send no ALPN protocol name",
    "bridge_ciphers": _BRIDGE_CIPHERS,
    "bridge_ciphers_tls1.3": _BRIDGE_CIPHERS,
    "bridge_bind_address": "Midge's bridges connect from the address the system chooses: "
    "there is no key to bind another",
    "bridge_tcp_keepalive": "Midge sets no TCP keepalive on a bridge: its MQTT keepalive "
    "(keepalive_interval) finds a dead link",
    "bridge_tcp_user_timeout": "Midge sets no TCP user timeout on a bridge: its MQTT "
    "keepalive (keepalive_interval) finds a dead link",
    "bridge_receive_maximum": "no key: Midge's bridge asks the remote for no Receive Maximum "
    "(max_inflight bounds only what goes out)",
}

# Bridge options translated (as a note) when their value says what Midge does anyway.
BRIDGE_DEFAULTS = {
    "bridge_require_ocsp": ("false", "Midge's bridges do not check OCSP"),
    "bridge_max_packet_size": ("0", "Midge's bridges do not bound the size of what they send"),
    "bridge_max_topic_alias": ("0", "Midge's bridges use no topic aliases"),
}
