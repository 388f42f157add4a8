"""MQTT.js 5 with protocolVersion 5 against a real `midge serve` (issue 11).

The same Midge set-up, MQTT.js runner and skip rules as test_mqttjs.py (whose
fixtures are used here); the peer is paho-mqtt 2.x at MQTTv5 over TCP (the
Paho5 helper of integration_support.py) or MQTT.js itself.

What MQTT.js can show limits what is checked: it parses User Properties into
an object (name -> value, or name -> [values]), so on receipt only the order
of first appearance of each name is observable, not how repeated names
interleave; and it writes them from such an object, so when sending, values
of a repeated name go out together (mqttjs_client.mjs explains both). The
order checks below use names that keep their order in a JavaScript object.
"""

from __future__ import annotations

import base64
import queue
import time
from typing import Any

import pytest
import test_mqttjs
from integration_support import Paho5, paho, unique
from test_mqttjs import LINGER_MS, MqttJs, Ports, _kinds, _url, mqttjs

from brokers import HOST

# The module-scoped fixtures of test_mqttjs.py: one Midge (tcp, ws, wss) for this module.
node = test_mqttjs.node
certs = test_mqttjs.certs
broker = test_mqttjs.broker

pytestmark = pytest.mark.timeout(60)

V5 = ("--protocol-version", "5")
WAIT = 5.0

# Sent by paho: names repeat and interleave, values are not ASCII.
PAHO_USER_PROPERTIES = [("b", "2"), ("a", "1"), ("b", "3"), ("\u00e9t\u00e9", "\U0001f41d")]
# As MQTT.js prints them: the values of "b" together, at its first place.
PAHO_USER_PROPERTIES_SEEN = [("b", "2"), ("b", "3"), ("a", "1"), ("\u00e9t\u00e9", "\U0001f41d")]
# Sent by MQTT.js (--user-property, in this order) and what goes on the wire.
JS_USER_PROPERTIES = [("z", "1"), ("a", "2"), ("z", "3"), ("k", "")]
JS_USER_PROPERTIES_WIRE = [("z", "1"), ("z", "3"), ("a", "2"), ("k", "")]


def _paho5(ports: Ports, client_id: str = "", **connect: Any) -> Paho5:
    client = Paho5(HOST, ports.tcp, client_id)
    client.connect(**connect)
    return client


def _v5_messages(js: MqttJs) -> list[dict[str, Any]]:
    """The message events, payload decoded; duplicates (dup set) fail the test."""
    out = []
    for event in js.events:
        if event["event"] == "message":
            assert event["dup"] is False, event
            payload = base64.b64decode(event["payload_b64"])
            assert len(payload) == event["length"], event
            out.append({**event, "payload": payload})
    return out


def _nothing_more(client: Paho5, wait: float = 0.3) -> None:
    with pytest.raises(queue.Empty):
        client.messages.get(timeout=wait)


