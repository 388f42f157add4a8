"""The bridges of a `midge.Broker`: one `BridgeLink` task each, and their state topics.

Made only when the config has `[[bridges]]` (embedding/services.py): a
broker without bridges imports none of this. Each bridge's state is
published, retained, on its `notification_topic` (Mosquitto's: "1" while
the link is up, "0" while it is down), as the broker's own message.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING

from midge.bridge.config import BRIDGE_CLIENT_PREFIX, BridgeConfig
from midge.bridge.link import BridgeLink
from midge.message import Message

if TYPE_CHECKING:
    from midge.broker.broker import Broker as Core
    from midge.embedding.broker import Broker

log = logging.getLogger("midge.bridge")


def forget_unconfigured(core: Core, configured: set[str]) -> None:
    """A bridge taken out of the config leaves its session behind, subscribed:
    it would go on queueing messages for a remote nobody sends them to."""
    for client_id, session in list(core.sessions.items()):
        if client_id.startswith(BRIDGE_CLIENT_PREFIX) and client_id not in configured:
            waiting = len(session.queue) + len(session.inflight)
            log.warning(
                "bridge %s is no longer configured: its session goes, with %d messages "
                "that waited for its remote",
                client_id.removeprefix(BRIDGE_CLIENT_PREFIX),
                waiting,
            )
            core.discard_session(session)
    core.flush()


class BridgeService:
    def __init__(self, bridges: tuple[BridgeConfig, ...]) -> None:
        self.configs = bridges
        self.bridge_links: list[BridgeLink] = []  # midge.Broker.bridges
        self._tasks: list[asyncio.Task[None]] = []

    async def prepare(self, broker: Broker) -> None:
        """Before the listeners open: each bridge's local session subscribed,
        and the sessions of bridges no longer configured gone."""
        core = broker.core
        forget_unconfigured(core, {config.local_client_id for config in self.configs})
        for config in self.configs:
            link = BridgeLink(config, core, partial(self._notify, broker, config))
            await link.prime()
            self.bridge_links.append(link)

    async def start(self, broker: Broker) -> None:
        for link in self.bridge_links:
            self._notify(broker, link.config, False)
            task = asyncio.create_task(self._run(link), name=f"bridge-{link.config.name}")
            self._tasks.append(task)

    async def _run(self, link: BridgeLink) -> None:
        try:
            await link.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: this bridge stops, the broker goes on
            link.state = "stopped"
            log.exception("bridge %s: internal error: the bridge stopped", link.config.name)

    @staticmethod
    def _notify(broker: Broker, config: BridgeConfig, up: bool) -> None:
        if not config.notifications:
            return
        core = broker.core
        now = asyncio.get_running_loop().time()
        core.now = now
        message = Message(config.state_topic, b"1" if up else b"0", 1, True)
        core.delivery.publish(message, None, now)
        core.flush()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
