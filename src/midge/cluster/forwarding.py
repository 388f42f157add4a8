"""From a PUBLISH on this node to the other nodes that want it.

`Delivery.publish` asks `Forwarder.forward` once per routed message (only
when a cluster is configured). The message goes once to each node with a
plain subscriber for its topic, whatever the number of subscribers there,
as one `Forwarded` operation in the broker's batch: the cluster's store
appends it to that node's inbound stream in Redis in the same pipeline as
the batch's other writes, so the publisher's PUBACK (held by Persistence
like any acknowledgement) leaves only once Redis has the message. QoS 0 is
no barrier: it holds nothing back.

Shared subscriptions are decided here, for the whole cluster: each share
name matching the topic gets one node, in turn among this node (when it has
a member) and the nodes with members; the chosen node picks the member.

An entry of a node's inbound stream has the fields
`m` (codec.encode_message), `p` (b"1": deliver to its plain subscribers),
`s` (the share names it is to serve, joined by NUL, which no MQTT string
may contain) and `o` (the node it came from).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from midge.cluster.routes import RemoteRoutes
from midge.message import Message
from midge.store.base import Forwarded, Operation

if TYPE_CHECKING:
    from midge.cluster.claims import ClaimService

SHARE_SEPARATOR = "\x00"


class Forwarder:
    __slots__ = (
        "_turns",
        "claims",
        "dropped",
        "forwarded",
        "node",
        "offline",
        "origin",
        "position",
        "record",
        "routes",
        "sequence",
    )

    def __init__(
        self,
        node: str,
        routes: RemoteRoutes,
        record: Callable[[Operation, bool], None],
        claims: ClaimService | None = None,
    ) -> None:
        """`record(operation, barrier)` adds to the broker's current batch."""
        self.node = node
        self.routes = routes
        self.record = record
        self.claims = claims
        # This node's place in the change log (node.py keeps it): each entry
        # says what its sender knew of the routes (cluster/claims.py).
        self.position = b"0-0"
        self.origin = ""  # this run of the node (node.py sets it)
        self.sequence = 0  # numbers each forward of this run
        # Redis does not answer (node.py): QoS 0 is not forwarded, as it would
        # only pile up, unacknowledged, until Redis is back; counted.
        self.offline = False
        self.dropped = 0
        self._turns: dict[str, int] = {}  # share name -> round-robin counter
        self.forwarded = 0  # messages handed to other nodes (one per node)

    def forward(
        self, message: Message, local_shares: list[str] | None
    ) -> tuple[bool, list[str] | None]:
        """Forward `message` to the nodes that want it. Returns whether any
        node did, and the share names this node is to serve itself."""
        routes = self.routes
        topic = message.topic
        claims = self.claims
        if claims is not None and claims.pending:
            for op in claims.forward_pending(message):
                self.record(op, message.qos > 0)
        nodes = routes.nodes_for(topic)
        remote_shares = routes.shares_for(topic)
        if not remote_shares:
            if not nodes:
                return False, local_shares
            self._send(message, nodes, None)
            return True, local_shares
        here, elsewhere = self._pick_shares(remote_shares, local_shares)
        self._send(message, nodes, elsewhere)
        return True, here

    def _pick_shares(
        self, remote_shares: dict[str, int], local_shares: list[str] | None
    ) -> tuple[list[str], dict[str, list[str]]]:
        here: list[str] = []
        elsewhere: dict[str, list[str]] = {}
        names = dict(remote_shares)
        if local_shares:
            names.update(dict.fromkeys(local_shares, 0))
        share_nodes = self.routes.share_nodes
        for name in names:
            candidates = list(share_nodes.get(name, ()))
            if local_shares and name in local_shares:
                candidates.append(self.node)
            turn = self._turns.get(name, 0)
            self._turns[name] = turn + 1
            chosen = candidates[turn % len(candidates)]
            if chosen == self.node:
                here.append(name)
            else:
                elsewhere.setdefault(chosen, []).append(name)
        return here, elsewhere

    def _send(
        self, message: Message, nodes: dict[str, int], shares: dict[str, list[str]] | None
    ) -> None:
        count = len(nodes) + (len(shares) if shares else 0)
        if self.offline and not message.qos:
            self.dropped += count
            return
        barrier = message.qos > 0
        for node in nodes:
            served = shares.pop(node, None) if shares else None
            self._record(node, message, True, tuple(served or ()), barrier)
        if shares:
            for node, names in shares.items():
                self._record(node, message, False, tuple(names), barrier)
        self.forwarded += count

    def _record(
        self, node: str, message: Message, plain: bool, shares: tuple[str, ...], barrier: bool
    ) -> None:
        self.sequence += 1
        operation = Forwarded(
            node, message, plain, shares, self.position, "", self.origin, self.sequence
        )
        self.record(operation, barrier)
