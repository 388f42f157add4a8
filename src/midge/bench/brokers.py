"""Start brokers for the runner as subprocesses on loopback, and stop them by PID.

Each start gets a fresh temporary directory (config, data, log file), its
RLIMIT_NOFILE soft limit raised to the hard limit before exec (thousands of
connections), and logging at warning level for every broker (no line per
connection, which would cost one broker more than another). Stopping sends
SIGTERM to that PID, waits, and sends SIGKILL only if it does not exit.

- Midge: `python -m midge serve --port 0 --data-dir TMP --config TMP/midge.toml`;
  the port is read from /proc (the listening socket among the process's
  file descriptors), since at warning level no "listening on" line is logged.
- Mosquitto: a config on a free port found by binding port 0.
- amqtt: only when its `amqtt` command is installed.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from midge.bench.wire import HOST, BenchError

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """What a scenario needs from a broker; each broker gets the equivalent of it."""

    persistent: bool = False  # a durable store (Midge: SQLite; Mosquitto: persistence true)
    max_inflight_messages: int = 20
    max_queued_messages: int = 1000  # 0: no limit (Midge also gets max_queued_bytes = 0)
    # Mosquitto's set_tcp_nodelay. Midge (uvloop) always sets TCP_NODELAY; Mosquitto
    # writes packet by packet and is much faster with Nagle coalescing them (its
    # default), but Nagle costs it latency: each scenario gives it its better choice.
    tcp_nodelay: bool = False


@dataclass(frozen=True, slots=True)
class RunningBroker:
    name: str
    host: str
    port: int
    pid: int
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _raise_nofile() -> None:  # runs in the child between fork and exec
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def stop(process: subprocess.Popen[bytes], grace: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait `grace` seconds, SIGKILL as the last resort; only this PID."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def listening_port(pid: int) -> int | None:
    """The TCP port a process listens on, from its socket fds and /proc/net/tcp."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open(f"/proc/{pid}/net/tcp", encoding="ascii") as table:
            next(table)
            for line in table:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                    return int(parts[1].rsplit(":", 1)[1], 16)
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepting(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _wait_ready(
    name: str, process: subprocess.Popen[bytes], log: Path, find_port: Callable[[], int | None]
) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(encoding="utf-8", errors="replace")
            raise BenchError(f"{name} exited with code {process.returncode}:\n{text}")
        port = find_port()
        if port and _accepting(port):
            return port
        time.sleep(0.05)
    raise BenchError(f"{name} did not accept connections within {START_TIMEOUT:g} s")


@contextmanager
def launch(
    name: str,
    args: list[str],
    tmp: Path,
    find_port: Callable[[int], int | None],
    grace: float = STOP_TIMEOUT,
) -> Iterator[RunningBroker]:
    """Run `args` in `tmp` with output to a log file; yields once it accepts connections.
    Stopped with `grace` seconds between SIGTERM and SIGKILL."""
    log = tmp / "broker.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            preexec_fn=_raise_nofile,  # noqa: PLW1509 - only setrlimit, before exec
        )
    try:
        port = _wait_ready(name, process, log, lambda: find_port(process.pid))
        yield RunningBroker(name, HOST, port, process.pid, log)
    finally:
        stop(process, grace)


def midge_config(settings: BrokerSettings) -> str:
    lines = [
        f'store = "{"sqlite" if settings.persistent else "memory"}"',
        f"max_inflight_messages = {settings.max_inflight_messages}",
        f"max_queued_messages = {settings.max_queued_messages}",
    ]
    if settings.persistent:
        lines.append('durability = "normal"')
    if settings.max_queued_messages == 0:
        lines.append("max_queued_bytes = 0")
    return "\n".join(lines) + "\n"


@contextmanager
def start_midge(settings: BrokerSettings, more_config: str = "") -> Iterator[RunningBroker]:
    """`more_config`: TOML after the settings' keys (a bridge's table: bridge.py)."""
    with tempfile.TemporaryDirectory(prefix="midge-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config = tmp / "midge.toml"
        config.write_text(midge_config(settings) + more_config, encoding="utf-8")
        args = [sys.executable, "-m", "midge", "serve", "--host", HOST, "--port", "0"]
        args += ["--data-dir", str(tmp / "data"), "--config", str(config)]
        args += ["--log-level", "warning"]
        with launch("midge", args, tmp, listening_port) as broker:
            yield broker


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    debian = Path("/usr/sbin/mosquitto")
    return str(debian) if debian.exists() else None


def mosquitto_version() -> str | None:
    binary = mosquitto_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, "-h"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("mosquitto version ").strip() or None


def mosquitto_config(settings: BrokerSettings, port: int, tmp: Path) -> str:
    lines = [
        f"listener {port} {HOST}",
        "allow_anonymous true",
        f"persistence {'true' if settings.persistent else 'false'}",
        f"persistence_location {tmp}/",
        f"max_inflight_messages {settings.max_inflight_messages}",
        f"max_queued_messages {settings.max_queued_messages}",
        f"set_tcp_nodelay {'true' if settings.tcp_nodelay else 'false'}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "connection_messages false",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to "mosquitto", who cannot write in tmp
    return "\n".join(lines) + "\n"


@contextmanager
def start_mosquitto(settings: BrokerSettings, more_config: str = "") -> Iterator[RunningBroker]:
    """`more_config`: lines after the settings' (a `connection` block: bridge.py)."""
    binary = mosquitto_binary()
    if binary is None:
        raise BenchError("mosquitto is not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="mosquitto-bench-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        config = tmp / "mosquitto.conf"
        text = mosquitto_config(settings, port, tmp) + more_config
        config.write_text(text, encoding="utf-8")
        with launch("mosquitto", [binary, "-c", str(config)], tmp, lambda _pid: port) as broker:
            yield broker


def amqtt_binary() -> str | None:
    beside = Path(sys.executable).parent / "amqtt"
    return str(beside) if beside.exists() else shutil.which("amqtt")


@contextmanager
def start_amqtt(settings: BrokerSettings) -> Iterator[RunningBroker]:
    """amqtt keeps everything in memory; `settings` has nothing it can use."""
    binary = amqtt_binary()
    if binary is None:
        raise BenchError("amqtt is not installed (pip install amqtt)")
    with tempfile.TemporaryDirectory(prefix="amqtt-bench-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        config = tmp / "amqtt.yaml"
        config.write_text(
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: {HOST}:{port}\n"
            "sys_interval: 0\n"
            "auth:\n"
            "  allow-anonymous: true\n"
            "  plugins:\n"
            "    - auth_anonymous\n"
            "topic-check:\n"
            "  enabled: false\n",
            encoding="utf-8",
        )
        with launch("amqtt", [binary, "-c", str(config)], tmp, lambda _pid: port) as broker:
            yield broker


BrokerStarter = Callable[[BrokerSettings], AbstractContextManager[RunningBroker]]

STARTERS: dict[str, BrokerStarter] = {
    "midge": start_midge,
    "mosquitto": start_mosquitto,
    "amqtt": start_amqtt,
}


def available(name: str) -> bool:
    if name == "midge":
        return True
    if name == "mosquitto":
        return mosquitto_binary() is not None
    if name == "amqtt":
        return amqtt_binary() is not None
    return False
