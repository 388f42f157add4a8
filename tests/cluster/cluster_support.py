"""Midge clusters for the end-to-end tests: N `midge serve --cluster` processes on one Redis.

`Cluster` starts its nodes one after the other through tests/brokers.py
(`start_midge_with_log`: the same process handling, port reading from the
`listening on HOST:PORT` line, and stop by PID), each as

    python -m midge serve --port 0 --cluster URL --node-name nN --cluster-prefix PREFIX

(or the same three keys in a `[cluster]` table of its config file), with no
--data-dir: a cluster node keeps its state in Redis. Every node is a `Node`:
its address, its log, and `stop()` (SIGTERM, then SIGKILL if it lingers),
`kill()` (SIGKILL, what a crash does) and `start()` again under the same name
and on the same port, so clients reconnect where they were. A cluster may
give every node more keys of that table (`settings`: `heartbeat_interval`,
`node_timeout`), and have a Redis of its own (`redis`: one the test stops,
kills and starts again).

`redis_command` speaks RESP to the tests' redis-server over a plain socket,
for the few checks that look into Redis (a node's route set, how many
entries were ever added to a node's inbound stream), with the key names of
midge.cluster.keys.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from brokers import (
    HOST,
    BrokerStartError,
    RestartableBroker,
    RunningBroker,
    start_midge_with_log,
)
from midge.cluster.keys import Keys
from redis_server import RedisServer

WAIT = 5.0  # seconds for anything that should happen "at once" on loopback

_clusters = itertools.count(1)


def module_prefix() -> str:
    """A Redis key prefix for a module-scoped cluster (function-scoped ones use
    `unique_prefix`, whose prefixes have an "x" where these have an "m")."""
    return f"t{os.getpid()}m{next(_clusters)}"


class Node(RestartableBroker):
    """One `midge serve --cluster` process, which may be stopped, killed and started again."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        super().__init__(name)
        self.cluster = cluster

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"Node({self.name} on {self.host}:{self.port}, {state})"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def _launch(self) -> AbstractContextManager[RunningBroker]:
        config, args = self.cluster.node_arguments(self.name)
        if self.port:
            args += ["--port", str(self.port)]  # after the helper's --port 0: it wins
        return start_midge_with_log(
            config,
            args,
            workdir=self.cluster.folder / self.name,
            data_dir=not self.cluster.clustered,
        )

    def start(self) -> Node:
        """Start the process (again, with the same name and port) and wait until it
        listens; with a cluster, check it logged that it joined before listening."""
        super().start()
        running = self.runs[-1]
        if self.cluster.clustered and not running.log.matching(self.joined_pattern):
            text = running.log.text()
            self.stop()
            raise BrokerStartError(
                f"node {self.name} listened without logging 'cluster: node {self.name} joined' "
                f"first:\n{text}"
            )
        return self

    @property
    def joined_pattern(self) -> str:
        return rf"cluster: node {re.escape(self.name)} joined"


