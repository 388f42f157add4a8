"""`python -m midge`: serve's listening line, signals, --config and flags, errors, --version."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from integration_support import WAIT, paho, publish_packet, raw_client, unique

import midge
from brokers import HOST, LISTENING, Broker, OutputPump, free_port, start_midge, stop

pytestmark = pytest.mark.timeout(60)

EXIT_TIMEOUT = 5.0  # "within a few seconds"


class Midge:
    """One `python -m midge ...` process with its stderr drained on a thread."""

    def __init__(self, args: Sequence[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "midge", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.pump = OutputPump(self.process)

    def wait_listening(self, timeout: float = 10.0) -> tuple[str, int]:
        """(host, port) from the `listening on HOST:PORT` line; fails if it exits first."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.pump.queue.get(timeout=remaining)
            except Exception:
                break
            if line is None:
                break
            if match := LISTENING.search(line):
                return match.group(1), int(match.group(2))
        raise AssertionError(f"no listening line; output:\n{self.pump.text()}")

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"midge still running {timeout}s later; output:\n{self.pump.text()}"
            ) from None
        self.pump.join()
        return returncode

    @property
    def stderr(self) -> str:
        return "".join(self.pump.lines)


@contextmanager
def midge_process(args: Sequence[str], cwd: Path) -> Iterator[Midge]:
    running = Midge(args, cwd)
    try:
        yield running
    finally:
        stop(running.process)
        running.pump.join()


def serve_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["serve", "--host", HOST, "--port", "0", "--data-dir", str(tmp_path / "data"), *extra]


