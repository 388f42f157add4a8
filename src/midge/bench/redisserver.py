"""A redis-server for the cluster bench: Debian's, on a free loopback port, in a temp dir.

Both clusters of a run (Midge's nodes, Aedes's) get the same kind: append-only
persistence with `appendfsync everysec` (what Redis's own documentation
suggests as the usual compromise, and the durability a bench of throughput
should pay: `always` would measure the disk), no RDB snapshots, no memory
limit. Every start is a fresh process in a fresh folder, stopped by its PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from midge.bench.brokers import RunningBroker, free_port, stop
from midge.bench.wire import HOST, BenchError

START_TIMEOUT = 10.0
# What the output says about the Redis it measures on.
PERSISTENCE = "appendonly yes, appendfsync everysec, no RDB snapshots"


@dataclass(frozen=True, slots=True)
class RunningRedis:
    port: int
    process: RunningBroker  # name "redis", its PID and its log file

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid


def redis_binary() -> str | None:
    """Debian's /usr/bin/redis-server, or one on the PATH."""
    debian = Path("/usr/bin/redis-server")
    return str(debian) if debian.exists() else shutil.which("redis-server")


def redis_version() -> str | None:
    binary = redis_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    # "Redis server v=7.0.15 sha=... malloc=jemalloc-5.3.0 bits=64 build=..."
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return None


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def start_redis() -> Iterator[RunningRedis]:
    binary = redis_binary()
    if binary is None:
        raise BenchError("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as folder:
        port = free_port()
        log = Path(folder) / "redis.log"
        args = [
            binary,
            "--port", str(port),
            "--bind", HOST,
            "--dir", folder,
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--logfile", str(log),
        ]  # fmt: skip
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_ready(process, port, log)
            yield RunningRedis(port, RunningBroker("redis", HOST, port, process.pid, log))
        finally:
            stop(process)


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            raise BenchError(f"redis-server exited with code {process.returncode}:\n{text}")
        if _answers(port):
            return
        time.sleep(0.05)
    raise BenchError(f"redis-server did not answer on port {port} within {START_TIMEOUT:g} s")
