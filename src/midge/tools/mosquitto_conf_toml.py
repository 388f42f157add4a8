"""Writing the midge.toml of `midge config import`: keys with where they came from.

Every key carries a comment naming the mosquitto.conf line it was
translated from (and a note where Midge's meaning differs a little);
directives Midge already follows without a key are listed as notes, and
the untranslated ones close the file, so the TOML alone tells the whole
story of the import.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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


class Table:
    """The keys of the top level or of one [[listeners]] table, each with its origin."""

    def __init__(self, comment: str = "", where: str = "") -> None:
        self.comment = comment  # after the table header: which listener this is
        self.where = where  # the line that opened it
        self.entries: dict[str, tuple[Any, str, str]] = {}  # key: (value, origin, note)

    def set(self, key: str, value: Any, origin: str, note: str = "") -> None:
        self.entries[key] = (value, origin, note)

    def get(self, key: str) -> Any:
        entry = self.entries.get(key)
        return entry[0] if entry is not None else None

    def ordered(self) -> list[tuple[str, tuple[Any, str, str]]]:
        rank = {key: index for index, key in enumerate(KEY_ORDER)}
        return sorted(self.entries.items(), key=lambda item: rank.get(item[0], len(rank)))


def value_text(value: Any) -> str:
    """A TOML value: booleans, integers and basic strings are all this writes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # JSON's string escapes are TOML's; TOML also refuses a raw DEL.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment(text: str) -> str:
    return " ".join(text.split())  # one line, whatever the note held


def _entry(key: str, value: Any, origin: str, note: str) -> str:
    comment = f"{origin}: {note}" if note else origin
    return f"{key} = {value_text(value)}  # {_comment(comment)}"


def render(
    main: Path,
    top: Table,
    tables: Sequence[Table],
    notes: Sequence[str],
    untranslated: Sequence[object],
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
