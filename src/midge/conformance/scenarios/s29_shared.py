"""Area 29 (MQTT 5.0): shared subscriptions `$share/{ShareName}/{filter}` (4.8.2).

Which member gets a message is the broker's choice: the scenarios check only
that each message goes to exactly one member of each group.
"""

from __future__ import annotations

from midge.conformance import wire
from midge.conformance.harness import RawClient, ScenarioFailed, check, describe
from midge.conformance.target import Target
from midge.conformance.v5 import (
    expect_disconnect,
    hex_codes,
    require,
    scenario5,
    server_properties,
)
from midge.protocol.packets import Disconnect, Publish, SubAck, Subscription
from midge.protocol.reasons import ReasonCode

MESSAGES = 6
SPREAD_WAIT = 1.0
"""Seconds to collect what the members of a group received."""
INVALID_FILTER_CODES = (
    ReasonCode.MALFORMED_PACKET,
    ReasonCode.PROTOCOL_ERROR,
    ReasonCode.TOPIC_FILTER_INVALID,
)


def _member(target: Target, name: str, shared_filter: str) -> RawClient:
    client = target.client(name)
    require(
        server_properties(client).shared_subscription_available != 0,
        "the broker does not support shared subscriptions",
    )
    codes = client.subscribe((shared_filter, 1))
    check(codes == (1,), f"{name}: SUBACK {codes} for {shared_filter!r}")
    return client


def _received(client: RawClient) -> list[bytes]:
    """The payloads of the PUBLISH packets the client got within SPREAD_WAIT (acknowledged)."""
    payloads = []
    for packet in client.collect(SPREAD_WAIT):
        if not isinstance(packet, Publish):
            raise ScenarioFailed(f"{client.name}: unexpected {describe(packet)}")
        client.acknowledge(packet)
        payloads.append(packet.payload)
    return payloads


def _publish_all(target: Target, topic: str) -> list[bytes]:
    publisher = target.client("p")
    payloads = [b"%d" % index for index in range(MESSAGES)]
    for payload in payloads:
        publisher.publish(topic, payload, qos=1)
    return payloads


def _shared(target: Target, group: str, name: str = "t") -> str:
    return f"$share/{group}/{target.topic(name)}"


@scenario5(
    "29-01",
    "Each message to a shared subscription goes to exactly one member of the group",
    rule="§4.8.2",
)
def one_member_each(target: Target) -> None:
    members = [_member(target, name, _shared(target, "g")) for name in ("a", "b")]
    sent = _publish_all(target, target.topic())
    received = [payload for member in members for payload in _received(member)]
    check(sorted(received) == sorted(sent), f"members got {sorted(received)}, sent {sent}")


@scenario5(
    "29-02",
    "Two share groups and a plain subscriber each get every message once",
    rule="§4.8.2",
)
def groups_and_plain(target: Target) -> None:
    first = _member(target, "a", _shared(target, "g1"))
    second = _member(target, "b", _shared(target, "g2"))
    plain = _member(target, "c", target.topic())
    sent = _publish_all(target, target.topic())
    for client in (first, second, plain):
        got = _received(client)
        check(sorted(got) == sorted(sent), f"{client.name}: got {sorted(got)}, sent {sent}")


def _rejected(client: RawClient, topic_filter: str) -> None:
    """SUBACK refusing the filter (0x80 or above), or DISCONNECT 0x81/0x82/0x8F then close.

    Raises `ScenarioFailed` for a filter the broker accepted.
    """
    client.send(wire.subscribe5(1, wire.properties(), (topic_filter.encode(), 1)))
    answer = client.receive(waiting_for="SUBACK or DISCONNECT")
    if isinstance(answer, SubAck):
        check(
            len(answer.return_codes) == 1 and answer.return_codes[0] >= 0x80,
            f"{client.name}: SUBACK {answer.return_codes} for invalid {topic_filter!r}",
        )
        return
    check(
        isinstance(answer, Disconnect),
        f"{client.name}: {topic_filter!r} answered by {describe(answer)}",
    )
    client.backlog.appendleft(answer)
    expect_disconnect(client, *INVALID_FILTER_CODES)


@scenario5(
    "29-03",
    "Invalid share names ('g+x', '', missing '/filter') are refused (SUBACK >= 0x80 or "
    f"DISCONNECT {hex_codes(INVALID_FILTER_CODES)})",
    rule="MQTT-4.8.2-2",
)
def invalid_share_names(target: Target) -> None:
    topic = target.topic()
    failures = []
    for index, topic_filter in enumerate(("$share/g+x/" + topic, "$share//" + topic, "$share/g")):
        try:
            _rejected(target.client(f"c{index}"), topic_filter)
        except ScenarioFailed as exc:
            failures.append(str(exc))
    check(not failures, "; ".join(failures))


@scenario5(
    "29-04",
    "No Local on a shared subscription is a Protocol Error: DISCONNECT 0x82",
    rule="MQTT-3.8.3-4",
)
def no_local_on_shared(target: Target) -> None:
    client = target.client("c")
    client.send(wire.subscribe5(1, wire.properties(), (_shared(target, "g").encode(), 0x04 | 1)))
    expect_disconnect(client, ReasonCode.PROTOCOL_ERROR)


@scenario5(
    "29-05",
    "Subscribing to a shared subscription sends no retained message",
    rule="§3.3.1.3",
)
def no_retained_on_shared(target: Target) -> None:
    topic = target.topic()
    target.client("p").publish(topic, b"kept", qos=1, retain=True)
    member = _member(target, "a", _shared(target, "g"))
    member.expect_nothing()


@scenario5(
    "29-06",
    "After a member unsubscribes, the group's messages go to the remaining member",
    rule="§4.8.2",
)
def unsubscribed_member(target: Target) -> None:
    shared = _shared(target, "g")
    leaving = _member(target, "a", shared)
    staying = _member(target, "b", shared)
    unsuback = leaving.unsubscribe(shared)
    check(unsuback.reason_codes == (0,), f"a: UNSUBACK {unsuback.reason_codes}")
    sent = _publish_all(target, target.topic())
    check(_received(leaving) == [], "a: got messages after unsubscribing")
    got = _received(staying)
    check(sorted(got) == sorted(sent), f"b: got {sorted(got)}, sent {sent}")


@scenario5(
    "29-07",
    "A shared subscription is granted its QoS and the member gets messages at that QoS",
    rule="MQTT-3.8.4-8",
)
def shared_qos(target: Target) -> None:
    member = target.client("a")
    require(
        server_properties(member).shared_subscription_available != 0,
        "the broker does not support shared subscriptions",
    )
    suback = member.subscribe_with(Subscription(_shared(target, "g"), 1))
    check(suback.return_codes == (1,), f"a: SUBACK {suback.return_codes}")
    target.client("p").publish(target.topic(), b"q2", qos=2)
    member.expect_publish(target.topic(), b"q2", qos=1)
