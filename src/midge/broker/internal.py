"""The listener of the broker's own in-process clients (midge.Broker's publish,
subscribe and client()): no socket, no login, and the ACL does not apply.

Identity, not equality, marks a connection as in-process: no listener read
from a config file is this object.
"""

from __future__ import annotations

from typing import Final

from midge.broker.config import ListenerConfig

INTERNAL_LISTENER: Final = ListenerConfig(port=0, host="in-process", allow_anonymous=True)
INTERNAL_LABEL: Final = "in-process"


def listener_label(listener: ListenerConfig) -> str:
    """How logs and views name a listener: its transport's label, or in-process."""
    return INTERNAL_LABEL if listener is INTERNAL_LISTENER else listener.label
