"""The listeners of the broker's own in-process clients: no socket, no login.

`INTERNAL_LISTENER`: midge.Broker's publish, subscribe and client(); the ACL
does not apply to them. `API_LISTENER`: the HTTP API's publishers (one per
API key, `midge.Broker.client(trusted=False)`): the API key authenticated
them, so there is no login either, but the ACL applies to their user name
(the key's name) as to any network client.

Identity, not equality, marks a connection as in-process: no listener read
from a config file is either object.
"""

from __future__ import annotations

from typing import Final

from midge.broker.config import ListenerConfig

INTERNAL_LISTENER: Final = ListenerConfig(port=0, host="in-process", allow_anonymous=True)
INTERNAL_LABEL: Final = "in-process"
API_LISTENER: Final = ListenerConfig(port=0, host="http-api", transport="http")
API_LABEL: Final = "http-api"


def listener_label(listener: ListenerConfig) -> str:
    """How logs and views name a listener: its transport's label, in-process or http-api."""
    if listener is INTERNAL_LISTENER:
        return INTERNAL_LABEL
    return API_LABEL if listener is API_LISTENER else listener.label
