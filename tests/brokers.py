"""Start real brokers as subprocesses on ephemeral loopback ports, and stop them by PID.

`start_midge` runs `python -m midge serve --port 0` and reads the bound port
from its `listening on HOST:PORT` log line; `start_mosquitto` runs Debian's
mosquitto with a temporary configuration on a port found by binding port 0.
Both are context managers yielding `(host, port, process)`; leaving the
context sends SIGTERM, waits, and kills the process only if it does not exit.
`start_midge_with_log` is `start_midge` that also yields the broker's log so
far (`RunningMidge.log`), for tests that check what the broker logged; its
`workdir` puts the config and data in the test's own folder (pytest's
tmp_path), and `data_dir=False` passes no --data-dir (a cluster node keeps its
state in Redis). `start_mosquitto_with_log` is the same for mosquitto, on a
given `port` if need be (a broker started again where its clients and
bridges know it is).
`pbkdf2_line` / `sha512_line` / `password_text` write password files without
the mosquitto_passwd binary.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
LISTENING = re.compile(r"listening on (\S+):(\d+)")

Broker = tuple[str, int, "subprocess.Popen[str]"]


class BrokerStartError(RuntimeError):
    """The broker process did not come up; the message carries its output."""


class OutputPump:
    """Drains a process's stderr on a thread so the broker never blocks on a full pipe."""

    def __init__(self, process: subprocess.Popen[str], keep: int | None = 500) -> None:
        """`keep`: how many of the last lines `lines` holds; None keeps every line."""
        self.lines: deque[str] = deque(maxlen=keep)
        self.queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()  # `snapshot` may run while the pump appends
        self._stream = process.stderr
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._stream is not None
        for line in self._stream:
            with self._lock:
                self.lines.append(line)
            self.queue.put(line)
        self.queue.put(None)

    def snapshot(self) -> list[str]:
        """The kept lines so far; safe while the process is still writing."""
        with self._lock:
            return list(self.lines)

    def text(self) -> str:
        return "".join(self.snapshot()) or "(no output)"

    def join(self) -> None:
        self._thread.join(timeout=STOP_TIMEOUT)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, wait with a timeout, SIGKILL as the last resort; only this PID."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def _wait_for_listening_line(process: subprocess.Popen[str], pump: OutputPump) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = pump.queue.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            process.wait(timeout=STOP_TIMEOUT)
            raise BrokerStartError(
                f"midge exited with code {process.returncode} before listening:\n{pump.text()}"
            )
        if match := LISTENING.search(line):
            return int(match.group(2))
    raise BrokerStartError(
        f"midge logged no 'listening on HOST:PORT' line within {START_TIMEOUT:g}s:\n{pump.text()}"
    )


class BrokerLog:
    """What a running broker has logged so far (every line since its start)."""

    def __init__(self, pump: OutputPump) -> None:
        self._pump = pump

    def lines(self) -> list[str]:
        return self._pump.snapshot()

    def text(self) -> str:
        return self._pump.text()

    def matching(self, pattern: str | re.Pattern[str]) -> list[str]:
        """The lines so far in which the regular expression `pattern` occurs."""
        regex = re.compile(pattern)
        return [line for line in self.lines() if regex.search(line)]

    def wait_for(
        self, pattern: str | re.Pattern[str], count: int = 1, timeout: float = START_TIMEOUT
    ) -> list[str]:
        """Wait until at least `count` lines match `pattern`; returns every matching line.

        The log reaches us through a pipe, a moment after the broker acted:
        tests wait for a line rather than read the log once.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(pattern)
            if len(found) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if len(found) < count:
            raise AssertionError(
                f"{len(found)} of {count} log lines matching {pattern!r} within "
                f"{timeout:g}s; the log:\n{self.text()}"
            )
        return found


@dataclass(frozen=True)
class RunningBroker:
    """A broker started by `start_midge_with_log` or `start_mosquitto_with_log`."""

    host: str
    port: int
    process: subprocess.Popen[str]
    log: BrokerLog

    @property
    def broker(self) -> Broker:
        """(host, port, process), as `start_midge` yields it."""
        return self.host, self.port, self.process


RunningMidge = RunningBroker  # what `start_midge_with_log` yields


class RestartableBroker:
    """A broker process that may be stopped (SIGTERM), killed (SIGKILL) and
    started again on the port of its first start, each run with its log. A
    subclass says how it starts (`_launch`): a cluster's node, a bridge's peer."""

    host = HOST

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0  # the port of the first start, kept by every restart
        self.runs: list[RunningBroker] = []  # one per start, the last one current
        self._stack: ExitStack | None = None

    @property
    def broker(self) -> Broker:
        """(host, port, process), as helpers written for `start_midge` take a broker."""
        return self.host, self.port, self.process

    @property
    def process(self) -> subprocess.Popen[str]:
        assert self.runs, f"{self.name} was never started"
        return self.runs[-1].process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self._stack is not None and self.process.poll() is None

    @property
    def log(self) -> BrokerLog:
        """The log of the current run (or of the last one, once stopped)."""
        assert self.runs, f"{self.name} was never started"
        return self.runs[-1].log

    def log_tail(self, tail: int) -> str:
        """The last `tail` lines of the current run's log, headed by this
        broker's repr, for a failed test's report."""
        lines = self.log.lines() if self.runs else ["(never started)\n"]
        skipped = f"({len(lines) - tail} lines before)\n" if len(lines) > tail else ""
        return f"--- {self!r}\n{skipped}{''.join(lines[-tail:])}"

    def _launch(self) -> AbstractContextManager[RunningBroker]:
        """The broker's start, on `self.port` once it has one."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start the process (again, on the same port) and wait until it listens."""
        assert self._stack is None, f"{self.name} is already running"
        stack = ExitStack()
        try:
            running = stack.enter_context(self._launch())
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        self.runs.append(running)
        self.port = running.port
        return self

    def stop(self) -> None:
        """SIGTERM to this broker's PID, wait (SIGKILL if it does not exit in time)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def kill(self) -> None:
        """SIGKILL to this broker's PID, as a crash; then reap it."""
        if self._stack is None:
            return
        process = self.process
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        self.stop()  # the process is gone: this only joins the log pump


