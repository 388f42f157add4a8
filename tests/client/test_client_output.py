"""`midge sub` output: mosquitto_sub's -F sequences, -v, -N, and `-F json`; -d lines."""

from __future__ import annotations

import base64
import json
import re

import pytest

from midge.client.events import Message
from midge.protocol.packets import Publish, SubAck
from midge.tools.common import describe
from midge.tools.output import make_formatter

MSG = Message("a/b", b"hi there", qos=1, retain=True, packet_id=7)


def fmt(spec: str, message: Message = MSG, eol: bool = False) -> bytes | None:
    return make_formatter(spec, verbose=False, eol=eol)(message)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("%t", b"a/b"),
        ("%p", b"hi there"),
        ("%q %r %l %m", b"1 1 8 7"),
        ("%x", b"6869207468657265"),
        ("%X", b"6869207468657265".upper()),
        ("%%t", b"%t"),
        ("%6t|", b"   a/b|"),
        ("%-6t|", b"a/b   |"),
        ("%.1t", b"a"),
        ("%05l", b"00008"),
        ("%-05l|", b"8    |"),
        (r"%t\t%p\n", b"a/b\thi there\n"),
        (r"\0\\\e", b"\0\\\x1b"),
        ("%A%C%D%E%F%P%R%S", b""),  # MQTT 5 properties: none in 3.1.1
        ("@@ %z", b"@ %z"),  # unknown % sequences are printed as they are
    ],
)
def test_format_sequences(spec: str, expected: bytes):
    assert fmt(spec) == expected


def test_time_sequences():
    out = fmt("%I|%U|@Y|@N")
    assert out is not None
    iso, unix, year, nanos = out.decode().split("|")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", iso)
    assert re.fullmatch(r"\d+\.\d{9}", unix)
    assert iso.startswith(year) and re.fullmatch(r"\d{9}", nanos)


def test_mosquitto_json_sequences():
    plain = json.loads(fmt("%j") or b"")
    assert plain["topic"] == "a/b" and plain["payload"] == "hi there"
    assert plain["qos"] == 1 and plain["retain"] == 1 and "tst" in plain
    embedded = Message("j", b'{"t": 21.5}')
    assert json.loads(fmt("%J", embedded) or b"")["payload"] == {"t": 21.5}
    assert fmt("%J", MSG) is None  # not JSON: skipped (mosquitto prints an error)


def test_json_shortcut_text_and_binary_payloads():
    text = json.loads(fmt("json", eol=True) or b"")
    assert text == {
        "topic": "a/b", "payload": "hi there", "encoding": "utf-8",
        "qos": 1, "retain": True, "dup": False, "mid": 7,
    }  # fmt: skip
    binary = Message("b", b"\xff\x00\xfe")
    record = json.loads(fmt("json", binary) or b"")
    assert record["encoding"] == "base64"
    assert base64.b64decode(record["payload"]) == b"\xff\x00\xfe"
    assert fmt("json", eol=True).endswith(b"}\n")  # type: ignore[union-attr]


def test_default_verbose_and_no_eol():
    assert make_formatter(None, False, True)(MSG) == b"hi there\n"
    assert make_formatter(None, False, False)(MSG) == b"hi there"
    assert make_formatter(None, True, True)(MSG) == b"a/b hi there\n"
    empty = Message("a/b", b"")
    assert make_formatter(None, True, True)(empty) == b"a/b (null)\n"  # as mosquitto_sub -v
    assert make_formatter(None, False, True)(empty) == b"\n"
    assert make_formatter("%t", True, True)(MSG) == b"a/b\n"  # -F wins over -v


def test_debug_lines_name_packets_like_mosquitto():
    assert describe(Publish("a/b", b"hi", 1, False, True, 3)) == (
        "PUBLISH (d1, q1, r0, m3, 'a/b', ... (2 bytes))"
    )
    assert describe(SubAck(1, (0, 0x80))) == "SUBACK (Mid: 1, granted: [0, 128])"
