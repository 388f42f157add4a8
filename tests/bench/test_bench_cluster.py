"""`midge bench --cluster 2`, briefly: Midge (and Aedes when its npm modules are
installed) clustered on a real redis-server, publishers on node 1 and subscribers
on node 2.

Tiny sizes, one round: these check that every cross-node scenario runs to its
end through two nodes and that QoS 1 loses nothing, not how fast anything is.
The Aedes test runs Aedes alone (the runner without Midge), so that each test
stays well under 30 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_support import TINY_FLAGS

from midge.bench import cluster
from midge.bench.brokers import BrokerSettings
from midge.bench.runner import run_against
from midge.bench.scenarios import Params
from midge.cli import main
from redis_server import require_redis

pytestmark = pytest.mark.timeout(30)

TINY = Params(
    duration=0.3,
    payload=16,
    window=20,
    rate=200.0,
    publishers=2,
    subscribers=2,
    max_messages=2000,
    quiet=0.5,
    timeout=10.0,
)
NO_LOSS = ("qos1", "latency-qos1")  # QoS 1: nothing may be lost


def check_result(path: Path, broker: str) -> None:
    result = json.loads(path.read_text())
    summary = result["summary"]
    assert set(summary) == set(cluster.DEFAULT_SCENARIOS)
    for name, entry in summary.items():
        losses = entry["losses"][broker]
        assert losses["errors"] == 0, (name, result["runs"])
        assert losses["expected"] > 0, name
        if name in NO_LOSS:
            assert losses["lost"] == 0, (name, losses)
    for run in result["runs"]:
        # node 1's CPU (publishers'), node 2's (subscribers') and Redis's, each measured
        # (too few messages here for all of them to be above /proc's 10 ms ticks)
        assert {"broker_cpu", "node2_cpu", "redis_cpu"} <= set(run["info"]), run
    assert result["setup"]["cluster_nodes"] == 2


def test_midge_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_redis()
    output = tmp_path / "cluster.json"
    assert main(["bench", "--cluster", "2", *TINY_FLAGS, "--output", str(output)]) == 0
    shown = capsys.readouterr().out
    assert "appendfsync everysec" in shown and "subscribers on node 2" in shown
    for name in cluster.DEFAULT_SCENARIOS:
        assert f"round 1 {name}" in shown
    for name in NO_LOSS:
        line = next(line for line in shown.splitlines() if line.startswith(f"round 1 {name} "))
        assert "lost 0/" in line, line
    check_result(output, "midge")


def test_aedes_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_redis()
    problem = cluster.aedes_problem()
    if problem is not None:
        pytest.skip(problem)
    output = tmp_path / "aedes.json"
    names = list(cluster.DEFAULT_SCENARIOS)
    lineup = cluster.lineup(2, ["aedes"])
    status = run_against(["aedes"], names, 1, TINY, output, None, False, lineup=lineup)
    assert status == 0, capsys.readouterr().out
    assert "aedes-persistence-redis" in capsys.readouterr().out
    check_result(output, "aedes")


def test_publishers_on_node_1_subscribers_on_node_2() -> None:
    require_redis()
    with cluster.start_cluster("midge", BrokerSettings(), 2) as deployed:
        target = deployed.target
        names = [process.name for process in deployed.processes]
        assert names == ["midge n1", "midge n2", "redis"]
        assert target.pid == deployed.processes[0].pid
        assert (target.host, target.port) != target.subscriber_address
        assert target.subscriber_address[1] == deployed.processes[1].port
        assert dict(target.helpers) == {
            "node2": deployed.processes[1].pid,
            "redis": deployed.processes[2].pid,
        }


@pytest.mark.parametrize(
    "args",
    [
        ["--cluster", "1"],
        ["--cluster", "2", "--scenario", "retained"],
        ["--cluster", "2", "--against", "mosquitto"],
        ["--against", "aedes"],
    ],
)
def test_cluster_arguments_refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *args]) == 2
    assert "midge bench:" in capsys.readouterr().err
