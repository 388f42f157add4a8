"""`midge bench` with MQTT 5.0 clients (`--protocol 5`), briefly, against a real Midge.

The same tiny sizes as test_bench_scenarios.py: each 5.0 variant runs to its
end and loses nothing; the generator's 5.0 packets are what Midge's own 5.0
codec reads; the runner puts NAME and NAME@5.0 side by side with their ratio.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from midge.bench.brokers import BrokerSettings, RunningBroker, start_midge
from midge.bench.publishing import _acknowledgements5, _short_forms
from midge.bench.runner import run_against
from midge.bench.scenarios import SCENARIOS, Params, Target, at_protocol
from midge.bench.wire import MQTT_5, PublishShape, connect_packet, publish_stream
from midge.cli import main
from midge.protocol.codec import decode_all
from midge.protocol.packets import Connect, Publish

pytestmark = pytest.mark.timeout(60)

TINY = Params(
    duration=0.3,
    payload=16,
    window=20,
    rate=200.0,
    wildcard_connections=6,
    wildcard_filters=10,
    retained=300,
    max_messages=20_000,
    quiet=0.5,
    timeout=20.0,
    publishers=2,
    subscribers=2,
)


@pytest.fixture(scope="module")
def midge() -> Iterator[RunningBroker]:
    with start_midge(BrokerSettings(max_queued_messages=0)) as broker:
        yield broker


@pytest.mark.parametrize(
    "name", ["qos0-fan-in", "qos0-fan-out", "qos1", "qos2", "latency", "wildcard", "retained"]
)
def test_scenario_at_5_runs_and_loses_nothing(midge: RunningBroker, name: str) -> None:
    scenario = at_protocol(SCENARIOS[name], MQTT_5)
    assert scenario.name == f"{name}@5.0" and scenario.base == name
    outcome = scenario.run(Target(midge.host, midge.port, midge.pid), TINY)
    headline = outcome.values[scenario.metrics[0].key]
    assert headline > 0 and math.isfinite(headline), outcome
    assert outcome.expected > 0
    assert outcome.lost == 0, outcome
    assert outcome.duplicates == 0, outcome


def test_persistent_qos1_at_5_asks_for_a_session_that_stays() -> None:
    connect = decode_all(connect_packet("c", False, MQTT_5), MQTT_5)[0]
    assert isinstance(connect, Connect) and connect.protocol_level == MQTT_5
    assert connect.properties is not None and connect.properties.session_expiry_interval
    scenario = at_protocol(SCENARIOS["persistent-qos1"], MQTT_5)
    with start_midge(scenario.settings) as broker:
        outcome = scenario.run(Target(broker.host, broker.port, broker.pid), TINY)
    assert outcome.values["msg_per_s"] > 0
    assert outcome.lost == 0 and outcome.duplicates == 0


def test_generator_packets_are_plain_5_0() -> None:
    plain = decode_all(connect_packet("c", True, MQTT_5), MQTT_5)[0]
    assert isinstance(plain, Connect) and plain.properties is None  # empty property block
    stream = publish_stream(["bench/qos1"], 16, 1, 7, 3, protocol=MQTT_5)
    shape = PublishShape.of(len("bench/qos1"), 16, 1, MQTT_5)
    assert len(stream) == 3 * shape.size
    packets = decode_all(stream, MQTT_5)
    assert [p.packet_id for p in packets if isinstance(p, Publish)] == [8, 9, 10]
    for packet in packets:
        assert isinstance(packet, Publish) and packet.properties is None
        assert len(packet.payload) == 16
    assert stream[shape.payload_at : shape.payload_at + 4] == (7).to_bytes(4, "little")


def test_acknowledgements_with_reason_codes() -> None:
    # PUBACK 1 short, PUBACK 2 "no matching subscribers", PUBACK 3 refused, then half of one.
    pending = bytearray(bytes.fromhex("40020001400300021040030003874002"))
    assert _short_forms(pending[:4]) and not _short_forms(pending)
    assert _acknowledgements5(pending) == (3, 2, b"")
    assert pending == bytearray(b"\x40\x02")
    # PUBREC: a success gets its PUBREL, a refusal ends the flow; PUBCOMP completes.
    pending = bytearray(bytes.fromhex("50020004500300058070020006"))
    assert _acknowledgements5(pending) == (2, 1, bytes.fromhex("62020004"))


def test_runner_with_both_protocols(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "latest.json"
    status = run_against(
        ["midge"], ["qos1"], 1, TINY, output, None, measure_ceiling=False, protocols=(4, 5)
    )
    assert status == 0
    shown = capsys.readouterr().out
    assert "qos1@5.0" in shown and "MQTT 5.0 / 3.1.1" in shown
    result = json.loads(output.read_text())
    assert result["protocols"] == ["3.1.1", "5.0"]
    assert {run["scenario"] for run in result["runs"]} == {"qos1", "qos1@5.0"}
    ratio = result["protocol_ratios"]["qos1@5.0"]["msg_per_s"]["ratios"]["midge"]
    assert ratio > 0


def test_cli_protocol_flag(midge: RunningBroker, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--host", midge.host, "--port", str(midge.port), "--protocol", "5"]
    args += ["--scenario", "qos0-fan-in", "--duration", "0.2", "--max-messages", "2000"]
    args += ["--quiet", "0.5"]
    assert main(args) == 0
    assert "qos0-fan-in@5.0" in capsys.readouterr().out
    assert main(["bench", "--protocol", "6"]) == 2
    assert main(["bench", "--protocol", "5", "--scenario", "connections"]) == 2
