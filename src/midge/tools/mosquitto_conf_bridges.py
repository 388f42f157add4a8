"""The bridges of a mosquitto.conf as Midge's [[bridges]] tables.

A Mosquitto bridge is a `connection NAME` line and the bridge options after
it in the same file (each file starts with no bridge current; the main file
goes on with its own after an include_dir). Each becomes one [[bridges]]
table (bridge/config.py, docs/bridges.md): options map to keys one by one,
each `topic` line to one entry of `topics`, and the TLS options are read
together at the end, because Mosquitto uses TLS on a bridge only when
bridge_cafile, bridge_capath or bridge_tls_use_os_certs asks for it (a
bridge_certfile alone does nothing). Options without a Midge key are noted
when Midge already behaves so, or reported with the reason.

A bridge Mosquitto would refuse (no name, no address, no topic, a name given
twice) or that Midge cannot run as Mosquitto did (TLS-PSK: it would talk in
the clear) is left out, every line reported; so that it adds no keys and no
notes, what each line became waits in a `_Build` until the bridge's fate is
known. Last, the table goes through Midge's own `BridgeConfig.problems()`:
the TOML written always loads.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from midge.bridge.config import START_TYPES, BridgeConfig, TopicRule
from midge.protocol.topics import is_valid_topic_filter
from midge.tools.mosquitto_conf import (
    Directive,
    parse_bridge_address,
    parse_bridge_topic,
    until_comment,
)
from midge.tools.mosquitto_conf_listeners import Report
from midge.tools.mosquitto_conf_rules import (
    BRIDGE_DEFAULTS,
    BRIDGE_REASONS,
    NO_BRIDGE_PSK,
    Skip,
    flag,
    integer,
)
from midge.tools.mosquitto_conf_toml import Commented, Table

BRIDGE_KEYS = tuple(item.name for item in dataclasses.fields(BridgeConfig))
"""The order of a [[bridges]] table's keys: BridgeConfig's, as docs/bridges.md lists them."""

_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_.")
_REFUSES = "(Mosquitto would refuse to start)"

# Old names Mosquitto still reads for the same setting.
_ALIASES = {
    "clientid": "remote_clientid",
    "username": "remote_username",
    "password": "remote_password",
    "addresses": "address",
}
# Options Mosquitto reads as strings: it refuses a second value in one
# bridge, as it refuses a second address line.
_ONCE = frozenset(
    """address remote_clientid remote_username remote_password local_clientid
    local_username local_password notification_topic bridge_cafile bridge_capath
    bridge_certfile bridge_keyfile bridge_alpn bridge_ciphers bridge_ciphers_tls1.3
    bridge_bind_address bridge_identity bridge_psk bridge_tls_version""".split()  # noqa: SIM905
)
# Read together once the whole bridge is known (see the module docstring).
_TLS = frozenset(
    """bridge_cafile bridge_capath bridge_certfile bridge_keyfile bridge_insecure
    bridge_tls_use_os_certs bridge_tls_version""".split()  # noqa: SIM905
)
_NO_TLS = (
    "no effect: Mosquitto uses TLS on a bridge only with bridge_cafile, bridge_capath "
    "or bridge_tls_use_os_certs true, and this bridge has none"
)


@dataclass(eq=False)
class Bridge:
    """A Mosquitto bridge: its `connection` line and the bridge options after it."""

    opener: Directive
    lines: list[Directive] = field(default_factory=list)

    def directives(self) -> list[Directive]:
        return [self.opener, *self.lines]


class _Build:
    """One bridge being translated: its table, and what each line became."""

    def __init__(self, bridge: Bridge) -> None:
        opener = bridge.opener
        self.bridge = bridge
        self.name = ""
        self.table = Table(f"{opener.where} `{opener.text}`", opener.where, BRIDGE_KEYS)
        self.skips: dict[int, str] = {}  # id(line): why it is not translated
        self.notes: list[tuple[Directive, str]] = []
        self.seen: dict[str, Directive] = {}  # option (current name): the line that counts
        self.tls: dict[str, Directive] = {}  # TLS options, read together by `_tls`
        self.topics: list[Commented] = []
        self.psk: Directive | None = None

    def set(self, key: str, value: Any, item: Directive, note: str = "") -> None:
        self.table.set(key, value, item.where, note)

    def get(self, key: str) -> Any:
        return self.table.get(key)

    def note(self, item: Directive, text: str) -> None:
        self.notes.append((item, text))

    def skip(self, item: Directive, why: str) -> None:
        self.skips[id(item)] = why

    @property
    def session(self) -> str:
        return f"$bridge/{self.name}"


Rule = Callable[[_Build, Directive], None]
"""Translates one line into `_Build`'s keys or notes, or raises Skip."""


