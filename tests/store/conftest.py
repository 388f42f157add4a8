"""Fixtures of the store tests: every kind of store, and the sans-IO broker over one.

`store_kind` / `make_store` give the suites one store of each kind (memory,
SQLite, the cluster's Redis store on a redis-server of tests/sansio.py's).
`make_node` gives a `Harness` of tests/sansio.py over a fresh store, with its
own wall clock (`node.wall`, for session expiry) besides the monotonic `now`;
`node.restart()` builds a new broker from what the store's `load()` returns,
as a restarted process would (the SQLite file, or the connection to Redis,
is closed and opened again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from midge.broker.config import BrokerConfig
from sansio import STORE_KINDS, WALL_START, Harness, StoreBox


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(store_kind: str, tmp_path: Path) -> Iterator[Callable[[], StoreBox]]:
    """Factory of stores of the parametrized kind, closed at teardown."""
    made: list[StoreBox] = []

    def make() -> StoreBox:
        box = StoreBox(store_kind, tmp_path / f"store{len(made)}.db")
        made.append(box)
        return box

    yield make
    for box in made:
        box.close()


@pytest.fixture
def make_node(make_store: Callable[[], StoreBox]) -> Iterator[Callable[..., Harness]]:
    """Factory: `make_node(**BrokerConfig fields)` -> a broker over a fresh store.

    At teardown: the broker never wrote to a socket after closing it.
    """
    made: list[Harness] = []

    def make(**config: Any) -> Harness:
        node = Harness(BrokerConfig(**config).validate(), box=make_store(), wall=WALL_START)
        made.append(node)
        return node

    yield make
    for node in made:
        node.assert_no_writes_after_close()
