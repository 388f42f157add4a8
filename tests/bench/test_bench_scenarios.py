"""Every `midge bench` scenario, briefly, against a real Midge, so none of them can rot.

Tiny sizes (tenths of a second, a few thousand messages): these check that
each scenario runs to its end, counts what it should and loses nothing where
nothing may be lost, not how fast anything is. The runner's table, JSON and
CLI are checked on a one-round run against Midge alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from midge.bench.brokers import BrokerSettings, RunningBroker, midge_config, start_midge
from midge.bench.runner import Run, clean, run_against, summarise, table
from midge.bench.scenarios import SCENARIOS, Params, Target, generator_ceiling
from midge.cli import main

pytestmark = pytest.mark.timeout(60)

TINY = Params(
    duration=0.3,
    payload=16,
    window=20,
    rate=200.0,
    publishers=2,
    subscribers=2,
    connections=40,
    wildcard_connections=6,
    wildcard_filters=10,
    retained=300,
    max_messages=20_000,
    quiet=0.5,
    timeout=20.0,
)


@pytest.fixture(scope="module")
def midge() -> Iterator[RunningBroker]:
    with start_midge(BrokerSettings(max_queued_messages=0)) as broker:
        yield broker


def target(broker: RunningBroker) -> Target:
    return Target(broker.host, broker.port, broker.pid)


@pytest.mark.parametrize(
    "name",
    [
        name
        for name, scenario in SCENARIOS.items()
        # Overload: on their own settings, in test_bench_overload.py.
        if name not in ("persistent-qos1", "connections") and not scenario.acknowledged_loss
    ],
)
def test_scenario_runs_to_its_end(midge: RunningBroker, name: str) -> None:
    scenario = SCENARIOS[name]
    outcome = scenario.run(target(midge), TINY)
    headline = outcome.values[scenario.metrics[0].key]
    assert headline > 0 and math.isfinite(headline), outcome
    assert outcome.expected > 0
    assert outcome.lost == 0, outcome
    assert outcome.duplicates == 0, outcome


def test_connections_measures_rate_and_memory(midge: RunningBroker) -> None:
    outcome = SCENARIOS["connections"].run(target(midge), TINY)
    assert outcome.values["connections_per_s"] > 0
    assert "kib_per_connection" in outcome.values  # the PID is known: RSS from /proc
    assert outcome.info["rss_after_kib"] > 0


def test_persistent_qos1_on_the_sqlite_store() -> None:
    scenario = SCENARIOS["persistent-qos1"]
    assert 'store = "sqlite"' in midge_config(scenario.settings)
    with start_midge(scenario.settings) as broker:
        outcome = scenario.run(target(broker), TINY)
    assert outcome.values["msg_per_s"] > 0
    assert outcome.lost == 0 and outcome.duplicates == 0


def test_generator_ceiling_against_the_sink() -> None:
    figures = generator_ceiling(TINY, "qos0-fan-in")
    assert figures["publish_msg_per_s"] > 0
    assert figures["subscribe_msg_per_s"] > 0


def test_runner_writes_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "latest.json"
    status = run_against(
        ["midge"], ["qos1", "retained"], 1, TINY, output, None, measure_ceiling=False
    )
    assert status == 0
    shown = capsys.readouterr().out
    assert "qos1" in shown and "lost/expected" in shown
    result = json.loads(output.read_text())
    assert result["brokers"] == ["midge"]
    assert {run["scenario"] for run in result["runs"]} == {"qos1", "retained"}
    assert result["summary"]["qos1"]["metrics"]["msg_per_s"]["brokers"]["midge"]["median"] > 0
    assert result["machine"]["nproc"]


def test_summary_ratios_and_directions() -> None:
    scenarios = [SCENARIOS["latency"]]
    runs = [
        Run(1, "latency", "midge", {"p50_us": 200.0, "p99_us": 900.0, "max_us": 2000.0}),
        Run(1, "latency", "mosquitto", {"p50_us": 100.0, "p99_us": 900.0, "max_us": math.nan}),
        Run(2, "latency", "midge", {"p50_us": 400.0, "p99_us": 700.0, "max_us": 1000.0}),
        Run(2, "latency", "mosquitto", error="BenchError: broker died"),
    ]
    summary = summarise(runs, ["midge", "mosquitto"], scenarios)
    p50 = summary["latency"]["metrics"]["p50_us"]
    assert p50["higher_is_better"] is False
    assert p50["brokers"]["midge"] == {"median": 300.0, "min": 200.0, "max": 400.0, "runs": 2}
    assert p50["ratios"]["mosquitto"] == pytest.approx(3.0)
    assert "mosquitto" not in summary["latency"]["metrics"]["max_us"]["brokers"]
    assert summary["latency"]["losses"]["mosquitto"]["errors"] == 1
    text = table(summary, ["midge", "mosquitto"])
    assert "midge/mosquitto" in text and "lower" in text and "3.00" in text
    assert json.dumps(clean({"x": math.nan, "y": (1, 2)})) == '{"x": null, "y": [1, 2]}'


def test_chart_of_ratios(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from midge.bench.runner import chart  # noqa: PLC0415

    runs = [
        Run(1, "qos1", "midge", {"msg_per_s": 10.0}),
        Run(1, "qos1", "mosquitto", {"msg_per_s": 20.0}),
    ]
    summary = summarise(runs, ["midge", "mosquitto"], [SCENARIOS["qos1"]])
    path = tmp_path / "ratios.png"
    assert chart(summary, ["midge", "mosquitto"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_against_one_broker(midge: RunningBroker, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--host", midge.host, "--port", str(midge.port), "--pid", str(midge.pid)]
    args += ["--scenario", "qos2", "--duration", "0.2", "--max-messages", "2000", "--quiet", "0.5"]
    assert main(args) == 0
    shown = capsys.readouterr().out
    assert "delivered msg/s" in shown and "higher is better" in shown
    assert main(["bench", "--scenario", "nonsense"]) == 2


def test_slow_consumer_on_default_settings() -> None:
    """The scenario's own settings (Midge's default max_write_buffer, the memory store),
    with more bytes than that write buffer holds going to the subscriber that never reads."""
    scenario = SCENARIOS["slow-consumer"]
    assert 'store = "memory"' in midge_config(scenario.settings)
    params = Params(duration=1.0, payload=64, subscribers=2, max_messages=40_000, quiet=0.5)
    with start_midge(scenario.settings) as broker:
        outcome = scenario.run(target(broker), params)
    values = outcome.values
    assert values["msg_per_s"] > 0 and values["baseline_msg_per_s"] > 0
    assert math.isfinite(values["slow_ratio"]) and values["slow_ratio"] > 0
    assert values["rss_growth_kib"] >= 0  # the PID is known: RSS from /proc
    assert outcome.info["with_slow"]["expected"] > 0
    assert outcome.info["slow_rcvbuf"] == 4096


def test_cli_knows_slow_consumer(midge: RunningBroker) -> None:
    args = ["bench", "--port", str(midge.port), "--scenario", "slow-consumer"]
    args += ["--duration", "0.2", "--max-messages", "2000", "--subscribers", "2"]
    args += ["--quiet", "0.5"]
    assert main(args) == 0
