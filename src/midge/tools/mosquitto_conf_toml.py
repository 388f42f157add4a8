"""Writing the midge.toml of `midge config import`: keys with where they came from.

Every key carries a comment naming the mosquitto.conf line it was
translated from (and a note where Midge's meaning differs a little);
directives Midge already follows without a key are listed as notes, and
the untranslated ones close the file, so the TOML alone tells the whole
story of the import. The top-level keys come first, then the notes, the
[[listeners]] tables, the [[bridges]] tables, and the untranslated lines.

Values are TOML booleans, integers, basic strings, arrays of them, and
inline tables (a bridge's topic rules). An array whose items are
`Commented` is written one item a line, each with its own comment, so every
`topic` line of a mosquitto.conf is named next to the rule it became.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Keys in the order a reader expects them: where, how, who, what is kept, limits.
KEY_ORDER = (
    "host",
    "port",
    "transport",
    "allow_anonymous",
    "certfile",
    "keyfile",
    "cafile",
    "require_certificate",
    "use_identity_as_username",
    "tls_version",
    "password_file",
    "acl_file",
    "store",
    "data_dir",
    "persistent_session_expiry",
    "log_level",
    "max_connections",
    "max_keepalive",
    "max_packet_size",
    "max_inflight_messages",
    "max_queued_messages",
    "max_queued_bytes",
    "queue_qos0_messages",
    "max_topic_alias",
)


@dataclass(frozen=True, slots=True)
class Commented:
    """An item of an array written on a line of its own, followed by `comment`."""

    value: Any
    comment: str


class Table:
    """The keys of the top level or of one [[listeners]] / [[bridges]] table, each
    with its origin; written in `order` (keys it does not name come last)."""

    def __init__(
        self, comment: str = "", where: str = "", order: Sequence[str] = KEY_ORDER
    ) -> None:
        self.comment = comment  # after the table header: which listener or bridge this is
        self.where = where  # the line that opened it
        self.order = order
        self.entries: dict[str, tuple[Any, str, str]] = {}  # key: (value, origin, note)

    def set(self, key: str, value: Any, origin: str, note: str = "") -> None:
        self.entries[key] = (value, origin, note)

    def get(self, key: str) -> Any:
        entry = self.entries.get(key)
        return entry[0] if entry is not None else None

    def ordered(self) -> list[tuple[str, tuple[Any, str, str]]]:
        rank = {key: index for index, key in enumerate(self.order)}
        return sorted(self.entries.items(), key=lambda item: rank.get(item[0], len(rank)))


def value_text(value: Any) -> str:
    """A TOML value on one line: a boolean, an integer, a basic string, an array of
    values, or an inline table (whose keys are bare: Midge's own key names)."""
    if isinstance(value, Commented):
        return value_text(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # finite: the importer writes durations in seconds
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    if isinstance(value, Mapping):
        pairs = ", ".join(f"{key} = {value_text(item)}" for key, item in value.items())
        return "{ " + pairs + " }" if pairs else "{}"
    # JSON's string escapes are TOML's; TOML also refuses a raw DEL.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment(text: str) -> str:
    return " ".join(text.split())  # one line, whatever the note held


def _entry(key: str, value: Any, origin: str, note: str) -> str:
    comment = _comment(f"{origin}: {note}" if note else origin)
    if isinstance(value, list) and any(isinstance(item, Commented) for item in value):
        # TOML keeps an inline table on one line, but an array may span lines
        # and hold comments: one item a line, each naming where it came from.
        lines = [f"{key} = [  # {comment}"]
        for item in value:
            text = _comment(item.comment) if isinstance(item, Commented) else ""
            line = f"    {value_text(item)},"
            lines.append(f"{line}  # {text}" if text else line)
        return "\n".join([*lines, "]"])
    return f"{key} = {value_text(value)}  # {comment}"


def render(
    main: Path,
    top: Table,
    tables: Sequence[Table],
    notes: Sequence[str],
    untranslated: Sequence[object],
    bridges: Sequence[Table] = (),
) -> str:
    """The whole midge.toml."""
    lines = _header(main, len(untranslated))
    lines += [_entry(key, *entry) for key, entry in top.ordered()]
    if notes:
        lines += ["", "# Already Midge's behaviour, or read without a key of its own:"]
        lines += [f"#   {_comment(note)}" for note in notes]
    for table in tables:
        lines += ["", f"[[listeners]]  # {_comment(table.comment)}"]
        lines += [_entry(key, *entry) for key, entry in table.ordered()]
    for table in bridges:
        lines += ["", f"[[bridges]]  # {_comment(table.comment)}"]
        lines += [_entry(key, *entry) for key, entry in table.ordered()]
    if untranslated:
        lines += ["", "# Not translated (also listed on standard error when imported):"]
        lines += [f"#   {_comment(str(item))}" for item in untranslated]
    return "\n".join(lines) + "\n"


def _header(main: Path, left_out: int) -> list[str]:
    verdict = (
        "Every directive was translated."
        if not left_out
        else f"{left_out} directive(s) could not be translated: they are listed at the end."
    )
    return [
        f"# Midge configuration imported from {_comment(str(main))}",
        "# by `midge config import`; start Midge with `midge serve --config FILE`.",
        "#",
        "# Paths are absolute: Mosquitto takes relative ones from its working",
        f"# directory, so they were resolved against {_comment(str(main.parent))},",
        "# the folder of the imported file. The comment after each key names the",
        "# line it comes from; keys the file did not set keep Midge's defaults",
        "# (docs/configuration.md), which may differ from Mosquitto's.",
        f"# {verdict}",
        "",
    ]