def accepting(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def occupied_port() -> Iterator[int]:
    """A loopback port with a listening socket on it for the duration."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((HOST, 0))
        holder.listen(1)
        yield holder.getsockname()[1]


# ------------------------------------------------------------------- serve


def test_logs_listening_line_and_serves(tmp_path: Path):
    with midge_process(serve_args(tmp_path, "--log-level", "info"), tmp_path) as midge_proc:
        host, port = midge_proc.wait_listening()
        assert host == HOST
        assert 0 < port < 65536
        assert re.search(rf"listening on {re.escape(HOST)}:{port}\b", midge_proc.stderr)
        with raw_client(host, port) as client:
            client.connect_ok(unique("c"))
        assert (tmp_path / "data").is_dir()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_broker_and_closes_client_sockets(tmp_path: Path, signum: int):
    with midge_process(serve_args(tmp_path), tmp_path) as midge_proc:
        host, port = midge_proc.wait_listening()
        with raw_client(host, port) as connected, raw_client(host, port) as silent:
            connected.connect_ok(unique("c"), will=("cli/will", b"x", 0, False))
            connected.subscribe([("cli/#", 1)])
            midge_proc.process.send_signal(signum)
            assert midge_proc.wait_exit() == 0, midge_proc.stderr
            assert connected.closed_by_peer(timeout=WAIT)
            assert silent.closed_by_peer(timeout=WAIT)
        assert not accepting(port)
        assert "Traceback" not in midge_proc.stderr


def test_sigterm_with_a_client_that_stopped_reading(tmp_path: Path):
    """A subscriber with megabytes unread must not hold up the shutdown."""
    with midge_process(serve_args(tmp_path), tmp_path) as midge_proc:
        host, port = midge_proc.wait_listening()
        with raw_client(host, port, rcvbuf=4096) as stalled, raw_client(host, port) as pub:
            stalled.connect_ok(unique("stall"))
            stalled.subscribe([("cli/#", 0)])
            pub.connect_ok(unique("pub"))
            pub.send(b"".join(publish_packet("cli/x", b"s" * 10_000) for _ in range(500)))
            pub.send(b"\xc0\x00")
            assert pub.read_packet()[0] == 0xD0
            midge_proc.process.send_signal(signal.SIGTERM)
            assert midge_proc.wait_exit() == 0, midge_proc.stderr


# ------------------------------------------------------------------ config


def test_config_file_values_are_applied(tmp_path: Path):
    with start_midge(config_toml="strict_client_id = true\n") as (host, port, _):
        with raw_client(host, port) as refused:
            assert refused.connect("a-b") == (0, 2)  # identifier rejected
            assert refused.closed_by_peer()
        with raw_client(host, port) as too_long:
            assert too_long.connect("a" * 24) == (0, 2)
        with raw_client(host, port) as accepted:
            accepted.connect_ok("ab1")


def test_default_config_accepts_any_client_id(midge_broker: Broker):
    host, port, _ = midge_broker
    with raw_client(host, port) as client:
        client.connect_ok("a-b")


def test_port_and_host_from_config_file(tmp_path: Path):
    port = free_port()
    config = tmp_path / "midge.toml"
    config.write_text(f'host = "{HOST}"\nport = {port}\ndata_dir = "{tmp_path / "d"}"\n')
    with midge_process(["serve", "--config", str(config)], tmp_path) as midge_proc:
        assert midge_proc.wait_listening() == (HOST, port)
        assert (tmp_path / "d").is_dir()
        with paho(HOST, port):
            pass


def test_flags_override_config_file(tmp_path: Path):
    with occupied_port() as busy:
        config = tmp_path / "midge.toml"
        config.write_text(
            f"port = {busy}\n"
            'log_level = "error"\n'  # would hide the info-level listening line
            f'data_dir = "{tmp_path / "from-config"}"\n'
            "strict_client_id = true\n"
        )
        args = [
            "serve",
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            "0",
            "--log-level",
            "info",
            "--data-dir",
            str(tmp_path / "from-flag"),
        ]
        with midge_process(args, tmp_path) as midge_proc:
            host, port = midge_proc.wait_listening()
            assert port != busy
            assert (tmp_path / "from-flag").is_dir()
            assert not (tmp_path / "from-config").exists()
            with raw_client(host, port) as client:  # the file's other keys still apply
                assert client.connect("a-b") == (0, 2)


def test_log_level_from_config_file(tmp_path: Path):
    config = tmp_path / "midge.toml"
    config.write_text('log_level = "debug"\n')
    with midge_process(serve_args(tmp_path, "--config", str(config)), tmp_path) as midge_proc:
        host, port = midge_proc.wait_listening()
        with raw_client(host, port) as client:
            client.connect_ok(unique("c"))
            client.send(publish_packet("$SYS/x", b"ignored"))  # logged at debug only
            client.send(b"\xc0\x00")
            assert client.read_packet()[0] == 0xD0
        deadline = time.monotonic() + WAIT
        while "DEBUG" not in midge_proc.stderr and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "DEBUG" in midge_proc.stderr


BAD_CONFIGS = {
    "unknown-key": ("max_conections = 5\n", "max_conections"),
    "wrong-type-bool": ('strict_client_id = "yes"\n', "strict_client_id"),
    "wrong-type-str": ("log_level = 3\n", "log_level"),
    "wrong-type-int": ('max_connections = "5"\n', "max_connections"),
    "float-for-int": ("max_write_buffer = 2048.0\n", "max_write_buffer"),
    "bool-for-int": ("max_queued_messages = true\n", "max_queued_messages"),
    "bad-value": ("max_inflight_messages = 0\n", "max_inflight_messages"),
    "bad-choice": ('slow_consumer_policy = "ignore"\n', "slow_consumer_policy"),
    "missing-password-file": ('password_file = "/nonexistent/pw"\n', "password_file"),
    "not-toml": ("port = = 1\n", "not valid TOML"),
}


@pytest.mark.parametrize(("text", "named"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, text: str, named: str):
    port = free_port()
    config = tmp_path / "midge.toml"
    config.write_text(f'host = "{HOST}"\nport = {port}\n{text}')
    args = ["serve", "--config", str(config), "--data-dir", str(tmp_path / "data")]
    with midge_process(args, tmp_path) as midge_proc:
        assert midge_proc.wait_exit(timeout=10) == 2, midge_proc.stderr
        assert named in midge_proc.stderr
        assert "listening on" not in midge_proc.stderr
        assert "Traceback" not in midge_proc.stderr
    assert not accepting(port)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--config", "/nonexistent/midge.toml"], "cannot read config file"),
        (["--port", "70000"], "port"),
        (["--log-level", "loud"], "--log-level"),
    ],
    ids=["missing-config-file", "port-out-of-range", "unknown-log-level"],
)
def test_bad_command_line_exits_2(tmp_path: Path, extra: list[str], named: str):
    args = ["serve", "--host", HOST, "--data-dir", str(tmp_path / "data"), *extra]
    with midge_process(args, tmp_path) as midge_proc:
        assert midge_proc.wait_exit(timeout=10) == 2, midge_proc.stderr
        assert named in midge_proc.stderr
        assert "listening on" not in midge_proc.stderr


def test_bad_password_file_exits_2(tmp_path: Path):
    passwords = tmp_path / "passwords"
    passwords.write_text("alice:$7$not-a-hash\n")
    config = tmp_path / "midge.toml"
    config.write_text(f'password_file = "{passwords}"\n')
    with midge_process(serve_args(tmp_path, "--config", str(config)), tmp_path) as midge_proc:
        assert midge_proc.wait_exit(timeout=10) == 2, midge_proc.stderr
        assert f"{passwords}:1" in midge_proc.stderr
        assert "listening on" not in midge_proc.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path):
    with occupied_port() as busy:
        args = ["serve", "--host", HOST, "--port", str(busy), "--data-dir", str(tmp_path / "d")]
        with midge_process(args, tmp_path) as midge_proc:
            returncode = midge_proc.wait_exit(timeout=10)
            assert returncode not in (0, None)
            assert f"cannot listen on {HOST}:{busy}" in midge_proc.stderr
            assert "address already in use" in midge_proc.stderr.lower()
            assert "Traceback" not in midge_proc.stderr
            assert "listening on" not in midge_proc.stderr


# ----------------------------------------------------------------- version


def test_version(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "midge", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"midge {midge.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", midge.__version__)


def test_no_command_is_a_usage_error(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "midge"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2
    assert "usage: midge" in result.stderr


def test_unusable_data_dir_is_reported_as_such(tmp_path: Path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    args = ["serve", "--host", HOST, "--port", "0", "--data-dir", str(not_a_dir)]
    with midge_process(args, tmp_path) as midge_proc:
        assert midge_proc.wait_exit(timeout=10) != 0
        assert "listening on" not in midge_proc.stderr
        assert "cannot listen" not in midge_proc.stderr, midge_proc.stderr.strip()
        assert f"cannot use data dir {not_a_dir}" in midge_proc.stderr
