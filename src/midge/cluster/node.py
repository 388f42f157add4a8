"""One node of a cluster: its life in Redis, beside the broker core.

`ClusterNode` is what `midge.Broker` runs when `[cluster]` is configured:

- `open()`: reach Redis (a clear error naming the URL if it cannot), claim
  the node's name (refused while a live node heartbeats under it), note
  where the change log ends, and open the cluster's store (cluster/store.py),
  which the broker then loads and commits to as to any store;
- `attach(core)` before the core restores its sessions: count this node's
  routes; then `start()` once restored: announce them as a whole, read every
  other node's, plug the forwarder into delivery, and run three tasks:
  - the heartbeat (a key with a TTL, cluster/keys.py `alive`);
  - the change log reader: other nodes' route and retained changes, applied
    to this node's replicas (RemoteRoutes, the core's retained trie);
  - the inbound reader: messages other nodes forwarded here, read through a
    consumer group, delivered, and acknowledged (XACK) only once what their
    delivery stored has committed, so a crash between the two delivers them
    again rather than losing them;
- `stop_reading()` before the broker closes its connections, `close()` after
  its store writer has committed the last batch.

Redis going away is logged once per outage; each task retries with a backoff
and goes on where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from midge.broker.clustered import release_client
from midge.cluster.claims import START, ClaimService, Position, awaited, polled, position_of
from midge.cluster.codec import CorruptValue, decode_message, decode_will
from midge.cluster.config import ClusterConfig, redacted
from midge.cluster.forwarding import Forwarder
from midge.cluster.heartbeat import Heartbeat
from midge.cluster.inbound import BLOCK_MS, GROUP, READ_COUNT, Inbound
from midge.cluster.keys import (
    RELOAD,
    RETAINED_DELETED,
    RETAINED_SET,
    ROUTE_DELETED,
    ROUTE_SET,
    ROUTES_RESET,
    Keys,
)
from midge.cluster.reaper import Reaper
from midge.cluster.routes import LocalRoutes, RemoteRoutes
from midge.cluster.store import RedisStore
from midge.store.base import StoreError

if TYPE_CHECKING:
    from midge.broker.broker import Broker as Core

log = logging.getLogger("midge.cluster")

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 2.0
CANCEL_SECONDS = 1.0  # how long stopping waits for a task, then for acknowledgements

Entry = tuple[bytes, dict[bytes, bytes]]
T = TypeVar("T")


class ClusterError(StoreError):
    """The node cannot join its cluster; the message says why and what to do."""


class ClusterNode:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.name = config.node_name
        self.keys = Keys(config.prefix)
        self.url = redacted(config.url)
        self.instance = uuid.uuid4().hex  # tells this run from an earlier one of the name
        self.redis: aioredis.Redis | None = None
        self.store: RedisStore | None = None
        self.local = LocalRoutes(self.name)
        self.remote = RemoteRoutes()
        self.core: Core | None = None
        self.forwarder: Forwarder | None = None
        self._changes_from = b"0-0"
        self._control_from = b"0-0"
        self.floor: Position = START  # claims: routes this node knows it made itself
        self.claims = ClaimService(self)
        self.inbound = Inbound(self, self.name)
        self.reaper = Reaper(self)
        self._readers: list[asyncio.Task[None]] = []
        self._heartbeat: Heartbeat | None = None
        self._failing: set[str] = set()  # tasks that have logged an outage
        self.recovered_at = 0.0  # monotonic: when Redis last answered again
        # What SIGHUP does here (midge.Broker sets it): every node does it when
        # one is told to (the password, ACL and API key files are each node's).
        self.on_reload: Callable[[], object] | None = None
        self._outage_since = 0.0
        self._acks: set[asyncio.Task[None]] = set()
        self.received = 0  # messages other nodes forwarded here

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> RedisStore:
        """Reach Redis, claim the name, open the store (returned)."""
        self.redis = aioredis.Redis.from_url(
            self.config.url, socket_connect_timeout=5, socket_timeout=BLOCK_MS / 1000 + 10
        )
        try:
            await awaited(self.redis.ping())
            await self._claim_name()
            last = await self.redis.xrevrange(self.keys.changes, count=1)
            self._changes_from = last[0][0] if last else b"0-0"
            # From now on, changes wait until this node has read them too.
            await awaited(
                self.redis.hset(self.keys.positions, mapping={self.name: self._changes_from})
            )
            control = await self.redis.xrevrange(self.keys.control(self.name), count=1)
            self._control_from = control[0][0] if control else b"0-0"
            await self.redis.xgroup_create(self.keys.inbound(self.name), GROUP, "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                await self._give_up(exc)
        except (RedisError, OSError) as exc:
            await self._give_up(exc)
        self.store = await asyncio.to_thread(
            RedisStore.open, self.config.url, self.name, self.config.prefix
        )
        self.store.readers_timeout = self.config.node_timeout
        self.store.origin = self.instance
        return self.store

    async def _give_up(self, exc: BaseException) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        raise ClusterError(f"cannot reach Redis at {self.url}: {exc}") from None

    async def _claim_name(self) -> None:
        """This node's name is its identity: refused while a live node uses it."""
        assert self.redis is not None
        alive = self.keys.alive(self.name)
        ttl = int(self.config.node_timeout * 1000)
        if not await awaited(self.redis.set(alive, self.heartbeat_value, nx=True, px=ttl)):
            holder = await awaited(self.redis.get(alive))
            if holder is None or not _earlier_run_here(holder):
                raise ClusterError(
                    f"cluster node name {self.name!r} is in use by a live node on {self.url} "
                    "(its heartbeat is current): give this node another name (--node-name, "
                    f"[cluster] name), or wait {self.config.node_timeout:g} s if it has died"
                )
            log.info("cluster: node %s: the previous run on this host is gone", self.name)
            await awaited(self.redis.set(alive, self.heartbeat_value, px=ttl))
        await self._wait_for_reaper()
        # Found dead before, its place taken: this run starts afresh anyway.
        await awaited(self.redis.delete(self.keys.reaped(self.name)))
        await self._register()

    async def _register(self) -> None:
        """List this node among the cluster's (what other nodes read routes of)."""
        description = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        await awaited(self.client().hset(self.keys.nodes, self.name, json.dumps(description)))

    async def _wait_for_reaper(self) -> None:
        """A node taking this one's place (it was found dead) finishes first."""
        assert self.redis is not None
        lock = self.keys.reaper(self.name)
        logged = False
        while await awaited(self.redis.exists(lock)):
            if not logged:
                logged = True
                log.warning("cluster: node %s: another node takes its place; waiting", self.name)
            await asyncio.sleep(0.2)

    @property
    def heartbeat_value(self) -> str:
        """What the heartbeat key holds: this run, and where it runs (so that a
        restart after a crash on the same host need not wait for the TTL)."""
        return f"{self.instance} {socket.gethostname()} {os.getpid()}"

    async def publish_wills(self, owner: str) -> int:
        """Publish the wills `owner` kept for its clients (a dead node's, or an
        earlier run of this one's) and forget them once published."""
        core = self.core
        assert core is not None
        redis = self.client()
        key = self.keys.wills(owner)
        stored = await awaited(redis.hgetall(key))
        if not stored:
            return 0
        now = asyncio.get_running_loop().time()
        wall = core.wall_clock()
        core.now = now
        for client_id, data in stored.items():
            try:
                message, interval = decode_will(data)
            except CorruptValue as exc:
                log.error("cluster: the will of %r in %s is corrupt: %s", client_id, key, exc)
                continue
            core.delivery.publish(message.with_expiry(interval, wall), None, now)
        await self.committed()
        await awaited(redis.hdel(key, *stored))
        log.info("cluster: published %d wills of node %s's clients", len(stored), owner)
        return len(stored)

    def attach(self, core: Core) -> None:
        """Before `core.restore`: this node's routes are counted from then on."""
        self.core = core
        core.routes = self.local

    async def start(self) -> None:
        """After `core.restore`: announce routes, read the others', start the tasks."""
        core, store, redis = self.core, self.store, self.redis
        assert core is not None and store is not None and redis is not None
        await asyncio.to_thread(store.replace_routes, self.local.filters())
        self.local.record = core.persistence.record
        nodes = [node.decode() for node in await awaited(redis.hkeys(self.keys.nodes))]
        for node in nodes:
            if node != self.name:
                await self._reload_routes(node)
        self.forwarder = Forwarder(self.name, self.remote, core.persistence, self.claims, core.wake)
        self.forwarder.position = self._changes_from
        core.delivery.remote = self.forwarder
        core.claims = self.claims
        # Other nodes generate ids too, and this node did in earlier runs.
        core.client_id_prefix = f"midge-{self.name}-{self.instance[:8]}-"
        others = len(nodes) - (self.name in nodes)
        log.info(
            "cluster: node %s joined %s (%d other nodes known, %d remote routes)",
            self.name,
            self.url,
            others,
            self.remote.count,
        )
        await self.publish_wills(self.name)  # an earlier run's, after a crash
        self._heartbeat = Heartbeat(
            self.config.url,
            self.keys.alive(self.name),
            self.heartbeat_value,
            self.config.heartbeat_interval,
            self.config.node_timeout,
        )
        self._heartbeat.start()
        self._readers = [
            asyncio.create_task(self._forever("watch", self.reaper.watch)),
            asyncio.create_task(self._forever("change log", self._read_changes)),
            asyncio.create_task(self._forever("inbound stream", self._read_inbound)),
            asyncio.create_task(self._forever("control stream", self._read_control)),
        ]

    async def stop_reading(self) -> None:
        """Before the connections close: deliver nothing more."""
        await _cancel(self._readers)
        self._readers = []

    async def close(self) -> None:
        """After the last commit: wait for acknowledgements, leave, close."""
        await self.stop_reading()
        if self._acks:
            await asyncio.wait(self._acks, timeout=CANCEL_SECONDS)
        if self._heartbeat is not None:
            await asyncio.to_thread(self._heartbeat.stop)
            self._heartbeat = None
        await self.claims.close()
        if self.core is not None:
            self.core.delivery.remote = None
            self.core.claims = None
        redis, self.redis = self.redis, None
        if redis is not None:
            # A clean stop frees the name at once (a crash: after node_timeout).
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(self._free_name(redis), CANCEL_SECONDS)
            await redis.aclose()

    # ---------------------------------------------------------------- tasks

    async def _forever(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` again and again; a Redis failure is logged once per outage
        and retried with a growing pause."""
        backoff = BACKOFF_FIRST
        while True:
            try:
                await step()
            except (RedisError, OSError) as exc:
                self._failed(what, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if what in self._failing:
                self._failing.discard(what)
                log.debug("cluster: %s: Redis answers again", what)
                if not self._failing:
                    log.info(
                        "cluster: Redis at %s answers again after %.1f s",
                        self.url,
                        time.monotonic() - self._outage_since,
                    )
                    await self._rejoin()
            backoff = BACKOFF_FIRST

    def _failed(self, what: str, exc: BaseException) -> None:
        """A task lost Redis: the first of an outage says so, once."""
        # Other nodes' heartbeats may have lapsed meanwhile: the reaper waits
        # for two node timeouts from the last failure seen (reaper.py).
        self.recovered_at = time.monotonic()
        if not self._failing:
            self._outage_since = time.monotonic()
            log.warning(
                "cluster: lost Redis at %s (%s): serving this node's clients, "
                "QoS 0 to other nodes dropped, QoS 1/2 acknowledgements held; retrying",
                self.url,
                exc,
            )
            if self.forwarder is not None:
                self.forwarder.offline = True
        if what not in self._failing:
            self._failing.add(what)
            log.debug("cluster: %s: lost Redis (%s)", what, exc)

    @property
    def redis_failing(self) -> bool:
        return bool(self._failing)

    async def _rejoin(self) -> None:
        """Redis answers again after an outage: say again who this node is and
        what it wants, read the others' routes again; and if the cluster took
        this node's place meanwhile (its heartbeat had stopped), start afresh."""
        redis = self.client()
        core = self.core
        store = self.store
        assert core is not None and store is not None
        self.recovered_at = time.monotonic()
        reaped_by = await awaited(redis.get(self.keys.reaped(self.name)))
        if reaped_by is not None:
            self._fence(reaped_by.decode(errors="replace"))
            await awaited(redis.delete(self.keys.reaped(self.name)))
        await self._register()
        await asyncio.to_thread(store.replace_routes, self.local.filters())
        for node in [name.decode() for name in await awaited(redis.hkeys(self.keys.nodes))]:
            if node != self.name:
                await self._reload_routes(node)
        if self.forwarder is not None:
            self.forwarder.offline = False
        log.info("cluster: node %s rejoined after the outage", self.name)

    async def _free_name(self, redis: aioredis.Redis) -> None:
        alive = self.keys.alive(self.name)
        if await awaited(redis.get(alive)) == self.heartbeat_value.encode():
            await awaited(redis.delete(alive))

    def _fence(self, reaper: str) -> None:
        """Another node took this one's place while it could not reach Redis:
        its sessions and clients are that node's now. Every connection here
        closes (no will: the other node published them) and every session
        leaves memory; clients reconnect, and claim their sessions anew."""
        core = self.core
        assert core is not None
        log.error(
            "cluster: node %s was taken for dead (by %s) while Redis was out of reach: "
            "closing its %d connections, its sessions are %s's now",
            self.name,
            reaper,
            len(core.connections),
            reaper,
        )
        now = asyncio.get_running_loop().time()
        for client_id in list(core.sessions):
            release_client(core, client_id, now, publish_will=False)

    async def _read_changes(self) -> None:
        assert self.redis is not None
        replies = await self.redis.xread(
            {self.keys.changes: self._changes_from}, count=READ_COUNT, block=BLOCK_MS
        )
        for _stream, entries in replies:
            for entry_id, fields in entries:
                await self._apply_change(fields)
                self._changes_from = entry_id
            self._note_position()
            await awaited(
                self.redis.hset(self.keys.positions, mapping={self.name: self._changes_from})
            )

    def _note_position(self) -> None:
        if self.forwarder is not None:
            position = max(position_of(self._changes_from), self.floor)
            self.forwarder.position = b"%d-%d" % position

    @property
    def position_bytes(self) -> bytes:
        return self.forwarder.position if self.forwarder is not None else b"0-0"

    async def reached(self, position: Position) -> None:
        """Wait (a bounded while) until the change log reader has passed `position`."""
        await polled(lambda: position_of(self._changes_from) >= position, self.config.node_timeout)

    async def committed(self) -> None:
        """Wait until everything recorded so far is durable."""
        core = self.core
        assert core is not None
        core.flush()
        persistence = core.persistence
        if persistence.epoch <= persistence.committed:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def release() -> None:
            if not done.done():
                done.set_result(None)

        persistence.when_committed(persistence.epoch, release)
        await done

    def client(self) -> aioredis.Redis:
        if self.redis is None:
            raise RedisError("the cluster node is closed")
        return self.redis

    async def _read_control(self) -> None:
        """Requests from other nodes: let go of a client, or it was let go."""
        assert self.redis is not None
        replies = await self.redis.xread(
            {self.keys.control(self.name): self._control_from}, count=READ_COUNT, block=BLOCK_MS
        )
        for _stream, entries in replies:
            for entry_id, fields in entries:
                self._control_from = entry_id
                self._on_control(fields)

    def _on_control(self, fields: dict[bytes, bytes]) -> None:
        kind = fields.get(b"k")
        request = fields.get(b"r", b"").decode()
        if kind == b"released":
            self.claims.released(request, _delivered(fields.get(b"d", b"{}")))
        elif kind == b"release":
            client_id = fields.get(b"c", b"").decode()
            new_owner = fields.get(b"n", b"").decode()
            claimer = (fields.get(b"o", b""), _number(fields.get(b"s", b"0")))
            release = self.claims.release(
                client_id, new_owner, fields.get(b"v", b""), request, claimer
            )
            self.track(asyncio.get_running_loop().create_task(release))

    async def _apply_change(self, fields: dict[bytes, bytes]) -> None:
        node = fields.get(b"n", b"").decode()
        if node == self.name:
            return  # applied here when it was made
        kind = fields.get(b"k")
        subject = fields.get(b"f", b"").decode()
        if kind == ROUTE_SET:
            self.remote.add(node, subject)
        elif kind == ROUTE_DELETED:
            self.remote.remove(node, subject)
        elif kind == ROUTES_RESET:
            await self._reload_routes(node)
        elif kind in (RETAINED_SET, RETAINED_DELETED):
            self._apply_retained(kind, subject, fields.get(b"m", b""))
        elif kind == RELOAD and self.on_reload is not None:
            log.info("cluster: node %s reloaded its files: so does this one", node)
            self.on_reload()

    def _apply_retained(self, kind: bytes | None, topic: str, data: bytes) -> None:
        assert self.core is not None
        if kind == RETAINED_DELETED:
            self.core.retained.delete(topic)
            return
        try:
            self.core.retained.set(decode_message(data))
        except CorruptValue as exc:
            log.error(
                "cluster: a retained message for %r in the change log is corrupt: %s", topic, exc
            )

    async def _reload_routes(self, node: str) -> None:
        assert self.redis is not None
        filters = await awaited(self.redis.smembers(self.keys.routes(node)))
        self.remote.replace(node, (item.decode() for item in filters))

    async def _read_inbound(self) -> None:
        await self.inbound.step()

    async def settle(self) -> None:
        """Wait for the acknowledgements and releases under way."""
        if self._acks:
            await asyncio.wait(list(self._acks), timeout=5)

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a background task (an acknowledgement, a release) until done:
        `close` waits for them."""
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def announce_reload(self) -> None:
        """This node reloaded its files (SIGHUP): every other node does too."""
        fields = {"k": RELOAD, "n": self.name}
        await self.client().xadd(self.keys.changes, fields, maxlen=100_000, approximate=True)  # type: ignore[arg-type]

    def figures(self) -> dict[str, int]:
        """The cluster's counters and gauges, for $SYS (under
        $SYS/broker/midge/cluster/) and /metrics (midge_cluster_*)."""
        forwarder = self.forwarder
        claims = self.claims
        return {
            "forwarded": forwarder.forwarded if forwarder is not None else 0,
            "dropped_offline": forwarder.dropped if forwarder is not None else 0,
            "received": self.inbound.delivered,
            "claims": claims.claimed,
            "claims_failed": claims.failed,
            "released": claims.released_count,
            "nodes_taken_over": self.reaper.reaped,
            "remote_routes": self.remote.count,
            "local_routes": len(self.local.counts),
            "redis_up": 0 if self._failing else 1,
        }


def _delivered(raw: bytes) -> dict[bytes, int]:
    """A `released` answer's map of sender runs to their last forward delivered."""
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k).encode(): v for k, v in data.items() if isinstance(v, int)}


def _earlier_run_here(holder: bytes) -> bool:
    """Whether a heartbeat value names a process of this host that is gone."""
    parts = holder.decode(errors="replace").split()
    if len(parts) != 3 or parts[1] != socket.gethostname() or not parts[2].isdigit():
        return False
    pid = int(parts[2])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and wait, a bounded while: a read stuck in redis-py's socket
    code may not end at once (closing the client ends it)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=CANCEL_SECONDS)


def _number(raw: bytes) -> int:
    """A count another node wrote; 0 if it is not one."""
    try:
        return int(raw)
    except ValueError:
        return 0
