"""MQTT.js (the npm `mqtt` package, the client browsers use) against Midge.

One Midge opens a TCP, a WebSocket and a secure WebSocket listener; MQTT.js
runs in Node as tests/interop_js/mqttjs_client.mjs and prints one JSON line
per event, and paho-mqtt over TCP is the peer on the other side. The
certificates are made by openssl for this run, never committed.
test_mqttjs5.py (MQTT.js with protocolVersion 5) uses this module's fixtures
and runner.

Needs `node` and the pinned packages: `cd tests/interop_js && npm ci
--ignore-scripts` (`scripts/setup --dev` does it). Without them the tests
skip, except when the environment variable CI is set and node exists: then
a missing node_modules is a failure, so CI cannot go green by skipping.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration_support import paho, unique

from brokers import HOST, free_port, start_midge, stop, wait_for_port
from certificates import Certificates, make_certificates

JS_DIR = Path(__file__).resolve().parents[1] / "interop_js"
SCRIPT = JS_DIR / "mqttjs_client.mjs"
INSTALL = "cd tests/interop_js && npm ci --ignore-scripts (or: scripts/setup --dev)"
TIMEOUT = 10.0  # seconds for one MQTT.js run; the script has its own hard limit below it
LINGER_MS = "300"  # how long MQTT.js keeps listening after the last expected message

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, once MQTT.js is installed in tests/interop_js."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed (MQTT.js tests need Node.js 18 or newer)")
    if not (JS_DIR / "node_modules" / "mqtt" / "package.json").is_file():
        message = f"MQTT.js is not installed in tests/interop_js; run: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    return make_certificates(tmp_path_factory.mktemp("mqttjs-tls"))


@dataclass(frozen=True)
class Ports:
    tcp: int
    ws: int
    wss: int


@pytest.fixture(scope="module")
def broker(node: str, certs: Certificates) -> Iterator[Ports]:
    """One Midge with tcp (port from its log line), ws and wss listeners."""
    ws, wss = free_port(), free_port()
    config = (
        "allow_anonymous = true\n"
        "[[listeners]]\nport = 0\n"  # --port 0 moves this one; the log names its port
        f'[[listeners]]\nport = {ws}\ntransport = "ws"\n'
        f'[[listeners]]\nport = {wss}\ntransport = "wss"\n'
        f'certfile = "{certs.server_cert}"\nkeyfile = "{certs.server_key}"\n'
    )
    with start_midge(config_toml=config) as (_host, tcp, _process):
        for port in (ws, wss):
            wait_for_port(port, TIMEOUT)
        yield Ports(tcp, ws, wss)


def _url(ports: Ports, transport: str) -> str:
    return {
        "tcp": f"mqtt://{HOST}:{ports.tcp}",
        "ws": f"ws://{HOST}:{ports.ws}/mqtt",
        "wss": f"wss://{HOST}:{ports.wss}/mqtt",
    }[transport]


# ------------------------------------------------------------ MQTT.js runner


class MqttJs:
    """One run of mqttjs_client.mjs; its stdout JSON lines are read on a thread."""

    def __init__(self, node: str, args: list[str]) -> None:
        timeout_ms = str(int((TIMEOUT - 1) * 1000))  # the script gives up before we do
        self.process = subprocess.Popen(
            [node, str(SCRIPT), "--timeout", timeout_ms, *args],
            cwd=JS_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "unparsable", "line": line}
            self.events.append(event)
            self._queue.put(event)
        self._queue.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self._stderr.extend(self.process.stderr)

    def _describe(self) -> str:
        stderr = "".join(self._stderr).strip() or "(empty)"
        return f"MQTT.js events: {self.events}\nstderr: {stderr}"

    def wait_for(self, name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next event called `name`; an error event or exit first fails the test."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if event is None:
                self.process.wait(timeout=TIMEOUT)
                raise AssertionError(
                    f"MQTT.js exited ({self.process.returncode}) before {name!r}\n"
                    + self._describe()
                )
            if event["event"] in ("error", "unparsable"):
                raise AssertionError(f"MQTT.js failed before {name!r}\n" + self._describe())
            if event["event"] == name:
                return event
        raise AssertionError(f"no MQTT.js {name!r} event within {timeout}s\n" + self._describe())

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for the exit (killing the process after `timeout`); its exit code."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(self.process)
            raise AssertionError(
                f"MQTT.js still running after {timeout}s\n" + self._describe()
            ) from None
        for thread in self._threads:
            thread.join(timeout=TIMEOUT)
        return self.process.returncode

    def finish_ok(self, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        code = self.finish(timeout)
        assert code == 0, f"MQTT.js exited with {code}\n" + self._describe()
        return self.events

    def messages(self) -> list[tuple[str, bytes, int, bool]]:
        """(topic, payload, qos, retain) of every message received, in order."""
        out = []
        for event in self.events:
            if event["event"] == "message":
                payload = base64.b64decode(event["payload_b64"])
                assert len(payload) == event["length"], event["topic"]
                assert event["dup"] is False, event
                out.append((event["topic"], payload, event["qos"], event["retain"]))
        return out

    def stderr(self) -> str:
        return "".join(self._stderr)


@contextmanager
def mqttjs(node: str, *args: str) -> Iterator[MqttJs]:
    """Run MQTT.js; whatever the test does, the process is stopped (by its PID) on exit."""
    run = MqttJs(node, list(args))
    try:
        yield run
    finally:
        stop(run.process)


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


# --------------------------------------------------------------------- tests


def test_ws_subscriber_receives_paho_tcp_publishes(node: str, broker: Ports) -> None:
    big = random.Random(1883).randbytes(100 * 1024)  # binary, every byte value
    sent = [
        ("a/zero", b"qos 0", 0),
        ("a/one", b"qos 1", 1),
        ("a/two", "qos 2 \u00e9\u00e8 \U0001f41d".encode(), 2),
        ("a/empty", b"", 1),
        ("a/bin/big", big, 1),
        ("a/bin/raw", bytes(range(256)), 2),
    ]
    args = ["--url", _url(broker, "ws"), "--mode", "sub", "--subscribe", "a/#", "--sub-qos", "1"]
    args += ["--expect", str(len(sent)), "--linger", LINGER_MS]
    with mqttjs(node, *args) as js, paho(HOST, broker.tcp) as publisher:
        assert js.wait_for("connack") == {
            "event": "connack",
            "returnCode": 0,
            "sessionPresent": False,
        }
        assert js.wait_for("suback")["granted"] == [{"topic": "a/#", "qos": 1}]
        js.wait_for("ready")
        for topic, payload, qos in sent:
            publisher.publish(topic, payload, qos)
        events = js.finish_ok()
    assert _kinds(events)[-1] == "done"
    # Granted QoS 1 caps the delivery: min(publish QoS, 1); one publisher, so in order.
    assert js.messages() == [(topic, payload, min(qos, 1), False) for topic, payload, qos in sent]


def test_wss_qos2_publish_arrives_exactly_once(
    node: str, broker: Ports, certs: Certificates
) -> None:
    topic = unique("wss/q2/")
    payloads = ["first", "second \u2603", "third"]
    with paho(HOST, broker.tcp) as subscriber:
        assert subscriber.subscribe(topic, 2)[0].value == 2
        args = ["--url", _url(broker, "wss"), "--ca", str(certs.ca), "--mode", "pub"]
        args += ["--publish", topic, "--qos", "2"]
        for payload in payloads:
            args += ["--payload", payload]
        with mqttjs(node, *args) as js:
            events = js.finish_ok()
        assert _kinds(events) == ["connack", "ready", "published", "published", "published", "done"]
        received = subscriber.get_many(len(payloads))
        assert [(m.topic, m.payload.decode(), m.qos, m.retain) for m in received] == [
            (topic, payload, 2, False) for payload in payloads
        ]
        time.sleep(0.3)  # a duplicate would come now
        assert subscriber.drain() == []


def test_wss_with_an_unknown_ca_is_refused_by_mqttjs(node: str, broker: Ports) -> None:
    """Without --ca MQTT.js must reject the test CA: the wss test really checks the chain."""
    args = ["--url", _url(broker, "wss"), "--mode", "pub", "--publish", "x", "--payload", "x"]
    with mqttjs(node, *args) as js:
        code = js.finish()
    assert code == 1, js.events
    assert _kinds(js.events) == ["error"]
    assert "certificate" in js.events[0]["message"], js.events


def test_retained_message_delivered_to_mqttjs_on_subscribe(node: str, broker: Ports) -> None:
    topic = unique("retained/")
    with paho(HOST, broker.tcp) as publisher:
        publisher.publish(topic, b"kept", qos=1, retain=True)
        args = ["--url", _url(broker, "ws"), "--mode", "sub", "--subscribe", topic]
        args += ["--sub-qos", "1", "--expect", "2", "--linger", LINGER_MS]
        with mqttjs(node, *args) as js:
            assert js.wait_for("suback")["granted"] == [{"topic": topic, "qos": 1}]
            js.wait_for("ready")
            # Delivered because of the live subscription: retain flag 0 [MQTT-3.3.1-9].
            publisher.publish(topic, b"live", qos=1, retain=True)
            js.finish_ok()
        publisher.publish(topic, b"", qos=1, retain=True)  # clear it
    assert js.messages() == [(topic, b"kept", 1, True), (topic, b"live", 1, False)]


@pytest.mark.parametrize("transport", ["tcp", "ws", "wss"])
def test_mqttjs_round_trip(node: str, broker: Ports, certs: Certificates, transport: str) -> None:
    """MQTT.js publishes to its own subscription at QoS 2; paho over TCP sees the same."""
    topic = unique(f"rt/{transport}/")
    payloads = [bytes(range(256)), b"\x00\xff" * 1000, b"end"]
    args = ["--url", _url(broker, transport), "--mode", "pubsub", "--subscribe", topic]
    args += ["--sub-qos", "2", "--publish", topic, "--qos", "2", "--payload-encoding", "hex"]
    args += ["--expect", str(len(payloads)), "--linger", LINGER_MS]
    if transport == "wss":
        args += ["--ca", str(certs.ca)]
    for payload in payloads:
        args += ["--payload", payload.hex()]
    with paho(HOST, broker.tcp) as watcher:
        watcher.subscribe(topic, 1)
        with mqttjs(node, *args) as js:
            events = js.finish_ok()
        seen = watcher.get_many(len(payloads))
        time.sleep(0.1)
        assert watcher.drain() == []
    assert _kinds(events).count("published") == len(payloads)
    assert js.messages() == [(topic, payload, 2, False) for payload in payloads]
    assert [(m.payload, m.qos) for m in seen] == [(payload, 1) for payload in payloads]
