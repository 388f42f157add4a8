"""How `midge sub` prints a message: payload, `-v`, `-F FORMAT` or `-F json`.

`-F` takes mosquitto_sub's format strings: `%` sequences for the message
(`%t` topic, `%p` payload, `%q` QoS, `%r` retain flag, `%l` payload length,
`%m` message id, `%x` / `%X` payload in hex, `%I` ISO-8601 time, `%U` Unix
time with nanoseconds, `%j` / `%J` mosquitto's JSON, `%%`), each with
optional printf-like `-` / `0` flags, width and `.max-width`; `@X` passes
`%X` to strftime (`@N` nanoseconds, `@@` an @); `\\n \\t \\r \\0 \\a \\e \\v \\\\`
escapes. MQTT 5.0 properties, as mosquitto_sub prints them: `%A` topic
alias, `%C` content type, `%D` correlation data, `%E` message expiry
interval, `%F` payload format indicator, `%P` user properties (`name:value`,
space separated), `%R` response topic, `%S` subscription identifier(s, space
separated); each prints nothing when the message has no such property (and
MQTT 3.1.1 messages have none). `%j` / `%J` add mosquitto's "properties"
object when there are any; `--pretty` indents them as mosquitto does.

`-F json` is Midge's own: one JSON object per line with `topic`, `payload`,
`encoding`, `qos`, `retain`, `dup` and `mid`, and with MQTT 5.0 properties
a `properties` object (mosquitto's names; `user-properties` a list of [name,
value] pairs, since names may repeat; binary correlation data as base64
under `correlation-data-base64`). `payload` is the payload as text when it
is valid UTF-8 (`"encoding": "utf-8"`), otherwise its base64 (`"encoding":
"base64"`), so any payload survives and the reader always knows which it got.
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
from midge.protocol.properties import Properties

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
_ZERO_PADDED = frozenset(b"lmxXAEFS")
_TRUNCATED = frozenset(b"tICR")


@dataclass(frozen=True, slots=True)
class _Now:
    """The moment a message is printed, read once for every field of it."""

    ns: int

    @property
    def local(self) -> datetime:
        return datetime.fromtimestamp(self.ns / 1e9).astimezone()


_Part = Callable[[Message, _Now], bytes | None]


def make_formatter(fmt: str | None, verbose: bool, eol: bool, pretty: bool = False) -> Formatter:
    """The printer `-F`, `-v`, `-N` and `--pretty` describe (`-F` wins over `-v`)."""
    end = b"\n" if eol else b""
    if fmt == "json":
        return lambda message: json_line(message, pretty) + end
    if fmt is not None:
        parts = compile_format(fmt.encode("utf-8", "surrogateescape"), pretty)
        return lambda message: _render(parts, message, end)
    if verbose:
        return lambda message: _verbose(message, end)
    return lambda message: message.payload + end if message.payload or eol else b""


def _verbose(message: Message, end: bytes) -> bytes:
    topic = message.topic.encode("utf-8")
    if message.payload:
        return topic + b" " + message.payload + end
    return topic + b" (null)" + end if end else b""  # what mosquitto_sub -v prints


def json_line(message: Message, pretty: bool = False) -> bytes:
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
    if message.properties is not None and _named_properties(message.properties):
        record["properties"] = _json_properties(message.properties)
    return json.dumps(record, ensure_ascii=False, indent=2 if pretty else None).encode("utf-8")


def _json_properties(props: Properties) -> dict[str, object]:
    """-F json's "properties": every one present, by mosquitto's names, losslessly."""
    record: dict[str, object] = {}
    for name, value in _named_properties(props):
        if isinstance(value, bytes):
            try:
                record[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                record[f"{name}-base64"] = base64.b64encode(value).decode("ascii")
        elif name == "user-properties":
            record[name] = [list(pair) for pair in props.user_properties]
        else:
            record[name] = value
    return record


def _named_properties(props: Properties) -> list[tuple[str, object]]:
    """The message properties present, in mosquitto_sub's JSON order and names."""
    ids = props.subscription_identifiers
    pairs: list[tuple[str, object]] = [
        ("subscription-identifier", ids[0] if len(ids) == 1 else list(ids) if ids else None),
        ("topic-alias", props.topic_alias),
        ("content-type", props.content_type),
        ("correlation-data", props.correlation_data),
        ("response-topic", props.response_topic),
        ("payload-format-indicator", props.payload_format_indicator),
        ("message-expiry-interval", props.message_expiry_interval),
        ("user-properties", props.user_properties or None),
    ]
    return [(name, value) for name, value in pairs if value is not None]


