"""Reading a mosquitto.conf as Mosquitto 2 reads it: directives, include_dir, durations.

The translation into Midge's TOML is in `mosquitto_conf_translate`; this
module only knows Mosquitto's file format (mosquitto.conf(5)):

- one directive per line, `name value`; a line whose first character is `#`
  is a comment (a `#` after leading blanks is taken as one too, where
  Mosquitto would refuse the line);
- a string value (a path) is the rest of the line, trimmed; a number or a
  `true` / `false` is its first word;
- `include_dir DIR` in the main file reads every `*.conf` file in DIR, in
  Mosquitto's order (case-sensitive alphabetical, each upper-case letter
  just before its lower-case one: 00.conf, A.conf, a.conf, B.conf), each
  after the other as if it stood there; an included file's own include_dir
  is ignored by Mosquitto. Each file starts with no listener current: its
  listener options before its first `listener` line belong to the default
  listener, as in Mosquitto's parser.

Everything here is sans-IO except `read_conf_dir`, which the caller passes
in (so tests give include_dir folders as dictionaries).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DirectoryReader = Callable[[Path], Sequence[tuple[Path, str]]]
"""Lists the `*.conf` files of an include_dir folder as (path, text), in order."""


@dataclass(frozen=True, slots=True)
class Directive:
    """One line of a mosquitto.conf: `name value`, where it was written."""

    source: str  # the file, as the report names it (mosquitto.conf, conf.d/tls.conf)
    line: int
    name: str
    value: str  # the rest of the line, trimmed; "" when there is none
    part: int = 0  # 0: the main file; n: the n-th file read through include_dir

    @property
    def words(self) -> list[str]:
        return self.value.split()

    @property
    def first(self) -> str:
        """The first word of the value: how Mosquitto reads numbers and booleans."""
        words = self.words
        return words[0] if words else ""

    @property
    def text(self) -> str:
        return f"{self.name} {self.value}".rstrip()

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def parse(text: str, source: str, part: int = 0) -> list[Directive]:
    """The directives of one file, in order; comments and blank lines left out."""
    directives = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        if "\t" in name:  # Mosquitto splits on spaces only; be kind to tabs
            name, _, rest = name.partition("\t")
            value = f"{rest} {value}"
        directives.append(Directive(source, number, name, value.strip(), part))
    return directives


def mosquitto_order(name: str) -> list[tuple[str, bool]]:
    """Sort key of include_dir files: alphabetical, `A` just before `a` (mosquitto.conf(5))."""
    return [(char.lower(), not char.isupper()) for char in name]


def read_conf_dir(folder: Path) -> list[tuple[Path, str]]:
    """The `*.conf` files of `folder` as (path, text), in Mosquitto's order; OSError."""
    files = [item for item in folder.iterdir() if item.name.endswith(".conf") and item.is_file()]
    files.sort(key=lambda item: mosquitto_order(item.name))
    return [(item, item.read_text(encoding="utf-8", errors="replace")) for item in files]


_DURATION = re.compile(r"\+?(\d+)([hdwmy])")
_DURATION_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}


def parse_duration(text: str) -> int | None:
    """Seconds of a persistent_client_expiration value (`2h`, `14d`, `1w`, `2m`, `1y`).

    As Mosquitto counts them: a month is 30 days and a year 365. None for
    anything Mosquitto refuses (no unit, another unit, zero).
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return seconds or None


def display_name(path: Path, main_folder: Path) -> str:
    """How reports name an included file: relative to the main file's folder when inside it."""
    try:
        return str(path.relative_to(main_folder))
    except ValueError:
        return str(path)


# Directives of a bridge (`connection NAME` starts one). Midge has no bridges
# yet: every line of a bridge is reported.
BRIDGE_DIRECTIVES = frozenset(
    """address addresses bridge_alpn bridge_attempt_unsubscribe bridge_bind_address
    bridge_cafile bridge_capath bridge_certfile bridge_ciphers bridge_ciphers_tls1.3
    bridge_identity bridge_insecure bridge_keyfile bridge_max_packet_size
    bridge_max_topic_alias bridge_outgoing_retain bridge_protocol_version bridge_psk
    bridge_receive_maximum bridge_require_ocsp bridge_session_expiry_interval
    bridge_tcp_keepalive bridge_tcp_user_timeout bridge_tls_use_os_certs bridge_tls_version
    cleansession clientid connection idle_timeout keepalive_interval local_cleansession
    local_clientid local_password local_username notification_topic notifications
    notifications_local_only password remote_clientid remote_password remote_username
    restart_timeout round_robin start_type threshold topic try_private username""".split()  # noqa: SIM905
)

# Options of the listener being configured (`listener` starts one; before
# the first, the default listener of `port` and `bind_address`).
LISTENER_DIRECTIVES = frozenset(
    """accept_protocol_versions bind_interface cafile capath certfile ciphers
    ciphers_tls1.3 crlfile dhparamfile http_dir keyfile max_connections max_qos
    max_topic_alias maximum_qos mount_point protocol psk_hint require_certificate
    socket_domain tls_engine tls_engine_kpass_sha1 tls_keyform tls_version
    use_identity_as_username use_subject_as_username use_username_as_clientid""".split()  # noqa: SIM905
)

# Authentication and access control: global, or the current listener's
# with `per_listener_settings true`.
SECURITY_DIRECTIVES = frozenset(
    """acl_file allow_anonymous allow_zero_length_clientid auth_plugin
    auth_plugin_deny_special_chars auto_id_prefix password_file plugin psk_file""".split()  # noqa: SIM905
)
SECURITY_PREFIXES = ("auth_opt_", "plugin_opt_")


def is_security(name: str) -> bool:
    return name in SECURITY_DIRECTIVES or name.startswith(SECURITY_PREFIXES)
