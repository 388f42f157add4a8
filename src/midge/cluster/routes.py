"""Which nodes want which topics: this node's routes, and a replica of the others'.

A *route* is a (node, topic filter) pair: the node has at least one
subscriber for the filter, plain or `$share/group/filter`. Routes change far
less often than messages flow, so every node keeps all the others' routes in
memory (`RemoteRoutes`) and matches a PUBLISH against them without asking
Redis; a publish that no other node wants costs the cluster nothing.

`LocalRoutes` counts this node's subscribers per filter and records a
`RouteSet` when a filter gets its first one, a `RouteDeleted` when it loses
its last: the operations ride in the broker's batch, so the SUBACK that
follows leaves only once every node can read the route. Sans-IO: the
change log reader (cluster/node.py) feeds `RemoteRoutes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from midge.broker.router import SubscriptionTrie
from midge.broker.shared import SHARE_PREFIX, parse_share
from midge.store.base import Operation, RouteDeleted, RouteSet


class LocalRoutes:
    __slots__ = ("counts", "node", "record")

    def __init__(self, node: str, record: Callable[[Operation], None] | None = None) -> None:
        """`record` takes the route operations (None until the node has
        announced its routes as a whole: see `filters`)."""
        self.node = node
        self.record = record
        self.counts: dict[str, int] = {}  # topic filter -> subscribers on this node

    def added(self, topic_filter: str) -> None:
        count = self.counts.get(topic_filter, 0)
        self.counts[topic_filter] = count + 1
        if not count and self.record is not None:
            self.record(RouteSet(self.node, topic_filter))

    def removed(self, topic_filter: str) -> None:
        count = self.counts.get(topic_filter, 0)
        if count > 1:
            self.counts[topic_filter] = count - 1
            return
        self.counts.pop(topic_filter, None)
        if count and self.record is not None:
            self.record(RouteDeleted(self.node, topic_filter))

    def filters(self) -> list[str]:
        return list(self.counts)


class RemoteRoutes:
    """Every other node's filters: plain ones in one trie keyed by node, shared
    ones in another keyed by share name, with the nodes of each share."""

    __slots__ = ("by_node", "plain", "share_nodes", "shares")

    def __init__(self) -> None:
        self.by_node: dict[str, set[str]] = {}
        self.plain = SubscriptionTrie()  # filter -> {node: 0}
        self.shares = SubscriptionTrie()  # inner filter -> {share name: 0}
        self.share_nodes: dict[str, list[str]] = {}  # share name -> nodes with members

    def add(self, node: str, topic_filter: str) -> None:
        filters = self.by_node.setdefault(node, set())
        if topic_filter in filters:
            return
        filters.add(topic_filter)
        if not topic_filter.startswith(SHARE_PREFIX):
            self.plain.add(topic_filter, node, 0)
            return
        parsed = _share(topic_filter)
        if parsed is None:
            return
        nodes = self.share_nodes.setdefault(topic_filter, [])
        if not nodes:
            self.shares.add(parsed, topic_filter, 0)
        nodes.append(node)

    def remove(self, node: str, topic_filter: str) -> None:
        filters = self.by_node.get(node)
        if filters is None or topic_filter not in filters:
            return
        filters.discard(topic_filter)
        if not topic_filter.startswith(SHARE_PREFIX):
            self.plain.remove(topic_filter, node)
            return
        nodes = self.share_nodes.get(topic_filter)
        if nodes is None:
            return
        nodes.remove(node)
        if not nodes:
            del self.share_nodes[topic_filter]
            parsed = _share(topic_filter)
            if parsed is not None:
                self.shares.remove(parsed, topic_filter)

    def replace(self, node: str, filters: Iterable[str]) -> None:
        """`node` announced its whole route set (it started again)."""
        self.forget(node)
        for topic_filter in filters:
            self.add(node, topic_filter)

    def forget(self, node: str) -> None:
        for topic_filter in list(self.by_node.get(node, ())):
            self.remove(node, topic_filter)
        self.by_node.pop(node, None)

    def nodes_for(self, topic: str) -> dict[str, int]:
        """Nodes with a plain subscriber for `topic` (do not change the result)."""
        return self.plain.match(topic)

    def shares_for(self, topic: str) -> dict[str, int]:
        """Share names with a member on another node that match `topic`."""
        return self.shares.match(topic) if self.share_nodes else {}

    @property
    def count(self) -> int:
        return sum(len(filters) for filters in self.by_node.values())


def _share(topic_filter: str) -> str | None:
    """The inner filter of a share name; None for one no node should have stored."""
    try:
        parsed = parse_share(topic_filter)
    except ValueError:
        return None
    return None if parsed is None else parsed[1]
