"""The configured limits on topic names and filters, shared by every handler."""

from __future__ import annotations

from midge.broker.config import BrokerConfig
from midge.protocol.errors import ProtocolError


def beyond_topic_limits(config: BrokerConfig, topic: str) -> bool:
    """Whether a topic name or filter passes max_topic_length or max_topic_levels."""
    return beyond_limits(topic, config.max_topic_length, config.max_topic_levels)


def check_topic_limits(config: BrokerConfig, topic: str, what: str = "topic") -> None:
    """ProtocolError for a topic name beyond the limits: a PUBLISH's, or a will's
    (a will is a PUBLISH made later: the same limits, as in Mosquitto)."""
    if beyond_topic_limits(config, topic):
        raise ProtocolError(f"{what} beyond max_topic_length / max_topic_levels: {topic[:64]!r}...")


def beyond_limits(topic: str, max_length: int, max_levels: int) -> bool:
    length = len(topic)
    # A topic of L characters has at most L + 1 levels: count only long ones.
    return length > max_length or (length >= max_levels and topic.count("/") >= max_levels)