def _render(parts: list[_Part], message: Message, end: bytes) -> bytes | None:
    now = _Now(time.time_ns())
    out = []
    for part in parts:
        piece = part(message, now)
        if piece is None:
            return None
        out.append(piece)
    return b"".join(out) + end


def compile_format(fmt: bytes, pretty: bool = False) -> list[_Part]:
    """Parse a -F string once into functions of (message, now)."""
    parts: list[_Part] = []
    pos = 0
    for match in _TOKEN.finditer(fmt):
        if match.start() > pos:
            parts.append(_literal(fmt[pos : match.start()]))
        parts.append(_token(match, pretty))
        pos = match.end()
    if pos < len(fmt):
        parts.append(_literal(fmt[pos:]))
    return parts


def _literal(text: bytes) -> _Part:
    return lambda message, now: text


def _token(match: re.Match[bytes], pretty: bool) -> _Part:
    if match["esc"] is not None:
        return _literal(_ESCAPES.get(match["esc"], b"\\" + match["esc"]))
    if match["time"] is not None:
        return _time_part(match["time"])
    conv = match["conv"]
    if conv in b"jJ":
        return lambda message, now: _mosquitto_json(message, now, conv == b"J", pretty)
    field = _FIELDS.get(conv)
    if field is None:
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


def _mosquitto_json(message: Message, now: _Now, raw: bool, pretty: bool) -> bytes | None:
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
    record: _Pairs = [
        ("tst", now.local.strftime("%Y-%m-%dT%H:%M:%S.%f%z")),
        ("topic", message.topic),
        ("qos", message.qos),
        ("retain", int(message.retain)),
    ]
    named = [] if message.properties is None else _named_properties(message.properties)
    if named:
        record.append(("properties", [_mosquitto_property(n, v) for n, v in named]))
    record.append(("payload", payload))
    return _dump(record, pretty, 1).encode("utf-8")


_Pairs = list[tuple[str, object]]


def _mosquitto_property(name: str, value: object) -> tuple[str, object]:
    """One property as mosquitto writes it: user properties as an object whose
    names may repeat (so a list of pairs here), binary data as text."""
    if isinstance(value, tuple):
        return name, list(value)  # the (name, value) pairs
    if isinstance(value, bytes):
        return name, value.decode("utf-8", "replace")
    return name, value


def _dump(pairs: _Pairs, pretty: bool, depth: int) -> str:
    """A JSON object from (name, value) pairs, where a value that is a list of
    pairs is an object itself: cJSON's layout (tabs) when `pretty`."""
    items = []
    for name, value in pairs:
        if isinstance(value, list) and all(isinstance(item, tuple) for item in value):
            text = _dump(value, pretty, depth + 1)
        else:
            text = json.dumps(value, ensure_ascii=False)
        items.append(f"{json.dumps(name, ensure_ascii=False)}:{chr(9) if pretty else ''}{text}")
    if not pretty:
        return "{" + ",".join(items) + "}"
    inner = "\t" * depth
    return "{\n" + ",\n".join(inner + item for item in items) + "\n" + "\t" * (depth - 1) + "}"


def _text(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _number(value: int | None) -> bytes:
    return b"" if value is None else b"%d" % value


def _props(message: Message) -> Properties:
    return message.properties or _NONE


_NONE = Properties()


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
    # MQTT 5.0 properties; empty when absent, as mosquitto_sub prints them
    b"A": lambda m, now: _number(_props(m).topic_alias),
    b"C": lambda m, now: _text(_props(m).content_type),
    b"D": lambda m, now: _text(_props(m).correlation_data),
    b"E": lambda m, now: _number(_props(m).message_expiry_interval),
    b"F": lambda m, now: _number(_props(m).payload_format_indicator),
    b"P": lambda m, now: b" ".join(
        f"{name}:{value}".encode() for name, value in _props(m).user_properties
    ),
    b"R": lambda m, now: _text(_props(m).response_topic),
    b"S": lambda m, now: b" ".join(b"%d" % i for i in _props(m).subscription_identifiers),
}