class Cluster:
    """`size` nodes n1..nN on `redis` under the key prefix `prefix`.

    `clustered=False` starts the same processes without the cluster flags
    (independent brokers, each with its own data dir): for checking this
    harness itself. `via_config=True` gives each node its cluster settings in
    a `[cluster]` table of its config file instead of flags. `settings`: more
    keys of that table (`heartbeat_interval`, `node_timeout`), for every node.
    """

    def __init__(
        self,
        redis: RedisServer,
        prefix: str,
        folder: Path,
        size: int = 3,
        *,
        clustered: bool = True,
        via_config: bool = False,
        settings: Mapping[str, float] | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.folder = folder
        self.clustered = clustered
        self.via_config = via_config
        self.settings = dict(settings or {})
        self.keys = Keys(prefix)
        self.nodes = [Node(self, f"n{number}") for number in range(1, size + 1)]

    @property
    def url(self) -> str:
        return self.redis.url

    def node_arguments(self, name: str) -> tuple[str | None, list[str]]:
        """(config file text or None, command-line arguments) for node `name`."""
        if not self.clustered:
            return None, []
        table = "".join(f"{key} = {value!r}\n" for key, value in self.settings.items())
        if self.via_config:
            config = f'[cluster]\nurl = "{self.url}"\nname = "{name}"\nprefix = "{self.prefix}"\n'
            return config + table, []
        flags = ["--cluster", self.url, "--node-name", name, "--cluster-prefix", self.prefix]
        return (f"[cluster]\n{table}" if table else None), flags

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        return self

    def stop(self) -> None:
        """Stop every running node by its PID; the first failure is raised after all."""
        errors: list[BaseException] = []
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception as error:  # stop the others anyway
                errors.append(error)
        if errors:
            raise errors[0]

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def logs(self, tail: int = 200) -> str:
        """The last `tail` lines of every node's current log, for failure reports."""
        return "\n".join(node.log_tail(tail) for node in self.nodes)

    # ------------------------------------------------ looking into Redis
    def redis_command(self, *args: str | bytes | int) -> Any:
        return redis_command(self.redis.port, *args)

    def routes(self, node: str) -> set[str]:
        """The topic filters Redis holds as node `node`'s routes."""
        members = self.redis_command("SMEMBERS", self.keys.routes(node))
        return {member.decode() for member in members}

    def inbound_added(self, node: str) -> int:
        """How many entries were ever added to node `node`'s inbound stream (0: none yet)."""
        try:
            info = self.redis_command("XINFO", "STREAM", self.keys.inbound(node))
        except RedisReplyError as error:
            if "no such key" in str(error):
                return 0
            raise
        fields = dict(zip(info[::2], info[1::2], strict=True))
        return int(fields[b"entries-added"])


class ClusterFactory:
    """Makes clusters; `close()` stops every node of every cluster it made."""

    def __init__(self, redis: RedisServer, prefix: str, folder: Path) -> None:
        self.redis = redis
        self.prefix = prefix
        self.folder = folder
        self.made: list[Cluster] = []

    def __call__(
        self,
        size: int = 3,
        *,
        clustered: bool = True,
        via_config: bool = False,
        settings: Mapping[str, float] | None = None,
        redis: RedisServer | None = None,
    ) -> Cluster:
        """A started cluster of `size` nodes (n1..nN), in a key prefix of its own;
        `settings`: more `[cluster]` keys; `redis`: another Redis than the
        session's (a test's own, which it may stop, kill and start again)."""
        number = len(self.made) + 1
        prefix = self.prefix if number == 1 else f"{self.prefix}c{number}"
        cluster = Cluster(
            redis or self.redis,
            prefix,
            self.folder / f"cluster{number}",
            size,
            clustered=clustered,
            via_config=via_config,
            settings=settings,
        )
        self.made.append(cluster)
        return cluster.start()

    def close(self) -> None:
        errors: list[BaseException] = []
        for cluster in reversed(self.made):
            try:
                cluster.stop()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]


# ---------------------------------------------------------------- RESP


class RedisReplyError(RuntimeError):
    """Redis answered with an error reply."""


def redis_command(port: int, *args: str | bytes | int) -> Any:
    """One command on a fresh loopback connection; the reply as RESP2 values
    (bytes, int, list, None), an error reply raised as RedisReplyError."""
    parts = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
    request = b"".join(
        [f"*{len(parts)}\r\n".encode()]
        + [f"${len(part)}\r\n".encode() + part + b"\r\n" for part in parts]
    )
    with socket.create_connection((HOST, port), timeout=WAIT) as sock:
        sock.sendall(request)
        with sock.makefile("rb") as reader:
            return _reply(reader)


def _reply(reader: Any) -> Any:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"truncated Redis reply: {line!r}")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"-":
        raise RedisReplyError(body.decode(errors="replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        length = int(body)
        if length < 0:
            return None
        data = reader.read(length + 2)
        return data[:-2]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [_reply(reader) for _ in range(count)]
    raise ConnectionError(f"unexpected Redis reply: {line!r}")
