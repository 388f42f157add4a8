"""`midge serve --workers 2`: two broker processes on one port, one cluster (issue 14).

Each test runs the real supervisor (`python -m midge serve --workers 2 --port
0`) through tests/brokers.py, which reads the port from the first
`listening on HOST:PORT` line. Which worker a connection landed on is read
from the workers' own log lines, which carry their node name (`[wk-w2]
midge.broker: client 'x' connected ...`); the supervisor's lines give the
workers' PIDs (`worker 2 (node wk-w2): started, pid N`). The Redis is the
session's redis-server (`--cluster`), or, without --cluster, the private
redis-server the supervisor starts in the data dir.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from integration_support import Paho, RawClient, unique, wait_for

from brokers import HOST, RunningMidge, free_port, start_midge_with_log
from midge.broker.config import BrokerConfig, ListenerConfig
from midge.cli import worker_count
from midge.workers import private_redis
from midge.workers.private_redis import PrivateRedis, PrivateRedisError
from midge.workers.supervisor import KILL_WAIT, file_names_redis
from midge.workers.worker import STOP_TIMEOUT, on_ports
from redis_server import RedisServer, require_redis

pytestmark = pytest.mark.timeout(90)

WAIT = 10.0  # a worker's start (Python, uvloop, Redis) on a busy 2-core machine
CLIENTS = 30  # connections spread by the kernel: all on one worker has odds of 2 in 2**30
STARTED = re.compile(r"worker (\d+) \(node (\S+)\): started, pid (\d+)")
READY = re.compile(r"worker (\d+) \(node (\S+)\): ready, pid (\d+)")
CONNECTED = re.compile(r"\[([^\]]+)\] midge\.broker: client '([^']+)' connected")
NODE_LABEL = re.compile(r" \[([^\]]+)\] midge\.")


@contextmanager
def start_workers(
    workdir: Path, args: list[str], *, data_dir: bool = False
) -> Iterator[RunningMidge]:
    """`midge serve --workers 2` with `args`, once both workers are ready."""
    with start_midge_with_log(
        None, ["--workers", "2", *args], workdir=workdir, data_dir=data_dir
    ) as running:
        running.log.wait_for(READY, count=2, timeout=WAIT)
        yield running


def external(redis: RedisServer, prefix: str, name: str = "wk") -> list[str]:
    return ["--cluster", redis.url, "--cluster-prefix", prefix, "--node-name", name]


def worker_pids(running: RunningMidge) -> dict[str, list[int]]:
    """Node name -> the PIDs of its runs, in order, from the supervisor's log."""
    pids: dict[str, list[int]] = {}
    for line in running.log.matching(STARTED):
        match = STARTED.search(line)
        assert match is not None
        pids.setdefault(match.group(2), []).append(int(match.group(3)))
    return pids


def landed_on(running: RunningMidge, client_id: str) -> str:
    """The node whose log says `client_id` connected (its last connection)."""
    pattern = rf"\] midge\.broker: client '{re.escape(client_id)}' connected"
    line = running.log.wait_for(pattern, timeout=WAIT)[-1]
    match = CONNECTED.search(line)
    assert match is not None, line
    return match.group(1)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def sigterm_and_check_all_gone(running: RunningMidge, pids: list[int]) -> None:
    running.process.send_signal(signal.SIGTERM)
    # The supervisor's own bound: it kills a worker that takes longer to stop.
    assert running.process.wait(timeout=STOP_TIMEOUT + KILL_WAIT + 5) == 0, running.log.text()
    assert wait_for(lambda: not any(alive(pid) for pid in pids), timeout=WAIT), (
        [pid for pid in pids if alive(pid)],
        running.log.text(),
    )


# ------------------------------------------------------------- one cluster


@pytest.fixture(scope="module")
def pair(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningMidge]:
    """Two workers on the session's Redis, shared by the tests that leave them running."""
    prefix = f"t{os.getpid()}wk"
    folder = tmp_path_factory.mktemp("workers")
    with start_workers(folder, external(redis_server, prefix)) as running:
        yield running


