"""`midge check` against a 3-node cluster, its clients spread over the nodes (issue 14).

Every scenario of both sets (MQTT 3.1.1 and 5.0) runs through the runner
`midge check` uses (`runner.run_one`) on a `Target` naming the three nodes:
each new connection of a scenario goes to the next node in turn (its client
is named "sub@node2" in failure messages), except for the scenarios of
`runner.ONE_NODE`, which need one broker. As tests/conformance does against
one Midge, each scenario must pass (or report itself not applicable).

Run one after the other, the scenarios take over a minute (most of it quiet
periods and keep-alive waits), so the module-scoped `outcomes` fixture runs
them all at once, `PARALLEL` at a time, each under a prefix of its own, and
each test reads its scenario's result. `test_check_command_spreads_over_nodes`
runs the `midge check` command itself with the three addresses.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from cluster_support import Cluster, ClusterFactory

from midge.conformance.registry import ALL_PROTOCOLS, Scenario, all_scenarios
from midge.conformance.runner import ONE_NODE, Result, run_one
from midge.conformance.target import Target

pytestmark = pytest.mark.timeout(80)

SCENARIOS = all_scenarios(ALL_PROTOCOLS)
PARALLEL = 12
"""Scenarios running at once: they mostly wait, so this bounds the file's time, not the CPU."""
CLI_AREAS = ("02", "10", "21")
"""What the command-line run checks: sessions and takeover, 3.1.1 and 5.0."""


@pytest.fixture(scope="module")
def trio(module_cluster: ClusterFactory) -> Cluster:
    return module_cluster(3)


@pytest.fixture(scope="module")
def outcomes(trio: Cluster) -> dict[str, Result]:
    """Every scenario's result, run on the three nodes in turn."""
    target = Target.spread([node.address for node in trio])
    assert len(target.addresses) == len(trio)

    def run(item: Scenario) -> Result:
        return run_one(target, item)

    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="check") as pool:
        return {result.id: result for result in pool.map(run, SCENARIOS)}


@pytest.mark.parametrize("scenario_id", [item.id for item in SCENARIOS])
def test_scenario_passes_on_three_nodes(
    trio: Cluster, outcomes: dict[str, Result], scenario_id: str
) -> None:
    result = outcomes[scenario_id]
    assert result.passed, f"{result.id} {result.title} [{result.rule}]: {result.detail}"
    if not result.applicable:
        pytest.skip(result.detail)


def test_one_node_scenarios_are_real_and_explained() -> None:
    known = {item.id for item in SCENARIOS}
    assert set(ONE_NODE) <= known, sorted(set(ONE_NODE) - known)
    assert all(why.strip() for why in ONE_NODE.values())


def test_check_command_spreads_over_nodes(trio: Cluster) -> None:
    """`midge check A B C`: the same runs from the command line, every node probed first."""
    addresses = [f"{node.host}:{node.port}" for node in trio]
    selected = [item for item in SCENARIOS if item.id.split("-")[0] in CLI_AREAS]
    only = ["--only", ",".join(CLI_AREAS)]
    done = subprocess.run(
        [sys.executable, "-m", "midge", "check", *addresses, "--protocol", "all", *only],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    heading = f"midge check {', '.join(addresses)}: {len(selected)} scenarios, clients spread"
    assert lines[0].startswith(f"{heading} over 3 nodes, MQTT 3.1.1 + MQTT 5.0,"), lines[0]
    assert lines[-1] == f"{len(selected)} passed, 0 failed", done.stdout
