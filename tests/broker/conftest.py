"""Fixtures of the broker core tests: the sans-IO harness of tests/sansio.py.

Test modules get a broker through `harness` / `make_harness`, and password
files through `password_file` / `password_lines`; what the harness and its
clients can do is documented in tests/sansio.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from brokers import password_text, pbkdf2_line, sha512_line
from midge.broker.auth import Authenticator
from midge.broker.config import BrokerConfig
from sansio import Harness


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    """Factory: `make_harness(**BrokerConfig fields)` -> a fresh broker harness.

    At teardown every transport of every harness is checked: the broker must never
    write to a socket after closing or aborting it.
    """
    made: list[Harness] = []

    def make(authenticator: Authenticator | None = None, **config: Any) -> Harness:
        harness = Harness(BrokerConfig(**config).validate(), authenticator)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.assert_no_writes_after_close()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    """A broker with the default configuration."""
    return make_harness()


@pytest.fixture
def password_lines() -> dict[str, Callable[[str, str], str]]:
    """Builders of password-file lines without the mosquitto_passwd binary."""
    return {"7": pbkdf2_line, "6": sha512_line}


@pytest.fixture
def password_file(tmp_path: Path) -> Callable[[Iterable[str]], str]:
    """Factory: write the given lines to a password file, return its path."""

    def write(lines: Iterable[str]) -> str:
        path = tmp_path / "passwd"
        path.write_text(password_text(lines), encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def toml_file(tmp_path: Path) -> Callable[[str], Path]:
    """Factory: write the given text to midge.toml, return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "midge.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write
