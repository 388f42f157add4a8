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

What one batch forwards to one node is one entry of that node's inbound
stream: a bundle (field `b`, codec.py) of records, each a message, whether
it goes to the node's plain subscribers, the share names the node is to
serve, the one session it is for (a relay: claims.py), the sender's place in
the change log and its forward number; and `o`, the sender's run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from midge.broker.connection import State
from midge.cluster.routes import RemoteRoutes
from midge.message import Message
from midge.store.base import Forwarded

if TYPE_CHECKING:
    from midge.broker.connection import Connection
    from midge.broker.persistence import Persistence
    from midge.cluster.claims import ClaimService

# Forwards waiting for their batch to reach Redis beyond which the publishers
# adding to them are held back: about a second of a busy node's traffic.
MAX_BACKLOG: Final = 50_000


class Forwarder:
    __slots__ = (
        "_backlog",
        "_held",
        "_pending",
        "_turns",
        "_wake",
        "claims",
        "dropped",
        "forwarded",
        "node",
        "offline",
        "persistence",
        "position",
        "record",
        "routes",
        "sequence",
    )

    def __init__(
        self,
        node: str,
        routes: RemoteRoutes,
        persistence: Persistence,
        claims: ClaimService | None = None,
        wake: Callable[[Connection], None] | None = None,
    ) -> None:
        """`wake(connection)`: a connection held back may read again (Broker.wake)."""
        # Forwards go into `persistence`'s current batch.
        self.node = node
        self.routes = routes
        self.persistence = persistence
        self.record = persistence.record
        self.claims = claims
        # This node's place in the change log (node.py keeps it): each entry
        # says what its sender knew of the routes (cluster/claims.py).
        self.position = b"0-0"
        self.sequence = 0  # numbers each message this run forwards
        # Redis does not answer (node.py): QoS 0 is not forwarded (it would
        # only pile up, in memory and late); counted. QoS 1/2 wait: their
        # acknowledgements hold their publishers back.
        self.offline = False
        self.dropped = 0
        self._pending: deque[list[int]] = deque()  # [epoch, forwards] not yet committed
        self._backlog = 0
        # Past MAX_BACKLOG forwards waiting for Redis, the connections that add
        # to them are held back (as by a receiver that is behind: flow.py)
        # until half of it has gone: the cluster's pace is the publishers'.
        self._held: set[Connection] = set()
        self._wake = wake
        self._turns: dict[str, int] = {}  # share name -> round-robin counter
        self.forwarded = 0  # messages handed to other nodes (one per node)

    def forward(
        self, message: Message, local_shares: list[str] | None, origin: Connection | None = None
    ) -> tuple[bool, list[str] | None]:
        """Forward `message` (from `origin`) to the nodes that want it. Returns
        whether any node did, and the share names this node is to serve itself."""
        routes = self.routes
        topic = message.topic
        claims = self.claims
        nodes = routes.nodes_for(topic)
        numbered = False
        if claims is not None and claims.pending:
            # Numbered now: what a claim keeps for its session carries the number.
            self.sequence += 1
            numbered = True
            for op in claims.forward_pending(message, nodes, self.sequence):
                self.record(op, message.qos > 0)
        remote_shares = routes.shares_for(topic)
        if not remote_shares:
            if not nodes:
                return False, local_shares
            self._send(message, nodes, None, origin, numbered)
            return True, local_shares
        here, elsewhere = self._pick_shares(remote_shares, local_shares)
        self._send(message, nodes, elsewhere, origin, numbered)
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
        self,
        message: Message,
        nodes: dict[str, int],
        shares: dict[str, list[str]] | None,
        origin: Connection | None,
        numbered: bool,
    ) -> None:
        count = len(nodes) + (len(shares) if shares else 0)
        if self.offline and not message.qos:
            self.dropped += count
            return
        if origin is not None and self.backlog() >= MAX_BACKLOG:
            self._hold_back(origin)
        self._count(count)
        if not numbered:
            self.sequence += 1  # one number per message, whichever nodes it goes to (claims.py)
        barrier = message.qos > 0
        for node in nodes:
            served = shares.pop(node, None) if shares else None
            self._record(node, message, True, tuple(served or ()), barrier)
        if shares:
            for node, names in shares.items():
                self._record(node, message, False, tuple(names), barrier)
        self.forwarded += count

    def _hold_back(self, publisher: Connection) -> None:
        if publisher in self._held or publisher.state is not State.CONNECTED:
            return
        if not self._held:
            self.persistence.when_committed(self.persistence.epoch + 1, self._maybe_release)
        self._held.add(publisher)
        publisher.holders += 1

    def _maybe_release(self) -> None:
        """A batch reached Redis: at half the bound, the publishers go on."""
        if self.backlog() > MAX_BACKLOG // 2:
            self.persistence.when_committed(self.persistence.epoch, self._maybe_release)
            return
        self.release()

    def release(self) -> None:
        held, self._held = self._held, set()
        for publisher in held:
            publisher.holders -= 1
            if not publisher.holders and publisher.state is not State.CLOSED and self._wake:
                self._wake(publisher)

    def backlog(self) -> int:
        """Forwards recorded whose batch has not reached Redis yet."""
        pending = self._pending
        committed = self.persistence.committed
        while pending and pending[0][0] <= committed:
            self._backlog -= pending.popleft()[1]
        return self._backlog

    def _count(self, count: int) -> None:
        epoch = self.persistence.epoch + 1  # the batch being recorded
        pending = self._pending
        if pending and pending[-1][0] == epoch:
            pending[-1][1] += count
        else:
            pending.append([epoch, count])
        self._backlog += count

    def _record(
        self, node: str, message: Message, plain: bool, shares: tuple[str, ...], barrier: bool
    ) -> None:
        position = self.position
        claims = self.claims
        if claims is not None and claims.pending:
            # To a node letting go of a session this one claims: "before the
            # cut", so that it relays it if it has let go already.
            position = claims.handing_over(node, message.topic) or position
        operation = Forwarded(node, message, plain, shares, position, "", self.sequence)
        self.record(operation, barrier)
