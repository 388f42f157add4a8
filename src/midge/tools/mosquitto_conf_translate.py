"""Translate a mosquitto.conf into a midge.toml (`midge config import`).

Theory of operation. `translate` reads the directives (with the files of
include_dir), then gives each one the scope Mosquitto 2 gives it:

- `listener PORT [ADDRESS]` starts a listener; its options (protocol, TLS,
  max_connections, ...) follow it. `port` and `bind_address` (anywhere), and
  listener options before a file's first `listener` line, configure the
  default listener. With no `listener`, `port` or `bind_address` at all,
  Mosquitto 2 listens on localhost:1883 only and admits anonymous clients:
  Midge's implicit listener of a config without [[listeners]] does the same.
- allow_anonymous, password_file, acl_file (and the other security options)
  are global, or, with `per_listener_settings true`, the current listener's.
  Midge has a per-listener allow_anonymous but one password_file and one
  acl_file: they are translated when every listener names the same file.
- `connection NAME` starts a bridge; the bridge options after it (in the
  same file) are its own, whatever listener lines come between, and become
  one [[bridges]] table (`mosquitto_conf_bridges`). A bridge option with no
  `connection` before it in its file is reported: Mosquitto refuses it.
- every other directive is global.

Then every directive either sets Midge keys (the TOML comment names its
line), is already Midge's behaviour (a note says so), or is reported as
untranslated with its line and the reason. None is dropped silently: the
untranslated ones go to the caller (the command prints them on standard
error) and into a comment block at the end of the TOML. Relative paths
(Mosquitto takes them from its working directory) are written absolute,
resolved against the folder of the mosquitto.conf.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from midge.tools.mosquitto_conf import (
    BRIDGE_DIRECTIVES,
    LISTENER_DIRECTIVES,
    Directive,
    DirectoryReader,
    display_name,
    is_security,
    parse,
    read_conf_dir,
)
from midge.tools.mosquitto_conf_bridges import Bridge, BridgeTranslator
from midge.tools.mosquitto_conf_listeners import Listener, ListenerTranslator
from midge.tools.mosquitto_conf_rules import Skip, flag, global_rule
from midge.tools.mosquitto_conf_toml import Table, render


@dataclass(frozen=True, slots=True)
class Untranslated:
    """A directive `midge config import` could not carry over, and why."""

    line: int
    directive: str  # the line as written (name and value)
    why: str
    source: str = "mosquitto.conf"  # the file: the main one or one of include_dir

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.directive}: {self.why}"


def import_file(path: str | Path) -> tuple[str, list[Untranslated]]:
    """`translate` the file at `path`, reading its include_dir folders; OSError if unreadable."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return translate(text, path, read_conf_dir)


def translate(
    text: str, source_path: str | Path, read_dir: DirectoryReader | None = None
) -> tuple[str, list[Untranslated]]:
    """The midge.toml for the mosquitto.conf `text` found at `source_path`, and what it left out.

    `read_dir` lists an include_dir folder's `*.conf` files (path, text) in
    Mosquitto's order; without it include_dir lines are reported, not read.
    """
    main = Path(source_path).absolute()
    translator = _Translator(main)
    directives = translator.flatten(parse(text, main.name), read_dir)
    translator.run(directives)
    return translator.output(), translator.reported()


_COLLECTIVE = frozenset(
    """log_type log_dest persistence persistence_location persistence_file
    per_listener_settings""".split()  # noqa: SIM905
)
_MERGED_SECURITY = ("allow_anonymous", "password_file", "acl_file")
_LOG_LEVELS = ("debug", "information", "notice", "warning", "error")
_MIDGE_LEVELS = {"debug": "debug", "information": "info", "notice": "info"}


