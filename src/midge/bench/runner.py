"""Every scenario against Midge and Mosquitto (and amqtt if installed), side by side.

For each round, for each scenario, each broker gets a fresh process with the
scenario's settings (`Scenario.settings`, translated per broker in
`brokers.py`), the scenario runs, and the broker stops. The brokers'
order alternates from round to round, so drift on a shared machine spreads
over all of them. The table shows, per metric, the median of the rounds,
their range, and the ratio Midge / other of the medians with the direction
that is better; the JSON file keeps every run; the chart shows every ratio
turned so that above 1 means Midge is better.

With `--cluster N` (a `Lineup` from `cluster`), each "broker" is a fresh
cluster instead: a redis-server and N nodes, publishers on the first and
subscribers on the last, every process's CPU share reported.

With several protocols (`--protocol 3.1.1,5`) every scenario runs at each,
one after the other on fresh brokers within a round (NAME and NAME@5.0),
and a second table shows each broker's 5.0 / 3.1.1 ratio of the medians.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from midge import __version__, compiled
from midge.bench.brokers import RunningBroker, mosquitto_version
from midge.bench.chart import REFERENCE, chart
from midge.bench.lineup import Deployer, Lineup, deploy_single
from midge.bench.overload import LOST
from midge.bench.scenarios import (
    SCENARIOS,
    Params,
    Scenario,
    at_protocol,
    generator_ceiling,
)
from midge.bench.wire import MQTT_3_1_1, PROTOCOL_NAMES, BenchError


@dataclass(slots=True)
class Run:
    round: int
    scenario: str
    broker: str
    values: dict[str, float] = field(default_factory=dict)
    expected: int = 0
    lost: int = 0
    duplicates: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


def run_one(
    scenario: Scenario,
    broker: str,
    params: Params,
    round_number: int,
    deploy: Deployer = deploy_single,
) -> Run:
    """A fresh broker (or cluster), one scenario, the broker stopped again."""
    run = Run(round_number, scenario.name, broker)
    began = time.monotonic()
    try:
        with deploy(broker, scenario.settings) as deployed:
            outcome = scenario.run(deployed.target, params)
            for running in deployed.processes:
                _check_alive(running)
        run.values, run.expected, run.lost = outcome.values, outcome.expected, outcome.lost
        run.duplicates, run.info = outcome.duplicates, outcome.info
    except (BenchError, OSError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    except Exception:  # a bug in a scenario must not lose the other runs
        run.error = traceback.format_exc()
    run.seconds = time.monotonic() - began
    return run


def _check_alive(running: RunningBroker) -> None:
    if not Path(f"/proc/{running.pid}").exists():
        raise BenchError(f"{running.name} died during the run:\n{running.log_tail()}")


def describe(run: Run, scenario: Scenario) -> str:
    if run.error:
        first_line = run.error.strip().splitlines()[-1]
        return f"round {run.round} {run.scenario:<16} {run.broker:<10} ERROR {first_line}"
    metrics = scenario.metrics
    if scenario.acknowledged_loss:  # the loss gets its own words below
        metrics = tuple(m for m in metrics if m.key != LOST)
    parts = [f"{m.label} {fmt(run.values.get(m.key, math.nan))}" for m in metrics]
    if scenario.acknowledged_loss:
        parts.append(acknowledged_loss_text(run.lost, run.expected))
    elif run.expected:
        parts.append(f"lost {run.lost}/{run.expected}")
    if run.duplicates:
        parts.append(f"dup {run.duplicates}")
    for name, share in _helper_cpu(run.info).items():
        parts.append(f"{name} CPU {share:.0%}")
    if "generator_cpu" in run.info:
        parts.append(f"generator {run.info['generator_cpu']:.2f} CPU")
    return (
        f"round {run.round} {run.scenario:<16} {run.broker:<10} "
        + ", ".join(parts)
        + f" ({run.seconds:.0f} s)"
    )


def _helper_cpu(info: dict[str, Any]) -> dict[str, float]:
    """The broker's CPU share and its helpers' (other nodes, Redis), by name."""
    return {
        key.removesuffix("_cpu"): value
        for key, value in info.items()
        if key.endswith("_cpu") and key != "generator_cpu" and isinstance(value, int | float)
    }


def acknowledged_loss_text(lost: int, acknowledged: int) -> str:
    """Shouted when non-zero: the broker took responsibility for these and dropped them."""
    if not lost:
        return f"lost 0 of {acknowledged:,} acknowledged"
    return f"LOST {lost:,} of {acknowledged:,} acknowledged ({lost / max(1, acknowledged):.1%})"


def fmt(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# ------------------------------------------------------------------ summary


def summarise(runs: list[Run], brokers: list[str], scenarios: list[Scenario]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for scenario in scenarios:
        mine = [run for run in runs if run.scenario == scenario.name]
        entry: dict[str, Any] = {
            "title": scenario.title,
            "metrics": {},
            "losses": {},
            "acknowledged_loss": scenario.acknowledged_loss,
        }
        for metric in scenario.metrics:
            per_broker = {}
            for broker in brokers:
                values = [
                    run.values[metric.key]
                    for run in mine
                    if run.broker == broker
                    and not run.error
                    and not math.isnan(run.values.get(metric.key, math.nan))
                ]
                if values:
                    per_broker[broker] = {
                        "median": statistics.median(values),
                        "min": min(values),
                        "max": max(values),
                        "runs": len(values),
                    }
            ratios = {
                other: per_broker[REFERENCE]["median"] / per_broker[other]["median"]
                for other in brokers
                if other != REFERENCE
                and REFERENCE in per_broker
                and other in per_broker
                and per_broker[other]["median"]
            }
            entry["metrics"][metric.key] = {
                "label": metric.label,
                "higher_is_better": metric.higher_is_better,
                "brokers": per_broker,
                "ratios": ratios,
            }
        for broker in brokers:
            done = [run for run in mine if run.broker == broker and not run.error]
            entry["losses"][broker] = {
                "lost": sum(run.lost for run in done),
                "expected": sum(run.expected for run in done),
                "duplicates": sum(run.duplicates for run in done),
                "errors": sum(1 for run in mine if run.broker == broker and run.error),
            }
            # Every CPU share the runs have (a cluster's: each node's and Redis's too).
            cpus = sorted({key for run in done for key in run.info if key.endswith("_cpu")})
            for key in dict.fromkeys(["broker_cpu", "generator_cpu", *cpus]):
                entry["losses"][broker][f"{key}_median"] = _median(
                    [run.info.get(key) for run in done]
                )
        summary[scenario.name] = entry
    return summary


def _median(values: list[Any]) -> float | None:
    found = [v for v in values if isinstance(v, int | float)]
    return statistics.median(found) if found else None


def table(summary: dict[str, Any], brokers: list[str]) -> str:
    others = [b for b in brokers if b != REFERENCE]
    width = max([16, *(len(name) for name in summary)])
    header = f"{'scenario':<{width}} {'metric':<26} {'better':<6}"
    for broker in brokers:
        header += f" {broker + ' median (min-max)':>34}"
    for other in others:
        header += f" {'midge/' + other:>16}"
    lines = [header, "-" * len(header)]
    for name, entry in summary.items():
        first = True
        for metric in entry["metrics"].values():
            line = f"{name if first else '':<{width}} {metric['label']:<26} "
            line += f"{'higher' if metric['higher_is_better'] else 'lower':<6}"
            first = False
            for broker in brokers:
                cell = metric["brokers"].get(broker)
                text = (
                    f"{fmt(cell['median'])} ({fmt(cell['min'])}-{fmt(cell['max'])})"
                    if cell
                    else "-"
                )
                line += f" {text:>34}"
            for other in others:
                ratio = metric["ratios"].get(other)
                line += f" {f'{ratio:.2f}' if ratio is not None else '-':>16}"
            lines.append(line)
        losses = entry["losses"]
        line = f"{'':<{width}} {'lost/expected (all runs)':<26} {'':<6}"
        for broker in brokers:
            loss = losses.get(broker, {})
            text = (
                f"{loss.get('lost', 0):,}/{loss.get('expected', 0):,}"
                if loss.get("expected")
                else "-"
            )
            if loss.get("duplicates"):
                text += f" +{loss['duplicates']:,} extra"
            if loss.get("errors"):
                text += f" ({loss['errors']} failed)"
            line += f" {text:>34}"
        lines.append(line)
    return "\n".join(lines)


def protocol_ratios(
    summary: dict[str, Any], brokers: list[str], scenarios: list[Scenario]
) -> dict[str, Any]:
    """For every NAME@5.0 that ran beside NAME: per metric and broker, the median
    at 5.0 over the median at 3.1.1 (same direction as the metric)."""
    ratios: dict[str, Any] = {}
    for scenario in scenarios:
        if not scenario.base or scenario.base not in summary:
            continue
        entry = {}
        for key, metric in summary[scenario.name]["metrics"].items():
            base = summary[scenario.base]["metrics"].get(key, {}).get("brokers", {})
            mine = metric["brokers"]
            entry[key] = {
                "label": metric["label"],
                "higher_is_better": metric["higher_is_better"],
                "ratios": {
                    broker: mine[broker]["median"] / base[broker]["median"]
                    for broker in brokers
                    if broker in mine and broker in base and base[broker]["median"]
                },
            }
        ratios[scenario.name] = entry
    return ratios


def protocol_table(ratios: dict[str, Any], brokers: list[str]) -> str:
    """The 5.0 / 3.1.1 ratios, one line per metric; "" when nothing ran at both."""
    if not ratios:
        return ""
    width = max(16, *(len(name) for name in ratios))
    header = f"{'MQTT 5.0 / 3.1.1':<{width}} {'metric':<26} {'better':<6}"
    header += "".join(f" {broker:>12}" for broker in brokers)
    lines = [header, "-" * len(header)]
    for name, entry in ratios.items():
        first = True
        for metric in entry.values():
            line = f"{name if first else '':<{width}} {metric['label']:<26} "
            line += f"{'higher' if metric['higher_is_better'] else 'lower':<6}"
            first = False
            for broker in brokers:
                ratio = metric["ratios"].get(broker)
                line += f" {f'{ratio:.2f}' if ratio is not None else '-':>12}"
            lines.append(line)
    return "\n".join(lines)


def acknowledged_losses(summary: dict[str, Any], brokers: list[str]) -> str:
    """The overload scenarios' finding, per scenario and broker over all rounds:
    messages acknowledged (PUBACK / PUBREC) and never delivered; "" without any."""
    lines = []
    for name, entry in summary.items():
        if not entry.get("acknowledged_loss"):
            continue
        for broker in brokers:
            loss = entry["losses"].get(broker, {})
            if loss.get("expected"):
                text = acknowledged_loss_text(loss["lost"], loss["expected"])
                lines.append(f"  {name:<16} {broker:<10} {text}")
    if not lines:
        return ""
    title = "acknowledged, then never delivered (QoS 1/2 allow none; all rounds):"
    return "\n".join([title, *lines])


# ------------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        uvloop_version: str | None = metadata.version("uvloop")
    except metadata.PackageNotFoundError:
        uvloop_version = None
    return {
        "git": _git(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "uvloop": uvloop_version,
        "mosquitto": mosquitto_version(),
        "midge": __version__,
        "midge_build": "compiled with mypyc" if compiled() else "pure Python",
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def _git() -> dict[str, Any] | None:
    """The commit measured and whether the work tree differed from it (read-only git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "modified": [line[3:] for line in changed if line.strip()]}


