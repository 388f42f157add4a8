"""A real redis-server (Debian's) for tests, on a free loopback port.

`RedisServer` starts it in a folder of its own, with append-only persistence
fsynced on every write, so that a `kill()` then `start()` loses nothing
acknowledged, as the cluster's durability promise assumes of a production
Redis run that way. It stops only the PID it started. `redis_binary()` is
None where Redis is not installed: tests skip then, unless
MIDGE_REQUIRE_REDIS=1 (scripts/test sets it as root, where scripts/setup
installed it), which makes them fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from brokers import HOST, free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def require_redis() -> str:
    """The redis-server binary, or skip (fail under MIDGE_REQUIRE_REDIS=1)."""
    binary = redis_binary()
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("MIDGE_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return binary


class RedisServer:
    """One redis-server process; `start` / `stop` / `kill` may repeat (same port, same data)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.binary = require_redis()
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        assert self.process is None, "already running"
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.folder),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.folder / "redis.log"
                text = log.read_text() if log.exists() else "(no log)"
                raise RuntimeError(f"redis-server exited at start:\n{text}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (Redis flushes its append-only file), then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL: what a crash does."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)
