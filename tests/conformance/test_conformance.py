"""Every conformance scenario against Midge and against mosquitto.

A scenario listed in `DEVIATIONS["mosquitto"]` is a known, documented
mosquitto deviation: it is xfail(strict=True) there, so if mosquitto starts
passing it the list must be updated. The few deviations in `INTERMITTENT`
depend on the broker's timer phase and are xfail(strict=False). A scenario
that reports itself not applicable (the broker's CONNACK rules it out) is
skipped with its reason.

The MQTT 5.0 set (`--protocol 5`) runs against the brokers in `BROKERS_5`.

Run one after the other, the scenarios of one broker take minutes, most of
it quiet periods and keep-alive waits; so, as `midge check` against a
cluster does (tests/cluster/test_cluster_check.py), the module-scoped
`outcomes` runs every scenario of a broker at once, `PARALLEL` at a time,
each under a client id and topic prefix of its own (`runner.run_one`), and
each test reads its scenario's result.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from midge.conformance.registry import ALL_PROTOCOLS, MQTT_3_1_1, MQTT_5, all_scenarios
from midge.conformance.runner import DEVIATIONS, INTERMITTENT, Result, run_one
from midge.conformance.target import Target

BROKERS = ("midge", "mosquitto")
BROKERS_5 = ("midge", "mosquitto")
PARALLEL = 12
"""Scenarios running at once against one broker: they mostly wait."""


def _params(protocol: str, brokers: tuple[str, ...]) -> list[object]:
    params: list[object] = []
    for broker in brokers:
        deviations = DEVIATIONS.get(broker, {})
        intermittent = INTERMITTENT.get(broker, frozenset())
        for item in all_scenarios(protocol):
            marks = []
            if item.id in deviations:
                strict = item.id not in intermittent
                marks.append(pytest.mark.xfail(strict=strict, reason=deviations[item.id]))
            params.append(
                pytest.param(broker, protocol, item.id, id=f"{broker}-{item.id}", marks=marks)
            )
    return params


@pytest.mark.parametrize(
    ("broker", "protocol", "scenario_id"),
    _params(MQTT_3_1_1, BROKERS) + _params(MQTT_5, BROKERS_5),
)
def test_scenario(
    broker: str,
    protocol: str,
    scenario_id: str,
    request: pytest.FixtureRequest,
    outcomes: dict[str, dict[str, Result]],
) -> None:
    if broker not in outcomes:
        host, port, _process = request.getfixturevalue(f"{broker}_broker")
        outcomes[broker] = run_all(Target(host, port))
    result = outcomes[broker][scenario_id]
    assert result.passed, f"{result.id} {result.title} [{result.rule}]: {result.detail}"
    if not result.applicable:
        pytest.skip(f"{broker}: {result.detail}")


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, Result]]:
    """Broker name -> scenario id -> result, filled on first use per broker."""
    return {}


def run_all(target: Target) -> dict[str, Result]:
    scenarios = all_scenarios(ALL_PROTOCOLS)
    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="scenario") as pool:
        results = pool.map(lambda item: run_one(target, item), scenarios)
        return {result.id: result for result in results}


def test_deviations_name_real_scenarios() -> None:
    known = {item.id for item in all_scenarios("all")}
    for broker, deviations in DEVIATIONS.items():
        unknown = sorted(set(deviations) - known)
        assert not unknown, f"DEVIATIONS[{broker!r}] names unknown scenarios {unknown}"
    for broker, intermittent in INTERMITTENT.items():
        undocumented = sorted(intermittent - set(DEVIATIONS.get(broker, {})))
        assert not undocumented, f"INTERMITTENT[{broker!r}] not in DEVIATIONS: {undocumented}"


def test_protocol_sets_are_apart() -> None:
    """3.1.1 scenarios use areas 01-19, 5.0 ones 20 and up: ids never collide."""
    for item in all_scenarios("all"):
        area = int(item.id.split("-")[0])
        assert (area >= 20) == (item.protocol == MQTT_5), f"{item.id} is a {item.protocol} scenario"
    assert len(all_scenarios()) == len(all_scenarios(MQTT_3_1_1))