@contextmanager
def start_midge(config_toml: str | None = None, extra_args: Sequence[str] = ()) -> Iterator[Broker]:
    """Run the Midge broker on an ephemeral port; yields (host, port, process)."""
    with _run_midge(config_toml, extra_args, keep=500) as (host, port, process, _pump):
        yield host, port, process


@contextmanager
def start_midge_with_log(
    config_toml: str | None = None,
    extra_args: Sequence[str] = (),
    *,
    workdir: Path | None = None,
    data_dir: bool = True,
) -> Iterator[RunningMidge]:
    """`start_midge` that also keeps the broker's whole log for the test to read.

    `workdir`: the folder for the config file and the data dir, left in place
    (default: a temporary folder, removed after); `data_dir=False`: no
    --data-dir argument.
    """
    run = _run_midge(config_toml, extra_args, None, workdir, data_dir)
    with run as (host, port, process, pump):
        yield RunningMidge(host, port, process, BrokerLog(pump))


@contextmanager
def _folder(workdir: Path | None, prefix: str = "midge-test-") -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)


@contextmanager
def _run_midge(
    config_toml: str | None,
    extra_args: Sequence[str],
    keep: int | None,
    workdir: Path | None = None,
    data_dir: bool = True,
) -> Iterator[tuple[str, int, subprocess.Popen[str], OutputPump]]:
    with _folder(workdir) as tmp:
        args = [sys.executable, "-m", "midge", "serve", "--host", HOST, "--port", "0"]
        args += ["--log-level", "info"]
        if data_dir:  # each broker gets its own store, so no state leaks between tests
            args += ["--data-dir", str(tmp / "data")]
        if config_toml is not None:
            config = Path(tmp) / "midge.toml"
            config.write_text(config_toml, encoding="utf-8")
            args += ["--config", str(config)]
        args += list(extra_args)
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        pump = OutputPump(process, keep=keep)
        try:
            port = _wait_for_listening_line(process, pump)
            yield HOST, port, process, pump
        finally:
            stop(process)
            pump.join()


def mosquitto_binary() -> str | None:
    """The mosquitto executable, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    debian = Path("/usr/sbin/mosquitto")
    return str(debian) if debian.exists() else None


def free_port() -> int:
    """A loopback port that was free a moment ago (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = START_TIMEOUT) -> None:
    """Wait until something accepts connections on the loopback `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def _wait_until_accepting(process: subprocess.Popen[str], pump: OutputPump, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pump.join()
            raise BrokerStartError(
                f"mosquitto exited with code {process.returncode}:\n{pump.text()}"
            )
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BrokerStartError(
        f"mosquitto did not accept on port {port} within {START_TIMEOUT:g}s:\n{pump.text()}"
    )


@contextmanager
def start_mosquitto(extra_conf: str = "") -> Iterator[Broker]:
    """Run mosquitto with a temporary config on a free loopback port."""
    with start_mosquitto_with_log(extra_conf, keep=500) as running:
        yield running.broker


@contextmanager
def start_mosquitto_with_log(
    extra_conf: str = "",
    *,
    port: int | None = None,
    workdir: Path | None = None,
    keep: int | None = None,
) -> Iterator[RunningBroker]:
    """Run mosquitto (anonymous, no persistence, unless `extra_conf` says
    otherwise: its lines come last) on a loopback `port` (default: a free one).

    `workdir`: the folder for the config file, left in place (default: a
    temporary folder, removed after); `keep`: how many log lines to keep (None:
    all of them).
    """
    binary = mosquitto_binary()
    if binary is None:
        raise BrokerStartError("mosquitto is not installed")
    with _folder(workdir, prefix="mosquitto-test-") as tmp:
        port = port or free_port()
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(
            f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
            f"log_dest stderr\n{extra_conf}\n",
            encoding="utf-8",
        )
        process = subprocess.Popen(
            [binary, "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        pump = OutputPump(process, keep=keep)
        try:
            _wait_until_accepting(process, pump, port)
            yield RunningBroker(HOST, port, process, BrokerLog(pump))
        finally:
            stop(process)
            pump.join()


# ------------------------------------------------------------ password files


def pbkdf2_line(username: str, password: str, iterations: int = 101) -> str:
    """A `$7$` password-file line as mosquitto_passwd writes it, built with hashlib."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"{username}:$7${iterations}${encoded[0]}${encoded[1]}"


def sha512_line(username: str, password: str) -> str:
    """A `$6$` password-file line (SHA-512 of password + salt)."""
    salt = os.urandom(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"{username}:$6${encoded[0]}${encoded[1]}"


def password_text(lines: Iterable[str]) -> str:
    """The text of a password file holding `lines`, each ended by a newline."""
    return "".join(f"{line}\n" for line in lines)
