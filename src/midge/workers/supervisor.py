"""The supervisor of `midge serve --workers N`: N brokers on the same ports,
one cluster.

Each worker is a full `midge serve` process and a node of one cluster (named
`NAME-w1` .. `NAME-wN`, stable across restarts) on the configured Redis or on
a private redis-server (private_redis.py). The supervisor

- reserves every MQTT listener's port first (sockets.py), so port 0 is one
  real port for all workers, which bind it with SO_REUSEPORT;
- starts worker 1 alone and the others once it is ready: a worker that
  cannot start (a bad config file, Redis unreachable) says why once, and the
  supervisor exits with its status;
- passes SIGHUP on to one worker (a reload reaches every node of a cluster),
  stops them all on SIGTERM or SIGINT
  (then the private redis-server, whose file they commit to last);
- restarts a worker that dies, under the same node name (the cluster lets
  a node reclaim its name from a dead run on the same host, and publishes
  that run's wills), after a pause that grows while it keeps dying young, so
  a worker that crashes at start never spins.

It never listens, never speaks MQTT and starts no thread (which keeps the
children's preexec_fn safe); it only watches processes, on asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from midge import logs, sdnotify
from midge.broker.config import BrokerConfig
from midge.cluster.config import redacted
from midge.workers.private_redis import PrivateRedis, PrivateRedisError
from midge.workers.sockets import NotifySocket, parent_death_hook, reserve_port, supported
from midge.workers.worker import STOP_TIMEOUT

log = logging.getLogger("midge.workers")

KILL_WAIT = 5.0
REDIS_START_TIMEOUT = 30.0  # a large append-only file takes a while to load
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
HEALTHY_RUN = 30.0  # a child that ran this long is restarted without the backoff
# Replaced by the private redis-server's URL once it is known; only lets the
# config (a [cluster] table without url, --node-name) be checked before.
PROVISIONAL_URL = "unix:///private-redis.sock"

ConfigLoader = Callable[[str | None], BrokerConfig]


class Child:
    """A process kept running: a worker or the private redis-server."""

    def __init__(self, label: str, command: list[str], env: dict[str, str], quiet: bool) -> None:
        self.label = label
        self.command = command
        self.env = env
        self.quiet = quiet  # redis-server logs to its file; its stdout is noise
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.failures = 0
        self.exited = asyncio.Event()

    def spawn(self, preexec: Callable[[], None]) -> None:
        self.exited.clear()
        # A session of its own: a Ctrl-C on the terminal reaches the
        # supervisor only, which stops the workers before their Redis.
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if self.quiet else None,
            preexec_fn=preexec,  # noqa: PLW1509 - the supervisor has no threads
            start_new_session=True,
        )
        self.started = time.monotonic()
        log.info("%s: started, pid %d", self.label, self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def poll(self) -> None:
        """On SIGCHLD: reap this child if it has exited (only its own PID)."""
        if self.process is not None and self.process.poll() is not None:
            self.exited.set()

    def send(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def how_it_ended(self) -> str:
        code = self.process.returncode if self.process is not None else None
        if code is None:
            return "is still running"
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def failure_status(self) -> int:
        code = self.process.returncode if self.process is not None else None
        return code if code is not None and code > 0 else 1

    def restart_delay(self) -> float:
        """How long to wait before the next start: doubling while the child
        keeps dying within HEALTHY_RUN of its start."""
        if time.monotonic() - self.started >= HEALTHY_RUN:
            self.failures = 0
        self.failures += 1
        return min(BACKOFF_FIRST * 2.0 ** (self.failures - 1), BACKOFF_MAX)


class Worker(Child):
    """One broker process; it says READY=1 on its own notify socket once it listens."""

    def __init__(self, number: int, name: str, command: list[str], env: dict[str, str]) -> None:
        self.notify = NotifySocket(f"w{number}")
        super().__init__(
            f"worker {number} (node {name})",
            command,
            {**env, "NOTIFY_SOCKET": self.notify.address},
            quiet=False,
        )
        self.number = number
        self.name = name
        self.ready = asyncio.Event()

    def spawn(self, preexec: Callable[[], None]) -> None:
        self.notify.messages()  # what an earlier run said is no news
        self.ready.clear()
        super().spawn(preexec)

    def notes_arrived(self) -> None:
        notes = self.notify.messages()
        if any(sdnotify.READY in note.splitlines() for note in notes) and not self.ready.is_set():
            log.info("%s: ready, pid %d", self.label, self.pid)
            self.ready.set()


class Supervisor:
    def __init__(self, workers: list[Worker], redis: PrivateRedis | None) -> None:
        self.workers = workers
        self.redis = redis
        self.redis_child = (
            None
            if redis is None
            else Child("private redis-server", redis.command, _environment(), quiet=True)
        )
        self.preexec = parent_death_hook()
        self.stop_requested = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def children(self) -> list[Child]:
        redis = [] if self.redis_child is None else [self.redis_child]
        return [*self.workers, *redis]

    async def run(self) -> int:
        """Until SIGTERM/SIGINT: 0; or the status of a first start that failed."""
        loop = asyncio.get_running_loop()
        self._install(loop)
        try:
            failure = await self._first_start()
            if failure is not None:
                return failure
            self.tasks = [asyncio.create_task(self._keep(worker)) for worker in self.workers]
            if self.redis_child is not None:
                self.tasks.append(asyncio.create_task(self._keep(self.redis_child)))
            self.tasks.append(asyncio.create_task(self._announce()))
            await self.stop_requested.wait()
            return 0
        finally:
            await self._shutdown()
            self._uninstall(loop)

    def _install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._request_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self._pass_on_reload)
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        for worker in self.workers:
            loop.add_reader(worker.notify.sock.fileno(), worker.notes_arrived)

    def _uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            loop.remove_signal_handler(signum)
        for worker in self.workers:
            loop.remove_reader(worker.notify.sock.fileno())
            worker.notify.close()

    def _request_stop(self, signum: int) -> None:
        if not self.stop_requested.is_set():
            log.info("%s: stopping the workers", signal.Signals(signum).name)
            self.stop_requested.set()

    def _pass_on_reload(self) -> None:
        """One worker reloads; it tells the cluster, so every worker does once."""
        running = [worker for worker in self.workers if worker.running]
        if running:
            running[0].send(signal.SIGHUP)
        log.info(
            "SIGHUP: passed on to %s, which tells the others",
            running[0].name if running else "no worker",
        )

    def _reap(self) -> None:
        for child in self.children:
            child.poll()

    async def _first_start(self) -> int | None:
        """None once worker 1 is ready and the others are started; else the
        exit status (0 when a stop signal came first)."""
        if self.redis_child is not None:
            problem = await self._start_redis()
            if problem is not None:
                print(f"midge: {problem}", file=sys.stderr)
                return 1
        first = self.workers[0]
        first.spawn(self.preexec)
        await _first_of(first.ready, first.exited, self.stop_requested)
        if self.stop_requested.is_set():
            return 0
        if not first.ready.is_set():
            # Its own error is on standard error already: say it once, not N times.
            print(
                f"midge: {first.label} {first.how_it_ended()} before it was ready; "
                "the other workers were not started",
                file=sys.stderr,
            )
            return first.failure_status()
        for worker in self.workers[1:]:
            worker.spawn(self.preexec)
        return None

    async def _start_redis(self) -> str | None:
        """Start the private redis-server and wait until it serves; what went wrong, if so."""
        redis, child = self.redis, self.redis_child
        assert redis is not None and child is not None
        child.spawn(self.preexec)
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not self.stop_requested.is_set():
            if child.exited.is_set():
                return (
                    f"redis-server {child.how_it_ended()} at start; the end of its log "
                    f"({redis.folder / 'redis.log'}):\n{redis.log_tail()}"
                )
            if redis.answers():
                log.info("ready: %s", redis.describe())
                return None
            if time.monotonic() > deadline:
                return f"redis-server did not answer within {REDIS_START_TIMEOUT:g} s"
            await asyncio.sleep(0.05)
        return None

    async def _keep(self, child: Child) -> None:
        """Start `child` again whenever it dies, until the supervisor stops."""
        while True:
            await child.exited.wait()
            delay = child.restart_delay()
            log.warning(
                "%s, pid %d, %s; starting it again in %.1f s",
                child.label,
                child.pid,
                child.how_it_ended(),
                delay,
            )
            await asyncio.sleep(delay)
            child.spawn(self.preexec)

    async def _announce(self) -> None:
        """Tell systemd (Type=notify) once every worker has started or failed once."""
        for worker in self.workers:
            await _first_of(worker.ready, worker.exited)
        ready = sum(worker.ready.is_set() for worker in self.workers)
        log.info("%d of %d workers ready", ready, len(self.workers))
        sdnotify.notify(sdnotify.READY)

    async def _shutdown(self) -> None:
        sdnotify.notify(sdnotify.STOPPING)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self._stop(self.workers)
        if self.redis_child is not None:  # last: the workers commit to it as they stop
            await self._stop([self.redis_child])
        log.info("stopped")

    async def _stop(self, children: Sequence[Child]) -> None:
        """SIGTERM, wait, and SIGKILL what is still running after STOP_TIMEOUT."""
        running = [child for child in children if child.running]
        for child in running:
            child.send(signal.SIGTERM)
        if not await _all_exited(running, STOP_TIMEOUT):
            for child in running:
                if child.running:
                    log.warning(
                        "%s did not stop within %g s: killing it", child.label, STOP_TIMEOUT
                    )
                    child.send(signal.SIGKILL)
            await _all_exited(running, KILL_WAIT)


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _all_exited(children: Sequence[Child], timeout: float) -> bool:
    if not children:
        return True
    for child in children:
        child.poll()  # a SIGCHLD may have come before the handler knew of the child
    waits = [asyncio.create_task(child.exited.wait()) for child in children]
    _done, pending = await asyncio.wait(waits, timeout=timeout)
    for wait in pending:
        wait.cancel()
    return not pending


def _environment() -> dict[str, str]:
    """The children's environment: this one without systemd's notify socket,
    which only the supervisor (the unit's main process) may use."""
    return {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}


# ------------------------------------------------------------------ plan


def supervise(
    count: int,
    argv: Sequence[str],
    load: ConfigLoader,
    cluster_flag: str | None,
    config_file: str | None,
) -> int:
    """`midge serve --workers COUNT` with the command line `argv` (from
    `serve` on); `load(url)` reads the config as the flags say, its cluster
    URL replaced when `url` is given. Returns the exit status; ConfigError
    propagates, for the caller to report."""
    problem = supported()
    if problem is not None:
        print(f"midge: {problem}", file=sys.stderr)
        return 2
    private = cluster_flag is None and not file_names_redis(config_file)
    config = load(PROVISIONAL_URL if private else None)
    logs.configure_logging(config.log_level, config.log_format)
    redis: PrivateRedis | None = None
    reserved: list[socket.socket] = []
    try:
        if private:
            redis = PrivateRedis.prepare(config)
            config = _with_url(config, redis.url)
        ports = _reserve_ports(config, reserved)
        workers = _workers(count, argv, config, ports, redis)
        return _run(config, workers, redis)
    except PrivateRedisError as exc:
        print(f"midge: {exc}", file=sys.stderr)
        return 2
    except _ListenError as exc:
        print(f"midge: {exc}", file=sys.stderr)
        return 1
    finally:
        for sock in reserved:
            sock.close()
        if redis is not None:
            redis.release()


class _ListenError(Exception):
    pass


def _run(config: BrokerConfig, workers: list[Worker], redis: PrivateRedis | None) -> int:
    cluster = config.cluster
    assert cluster is not None
    log.info(
        "supervisor (pid %d): %d workers, nodes %s to %s of the cluster on %s",
        os.getpid(),
        len(workers),
        workers[0].name,
        workers[-1].name,
        redis.describe() if redis is not None else redacted(cluster.url),
    )
    supervisor = Supervisor(workers, redis)
    try:
        return asyncio.run(supervisor.run())
    finally:
        for worker in workers:
            worker.notify.close()


def file_names_redis(config_file: str | None) -> bool:
    """Whether the config file's [cluster] table gives a url (then no private Redis)."""
    if not config_file:
        return False
    try:
        data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # load_config says what is wrong with it
    table = data.get("cluster")
    return isinstance(table, dict) and "url" in table


def _with_url(config: BrokerConfig, url: str) -> BrokerConfig:
    assert config.cluster is not None
    return replace(config, cluster=replace(config.cluster, url=url))


def _reserve_ports(config: BrokerConfig, reserved: list[socket.socket]) -> list[int]:
    """Each MQTT listener's port, bound (and kept in `reserved`) for the workers."""
    ports = []
    for listener in config.effective_listeners():
        try:
            port, sockets = reserve_port(listener.host, listener.port)
        except OSError as exc:
            raise _ListenError(f"cannot listen on {listener.host}:{listener.port}: {exc}") from None
        reserved.extend(sockets)
        ports.append(port)
    return ports


def _workers(
    count: int,
    argv: Sequence[str],
    config: BrokerConfig,
    ports: list[int],
    redis: PrivateRedis | None,
) -> list[Worker]:
    """The workers' command lines: the user's, then what makes each a worker
    (argparse lets a later flag win)."""
    assert config.cluster is not None
    base = config.cluster.node_name
    command = [sys.executable, "-m", "midge", *argv, "--workers", "1"]
    command += ["--worker-ports", ",".join(map(str, ports))]
    if redis is not None:
        command += ["--cluster", redis.url]
    env = _environment()
    workers = []
    for number in range(1, count + 1):
        name = f"{base}-w{number}"
        own = ["--node-name", name] + ([] if number == 1 else ["--worker-no-http"])
        workers.append(Worker(number, name, [*command, *own], env))
    return workers
