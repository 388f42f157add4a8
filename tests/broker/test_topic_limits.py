"""max_topic_length and max_topic_levels: PUBLISH beyond them closes, SUBSCRIBE gets 0x80."""

from __future__ import annotations

import pytest

from midge.protocol.packets import Publish, SubAck, Subscribe, Subscription


@pytest.fixture
def limited(make_harness):
    return make_harness(max_topic_length=20, max_topic_levels=3)


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        ("a/b/c", True),  # 3 levels
        ("a/b/c/d", False),  # 4 levels
        ("///", False),  # 4 empty levels
        ("x" * 20, True),
        ("x" * 21, False),
    ],
)
def test_publish_beyond_the_limits_closes_only_that_client(limited, topic, allowed):
    watcher = limited.connect("watcher")
    watcher.send(Subscribe(1, (Subscription("#", 0),)))
    assert watcher.received() == [SubAck(1, (0,))]
    publisher = limited.connect("publisher")
    publisher.send(Publish(topic, b"m", 0))
    assert publisher.closed is not allowed
    assert watcher.received() == ([Publish(topic, b"m", 0)] if allowed else [])
    assert not watcher.closed


def test_subscribe_beyond_the_limits_gets_0x80_for_that_filter(limited):
    client = limited.connect("c")
    filters = ("a/+/c", "a/b/c/#", "#", "y" * 21, "y" * 20)
    client.send(Subscribe(7, tuple(Subscription(f, 1) for f in filters)))
    assert client.received() == [SubAck(7, (1, 0x80, 1, 0x80, 1))]
    assert not client.closed