# ----------------------------------------------------------- every QoS


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_mqttjs5_subscriber_gets_paho5_publishes_with_properties(
    node: str, broker: Ports, transport: str, sub_qos: int
) -> None:
    topic = unique(f"js5/sub/{transport}/")
    args = [*V5, "--url", _url(broker, transport), "--mode", "sub", "--subscribe", topic]
    args += ["--sub-qos", str(sub_qos), "--expect", "3", "--linger", LINGER_MS]
    publisher = _paho5(broker)
    try:
        with mqttjs(node, *args) as js:
            connack = js.wait_for("connack")
            assert (connack["reasonCode"], connack["sessionPresent"]) == (0, False)
            suback = js.wait_for("suback")
            assert suback["reasonCodes"] == [sub_qos], suback
            assert suback["granted"] == [{"topic": topic, "qos": sub_qos}]
            js.wait_for("ready")
            for pub_qos in (0, 1, 2):
                publisher.publish(
                    topic,
                    f"qos {pub_qos} \u2603".encode(),
                    pub_qos,
                    UserProperty=PAHO_USER_PROPERTIES,
                    ResponseTopic=f"{topic}/reply",
                    CorrelationData=bytes([pub_qos, 0, 255]),
                    ContentType="text/plain; charset=utf-8",
                    PayloadFormatIndicator=1,
                    MessageExpiryInterval=600,
                )
            events = js.finish_ok()
    finally:
        publisher.close()
    assert _kinds(events)[-1] == "done"
    messages = _v5_messages(js)
    # One publisher, so in order; QoS is min(publish QoS, granted QoS).
    assert [(m["topic"], m["payload"], m["qos"]) for m in messages] == [
        (topic, f"qos {q} \u2603".encode(), min(q, sub_qos)) for q in (0, 1, 2)
    ]
    for pub_qos, message in zip((0, 1, 2), messages, strict=True):
        props = message["properties"]
        assert [tuple(pair) for pair in props["userProperties"]] == PAHO_USER_PROPERTIES_SEEN
        assert props["responseTopic"] == f"{topic}/reply"
        assert base64.b64decode(props["correlationData"]) == bytes([pub_qos, 0, 255])
        assert props["contentType"] == "text/plain; charset=utf-8"
        assert props["payloadFormatIndicator"] is True
        assert 590 <= props["messageExpiryInterval"] <= 600, props
        assert "subscriptionIdentifier" not in props  # none was given


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_mqttjs5_publishes_with_properties_to_paho5(
    node: str, broker: Ports, transport: str, qos: int
) -> None:
    topic = unique(f"js5/pub/{transport}/")
    payloads = ["one", "two \u00e9", "three"]
    args = [*V5, "--url", _url(broker, transport), "--mode", "pub", "--publish", topic]
    args += ["--qos", str(qos), "--response-topic", "reply/here", "--correlation-data", "req-17"]
    args += ["--content-type", "application/json", "--message-expiry", "300"]
    args += ["--payload-format-indicator", "1"]
    for name, value in JS_USER_PROPERTIES:
        args += ["--user-property", f"{name}={value}"]
    for payload in payloads:
        args += ["--payload", payload]
    subscriber = _paho5(broker)
    try:
        assert [code.value for code in subscriber.subscribe(topic, 2)] == [2]
        with mqttjs(node, *args) as js:
            events = js.finish_ok()
        received = [subscriber.get() for _ in payloads]
        _nothing_more(subscriber)
    finally:
        subscriber.close()
    assert _kinds(events) == ["connack", "ready", "published", "published", "published", "done"]
    for event in events:
        if event["event"] == "published":
            if qos:
                assert event["reasonCode"] == 0, event  # PUBACK / PUBREC: Success
            if qos == 2:
                assert event["pubcompReasonCode"] == 0, event
    assert [(m.topic, m.payload.decode(), m.qos) for m in received] == [
        (topic, payload, qos) for payload in payloads
    ]
    for message in received:
        props = message.properties
        assert props.UserProperty == JS_USER_PROPERTIES_WIRE
        assert (props.ResponseTopic, props.CorrelationData) == ("reply/here", b"req-17")
        assert props.ContentType == "application/json"
        assert props.PayloadFormatIndicator == 1
        assert 290 <= props.MessageExpiryInterval <= 300


