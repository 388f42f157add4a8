"""`midge bench`: run scenarios against a broker, or Midge against Mosquitto.

    midge bench --host H --port P --scenario NAME [--duration S] ...   one broker, any broker
    midge bench --against mosquitto [--rounds 3] ...                   the side-by-side runner
    midge bench --cluster 2 [--against aedes] ...        clusters of 2 nodes on Redis, cross-node
    midge bench --bridge [--against mosquitto] ...       through a bridge to a remote Mosquitto
    midge bench --sink [--scenario qos0-fan-in]                       the generator's ceiling
    midge bench ... --protocol 5          (or 3.1.1,5: both)         clients speak MQTT 5.0

This module only defines the arguments (so `midge --help` stays fast); the
work is imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from midge.bench.lineup import Lineup
    from midge.bench.scenarios import Params

SCENARIO_NAMES = (
    "qos0-fan-in",
    "qos0-fan-out",
    "qos1",
    "qos2",
    "latency",
    "latency-qos1",
    "connections",
    "wildcard",
    "retained",
    "persistent-qos1",
    "slow-consumer",
    "qos1-overload-1",
    "qos1-overload-4",
    "qos2-overload-1",
    "qos2-overload-4",
)
# What `--cluster N` and `--bridge` run by default (bench/cluster.py and bridge.py
# DEFAULT_SCENARIOS, kept here so that `midge --help` does not import them):
# issue 14's cross-node figures, issue 15's figure through a bridge.
BRIDGE_DEFAULT = ("qos1", "latency-qos1")
CLUSTER_DEFAULT = ("qos0-fan-in", "qos0-fan-out", "qos1", "latency-qos1")
DEFAULT_OUTPUT = Path("benchmarks/results/latest.json")
# --protocol values: the protocol level each means.
PROTOCOLS = {"3.1.1": 4, "4": 4, "5": 5, "5.0": 5}

# Params fields set from flags of the same name (dashes for underscores).
_SIZE_FLAGS = {
    "duration": (float, "seconds of publishing per throughput/latency run (default 5)"),
    "payload": (int, "payload bytes per message (default 64, at least 8)"),
    "window": (int, "QoS 1: messages in flight end to end at most (default 100)"),
    "qos2_window": (int, "QoS 2: the same (default 20, Mosquitto's incoming QoS 2 limit)"),
    "overload_window": (
        int,
        "qos1/qos2-overload-N: unacknowledged messages per publisher, by broker ack (default 64)",
    ),
    "rate": (float, "latency: messages per second (default 1000)"),
    "publishers": (int, "qos0-fan-in: publishers (default 4)"),
    "subscribers": (int, "qos0-fan-out: subscribers (default 8)"),
    "connections": (int, "connections: idle connections to open (default 5000)"),
    "wildcard_connections": (int, "wildcard: subscriber connections (default 100)"),
    "wildcard_filters": (int, "wildcard: distinct filters per connection (default 100)"),
    "retained": (int, "retained: retained messages to store (default 100000)"),
    "max_messages": (int, "per publisher at most, whichever comes first (default 10000000)"),
    "quiet": (float, "seconds without data after which a subscriber stops (default 2)"),
    "timeout": (float, "hard limit in seconds for one phase of a scenario (default 120)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Load-test an MQTT broker, or compare Midge with Mosquitto (or, clustered on "
        "Redis, with Aedes)."
    )
    target = parser.add_argument_group("one broker")
    target.add_argument("--host", default="127.0.0.1", help="broker address (default 127.0.0.1)")
    target.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    target.add_argument(
        "--pid", type=int, help="the broker's PID on this host: adds its RSS and CPU to the results"
    )
    parser.add_argument(
        "--scenario",
        default="all",
        help=f"comma-separated scenarios or 'all' (default): {', '.join(SCENARIO_NAMES)}",
    )
    parser.add_argument(
        "--protocol",
        dest="protocols",
        default="3.1.1",
        metavar="LIST",
        help="what the clients speak: 3.1.1 (default), 5, or 3.1.1,5 (every scenario at both)",
    )
    modes = parser.add_argument_group("runner")
    modes.add_argument(
        "--against",
        metavar="BROKERS",
        help="start Midge and these brokers (mosquitto, amqtt; comma-separated) and compare",
    )
    modes.add_argument(
        "--cluster",
        type=int,
        metavar="N",
        help="runner: clusters of N nodes on a fresh redis-server, publishers on node 1 and "
        "subscribers on node N; with --against aedes, Aedes on Redis beside Midge",
    )
    modes.add_argument(
        "--bridge",
        action="store_true",
        help="runner: each broker bridged to a fresh remote Mosquitto, publishers on the "
        "local broker and subscribers on the remote; with --against mosquitto, Mosquitto's "
        "own bridge beside Midge's",
    )
    modes.add_argument(
        "--rounds", type=int, default=3, help="runs per scenario and broker (default 3)"
    )
    modes.add_argument(
        "--output", type=Path, help=f"JSON results (runner default: {DEFAULT_OUTPUT})"
    )
    modes.add_argument(
        "--chart", type=Path, help="PNG of the ratios (runner default: ratios.png beside --output)"
    )
    modes.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    modes.add_argument(
        "--no-ceiling", action="store_true", help="runner: skip the generator-ceiling measurement"
    )
    modes.add_argument(
        "--sink",
        action="store_true",
        help="no broker: qos0-fan-in / qos0-fan-out into a sink, to show the generator's ceiling",
    )
    sizes = parser.add_argument_group("sizes")
    for name, (kind, text) in _SIZE_FLAGS.items():
        sizes.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, help=text)


def run(args: argparse.Namespace) -> int:
    from midge.bench import scenarios  # noqa: PLC0415 - keeps `midge --help` fast

    defaults = (
        CLUSTER_DEFAULT
        if args.cluster is not None
        else BRIDGE_DEFAULT
        if args.bridge
        else SCENARIO_NAMES
    )
    names = _scenarios(args.scenario, defaults)
    if names is None:
        print(
            f"midge bench: unknown scenario in {args.scenario!r}; "
            f"choose from {', '.join(SCENARIO_NAMES)}",
            file=sys.stderr,
        )
        return 2
    given = {
        f.name: getattr(args, f.name)
        for f in fields(scenarios.Params)
        if getattr(args, f.name, None) is not None
    }
    params = scenarios.Params(**given)
    if params.payload < 8 or params.duration <= 0 or args.rounds < 1:
        print("midge bench: need --payload >= 8, --duration > 0, --rounds >= 1", file=sys.stderr)
        return 2
    protocols = _protocols(args.protocols)
    if protocols is None:
        print(
            f"midge bench: --protocol takes 3.1.1, 5 or both (3.1.1,5), not {args.protocols!r}",
            file=sys.stderr,
        )
        return 2
    if max(protocols) >= PROTOCOLS["5"] and (
        only_311 := [name for name in names if not scenarios.SCENARIOS[name].mqtt5]
    ):
        print(f"midge bench: {', '.join(only_311)} runs at MQTT 3.1.1 only", file=sys.stderr)
        return 2
    if args.sink:
        return _sink(params, names)
    if args.cluster is not None:
        return _cluster(args, params, names, protocols)
    if args.bridge:
        return _bridge(args, params, names, protocols)
    if args.against:
        brokers = _with_midge(args.against)
        unknown = [b for b in brokers if b not in ("mosquitto", "amqtt", "midge")]
        if unknown:
            clustered = " (aedes runs clustered: add --cluster 2)" if "aedes" in unknown else ""
            return _refuse([f"cannot start {unknown}; --against takes mosquitto, amqtt{clustered}"])
        return _compare(args, params, names, protocols, brokers, "latest.json", "ratios.png")
    return _single(args, params, names, protocols)


def _protocols(text: str) -> tuple[int, ...] | None:
    """The protocol levels in `text` (comma-separated), in order, each once."""
    levels: list[int] = []
    for item in text.split(","):
        level = PROTOCOLS.get(item.strip())
        if level is None:
            return None
        if level not in levels:
            levels.append(level)
    return tuple(levels) or None


def _scenarios(text: str, defaults: tuple[str, ...] = SCENARIO_NAMES) -> list[str] | None:
    if text.strip() == "all":
        return list(defaults)
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(name not in SCENARIO_NAMES for name in names):
        return None
    return names


def _with_midge(against: str | None) -> list[str]:
    """Midge first, then the brokers `--against` names (comma-separated)."""
    others = [b.strip() for b in (against or "").split(",") if b.strip()]
    return ["midge", *[b for b in others if b != "midge"]]


def _refuse(problems: list[str]) -> int:
    for problem in problems:
        print(f"midge bench: {problem}", file=sys.stderr)
    return 2


def _compare(
    args: argparse.Namespace,
    params: Params,
    names: list[str],
    protocols: tuple[int, ...],
    brokers: list[str],
    output_name: str,
    chart_name: str,
    lineup: Lineup | None = None,
) -> int:
    """The side-by-side runner, writing where the flags (or the names given) say."""
    from midge.bench import runner  # noqa: PLC0415

    output = args.output or DEFAULT_OUTPUT.with_name(output_name)
    chart = None if args.no_chart else (args.chart or output.with_name(chart_name))
    command = "midge bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    return runner.run_against(
        brokers,
        names,
        args.rounds,
        params,
        output,
        chart,
        not args.no_ceiling,
        command,
        protocols,
        lineup,
    )


def _cluster(
    args: argparse.Namespace, params: Params, names: list[str], protocols: tuple[int, ...]
) -> int:
    """The runner against clusters of `--cluster` nodes (bench/cluster.py)."""
    from midge.bench import cluster  # noqa: PLC0415

    brokers = _with_midge(args.against)
    problems = []
    if args.cluster < 2:
        problems.append("--cluster takes 2 nodes or more")
    if unknown := [b for b in brokers if b not in cluster.BROKERS]:
        problems.append(f"cannot cluster {unknown}; with --cluster, --against takes aedes")
    if single := [name for name in names if name not in cluster.CROSS_NODE]:
        problems.append(
            f"{', '.join(single)} does not run across nodes; with --cluster choose from "
            f"{', '.join(cluster.CROSS_NODE)}"
        )
    if "aedes" in brokers and (missing := cluster.aedes_problem()):
        problems.append(f"aedes: {missing}")
    if problems:
        return _refuse(problems)
    lineup = cluster.lineup(args.cluster, brokers)
    return _compare(
        args, params, names, protocols, brokers, "cluster.json", "cluster-ratios.png", lineup
    )


def _bridge(
    args: argparse.Namespace, params: Params, names: list[str], protocols: tuple[int, ...]
) -> int:
    """The runner through bridges to a remote Mosquitto (bench/bridge.py)."""
    from midge.bench import bridge  # noqa: PLC0415

    brokers = _with_midge(args.against)
    problems = []
    if unknown := [b for b in brokers if b not in bridge.BROKERS]:
        problems.append(f"cannot bridge {unknown}; with --bridge, --against takes mosquitto")
    if single := [name for name in names if name not in bridge.CROSS_BRIDGE]:
        problems.append(
            f"{', '.join(single)} does not run across a bridge; with --bridge choose from "
            f"{', '.join(bridge.CROSS_BRIDGE)}"
        )
    if problems:
        return _refuse(problems)
    lineup = bridge.lineup(brokers)
    return _compare(
        args, params, names, protocols, brokers, "bridge.json", "bridge-ratios.png", lineup
    )


def _single(
    args: argparse.Namespace, params: Params, names: list[str], protocols: tuple[int, ...]
) -> int:
    from midge.bench import overload, runner, scenarios  # noqa: PLC0415
    from midge.bench.wire import BenchError  # noqa: PLC0415

    target = scenarios.Target(args.host, args.port, args.pid)
    failed = False
    results = {}
    for scenario in [
        scenarios.at_protocol(scenarios.SCENARIOS[name], protocol)
        for name in names
        for protocol in protocols
    ]:
        name = scenario.name
        print(f"{name}: {scenario.title}", flush=True)
        try:
            outcome = scenario.run(target, params)
        except (OSError, BenchError) as exc:
            print(f"  ERROR {type(exc).__name__}: {exc}")
            failed = True
            continue
        for metric in scenario.metrics:
            if scenario.acknowledged_loss and metric.key == overload.LOST:
                continue  # said in words below
            better = "higher" if metric.higher_is_better else "lower"
            value = runner.fmt(outcome.values.get(metric.key, float("nan")))
            print(f"  {metric.label:<28} {value:>14}   ({better} is better)")
        if scenario.acknowledged_loss:
            text = runner.acknowledged_loss_text(outcome.lost, outcome.expected)
            print(f"  {'acknowledged, not delivered':<28} {text}")
        elif outcome.expected:
            print(f"  {'lost / expected':<28} {outcome.lost:>7,}/{outcome.expected:,}")
        if outcome.duplicates:
            print(f"  {'duplicates':<28} {outcome.duplicates:>14,}")
        for key in ("broker_cpu", "generator_cpu"):
            if key in outcome.info:
                print(f"  {key.replace('_', ' '):<28} {outcome.info[key]:>14.2f}   (CPUs)")
        results[name] = {
            "values": outcome.values,
            "expected": outcome.expected,
            "lost": outcome.lost,
            "duplicates": outcome.duplicates,
            "info": outcome.info,
        }
        failed |= bool(outcome.lost) and not scenario.loss_allowed
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(runner.clean(results), indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


def _sink(params: Params, names: list[str]) -> int:
    from midge.bench import runner, scenarios  # noqa: PLC0415

    flood = [name for name in names if name in ("qos0-fan-in", "qos0-fan-out")] or ["qos0-fan-in"]
    for name in flood:
        figures = scenarios.generator_ceiling(params, name)
        print(f"generator ceiling ({name} into the sink): {runner.ceiling_text(figures)}")
    return 0
