"""The broker a check run talks to, and the clients one scenario makes.

`Target` names the broker and a per-scenario prefix that makes client ids and
topics unique, so checks can run against a shared broker; it remembers the
clients it made and, in `cleanup`, removes the retained messages and
persistent sessions they left behind. Its `username` and `password` (for a
broker that requires them) go into every CONNECT its clients send through
`RawClient.connect` / `connect_packet`; hand-built CONNECT bytes carry none.
Its `version` is the protocol its clients speak: 5.0 scenarios run on a 5.0
target, so `target.client(...)` connects at level 5.

A target may name several `nodes` of one cluster (the first is `host:port`):
each new connection its scenario makes (`raw`, `client`, `untracked`, so the
cleanup's too) goes to the next node in turn, starting again at the first for
every scenario, and its client's name says where it went ("sub@node2").
`scoped(..., one_node=True)` keeps a scenario that needs one broker on the
first node.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from midge.conformance.harness import DEFAULT_TIMEOUT, RawClient, check
from midge.protocol.packets import PROTOCOL_MQTT_3_1_1, Will
from midge.protocol.properties import Properties

Address = tuple[str, int]

MAX_STRICT_CLIENT_ID = 23
MAX_PREFIX = 12
"""A run prefix (8) plus a scenario id (4): client ids keep room for an 11-character name."""


def new_prefix() -> str:
    """A short alphanumeric prefix unique to one run (client ids stay within 23 chars)."""
    return "mc" + secrets.token_hex(3)


@dataclass
class Target:
    """The broker under test and the prefix that keeps this run's names apart."""

    host: str
    port: int
    prefix: str = field(default_factory=new_prefix)
    timeout: float = DEFAULT_TIMEOUT
    username: str | None = None
    password: bytes | None = field(default=None, repr=False)
    version: int = PROTOCOL_MQTT_3_1_1
    nodes: tuple[Address, ...] = ()
    """Every node of a cluster, `(host, port)` first; empty (or one): that broker alone."""
    clients: list[RawClient] = field(default_factory=list, repr=False, compare=False)
    turns: int = field(default=0, repr=False, compare=False)
    """How many connections this target has made: the next goes to node `turns % len`."""

    def __post_init__(self) -> None:
        if not (self.prefix.isascii() and self.prefix.isalnum()) or len(self.prefix) > MAX_PREFIX:
            raise ValueError(
                f"prefix {self.prefix!r} must be 1-{MAX_PREFIX} ASCII letters and digits"
            )
        if self.nodes and self.nodes[0] != (self.host, self.port):
            raise ValueError(f"the first of the nodes {self.nodes} must be {self.host}:{self.port}")

    @classmethod
    def spread(
        cls,
        nodes: list[Address],
        timeout: float = DEFAULT_TIMEOUT,
        username: str | None = None,
        password: bytes | None = None,
    ) -> Target:
        """A target whose clients go to each of `nodes` (one cluster's) in turn."""
        (host, port), many = nodes[0], len(nodes) > 1
        return cls(
            host,
            port,
            timeout=timeout,
            username=username,
            password=password,
            nodes=tuple(nodes) if many else (),
        )

    @property
    def addresses(self) -> tuple[Address, ...]:
        """The nodes clients connect to, in turn (one address for a lone broker)."""
        return self.nodes or ((self.host, self.port),)

    def scoped(self, suffix: str, version: int | None = None, one_node: bool = False) -> Target:
        """A fresh target for one scenario: same broker, prefix extended by `suffix`.

        `version`: the protocol its clients speak (default: this target's);
        `one_node`: every client on the first node, even when there are more.
        """
        return Target(
            self.host,
            self.port,
            f"{self.prefix}{suffix}",
            self.timeout,
            self.username,
            self.password,
            self.version if version is None else version,
            () if one_node else self.nodes,
        )

    def on(self, address: Address) -> Target:
        """This target (same prefix, credentials, protocol) on one of its nodes alone."""
        host, port = address
        return Target(
            host, port, self.prefix, self.timeout, self.username, self.password, self.version
        )

    def _next_address(self, name: str) -> tuple[Address, str]:
        """The node the next connection goes to, and its client's name there."""
        addresses = self.addresses
        index = self.turns % len(addresses)
        self.turns += 1
        return addresses[index], f"{name}@node{index + 1}" if self.nodes else name

    def topic(self, name: str = "t") -> str:
        """A topic (or filter, when `name` has wildcards) under this target's prefix."""
        return f"midge-check/{self.prefix}/{name}"

    def client_id(self, name: str) -> str:
        """A client id of at most 23 alphanumeric characters, the range [MQTT-3.1.3-5] allows."""
        client_id = f"{self.prefix}{name}"
        if (
            len(client_id) > MAX_STRICT_CLIENT_ID
            or not client_id.isascii()
            or not client_id.isalnum()
        ):
            raise ValueError(f"client id {client_id!r} is not 1-23 alphanumeric characters")
        return client_id

    def raw(self, name: str = "raw", version: int | None = None) -> RawClient:
        """A new TCP connection that has sent nothing yet (speaking `version`, default ours)."""
        client = self.untracked(name, version)
        self.clients.append(client)
        return client

    def untracked(self, name: str, version: int | None = None) -> RawClient:
        """A new TCP connection with this target's credentials that `cleanup` ignores."""
        (host, port), name = self._next_address(name)
        return RawClient(
            host,
            port,
            name,
            self.timeout,
            self.username,
            self.password,
            self.version if version is None else version,
        )

    def client(
        self,
        name: str,
        clean_session: bool = True,
        keep_alive: int = 60,
        will: Will | None = None,
        session_present: bool | None = None,
        properties: Properties | None = None,
        version: int | None = None,
    ) -> RawClient:
        """A connected client (CONNACK 0 required), id `client_id(name)`.

        For 5.0 `clean_session` is Clean Start and `properties` go into CONNECT;
        `version` makes, say, a 3.1.1 client in a 5.0 scenario.
        """
        client = self.raw(name, version)
        connack = client.connect(
            self.client_id(name),
            clean_session=clean_session,
            keep_alive=keep_alive,
            will=will,
            properties=properties,
        )
        check(
            connack.return_code == 0,
            f"{name}: CONNACK return code {connack.return_code}, expected 0",
        )
        if session_present is not None:
            check(
                connack.session_present == session_present,
                f"{name}: CONNACK session present {int(connack.session_present)}, "
                f"expected {int(session_present)}",
            )
        return client

    def cleanup(self) -> None:
        """Close every client; delete its persistent session and retained messages.

        A clean connection ends a session in both versions: Clean Session 1
        (3.1.1), or Clean Start 1 with no Session Expiry Interval (5.0: 0).
        """
        for client in self.clients:
            client.disconnect()
        sessions = {
            (c.client_id, c.version) for c in self.clients if c.client_id and c.leaves_session
        }
        retained = set().union(*(c.retained_topics for c in self.clients))
        self.clients.clear()
        for client_id, version in sorted(sessions):
            with self.untracked("cleanup", version) as client:
                client.connect(client_id, clean_session=True)
                client.disconnect()
        if retained:
            with self.untracked("cleanup", PROTOCOL_MQTT_3_1_1) as client:
                client.connect(self.client_id("cleanup"), clean_session=True)
                for topic in sorted(retained):
                    client.publish(topic, b"", qos=1, retain=True)
                client.disconnect()
