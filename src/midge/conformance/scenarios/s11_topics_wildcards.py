"""Area 11: topic names, filters and wildcard matching (section 4.7)."""

from __future__ import annotations

from midge.conformance.harness import RawClient, check, describe
from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.packets import Publish


def _subscribed(target: Target, *filters: str) -> RawClient:
    client = target.client("sub")
    codes = client.subscribe(*((topic_filter, 0) for topic_filter in filters))
    check(codes == (0,) * len(filters), f"sub: SUBACK {codes}, expected all 0")
    return client


def _publish_all(target: Target, *topics: str) -> None:
    pub = target.client("pub")
    for topic in topics:
        pub.publish(topic, topic.encode(), qos=1)


def _expect_topics(client: RawClient, expected: set[str]) -> None:
    got = {client.expect(Publish).topic for _ in expected}
    check(got == expected, f"sub: got topics {sorted(got)}, expected {sorted(expected)}")
    client.expect_nothing()


@scenario(
    "11-01",
    "'+' matches exactly one level: sport/+/player matches sport/x/player only",
    rule="MQTT-4.7.1-3",
)
def single_level_wildcard(target: Target) -> None:
    sub = _subscribed(target, target.topic("sport/+/player"))
    match = target.topic("sport/x/player")
    _publish_all(target, target.topic("sport/x/y/player"), target.topic("sport/player"), match)
    _expect_topics(sub, {match})


@scenario(
    "11-02",
    "'#' matches the parent and every descendant: sport/# matches sport, not sports",
    rule="MQTT-4.7.1-2",
)
def multi_level_wildcard(target: Target) -> None:
    sub = _subscribed(target, target.topic("sport/#"))
    matches = {target.topic("sport"), target.topic("sport/a"), target.topic("sport/a/b")}
    _publish_all(target, target.topic("sports"), *sorted(matches))
    _expect_topics(sub, matches)


@scenario(
    "11-03",
    "'+' does not match the parent level: sport/+ matches sport/ but not sport",
    rule="MQTT-4.7.1-3",
)
def single_level_not_parent(target: Target) -> None:
    sub = _subscribed(target, target.topic("sport/+"))
    match = target.topic("sport/")
    _publish_all(target, target.topic("sport"), match)
    _expect_topics(sub, {match})


def _dollar_topic(target: Target, name: str = "x") -> str:
    return f"$midgetest/{target.prefix}/{name}"


def _dollar_topic_not_matched(target: Target, sub: RawClient, control: str) -> None:
    """Publish to a $ topic, then to `control`; only the control may reach `sub`."""
    dollar = _dollar_topic(target)
    _publish_all(target, dollar, control)
    while (publish := sub.expect(Publish)).topic != control:
        check(publish.topic != dollar, f"sub: a wildcard filter matched {describe(publish)}")
    leaked = [p for p in sub.collect(0.3) if isinstance(p, Publish) and p.topic == dollar]
    check(not leaked, f"sub: a wildcard filter matched {dollar!r}")


@scenario("11-04", "'#' does not match topics beginning with '$'", rule="MQTT-4.7.2-1")
def hash_skips_dollar(target: Target) -> None:
    sub = _subscribed(target, "#")
    _dollar_topic_not_matched(target, sub, target.topic("control"))


@scenario("11-05", "'+/...' does not match topics beginning with '$'", rule="MQTT-4.7.2-1")
def plus_skips_dollar(target: Target) -> None:
    control = target.topic("control")
    sub = _subscribed(target, f"+/{target.prefix}/x", control)
    _dollar_topic_not_matched(target, sub, control)


@scenario(
    "11-06",
    "A filter starting with '$midgetest/' matches a '$midgetest/...' topic",
    rule="MQTT-4.7.2-1",
)
def explicit_dollar_filter(target: Target) -> None:
    sub = _subscribed(target, f"$midgetest/{target.prefix}/#")
    dollar = _dollar_topic(target)
    _publish_all(target, dollar)
    sub.expect_publish(dollar, dollar.encode())


@scenario(
    "11-07",
    "Matching is case sensitive and exact: Accounts matches neither accounts nor Accounts/",
    rule="MQTT-4.7.3-4",
)
def no_normalization(target: Target) -> None:
    match = target.topic("Accounts")
    sub = _subscribed(target, match)
    _publish_all(target, target.topic("accounts"), target.topic("ACCOUNTS"), f"{match}/", match)
    _expect_topics(sub, {match})


@scenario("11-08", "'+' matches an empty level: e/+/b matches e//b", rule="MQTT-4.7.1-3")
def empty_level(target: Target) -> None:
    sub = _subscribed(target, target.topic("e/+/b"))
    match = target.topic("e//b")
    _publish_all(target, target.topic("e/b"), match)
    _expect_topics(sub, {match})


@scenario(
    "11-09",
    "Non-ASCII topics match byte for byte; a leading U+FEFF is neither stripped nor ignored",
    rule="MQTT-1.5.3-3",
)
def unicode_topics(target: Target) -> None:
    match = target.topic("\ufeffzürich/ü")
    sub = _subscribed(target, match)
    _publish_all(target, target.topic("zürich/ü"), match)
    _expect_topics(sub, {match})
