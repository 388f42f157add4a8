"""One store, one broker, with real `midge serve` processes.

A second broker on a data dir in use exits with status 2 naming the dir and
the first broker's PID, and leaves the first one serving. A broker killed with
SIGKILL leaves its lock file behind, but the kernel released the lock with the
process, so a restart on the same dir starts. A clean stop removes the file.
`store = "memory"` touches no file and takes no lock.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from durability_support import WAIT, RawClient, data_dir_args

from brokers import HOST, start_midge, stop

pytestmark = pytest.mark.timeout(60)

LOCK_FILE = "midge.lock"  # beside midge.db in --data-dir


def serve_expecting_exit(data_dir: Path, port: int = 0) -> subprocess.CompletedProcess[str]:
    """`midge serve` that should refuse to start; killed (by the timeout) if it does not."""
    args = [sys.executable, "-m", "midge", "serve", "--host", HOST, "--port", str(port)]
    return subprocess.run(
        [*args, "--log-level", "info", *data_dir_args(data_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=15,
        check=False,
    )


def assert_serves(host: str, port: int, client_id: str) -> None:
    client = RawClient(host, port, client_id, clean_session=False)
    assert client.subscribe("lock/#", 1) == (1,)
    client.disconnect()


def test_second_broker_refused_and_kill_9_does_not_block_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with start_midge(None, data_dir_args(data_dir)) as (host, port, first):
        assert (data_dir / LOCK_FILE).read_text().strip() == str(first.pid)
        second = serve_expecting_exit(data_dir)
        assert second.returncode == 2, second.stderr
        assert f"data dir {data_dir} is in use by another midge" in second.stderr
        assert f"PID {first.pid}" in second.stderr, second.stderr
        assert "listening on" not in second.stderr
        # The refusal changed nothing for the first broker.
        assert_serves(host, port, "lock-first")
        first.kill()
        first.wait(timeout=WAIT)
        assert first.returncode == -9
        assert (data_dir / LOCK_FILE).exists()  # stale: its holder is gone, its flock too

    with start_midge(None, data_dir_args(data_dir)) as (host, port, restarted):
        assert (data_dir / LOCK_FILE).read_text().strip() == str(restarted.pid)
        client = RawClient(host, port, "lock-first", clean_session=False)
        assert client.session_present  # the same store, opened again
        client.disconnect()
        stop(restarted)
        assert restarted.returncode == 0
        assert not (data_dir / LOCK_FILE).exists()
        assert (data_dir / "midge.db").exists()


def test_memory_store_brokers_share_a_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = 'store = "memory"\n'
    with (
        start_midge(config, data_dir_args(data_dir)) as (host, port_one, _one),
        start_midge(config, data_dir_args(data_dir)) as (_host, port_two, _two),
    ):
        assert_serves(host, port_one, "mem-one")
        assert_serves(host, port_two, "mem-two")
        assert not (data_dir / LOCK_FILE).exists()


def test_a_broker_that_cannot_listen_releases_the_data_dir(tmp_path: Path) -> None:
    """Exit 1 (address in use) still closes the store: no lock file is left."""
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_expecting_exit(data_dir, port)
    assert result.returncode == 1, result.stderr
    assert (data_dir / "midge.db").exists()
    assert not (data_dir / LOCK_FILE).exists(), result.stderr