# ------------------------------------------------------------------ main


def run_against(
    brokers: list[str],
    scenario_names: list[str],
    rounds: int,
    params: Params,
    output: Path,
    chart_path: Path | None,
    measure_ceiling: bool = True,
    command: str = "",
    protocols: tuple[int, ...] = (MQTT_3_1_1,),
    lineup: Lineup | None = None,
) -> int:
    lineup = lineup or Lineup()
    missing = [b for b in brokers if not lineup.available(b)]
    for name in missing:
        print(f"{name} is not installed: skipping it", file=sys.stderr)
    brokers = [b for b in brokers if b not in missing]
    scenarios = [
        at_protocol(SCENARIOS[name], protocol) for name in scenario_names for protocol in protocols
    ]
    info = machine()
    _announce(brokers, scenarios, rounds, protocols, info, lineup)
    ceiling = _ceilings(params, scenario_names) if measure_ceiling else {}
    runs: list[Run] = []
    for round_number in range(1, rounds + 1):
        order = brokers if round_number % 2 else brokers[::-1]
        for scenario in scenarios:
            for broker in order:
                run = run_one(scenario, broker, params, round_number, lineup.deploy)
                runs.append(run)
                print(describe(run, scenario), flush=True)
    summary = summarise(runs, brokers, scenarios)
    by_protocol = protocol_ratios(summary, brokers, scenarios)
    _print_tables(summary, brokers, by_protocol, ceiling)
    result = {
        "benchmark": "midge bench",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "machine": info,
        "setup": lineup.info,
        "parameters": asdict(params),
        "rounds": rounds,
        "brokers": brokers,
        "protocols": [PROTOCOL_NAMES[protocol] for protocol in protocols],
        "ceiling": ceiling,
        "summary": summary,
        "protocol_ratios": by_protocol,
        "runs": [asdict(run) for run in runs],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(clean(result), indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {output}")
    if chart_path is not None:
        if chart(summary, brokers, chart_path):
            print(f"chart: {chart_path}")
        else:
            print("chart: skipped (pip install 'midge[bench]' for matplotlib)")
    return 1 if _failures(runs, scenarios) else 0


def _announce(
    brokers: list[str],
    scenarios: list[Scenario],
    rounds: int,
    protocols: tuple[int, ...],
    info: dict[str, Any],
    lineup: Lineup,
) -> None:
    levels = "/".join(PROTOCOL_NAMES[protocol] for protocol in protocols)
    print(
        f"midge bench: {', '.join(brokers)}; {len(scenarios)} scenarios x {rounds} rounds; "
        f"MQTT {levels}; "
        f"{info['nproc']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"uvloop {info['uvloop']}, mosquitto {info['mosquitto']}; "
        f"midge {info['midge']} {info['midge_build']}",
        flush=True,
    )
    if lineup.header:
        print(lineup.header, flush=True)
    if "midge" in brokers and not compiled():
        print(
            "note: Midge runs as pure Python here; `scripts/compile --extra bench` installs "
            "the mypyc-compiled wheel into .venv-compiled: run `.venv-compiled/bin/midge bench` "
            "(the build scripts/serve runs and benchmarks/RESULTS.md measures)",
            flush=True,
        )


def _ceilings(params: Params, scenario_names: list[str]) -> dict[str, Any]:
    """The generator's ceiling for the flood scenarios that run."""
    ceiling: dict[str, Any] = {}
    for name in ("qos0-fan-in", "qos0-fan-out"):
        if name in scenario_names:
            try:
                ceiling[name] = generator_ceiling(params, name)
            except (BenchError, OSError) as exc:
                ceiling[name] = {"error": str(exc)}
            print(
                f"generator ceiling ({name} into the sink): {ceiling_text(ceiling[name])}",
                flush=True,
            )
    return ceiling


def _print_tables(
    summary: dict[str, Any],
    brokers: list[str],
    by_protocol: dict[str, Any],
    ceiling: dict[str, Any],
) -> None:
    print()
    print(table(summary, brokers))
    if by_protocol:
        print()
        print(protocol_table(by_protocol, brokers))
    losses = acknowledged_losses(summary, brokers)
    if losses:
        print()
        print(losses)
    if ceiling:
        print()
        for name, figures in ceiling.items():
            print(f"generator ceiling ({name} into the sink): {ceiling_text(figures)}")


def ceiling_text(figures: dict[str, Any]) -> str:
    if "error" in figures:
        return f"ERROR {figures['error']}"
    return (
        f"publishers {fmt(figures['publish_msg_per_s'])} msg/s, "
        f"subscribers {fmt(figures['subscribe_msg_per_s'])} msg/s, "
        f"generator {figures['generator_cpu']:.2f} CPU"
    )


def clean(value: Any) -> Any:
    """JSON-safe: NaN becomes null, tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    return value


def _failures(runs: list[Run], scenarios: list[Scenario]) -> list[Run]:
    strict = {s.name for s in scenarios if not s.loss_allowed}
    return [run for run in runs if run.error or (run.scenario in strict and run.lost)]
