"""The private redis-server of `midge serve --workers N` without `--cluster`.

A convenience for one host: the workers must share their sessions, retained
messages and routes, and a cluster shares them through Redis, so the
supervisor runs Debian's `redis-server` itself when it is installed:

- data in `<data_dir>/redis/` (append-only file, fsynced every second: a
  crash of the host may lose the last second, a crash of Midge loses nothing);
- reached through a Unix socket there (mode 700), with TCP off, so no other
  user of the host can reach it; where the path is too long for a socket
  address, on a free loopback port instead;
- one supervisor per data dir (a lock file), since a second redis-server
  would take the first one's socket;
- started before the workers, restarted if it dies, stopped after them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path
from typing import IO

from midge.broker.config import BrokerConfig, prepare_data_dir

log = logging.getLogger("midge.workers")

SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux; keep a margin
DEBIAN_BINARY = "/usr/bin/redis-server"
INSTALL_HINT = (
    "--workers runs its workers as one cluster on Redis: give --cluster redis://HOST:PORT/DB "
    "(or a [cluster] table with a url), or install redis-server (Debian, Ubuntu: "
    "apt-get install redis-server) and Midge starts a private one in <data_dir>/redis"
)


class PrivateRedisError(Exception):
    """The private redis-server cannot be used; the message says why."""


def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None
    )


class PrivateRedis:
    """One redis-server for one data dir: `command` starts it, `answers` says
    when it serves, `url` reaches it."""

    def __init__(self, binary: str, folder: Path, lock: IO[str]) -> None:
        self.binary = binary
        self.folder = folder
        self._lock = lock
        self.socket_path = folder / "redis.sock"
        self.port = 0  # TCP only where the socket path is too long
        if len(str(self.socket_path).encode()) > SOCKET_PATH_MAX:
            self.port = _free_loopback_port()

    @classmethod
    def prepare(cls, config: BrokerConfig) -> PrivateRedis:
        """Find the binary, make `<data_dir>/redis/`, lock it. Raises
        PrivateRedisError, or ConfigError for a data dir that cannot be made."""
        binary = redis_binary()
        if binary is None:
            raise PrivateRedisError(f"redis-server is not installed: {INSTALL_HINT}")
        # The data dir as a lone broker would make it (its last folder only).
        prepare_data_dir(replace(config, cluster=None, store="sqlite"))
        folder = Path(config.data_dir).absolute() / "redis"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            lock = _locked(folder / "supervisor.lock")
        except OSError as exc:
            raise PrivateRedisError(f"cannot use {folder}: {exc}") from None
        return cls(binary, folder, lock)

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    @property
    def command(self) -> list[str]:
        if self.port:
            where = ["--port", str(self.port), "--bind", "127.0.0.1"]
        else:
            where = ["--port", "0", "--unixsocket", str(self.socket_path)]
            where += ["--unixsocketperm", "700"]
        return [
            self.binary,
            *where,
            "--dir", str(self.folder),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",  # the append-only file is the persistence; no snapshots besides
            "--daemonize", "no",
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip

    def describe(self) -> str:
        where = f"127.0.0.1:{self.port}" if self.port else str(self.socket_path)
        return f"private redis-server on {where}, data in {self.folder}"

    def answers(self) -> bool:
        """True once it answers PING (while it loads its file it answers LOADING)."""
        try:
            if self.port:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(1)
                sock.connect(str(self.socket_path))
            with sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, lines: int = 10) -> str:
        try:
            text = (self.folder / "redis.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def release(self) -> None:
        """Unlock the data dir (after redis-server has stopped)."""
        self._lock.close()


def _locked(path: Path) -> IO[str]:
    """The open, locked lock file; PrivateRedisError if another process holds it."""
    file = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip() or "?"
        file.close()
        raise PrivateRedisError(
            f"{path.parent} is in use by another `midge serve --workers` (pid {holder}): "
            "give this one another --data-dir"
        ) from None
    file.truncate(0)
    file.write(f"{os.getpid()}\n")
    file.flush()
    return file


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
