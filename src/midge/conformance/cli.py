"""`midge check HOST[:PORT]`: run the conformance scenarios against any MQTT broker.

    midge check 127.0.0.1:1883                        every 3.1.1 scenario, a row as each finishes
    midge check 127.0.0.1:1883 --protocol 5           the MQTT 5.0 scenarios (`all`: both sets)
    midge check broker.lan --only 05,06-03 -u u -P p  some areas / ids, with credentials
    midge check [::1]:1883 --broker-profile mosquitto mosquitto's documented deviations allowed
    midge check HOST --list | --json                  the scenarios only | JSON lines
    midge check HOST:1883 HOST:1884 HOST:1885         a cluster's nodes: clients go to each in turn

The scenarios and the runner are the ones the test suite runs (`runner.run_one`);
this module only parses the arguments, selects, probes and runs; `report.py`
shows the rows and turns the outcome into an exit status: 0 when nothing
failed, 1 when a scenario failed, 2 for bad arguments or a broker that cannot
be reached or refuses the check's CONNECT (checked once, first). The runner
and rich are imported only when used, so `midge --help` stays fast.
"""

from __future__ import annotations

import argparse
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from midge.conformance.report import (
    EXIT_OK,
    EXIT_USAGE,
    NOT_APPLICABLE,
    PASS,
    Outcome,
    Report,
    RichReport,
    Summary,
    classify,
    make_report,
    skipped,
)

if TYPE_CHECKING:
    from midge.conformance.registry import Scenario
    from midge.conformance.target import Target

# NOT_APPLICABLE, PASS and RichReport live in report.py; callers import them from here too.
__all__ = [
    "NOT_APPLICABLE",
    "PASS",
    "Plan",
    "RichReport",
    "UsageError",
    "add_arguments",
    "label",
    "make_plan",
    "make_target",
    "parse_target",
    "probe",
    "run",
    "run_plan",
]

DEFAULT_PORT = 1883