class BridgeTranslator:
    """Turns `Bridge`s into [[bridges]] tables, reporting through `report`."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.named: set[str] = set()  # the names in the mosquitto.conf
        self.taken: set[str] = set()  # the names of the tables written

    def tables(self, bridges: list[Bridge]) -> list[Table]:
        return [table for bridge in bridges if (table := self.table(bridge)) is not None]

    def table(self, bridge: Bridge) -> Table | None:
        """The [[bridges]] table, or None (every line reported) for a bridge left out."""
        build = _Build(bridge)
        why = self.name(build)
        if why is None:
            for item in bridge.lines:
                try:
                    self.line(build, item)
                except Skip as skipped:
                    build.skip(item, str(skipped))
            why = self.finish(build)
        if why is not None:
            self.drop(build, why)
            return None
        self.commit(build)
        return build.table

    def name(self, build: _Build) -> str | None:
        """Set the bridge's name; why the bridge is left out (None: it is not)."""
        opener = build.bridge.opener
        original = opener.first
        if not original:
            return f"a bridge needs a name {_REFUSES}"
        if original in self.named:
            return f"a second bridge named {original!r} {_REFUSES}"
        self.named.add(original)
        name = base = "".join(char if char in _NAME_CHARACTERS else "-" for char in original)
        count = 1
        while name in self.taken:  # two names that differ only where '-' replaced a character
            count += 1
            name = f"{base}-{count}"
        self.taken.add(name)
        build.name = name
        note = "Midge's bridge names hold letters, digits, '-', '_' and '.' only"
        build.set("name", name, opener, note if name != original else "")
        return None

    def line(self, build: _Build, item: Directive) -> None:
        """Translate one option of the bridge (Skip: it is not translated)."""
        name = _ALIASES.get(item.name, item.name)
        if name == "topic":  # every topic line adds a rule
            _topic(build, item)
            return
        earlier = build.seen.get(name)
        if earlier is not None and name in _ONCE:
            raise Skip(f"{name} given twice in this bridge {_REFUSES}")
        if name in _TLS:
            if name in _ONCE:
                _text(item)  # a string option needs a value
            build.tls[name] = item  # read with the other TLS options by `tls`
        else:
            _rule(name)(build, item)
        if earlier is not None:  # the last one counts, as in Mosquitto
            build.note(earlier, f"replaced by {item.where} `{item.text}`")
        build.seen[name] = item

    def finish(self, build: _Build) -> str | None:
        """The keys that depend on several lines; why the bridge is left out (None: kept)."""
        self.tls(build)
        if build.psk is not None:
            return f"{NO_BRIDGE_PSK}: without it this bridge would reach the remote in the clear"
        if not build.get("addresses"):
            return _missing(build, "address", "an address")
        if not build.topics:
            return _missing(build, "topic", "a topic")
        where = ", ".join(item.comment for item in build.topics)
        build.table.set("topics", build.topics, where)
        _password(build)
        _defaults(build)
        problems = _config(build).problems("bridge")
        return "Midge would refuse it: " + "; ".join(problems) if problems else None

    def drop(self, build: _Build, why: str) -> None:
        self.taken.discard(build.name)
        opener = build.bridge.opener
        for item in build.bridge.directives():
            own = build.skips.get(id(item))
            belongs = f"belongs to the bridge of {opener.where}, which is not translated"
            self.report.skip(item, why if item is opener else own or belongs)

    def commit(self, build: _Build) -> None:
        for item in build.bridge.directives():
            if id(item) in build.skips:
                self.report.skip(item, build.skips[id(item)])
        for item, text in build.notes:
            self.report.note(item, text)

    # ------------------------------------------------------------ TLS

    def tls(self, build: _Build) -> None:
        """tls, ca_file, cert_file, key_file, insecure: from the TLS options together."""
        lines = build.tls
        ca, folder = lines.get("bridge_cafile"), lines.get("bridge_capath")
        system = lines.get("bridge_tls_use_os_certs")
        use_system = system is not None and _checked(build, system) is True
        opener = ca or folder or (system if use_system else None)
        if opener is None:
            _no_tls(build, system)
            return
        system_note = "the system's CA certificates check the remote"
        build.set("tls", True, opener, system_note if opener is system else "")
        if ca is not None:
            build.set("ca_file", self.report.path(ca.value), ca)
        _ca_folder(build, folder, ca)
        if system is not None and system is not opener and id(system) not in build.skips:
            _system_cas(build, system, use_system, ca)
        self.client_certificate(build)
        _insecure_and_version(build)

    def client_certificate(self, build: _Build) -> None:
        cert, key = build.tls.get("bridge_certfile"), build.tls.get("bridge_keyfile")
        if cert is not None and key is not None:
            build.set("cert_file", self.report.path(cert.value), cert)
            build.set("key_file", self.report.path(key.value), key)
            return
        for item in (cert, key):
            if item is not None:
                build.skip(
                    item, "bridge_certfile and bridge_keyfile go together: one alone is not used"
                )


