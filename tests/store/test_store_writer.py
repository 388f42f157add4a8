"""GroupCommitWriter: batches pile up behind a slow commit and share the next one.

The store is wrapped to count `apply` calls and, through a gate, to hold a
commit until the test lets it go, so what groups with what is deterministic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import midge.store.writer as writer_module
from midge.message import Message
from midge.store.base import (
    Operation,
    OutboundAdded,
    OutboundDeleted,
    RetainedSet,
    SessionSaved,
    Store,
    StoredState,
    StoreError,
)
from midge.store.writer import GroupCommitWriter
from sansio import STORE_KINDS, StoreBox

WAIT = 5.0  # seconds; only ever reached when a test is about to fail


class GatedStore:
    """Counts apply() calls; while `gate` is clear, apply() waits for it."""

    def __init__(self, inner: Store, failures: int = 0) -> None:
        self.inner = inner
        self.description = f"gated {inner.description}"
        self.applied: list[list[Operation]] = []
        self.attempts = 0
        self.failures = failures  # how many apply() calls raise StoreError first
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.events: list[str] = []
        self.lock = threading.Lock()

    def load(self) -> StoredState:
        return self.inner.load()

    def apply(self, operations: Sequence[Operation]) -> None:
        self.entered.set()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        with self.lock:
            self.attempts += 1
            if self.attempts <= self.failures:
                self.events.append("failed")
                raise StoreError(f"test failure {self.attempts}")
            self.inner.apply(operations)
            self.applied.append(list(operations))
            self.events.append(f"applied {len(operations)}")

    def close(self) -> None:
        self.inner.close()


class Commits:
    """on_commit: remembers each epoch, and the store's state at that moment."""

    def __init__(self, store: GatedStore) -> None:
        self.store = store
        self.epochs: list[int] = []
        self.done = threading.Condition()

    def __call__(self, epoch: int) -> None:
        with self.done:
            self.epochs.append(epoch)
            self.store.events.append(f"on_commit {epoch}")
            self.done.notify_all()

    def wait_for(self, epoch: int) -> None:
        with self.done:
            assert self.done.wait_for(lambda: epoch in self.epochs, WAIT), self.epochs


def op(n: int) -> Operation:
    return OutboundAdded("c", n, Message(f"t/{n}", n.to_bytes(4, "big"), 1))


@pytest.fixture(params=STORE_KINDS)
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = StoreBox(request.param, tmp_path / "w.db").store
    store.apply([SessionSaved("c")])
    yield store
    store.close()


def seqs(store: Store) -> list[int]:
    (session,) = store.load().sessions
    return [row.seq for row in session.outbound]


def test_batches_submitted_during_a_slow_commit_share_the_next_one(inner: Store) -> None:
    store = GatedStore(inner)
    commits = Commits(store)
    writer = GroupCommitWriter(store)
    writer.start(commits)
    store.gate.clear()
    writer.submit(1, [op(1)])
    assert store.entered.wait(WAIT)  # the first commit is under way, and stuck
    for epoch in range(2, 51):
        writer.submit(
            epoch, [op(epoch), OutboundDeleted("c", epoch)] if epoch % 7 == 0 else [op(epoch)]
        )
    assert commits.epochs == []  # nothing reported while the commit has not returned
    store.gate.set()
    commits.wait_for(50)
    writer.stop()
    # Two transactions for 50 batches (what the store leaves unwritten of the 7
    # messages added and deleted within the second is the store's business).
    assert [len(ops) for ops in store.applied] == [1, 49 + 7]
    assert commits.epochs == [1, 50]  # only the highest epoch of each transaction
    assert writer.commits == 2
    assert writer.operations == 1 + 49 + 7
    # In submission order: each batch's deletion came after its own addition.
    assert seqs(inner) == [n for n in range(1, 51) if n % 7]


def test_under_load_a_commit_waits_for_one_more_batch(
    inner: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "LINGER_SECONDS", WAIT)
    store = GatedStore(inner)
    commits = Commits(store)
    writer = GroupCommitWriter(store)
    writer.start(commits)
    store.gate.clear()
    writer.submit(1, [op(1)])
    assert store.entered.wait(WAIT)
    writer.submit(2, [op(2)])
    writer.submit(3, [op(3)])  # two batches piled up behind a commit: load
    store.gate.set()
    commits.wait_for(3)
    writer.submit(4, [op(4)])
    time.sleep(0.05)
    assert commits.epochs == [1, 3]  # batch 4 waits for company ...
    writer.submit(5, [op(5)])
    commits.wait_for(5)  # ... and commits with it
    writer.stop()
    assert [len(ops) for ops in store.applied] == [1, 2, 2]
    assert seqs(inner) == [1, 2, 3, 4, 5]


