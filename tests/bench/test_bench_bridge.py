"""`midge bench --bridge --against mosquitto`, briefly: Midge's bridge and
Mosquitto's, each from a fresh local broker to a fresh remote Mosquitto.

Tiny sizes, one round: these check that the default scenarios run to their
end across each bridge and that QoS 1 loses nothing, not how fast anything is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_support import TINY_FLAGS

from midge.bench import bridge
from midge.bench.brokers import mosquitto_binary
from midge.cli import main

pytestmark = pytest.mark.timeout(60)


def test_midge_bridge_against_mosquittos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    output = tmp_path / "bridge.json"
    argv = ["bench", "--bridge", "--against", "mosquitto", *TINY_FLAGS, "--output", str(output)]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert "subscribers on the remote" in shown
    result = json.loads(output.read_text())
    assert set(result["summary"]) == set(bridge.DEFAULT_SCENARIOS)
    for name, entry in result["summary"].items():
        for broker in ("midge", "mosquitto"):
            losses = entry["losses"][broker]
            assert losses["errors"] == 0, (name, broker, result["runs"])
            assert losses["expected"] > 0 and losses["lost"] == 0, (name, broker, losses)
    assert result["setup"]["bridge"] == "topic bench/# out 2"
