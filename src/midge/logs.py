"""`midge serve`'s log formats: text (the default) and JSON lines (`log_format = "json"`).

JSON: one object per line, with `time` (ISO 8601, UTC, milliseconds),
`level` (lower case), `logger`, `event` (the message as the text format
shows it) and, where the line is about a client, `client_id`, `user`,
`address` and `reason` as separate fields (the broker gives them with
`extra=`; the packet trace adds its own: midge/broker/trace.py). A traceback
is in `exception`. Bytes are shown as Python shows them (b'...'), so every
line is valid JSON whatever a client sent.

Only `midge serve` installs a format (cli.py); an embedding program keeps
its own logging, and can use `JsonFormatter` on its handlers.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has: anything else on a record came as `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=_plain)


def _iso_utc(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _plain(value: object) -> object:
    """What JSON cannot hold as it is: bytes and anything else, as their repr."""
    return repr(value)


def configure_logging(level: str, log_format: str = "text") -> None:
    """`midge serve`'s logging: every line to standard error at `level`, as text
    or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
