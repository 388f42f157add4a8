"""How `midge sub` prints a message: payload, `-v`, `-F FORMAT` or `-F json`.

`-F` takes mosquitto_sub's format strings: `%` sequences for the message
(`%t` topic, `%p` payload, `%q` QoS, `%r` retain flag, `%l` payload length,
`%m` message id, `%x` / `%X` payload in hex, `%I` ISO-8601 time, `%U` Unix
time with nanoseconds, `%j` / `%J` mosquitto's JSON, `%%`), each with
optional printf-like `-` / `0` flags, width and `.max-width`; `@X` passes
`%X` to strftime (`@N` nanoseconds, `@@` an @); `\\n \\t \\r \\0 \\a \\e \\v \\\\`
escapes. MQTT 5 property sequences (`%A %C %D %E %F %P %R %S`) print
nothing: MQTT 3.1.1 messages have no properties.

`-F json` is Midge's own: one JSON object per line with `topic`, `payload`,
`encoding`, `qos`, `retain`, `dup` and `mid`. `payload` is the payload as
text when it is valid UTF-8 (`"encoding": "utf-8"`), otherwise its base64
(`"encoding": "base64"`), so any payload survives and the reader always
knows which it got.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from midge.client.events import Message

Formatter = Callable[[Message], bytes | None]
"""A message -> the bytes to print, or None to print nothing for it."""

_TOKEN = re.compile(
    rb"%(?P<flags>[-0]*)(?P<width>\d*)(?:\.(?P<prec>\d+))?(?P<conv>.)"
    rb"|@(?P<time>.)|\\(?P<esc>.)",
    re.DOTALL,
)
_ESCAPES = {
    b"\\": b"\\", b"0": b"\0", b"a": b"\a", b"e": b"\x1b",
    b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v",
}  # fmt: skip
_MQTT5_ONLY = frozenset(b"ACDEFPRS")
_ZERO_PADDED = frozenset(b"lmxX")
_TRUNCATED = frozenset(b"tI")


@dataclass(frozen=True, slots=True)
class _Now:
    """The moment a message is printed, read once for every field of it."""

    ns: int

    @property
    def local(self) -> datetime:
        return datetime.fromtimestamp(self.ns / 1e9).astimezone()


_Part = Callable[[Message, _Now], bytes | None]


def make_formatter(fmt: str | None, verbose: bool, eol: bool) -> Formatter:
    """The printer `-F`, `-v` and `-N` describe (`-F` wins over `-v`, as in mosquitto)."""
    end = b"\n" if eol else b""
    if fmt == "json":
        return lambda message: json_line(message) + end
    if fmt is not None:
        parts = compile_format(fmt.encode("utf-8", "surrogateescape"))
        return lambda message: _render(parts, message, end)
    if verbose:
        return lambda message: _verbose(message, end)
    return lambda message: message.payload + end if message.payload or eol else b""


def _verbose(message: Message, end: bytes) -> bytes:
    topic = message.topic.encode("utf-8")
    if message.payload:
        return topic + b" " + message.payload + end
    return topic + b" (null)" + end if end else b""  # what mosquitto_sub -v prints


def json_line(message: Message) -> bytes:
    """`-F json`: see the module docstring for the fields."""
    try:
        payload, encoding = message.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(message.payload).decode("ascii"), "base64"
    record = {
        "topic": message.topic,
        "payload": payload,
        "encoding": encoding,
        "qos": message.qos,
        "retain": message.retain,
        "dup": message.dup,
        "mid": message.packet_id or 0,
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def _render(parts: list[_Part], message: Message, end: bytes) -> bytes | None:
    now = _Now(time.time_ns())
    out = []
    for part in parts:
        piece = part(message, now)
        if piece is None:
            return None
        out.append(piece)
    return b"".join(out) + end


def compile_format(fmt: bytes) -> list[_Part]:
    """Parse a -F string once into functions of (message, now)."""
    parts: list[_Part] = []
    pos = 0
    for match in _TOKEN.finditer(fmt):
        if match.start() > pos:
            parts.append(_literal(fmt[pos : match.start()]))
        parts.append(_token(match))
        pos = match.end()
    if pos < len(fmt):
        parts.append(_literal(fmt[pos:]))
    return parts


def _literal(text: bytes) -> _Part:
    return lambda message, now: text


def _token(match: re.Match[bytes]) -> _Part:
    if match["esc"] is not None:
        return _literal(_ESCAPES.get(match["esc"], b"\\" + match["esc"]))
    if match["time"] is not None:
        return _time_part(match["time"])
    conv = match["conv"]
    field = _FIELDS.get(conv)
    if field is None:
        if conv[0] in _MQTT5_ONLY:
            return _literal(b"")
        return _literal(match.group(0))
    flags, width = match["flags"], int(match["width"] or 0)
    limit = int(match["prec"]) if match["prec"] is not None and conv[0] in _TRUNCATED else None
    zero = b"0" in flags and b"-" not in flags and conv[0] in _ZERO_PADDED
    left = b"-" in flags

    def part(message: Message, now: _Now) -> bytes | None:
        value = field(message, now)
        if value is None:
            return None
        if limit is not None:
            value = value[:limit]
        if len(value) >= width:
            return value
        if left:
            return value.ljust(width)
        return value.rjust(width, b"0" if zero else b" ")

    return part


def _time_part(char: bytes) -> _Part:
    if char == b"@":
        return _literal(b"@")
    if char == b"N":
        return lambda message, now: b"%09d" % (now.ns % 1_000_000_000)
    spec = "%" + char.decode("utf-8", "replace")
    return lambda message, now: now.local.strftime(spec).encode("utf-8")


def _iso(now: _Now) -> bytes:
    return now.local.strftime("%Y-%m-%dT%H:%M:%S%z").encode("ascii")


def _unix(now: _Now) -> bytes:
    return b"%d.%09d" % divmod(now.ns, 1_000_000_000)


def _mosquitto_json(message: Message, now: _Now, raw: bool) -> bytes | None:
    """%j / %J: mosquitto_sub's JSON (%J embeds a payload that is JSON itself)."""
    payload: object
    if raw:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            print(
                f"Error: Message payload is not valid JSON on topic {message.topic}",
                file=sys.stderr,
            )
            return None
    else:
        payload = message.payload.decode("utf-8", "replace")
    record = {
        "tst": now.local.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
        "topic": message.topic,
        "qos": message.qos,
        "retain": int(message.retain),
        "payload": payload,
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_FIELDS: dict[bytes, Callable[[Message, _Now], bytes | None]] = {
    b"%": lambda m, now: b"%",
    b"t": lambda m, now: m.topic.encode("utf-8"),
    b"p": lambda m, now: m.payload,
    b"q": lambda m, now: b"%d" % m.qos,
    b"r": lambda m, now: b"1" if m.retain else b"0",
    b"l": lambda m, now: b"%d" % len(m.payload),
    b"m": lambda m, now: b"%d" % (m.packet_id or 0),
    b"x": lambda m, now: m.payload.hex().encode("ascii"),
    b"X": lambda m, now: m.payload.hex().upper().encode("ascii"),
    b"I": lambda m, now: _iso(now),
    b"U": lambda m, now: _unix(now),
    b"j": lambda m, now: _mosquitto_json(m, now, raw=False),
    b"J": lambda m, now: _mosquitto_json(m, now, raw=True),
}
