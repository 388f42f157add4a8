"""Drives the broker's deadlines from an asyncio loop."""

from __future__ import annotations

import asyncio
import logging

from midge.broker.broker import Broker

log = logging.getLogger("midge.server")


class TimerDriver:
    """Calls the broker's `handle_timer` when its next deadline comes, by the
    loop's `call_at`: no polling, and a new earlier deadline moves the call."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.broker: Broker | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def start(self, broker: Broker) -> None:
        self.broker = broker
        self.wake_at(self.loop.time())  # the first call starts the periodic checks

    def wake_at(self, deadline: float) -> None:
        if self.broker is None or (self._at is not None and self._at <= deadline):
            return
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        self._handle = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._handle = self._at = None
        broker = self.broker
        if broker is None:
            return
        try:
            broker.handle_timer(self.loop.time())
        except Exception:
            # handle_timer guards each connection; this is the last line, so one
            # bug can never stop the timeouts of every client.
            log.exception("internal error in the broker's timers")
        finally:
            deadline = broker.next_timer()
            if deadline is not None:
                self.wake_at(deadline)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._at = None
        self.broker = None
