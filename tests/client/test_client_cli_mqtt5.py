"""`midge pub` / `midge sub` with MQTT 5.0: -V mqttv5, -D properties, -x, the
property sequences of -F and the JSON outputs; against Mosquitto 2.0.11 and
with mosquitto_pub / mosquitto_sub -V mqttv5 on the other end.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from client_support import WAIT, Tool, midge, unique

from brokers import Broker
from midge.client.events import Message
from midge.protocol.properties import Properties
from midge.tools.output import make_formatter
from midge.tools.properties import PropertyError, parse_properties

needs_clients = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
    reason="needs mosquitto_pub and mosquitto_sub (apt-get install mosquitto-clients)",
)
PROPS = Properties(
    payload_format_indicator=1,
    message_expiry_interval=30,
    content_type="text/plain",
    response_topic="r/t",
    correlation_data=b"cd",
    subscription_identifiers=(5,),
    user_properties=(("k", "v"), ("k", "w")),
)
MSG = Message("a/b", b"hi", qos=1, packet_id=7, properties=PROPS)


def fmt(spec: str, message: Message = MSG, pretty: bool = False) -> bytes | None:
    return make_formatter(spec, verbose=False, eol=False, pretty=pretty)(message)


# ------------------------------------------------------------------- output


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("%C|%D|%E|%F|%R|%S", b"text/plain|cd|30|1|r/t|5"),
        ("%P", b"k:v k:w"),
        ("%A", b""),  # no topic alias on this message
        ("%4E|%-4F|%04S", b"  30|1   |0005"),
        ("%.4C", b"text"),
    ],
)
def test_property_sequences(spec: str, expected: bytes):
    assert fmt(spec) == expected


def test_property_sequences_print_nothing_without_properties():
    assert fmt("%A%C%D%E%F%P%R%S", Message("t", b"")) == b""


def test_mosquitto_json_with_properties_as_mosquitto_writes_them():
    text = fmt("%j") or b""
    assert text.endswith(
        b'"properties":{"subscription-identifier":5,"content-type":"text/plain",'
        b'"correlation-data":"cd","response-topic":"r/t","payload-format-indicator":1,'
        b'"message-expiry-interval":30,"user-properties":{"k":"v","k":"w"}},"payload":"hi"}'
    )
    pretty = fmt("%j", pretty=True) or b""
    assert b'\n\t"properties":\t{\n\t\t"subscription-identifier":\t5,' in pretty
    assert b'\t\t"user-properties":\t{\n\t\t\t"k":\t"v",\n\t\t\t"k":\t"w"\n\t\t}\n\t},' in pretty
    assert b"properties" not in (fmt("%j", Message("t", b"")) or b"")


def test_json_output_includes_properties_losslessly():
    record = json.loads(fmt("json") or b"")
    assert record["properties"] == {
        "subscription-identifier": 5,
        "content-type": "text/plain",
        "correlation-data": "cd",
        "response-topic": "r/t",
        "payload-format-indicator": 1,
        "message-expiry-interval": 30,
        "user-properties": [["k", "v"], ["k", "w"]],
    }
    binary = Message("t", b"", properties=Properties(correlation_data=b"\xff"))
    assert json.loads(fmt("json", binary) or b"")["properties"] == {
        "correlation-data-base64": "/w=="
    }
    assert "properties" not in json.loads(fmt("json", Message("t", b"")) or b"")
    assert (fmt("json", pretty=True) or b"").startswith(b'{\n  "topic"')


# ----------------------------------------------------------------------- -D


def test_property_arguments_parse_like_mosquitto():
    parsed = parse_properties(
        "pub",
        [
            ["connect", "session-expiry-interval", "60"],
            ["PUBLISH", "User-Property", "a", "1"],
            ["publish", "user-property", "a", "2"],
            ["publish", "correlation-data", "xyz"],
            ["will", "will-delay-interval", "5"],
        ],
    )
    assert parsed == {
        "connect": Properties(session_expiry_interval=60),
        "publish": Properties(user_properties=(("a", "1"), ("a", "2")), correlation_data=b"xyz"),
        "will": Properties(will_delay_interval=5),
    }
    assert parse_properties("sub", [["subscribe", "subscription-identifier", "5"]]) == {
        "subscribe": Properties(subscription_identifiers=(5,))
    }


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (["frob", "user-property", "a", "b"], "unknown command 'frob'"),
        (["publish", "colour", "red"], "unknown property 'colour'"),
        (["publish", "session-expiry-interval", "1"], "unknown property"),
        (["publish", "subscription-identifier", "1"], "unknown property"),
        (["publish", "user-property", "a"], "takes NAME VALUE"),
        (["publish", "message-expiry-interval", "soon"], "not a whole number"),
        (["publish", "payload-format-indicator", "2"], "outside 0..1"),
        (["publish", "content-type", "a", "b"], "takes VALUE"),
    ],
)
def test_bad_property_arguments(argument: list[str], message: str):
    with pytest.raises(PropertyError, match=message):
        parse_properties("pub", [argument])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-D", "publish", "nonsense", "1"], "unknown property 'nonsense'"),
        (["-D", "subscribe", "user-property", "a", "b"], "unknown command 'subscribe'"),
        (["-V", "mqttv311", "-D", "publish", "content-type", "x"], "-D need MQTT 5.0"),
        (["-V", "311", "-x", "60"], "-x need MQTT 5.0"),
        (["-V", "mqttv6"], "use mqttv5, mqttv311 or mqttv31"),
        (["-D", "disconnect", "session-expiry-interval", "9"], "cannot change from 0"),
    ],
)
def test_pub_usage_errors_exit_2(args: list[str], message: str):
    status, _, err = Tool(midge("pub", "-p", "1", "-t", "t", "-m", "m", *args)).finish()
    assert status == 2, err
    assert message in err


# ----------------------------------------------------- against Mosquitto


def subscriber(broker: Broker, *args: str) -> Tool:
    host, port, _ = broker
    tool = Tool(midge("sub", "-h", host, "-p", str(port), "-d", *args))
    tool.wait_for_stderr("received SUBACK")
    return tool


def where(broker: Broker) -> list[str]:
    host, port, _ = broker
    return ["-h", host, "-p", str(port)]


PUBLISH_PROPS = [
    *("-D", "publish", "user-property", "k", "v"),
    *("-D", "publish", "content-type", "text/plain"),
    *("-D", "publish", "message-expiry-interval", "30"),
    *("-D", "publish", "correlation-data", "cd"),
    *("-D", "publish", "response-topic", "r/t"),
]
SHOWN = "%t|%P|%C|%E|%D|%R|%S|%p"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("publisher", ["midge", pytest.param("mosquitto_pub", marks=needs_clients)])
def test_properties_from_pub_shown_by_midge_sub(mosquitto_broker: Broker, publisher: str):
    topic = unique("cli5/")
    sub = subscriber(
        mosquitto_broker,
        *("-V", "mqttv5", "-t", topic, "-q", "1", "-C", "1", "-F", SHOWN),
        *("-D", "subscribe", "subscription-identifier", "9"),
    )
    command = midge("pub") if publisher == "midge" else ["mosquitto_pub"]
    pub = Tool(
        [*command, *where(mosquitto_broker), "-t", topic, "-m", "hi", "-q", "1", *PUBLISH_PROPS]
    )
    status, _, err = pub.finish()
    assert status == 0, err
    status, out, err = sub.finish()
    # Mosquitto forwards the remaining expiry interval: 30, or 29 after a slow second
    assert status == 0, err
    fields = out.split("|")
    assert fields[:3] == [topic, "k:v", "text/plain"]
    assert fields[3] in ("29", "30")
    assert fields[4:] == ["cd", "r/t", "9", "hi\n"]


@needs_clients
@pytest.mark.timeout(60)
def test_midge_pub_properties_reach_mosquitto_sub(mosquitto_broker: Broker):
    topic = unique("cli5m/")
    args = ["-V", "mqttv5", "-t", topic, "-C", "1", "-F", "%P|%C|%D|%R"]
    sub = Tool(["mosquitto_sub", *where(mosquitto_broker), *args])
    deadline = time.monotonic() + WAIT
    while sub.process.poll() is None and time.monotonic() < deadline:
        pub = Tool(midge("pub", *where(mosquitto_broker), "-t", topic, "-m", "x", *PUBLISH_PROPS))
        assert pub.finish()[0] == 0
        time.sleep(0.1)
    status, out, err = sub.finish()
    assert (status, out) == (0, "k:v|text/plain|cd|r/t\n"), err


@pytest.mark.timeout(60)
def test_json_output_and_session_expiry_with_x(mosquitto_broker: Broker):
    """-c -x keeps the session across runs: a QoS 1 message sent in between arrives."""
    identity, topic = unique("x5"), unique("cli5x/")
    first = ["-V", "5", "-i", identity, "-c", "-x", "60", "-t", topic, "-q", "1"]
    status, _, err = Tool(midge("sub", *where(mosquitto_broker), *first, "-E")).finish()
    assert status == 0, err
    pub = Tool(
        midge(
            "pub",
            *where(mosquitto_broker),
            "-t",
            topic,
            "-m",
            "later",
            "-q",
            "1",
            "-D",
            "publish",
            "user-property",
            "n",
            "1",
        )
    )
    assert pub.finish()[0] == 0
    again = Tool(
        midge(
            "sub",
            *where(mosquitto_broker),
            *first,
            "-C",
            "1",
            "-F",
            "json",
            "-D",
            "disconnect",
            "session-expiry-interval",
            "0",
        )
    )
    status, out, err = again.finish()
    assert status == 0, err
    record = json.loads(out)
    assert (record["payload"], record["properties"]["user-properties"]) == ("later", [["n", "1"]])


@pytest.mark.timeout(60)
def test_refused_5_0_connection_exits_with_the_reason_code(auth_brokers: dict[str, Broker]):
    args = ["-V", "mqttv5", "-u", "alice", "-P", "wrong", "-t", "t", "-m", "m"]
    status, _, err = Tool(midge("pub", *where(auth_brokers["mosquitto"]), *args)).finish()
    assert status == 135, err  # Mosquitto 2.0.11's answer to a wrong password
    assert "CONNACK 135 (not authorized)" in err
