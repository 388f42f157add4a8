"""Black-box MQTT 3.1.1 conformance checks, run against any broker over TCP.

`harness` holds a blocking test client (`RawClient`) and the per-run `Target`;
`scenarios` holds the numbered checks, each naming the rule of the OASIS
MQTT 3.1.1 or 5.0 specification it exercises; `runner.run` executes them.
"""

from midge.conformance.harness import RawClient, ScenarioFailed
from midge.conformance.registry import Scenario, scenario
from midge.conformance.runner import DEVIATIONS, Result, run
from midge.conformance.target import Target

__all__ = [
    "DEVIATIONS",
    "RawClient",
    "Result",
    "Scenario",
    "ScenarioFailed",
    "Target",
    "run",
    "scenario",
]