@pytest.mark.parametrize("transport", ["tcp", "ws", "wss"])
def test_mqttjs5_round_trip_qos2_and_a_311_mqttjs_watching(
    node: str, broker: Ports, certs: Any, transport: str
) -> None:
    """MQTT.js 5 publishes to its own subscription; an MQTT.js 3.1.1 client sees the same."""
    topic = unique(f"js5/rt/{transport}/")
    payloads = [bytes(range(256)), b"\x00\xff" * 1000, b"end"]
    args = [*V5, "--url", _url(broker, transport), "--mode", "pubsub", "--subscribe", topic]
    args += ["--sub-qos", "2", "--publish", topic, "--qos", "2", "--payload-encoding", "hex"]
    args += ["--user-property", "trace=abc", "--expect", str(len(payloads))]
    args += ["--linger", LINGER_MS]
    if transport == "wss":
        args += ["--ca", str(certs.ca)]
    for payload in payloads:
        args += ["--payload", payload.hex()]
    watch = ["--url", _url(broker, "ws"), "--mode", "sub", "--subscribe", topic, "--sub-qos", "2"]
    watch += ["--expect", str(len(payloads)), "--linger", LINGER_MS]
    with mqttjs(node, *watch) as watcher:
        watcher.wait_for("ready")
        with mqttjs(node, *args) as js:
            events = js.finish_ok()
        watcher.finish_ok()
    assert _kinds(events).count("published") == len(payloads)
    messages = _v5_messages(js)
    assert [(m["topic"], m["payload"], m["qos"]) for m in messages] == [
        (topic, payload, 2) for payload in payloads
    ]
    assert all(m["properties"]["userProperties"] == [["trace", "abc"]] for m in messages)
    # The 3.1.1 receiver gets the same messages (its events have no properties at all).
    assert watcher.messages() == [(topic, payload, 2, False) for payload in payloads]


def test_mqttjs_311_publisher_reaches_mqttjs5_subscriber(node: str, broker: Ports) -> None:
    topic = unique("js5/mixed/")
    sub = [*V5, "--url", _url(broker, "ws"), "--mode", "sub", "--subscribe", topic]
    sub += ["--sub-qos", "1", "--expect", "1", "--linger", LINGER_MS]
    pub = ["--url", _url(broker, "tcp"), "--mode", "pub", "--publish", topic, "--qos", "1"]
    pub += ["--payload", "from 3.1.1"]
    with mqttjs(node, *sub) as subscriber:
        subscriber.wait_for("ready")
        with mqttjs(node, *pub) as publisher:
            publisher.finish_ok()
        subscriber.finish_ok()
    [message] = _v5_messages(subscriber)
    assert (message["topic"], message["payload"], message["qos"]) == (topic, b"from 3.1.1", 1)
    assert message["properties"] == {}


# --------------------------------------------------- 5.0 features


def test_mqttjs5_connack_properties(node: str, broker: Ports) -> None:
    topic = unique("js5/connack/")
    args = [*V5, "--url", _url(broker, "tcp"), "--mode", "pub", "--publish", topic]
    args += ["--payload", "x"]
    with mqttjs(node, *args) as js:
        events = js.finish_ok()
    connack = events[0]
    assert connack["event"] == "connack", events
    assert (connack["reasonCode"], connack["sessionPresent"]) == (0, False)
    props = connack["properties"]
    # MQTT.js gave a client id, so none is assigned; the broker's alias limit is announced.
    assert "assignedClientIdentifier" not in props, props
    assert props.get("topicAliasMaximum", 0) >= 1, props


