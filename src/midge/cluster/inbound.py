"""A node's inbound stream: messages other nodes forwarded to it, delivered here.

`Inbound.step` reads a batch through the stream's consumer group, delivers
each entry (cluster/forwarding.py says what its fields mean), and records,
in the same batch as the delivery's own store operations, the last entry
delivered (`InboundCursor`). Entries are acknowledged to the stream (XACK,
and deleted) only once that batch has committed: a crash before then reads
them again at the next start, and the cursor, committed with what their
delivery stored, tells which of them were delivered already, so none is
delivered twice and none is lost.

Before reading, a step waits while local receivers are behind (flow
control: the stream is the queue, in Redis, and its senders see its length)
and while this node claims client ids (cluster/claims.py).

The same reader drains a dead node's stream for the node that took its
place (cluster/reaper.py): then each entry goes only to the sessions taken
over from it (`adopted`), which are this node's now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from redis.exceptions import RedisError, ResponseError

from midge.broker.clustered import deliver_forwarded, deliver_to_client
from midge.broker.router import SubscriptionTrie
from midge.cluster.claims import START, Position, awaited, polled, position_of
from midge.cluster.codec import CorruptValue, Record, decode_bundle, decode_message
from midge.message import Message
from midge.store.base import InboundCursor

if TYPE_CHECKING:
    from midge.cluster.node import ClusterNode

log = logging.getLogger("midge.cluster")

GROUP = "midge"  # the consumer group of every inbound stream
READ_COUNT = 1000  # entries per read
BLOCK_MS = 1000  # how long a read waits for entries
BEHIND_POLL = 0.005  # seconds between looks at receivers that are behind

Entry = tuple[bytes, dict[bytes, bytes] | None]
NO_SKIP: frozenset[str] = frozenset()


class Inbound:
    def __init__(
        self,
        node: ClusterNode,
        owner: str,
        adopted: SubscriptionTrie | None = None,
        adopted_cut: Position = START,
    ) -> None:
        """`owner`: whose stream (this node's, or a dead one's with `adopted`,
        the sessions taken over from it, client id -> options, which get what
        was routed before `adopted_cut`)."""
        self.node = node
        self.owner = owner
        self.stream = node.keys.inbound(owner)
        self.adopted = adopted
        self.adopted_cut = adopted_cut
        self.cursor: Position | None = None  # read at the first step
        self.pending = True  # first the entries an earlier run read and did not acknowledge
        self._unacked: list[bytes] = []
        self.seen: dict[bytes, int] = {}  # sender's run -> its highest forward number here
        self.delivered = 0  # forwarded messages read (records of the bundles)

    async def step(self) -> int:
        """Read and deliver one batch; the number of entries read."""
        redis = self.node.client()
        if self.cursor is None:
            raw = await awaited(redis.get(self.node.keys.cursor(self.owner)))
            self.cursor = position_of(raw) if raw else START
        if self._unacked:
            await self._ack(self._unacked)
        await self._wait_for_receivers()
        start = "0" if self.pending else ">"
        # A read whose reply is lost (Redis gone in the middle) has moved the
        # group on all the same: its entries are pending for this consumer,
        # so after any failure the next read starts with what is pending.
        try:
            replies = await redis.xreadgroup(
                GROUP, self.owner, {self.stream: start}, count=READ_COUNT, block=BLOCK_MS
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                self.pending = True
                raise
            # Redis lost its data (restarted without persistence): start again.
            log.warning("cluster: %s is gone from Redis: making it again", self.stream)
            await redis.xgroup_create(self.stream, GROUP, "0", mkstream=True)
            return 0
        except (RedisError, OSError):
            self.pending = True
            raise
        entries: list[Entry] = replies[0][1] if replies else []
        if self.pending and not entries:
            self.pending = False
        if entries:
            await self._settle_claims()
            self._deliver(entries)
        return len(entries)

    async def _wait_for_receivers(self) -> None:
        """Local receivers that are behind hold the stream back, as they hold
        back local publishers (broker/flow.py); a stalled one is let go."""
        core = self.node.core
        assert core is not None
        flow = core.flow
        while flow.behind:
            await asyncio.sleep(BEHIND_POLL)

    async def _settle_claims(self) -> None:
        """While this node claims sessions, what other nodes sent waits: a
        message routed past a claim's cut is for the claimed session too,
        which is not here until the claim ends (bounded by node_timeout)."""
        for claim in list(self.node.claims.pending.values()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(claim.done.wait(), self.node.config.node_timeout)

    def _deliver(self, entries: list[Entry]) -> None:
        core = self.node.core
        assert core is not None
        persistence = core.persistence
        before = persistence.epoch
        now = asyncio.get_running_loop().time()
        cursor = self.cursor or START
        ids = []
        for entry_id, fields in entries:
            ids.append(entry_id)
            if not fields or position_of(entry_id) <= cursor:
                continue  # deleted meanwhile, or delivered before a restart
            try:
                records = decode_bundle(fields[b"b"])
            except (CorruptValue, KeyError) as exc:
                log.error("cluster: corrupt entry %s of %s: %s", entry_id, self.stream, exc)
                continue
            origin = fields.get(b"o", b"")
            self.delivered += len(records)
            for record in records:
                if self._repeated(origin, record.sequence):
                    continue  # written twice (its batch was retried)
                try:
                    self._deliver_record(record, origin, now)
                except (CorruptValue, ValueError) as exc:
                    log.error("cluster: corrupt record in %s of %s: %s", entry_id, self.stream, exc)
                except Exception:  # a bug in delivery: that message, not the node
                    log.exception("cluster: delivering %s of %s failed", entry_id, self.stream)
        last = ids[-1]
        if position_of(last) > cursor:
            self.cursor = position_of(last)
            persistence.record(InboundCursor(self.owner, last), barrier=False)
        core.flush()
        if persistence.epoch > before:
            persistence.when_committed(persistence.epoch, lambda: self._acknowledge(ids))
        else:
            self._acknowledge(ids)

    def _repeated(self, origin: bytes, sequence: int) -> bool:
        """A record its sender wrote again (its batch failed half-way and was
        retried): its number is not above the last one seen from that run."""
        if not sequence:
            return False
        if sequence <= self.seen.get(origin, 0):
            return True
        self.seen[origin] = sequence
        return False

    def _deliver_record(self, record: Record, origin: bytes, now: float) -> None:
        core = self.node.core
        assert core is not None
        message = decode_message(record.message)
        claims = self.node.claims
        if not (record.target or claims.relays or claims.cutovers or self.adopted is not None):
            # The common case: no session is moving, none was taken over.
            deliver_forwarded(core, message, record.plain, record.shares, NO_SKIP, now)
            return
        if record.target:  # for one session
            self._deliver_or_relay(record.target, message, origin, record.sequence, now)
            return
        position = position_of(record.position)
        if self.adopted is not None:
            if position < self.adopted_cut:
                self._deliver_adopted(message, origin, record.sequence, now)
            return
        if claims.relays:
            for relay in claims.relays_for(message, position, origin, record.sequence):
                core.persistence.record(relay, message.qos > 0)
        skip = claims.skip_for(position, origin, record.sequence)
        deliver_forwarded(core, message, record.plain, record.shares, skip, now)

    def _deliver_adopted(self, message: Message, origin: bytes, sequence: int, now: float) -> None:
        """A dead node's entry: to the sessions taken over from it that want it."""
        assert self.adopted is not None
        for client_id in self.adopted.match(message.topic):
            self._deliver_or_relay(client_id, message, origin, sequence, now)

    def _deliver_or_relay(
        self, client_id: str, message: Message, origin: bytes, sequence: int, now: float
    ) -> None:
        """To the session if it is here; else it left this node: passed on to
        its new owner (claims.relay_target), stored with this batch."""
        core = self.node.core
        assert core is not None
        if client_id in core.sessions:
            deliver_to_client(core, client_id, message, now)
            return
        relay = self.node.claims.relay_target(client_id, message, origin, sequence)
        if relay is not None:
            core.persistence.record(relay, message.qos > 0)

    async def read_to_end(self, timeout: float) -> None:
        """Wait (at most `timeout`) until what the stream holds now is delivered."""
        last = await self.node.client().xrevrange(self.stream, count=1)
        if not last:
            return
        end = position_of(last[0][0])
        await polled(lambda: (self.cursor or START) >= end, timeout)

    def _acknowledge(self, ids: list[bytes]) -> None:
        task = asyncio.get_running_loop().create_task(self._ack(ids))
        self.node.track(task)

    async def _ack(self, ids: list[bytes]) -> None:
        """Delivered and stored: the stream may forget them. A failure keeps
        them for the next step."""
        redis = self.node.redis
        if redis is None:
            return
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.xack(self.stream, GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            if ids is not self._unacked:
                self._unacked.extend(ids)
            log.warning("cluster: cannot acknowledge entries of %s yet: %s", self.stream, exc)
            return
        if ids is self._unacked:
            self._unacked = []
