"""Debian's mosquitto_pub / mosquitto_sub (libmosquitto) against a real Midge process.

mosquitto_sub runs with -d so its debug lines tell when the SUBACK arrived:
only then is anything published, so no test depends on a sleep. Message lines
are printed with -F "%r %q %t %p" (retain flag, QoS, topic, payload) unless a
test needs the plain -v output.
"""

from __future__ import annotations

import hashlib
import queue
import random
import shutil
import subprocess
import threading
import time

import pytest
from integration_support import unique

from brokers import Broker

TOOLS = ("mosquitto_pub", "mosquitto_sub", "stdbuf")
pytestmark = [
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in TOOLS),
        reason="needs mosquitto_pub, mosquitto_sub (apt-get install mosquitto-clients), stdbuf",
    ),
    pytest.mark.timeout(60),
]

SUB_SECONDS = 15  # mosquitto_sub -W: it exits by itself after this long
PROCESS_TIMEOUT = SUB_SECONDS + 5
FORMAT = "%r %q %t %p"
QOS = pytest.mark.parametrize("qos", [0, 1, 2])
# mosquitto_sub's debug lines go through stdio: line-buffer them so the SUBACK
# line is seen while the process runs (coreutils stdbuf).
LINE_BUFFERED = ["stdbuf", "-oL"]


