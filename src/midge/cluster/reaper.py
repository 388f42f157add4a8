"""When a node dies, another takes its place.

Every node heartbeats (a key with a TTL of `node_timeout`). Each node also
watches the others (`Reaper.watch`): a node listed in the cluster whose
heartbeat key has expired is dead, and the first live node to take its
reaper lock (`Keys.reaper`) takes its place (`Reaper.reap`), within about
`node_timeout` + `heartbeat_interval` seconds of its last heartbeat:

1. its clients' wills are published (the dead node kept them in Redis);
2. its persistent sessions become the reaper's, unless their clients have
   already connected elsewhere (their owner key names another node): loaded
   from Redis, routed here, marked as the reaper's;
3. its routes are withdrawn, so other nodes stop forwarding to it;
4. its inbound stream is drained: what was forwarded to it and not yet
   delivered (or delivered and not yet committed) goes to the sessions taken
   over, until the stream has been quiet for `node_timeout` (nodes that had
   not yet read the withdrawal may still have sent some);
5. its keys are deleted.

A dead node that starts again under its name waits while its place is
being taken; what it finds afterwards is what the reaper left: nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from midge.broker.clustered import adopt_session
from midge.broker.router import SubscriptionTrie
from midge.broker.shared import SHARE_PREFIX
from midge.cluster.claims import Position, awaited, position_of
from midge.cluster.inbound import Inbound
from midge.cluster.keys import ROUTES_RESET
from midge.store.base import StoredSession

if TYPE_CHECKING:
    from midge.cluster.node import ClusterNode

log = logging.getLogger("midge.cluster")

TOMBSTONE_SECONDS = 86_400  # how long a node found dead learns so when it is back


class Reaper:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.reaped = 0  # nodes whose place this node took

    async def watch(self) -> None:
        """One look at the others' heartbeats; reap the dead, one at a time."""
        node = self.node
        await asyncio.sleep(node.config.heartbeat_interval)
        if (
            node.redis_failing
            or time.monotonic() - node.recovered_at < 2 * node.config.node_timeout
        ):
            return  # during and after an outage, the others need a moment to heartbeat again
        redis = node.client()
        keys = node.keys
        names = [name.decode() for name in await awaited(redis.hkeys(keys.nodes))]
        for dead in names:
            if dead == node.name or await awaited(redis.exists(keys.alive(dead))):
                continue
            lock = keys.reaper(dead)
            ttl = int(max(60.0, 10 * node.config.node_timeout) * 1000)
            if not await awaited(redis.set(lock, node.instance, nx=True, px=ttl)):
                continue  # another node is at it
            try:
                await self.reap(dead)
            finally:
                if await awaited(redis.get(lock)) == node.instance.encode():
                    await awaited(redis.delete(lock))

    async def reap(self, dead: str) -> None:
        node = self.node
        started = time.monotonic()
        log.warning(
            "cluster: node %s is gone (no heartbeat for %g s): taking its place",
            dead,
            node.config.node_timeout,
        )
        await awaited(node.client().set(node.keys.reaped(dead), node.name, ex=TOMBSTONE_SECONDS))
        wills = await node.publish_wills(dead)
        sessions, adopted, cut = await self._adopt_sessions(dead)
        await self._withdraw_routes(dead)
        delivered = await self._drain(dead, adopted, cut)
        keys = node.keys
        await awaited(
            node.client().delete(
                keys.inbound(dead),
                keys.control(dead),
                keys.cursor(dead),
                keys.node_sessions(dead),
                keys.wills(dead),
            )
        )
        self.reaped += 1
        log.warning(
            "cluster: took node %s's place in %.1f s: %d wills published, %d sessions "
            "taken over, %d forwarded messages delivered",
            dead,
            time.monotonic() - started,
            wills,
            sessions,
            delivered,
        )

    async def _adopt_sessions(self, dead: str) -> tuple[int, SubscriptionTrie, Position]:
        """Take over the dead node's sessions; returns how many, their plain
        filters, and the change log's end once they are routed here (a
        message routed from there on reached them here directly)."""
        node = self.node
        core = node.core
        assert core is not None
        redis = node.client()
        keys = node.keys
        members = await awaited(redis.smembers(keys.node_sessions(dead)))
        client_ids = sorted(member.decode() for member in members)
        stored = await self._load(dead, client_ids)
        # In one step: the sessions are routed here, and this node stops
        # forwarding to the dead one (which would deliver to them twice).
        adopted = SubscriptionTrie()
        for item in stored:
            if item.client_id in core.sessions:
                continue
            session = adopt_session(core, item)
            for topic_filter, options in session.subscriptions.items():
                if not topic_filter.startswith(SHARE_PREFIX):
                    adopted.add(topic_filter, item.client_id, options)
        node.remote.forget(dead)
        await node.committed()
        if client_ids:
            await awaited(redis.srem(keys.node_sessions(dead), *client_ids))
        last = await redis.xrevrange(keys.changes, count=1)
        cut = position_of(last[0][0] if last else b"")
        node.claims.cut_over([item.client_id for item in stored], cut)
        return len(stored), adopted, cut

    async def _load(self, dead: str, client_ids: list[str]) -> list[StoredSession]:
        """The dead node's sessions whose clients have not connected elsewhere,
        each made this node's in Redis first."""
        node = self.node
        store = node.store
        assert store is not None
        redis = node.client()
        keys = node.keys
        stored = []
        for client_id in client_ids:
            owner = await awaited(redis.get(keys.owner(client_id)))
            if owner is not None and owner.decode() != dead:
                continue  # its client connected elsewhere meanwhile: that node has it
            await awaited(redis.set(keys.owner(client_id), node.name))
            item = await asyncio.to_thread(store.load_session, client_id)
            if item is not None:
                stored.append(item)
        return stored

    async def _withdraw_routes(self, dead: str) -> None:
        node = self.node
        keys = node.keys
        pipe = node.client().pipeline(transaction=False)
        pipe.delete(keys.routes(dead))
        pipe.xadd(keys.changes, {"k": ROUTES_RESET, "n": dead}, maxlen=100_000, approximate=True)
        pipe.hdel(keys.nodes, dead)
        pipe.hdel(keys.positions, dead)
        await pipe.execute()
        node.remote.forget(dead)

    async def _drain(self, dead: str, adopted: SubscriptionTrie, cut: Position) -> int:
        """Deliver the dead node's stream until it has been quiet for node_timeout:
        to the sessions taken over, what was routed before `cut` (the rest
        reached them here directly)."""
        node = self.node
        inbound = Inbound(node, dead, adopted, cut)
        quiet_since: float | None = None
        while True:
            read = await inbound.step()
            now = time.monotonic()
            if read or inbound.pending:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= node.config.node_timeout:
                break
        await node.committed()
        await node.settle()
        return inbound.delivered
