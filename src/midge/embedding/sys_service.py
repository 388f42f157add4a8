"""The $SYS publisher: every `sys_interval` seconds, `$SYS/broker/...` retained at QoS 0.

A service of `midge.Broker` (services.py), made only when `sys_interval`
is above 0. What is published is worked out by `broker/sys_topics.py`; this
module reads the process's memory, keeps the timer and hands each message
to the core's own routing (`Delivery.publish`), as the broker's own: no
client, no login, no publish ACL, but every receiver's read ACL applies as
for any message, and `#` does not match `$SYS/` [MQTT-4.7.2-1]. It counts
as no received traffic (Stats says so); what subscribers are sent of it
counts like any other delivery. The messages are retained but never stored:
they are made again after a restart (Delivery.publish skips `$SYS/` on
its retain path).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from midge import __version__
from midge.broker.sys_topics import (
    BRIDGE_PREFIX,
    CLUSTER_PREFIX,
    SysTree,
    WriterCounters,
    read_broker,
)
from midge.message import Message
from midge.store.writer import GroupCommitWriter

if TYPE_CHECKING:
    from midge.embedding.broker import Broker

log = logging.getLogger("midge.sys")


class SysService:
    """Publishes $SYS/broker/... every `interval` seconds, first as the broker starts."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._broker: Broker | None = None
        self._tree: SysTree | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False  # a round failed: logged once, not every interval

    async def start(self, broker: Broker) -> None:
        loop = asyncio.get_running_loop()
        self._broker = broker
        self._tree = SysTree(__version__, loop.time())
        self.publish_round()
        self._timer = loop.call_later(self.interval, self._tick)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._broker = None

    def _tick(self) -> None:
        if self._broker is None:
            return
        self.publish_round()
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def publish_round(self) -> int:
        """Publish what changed since the last round; returns how many topics."""
        broker, tree = self._broker, self._tree
        if broker is None or tree is None:
            return 0
        try:
            core = broker.core
            now = asyncio.get_running_loop().time()
            committer = core.persistence.committer
            writer: WriterCounters | None = (
                committer if isinstance(committer, GroupCommitWriter) else None
            )
            readings = read_broker(core, writer, process_memory())
            cluster = broker.cluster
            if cluster is not None:
                readings.update({CLUSTER_PREFIX + k: v for k, v in cluster.figures().items()})
            for bridge in broker.bridges:
                prefix = f"{BRIDGE_PREFIX}{bridge.config.name}/"
                readings.update({prefix + k: v for k, v in bridge.figures().items()})
            changed = tree.update(readings, now)
            core.now = now
            delivery = core.delivery
            for topic, payload in changed:
                delivery.publish(Message(topic, payload, 0, True), None, now)
            core.flush()
        except Exception:
            if not self._failed:
                self._failed = True
                log.exception("internal error publishing $SYS topics (logged once)")
            return 0
        return len(changed)


def process_memory() -> tuple[int, int] | None:
    """(resident bytes now, most resident bytes so far) of this process: what
    $SYS/broker/heap/current and heap/maximum show (Linux; None elsewhere)."""
    try:
        import resource  # noqa: PLC0415 - not on every platform

        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        current = resident_pages * os.sysconf("SC_PAGE_SIZE")
        highest = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    except (ImportError, OSError, ValueError, IndexError):
        return None
    return current, max(current, highest)