def pub(broker: Broker, *args: str, stdin: bytes | None = None) -> None:
    host, port, _ = broker
    result = subprocess.run(
        ["mosquitto_pub", "-h", host, "-p", str(port), *args],
        input=stdin,
        capture_output=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (result.returncode, result.stderr.decode(errors="replace"))


class Sub:
    """A running mosquitto_sub; `wait_subscribed` returns once its SUBACK is in."""

    def __init__(self, broker: Broker, *args: str) -> None:
        host, port, _ = broker
        self.process = subprocess.Popen(
            [
                *LINE_BUFFERED,
                "mosquitto_sub",
                "-h",
                host,
                "-p",
                str(port),
                "-d",
                "-W",
                str(SUB_SECONDS),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._chunks: queue.Queue[bytes] = queue.Queue()
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(1 << 20):
            self._chunks.put(chunk)
        self._chunks.put(b"")

    def _take(self, timeout: float) -> bool:
        chunk = self._chunks.get(timeout=timeout)
        self.output += chunk
        return bool(chunk)

    def wait_subscribed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while b"Subscribed (mid:" not in self.output:
            remaining = deadline - time.monotonic()
            try:
                assert remaining > 0 and self._take(remaining), "mosquitto_sub ended early"
            except queue.Empty:
                break
        assert b"Subscribed (mid:" in self.output, f"no SUBACK: {self.output!r}"

    def finish(self) -> bytes:
        """Wait for exit (-C count reached, -E, or -W); all stdout; exit code 0 checked."""
        try:
            returncode = self.process.wait(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise
        for _ in range(100_000):
            try:
                if not self._take(timeout=5):
                    break
            except queue.Empty:
                break
        assert self.process.stderr is not None
        errors = self.process.stderr.read().decode(errors="replace")
        assert returncode == 0, f"mosquitto_sub exit {returncode}: {errors} {self.output!r}"
        return self.output

    def lines(self) -> list[str]:
        """Message lines only (debug lines removed)."""
        return [
            line
            for line in self.finish().decode().splitlines()
            if not line.startswith(("Client ", "Subscribed (mid:"))
        ]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


def subscribe(broker: Broker, *args: str) -> Sub:
    sub = Sub(broker, *args)
    try:
        sub.wait_subscribed()
    except BaseException:
        sub.kill()
        raise
    return sub


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_sub_receives_what_pub_sends(midge_broker: Broker, pub_qos: int, sub_qos: int):
    base = unique("mc")
    sub = subscribe(midge_broker, "-t", f"{base}/a/#", "-q", str(sub_qos), "-F", FORMAT, "-C", "3")
    for payload in ("hi", "second message", "3"):
        pub(midge_broker, "-t", f"{base}/a/b", "-m", payload, "-q", str(pub_qos))
    qos = min(pub_qos, sub_qos)
    assert sub.lines() == [
        f"0 {qos} {base}/a/b hi",
        f"0 {qos} {base}/a/b second message",
        f"0 {qos} {base}/a/b 3",
    ]


@pytest.mark.parametrize("version", ["mqttv31", "mqttv311"])
def test_verbose_output_and_protocol_versions(midge_broker: Broker, version: str):
    base = unique("mv")
    sub = subscribe(
        midge_broker,
        "-V",
        version,
        "-i",
        unique("s"),
        "-t",
        f"{base}/#",
        "-v",
        "-q",
        "1",
        "-C",
        "1",
    )
    pub(midge_broker, "-V", version, "-i", unique("p"), "-t", f"{base}/a/b", "-m", "hi", "-q", "1")
    assert sub.lines() == [f"{base}/a/b hi"]


@QOS
def test_retained_message_reaches_new_subscriber(midge_broker: Broker, qos: int):
    base = unique("mr")
    pub(midge_broker, "-t", f"{base}/kept", "-m", "old", "-q", str(qos), "-r")
    pub(midge_broker, "-t", f"{base}/kept", "-m", "retained value", "-q", str(qos), "-r")
    pub(midge_broker, "-t", f"{base}/gone", "-m", "x", "-q", str(qos), "-r")
    pub(midge_broker, "-t", f"{base}/gone", "-n", "-r")  # empty retained: deletes
    pub(midge_broker, "-t", f"{base}/live", "-m", "not retained", "-q", str(qos))
    # --retained-only prints the retained messages, then exits at the first live one.
    sub = subscribe(midge_broker, "-t", f"{base}/#", "-q", "2", "-F", FORMAT, "--retained-only")
    pub(midge_broker, "-t", f"{base}/end", "-m", "live")
    assert sub.lines() == [f"1 {qos} {base}/kept retained value"]
    pub(midge_broker, "-t", f"{base}/kept", "-n", "-r")


@pytest.mark.parametrize("qos", [1, 2])
def test_persistent_subscriber_gets_messages_queued_while_away(midge_broker: Broker, qos: int):
    base = unique("mp")
    client_id = unique("ps")
    args = ("-c", "-i", client_id, "-q", str(qos), "-t", f"{base}/#", "-F", FORMAT)
    subscribe(midge_broker, *args, "-E").finish()  # subscribe, then leave (-E)
    pub(midge_broker, "-t", f"{base}/x", "-m", "zero", "-q", "0")  # not queued offline
    for number in range(5):
        pub(midge_broker, "-t", f"{base}/x", "-m", f"queued {number}", "-q", str(qos))
    back = Sub(midge_broker, *args, "-C", "5")
    assert back.lines() == [f"0 {qos} {base}/x queued {number}" for number in range(5)]
    # A clean session with the same id discards the stored session.
    subscribe(midge_broker, "-i", client_id, "-t", f"{base}/none", "-E").finish()
    pub(midge_broker, "-t", f"{base}/x", "-m", "lost", "-q", str(qos))
    again = subscribe(midge_broker, *args, "-C", "1")
    pub(midge_broker, "-t", f"{base}/x", "-m", "fresh", "-q", str(qos))
    assert again.lines() == [f"0 {qos} {base}/x fresh"]
    subscribe(midge_broker, "-i", client_id, "-t", f"{base}/none", "-E").finish()


@QOS
def test_many_lines_from_stdin(midge_broker: Broker, qos: int):
    base = unique("ml")
    count = 1000
    sub = subscribe(midge_broker, "-t", f"{base}/#", "-q", str(qos), "-v", "-C", str(count))
    lines = [f"line {number} {'x' * (number % 50)}" for number in range(count)]
    pub(
        midge_broker,
        "-t",
        f"{base}/l",
        "-q",
        str(qos),
        "-l",
        stdin="\n".join(lines).encode() + b"\n",
    )
    assert sub.lines() == [f"{base}/l {line}" for line in lines]


def _large_payload_round_trip(broker: Broker, tmp_path, size: int, qos: int) -> None:
    payload = random.Random(size + qos).randbytes(size)
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    topic = f"{unique('big')}/x"
    sub = subscribe(broker, "-t", topic, "-q", str(qos), "-F", "%t %p", "-N", "-C", "1")
    pub(broker, "-t", topic, "-q", str(qos), "-f", str(source))
    output = sub.finish()
    assert f"'{topic}', ... ({size} bytes)".encode() in output
    start = output.index(f"{topic} ".encode(), output.index(b"received PUBLISH"))
    received = output[start + len(topic) + 1 : start + len(topic) + 1 + size]
    assert len(received) == size
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()


@QOS
def test_one_megabyte_payload_from_file(midge_broker: Broker, tmp_path, qos: int):
    _large_payload_round_trip(midge_broker, tmp_path, 1024 * 1024, qos)


@QOS
def test_payload_needing_four_byte_remaining_length(midge_broker: Broker, tmp_path, qos: int):
    size = 3 * 1024 * 1024  # remaining length > 2,097,151: four length bytes
    _large_payload_round_trip(midge_broker, tmp_path, size, qos)
