"""The scenario registry: `@scenario("05-03", "title", rule="MQTT-3.8.4-3")`.

Each scenario belongs to one protocol: "3.1.1" (areas 01-19, the default) or
"5" (areas 20 and up, registered with `protocol="5"`). A run selects one set or
both ("all"); the default stays 3.1.1 so existing users see what they did.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from midge.protocol.packets import PROTOCOL_MQTT_3_1_1, PROTOCOL_MQTT_5

if TYPE_CHECKING:
    from midge.conformance.target import Target

ScenarioFunction = Callable[["Target"], None]

MQTT_3_1_1, MQTT_5, ALL_PROTOCOLS = "3.1.1", "5", "all"
PROTOCOLS = (MQTT_3_1_1, MQTT_5)
PROTOCOL_CHOICES = (*PROTOCOLS, ALL_PROTOCOLS)
PROTOCOL_LEVELS = {MQTT_3_1_1: PROTOCOL_MQTT_3_1_1, MQTT_5: PROTOCOL_MQTT_5}

_REGISTRY: dict[str, Scenario] = {}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One check: an id "AA-NN" (area, number), what it checks and the rule it exercises."""

    id: str
    title: str
    rule: str
    function: ScenarioFunction
    protocol: str = MQTT_3_1_1

    @property
    def sort_key(self) -> tuple[int, ...]:
        return id_key(self.id)

    @property
    def version(self) -> int:
        """The protocol level its clients connect with."""
        return PROTOCOL_LEVELS[self.protocol]


def id_key(scenario_id: str) -> tuple[int, ...]:
    """ "05-03" -> (5, 3): ids sort numerically, so "05-10" follows "05-09"."""
    return tuple(int(part) for part in scenario_id.split("-"))


def scenario(
    scenario_id: str, title: str, rule: str, protocol: str = MQTT_3_1_1
) -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Register the decorated function as scenario `scenario_id` of `protocol`."""
    id_key(scenario_id)  # a malformed id fails at import time
    if protocol not in PROTOCOLS:
        raise ValueError(f"scenario {scenario_id}: unknown protocol {protocol!r}")

    def register(function: ScenarioFunction) -> ScenarioFunction:
        if scenario_id in _REGISTRY:
            raise ValueError(f"scenario id {scenario_id} registered twice")
        _REGISTRY[scenario_id] = Scenario(scenario_id, title, rule, function, protocol)
        return function

    return register


def all_scenarios(protocol: str = MQTT_3_1_1) -> list[Scenario]:
    """Every scenario of `protocol` ("3.1.1", "5" or "all"), sorted by id."""
    if protocol not in PROTOCOL_CHOICES:
        raise ValueError(f"unknown protocol {protocol!r}: one of {', '.join(PROTOCOL_CHOICES)}")
    package = importlib.import_module("midge.conformance.scenarios")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return sorted(
        (s for s in _REGISTRY.values() if protocol in (ALL_PROTOCOLS, s.protocol)),
        key=lambda s: s.sort_key,
    )
