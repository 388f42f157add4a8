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

The values of a bridge's `address` and `topic` lines are read here too
(`parse_bridge_address`, `parse_bridge_topic`), as Mosquitto reads them.

Everything here is sans-IO except `read_conf_dir`, which the caller passes
in (so tests give include_dir folders as dictionaries).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from midge.bridge.config import DIRECTIONS, TopicRule
from midge.protocol.topics import is_valid_topic_filter

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


# Directives of a bridge (`connection NAME` starts one; mosquitto_conf_bridges
# translates them).
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


# ------------------------------------------------------------ bridge values

_EMPTY = '""'  # Mosquitto's place marker for an empty pattern or prefix
_REFUSED = "(Mosquitto would refuse to start)"


def until_comment(words: list[str]) -> list[str]:
    """The words before the first one starting with '#', where Mosquitto stops
    reading an address list or a topic line's options."""
    for index, word in enumerate(words):
        if word.startswith("#"):
            return words[:index]
    return words


def parse_bridge_address(word: str) -> tuple[str, int]:
    """`host[:port]` of an `address` line: the port after the last ':' (so an IPv6
    address needs one), 1883 when there is none; ValueError says why not."""
    host, colon, port = word.rpartition(":")
    if not colon:
        host, port = word, "1883"
    if not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{word!r}: not host:port with a port 1..65535 {_REFUSED}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def parse_bridge_topic(words: list[str]) -> TopicRule:
    """`topic PATTERN [DIRECTION [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]`, as Mosquitto 2
    reads it: direction out, QoS 0 and empty prefixes by default, `""` an empty
    pattern or prefix, a word starting with '#' after the direction the end of
    the line; ValueError says why Mosquitto would refuse it."""
    if not words:
        raise ValueError(f"no pattern {_REFUSED}")
    pattern = "" if words[0] == _EMPTY else words[0]
    direction = words[1].lower() if len(words) > 1 else "out"  # Mosquitto ignores the case
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {words[1]!r} is not in, out or both {_REFUSED}")
    options = until_comment(words[2:5])
    qos = _bridge_qos(options[0]) if options else 0
    local = _bridge_prefix(options[1], "local") if len(options) > 1 else ""
    remote = _bridge_prefix(options[2], "remote") if len(options) > 2 else ""
    if not pattern and not (local and remote):
        raise ValueError(f'an empty pattern ("") needs both prefixes {_REFUSED}')
    for side, value in (("local", local + pattern), ("remote", remote + pattern)):
        if not is_valid_topic_filter(value):
            raise ValueError(f"the {side} filter {value!r} (prefix + pattern) is not valid")
    return TopicRule(pattern, direction, qos, local, remote)


def _bridge_qos(word: str) -> int:
    if not (word.isascii() and word.isdigit()):
        raise ValueError(f"QoS {word!r} is not a number (Mosquitto would read a 0)")
    if int(word) > 2:
        raise ValueError(f"QoS {word} is not 0, 1 or 2 {_REFUSED}")
    return int(word)


def _bridge_prefix(word: str, side: str) -> str:
    if word == _EMPTY:
        return ""
    if "+" in word or "#" in word:
        raise ValueError(f"the {side} prefix {word!r} holds a wildcard {_REFUSED}")
    return word