def test_mqttjs5_subscription_identifiers_arrive(node: str, broker: Ports) -> None:
    base = unique("js5/sid/")
    args = [*V5, "--url", _url(broker, "ws"), "--mode", "sub", "--sub-qos", "1"]
    args += ["--subscribe", f"{base}/+/x", "--subscription-id", "7"]
    args += ["--subscribe", f"{base}/#", "--subscription-id", "268435455"]  # the largest
    args += ["--expect", "2", "--linger", LINGER_MS]
    publisher = _paho5(broker)
    try:
        with mqttjs(node, *args) as js:
            assert js.wait_for("suback")["reasonCodes"] == [1]
            assert js.wait_for("suback")["reasonCodes"] == [1]
            js.wait_for("ready")
            publisher.publish(f"{base}/a/x", b"both", 1)
            publisher.publish(f"{base}/b", b"one", 1)
            js.finish_ok()
    finally:
        publisher.close()
    messages = _v5_messages(js)
    # Overlapping subscriptions: one copy carrying every matching identifier.
    seen = [(m["payload"], sorted(m["properties"]["subscriptionIdentifier"])) for m in messages]
    assert seen == [(b"both", [7, 268435455]), (b"one", [268435455])]


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_mqttjs5_no_local(node: str, broker: Ports, transport: str) -> None:
    """With No Local MQTT.js does not get its own message back, but does get paho's."""
    topic = unique(f"js5/nl/{transport}/")
    args = [*V5, "--url", _url(broker, transport), "--mode", "pubsub", "--subscribe", topic]
    args += ["--sub-qos", "1", "--no-local", "--publish", topic, "--qos", "1"]
    args += ["--payload", "mine", "--expect", "1", "--linger", "500"]
    other = _paho5(broker)
    try:
        assert [code.value for code in other.subscribe(topic, 1)] == [1]
        with mqttjs(node, *args) as js:
            js.wait_for("published")
            assert other.get().payload == b"mine"  # it was published, and delivered to others
            other.publish(topic, b"theirs", 1)
            js.finish_ok()
        assert other.get().payload == b"theirs"
    finally:
        other.close()
    assert [m["payload"] for m in _v5_messages(js)] == [b"theirs"]


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_mqttjs5_session_expiry_keeps_qos1_message_while_offline(
    node: str, broker: Ports, transport: str
) -> None:
    client_id = unique("js5exp")
    topic = unique(f"js5/exp/{transport}/")
    url = _url(broker, transport)
    first = [*V5, "--url", url, "--client-id", client_id, "--session-expiry", "60"]
    first += ["--mode", "sub", "--subscribe", topic, "--sub-qos", "1"]
    with mqttjs(node, *first) as js:
        events = js.finish_ok()
    assert _kinds(events) == ["connack", "suback", "ready", "done"]
    assert events[0]["sessionPresent"] is False

    publisher = _paho5(broker)
    try:
        publisher.publish(topic, b"while away", 1, MessageExpiryInterval=120)
        publisher.publish(topic, b"also qos 0", 0)  # QoS 0 may be queued or dropped
    finally:
        publisher.close()
    time.sleep(0.2)

    back = [*V5, "--url", url, "--client-id", client_id, "--session-expiry", "60", "--no-clean"]
    back += ["--mode", "listen", "--expect", "1", "--linger", LINGER_MS]
    with mqttjs(node, *back) as js:
        events = js.finish_ok()
    assert events[0]["event"] == "connack", events
    assert (events[0]["reasonCode"], events[0]["sessionPresent"]) == (0, True)
    messages = _v5_messages(js)
    assert (messages[0]["topic"], messages[0]["payload"], messages[0]["qos"]) == (
        topic,
        b"while away",
        1,
    )
    assert 0 < messages[0]["properties"]["messageExpiryInterval"] <= 120
    assert [m["payload"] for m in messages[1:]] in ([], [b"also qos 0"])

    # The session is still there (expiry 60 again); end it with a clean start and
    # no expiry: a later resume finds nothing.
    ending = [*V5, "--url", url, "--client-id", client_id, "--mode", "listen"]
    with mqttjs(node, *ending) as js:
        events = js.finish_ok()
    assert events[0]["sessionPresent"] is False, events
    again = [*V5, "--url", url, "--client-id", client_id, "--no-clean", "--mode", "listen"]
    with mqttjs(node, *again) as js:
        events = js.finish_ok()
    assert events[0]["sessionPresent"] is False, events


def test_mqttjs5_without_session_expiry_keeps_nothing(node: str, broker: Ports) -> None:
    """Session Expiry 0 (MQTT.js's default): the session ends with the connection."""
    client_id = unique("js5noexp")
    topic = unique("js5/noexp/")
    url = _url(broker, "ws")
    first = [*V5, "--url", url, "--client-id", client_id, "--no-clean"]
    first += ["--mode", "sub", "--subscribe", topic, "--sub-qos", "1"]
    with mqttjs(node, *first) as js:
        js.finish_ok()
    with paho(HOST, broker.tcp) as publisher:  # a 3.1.1 publisher for a change
        publisher.publish(topic, b"lost", 1)
    back = [*V5, "--url", url, "--client-id", client_id, "--no-clean", "--mode", "listen"]
    back += ["--linger", LINGER_MS]
    with mqttjs(node, *back) as js:
        events = js.finish_ok()
    assert events[0]["sessionPresent"] is False, events
    assert _v5_messages(js) == []