# ------------------------------------------------------------ the rules


def _rule(name: str) -> Rule:
    if name in RULES:
        return RULES[name]
    if name in BRIDGE_DEFAULTS:
        return _same_when(name)
    return _never(BRIDGE_REASONS.get(name, "not a Mosquitto 2.0 bridge option"))


def _key(key: str, read: Callable[[Directive], Any]) -> Rule:
    def rule(build: _Build, item: Directive) -> None:
        build.set(key, read(item), item)

    return rule


def _text(item: Directive) -> str:
    """A string option: the rest of the line, as Mosquitto reads it."""
    if not item.value:
        raise Skip(f"no value {_REFUSES}")
    return item.value


def _at_least(key: str, low: int, high: int | None = None) -> Rule:
    """A number Mosquitto raises to `low` (with a notice) and refuses above `high`."""

    def rule(build: _Build, item: Directive) -> None:
        value = integer(item)
        if high is not None and value > high:
            raise Skip(f"must be at most {high} {_REFUSES}")
        note = f"raised to {low}, Mosquitto's least value" if value < low else ""
        build.set(key, max(value, low), item, note)

    return rule


def _never(why: str) -> Rule:
    def rule(build: _Build, item: Directive) -> None:
        if item.name in ("bridge_identity", "bridge_psk"):
            build.psk = item
        raise Skip(why)

    return rule


def _same_when(name: str) -> Rule:
    value, meaning = BRIDGE_DEFAULTS[name]

    def rule(build: _Build, item: Directive) -> None:
        if item.first != value:
            raise Skip(f"{meaning}; no key sets another behaviour")
        build.note(item, f"{meaning}, which this value asks for too")

    return rule


def _addresses(build: _Build, item: Directive) -> None:
    words = until_comment(item.words)
    if not words:
        raise Skip(f"no address {_REFUSES}")
    try:
        hosts = [parse_bridge_address(word) for word in words]
    except ValueError as why:
        raise Skip(str(why)) from None
    # An IPv6 address is written in brackets in Midge: [::1]:1883.
    found = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in hosts]
    build.set("addresses", found, item)


def _protocol(build: _Build, item: Directive) -> None:
    versions = {"mqttv311": "3.1.1", "mqttv50": "5"}
    if item.value == "mqttv31":
        raise Skip("MQTT 3.1: Midge's bridges speak 3.1.1 or 5.0 (mqttv311 if the remote takes it)")
    if item.value not in versions:
        raise Skip(f"{item.value!r} is not mqttv31, mqttv311 or mqttv50 {_REFUSES}")
    build.set("protocol", versions[item.value], item)


def _clean_session(build: _Build, item: Directive) -> None:
    clean = flag(item)
    note = f"at the remote: this broker keeps the bridge's session {build.session}" if clean else ""
    build.set("clean_session", clean, item, note)


def _session_expiry(build: _Build, item: Directive) -> None:
    seconds = integer(item)
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise Skip(f"must be 0..4294967295 {_REFUSES}")
    build.set("session_expiry", seconds, item)


def _start(build: _Build, item: Directive) -> None:
    if item.first not in START_TYPES:  # Mosquitto refuses "manual" too
        raise Skip(f"{item.first!r} is not automatic, lazy or once {_REFUSES}")
    build.set("start", item.first, item)


