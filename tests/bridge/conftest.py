"""Fixtures of the bridge tests: broker processes (Midge and mosquitto) to bridge.

`peers` makes `Peer`s (tests/bridge/bridge_support.py) for one test, which
may stop, kill and restart them; `module_peers` the same for peers shared by
the tests of one module, stopped when the module ends. Every peer is stopped
by its PID. A failed test's report carries the logs of the peers it used
("bridge peer logs"), found among its fixtures' values (a `Peers`, or an
object with a `peers` attribute that is one).
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

# The integration tests' helpers (paho wrappers, mosquitto_pub / mosquitto_sub
# drivers) are reused here rather than copied: make them importable (by
# bridge_support.py too).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from bridge_support import Peers


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    """Factory of broker processes for one test."""
    factory = Peers(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def module_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """Factory of broker processes shared by one module's tests (which leave them running)."""
    factory = Peers(tmp_path_factory.mktemp("peers"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, add the logs of the peers the test used to its report."""
    report = yield
    if report.failed:
        found: list[Peers] = []
        for value in getattr(item, "funcargs", {}).values():
            made = value if isinstance(value, Peers) else getattr(value, "peers", None)
            if isinstance(made, Peers):
                found.append(made)
        for made in dict.fromkeys(found):  # once each, in order
            report.sections.append((f"bridge peer logs ({made.folder.name})", made.logs()))
    return report