def test_mqttjs5_topic_aliases_both_ways(node: str, broker: Ports) -> None:
    """MQTT.js sends aliases the broker resolves; it accepts any the broker sends it."""
    topic = unique("js5/alias/")
    payloads = ["a", "b", "c"]
    sub = [*V5, "--url", _url(broker, "ws"), "--mode", "sub", "--subscribe", topic]
    sub += ["--sub-qos", "1", "--topic-alias-maximum", "5", "--expect", str(len(payloads))]
    sub += ["--linger", LINGER_MS]
    pub = [*V5, "--url", _url(broker, "tcp"), "--mode", "pub", "--publish", topic]
    pub += ["--qos", "1", "--auto-topic-alias"]
    for payload in payloads:
        pub += ["--payload", payload]
    with mqttjs(node, *sub) as subscriber:
        subscriber.wait_for("ready")
        with mqttjs(node, *pub) as publisher:
            events = publisher.finish_ok()
        subscriber.finish_ok()
    published = [event for event in events if event["event"] == "published"]
    # The first PUBLISH sets the alias, the others send it with an empty topic.
    assert [(e["topicSent"], e["reasonCode"]) for e in published] == [
        (topic, 0),
        ("", 0),
        ("", 0),
    ]
    assert len({e["topicAlias"] for e in published}) == 1
    assert [(m["topic"], m["payload"]) for m in _v5_messages(subscriber)] == [
        (topic, payload.encode()) for payload in payloads
    ]


def test_mqttjs5_is_told_why_when_its_session_is_taken_over(node: str, broker: Ports) -> None:
    client_id = unique("js5take")
    args = [*V5, "--url", _url(broker, "ws"), "--client-id", client_id, "--mode", "listen"]
    args += ["--expect", "1"]  # waits; the takeover ends it
    with mqttjs(node, *args) as js:
        js.wait_for("ready")
        thief = _paho5(broker, client_id)
        try:
            disconnect = js.wait_for("disconnect")
            code = js.finish()
        finally:
            thief.close()
    assert disconnect["reasonCode"] == 0x8E, disconnect  # Session taken over
    assert code == 1
    assert js.events[-1]["event"] == "error"


@pytest.mark.parametrize(("handling", "copies"), [(0, 2), (1, 1), (2, 0)])
def test_mqttjs5_retain_handling(node: str, broker: Ports, handling: int, copies: int) -> None:
    """The same filter subscribed twice (two SUBSCRIBEs): 0 sends the retained message
    each time, 1 only for the new subscription, 2 never."""
    topic = unique("js5/rh/")
    with paho(HOST, broker.tcp) as publisher:
        publisher.publish(topic, b"kept", qos=1, retain=True)
        args = [*V5, "--url", _url(broker, "ws"), "--mode", "sub", "--sub-qos", "1"]
        args += ["--subscribe", topic, "--subscription-id", "1"]
        args += ["--subscribe", topic, "--subscription-id", "2"]
        args += ["--retain-handling", str(handling), "--expect", str(copies), "--linger", "500"]
        with mqttjs(node, *args) as js:
            js.finish_ok()
        publisher.publish(topic, b"", qos=1, retain=True)  # clear it
    messages = _v5_messages(js)
    assert [(m["payload"], m["retain"]) for m in messages] == [(b"kept", True)] * copies


