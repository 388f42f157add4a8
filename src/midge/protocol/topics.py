"""Topic names and topic filters: validation and matching (MQTT 3.1.1 section 4.7)."""

from __future__ import annotations

from typing import Final

# Final, so that compiled modules use the values, not a lookup of a module global.
MAX_TOPIC_BYTES: Final = 65535  # a UTF-8 string field's limit [MQTT-4.7.3-3]
MULTI_LEVEL: Final = "#"
SINGLE_LEVEL: Final = "+"
SEPARATOR: Final = "/"


def _is_valid_string(text: str) -> bool:
    """Non-empty, no U+0000, at most 65535 bytes of UTF-8 [MQTT-4.7.3-1/2/3]."""
    if not text or "\x00" in text:
        return False
    # Only a string of more than 65535 / 4 characters can be too long in UTF-8.
    return len(text) <= MAX_TOPIC_BYTES // 4 or len(text.encode("utf-8")) <= MAX_TOPIC_BYTES


def is_valid_topic_name(topic: str) -> bool:
    """A topic name for PUBLISH: a valid string without wildcards [MQTT-3.3.2-2]."""
    return "+" not in topic and "#" not in topic and _is_valid_string(topic)


def is_valid_topic_filter(topic_filter: str) -> bool:
    """A filter for SUBSCRIBE: `#` only as a whole last level, `+` only as a whole level."""
    if not _is_valid_string(topic_filter):
        return False
    # Each wildcard is checked where it stands, without splitting into levels:
    # this runs for every filter of every SUBSCRIBE.
    last = len(topic_filter) - 1
    index = topic_filter.find(MULTI_LEVEL)
    if index >= 0 and (index != last or (index and topic_filter[index - 1] != SEPARATOR)):
        return False  # the first '#' must be the last character, a level of its own
    index = topic_filter.find(SINGLE_LEVEL)
    while index >= 0:
        if (index and topic_filter[index - 1] != SEPARATOR) or (
            index != last and topic_filter[index + 1] != SEPARATOR
        ):
            return False
        index = topic_filter.find(SINGLE_LEVEL, index + 1)
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches `topic_filter`; wildcards never match a leading `$` level."""
    if topic.startswith("$") and topic_filter[:1] in (SINGLE_LEVEL, MULTI_LEVEL):
        return False
    filter_levels = topic_filter.split(SEPARATOR)
    topic_levels = topic.split(SEPARATOR)
    for index, level in enumerate(filter_levels):
        if level == MULTI_LEVEL:
            return True
        if index >= len(topic_levels):
            return False
        if level != SINGLE_LEVEL and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