def test_both_workers_listen_on_the_one_reserved_port(pair: RunningMidge) -> None:
    listening = pair.log.matching(r"listening on \S+:\d+ \(mqtt\)")
    assert len(listening) == 2, pair.log.text()
    assert all(f"listening on {HOST}:{pair.port} " in line for line in listening)
    assert sorted(worker_pids(pair)) == ["wk-w1", "wk-w2"]


def test_the_kernel_spreads_connections_over_both_workers(pair: RunningMidge) -> None:
    ids = [unique("sp") for _ in range(CLIENTS)]
    with ExitStack() as stack:
        for client_id in ids:
            client = RawClient(pair.host, pair.port)
            stack.callback(client.close)
            client.connect_ok(client_id)
        nodes = Counter(landed_on(pair, client_id) for client_id in ids)
    assert set(nodes) == {"wk-w1", "wk-w2"}, nodes


def test_publisher_and_subscriber_on_different_workers_exchange_qos1(pair: RunningMidge) -> None:
    topic, subscriber_id = f"wk/{unique('t')}", unique("sub")
    subscriber = Paho(pair.host, pair.port, client_id=subscriber_id)
    subscriber.connect_ok()
    try:
        subscriber.subscribe(topic, 1)
        node = landed_on(pair, subscriber_id)
        publisher = connect_elsewhere(pair, node)
        try:
            for number in range(20):
                publisher.publish(topic, f"m{number}".encode(), qos=1)
            received = subscriber.get_many(20, timeout=WAIT)
        finally:
            publisher.close()
    finally:
        subscriber.close()
    assert [message.payload for message in received] == [f"m{n}".encode() for n in range(20)]
    assert all(message.qos == 1 for message in received)


def connect_elsewhere(running: RunningMidge, node: str, attempts: int = 40) -> Paho:
    """A connected paho client on a worker other than `node` (reconnecting until one is)."""
    for _ in range(attempts):
        client_id = unique("pub")
        client = Paho(running.host, running.port, client_id=client_id)
        client.connect_ok()
        if landed_on(running, client_id) != node:
            return client
        client.close()
    raise AssertionError(f"{attempts} connections all landed on {node}")


def test_sighup_reaches_every_worker(pair: RunningMidge) -> None:
    """One worker gets the signal and reloads; it tells the cluster, and the
    other reloads too: once each."""
    reloaded = "SIGHUP: reloading|reloaded its files: so does this one"
    before = len(pair.log.matching(reloaded))
    pair.process.send_signal(signal.SIGHUP)
    lines = pair.log.wait_for(reloaded, count=before + 2, timeout=WAIT)[before:]
    assert {label(line) for line in lines} == {"wk-w1", "wk-w2"}


def label(line: str) -> str:
    """The node name a worker's log line carries."""
    match = NODE_LABEL.search(line)
    assert match is not None, line
    return match.group(1)


# ------------------------------------------------ death, restart and stop


def test_a_killed_worker_is_restarted_and_sigterm_stops_everything(
    redis_server: RedisServer, unique_prefix: str, tmp_path: Path
) -> None:
    with start_workers(tmp_path, external(redis_server, unique_prefix)) as running:
        killed = worker_pids(running)["wk-w2"][0]
        os.kill(killed, signal.SIGKILL)
        running.log.wait_for(rf"wk-w2\), pid {killed}, was killed by SIGKILL", timeout=WAIT)
        running.log.wait_for(r"worker 2 \(node wk-w2\): ready", count=2, timeout=WAIT)
        restarted = worker_pids(running)["wk-w2"][-1]
        assert restarted != killed and alive(restarted)
        serves_again(running, "wk-w2")
        pids = [pid for runs in worker_pids(running).values() for pid in runs]
        sigterm_and_check_all_gone(running, pids)


def test_workers_do_not_outlive_a_killed_supervisor(
    redis_server: RedisServer, unique_prefix: str, tmp_path: Path
) -> None:
    with start_workers(tmp_path, external(redis_server, unique_prefix)) as running:
        pids = [pid for runs in worker_pids(running).values() for pid in runs]
        running.process.kill()
        running.process.wait(timeout=WAIT)
        # Linux sends them SIGTERM; a stop that hangs is ended by their watchdog.
        assert wait_for(lambda: not any(alive(pid) for pid in pids), timeout=STOP_TIMEOUT + 5), (
            running.log.text()
        )