def _restart(build: _Build, item: Directive) -> None:
    """`restart_timeout BASE CAP`: Decorrelated Jitter from BASE up to CAP, in both."""
    words = item.words[:2]
    if not words:
        raise Skip(f"no value {_REFUSES}")
    given = _seconds(words[0])
    base = max(given, 1)
    low = "raised to 1 second, Mosquitto's least value" if given < 1 else ""
    if len(words) == 1:
        # mosquitto.conf(5): a constant delay. (Mosquitto 2.0's code waits BASE
        # once, then goes on with its default jitter of 5 to 30 seconds.)
        constant = "one value: a constant delay, as mosquitto.conf(5) says"
        build.set("restart_delay", base, item, "; ".join(filter(None, (constant, low))))
        build.set("restart_delay_max", base, item)
        return
    cap = _seconds(words[1])
    if cap < base:
        raise Skip(f"the cap is below the base {_REFUSES}")
    build.set("restart_delay", base, item, low)
    build.set("restart_delay_max", cap, item)


def _seconds(word: str) -> int:
    try:
        return int(word)
    except ValueError:
        raise Skip(f"{word!r} is not a number of seconds") from None


def _notification_topic(build: _Build, item: Directive) -> None:
    topic = _text(item)
    if "+" in topic or "#" in topic or not is_valid_topic_filter(topic):
        raise Skip("not a topic name (no wildcards): the state could not be published there")
    build.set("notification_topic", topic, item)


def _local_only(build: _Build, item: Directive) -> None:
    build.set("notifications_remote", not flag(item), item)


def _local_side(build: _Build, item: Directive) -> None:
    """local_clientid, local_username, local_password: the bridge's login here."""
    _text(item)
    build.note(
        item,
        "not needed: Midge's bridge joins this broker in-process (no login, no ACL check), "
        f"as the persistent session {build.session}",
    )


def _local_clean(build: _Build, item: Directive) -> None:
    clean = flag(item)
    kept = f"this broker keeps the bridge's session {build.session} (persistent)"
    if clean:
        build.note(item, f"{kept}: what is published for the remote while the link is down waits")
    else:
        build.note(item, f"as in Midge: {kept}")


def _unsubscribe(build: _Build, item: Directive) -> None:
    flag(item)
    build.note(
        item,
        "no key: Midge's bridge never unsubscribes at the remote (what the remote still "
        "sends for a filter no rule takes in any more is acknowledged and dropped, counted "
        "as unrouted); here it ends the subscriptions of rules no longer configured",
    )


RULES: dict[str, Rule] = {
    "address": _addresses,
    "round_robin": _key("round_robin", flag),
    "remote_clientid": _key("client_id", _text),
    "remote_username": _key("username", _text),
    "remote_password": _key("password", _text),
    "bridge_protocol_version": _protocol,
    "cleansession": _clean_session,
    "bridge_session_expiry_interval": _session_expiry,
    "keepalive_interval": _at_least("keepalive", 5, 65535),
    "try_private": _key("try_private", flag),
    "bridge_outgoing_retain": _key("outgoing_retain", flag),
    "notifications": _key("notifications", flag),
    "notification_topic": _notification_topic,
    "notifications_local_only": _local_only,
    "start_type": _start,
    "threshold": _at_least("threshold", 1),
    "idle_timeout": _at_least("idle_timeout", 1),
    "restart_timeout": _restart,
    "local_clientid": _local_side,
    "local_username": _local_side,
    "local_password": _local_side,
    "local_cleansession": _local_clean,
    "bridge_attempt_unsubscribe": _unsubscribe,
    "bridge_identity": _never(NO_BRIDGE_PSK),
    "bridge_psk": _never(NO_BRIDGE_PSK),
}
"""The rule of each bridge option (by its current name) but `topic` and the TLS ones."""


# ------------------------------------------------------------ topics


def _topic(build: _Build, item: Directive) -> None:
    """`topic PATTERN [DIRECTION [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]`: one rule."""
    try:
        rule = parse_bridge_topic(item.words)
    except ValueError as why:
        raise Skip(str(why)) from None
    build.topics.append(Commented(dataclasses.asdict(rule), item.where))


# ------------------------------------------------------------ TLS, the parts


