"""Group commit: a thread that applies batches of operations to a Store.

The event loop hands over a batch at the end of each turn that changed
durable state (`submit`) and never waits. The thread applies everything
that has arrived since its last commit in one transaction — while it
commits, the next batches pile up, so the busier the broker, the more
messages share one commit — and reports the highest committed batch number
back to the loop, where the acknowledgements that waited for it go out.

A failing commit (a full disk, say) is logged with what to do and retried;
the acknowledgements keep waiting, so nothing is acknowledged that is not
stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from midge.store.base import (
    Operation,
    OutboundAdded,
    OutboundDeleted,
    OutboundSent,
    SessionDeleted,
    Store,
    StoreError,
)

log = logging.getLogger("midge.store")

RETRY_SECONDS = 1.0


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
        self._pending: list[tuple[int, list[Operation]]] = []
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="midge-store", daemon=True)
        self.commits = 0
        self.operations = 0

    def start(self, on_commit: Callable[[int], None]) -> None:
        """Begin committing; `on_commit(epoch)` hears of every committed batch."""
        self._on_commit = on_commit
        self._thread.start()

    def submit(self, epoch: int, operations: list[Operation]) -> None:
        with self._condition:
            self._pending.append((epoch, operations))
            self._condition.notify()

    def stop(self) -> None:
        """Commit what was submitted, then end the thread (if it ever started)."""
        if self._thread.ident is None:
            return
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if not self._pending:
                    return
                batches, self._pending = self._pending, []
            operations = net_operations([op for _, ops in batches for op in ops])
            if not self._commit(operations):
                return  # gave up at shutdown: report no commit that did not happen
            self.commits += 1
            self.operations += len(operations)
            if self._hand_over is None:
                self._on_commit(batches[-1][0])
            else:
                self._hand_over(self._on_commit, batches[-1][0])

    def _commit(self, operations: list[Operation]) -> bool:
        """Apply, retrying while the store fails; False only if shutdown gave up."""
        failures = 0
        while True:
            try:
                self.store.apply(operations)
                if failures:
                    log.warning("store writes work again after %d failed attempts", failures)
                return True
            except StoreError as exc:
                failures += 1
                if failures == 1:
                    log.error(
                        "cannot write the store, acknowledgements are held until it works: %s",
                        exc,
                    )
                with self._condition:
                    if self._stopping and failures > 3:
                        log.error("shutdown: %d operations not stored", len(operations))
                        return False
                    self._condition.wait(RETRY_SECONDS)


def net_operations(operations: list[Operation]) -> list[Operation]:
    """The same end state with fewer writes.

    An outbound message added and deleted within one transaction (delivered
    and acknowledged before its row was written) is never written, nor are
    the updates between. One transaction is atomic: no reader could have seen
    the row. Keys are (client id, seq); a session's deletion ends its keys,
    since a new session of the same client numbers from 1 again.
    """
    chains: dict[tuple[str, int], list[int]] = {}  # key -> indexes since its OutboundAdded
    dropped: set[int] = set()
    for index, op in enumerate(operations):
        if type(op) is OutboundAdded:  # a re-add of a key joins its chain
            chains.setdefault((op.client_id, op.seq), []).append(index)
        elif type(op) is OutboundSent:
            chain = chains.get((op.client_id, op.seq))
            if chain is not None:
                chain.append(index)
        elif type(op) is OutboundDeleted:
            chain = chains.pop((op.client_id, op.seq), None)
            if chain is not None:
                dropped.update(chain)
                dropped.add(index)
        elif type(op) is SessionDeleted:
            for key in [key for key in chains if key[0] == op.client_id]:
                del chains[key]
    if not dropped:
        return operations
    return [op for index, op in enumerate(operations) if index not in dropped]
