"""One client id, one connection, cluster-wide: claims, releases and relays.

Redis keeps, per client id, the node that has it (`Keys.owner`). A CONNECT
on node B for a client id B has no session for waits (state CLAIMING) while
B claims it (`ClaimService.claim`):

1. B sets itself as the owner and learns the previous one, A. If A is gone
   (no heartbeat) or there was none, B loads the session Redis kept and
   answers the CONNECT (broker/clustered.py `finish_claim`).
2. Otherwise B first routes the session's filters to itself (*pre-routes*,
   committed like any route) and notes the change log's end after them, the
   *cut*: a node that routed a message at or past the cut knew B wants it.
3. B asks A to let go, on A's control stream, with the cut. A closes the
   client's connection (its will goes out, as for any take-over), takes the
   session out of its memory (Redis keeps it, up to date once A's batch
   commits), waits until its own change log reader has passed the cut (from
   then on A's own publishes reach B directly), and answers `released`.
4. B loads the session and answers the CONNECT.

Messages in flight during the hand-over reach the session exactly once:

- a node that routed a message before the cut may have sent it to A only:
  for a while (`relay_seconds`) A relays such messages of the session's
  filters to B, marked for that session alone (`Forwarded.target`); B, for
  its part, does not deliver a message routed before the cut to that
  session (`cutovers`), since A relays it;
- B's own publishes while the claim is pending cannot reach the session on
  B yet: B keeps them (`PendingClaim.held`) and delivers them once the claim
  ends, before anything it publishes after; they also go to A marked for the
  session, so that A delivers them if it has not let go yet. A reads its
  inbound stream to its end before letting go (B's earlier forwards reach
  the session there, first), reports the last forward of B's it delivered,
  and drops what B kept (numbered past the claim's `floor`): B delivers
  only those A did not. So one publisher's order holds across the move;
- a relay that reaches B before the claim ends waits for it (node.py).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from redis.exceptions import RedisError

from midge.broker.clustered import (
    deliver_to_client,
    fail_claim,
    finish_claim,
    release_client,
    will_operation,
)
from midge.broker.shared import SHARE_PREFIX
from midge.message import Message
from midge.protocol.topics import topic_matches
from midge.store.base import Forwarded, StoredSession, StoreError

if TYPE_CHECKING:
    from midge.broker.connection import Connection
    from midge.cluster.node import ClusterNode
    from midge.protocol.packets import Will

log = logging.getLogger("midge.cluster")

T = TypeVar("T")
# The owner becomes ARGV[2] if it is still ARGV[1] ("": none): 1 if it did.
_TAKE = """
local owner = redis.call('get', KEYS[1])
if (owner == false and ARGV[1] == '') or owner == ARGV[1] then
    redis.call('set', KEYS[1], ARGV[2])
    return 1
end
return 0
"""
Position = tuple[int, int]  # a stream entry id, comparable
START: Position = (0, 0)
POLL_SECONDS = 0.002  # between two looks at a reader's place (polled)


def position_of(entry_id: bytes) -> Position:
    """b"1712345678901-3" -> (1712345678901, 3); b"" (none) -> (0, 0)."""
    if not entry_id:
        return START
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def wants(filters: list[str], topic: str) -> bool:
    return any(topic_matches(item, topic) for item in filters)


@dataclass(slots=True)
class PendingClaim:
    """B's side, while A lets go."""

    client_id: str
    previous: str
    filters: list[str]  # plain filters of the session, pre-routed here
    # This node's place in the change log before it pre-routed: what it sends
    # the previous node meanwhile says so, so that one relays it if it has
    # let go (a place past the cut would say "the claimer has it already").
    position: bytes = b"0-0"
    # This node's forward number when the claim began: what it forwards from
    # then on, and wants the session, it keeps here (number, message) to
    # deliver when the claim ends; the old node does not relay those.
    floor: int = 0
    held: list[tuple[int, Message]] = field(default_factory=list)
    delivered: int = 0  # the last of this node's forwards the old node delivered
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class Relay:
    """A's side, after letting go: what it passes on to the new owner."""

    node: str
    filters: list[str]
    cut: Position
    until: float  # monotonic
    # The new owner's run and its forward number when it claimed: what it
    # forwarded after that, it delivers itself (PendingClaim.held).
    origin: bytes = b""
    floor: int = 0

    def passes_on(self, origin: bytes, sequence: int) -> bool:
        return origin != self.origin or not sequence or sequence <= self.floor