class _Translator:
    def __init__(self, main: Path) -> None:
        self.main = main
        self.folder = main.parent
        self.top = Table()
        self.tables: list[Table] = []
        self.bridge_tables: list[Table] = []
        self.notes: list[tuple[int, int, str]] = []  # (file part, line, note)
        self.untranslated: list[tuple[int, Untranslated]] = []  # (file part, item)
        self.default = Listener(None)
        self.listeners: list[Listener] = []
        self.opened: list[Listener] = []  # the listeners translated, in order
        self.globals: list[Directive] = []
        self.bridges: list[Bridge] = []
        self.security: dict[str, list[Directive]] = {}
        self.setters: dict[str, list[Directive]] = {}  # Midge key: the line that set it
        self.per_listener = False
        self.local_only = True

    # ------------------------------------------------------------ reading

    def skip(self, directive: Directive, why: str) -> None:
        item = Untranslated(directive.line, directive.text, why, directive.source)
        self.untranslated.append((directive.part, item))

    def reported(self) -> list[Untranslated]:
        """What was not translated, in file order: the main file, then each included one."""
        ordered = sorted(self.untranslated, key=lambda entry: (entry[0], entry[1].line))
        return [item for _part, item in ordered]

    def note(self, directive: Directive, text: str) -> None:
        line = f"{directive.where} `{directive.text}`: {text}"
        self.notes.append((directive.part, directive.line, line))

    def path(self, value: str) -> str:
        return str(self.folder / value)  # an absolute value stays as it is

    def flatten(
        self, directives: list[Directive], read_dir: DirectoryReader | None
    ) -> list[Directive]:
        """The main file's directives with each include_dir replaced by its files' ones."""
        flat: list[Directive] = []
        part = 0
        for directive in directives:
            if directive.name != "include_dir":
                flat.append(directive)
                continue
            for path, text in self.included(directive, read_dir):
                part += 1
                for item in parse(text, display_name(path, self.folder), part):
                    if item.name == "include_dir":
                        self.skip(item, "Mosquitto reads include_dir only in the main file")
                    else:
                        flat.append(item)
        return flat

    def included(
        self, directive: Directive, read_dir: DirectoryReader | None
    ) -> Iterable[tuple[Path, str]]:
        if read_dir is None:
            self.skip(directive, "include_dir was not read (no folder reader given)")
            return ()
        if not directive.value:
            self.skip(directive, "no folder given (Mosquitto would refuse to start)")
            return ()
        folder = Path(self.path(directive.value))
        try:
            files = [item for item in read_dir(folder) if item[0].absolute() != self.main]
        except OSError as exc:
            self.skip(directive, f"cannot read {folder}: {exc.strerror or exc}")
            return ()
        names = ", ".join(path.name for path, _ in files) or "no *.conf files"
        self.note(directive, f"read {folder} in Mosquitto's order: {names}")
        return files

    # ------------------------------------------------------------ scopes

    def run(self, directives: list[Directive]) -> None:
        self.per_listener = any(
            item.name == "per_listener_settings" and item.first == "true" for item in directives
        )
        self.assign(directives)
        self.local_only = not self.listeners and not self.default.opened
        if self.local_only:
            self.per_listener = False  # one implicit listener: its settings are the global ones
            for items in self.default.security.values():
                for item in items:
                    self.scope_global(item)
            self.default.security.clear()
        self.translate_globals()
        self.translate_listeners()
        self.translate_security()
        self.bridge_tables = BridgeTranslator(self).tables(self.bridges)

    def assign(self, directives: list[Directive]) -> None:
        """Give each directive its scope, as Mosquitto's parser does."""
        current, part = self.default, -1
        # Mosquitto keeps the current bridge per file: an included file starts with
        # none, and the main file goes on with its own after an include_dir.
        bridges: dict[int, Bridge] = {}  # file part: its current bridge
        for item in directives:
            if item.part != part:  # each file starts at the default listener
                current, part = self.default, item.part
            if item.name == "connection":
                bridges[item.part] = Bridge(item)
                self.bridges.append(bridges[item.part])
            elif item.name in BRIDGE_DIRECTIVES:
                self.bridge_option(bridges.get(item.part), item)
            elif item.name == "listener":
                current = Listener(item, opened=True)
                self.listeners.append(current)
            elif item.name in ("port", "bind_address"):
                self.option(self.default, item)
            elif item.name in LISTENER_DIRECTIVES:
                self.option(current, item)
            elif is_security(item.name) and self.per_listener:
                self.replaced(current.security.get(item.name), item)
                current.security.setdefault(item.name, []).append(item)
                # Mosquitto opens the default listener for these, not for the others.
                if item.name in ("password_file", "psk_file", "plugin", "auth_plugin"):
                    current.opened = True
            else:
                self.scope_global(item)

    def bridge_option(self, bridge: Bridge | None, item: Directive) -> None:
        if bridge is not None:
            bridge.lines.append(item)
        else:
            self.skip(
                item,
                "a bridge option with no `connection` line before it in its file "
                "(Mosquitto would refuse to start)",
            )

    def option(self, listener: Listener, item: Directive) -> None:
        earlier = listener.options.get(item.name)
        self.replaced([earlier] if earlier else None, item)
        listener.options[item.name] = item
        listener.opened = True

    def scope_global(self, item: Directive) -> None:
        if item.name in _MERGED_SECURITY:
            self.replaced(self.security.get(item.name), item)
            self.security.setdefault(item.name, []).append(item)
        else:
            self.globals.append(item)

    def replaced(self, earlier: list[Directive] | None, item: Directive) -> None:
        """A second value for the same setting: the last one counts, as in Mosquitto."""
        if earlier:
            self.note(earlier[-1], f"replaced by {item.where} `{item.text}`")

    # ------------------------------------------------------------ global

    def translate_globals(self) -> None:
        for item in self.globals:
            if item.name in _COLLECTIVE:
                continue
            try:
                keys, note = global_rule(item.name)(item)
            except Skip as why:
                self.skip(item, str(why))
                continue
            if not keys:
                self.note(item, note)
            for key, value in keys.items():
                self.replaced(self.setters.get(key), item)
                self.setters[key] = [item]
                self.top.set(key, value, item.where, note)
        if any(item.name == "per_listener_settings" for item in self.globals):
            mode = "per listener" if self.per_listener else "global"
            for item in self.globals:
                if item.name == "per_listener_settings":
                    self.note(item, f"allow_anonymous is translated {mode}")
        self.translate_persistence()
        self.translate_log_level()
        self.translate_log_dest()

    def named(self, name: str) -> list[Directive]:
        return [item for item in self.globals if item.name == name]

    def translate_persistence(self) -> None:
        switches = self.named("persistence")
        durable = False
        for item in switches:
            try:
                durable = flag(item)
            except Skip as why:
                self.skip(item, str(why))
        where = _lines(switches) or "Mosquitto's default"
        if durable:
            self.top.set("store", "sqlite", where, "Mosquitto's own mosquitto.db is not converted")
        else:
            self.top.set(
                "store",
                "memory",
                where,
                "persistence false: nothing survives a restart, as in Mosquitto; "
                '"sqlite" makes Midge durable',
            )
        for item in self.named("persistence_location"):
            self.top.set("data_dir", self.path(item.value), item.where, "Midge's store: midge.db")
        for item in self.named("persistence_file"):
            self.skip(
                item,
                "Midge's store is always midge.db in data_dir (persistence_location); "
                "Mosquitto's database is not converted",
            )

    def translate_log_level(self) -> None:
        lines = self.named("log_type")
        if not lines:
            return
        types: set[str] = set()
        for item in lines:
            for word in item.words[:1]:  # Mosquitto reads one type per line
                if word == "none":
                    types.clear()
                elif word == "all":
                    types.update(_LOG_LEVELS)
                elif word in _LOG_LEVELS:
                    types.add(word)
        level = next((name for name in _LOG_LEVELS if name in types), None)
        for item in lines:
            if item.first == "none" and not types:
                self.skip(
                    item, 'Midge cannot turn its log off; log_level = "error" is the quietest'
                )
            elif item.first not in (*_LOG_LEVELS, "all", "none"):
                self.skip(item, "Midge's log has levels (debug, info, warning, error), no types")
        if level is not None:
            midge = _MIDGE_LEVELS.get(level, level)
            note = "Midge has no notice level" if level == "notice" else ""
            self.top.set("log_level", midge, _lines(lines), note)
        elif not types:
            self.top.set("log_level", "error", _lines(lines), "the quietest Midge has")

    def translate_log_dest(self) -> None:
        elsewhere = (
            "Midge logs to standard error: redirect it, or let systemd's journal keep it "
            "(contrib/systemd)"
        )
        reasons = {
            "stdout": "Midge logs to standard error (2>&1 joins it to standard output)",
            "file": elsewhere,
            "syslog": elsewhere,
            "dlt": elsewhere,
            "topic": "Midge does not publish its log on $SYS/broker/log",
            "none": 'Midge cannot turn its log off; log_level = "error" is the quietest',
        }
        for item in self.named("log_dest"):
            if item.first == "stderr":
                self.note(item, "Midge logs to standard error")
            else:
                self.skip(item, reasons.get(item.first, f"unknown destination {item.first!r}"))

    # ------------------------------------------------------------ listeners

    def translate_listeners(self) -> None:
        translator = ListenerTranslator(self, self.per_listener)
        candidates = [self.default] if self.default.opened else []
        for listener in [*candidates, *self.listeners]:
            table = translator.table(listener)
            if table is not None:
                self.opened.append(listener)
                self.tables.append(table)
        translator.limit(self.opened, "max_connections", -1, self.top)
        translator.limit(self.opened, "max_topic_alias", 10, self.top)
        if self.local_only:
            self.top.set(
                "host",
                "127.0.0.1",
                "Mosquitto's default",
                "no listener configured: "
                "Mosquitto 2 listens on localhost only (Midge: 127.0.0.1, not ::1)",
            )
            self.top.set("port", 1883, "Mosquitto's default")
        elif any(not table.get("host") for table in self.tables):
            self.top.set(
                "host",
                "",
                "Mosquitto's default",
                "listeners without an address listen on every address",
            )

    # ------------------------------------------------------------ security

    def translate_security(self) -> None:
        if not self.per_listener:
            self.global_anonymous()
            for name in ("password_file", "acl_file"):
                items = self.security.get(name, [])
                if items:
                    self.top.set(name, self.path(items[-1].value), items[-1].where)
            return
        for name in ("password_file", "acl_file"):
            self.merged_file(name)
        for listener in self.opened:  # a dropped listener's lines are reported already
            for name, items in listener.security.items():
                if name not in _MERGED_SECURITY:
                    for item in items:
                        self.apply_global(item)
        if not self.default.opened:
            for items in self.default.security.values():
                for item in items:
                    self.skip(
                        item,
                        "per_listener_settings: this sets the default listener, which "
                        "this file does not open (Mosquitto ignores it)",
                    )

    def global_anonymous(self) -> None:
        items = self.security.get("allow_anonymous", [])
        if self.local_only:
            # Mosquitto 2.0 admits local anonymous clients then, whatever the file says
            # (checked against 2.0.11); so does Midge's implicit loopback listener.
            for item in items[-1:]:
                if item.first == "true":
                    self.note(item, "local-only mode admits anonymous clients, in both")
                else:
                    self.skip(
                        item,
                        "with no listener configured Mosquitto 2 ignores it and admits anonymous "
                        "clients from this machine, as Midge's implicit listener does; configure "
                        "a listener to refuse them",
                    )
            return
        if items:
            try:
                self.top.set("allow_anonymous", flag(items[-1]), items[-1].where)
                return
            except Skip as why:
                self.skip(items[-1], str(why))
        self.top.set(
            "allow_anonymous",
            False,
            "Mosquitto's default",
            "Mosquitto 2 refuses anonymous clients once listeners are configured",
        )

    def merged_file(self, name: str) -> None:
        """password_file or acl_file of every listener: Midge has one for all."""
        lines = {id(listener): listener.last(name) for listener in self.opened}
        paths = {self.path(item.value) if item else "" for item in lines.values()}
        named = [item for item in lines.values() if item is not None]
        if len(paths) == 1:
            if named:
                self.top.set(
                    name,
                    paths.pop(),
                    ", ".join(item.where for item in named),
                    "every listener names this file",
                )
            return
        for item in named:
            self.skip(
                item,
                f"per_listener_settings: the listeners name different {name}s "
                f"(or none); Midge has one {name} for all listeners",
            )

    def apply_global(self, item: Directive) -> None:
        try:
            keys, note = global_rule(item.name)(item)
        except Skip as why:
            self.skip(item, str(why))
            return
        if keys:  # no per-listener security rule sets keys today
            self.skip(item, "Midge has this setting once, for all listeners")
        else:
            self.note(item, note)

    # ------------------------------------------------------------ output

    def output(self) -> str:
        notes = [text for _part, _line, text in sorted(self.notes)]
        return render(self.main, self.top, self.tables, notes, self.reported(), self.bridge_tables)


def _lines(directives: list[Directive]) -> str:
    """The origin of a key several lines decide together (the last one counts)."""
    return ", ".join(item.where for item in directives)
