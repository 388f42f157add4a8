"""Where a cluster keeps what in Redis: every key name, in one place.

Keys that are read or written together share a hash tag (the part in braces),
so that on a Redis Cluster they live on one shard and a MULTI may span them:

- one client's session: `{c:ID}` (its hash, subscriptions, messages, QoS 2 ids);
- the shared tables every node replicates in memory: `{m}` (the route sets,
  retained messages, and the change log that tells nodes of changes to them);
- one node's inbound stream and its session index: `{n:NAME}`.

`prefix` (the `[cluster] prefix` key, "midge" by default) lets clusters share
one Redis database.
"""

from __future__ import annotations


class Keys:
    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "midge") -> None:
        self.prefix = prefix

    # ---------------------------------------------- one client's session
    def session(self, client_id: str) -> str:
        """Hash: `owner` (node name), `disconnected_at`, `expiry_interval`."""
        return f"{self.prefix}:{{c:{client_id}}}:session"

    def subscriptions(self, client_id: str) -> str:
        """Hash: topic filter -> the subscription's int (QoS or packed 5.0 options)."""
        return f"{self.prefix}:{{c:{client_id}}}:subs"

    def outbound(self, client_id: str) -> str:
        """Hash: seq (decimal) -> codec.encode_message bytes."""
        return f"{self.prefix}:{{c:{client_id}}}:out"

    def outbound_sent(self, client_id: str) -> str:
        """Hash: seq (decimal) -> "packet_id:awaiting" for messages in flight."""
        return f"{self.prefix}:{{c:{client_id}}}:sent"

    def releases(self, client_id: str) -> str:
        """Hash: inbound QoS 2 packet id (decimal) -> message bytes, or b"" for none."""
        return f"{self.prefix}:{{c:{client_id}}}:rel"

    def owner(self, client_id: str) -> str:
        """String: the node that has the client (connected, or its session).
        Not among `client_keys`: it outlives the session, and says who to ask."""
        return f"{self.prefix}:{{c:{client_id}}}:owner"

    def client_keys(self, client_id: str) -> tuple[str, ...]:
        return (
            self.session(client_id),
            self.subscriptions(client_id),
            self.outbound(client_id),
            self.outbound_sent(client_id),
            self.releases(client_id),
        )

    # ---------------------------------------------------- one node's
    def node_sessions(self, node: str) -> str:
        """Set: client ids of the persistent sessions this node owns."""
        return f"{self.prefix}:{{n:{node}}}:sessions"

    def inbound(self, node: str) -> str:
        """Stream: messages forwarded to this node (fields: see cluster/forwarding.py)."""
        return f"{self.prefix}:{{n:{node}}}:inbound"

    def control(self, node: str) -> str:
        """Stream: requests to this node from the others (cluster/claims.py)."""
        return f"{self.prefix}:{{n:{node}}}:control"

    def wills(self, node: str) -> str:
        """Hash: client id -> its will (cluster/codec.py `encode_will`), per
        connected client of this node with one."""
        return f"{self.prefix}:{{n:{node}}}:wills"

    def cursor(self, node: str) -> str:
        """String: the last inbound entry this node delivered and stored."""
        return f"{self.prefix}:{{n:{node}}}:cursor"

    def reaper(self, node: str) -> str:
        """String with a TTL: the node taking a dead node's place, while it does."""
        return f"{self.prefix}:{{n:{node}}}:reaper"

    def reaped(self, node: str) -> str:
        """String with a TTL: which node took this one's place (it may still
        run, cut off from Redis: it must start afresh when it is back)."""
        return f"{self.prefix}:{{n:{node}}}:reaped"

    def alive(self, node: str) -> str:
        """String with a TTL: the node's instance id while it heartbeats."""
        return f"{self.prefix}:{{n:{node}}}:alive"

    # ------------------------------------------------ shared tables
    @property
    def nodes(self) -> str:
        """Hash: node name -> JSON of its description (host, pid, started)."""
        return f"{self.prefix}:{{m}}:nodes"

    def routes(self, node: str) -> str:
        """Set: the topic filters this node has subscribers for."""
        return f"{self.prefix}:{{m}}:routes:{node}"

    @property
    def positions(self) -> str:
        """Hash: node name -> the last change log entry it has read (visibility.py)."""
        return f"{self.prefix}:{{m}}:positions"

    @property
    def retained(self) -> str:
        """Hash: topic -> codec.encode_message bytes."""
        return f"{self.prefix}:{{m}}:retained"

    @property
    def changes(self) -> str:
        """Stream: every change to routes and retained messages, in order
        (fields: `k` kind, `n` node, `f` filter or topic, `m` message bytes)."""
        return f"{self.prefix}:{{m}}:changes"


# Kinds of entries in the change log (the `k` field).
ROUTE_SET = b"+"
ROUTE_DELETED = b"-"
ROUTES_RESET = b"R"  # a (re)started node replaced its whole route set: read it again
RETAINED_SET = b"r"
RETAINED_DELETED = b"d"
RELOAD = b"H"  # a node was told to read its password and ACL files again: so are all