def _checked(build: _Build, item: Directive) -> bool | None:
    try:
        return flag(item)
    except Skip as why:
        build.skip(item, str(why))
        return None


def _ca_folder(build: _Build, folder: Directive | None, ca: Directive | None) -> None:
    if folder is None:
        return
    if ca is not None:
        build.note(folder, "Midge reads the CA certificates of ca_file (bridge_cafile) only")
        return
    build.skip(
        folder,
        "Midge reads CA certificates from one file, not a folder: concatenate its PEM files "
        "into one and give it as bridge_cafile; until then the system's CAs check the remote",
    )


def _system_cas(build: _Build, system: Directive, use: bool, ca: Directive | None) -> None:
    if not use:
        build.note(system, "Midge's default: the system's CAs are used only without a CA file")
    elif ca is not None:
        build.skip(
            system,
            "Midge checks the remote against ca_file alone when one is given, "
            "not with the system's CAs too",
        )
    else:
        build.note(system, "the system's CA certificates check the remote, as without ca_file")


def _no_tls(build: _Build, system: Directive | None) -> None:
    """No CA option: Mosquitto connects without TLS, whatever the other TLS options say."""
    for item in build.tls.values():
        if item is not system:
            build.skip(item, _NO_TLS)
        elif id(item) not in build.skips:
            build.note(item, "no TLS, as in Mosquitto without a CA option")


def _insecure_and_version(build: _Build) -> None:
    insecure = build.tls.get("bridge_insecure")
    if insecure is not None and (value := _checked(build, insecure)) is not None:
        build.set("insecure", value, insecure)
    version = build.tls.get("bridge_tls_version")
    if version is None:
        return
    if version.first == "tlsv1.2":
        build.note(version, "Mosquitto's default; Midge's bridges negotiate TLS 1.2 or 1.3")
    elif version.first == "tlsv1.3":
        build.skip(version, "Midge's bridges negotiate TLS 1.2 or 1.3: no key requires 1.3")
    else:
        build.skip(version, "Midge's bridges use TLS 1.2 or later")


# ------------------------------------------------------------ the whole bridge


def _missing(build: _Build, option: str, what: str) -> str:
    tried = any(_ALIASES.get(item.name, item.name) == option for item in build.bridge.lines)
    line = f"no {option} line could be translated" if tried else f"no {option} line"
    return f"{line}: a bridge needs {what} {_REFUSES}"


def _password(build: _Build) -> None:
    """MQTT 3.1.1 sends no password without a user name (mosquitto.conf(5) says as much)."""
    line = build.seen.get("remote_password")
    if line is None or build.get("username") or build.get("protocol") == "5":
        return
    del build.table.entries["password"]
    build.skip(line, "only valid with remote_username: MQTT 3.1.1 sends no password alone")


def _defaults(build: _Build) -> None:
    """Notes where Mosquitto's behaviour without a line differs from Midge's."""
    opener = build.bridge.opener
    if build.get("client_id") is None and build.name != opener.first:
        build.note(opener, "the client id at the remote follows the new name: a new session")
    if build.get("notifications") is False:
        return
    _notification_defaults(build, opener)


def _notification_defaults(build: _Build, opener: Directive) -> None:
    client_id = build.get("client_id")
    if build.get("notification_topic") is None:
        topic = f"$SYS/broker/connection/{client_id}/state"
        if client_id and is_valid_topic_filter(topic) and not {"+", "#"} & set(client_id):
            note = "Mosquitto's state topic, named after remote_clientid"
            build.table.set("notification_topic", topic, "Mosquitto's default", note)
        else:
            build.note(
                opener,
                "Mosquitto published the bridge's state on $SYS/broker/connection/<host "
                f"name>.{opener.first}/state, Midge on $SYS/broker/connection/{build.name}/state "
                "(notification_topic sets another)",
            )
    if "notifications_local_only" not in build.seen:
        build.table.set(
            "notifications_remote",
            True,
            "Mosquitto's default",
            "notifications_local_only false: the state at the remote too, with a will saying 0",
        )


def _config(build: _Build) -> BridgeConfig:
    """The BridgeConfig Midge will load from the table."""
    values = {key: entry[0] for key, entry in build.table.entries.items()}
    values["addresses"] = tuple(values.get("addresses", ()))
    values["topics"] = tuple(TopicRule(**item.value) for item in values.get("topics", ()))
    return BridgeConfig(**values)