_REFUSALS = {
    1: "unacceptable protocol version (it does not accept MQTT 3.1.1)",
    2: "identifier rejected (client id {client_id!r})",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
_REFUSALS_5 = {
    0x84: "unsupported protocol version (it does not accept MQTT 5.0)",
    0x85: "client identifier not valid (client id {client_id!r})",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
}
_CREDENTIAL_REFUSALS = frozenset((4, 5, 0x86, 0x87))


class UsageError(Exception):
    """Bad arguments, or a broker the check cannot use: exit status 2."""


# ------------------------------------------------------------------ arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run Midge's numbered MQTT 3.1.1 (or, with --protocol, 5.0) conformance scenarios "
        "against any broker. "
        "Exit status: 0 none failed, 1 some failed, 2 bad arguments or broker unreachable."
    )
    parser.add_argument(
        "target",
        nargs="*",
        metavar="HOST[:PORT]",
        help="broker address; port 1883 by default; [IPv6]:PORT (not needed with --list); "
        "several: the nodes of one cluster, each new client of a scenario connecting to the "
        "next in turn",
    )
    parser.add_argument(
        "--protocol",
        choices=("3.1.1", "5", "all"),
        default="3.1.1",
        help="which scenario set: the MQTT 3.1.1 one (default), the MQTT 5.0 one, or all",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="ID[,ID...]",
        help="run only these scenarios: ids (05-03) or areas (05); repeatable",
    )
    parser.add_argument(
        "--skip", action="append", metavar="ID[,ID...]", help="do not run these ids or areas"
    )
    parser.add_argument(
        "--list", action="store_true", help="print the scenarios with their rules, run nothing"
    )
    parser.add_argument("-u", "--username", help="user name for every CONNECT the check sends")
    parser.add_argument("-P", "--password", help="password for every CONNECT (needs -u)")
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="how long a client waits for an expected packet (default 2)",
    )
    parser.add_argument(
        "--known-deviations",
        "--broker-profile",
        dest="profiles",
        action="append",
        metavar="NAME[,NAME...]",
        help="report the deviations documented for NAME (mosquitto, strict-client-id) "
        "as 'known deviation', not as failures",
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON lines: one object per result, then a summary"
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _names(values: list[str] | None) -> list[str] | None:
    """["05,06-01", "07"] -> ["05", "06-01", "07"]; None stays None."""
    if values is None:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def parse_target(text: str) -> tuple[str, int]:
    """ "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address -> (host, port)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UsageError(f"bad target {text!r}: expected [IPv6]:PORT")
        port_text: str | None = rest[1:] if rest else None
    elif text.count(":") > 1:
        host, port_text = text, None  # a bare IPv6 address
    else:
        host, colon, port_text = text.partition(":")
        port_text = port_text if colon else None
    if not host:
        raise UsageError(f"bad target {text!r}: no host")
    return host, _port(text, port_text)


def _port(text: str, port_text: str | None) -> int:
    if port_text is None:
        return DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"bad target {text!r}: the port must be 1-65535")
    return int(port_text)


def label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ----------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """What to run: the selected scenarios, those to skip, the deviations allowed."""

    scenarios: list[Scenario]
    skip: frozenset[str]
    deviations: dict[str, str]
    profiles: list[str]

    @property
    def versions(self) -> list[int]:
        """The protocol levels the selected scenarios connect with, in order."""
        return sorted({s.version for s in self.scenarios if s.id not in self.skip})


def make_plan(args: argparse.Namespace) -> Plan:
    from midge.conformance.runner import select  # noqa: PLC0415

    protocol = getattr(args, "protocol", "3.1.1")
    try:
        scenarios = select(_names(args.only), protocol)
        skip = frozenset(s.id for s in select(_names(args.skip) or [], protocol))
    except ValueError as exc:
        raise UsageError(f"{exc} (see --list)") from None
    if not scenarios:
        raise UsageError("--only selects no scenario")
    profiles = _names(args.profiles) or []
    return Plan(scenarios, skip, _deviations(profiles), profiles)


def _deviations(profiles: list[str]) -> dict[str, str]:
    from midge.conformance.runner import DEVIATIONS  # noqa: PLC0415

    unknown = [name for name in profiles if name not in DEVIATIONS]
    if unknown:
        raise UsageError(
            f"unknown deviation list {', '.join(unknown)}; known: {', '.join(sorted(DEVIATIONS))}"
        )
    merged: dict[str, str] = {}
    for name in profiles:
        merged.update({key: f"{name}: {why}" for key, why in DEVIATIONS[name].items()})
    return merged


def make_target(args: argparse.Namespace) -> Target:
    from midge.conformance.harness import DEFAULT_TIMEOUT  # noqa: PLC0415
    from midge.conformance.target import Target  # noqa: PLC0415

    nodes = _addresses(args.target)
    if args.password is not None and args.username is None:
        raise UsageError(
            "-P/--password needs -u/--username: MQTT 3.1.1 allows no password "
            "without a user name [MQTT-3.1.2-22] (and the check sends both to 5.0 brokers too)"
        )
    password = None if args.password is None else args.password.encode()
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    return Target.spread(nodes, timeout=timeout, username=args.username, password=password)


def _addresses(targets: list[str] | str | None) -> list[tuple[str, int]]:
    """The (host, port) of each HOST[:PORT] given, in order; at least one, none twice."""
    if not targets:
        raise UsageError("which broker? give HOST[:PORT] (e.g. 127.0.0.1:1883)")
    texts = [targets] if isinstance(targets, str) else targets
    nodes = [parse_target(text) for text in texts]
    twice = sorted({label(*node) for node in nodes if nodes.count(node) > 1})
    if twice:
        raise UsageError(f"{', '.join(twice)} given twice: give each node of a cluster once")
    return nodes


# -------------------------------------------------------------------- probing


def probe(target: Target, versions: list[int] | None = None) -> None:
    """Raise `UsageError` unless the broker accepts a TCP connection and a CONNECT.

    One CONNECT per protocol level in `versions` (default: 3.1.1 only), so a
    broker that does not speak 5.0 stops a 5.0 run before its first row; on
    every node of a cluster.
    """
    for address in target.addresses:
        _probe_node(target.on(address), versions)


def _probe_node(target: Target, versions: list[int] | None) -> None:
    where = label(target.host, target.port)
    try:
        socket.create_connection((target.host, target.port), timeout=target.timeout).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the broker at {where}: {exc}") from None
    for version in versions or [4]:
        scoped = target.scoped("pr", version=version)
        return_code, client_id = _probe_connect(scoped, where)
        if return_code:
            has_credentials = target.username is not None
            raise UsageError(_refusal(where, return_code, client_id, has_credentials, version))


def _version_name(version: int) -> str:
    return "MQTT 5.0" if version == 5 else "MQTT 3.1.1"


def _probe_connect(target: Target, where: str) -> tuple[int, str]:
    from midge.conformance.harness import ScenarioFailed  # noqa: PLC0415

    client_id = target.client_id("probe")
    try:
        with target.untracked("probe") as client:
            connack = client.connect(client_id)
            client.disconnect()
    except ScenarioFailed as exc:
        message = (
            f"{where} does not answer an {_version_name(target.version)} CONNECT with "
            f"CONNACK: {exc} (a slow broker? raise --timeout)"
        )
        raise UsageError(message) from None
    return connack.return_code, client_id


def _refusal(
    where: str, return_code: int, client_id: str, has_credentials: bool, version: int = 4
) -> str:
    reasons = _REFUSALS_5 if version == 5 else _REFUSALS
    reason = reasons.get(return_code, "unknown return code").format(client_id=client_id)
    code = f"0x{return_code:02X}" if version == 5 else str(return_code)
    message = f"the broker at {where} refused the check's CONNECT: CONNACK {code}, {reason}"
    if return_code in _CREDENTIAL_REFUSALS:
        hint = "check -u/--username and -P/--password" if has_credentials else "give -u and -P"
        message += f"; {hint}"
    return message


# ----------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    report = make_report(args.json)
    try:
        plan = make_plan(args)
        if args.list:
            report.listing(plan.scenarios)
            return EXIT_OK
        target = make_target(args)
        probe(target, plan.versions)
    except UsageError as exc:
        report.error(str(exc))
        return EXIT_USAGE
    summary = run_plan(target, plan, report)
    return summary.exit_status()


def run_plan(target: Target, plan: Plan, report: Report) -> Summary:
    """Run (or skip) each scenario in order, reporting each row as it finishes."""
    where = ", ".join(label(host, port) for host, port in target.addresses)
    summary = Summary(where, plan.profiles)
    report.start(_heading(where, target, plan), plan.scenarios)
    started = time.monotonic()
    try:
        for index, item in enumerate(plan.scenarios, 1):
            report.running(item, index, len(plan.scenarios))
            outcome = _outcome(target, item, plan)
            summary.add(outcome)
            report.row(outcome)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.seconds = time.monotonic() - started
    report.finish(summary)
    return summary


def _outcome(target: Target, item: Scenario, plan: Plan) -> Outcome:
    from midge.conformance.runner import run_one  # noqa: PLC0415

    if item.id in plan.skip:
        return skipped(item)
    return classify(run_one(target, item), plan.deviations)


def _heading(where: str, target: Target, plan: Plan) -> str:
    count = len(plan.scenarios)
    parts = [f"midge check {where}: {count} scenario{'s' if count != 1 else ''}"]
    if target.nodes:
        parts.append(f"clients spread over {len(target.nodes)} nodes")
    versions = sorted({s.version for s in plan.scenarios})
    if versions != [4]:  # the 3.1.1 heading stays as it always was
        parts.append(" + ".join(_version_name(version) for version in versions))
    parts.append(f"timeout {target.timeout:g}s")
    if target.username is not None:
        parts.append(f"user {target.username!r}")
    if plan.profiles:
        parts.append(f"known deviations from {', '.join(plan.profiles)}")
    return ", ".join(parts)
