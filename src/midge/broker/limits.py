"""The configured limits on topic names and filters, shared by every handler."""

from __future__ import annotations

from midge.broker.config import BrokerConfig


def beyond_topic_limits(config: BrokerConfig, topic: str) -> bool:
    """Whether a topic name or filter passes max_topic_length or max_topic_levels."""
    return beyond_limits(topic, config.max_topic_length, config.max_topic_levels)


def beyond_limits(topic: str, max_length: int, max_levels: int) -> bool:
    length = len(topic)
    # A topic of L characters has at most L + 1 levels: count only long ones.
    return length > max_length or (length >= max_levels and topic.count("/") >= max_levels)