def serves_again(running: RunningMidge, node: str) -> None:
    """A connection lands on `node` (within CLIENTS tries) and is accepted there."""
    with ExitStack() as stack:
        for _ in range(CLIENTS):
            client = RawClient(running.host, running.port)
            stack.callback(client.close)
            client_id = unique("rs")
            client.connect_ok(client_id)
            if landed_on(running, client_id) == node:
                return
    raise AssertionError(f"no connection reached {node}:\n{running.log.text()}")


def test_a_worker_that_cannot_start_is_reported_once(tmp_path: Path) -> None:
    nowhere = f"redis://{HOST}:{free_port()}/0"
    command = [sys.executable, "-m", "midge", "serve", "--workers", "2", "--port", "0"]
    result = subprocess.run(
        [*command, "--cluster", nowhere, "--node-name", "wk"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("cannot reach Redis") == 1, result.stderr
    assert "worker 1 (node wk-w1) exited with code 2 before it was ready" in result.stderr
    assert "worker 2" not in result.stderr


# ------------------------------------------------------ private Redis


def test_without_cluster_a_private_redis_server_is_started_and_stopped(tmp_path: Path) -> None:
    require_redis()
    with start_workers(tmp_path, ["--node-name", "pv"], data_dir=True) as running:
        started = running.log.wait_for(r"private redis-server: started, pid \d+")[0]
        redis_pid = int(started.split()[-1])
        assert alive(redis_pid)
        topic, subscriber_id = f"pv/{unique('t')}", unique("sub")
        subscriber = Paho(running.host, running.port, client_id=subscriber_id)
        subscriber.connect_ok()
        try:
            subscriber.subscribe(topic, 1)
            node = landed_on(running, subscriber_id)
            publisher = connect_elsewhere(running, node)
            publisher.publish(topic, b"through the private redis", qos=1)
            publisher.close()
            assert subscriber.get(timeout=WAIT).payload == b"through the private redis"
        finally:
            subscriber.close()
        pids = [pid for runs in worker_pids(running).values() for pid in runs]
        sigterm_and_check_all_gone(running, [*pids, redis_pid])
    assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()


def test_without_redis_server_the_error_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(private_redis, "redis_binary", lambda: None)
    config = BrokerConfig(data_dir=str(tmp_path / "data"))
    with pytest.raises(PrivateRedisError) as error:
        PrivateRedis.prepare(config)
    message = str(error.value)
    assert "redis-server is not installed" in message
    assert "--cluster" in message and "apt-get install redis-server" in message


def test_one_supervisor_per_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(private_redis, "redis_binary", lambda: "/bin/true")
    config = BrokerConfig(data_dir=str(tmp_path / "data"))
    first = PrivateRedis.prepare(config)
    try:
        assert first.url == f"unix://{tmp_path / 'data' / 'redis' / 'redis.sock'}?db=0"
        with pytest.raises(PrivateRedisError, match=rf"in use by .*\(pid {os.getpid()}\)"):
            PrivateRedis.prepare(config)
    finally:
        first.release()
    PrivateRedis.prepare(config).release()  # free again once released


# ------------------------------------------------------------ small parts


def test_a_url_in_the_config_file_means_no_private_redis(tmp_path: Path) -> None:
    with_url, without = tmp_path / "with.toml", tmp_path / "without.toml"
    with_url.write_text('[cluster]\nurl = "redis://127.0.0.1:6379/0"\n')
    without.write_text('[cluster]\nname = "edge"\n')
    assert file_names_redis(str(with_url))
    assert not file_names_redis(str(without))
    assert not file_names_redis(None)


def test_worker_count_takes_a_number_or_auto() -> None:
    assert worker_count("3") == 3
    assert worker_count("auto") == (os.cpu_count() or 1)
    for bad in ("0", "-1", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_count(bad)


def test_worker_ports_move_every_mqtt_listener_and_no_http_one() -> None:
    assert on_ports(BrokerConfig(port=0), [1884]).port == 1884
    listeners = (
        ListenerConfig(0),
        ListenerConfig(8080, transport="http"),
        ListenerConfig(0, transport="ws"),
    )
    moved = on_ports(replace(BrokerConfig(), listeners=listeners), [1884, 9001])
    assert [item.port for item in moved.listeners] == [1884, 8080, 9001]
