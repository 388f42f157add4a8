"""Midge: an MQTT broker, client library and command-line toolkit.

Embedding (docs/embedding.md): `async with midge.Broker(port=0) as broker:`
runs the whole broker in the current event loop; `midge.Hooks` is the base
class of event hooks. The names below load on first use, so `midge --help`
and the client library do not import the broker.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from midge.broker.config import BrokerConfig, ConfigError
    from midge.broker.views import ClientInfo, SessionInfo, SubscriptionInfo
    from midge.client.events import Message
    from midge.embedding.broker import Broker, ListenerAddress
    from midge.embedding.hooks import Hooks
    from midge.embedding.subscription import Subscription
    from midge.embedding.thread import BrokerThread

# Public name -> the module that defines it.
_LAZY = {
    "Broker": "midge.embedding.broker",
    "BrokerThread": "midge.embedding.thread",
    "ListenerAddress": "midge.embedding.broker",
    "Hooks": "midge.embedding.hooks",
    "Subscription": "midge.embedding.subscription",
    "BrokerConfig": "midge.broker.config",
    "ConfigError": "midge.broker.config",
    "ClientInfo": "midge.broker.views",
    "SessionInfo": "midge.broker.views",
    "SubscriptionInfo": "midge.broker.views",
    "Message": "midge.client.events",
}

__all__ = [
    "Broker",
    "BrokerConfig",
    "BrokerThread",
    "ClientInfo",
    "ConfigError",
    "Hooks",
    "ListenerAddress",
    "Message",
    "SessionInfo",
    "Subscription",
    "SubscriptionInfo",
    "__version__",
    "compiled",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'midge' has no attribute {name!r}")
    return getattr(import_module(module), name)


def compiled() -> bool:
    """Whether the hot modules run compiled by mypyc (an installed compiled wheel)."""
    from midge.broker import broker  # noqa: PLC0415 - only when asked

    return not (broker.__file__ or "").endswith(".py")
