"""Shared fixtures: real brokers on ephemeral loopback ports (see tests/brokers.py)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from brokers import Broker, mosquitto_binary, start_midge, start_mosquitto
from redis_server import RedisServer


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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run; tests keep apart by key prefix
    (`unique_prefix`). Tests that stop or kill Redis start their own."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


_prefixes = itertools.count(1)


@pytest.fixture
def unique_prefix() -> str:
    """A Redis key prefix no other test of this run uses."""
    return f"t{os.getpid()}x{next(_prefixes)}"
