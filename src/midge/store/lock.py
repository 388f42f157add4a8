"""One store, one broker: an exclusive OS lock on a file next to the store.

SQLite lets two processes share a database file, so two brokers on one data
dir would both start, each restore the same sessions and then overwrite the
other's changes. The store takes `flock(LOCK_EX | LOCK_NB)` on its lock file
(`midge.lock` beside `midge.db`) before it reads the database and holds it
until it closes; a second broker finds it taken and refuses to start.

The kernel drops a flock when its holder dies, however it dies (kill -9
included), so a lock file left behind never blocks a restart: only a living
holder does. The holder's PID is written into the file for the refusal
message; it is a hint, never what decides.

A clean release removes the file, so a stopped broker leaves the data dir as
it found it. That opens a race (a process opens the file just before it is
removed, then locks a file no one else can see), hence the check after
locking that the file we hold is still the one at the path.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

from midge.store.base import StoreError

try:
    import fcntl
except ImportError:  # Windows (not a target): start unguarded rather than not at all
    HAVE_FLOCK = False
else:
    HAVE_FLOCK = True

log = logging.getLogger("midge.store")

LOCK_SUFFIX = ".lock"
_ATTEMPTS = 5  # a lock file replaced under us this many times in a row: give up
# flock refused by the file system itself (some network mounts): run as before
# the lock existed, with a warning, rather than refuse a store that worked.
_UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})


def lock_path(store: Path) -> Path:
    """The lock file of a store file: `midge.db` -> `midge.lock` in the same folder."""
    path = store.with_suffix(LOCK_SUFFIX)
    # A store itself named *.lock must not be its own lock file (the PID would overwrite it).
    return path if path != store else store.with_name(store.name + LOCK_SUFFIX)


def in_use_message(data_dir: Path, pid: int | None) -> str:
    holder = f"PID {pid}" if pid is not None else "PID unknown"
    return (
        f"data dir {data_dir} is in use by another midge ({holder}); "
        "stop it or use another --data-dir"
    )


class StoreLock:
    """A held lock (or, where flock is unavailable, a stand-in for one)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    @classmethod
    def acquire(cls, path: Path) -> StoreLock:
        """Lock `path`, creating it; StoreError naming the holder if another process has it.

        OSError when the file cannot be created or written (no such folder, no
        permission, disk full): the caller says which store that was for.
        """
        if not HAVE_FLOCK:
            return cls(path, None)
        for _ in range(_ATTEMPTS):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise StoreError(in_use_message(path.parent, holder)) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _UNSUPPORTED:
                    raise
                log.warning(
                    "cannot lock %s (%s): nothing stops a second broker on this data dir",
                    path,
                    exc.strerror,
                )
                return cls(path, None)
            if not _is_at(fd, path):
                os.close(fd)  # its holder removed it as we opened it: lock the new one
                continue
            try:
                _write_pid(fd)
            except OSError:
                os.close(fd)
                raise
            return cls(path, fd)
        raise StoreError(f"{path}: the lock file keeps being replaced; is another midge starting?")

    def release(self) -> None:
        """Remove the file, then unlock (in that order: see the module's docstring).

        Idempotent. A file that cannot be removed stays behind, harmless.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(fd)


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file found at `path`."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (found.st_dev, found.st_ino)


def _write_pid(fd: int) -> None:
    # Overwrite in place, then cut: a reader never sees an empty file, only
    # (for an instant) the new PID followed by the tail of an old one.
    data = f"{os.getpid()}\n".encode("ascii")
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def _read_pid(fd: int) -> int | None:
    try:
        words = os.pread(fd, 64, 0).split()
        return int(words[0]) if words else None
    except (OSError, ValueError):
        return None
