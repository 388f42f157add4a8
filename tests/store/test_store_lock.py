"""One store, one broker: the SQLite store's lock file (src/midge/store/lock.py).

In one process, as two brokers would: flock locks belong to an open file, so
a second `SQLiteStore` on the same file conflicts with the first even here.
The two-process version, with kill -9, is tests/durability/test_data_dir_lock.py.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from midge.store import lock as lock_module
from midge.store.base import SessionSaved, StoredState, StoreError
from midge.store.lock import StoreLock, in_use_message, lock_path
from midge.store.sqlite import SQLiteStore


def test_lock_file_sits_beside_the_store(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "midge.db") == tmp_path / "midge.lock"
    assert lock_path(tmp_path / "store") == tmp_path / "store.lock"
    # Never the store file itself: the PID would be written over it.
    assert lock_path(tmp_path / "odd.lock") == tmp_path / "odd.lock.lock"


def test_second_open_of_the_same_store_is_refused_naming_dir_and_pid(tmp_path: Path) -> None:
    path = tmp_path / "midge.db"
    first = SQLiteStore(path)
    try:
        first.apply([SessionSaved("a")])
        with pytest.raises(StoreError) as caught:
            SQLiteStore(path)
        message = str(caught.value)
        assert str(tmp_path) in message
        assert f"PID {os.getpid()}" in message
        assert message == in_use_message(tmp_path, os.getpid())
        assert "stop it or use another --data-dir" in message
        # The refused open left the first store working and its lock in place.
        first.apply([SessionSaved("b")])
        assert (tmp_path / "midge.lock").read_text() == f"{os.getpid()}\n"
    finally:
        first.close()


def test_reopen_after_close_works_and_close_removes_the_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "midge.db"
    for client_id in ("a", "b", "c"):
        store = SQLiteStore(path)
        try:
            assert (tmp_path / "midge.lock").exists()
            store.apply([SessionSaved(client_id)])
        finally:
            store.close()
        assert not (tmp_path / "midge.lock").exists()
    store = SQLiteStore(path)
    try:
        assert sorted(s.client_id for s in store.load().sessions) == ["a", "b", "c"]
    finally:
        store.close()
    store.close()  # a second close is harmless


def test_stores_of_different_files_in_one_folder_do_not_conflict(tmp_path: Path) -> None:
    one, two = SQLiteStore(tmp_path / "one.db"), SQLiteStore(tmp_path / "two.db")
    one.close()
    two.close()


def test_lock_file_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    """A file with a PID in it but no flock on it: what kill -9 leaves behind."""
    (tmp_path / "midge.lock").write_text("999999999\n")
    store = SQLiteStore(tmp_path / "midge.db")
    try:
        assert (tmp_path / "midge.lock").read_text() == f"{os.getpid()}\n"
    finally:
        store.close()


def test_the_lock_comes_before_the_database_is_touched(tmp_path: Path) -> None:
    """A refused second store neither reads, migrates nor switches the journal mode."""
    path = tmp_path / "midge.db"
    holder = StoreLock.acquire(lock_path(path))
    try:
        with pytest.raises(StoreError, match="in use by another midge"):
            SQLiteStore(path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["midge.lock"]
    finally:
        holder.release()
    store = SQLiteStore(path)
    try:
        assert store.load() == StoredState([], [])
        store.apply([SessionSaved("a")])
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT client_id FROM sessions").fetchall() == [("a",)]


def test_a_failed_open_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "midge.db"
    path.write_bytes(b"not a database at all")
    with pytest.raises(StoreError, match="not a Midge store"):
        SQLiteStore(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["midge.db"]
    holder = StoreLock.acquire(lock_path(path))  # free again
    assert holder.held
    holder.release()


def test_unknown_holder_pid_is_said_so(tmp_path: Path) -> None:
    path = tmp_path / "midge.db"
    holder = StoreLock.acquire(lock_path(path))
    try:
        (tmp_path / "midge.lock").write_text("")  # as if caught between lock and write
        with pytest.raises(StoreError, match=r"PID unknown"):
            SQLiteStore(path)
    finally:
        holder.release()


def test_lock_file_replaced_under_a_waiting_opener_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a removing release opens: locked an old file, a new one is at the path."""
    path = tmp_path / "midge.lock"
    real_flock = lock_module.fcntl.flock
    replaced = []

    def flock_after_replacing(fd: int, operation: int) -> None:
        if not replaced:  # first attempt: someone removes and recreates the file meanwhile
            replaced.append(True)
            path.unlink()
            path.write_text("")
        real_flock(fd, operation)

    monkeypatch.setattr(lock_module.fcntl, "flock", flock_after_replacing)
    held = StoreLock.acquire(path)
    try:
        assert replaced
        assert held.held
        found, mine = os.stat(path), os.fstat(held._fd)  # type: ignore[arg-type]
        assert (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)
    finally:
        held.release()


def test_missing_folder_is_a_store_error_naming_the_store(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "midge.db"
    with pytest.raises(StoreError, match="cannot use the store") as caught:
        SQLiteStore(path)
    assert str(path) in str(caught.value)


def test_file_system_without_flock_runs_unguarded_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock_module.fcntl, "flock", no_locks)
    store = SQLiteStore(tmp_path / "midge.db")
    try:
        assert "nothing stops a second broker" in caplog.text
        assert (tmp_path / "midge.db").exists()
    finally:
        store.close()
