"""Helpers of the bridge tests (issue 15): broker processes to bridge, their configs, waits.

A `Peer` is one broker process, `midge serve` or Debian's mosquitto, in a
folder of its own (its config, its data: a Midge's sqlite store, a
mosquitto's persistence file), which may be stopped (SIGTERM), killed
(SIGKILL) and started again on the same port with the same data, so the
bridges pointing at it find it where they left it. `Peers` makes them and
stops all of them, by PID, at the end (tests/bridge/conftest.py).

A `Gate` is a TCP relay in front of a peer, standing for what may be between
a bridge and its remote (a load balancer that closes connections, a broker
that refuses the bridge flag).

`bridge_table` writes one `[[bridges]]` table (docs: src/midge/bridge/config.py),
with a quick retry (`FAST_RETRY`) unless told otherwise; `rule` one of its
topic rules. `state_topic` is a bridge's notification topic, `wait_connected`
waits for its "connected to" log line.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import socket
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from integration_support import Paho

from brokers import (
    HOST,
    RestartableBroker,
    RunningBroker,
    mosquitto_binary,
    start_midge_with_log,
    start_mosquitto_with_log,
)
from streams import WAIT, wait_until

BRIDGE_LEVEL = 0x84  # MQTT 3.1.1's protocol level 4 with Mosquitto's bridge bit
# A lost or refused link is tried again within a second (the defaults: 5 s, growing to 30 s).
FAST_RETRY: Mapping[str, float] = {"restart_delay": 0.2, "restart_delay_max": 1.0}
# A mosquitto that keeps its sessions (and what waits in them) across a restart.
MOSQUITTO_PERSISTENCE = (
    "persistence true\npersistence_location {data}/\nautosave_interval 1800\n"
    "max_queued_messages 0\nmax_queued_bytes 0\n"
)


class Peer(RestartableBroker):
    """One broker process (`kind` "midge" or "mosquitto") that may be stopped,
    killed and started again, on the port of its first start, with its data."""

    def __init__(self, kind: str, name: str, folder: Path, config: str = "") -> None:
        """`config`: a Midge's TOML file or lines added to mosquitto.conf; in
        mosquitto's, "{data}" stands for the peer's data folder."""
        assert kind in ("midge", "mosquitto"), kind
        super().__init__(name)
        self.kind = kind
        self.folder = folder
        self.config = config

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"Peer({self.kind} {self.name} on {self.host}:{self.port}, {state})"

    @property
    def address(self) -> str:
        """host:port, as a bridge's `addresses` take it."""
        return f"{self.host}:{self.port}"

    def _launch(self) -> AbstractContextManager[RunningBroker]:
        if self.kind == "midge":
            args = ["--port", str(self.port)] if self.port else []  # after --port 0: it wins
            return start_midge_with_log(self.config or None, args, workdir=self.folder)
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.config.replace("{data}", str(data))
        return start_mosquitto_with_log(conf, port=self.port or None, workdir=self.folder)


class Peers:
    """Makes peers in `folder`; `close()` stops every one it made."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: list[Peer] = []

    def _peer(self, kind: str, name: str, config: str) -> Peer:
        assert name not in {peer.name for peer in self.made}, f"two peers named {name}"
        peer = Peer(kind, name, self.folder / name, config)
        self.made.append(peer)
        return peer.start()

    def midge(self, name: str, config: str = "") -> Peer:
        """A `midge serve` with the TOML `config` (default: none) and its own data dir."""
        return self._peer("midge", name, config)

    def mosquitto(self, name: str, conf: str = "", *, persistent: bool = False) -> Peer:
        """A mosquitto with `conf` added to its config; `persistent`: its sessions
        and queued messages survive a restart (MOSQUITTO_PERSISTENCE)."""
        if mosquitto_binary() is None:
            pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
        if persistent:
            conf = MOSQUITTO_PERSISTENCE + conf
        # Started as root, mosquitto would become user "mosquitto", who cannot
        # reach the test's folder (mode 0700): stay who we are.
        conf = f"user {pwd.getpwuid(os.geteuid()).pw_name}\n{conf}"
        return self._peer("mosquitto", name, conf)

    def close(self) -> None:
        errors: list[BaseException] = []
        for peer in reversed(self.made):
            try:
                peer.stop()
            except Exception as error:  # stop the others anyway
                errors.append(error)
        if errors:
            raise errors[0]

    def logs(self, tail: int = 150) -> str:
        """The last `tail` lines of every peer's current log, for failure reports."""
        return "\n".join(peer.log_tail(tail) for peer in self.made)


# ---------------------------------------------------------------- config


def toml_value(value: Any) -> str:
    """`value` as TOML: strings, booleans, numbers, lists and (inline) tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, for the text the tests use
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def rule(
    pattern: str,
    direction: str,
    qos: int = 1,
    local_prefix: str = "",
    remote_prefix: str = "",
) -> dict[str, Any]:
    """One topic rule of a bridge: Mosquitto's `topic PATTERN DIRECTION QOS LOCAL REMOTE`."""
    made: dict[str, Any] = {"pattern": pattern, "direction": direction, "qos": qos}
    if local_prefix:
        made["local_prefix"] = local_prefix
    if remote_prefix:
        made["remote_prefix"] = remote_prefix
    return made


def bridge_table(
    name: str, addresses: str | Sequence[str], topics: Sequence[Mapping[str, Any]], **keys: Any
) -> str:
    """One `[[bridges]]` table: FAST_RETRY, then `keys` (which may override it)."""
    if isinstance(addresses, str):
        addresses = [addresses]
    values: dict[str, Any] = {"name": name, "addresses": list(addresses), **FAST_RETRY, **keys}
    values["topics"] = list(topics)
    lines = [f"{key} = {toml_value(value)}" for key, value in values.items()]
    return "[[bridges]]\n" + "\n".join(lines) + "\n\n"