class ClaimService:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.pending: dict[str, PendingClaim] = {}
        self.relays: dict[str, Relay] = {}
        # client id -> its cut, until when, and what its old node had delivered
        # of each sender's forwards when it let go (sender run -> number).
        self.cutovers: dict[str, tuple[Position, float, dict[bytes, int]]] = {}
        self._answers: dict[str, asyncio.Future[dict[bytes, int]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.relay_seconds = max(10.0, 2 * node.config.node_timeout)
        self.claimed = 0  # client ids this node claimed (counters, node.figures)
        self.failed = 0
        self.released_count = 0  # client ids this node let go to another

    # ------------------------------------------------------------ B's side

    def claim(self, connection: Connection, client_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._claim(connection, client_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _claim(self, connection: Connection, client_id: str) -> None:
        core = self.node.core
        assert core is not None
        try:
            stored = await self._take(client_id)
        except (RedisError, OSError, StoreError, TimeoutError) as exc:
            self._forget_pending(client_id)
            self.failed += 1
            fail_claim(core, connection, f"cluster: cannot claim it: {exc}", _now())
            return
        self.claimed += 1
        # It is here again: what this node relayed for it when it left, ends.
        self.relays.pop(client_id, None)
        now = _now()
        finish_claim(core, connection, stored, now)
        pending = self.pending.get(client_id)
        if pending is not None and client_id in core.sessions:
            for sequence, message in pending.held:
                if sequence > pending.delivered:  # the old node did not deliver it
                    deliver_to_client(core, client_id, message, now)
        self._forget_pending(client_id)

    async def _take(self, client_id: str) -> StoredSession | None:
        node = self.node
        redis = node.client()
        keys = node.keys
        deadline = time.monotonic() + 3 * node.config.node_timeout
        while True:
            previous, alive = await self._current_owner(client_id, deadline)
            if previous and previous != node.name and alive:
                try:
                    await self._hand_over(client_id, previous)
                except TimeoutError:
                    self._drop_pre_routes(client_id)
                    still_alive = await awaited(redis.exists(keys.alive(previous)))
                    if still_alive or time.monotonic() >= deadline:
                        raise
                    continue  # it died meanwhile: another node takes its place first
            # Only if no other claim got there first (then: claim from that one).
            if await awaited(redis.eval(_TAKE, 1, keys.owner(client_id), previous, node.name)):
                break
        store = node.store
        assert store is not None
        return await asyncio.to_thread(store.load_session, client_id)

    async def _current_owner(self, client_id: str, deadline: float) -> tuple[str, bool]:
        """The client id's owner ("": none) and whether it is alive. A session
        whose node died is taken over by another node first (reaper.py): what
        the dead node owed it is delivered there; this waits for that, then
        the claim takes it from that node like from any other."""
        node = self.node
        redis = node.client()
        keys = node.keys
        owner = ""
        while time.monotonic() < deadline:
            raw = await awaited(redis.get(keys.owner(client_id)))
            owner = raw.decode() if raw else ""
            if not owner or owner == node.name:
                return owner, True
            if await awaited(redis.exists(keys.alive(owner))):
                return owner, True
            if not await awaited(redis.exists(keys.session(client_id))):
                return owner, False  # nothing kept for it: nothing to wait for
            await asyncio.sleep(0.1)
        raise TimeoutError(f"node {owner} died and no node has taken its sessions yet")

    async def _hand_over(self, client_id: str, previous: str) -> None:
        node = self.node
        redis = node.client()
        filters = [
            item.decode()
            for item in await awaited(redis.hkeys(node.keys.subscriptions(client_id)))
            if not item.startswith(SHARE_PREFIX.encode())
        ]
        self._drop_pre_routes(client_id)  # a claim that went round again
        floor = node.forwarder.sequence if node.forwarder is not None else 0
        pending = self.pending[client_id] = PendingClaim(
            client_id, previous, filters, node.position_bytes, floor
        )
        for topic_filter in filters:
            node.local.added(topic_filter)
        await node.committed()
        last = await redis.xrevrange(node.keys.changes, count=1)
        cut = last[0][0] if last else b"0-0"
        request = uuid.uuid4().hex
        answer = self._answers[request] = asyncio.get_running_loop().create_future()
        fields = {
            "k": "release",
            "c": client_id,
            "n": node.name,
            "v": cut,
            "r": request,
            "o": node.instance,
            "s": floor,
        }
        await redis.xadd(node.keys.control(previous), fields)  # type: ignore[arg-type]
        try:
            delivered = await asyncio.wait_for(answer, node.config.node_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"node {previous} did not let go of it within {node.config.node_timeout:g} s"
            ) from None
        finally:
            self._answers.pop(request, None)
        until = time.monotonic() + self.relay_seconds
        self.cutovers[client_id] = (position_of(cut), until, delivered)
        node.floor = max(node.floor, position_of(cut))
        pending.delivered = delivered.get(node.instance.encode(), 0)

    def _drop_pre_routes(self, client_id: str) -> None:
        """A hand-over given up: its pre-routes go (the claim may go round again)."""
        earlier = self.pending.pop(client_id, None)
        if earlier is not None:
            for topic_filter in earlier.filters:
                self.node.local.removed(topic_filter)
            earlier.done.set()

    def _forget_pending(self, client_id: str) -> None:
        pending = self.pending.pop(client_id, None)
        if pending is None:
            return
        for topic_filter in pending.filters:
            self.node.local.removed(topic_filter)  # the session's own count holds it now
        pending.done.set()
        core = self.node.core
        if core is not None:
            core.flush()

    def store_will(self, connection: Connection, will: Will) -> None:
        core = self.node.core
        assert core is not None
        core.persistence.record(will_operation(connection, will))

    def released(self, request: str, delivered: dict[bytes, int]) -> None:
        """The old node let go; `delivered`: the last forward of each sender's
        run it had delivered (into the session, among others) by then."""
        answer = self._answers.get(request)
        if answer is not None and not answer.done():
            answer.set_result(delivered)

    def forward_pending(
        self, message: Message, nodes: dict[str, int], sequence: int
    ) -> list[Forwarded]:
        """This node's publish (its forward number `sequence`) while claims are
        pending: kept for each claimed session that wants it, and sent to the
        node that had it, marked for it, unless that node gets it anyway (in
        `nodes`, the plain forwards)."""
        marked = []
        for client_id, pending in self.pending.items():
            if wants(pending.filters, message.topic):
                pending.held.append((sequence, message))
                if pending.previous not in nodes:
                    marked.append(
                        Forwarded(
                            pending.previous,
                            message,
                            False,
                            (),
                            pending.position,
                            client_id,
                            sequence,
                        )
                    )
        return marked

    def handing_over(self, node: str, topic: str) -> bytes | None:
        """If `node` is letting go of a session this node claims that wants
        `topic`: the change log place to tell it (see PendingClaim.position)."""
        for pending in self.pending.values():
            if pending.previous == node and wants(pending.filters, topic):
                return pending.position
        return None

    def cut_over(self, client_ids: list[str], cut: Position) -> None:
        """These sessions came here at `cut` (taken over from a dead node): a
        message routed before it reaches them from the dead node's stream, not
        from this node's."""
        until = time.monotonic() + self.relay_seconds
        for client_id in client_ids:
            self.cutovers[client_id] = (cut, until, {})

    def skip_for(self, position: Position, origin: bytes, sequence: int) -> frozenset[str]:
        """Sessions that came here that this message is not to reach here: it
        was routed before their cut (their old node relays it), or their old
        node had delivered it to them before letting go (a forward is numbered
        once for all the nodes it goes to)."""
        if not self.cutovers:
            return frozenset()
        now = time.monotonic()
        for client_id, (_, until, _delivered) in list(self.cutovers.items()):
            if until < now:
                del self.cutovers[client_id]
        return frozenset(
            client_id
            for client_id, (cut, _, delivered) in self.cutovers.items()
            if position < cut or (sequence and sequence <= delivered.get(origin, 0))
        )

    # ------------------------------------------------------------ A's side

    async def release(
        self,
        client_id: str,
        new_owner: str,
        cut: bytes,
        request: str,
        claimer: tuple[bytes, int] = (b"", 0),
    ) -> None:
        """Let go of `client_id` for `new_owner`, whose run and forward number
        when it claimed are `claimer` (see Relay)."""
        node = self.node
        core = node.core
        assert core is not None
        # First read the change log up to the cut: from the release on, what
        # this node publishes reaches the session where it goes directly. And
        # the inbound stream to its end: the new owner's forwards from before
        # its claim reach the session here, before what it keeps for it.
        await node.reached(position_of(cut))
        await node.inbound.read_to_end(node.config.node_timeout / 2)
        subscriptions = release_client(core, client_id, _now())
        self.cutovers.pop(client_id, None)  # it leaves: what it skipped here no longer matters
        # What this node had delivered of each sender's forwards, taken with
        # the release itself (what it reads after, it relays), and of its own
        # publishes (numbered as its forwards are): B does not deliver them again.
        seen = dict(node.inbound.seen)
        if node.forwarder is not None:
            seen[node.instance.encode()] = node.forwarder.sequence
        self.released_count += 1
        if subscriptions:
            filters = [item for item in subscriptions if not item.startswith(SHARE_PREFIX)]
            until = time.monotonic() + self.relay_seconds
            self.relays[client_id] = Relay(
                new_owner, filters, position_of(cut), until, claimer[0], claimer[1]
            )
        await node.committed()
        log.info("cluster: client %r moved to node %s", client_id, new_owner)
        delivered = json.dumps({k.decode(errors="replace"): v for k, v in seen.items()})
        await node.client().xadd(
            node.keys.control(new_owner),
            {"k": "released", "c": client_id, "r": request, "d": delivered},
        )

    def relays_for(
        self, message: Message, position: Position, origin: bytes, sequence: int
    ) -> list[Forwarded]:
        """A message routed before a release's cut (by run `origin`, its
        forward number `sequence`), for sessions that moved."""
        now = time.monotonic()
        found = []
        for client_id, relay in list(self.relays.items()):
            if relay.until < now:
                del self.relays[client_id]
            elif (
                position < relay.cut
                and relay.passes_on(origin, sequence)
                and wants(relay.filters, message.topic)
            ):
                found.append(Forwarded(relay.node, message, False, (), b"", client_id))
        return found

    def relay_target(
        self, client_id: str, message: Message, origin: bytes, sequence: int
    ) -> Forwarded | None:
        """A message marked for a session that left this node: passed on
        (unless its new owner delivers it itself)."""
        relay = self.relays.get(client_id)
        if relay is None or not relay.passes_on(origin, sequence):
            return None
        return Forwarded(relay.node, message, False, (), b"", client_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for answer in self._answers.values():
            answer.cancel()


async def polled(done: Callable[[], bool], timeout: float) -> None:
    """Wait, at most `timeout`, until `done()`: a place another task moves on."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)


async def awaited(result: Awaitable[T] | T) -> T:
    """redis-py types its asyncio client's commands as sync-or-async: await either."""
    if inspect.isawaitable(result):
        return await result
    return result


def _now() -> float:
    return asyncio.get_running_loop().time()
