"""The scenario registry: `@scenario("05-03", "title", rule="MQTT-3.8.4-3")`."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from midge.conformance.harness import Target

ScenarioFunction = Callable[[Target], None]

_REGISTRY: dict[str, Scenario] = {}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One check: an id "AA-NN" (area, number), what it checks and the rule it exercises."""

    id: str
    title: str
    rule: str
    function: ScenarioFunction

    @property
    def sort_key(self) -> tuple[int, ...]:
        return id_key(self.id)


def id_key(scenario_id: str) -> tuple[int, ...]:
    """ "05-03" -> (5, 3): ids sort numerically, so "05-10" follows "05-09"."""
    return tuple(int(part) for part in scenario_id.split("-"))


def scenario(
    scenario_id: str, title: str, rule: str
) -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Register the decorated function as scenario `scenario_id`."""
    id_key(scenario_id)  # a malformed id fails at import time

    def register(function: ScenarioFunction) -> ScenarioFunction:
        if scenario_id in _REGISTRY:
            raise ValueError(f"scenario id {scenario_id} registered twice")
        _REGISTRY[scenario_id] = Scenario(scenario_id, title, rule, function)
        return function

    return register


def all_scenarios() -> list[Scenario]:
    """Every scenario of `midge.conformance.scenarios`, sorted by id."""
    package = importlib.import_module("midge.conformance.scenarios")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return sorted(_REGISTRY.values(), key=lambda s: s.sort_key)
