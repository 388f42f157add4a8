"""A TOML table's values for the fields of a frozen dataclass, each bad key a problem.

The tables of the broker's config that have a dataclass of their own
(`[cluster]`, `[[bridges]]` and their topic rules) are read this one way:
a float field takes an int, a tuple field a list of strings, and every key
that is unknown or of the wrong type adds a line naming it to `problems`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import fields
from typing import Any


def typed_fields(
    table: Mapping[str, Any],
    template: Any,
    key: str,
    source: str,
    problems: list[str],
    raw: Collection[str] = (),
) -> dict[str, Any]:
    """`table`'s well-typed values for `template`'s fields; `key` names the
    table in problems; the fields in `raw` are taken as they are (their own
    reader checks them)."""
    known = {item.name for item in fields(template)}
    values: dict[str, Any] = {}
    for name, item in table.items():
        if name not in known:
            problems.append(f"unknown config key '{key}.{name}' in {source}")
            continue
        default = getattr(template, name)
        if name in raw:
            values[name] = item
        elif isinstance(default, tuple):
            if isinstance(item, list) and all(isinstance(part, str) for part in item):
                values[name] = tuple(item)
            else:
                problems.append(
                    f"config key '{key}.{name}' in {source}: expected a list of strings"
                )
        elif type(item) is type(default) or (type(default) is float and type(item) is int):
            values[name] = item
        else:
            problems.append(
                f"config key '{key}.{name}' in {source}: expected {type(default).__name__}, "
                f"got {type(item).__name__} {item!r}"
            )
    return values
