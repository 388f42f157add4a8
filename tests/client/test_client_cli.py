"""`midge pub` / `midge sub` as processes, against Midge and Mosquitto, and with
mosquitto_pub / mosquitto_sub on the other end.

`midge sub -d` reports its SUBACK on stderr: tests publish only after it, so
nothing depends on a sleep. Every process has a timeout and is stopped by PID.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest
from client_support import HOST, WAIT, Tool, midge, unique

from brokers import Broker, free_port
from certificates import Certificates

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
        reason="needs mosquitto_pub and mosquitto_sub (apt-get install mosquitto-clients)",
    ),
]


def where(broker: Broker) -> list[str]:
    host, port, _ = broker
    return ["-h", host, "-p", str(port)]


def subscriber(broker: Broker, *args: str) -> Tool:
    """A running `midge sub -d ...`, returned once the broker acknowledged its SUBSCRIBE."""
    tool = Tool(midge("sub", *where(broker), "-d", *args))
    tool.wait_for_stderr("received SUBACK")
    return tool


def run(args: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    return Tool(args, stdin).finish()


def pub(broker: Broker, *args: str, stdin: bytes | None = None) -> None:
    status, _, err = run(midge("pub", *where(broker), *args), stdin)
    assert status == 0, err


# ------------------------------------------------------------- both directions


@pytest.mark.parametrize("publisher", ["midge", "mosquitto_pub"])
def test_pub_to_midge_sub(broker: Broker, publisher: str):
    topic = unique("c/")
    sub = subscriber(broker, "-t", f"{topic}/#", "-v", "-q", "2", "-C", "2")
    command = midge("pub") if publisher == "midge" else ["mosquitto_pub"]
    for sub_topic, message, qos in (("b", "hi", "2"), ("c", "two words", "1")):
        args = [*command, *where(broker), "-t", f"{topic}/{sub_topic}", "-m", message, "-q", qos]
        status, _, err = run(args)
        assert status == 0, err
    status, out, err = sub.finish()
    assert (status, out) == (0, f"{topic}/b hi\n{topic}/c two words\n"), err


def test_midge_pub_to_mosquitto_sub(broker: Broker):
    """mosquitto_sub prints its SUBACK only to stdout: publish until it got one (-C 1)."""
    topic = unique("m/")
    sub = Tool(["mosquitto_sub", *where(broker), "-t", topic, "-v", "-q", "2", "-C", "1"])
    deadline = time.monotonic() + WAIT
    while sub.process.poll() is None and time.monotonic() < deadline:
        pub(broker, "-t", topic, "-m", "hi", "-q", "2")
        time.sleep(0.1)
    status, out, err = sub.finish()
    assert (status, out) == (0, f"{topic} hi\n"), err


def test_mqtt_3_1_with_persistent_session(broker: Broker):
    """-c keeps the session: a message published while the subscriber is away arrives later."""
    topic, client_id = unique("p/"), unique("cs")
    session = ["-V", "mqttv31", "-c", "-i", client_id, "-q", "1", "-t", topic]
    status, _, err = run(midge("sub", *where(broker), *session, "-E"))  # subscribe, leave
    assert status == 0, err
    pub(broker, "-V", "mqttv31", "-t", topic, "-m", "while away", "-q", "1")
    status, out, err = run(midge("sub", *where(broker), *session, "-C", "1"))
    assert (status, out) == (0, "while away\n"), err


# ------------------------------------------------------------ message sources


def test_line_null_file_and_json_output(broker: Broker, tmp_path: Path):
    topic = unique("j/")
    sub = subscriber(broker, "-t", topic, "-q", "1", "-C", "5", "-F", "json")
    pub(broker, "-t", topic, "-q", "1", "-l", stdin=b"one\n\nthree")
    pub(broker, "-t", topic, "-n")
    binary = tmp_path / "blob"
    binary.write_bytes(b"\xff\xfe\x00raw")
    pub(broker, "-t", topic, "-f", str(binary), "-q", "2")
    status, out, err = sub.finish()
    assert status == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["payload"], r["encoding"]) for r in records] == [
        ("one", "utf-8"), ("", "utf-8"), ("three", "utf-8"), ("", "utf-8"),
        ("//4AcmF3", "base64"),
    ]  # fmt: skip
    assert [r["qos"] for r in records] == [1, 1, 1, 0, 1]
    assert {r["topic"] for r in records} == {topic}


def test_format_retained_skip_and_filter_out(broker: Broker):
    topic = unique("f/")
    pub(broker, "-t", f"{topic}/old", "-m", "stale", "-r", "-q", "1")
    sub = subscriber(
        broker,
        "-t",
        f"{topic}/#",
        "-q",
        "1",
        "-R",
        "-T",
        f"{topic}/noise",
        "-C",
        "1",
        "-F",
        r"%t|%q|%r|%p",
    )
    pub(broker, "-t", f"{topic}/noise", "-m", "skipped")
    pub(broker, "-t", f"{topic}/new", "-m", "fresh", "-q", "1")
    status, out, err = sub.finish()
    assert (status, out) == (0, f"{topic}/new|1|0|fresh\n"), err
    pub(broker, "-t", f"{topic}/old", "-n", "-r")  # clear the retained message


def test_stdin_as_one_message_repeated_no_eol(broker: Broker):
    topic = unique("s/")
    sub = subscriber(broker, "-t", topic, "-C", "3", "-N")
    pub(broker, "-t", topic, "-s", "--repeat", "3", "-q", "1", stdin=b"a\nb\n")
    status, out, err = sub.finish()
    assert (status, out) == (0, "a\nb\n" * 3), err


def test_will_is_published_when_the_process_dies(broker: Broker):
    topic = unique("w/")
    watcher = subscriber(broker, "-t", topic, "-C", "1", "-v")
    victim = subscriber(
        broker,
        "-t",
        unique("x/"),
        "--will-topic",
        topic,
        "--will-payload",
        "bye",
        "--will-qos",
        "1",
    )
    victim.process.send_signal(signal.SIGKILL)
    victim.finish()
    status, out, err = watcher.finish()
    assert (status, out) == (0, f"{topic} bye\n"), err


def test_sigterm_disconnects_cleanly_without_the_will(broker: Broker):
    topic = unique("t/")
    victim = subscriber(broker, "-t", unique("x/"), "--will-topic", topic, "--will-payload", "no")
    watcher = subscriber(broker, "-t", topic, "-W", "1")
    victim.process.send_signal(signal.SIGTERM)
    status, _, err = victim.finish()
    assert status == 0 and "sending DISCONNECT" in err
    status, out, _ = watcher.finish()
    assert (status, out) == (27, "")


# ---------------------------------------------------------------- exit status


def test_timeout_exits_27(midge_broker: Broker):
    started = time.monotonic()
    status, out, err = run(midge("sub", *where(midge_broker), "-t", unique("q/"), "-W", "0.5"))
    assert (status, out, err) == (27, "", "Timed out\n")
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("tool", ["pub", "sub"])
def test_no_broker_listening_exits_1(tool: str):
    port = free_port()
    args = ["-t", "a", "-m", "x"] if tool == "pub" else ["-t", "a"]
    status, _, err = run(midge(tool, "-h", HOST, "-p", str(port), *args))
    assert status == 1
    assert err == f"midge {tool}: cannot connect to {HOST}:{port}: Connection refused\n"


@pytest.mark.parametrize("name", ["midge", "mosquitto"])
def test_refused_credentials_exit_with_the_connack_code(auth_brokers: dict[str, Broker], name: str):
    broker = auth_brokers[name]
    host, port, _ = broker
    status, _, err = run(
        midge("pub", *where(broker), "-t", "a", "-m", "x", "-u", "alice", "-P", "no")
    )
    expected = {"midge": (4, "bad user name or password"), "mosquitto": (5, "not authorized")}
    code, meaning = expected[name]
    assert status == code
    assert f"{host}:{port}" in err and f"CONNACK {code} ({meaning})" in err
    status, _, err = run(midge("sub", *where(broker), "-t", "a"))  # anonymous
    assert status == 5 and "not authorized" in err
    status, _, err = run(
        midge("pub", *where(broker), "-t", "a", "-m", "x", "-u", "alice", "-P", "s3cret")
    )
    assert status == 0, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pub", "-t", "a"], "a message is required"),
        (["pub", "-m", "x"], "a topic is required"),
        (["pub", "-t", "a/#", "-m", "x"], "invalid topic"),
        (["pub", "-t", "a", "-m", "x", "-n"], "not allowed with argument"),
        (["pub", "-t", "a", "-m", "x", "-q", "3"], "QoS must be 0, 1 or 2"),
        (["sub"], "at least one topic filter"),
        (["sub", "-t", "a/#/b"], "invalid topic filter"),
        (["sub", "-t", "a", "-c"], "-c needs a client id"),
        (["sub", "-t", "a", "-V", "311", "--retain-as-published"], "need MQTT 5.0"),
        (["sub", "-t", "a", "-P", "pw"], "-P needs -u"),
        (["sub", "-t", "a", "--will-payload", "x"], "need --will-topic"),
        (["sub", "-t", "a", "--cert", "c.pem"], "--cert and --key go together"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str):
    status, out, err = run(midge(*args))
    assert status == 2 and out == ""
    assert err.startswith(f"usage: midge {args[0]}") and message in err


def test_help_is_double_dash_only():
    status, out, _ = run(midge("sub", "--help"))
    assert status == 0 and "-h HOST, --host HOST" in out and "-W SECONDS" in out


# ------------------------------------------------------------------------ TLS


def test_tls_with_cafile(tls_mosquitto: tuple[Broker, int], tls_files: Certificates):
    _, port = tls_mosquitto
    tls = ["-h", HOST, "-p", str(port), "--cafile", str(tls_files.ca)]
    topic = unique("tls/")
    sub = Tool(midge("sub", *tls, "-d", "-t", topic, "-C", "1"))
    sub.wait_for_stderr("received SUBACK")
    status, _, err = run(midge("pub", *tls, "-t", topic, "-m", "over tls", "-q", "1"))
    assert status == 0, err
    assert sub.finish()[:2] == (0, "over tls\n")
    status, _, err = run(midge("pub", "-h", HOST, "-p", str(port), "--insecure", "-t", "a", "-n"))
    assert status == 1 and "TLS error" in err  # --insecure skips the name, not the chain


def test_debug_lines_go_to_stderr(midge_broker: Broker):
    status, out, err = run(
        midge("pub", *where(midge_broker), "-d", "-t", "d", "-m", "x", "-q", "1")
    )
    assert status == 0 and out == ""
    verbs = [line.split(" ", 3)[2:4] for line in err.splitlines()]
    assert [v[0] + " " + v[1].split(" ")[0] for v in verbs] == [
        "sending CONNECT", "received CONNACK", "sending PUBLISH", "received PUBACK",
        "sending DISCONNECT",
    ]  # fmt: skip


def test_helper_stops_a_process_that_overruns():
    """Guard for the helpers: a process that overruns is stopped and reported."""
    tool = Tool(["sleep", "30"])
    with pytest.raises(AssertionError, match="did not exit"):
        tool.finish(timeout=0.2)
    assert tool.process.poll() is not None
