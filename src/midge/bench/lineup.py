"""How the runner starts each broker under test (`Lineup`): single processes by default.

A `Deployer` starts a broker by name for a scenario's settings and yields a
`Deployment`: the `Target` the scenario runs against and every process the
broker is made of, which the runner checks are still alive after the run.
`deploy_single` starts one process per broker (brokers.STARTERS);
`cluster.lineup` starts clusters of nodes on a fresh redis-server instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from midge.bench.brokers import STARTERS, BrokerSettings, available
from midge.bench.flows import Deployment, Target

Deployer = Callable[[str, BrokerSettings], AbstractContextManager[Deployment]]


@contextmanager
def deploy_single(broker: str, settings: BrokerSettings) -> Iterator[Deployment]:
    """One fresh broker process (brokers.STARTERS)."""
    with STARTERS[broker](settings) as running:
        yield Deployment(Target(running.host, running.port, running.pid), (running,))


@dataclass(frozen=True, slots=True)
class Lineup:
    """How the runner starts each broker under test, and what it says about them:
    single processes by default; `cluster.lineup` makes clusters on Redis."""

    deploy: Deployer = deploy_single
    available: Callable[[str], bool] = available
    header: str = ""  # a line printed after the runner's first, "" for none
    info: dict[str, Any] = field(default_factory=dict)  # the JSON's "setup"
