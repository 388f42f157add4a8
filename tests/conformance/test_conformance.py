"""Every conformance scenario against Midge and against mosquitto.

A scenario listed in `DEVIATIONS["mosquitto"]` is a known, documented
mosquitto deviation: it is xfail(strict=True) there, so if mosquitto starts
passing it the list must be updated. The few deviations in `INTERMITTENT`
depend on the broker's timer phase and are xfail(strict=False).
"""

from __future__ import annotations

import pytest

from midge.conformance.harness import Target
from midge.conformance.registry import all_scenarios
from midge.conformance.runner import DEVIATIONS, INTERMITTENT, run

BROKERS = ("midge", "mosquitto")


def _params() -> list[object]:
    params: list[object] = []
    for broker in BROKERS:
        deviations = DEVIATIONS.get(broker, {})
        intermittent = INTERMITTENT.get(broker, frozenset())
        for item in all_scenarios():
            marks = []
            if item.id in deviations:
                strict = item.id not in intermittent
                marks.append(pytest.mark.xfail(strict=strict, reason=deviations[item.id]))
            params.append(pytest.param(broker, item.id, id=f"{broker}-{item.id}", marks=marks))
    return params


@pytest.mark.parametrize(("broker", "scenario_id"), _params())
def test_scenario(broker: str, scenario_id: str, request: pytest.FixtureRequest) -> None:
    host, port, _process = request.getfixturevalue(f"{broker}_broker")
    [result] = run(Target(host, port), only=[scenario_id])
    assert result.passed, f"{result.id} {result.title} [{result.rule}]: {result.detail}"


def test_deviations_name_real_scenarios() -> None:
    known = {item.id for item in all_scenarios()}
    for broker, deviations in DEVIATIONS.items():
        unknown = sorted(set(deviations) - known)
        assert not unknown, f"DEVIATIONS[{broker!r}] names unknown scenarios {unknown}"
    for broker, intermittent in INTERMITTENT.items():
        undocumented = sorted(intermittent - set(DEVIATIONS.get(broker, {})))
        assert not undocumented, f"INTERMITTENT[{broker!r}] not in DEVIATIONS: {undocumented}"
