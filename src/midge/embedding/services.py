"""Services that run beside the MQTT listeners of a `midge.Broker`: what the
configuration turns on (the $SYS publisher, the HTTP listener, ...).

Each is started once the MQTT listeners are bound, in the order listed,
and stopped in the reverse order before the listeners and connections close.
A service with a `prepare(broker)` coroutine has it awaited before the
listeners open (the bridges subscribe their sessions then, so that nothing
a client publishes for them is missed).
A service that is not configured is not made, so it costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from midge.bridge.config import BRIDGE_CLIENT_PREFIX
from midge.embedding.sys_service import SysService

if TYPE_CHECKING:
    from midge.broker.config import BrokerConfig
    from midge.embedding.broker import Broker


class Service(Protocol):
    async def start(self, broker: Broker) -> None:
        """Begin; raise (OSError, ConfigError) to stop the broker's start."""

    async def stop(self) -> None:
        """End; must not raise."""


def services_for(config: BrokerConfig, client_ids: Iterable[str] = ()) -> list[Service]:
    """The services `config` turns on, in start order. `client_ids`: the
    sessions the store had (a bridge's left behind is ended by the bridges' service)."""
    services: list[Service] = []
    if config.sys_interval > 0:  # $SYS/broker/... (sys_service.py)
        services.append(SysService(config.sys_interval))
    leftover = any(client_id.startswith(BRIDGE_CLIENT_PREFIX) for client_id in client_ids)
    if config.bridges or leftover:  # connections to other brokers; imported only then
        from midge.bridge.service import BridgeService  # noqa: PLC0415

        services.append(BridgeService(config.bridges))
    if config.http_listeners():  # the HTTP API and /metrics; aiohttp is imported only then
        from midge.http.service import HttpService  # noqa: PLC0415

        services.append(HttpService(config))
    return services
