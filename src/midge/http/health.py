"""Is the store committing? Seen from the broker's side, with no help from the writer.

The broker numbers each batch of store operations it submits (an epoch,
`Persistence.epoch`) and hears back the highest one committed
(`Persistence.committed`). The group-commit writer retries a failing commit
every second and holds acknowledgements meanwhile, so a store that cannot
write shows as batches waiting and `committed` not moving. `check()` notes the
epoch it waits for and since when; once that epoch has waited longer than
`stall_seconds`, the store is failing, until it commits again. The service
calls `check()` every second, so a stall is seen within that.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from midge.embedding.broker import Broker


class StoreHealth:
    def __init__(
        self,
        broker: Broker,
        stall_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.stall_seconds = stall_seconds
        self.clock = clock
        self._waiting_for: int | None = None  # the epoch whose commit is awaited
        self._since = 0.0
        self.healthy = True

    def check(self) -> bool:
        """Whether the store commits (True also without a store to commit to)."""
        persistence = self.broker.core.persistence
        committed, submitted = persistence.committed, persistence.epoch
        now = self.clock()
        if committed >= submitted:
            self._waiting_for = None
            self.healthy = True
        elif self._waiting_for is None or committed >= self._waiting_for:
            # Something new waits (or the last wait ended): time it from now.
            self._waiting_for = submitted
            self._since = now
            self.healthy = True
        else:
            self.healthy = now - self._since < self.stall_seconds
        return self.healthy

    def waiting_seconds(self) -> float:
        """How long the oldest batch still waited at the last check (0: none)."""
        return 0.0 if self._waiting_for is None else self.clock() - self._since
