"""Topic names, topic filters and matching: the examples of MQTT 3.1.1 section 4.7."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midge.protocol.topics import is_valid_topic_filter, is_valid_topic_name, topic_matches

FAST = settings(max_examples=200, deadline=None, database=None)

# ------------------------------------------------------------- topic names


@pytest.mark.parametrize(
    "topic",
    [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport",
        "sport/",
        "/finance",  # a leading "/" makes a distinct topic (4.7.3)
        "finance",
        "/",  # "A Topic Name or Topic Filter consisting only of the '/' character is valid"
        "//",  # adjacent separators: a zero-length level (4.7.1.1)
        "$SYS/monitor/Clients",
        "ACCOUNTS",
        "Accounts payable",  # may contain the space character (4.7.3)
        " ",
        "\u00fc/\u6c34",
        "a" * 65535,
    ],
)
def test_valid_topic_names(topic: str) -> None:
    assert is_valid_topic_name(topic) is True


@pytest.mark.parametrize(
    "topic",
    [
        "",  # at least one character [MQTT-4.7.3-1]
        # "The wildcard characters can be used in Topic Filters, but MUST NOT be used within
        # a Topic Name" [MQTT-4.7.1-1], [MQTT-3.3.2-2]
        "+",
        "#",
        "sport/+",
        "sport/#",
        "+/tennis",
        "sport/tennis/player1/#",
        "sport+",
        "sport#",
        "a/b+c/d",
    ],
)
def test_invalid_topic_names(topic: str) -> None:
    assert is_valid_topic_name(topic) is False


# ----------------------------------------------------------- topic filters


@pytest.mark.parametrize(
    "topic_filter",
    [
        # 4.7.1.2
        "sport/tennis/player1/#",
        "sport/#",
        "#",  # "'#' is valid and will receive every Application Message"
        "sport/tennis/#",
        # 4.7.1.3
        "+",
        "+/tennis/#",
        "sport/+/player1",
        "sport/tennis/+",
        "sport/+",
        "+/+",
        "/+",
        # 4.7.2 and 4.7.3
        "$SYS/#",
        "$SYS/monitor/+",
        "+/monitor/Clients",
        "/finance",
        "/",
        "//",
        "Accounts payable",
        "+/#",
        "+/+/+",
        "/#",
        "a/b",
    ],
)
def test_valid_topic_filters(topic_filter: str) -> None:
    assert is_valid_topic_filter(topic_filter) is True


@pytest.mark.parametrize(
    "topic_filter",
    [
        "",  # [MQTT-4.7.3-1]
        # "#" on its own or after a separator, and the last character [MQTT-4.7.1-2]
        "sport/tennis#",
        "sport/tennis/#/ranking",
        "#/",
        "#/a",
        "##",
        "a#",
        "a/#b",
        "#+",
        # "+" occupies an entire level [MQTT-4.7.1-3]
        "sport+",
        "+sport",
        "sport/+tennis",
        "sport/ten+nis/x",
        "++",
        "+#",
        "a/+#",
    ],
)
def test_invalid_topic_filters(topic_filter: str) -> None:
    assert is_valid_topic_filter(topic_filter) is False


@pytest.mark.parametrize("value", ["a\x00b", "\x00", "sport/\x00"])
def test_nul_is_not_allowed_in_topic_names(value: str) -> None:
    # "Topic Names and Topic Filters MUST NOT include the null character (Unicode U+0000)"
    # [MQTT-4.7.3-2]
    assert is_valid_topic_name(value) is False


@pytest.mark.parametrize("value", ["a\x00b", "\x00", "sport/\x00/#"])
def test_nul_is_not_allowed_in_topic_filters(value: str) -> None:
    assert is_valid_topic_filter(value) is False


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a" * 65536, id="65536-ascii"),
        pytest.param("\u00fc" * 32768, id="32768-chars-65536-bytes"),
    ],
)
def test_topic_longer_than_65535_bytes_is_invalid(value: str) -> None:
    # "Topic Names and Topic Filters are UTF-8 encoded strings, they MUST NOT encode to
    # more than 65535 bytes" [MQTT-4.7.3-3]
    assert (is_valid_topic_name(value), is_valid_topic_filter(value)) == (False, False)


# ---------------------------------------------------------------- matching

MATCHES = [
    # 4.7.1.2: "sport/tennis/player1/#" would receive messages published using these names
    ("sport/tennis/player1/#", "sport/tennis/player1"),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking"),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"),
    # "'sport/#' also matches the singular 'sport', since # includes the parent level"
    ("sport/#", "sport"),
    ("sport/#", "sport/tennis/player1"),
    ("sport/#", "sport/"),
    ("#", "sport"),
    ("#", "sport/tennis/player1"),
    ("#", "/finance"),
    ("#", "/"),
    ("sport/tennis/#", "sport/tennis/player2"),
    # 4.7.1.3: "sport/tennis/+" matches "sport/tennis/player1" and "sport/tennis/player2"
    ("sport/tennis/+", "sport/tennis/player1"),
    ("sport/tennis/+", "sport/tennis/player2"),
    # "'sport/+' does not match 'sport' but it does match 'sport/'"
    ("sport/+", "sport/"),
    ("+", "sport"),
    ("+/tennis/#", "sport/tennis"),
    ("+/tennis/#", "sport/tennis/player1/ranking"),
    ("sport/+/player1", "sport/tennis/player1"),
    ("sport/+/player1", "sport//player1"),
    # "'/finance' matches '+/+' and '/+', but not '+'"
    ("+/+", "/finance"),
    ("/+", "/finance"),
    # 4.7.2: "$SYS/#" receives topics beginning with "$SYS/"; "$SYS/monitor/+" too
    ("$SYS/#", "$SYS/monitor/Clients"),
    ("$SYS/monitor/+", "$SYS/monitor/Clients"),
    ("$SYS/#", "$SYS"),
    ("$SYS/monitor/Clients", "$SYS/monitor/Clients"),
    # Only a leading "$" is special.
    ("+/$SYS", "a/$SYS"),
    ("#", "a/$b"),
    # Exact matches, including empty levels.
    ("sport/tennis/player1", "sport/tennis/player1"),
    ("/", "/"),
    ("/finance", "/finance"),
    ("Accounts payable", "Accounts payable"),
]

NON_MATCHES = [
    # 4.7.1.3: not "sport/tennis/player1/ranking" ("+" matches only one level)
    ("sport/tennis/+", "sport/tennis/player1/ranking"),
    # "'sport/+' does not match 'sport'"
    ("sport/+", "sport"),
    # "'/finance' matches '+/+' and '/+', but not '+'"
    ("+", "/finance"),
    ("+", "sport/"),
    ("sport/tennis/player1/#", "sport/tennis/player2"),
    ("sport/tennis/player1/#", "sport/tennis"),
    ("sport/#", "sports"),
    ("sport/tennis/#", "sport"),
    ("sport/+/player1", "sport/tennis/player2"),
    ("sport/+/player1", "sport/player1"),
    ("+/tennis/#", "sport/badminton"),
    # 4.7.2: "A subscription to '#' will not receive any messages published to a topic
    # beginning with a $" and "'+/monitor/Clients' will not receive any messages published
    # to '$SYS/monitor/Clients'" [MQTT-4.7.2-1]
    ("#", "$SYS/monitor/Clients"),
    ("#", "$SYS"),
    ("#", "$"),
    ("+/monitor/Clients", "$SYS/monitor/Clients"),
    ("+", "$SYS"),
    ("+/#", "$SYS/monitor"),
    ("$SYS/monitor/+", "$SYS/monitor/Clients/x"),
    # 4.7.3: case sensitive; a leading or trailing "/" makes a distinct name
    ("ACCOUNTS", "Accounts"),
    ("/finance", "finance"),
    ("finance", "/finance"),
    ("finance/", "finance"),
    ("sport/tennis", "sport/tennis/player1"),
]


@pytest.mark.parametrize(("topic_filter", "topic"), MATCHES)
def test_topic_matches(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) is True


@pytest.mark.parametrize(("topic_filter", "topic"), NON_MATCHES)
def test_topic_does_not_match(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) is False


def test_example_filters_are_valid_and_topics_are_valid_names() -> None:
    for topic_filter, topic in MATCHES + NON_MATCHES:
        assert is_valid_topic_filter(topic_filter), topic_filter
        assert is_valid_topic_name(topic), topic


def test_client_needs_both_hash_and_sys_hash() -> None:
    # 4.7.2: to receive $SYS/ topics and the rest, subscribe to both "#" and "$SYS/#".
    topics = ["$SYS/broker/uptime", "sport/tennis", "/finance"]
    assert [t for t in topics if topic_matches("#", t)] == ["sport/tennis", "/finance"]
    assert [t for t in topics if topic_matches("$SYS/#", t)] == ["$SYS/broker/uptime"]


# -------------------------------------------------------------- properties

NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
levels = st.text(st.characters(exclude_categories=NO_SURROGATES, exclude_characters="\x00/+#$"))
names = st.lists(levels, min_size=1, max_size=6).filter(lambda parts: parts != [""])


@FAST
@given(names)
def test_every_name_matches_itself_and_hash(parts: list[str]) -> None:
    topic = "/".join(parts)
    assert is_valid_topic_name(topic)
    assert topic_matches(topic, topic)
    assert topic_matches("#", topic)


@FAST
@given(names, st.data())
def test_plus_for_any_levels_matches(parts: list[str], data: st.DataObject) -> None:
    mask = data.draw(st.lists(st.booleans(), min_size=len(parts), max_size=len(parts)))
    topic_filter = "/".join("+" if m else p for m, p in zip(mask, parts, strict=True))
    assert is_valid_topic_filter(topic_filter)
    assert topic_matches(topic_filter, "/".join(parts))
    # One level more or fewer never matches without "#".
    assert not topic_matches(topic_filter + "/+", "/".join(parts))
    assert not topic_matches(topic_filter, "/".join([*parts, "x"]))


@FAST
@given(names, st.data())
def test_hash_after_any_prefix_matches(parts: list[str], data: st.DataObject) -> None:
    keep = data.draw(st.integers(0, len(parts)))
    topic_filter = "/".join([*parts[:keep], "#"])
    assert is_valid_topic_filter(topic_filter)
    assert topic_matches(topic_filter, "/".join(parts))


@FAST
@given(names)
def test_dollar_topics_never_match_leading_wildcards(parts: list[str]) -> None:
    topic = "$" + "/".join(parts)
    assert is_valid_topic_name(topic)
    assert not topic_matches("#", topic)
    assert not topic_matches("/".join("+" for _ in parts), topic)
    assert not topic_matches("+/#", topic)
    assert topic_matches(topic, topic)
    assert topic_matches("$" + parts[0] + "/#", topic)