def state_topic(name: str) -> str:
    """Where a bridge's state is published, retained: "1" up, "0" down."""
    return f"$SYS/broker/connection/{name}/state"


class States:
    """The state messages of a broker's bridges, in the order a subscriber got them."""

    def __init__(self, peer: Peer) -> None:
        self.client = Paho(peer.host, peer.port)
        self.client.connect_ok()
        self.client.subscribe(state_topic("+"), 1)
        self.seen: dict[str, list[str]] = defaultdict(list)  # bridge name: "1", "0", ...

    def take(self) -> dict[str, list[str]]:
        for message in self.client.drain():
            name = message.topic.split("/")[3]
            self.seen[name].append(message.payload.decode())
        return self.seen

    def wait(self, name: str, payload: str, timeout: float = 2 * WAIT) -> None:
        """Until the last state of bridge `name` is `payload`."""
        assert wait_until(lambda: self.take()[name][-1:] == [payload], timeout), (
            f"bridge {name}: state {self.seen[name]} within {timeout:g}s, not ending in {payload}"
        )

    def close(self) -> None:
        self.client.close()


def connected_pattern(name: str, address: str = r"\S+") -> str:
    """The log line of bridge `name` connecting (to `address`, a regular expression)."""
    return rf"bridge {re.escape(name)}: connected to {address} \("


def wait_connected(peer: Peer, name: str, count: int = 1, timeout: float = 2 * WAIT) -> list[str]:
    """Until `peer` logged that bridge `name` connected (`count` times in this run)."""
    return peer.log.wait_for(connected_pattern(name), count, timeout)


def delays(lines: Sequence[str]) -> list[float]:
    """The delays in "next attempt in N s" log lines."""
    found = (re.search(r"next attempt in ([\d.]+) s", line) for line in lines)
    return [float(match[1]) for match in found if match]


def retry_lines(peer: Peer, name: str) -> list[str]:
    """The "next attempt in N s" lines of bridge `name` in `peer`'s log so far."""
    return peer.log.matching(rf"bridge {re.escape(name)}: next attempt in ")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- a relay in front of a broker


class Gate:
    """A TCP relay on a loopback port in front of `target` (host, port), which
    plays what may stand between a bridge and its remote.

    `close_first`: that many connections are closed as soon as they send their
    first bytes (their CONNECT), as a load balancer with no backend does;
    `refuse_bridge_flag`: a CONNECT with Mosquitto's bridge bit (protocol
    level 0x80 | 4) is answered CONNACK 1 (unacceptable protocol version), as
    a 3.1.1 broker that does not know the bit does. Everything else is relayed
    both ways. `seen` holds the protocol level of each CONNECT that came.
    """

    def __init__(
        self, target: tuple[str, int], *, close_first: int = 0, refuse_bridge_flag: bool = False
    ) -> None:
        self.target = target
        self.close_first = close_first
        self.refuse_bridge_flag = refuse_bridge_flag
        self.seen: list[int] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server((HOST, 0))
        self.port = int(self.listener.getsockname()[1])
        self.address = f"{HOST}:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _keep(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(self._keep(client),), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(WAIT)
        try:
            first = client.recv(65536)  # a CONNECT comes whole on loopback
            level = connect_level(first)
            self.seen.append(level)
            if self.close_first > 0:
                self.close_first -= 1
                client.close()
                return
            if self.refuse_bridge_flag and level >= 0 and level & 0x80:
                client.sendall(b"\x20\x02\x00\x01")  # CONNACK, return code 1
                client.close()
                return
            upstream = self._keep(socket.create_connection(self.target, timeout=WAIT))
            upstream.sendall(first)
        except OSError:
            client.close()
            return
        client.settimeout(None)
        upstream.settimeout(None)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting, and end every connection relayed."""
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


def connect_level(data: bytes) -> int:
    """The protocol level byte of the CONNECT packet `data` begins with; -1 if not one."""
    if not data or data[0] >> 4 != 1:
        return -1
    offset = 1
    while offset < len(data) and data[offset] & 0x80:  # the remaining length's bytes
        offset += 1
    offset += 1
    if len(data) < offset + 2:
        return -1
    name_length = int.from_bytes(data[offset : offset + 2], "big")
    at = offset + 2 + name_length
    return data[at] if at < len(data) else -1


def bridged_to_both(
    peers: Peers, qos: int, *, persistent: bool = False
) -> tuple[Peer, dict[str, Peer]]:
    """A local Midge bridged to a mosquitto ("to-mosquitto", 3.1.1; `persistent`:
    its sessions survive a restart) and to another Midge ("to-midge", 5.0), each
    by `stream/#` out at `qos` to `site1/stream/...`; returns the local broker
    and the remotes by bridge name, once both bridges are connected."""
    remotes = {
        "to-mosquitto": peers.mosquitto("mosquitto", persistent=persistent),
        "to-midge": peers.midge("remote-midge"),
    }
    protocols = {"to-mosquitto": "3.1.1", "to-midge": "5"}
    tables = [
        bridge_table(
            name,
            remote.address,
            [rule("stream/#", "out", qos, remote_prefix="site1/")],
            protocol=protocols[name],
        )
        for name, remote in remotes.items()
    ]
    local = peers.midge("local", "".join(tables))
    for name in remotes:
        wait_connected(local, name)
    return local, remotes