def test_on_commit_epochs_increase_and_end_at_the_last(inner: Store) -> None:
    store = GatedStore(inner)
    commits = Commits(store)
    writer = GroupCommitWriter(store)
    writer.start(commits)
    for epoch in range(1, 301):
        writer.submit(epoch, [op(epoch)])
        if epoch % 50 == 0:
            commits.wait_for(epoch)  # let some commits happen in between
    writer.stop()
    assert commits.epochs[-1] == 300
    assert commits.epochs == sorted(set(commits.epochs))  # strictly increasing
    assert len(store.applied) == len(commits.epochs)
    assert seqs(inner) == list(range(1, 301))
    # Each report comes after the apply() that made it true.
    applied_so_far = 0
    for event in store.events:
        if event.startswith("applied"):
            applied_so_far += int(event.split()[1])
        else:
            assert applied_so_far >= int(event.split()[1])


def test_stop_commits_everything_submitted(inner: Store) -> None:
    store = GatedStore(inner)
    commits = Commits(store)
    writer = GroupCommitWriter(store)
    writer.start(commits)
    store.gate.clear()
    writer.submit(1, [op(1)])
    assert store.entered.wait(WAIT)
    for epoch in range(2, 11):
        writer.submit(epoch, [op(epoch)])
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    stopper.join(0.05)
    assert stopper.is_alive()  # stop() waits for the commit under way
    store.gate.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert seqs(inner) == list(range(1, 11))
    assert commits.epochs == [1, 10]


def test_stop_right_after_submit_still_commits(inner: Store) -> None:
    store = GatedStore(inner)
    commits = Commits(store)
    writer = GroupCommitWriter(store)
    writer.start(commits)
    writer.submit(1, [op(1)])
    writer.submit(2, [op(2), RetainedSet(Message("r", b"x", 0, True))])
    writer.stop()
    assert seqs(inner) == [1, 2]
    assert [m.topic for m in inner.load().retained] == ["r"]
    assert commits.epochs[-1] == 2


def test_stop_with_nothing_submitted_returns(inner: Store) -> None:
    store = GatedStore(inner)
    commits = Commits(store)
    writer = GroupCommitWriter(store)
    writer.start(commits)
    writer.stop()
    assert store.attempts == 0
    assert commits.epochs == []


def test_failed_commit_is_retried_and_reported_only_after_success(
    inner: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writer_module, "RETRY_SECONDS", 0.01)
    store = GatedStore(inner, failures=2)
    commits = Commits(store)
    writer = GroupCommitWriter(store)
    with caplog.at_level(logging.WARNING, logger="midge.store"):
        writer.start(commits)
        writer.submit(1, [op(1), op(2)])
        commits.wait_for(1)
        writer.stop()
    assert store.events == ["failed", "failed", "applied 2", "on_commit 1"]
    assert store.applied == [[op(1), op(2)]]
    assert seqs(inner) == [1, 2]
    assert writer.commits == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # logged once, not at every attempt
    assert "test failure 1" in errors[0].getMessage()
    assert "acknowledgements are held" in errors[0].getMessage()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.getMessage() for w in warnings] == ["store writes work again after 2 failed attempts"]


def test_batches_submitted_during_a_failing_commit_are_committed_after_it(
    inner: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "RETRY_SECONDS", 0.01)
    store = GatedStore(inner, failures=1)
    commits = Commits(store)
    writer = GroupCommitWriter(store)
    writer.start(commits)
    store.gate.clear()
    writer.submit(1, [op(1)])
    assert store.entered.wait(WAIT)  # the attempt that will fail is under way
    writer.submit(2, [op(2)])
    store.gate.set()
    commits.wait_for(2)
    writer.stop()
    # The retry repeats the failed transaction as it was; batch 2 follows it.
    assert store.events == ["failed", "applied 1", "on_commit 1", "applied 1", "on_commit 2"]
    assert seqs(inner) == [1, 2]


def test_stop_with_a_store_that_keeps_failing_reports_no_commit(
    inner: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "RETRY_SECONDS", 0.01)
    store = GatedStore(inner, failures=10**6)
    commits = Commits(store)
    writer = GroupCommitWriter(store)
    writer.start(commits)
    writer.submit(1, [op(1)])
    writer.stop()  # gives up after a few attempts
    assert store.attempts >= 2
    assert seqs(inner) == []
    assert commits.epochs == []
    assert writer.commits == 0