@pytest.mark.parametrize("as_published", [False, True])
def test_mqttjs5_retain_as_published(node: str, broker: Ports, as_published: bool) -> None:
    topic = unique("js5/rap/")
    args = [*V5, "--url", _url(broker, "tcp"), "--mode", "pubsub", "--subscribe", topic]
    args += ["--sub-qos", "1", "--retain-handling", "2", "--publish", topic, "--retain"]
    args += ["--qos", "1", "--payload", "live", "--expect", "1", "--linger", LINGER_MS]
    if as_published:
        args.append("--retain-as-published")
    with mqttjs(node, *args) as js:
        js.finish_ok()
    with paho(HOST, broker.tcp) as cleaner:
        cleaner.publish(topic, b"", qos=1, retain=True)
    # A live delivery has retain 0 unless Retain As Published is set [MQTT-3.3.1-12, -13].
    assert [(m["payload"], m["retain"]) for m in _v5_messages(js)] == [(b"live", as_published)]


def test_mqttjs5_expired_retained_message_is_not_delivered(node: str, broker: Ports) -> None:
    topic = unique("js5/rexp/")
    pub = [*V5, "--url", _url(broker, "ws"), "--mode", "pub", "--publish", topic, "--qos", "1"]
    pub += ["--retain", "--message-expiry", "2", "--payload", "short-lived"]
    with mqttjs(node, *pub) as js:
        js.finish_ok()
    published = time.monotonic()
    check = _paho5(broker)  # at once (paho is quicker to start than node): still there
    try:
        check.subscribe(topic, 1)
        message = check.get()
    finally:
        check.close()
    assert (message.payload, message.retain) == (b"short-lived", True)
    assert message.properties.MessageExpiryInterval <= 2
    time.sleep(max(0.0, published + 2.5 - time.monotonic()))
    sub = [*V5, "--url", _url(broker, "ws"), "--mode", "sub", "--subscribe", topic]
    sub += ["--sub-qos", "1", "--linger", LINGER_MS]
    with mqttjs(node, *sub) as js:
        js.finish_ok()
    assert _v5_messages(js) == []


def test_mqttjs5_maximum_packet_size(node: str, broker: Ports) -> None:
    """The broker never sends MQTT.js a packet over its Maximum Packet Size (MQTT.js would
    close with an error); the big message is dropped for it, the next small one arrives."""
    topic = unique("js5/mps/")
    args = [*V5, "--url", _url(broker, "ws"), "--mode", "sub", "--subscribe", topic]
    args += ["--sub-qos", "1", "--maximum-packet-size", "200", "--expect", "1"]
    args += ["--linger", LINGER_MS]
    publisher = _paho5(broker)
    try:
        with mqttjs(node, *args) as js:
            js.wait_for("ready")
            publisher.publish(topic, b"x" * 500, 1)
            publisher.publish(topic, b"small", 1)
            js.finish_ok()
    finally:
        publisher.close()
    assert [m["payload"] for m in _v5_messages(js)] == [b"small"]


@pytest.mark.parametrize("qos", [1, 2])
def test_mqttjs5_is_told_its_payload_is_not_utf8(node: str, broker: Ports, qos: int) -> None:
    """Payload Format Indicator 1 with bytes that are not UTF-8: PUBACK / PUBREC 0x99,
    the message goes nowhere, and the connection carries on."""
    topic = unique("js5/pfi/")
    args = [*V5, "--url", _url(broker, "tcp"), "--mode", "pub", "--publish", topic]
    args += ["--qos", str(qos), "--payload-format-indicator", "1", "--payload-encoding", "hex"]
    args += ["--payload", "c328", "--payload", "6f6b"]  # b"\xc3\x28" is not UTF-8; b"ok"
    subscriber = _paho5(broker)
    try:
        subscriber.subscribe(topic, 2)
        with mqttjs(node, *args) as js:
            events = js.finish_ok()
        assert subscriber.get().payload == b"ok"
        _nothing_more(subscriber)
    finally:
        subscriber.close()
    published = [event for event in events if event["event"] == "published"]
    assert [event["reasonCode"] for event in published] == [0x99, 0]
    if qos == 2:  # the refused one ends at PUBREC; the other completes
        assert "pubcompReasonCode" not in published[0], published
        assert published[1]["pubcompReasonCode"] == 0
