"""Group commit: a thread that applies batches of operations to a Store.

The event loop hands over a batch at the end of each turn that changed
durable state (`submit`) and never waits. The thread applies everything
that has arrived since its last commit in one transaction — while it
commits, the next batches pile up, so the busier the broker, the more
messages share one commit — and reports the highest committed batch number
back to the loop, where the acknowledgements that waited for it go out.
What one transaction may leave unwritten (a message added and acknowledged
within it) is the store's business: the SQLite store folds the batch into
its net change (store/changes.py).

A failing commit (a full disk, say) is logged with what to do and retried;
the acknowledgements keep waiting, so nothing is acknowledged that is not
stored.
"""

from __future__ import annotations

import bisect
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

from midge.store.base import Operation, Store, StoreError

log = logging.getLogger("midge.store")

RETRY_SECONDS = 1.0
# Under load (batches arrived while the last commit ran), wait this long at
# most for one more batch before committing: a few hundred microseconds of
# latency buys commits of more messages, and each commit costs the loop and
# this thread a round of wake-ups and GIL hand-overs whatever its size
# (measured on persistent-qos1: a third fewer commits, a fifth less writer CPU
# per message, 6% more messages per second; 1.5 ms gained nothing more). An
# idle broker (one batch at a time) commits at once.
LINGER_SECONDS = 0.0005
# Upper bounds (seconds) of the commit latency histogram's buckets; a last
# bucket, beyond them all, takes the rest (Prometheus's +Inf).
COMMIT_LATENCY_BOUNDS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

_Batch = tuple[int, list[Operation]]


class GroupCommitWriter:
    def __init__(
        self,
        store: Store,
        call_soon_threadsafe: Callable[[Callable[[int], None], int], object] | None = None,
    ) -> None:
        """`call_soon_threadsafe(callback, epoch)` carries a commit's news from the
        writer thread to the event loop (the loop's own method); without it the
        callback runs on the writer thread."""
        self.store = store
        self._hand_over = call_soon_threadsafe
        self._on_commit: Callable[[int], None] = lambda epoch: None
        # A C queue: handing a batch over takes the loop no Python-level lock.
        # None is the stop signal, queued behind every batch submitted before it.
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._run, name="midge-store", daemon=True)
        # Counters, written by the writer thread and read from anywhere (plain ints).
        self.commits = 0  # transactions committed
        self.operations = 0  # store operations in them
        self.commit_seconds_total = 0.0  # time spent committing (store.apply), in all
        # Commits per latency bucket: index i counts those up to COMMIT_LATENCY_BOUNDS[i]
        # (and above the bound before it); the last index those above every bound.
        # Not cumulative: /metrics adds them up.
        self.commit_latency_buckets = [0] * (len(COMMIT_LATENCY_BOUNDS) + 1)

    @property
    def commit_count(self) -> int:
        """Commits timed in `commit_seconds_total` (every commit: `commits`)."""
        return self.commits

    def start(self, on_commit: Callable[[int], None]) -> None:
        """Begin committing; `on_commit(epoch)` hears of every committed batch."""
        self._on_commit = on_commit
        self._worker.start()

    def submit(self, epoch: int, operations: list[Operation]) -> None:
        self._queue.put((epoch, operations))

    def stop(self) -> None:
        """Commit what was submitted, then end the thread (if it ever started)."""
        if self._worker.ident is None:
            return
        self._stopping.set()
        self._queue.put(None)
        self._worker.join()

    def _run(self) -> None:
        loaded = False  # the last commit found more than one batch waiting
        while True:
            batches: list[_Batch] = []
            stop = self._take(batches, None)
            if loaded and not stop:
                stop = self._take(batches, LINGER_SECONDS)
            loaded = len(batches) > 1
            if batches:
                operations = [op for _, ops in batches for op in ops]
                started = time.perf_counter()
                if not self._commit(operations):
                    return  # gave up at shutdown: report no commit that did not happen
                took = time.perf_counter() - started
                self.commit_seconds_total += took
                self.commit_latency_buckets[bisect.bisect_left(COMMIT_LATENCY_BOUNDS, took)] += 1
                self.commits += 1
                self.operations += len(operations)
                if self._hand_over is None:
                    self._on_commit(batches[-1][0])
                else:
                    self._hand_over(self._on_commit, batches[-1][0])
            if stop:
                return

    def _take(self, batches: list[_Batch], timeout: float | None) -> bool:
        """Wait for a batch (`timeout` None: as long as it takes), then add it and
        every other one waiting to `batches`; True once the stop signal came."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        while item is not None:
            batches.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
        return True

    def _commit(self, operations: list[Operation]) -> bool:
        """Apply, retrying while the store fails; False only if shutdown gave up."""
        failures = 0
        while True:
            try:
                self.store.apply(operations)
                if failures:
                    log.warning("store writes work again after %d failed attempts", failures)
                return True
            except Exception as exc:  # a StoreError, or a bug: either way the thread goes on
                failures += 1
                if failures == 1:
                    log.error(
                        "cannot write the store, acknowledgements are held until it works: %s",
                        exc,
                        exc_info=not isinstance(exc, StoreError),
                    )
                if self._stopping.is_set() and failures > 3:
                    log.error("shutdown: %d operations not stored", len(operations))
                    return False
                self._stopping.wait(RETRY_SECONDS)
