"""Fixtures of the cluster tests: Midge nodes on the session's redis-server.

`cluster(size=3, *, clustered=True, via_config=False)` starts a cluster of
`size` nodes n1..nN (tests/cluster/cluster_support.py: `Cluster`, `Node`)
and stops them all, by PID, when the test ends; `module_cluster` is the same
factory for clusters shared by the tests of one module, stopped when the
module ends. Each cluster has a Redis key prefix of its own (`unique_prefix`
for the function-scoped factory), so no test sees another's keys. A failed
test's report carries the logs of its clusters' nodes ("cluster logs").
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from cluster_support import Cluster, ClusterFactory, module_prefix

from redis_server import RedisServer

# The integration tests' helpers (paho wrappers, mosquitto_pub / mosquitto_sub
# drivers) are reused here rather than copied: make them importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))


@pytest.fixture
def cluster(
    redis_server: RedisServer, unique_prefix: str, tmp_path: Path
) -> Iterator[ClusterFactory]:
    """Factory of clusters for one test (which may stop, kill and restart nodes)."""
    factory = ClusterFactory(redis_server, unique_prefix, tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def module_cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterFactory]:
    """Factory of clusters shared by one module's tests (which must leave them running)."""
    factory = ClusterFactory(redis_server, module_prefix(), tmp_path_factory.mktemp("cluster"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, add every node's log of the clusters the test used to its report."""
    report = yield
    if report.failed:
        clusters: list[Cluster] = []
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Cluster):
                clusters.append(value)
            elif isinstance(value, ClusterFactory):
                clusters.extend(value.made)
        for cluster in dict.fromkeys(clusters):  # once each, in order
            report.sections.append((f"cluster logs ({cluster.prefix})", cluster.logs()))
    return report
