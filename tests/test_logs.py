"""Logs: the JSON line format (midge/logs.py), the client fields of the broker's
key lines, and the debug packet trace (midge/broker/trace.py), which never
shows a password, and shows payloads only with `log_payloads = true`."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokers import RunningMidge, password_text, pbkdf2_line, start_midge_with_log
from midge.broker.broker import Broker
from midge.broker.config import BrokerConfig, ConfigError, load_config
from midge.logs import JsonFormatter
from sansio import Harness

PASSWORD = "s3cret-Pa55word"
PAYLOAD = "payload-3b9f1c"


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("midge.broker", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_time_level_logger_event_and_the_client_fields() -> None:
    line = JsonFormatter().format(
        record(
            "closing %s: %s",
            "'c1'",
            "keep-alive",
            client_id="c1",
            user="al",
            address="a:1",
            reason="r",
        )
    )
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "midge.broker"
    assert entry["event"] == "closing 'c1': keep-alive"
    assert (entry["client_id"], entry["user"], entry["address"], entry["reason"]) == (
        "c1",
        "al",
        "a:1",
        "r",
    )
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"


def test_absent_fields_are_left_out_and_bytes_and_tracebacks_stay_json() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = record("x %r", b"\xff\x00", user=None, payload=b"\x01")
        made.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(made))
    assert "user" not in entry
    assert entry["payload"] == "b'\\x01'"
    assert entry["event"] == "x b'\\xff\\x00'"
    assert "ValueError: boom" in entry["exception"]


def test_the_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match="log_format"):
        BrokerConfig(log_format="xml").validate()
    with pytest.raises(ConfigError, match="sys_interval"):
        BrokerConfig(sys_interval=-1).validate()
    assert load_config(None, log_level="debug").log_payloads is False


def test_the_trace_costs_one_boolean_when_not_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="midge")
    assert Broker(BrokerConfig()).trace is False
    caplog.set_level(logging.DEBUG, logger="midge.trace")
    assert Broker(BrokerConfig()).trace is True


def traced_harness(caplog: pytest.LogCaptureFixture, **config: object) -> Harness:
    caplog.set_level(logging.DEBUG, logger="midge.trace")
    return Harness(BrokerConfig(**config).validate())  # type: ignore[arg-type]


def test_the_trace_has_a_line_per_packet_in_and_out(caplog: pytest.LogCaptureFixture) -> None:
    harness = traced_harness(caplog)
    sub = harness.connect("sub")
    sub.subscribed(("a/b", 1))
    pub = harness.connect("pub", username="alice", password=PASSWORD.encode())
    pub.published("a/b", PAYLOAD.encode(), 1)
    lines = [vars(r) for r in caplog.records if r.name == "midge.trace"]
    seen = [(line["direction"], line["packet"], line["client_id"]) for line in lines]
    assert ("in", "CONNECT", "pub") in seen
    assert ("out", "CONNACK", "pub") in seen
    assert ("in", "PUBLISH", "pub") in seen and ("out", "PUBACK", "pub") in seen
    assert ("out", "PUBLISH", "sub") in seen
    publish = next(i for i in lines if i["packet"] == "PUBLISH" and i["direction"] == "out")
    assert (publish["topic"], publish["qos"], publish["length"]) == ("a/b", 1, len(PAYLOAD))
    assert publish["packet_id"] == 1
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "user='alice'" in text
    assert PASSWORD not in text and PAYLOAD not in text


def test_payloads_are_traced_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    harness = traced_harness(caplog, log_payloads=True)
    sub = harness.connect("sub")
    sub.subscribed("a/b")
    harness.connect("pub", username="u", password=PASSWORD.encode()).published(
        "a/b", PAYLOAD.encode()
    )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert text.count(PAYLOAD) == 2  # in from the publisher, out to the subscriber
    assert PASSWORD not in text


def test_mqtt5_packets_are_traced_from_their_bytes(caplog: pytest.LogCaptureFixture) -> None:
    harness = traced_harness(caplog, log_payloads=True)
    sub = harness.open()
    sub.connect("sub5", level=5)
    sub.subscribed(("t/5", 1))
    harness.connect("pub").published("t/5", b"five", 1)
    out = [
        vars(r)
        for r in caplog.records
        if vars(r).get("direction") == "out" and vars(r).get("packet") == "PUBLISH"
    ]
    assert [(i["topic"], i["length"], i["payload"]) for i in out] == [("t/5", 4, b"five")]


# --------------------------------------------------------- a real midge serve


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwd"
    path.write_text(password_text([pbkdf2_line("alice", PASSWORD)]), encoding="utf-8")
    return path


@pytest.fixture
def json_midge(password_file: Path) -> Iterator[RunningMidge]:
    config = f'log_format = "json"\npassword_file = "{password_file}"\nstore = "memory"\n'
    with start_midge_with_log(config, extra_args=["--log-level", "debug"]) as run:
        yield run


def mosquitto(run: RunningMidge, *args: str) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", run.host, "-p", str(run.port), *args],
        timeout=10,
        check=False,
        capture_output=True,
    )


@pytest.mark.timeout(60)
def test_json_serve_writes_one_object_per_line_with_no_secret(json_midge: RunningMidge) -> None:
    mosquitto(json_midge, "-t", "a/b", "-m", PAYLOAD, "-q", "1", "-u", "alice", "-P", PASSWORD)
    mosquitto(json_midge, "-t", "a/b", "-m", PAYLOAD, "-u", "alice", "-P", "wrong")
    json_midge.log.wait_for("login refused")
    json_midge.log.wait_for(r"closing .*CONNECT refused|closing .*refused", count=1)
    entries = [json.loads(line) for line in json_midge.log.lines()]  # every line is JSON
    assert all({"time", "level", "logger", "event"} <= set(entry) for entry in entries)
    connected = [e for e in entries if "connected from" in e["event"]]
    assert connected and connected[0]["user"] == "alice" and connected[0]["address"]
    assert " as user 'alice' (" in connected[0]["event"]
    refused = next(e for e in entries if e["event"].startswith("login refused"))
    assert (refused["user"], refused["reason"]) == ("alice", "bad_user_name_or_password")
    assert any(e["logger"] == "midge.trace" and e.get("packet") == "PUBLISH" for e in entries)
    text = json_midge.log.text()
    assert PASSWORD not in text and PAYLOAD not in text


@pytest.mark.timeout(60)
def test_the_text_format_is_unchanged_for_anonymous_clients() -> None:
    with start_midge_with_log('store = "memory"\n') as run:
        mosquitto(run, "-t", "a/b", "-m", "x", "-i", "textclient")
        line = run.log.wait_for(r"client 'textclient' connected")[0]
        closing = run.log.wait_for(r"closing 'textclient'")[0]
    assert " INFO midge.broker: client 'textclient' connected from 127.0.0.1:" in line
    assert line.rstrip().endswith("over mqtt (MQTT level 4, clean session 1, keep-alive 60 s)")
    assert " INFO midge.broker: closing 'textclient' (127.0.0.1:" in closing
    assert not line.startswith("{")
