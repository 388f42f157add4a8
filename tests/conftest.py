"""Shared fixtures: real brokers on ephemeral loopback ports (see tests/brokers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokers import Broker, mosquitto_binary, start_midge, start_mosquitto


@pytest.fixture(scope="module")
def midge_broker() -> Iterator[Broker]:
    """A Midge broker with its default configuration, one per test module."""
    with start_midge() as broker:
        yield broker


@pytest.fixture(scope="module")
def mosquitto_broker() -> Iterator[Broker]:
    """A mosquitto broker (anonymous, no persistence), one per test module."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    with start_mosquitto() as broker:
        yield broker
