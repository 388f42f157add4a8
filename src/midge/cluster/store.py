"""The cluster's Store: a node's sessions, and the shared tables, in Redis.

What a lone broker keeps in SQLite, a cluster node keeps in Redis under the
keys of keys.py: the persistent sessions it owns (each client's keys share a
hash tag), and the retained messages every node shares. Besides, the batches
carry the cluster's own operations: `Forwarded` appends a message to another
node's inbound stream, `RouteSet` / `RouteDeleted` change this node's route
set; a change to routes or retained messages is also appended to the change
log, from which the other nodes keep their copies up to date.

Each `apply` is ONE pipeline, not a transaction: on a Redis Cluster a MULTI
cannot span hash tags, and a batch touches many. Instead every write is
ordered and idempotent: Redis runs one connection's commands in order, so a
crash (of Redis or of the connection) leaves a prefix of the batch applied,
and the writer thread, which retries a failed apply whole, writes that
prefix again to the same effect (a hash field or set member set or removed
again; a change-log entry repeated says again what the hash already holds).
Only a repeated `Forwarded` is not harmless: the message is twice in that
node's stream, which QoS 1 allows but QoS 2's exactly once does not (the
receiving node cannot tell a repeat from a second publish).
A node killed in the middle of a batch leaves a prefix of it too, and that
one nobody writes again: so an `InboundCursor` (the mark that stream entries
were delivered) is written last, after the rows their delivery stored. A
prefix then delivers those entries again (the node taking the dead one's
place reads them: at QoS 1 a duplicate), rather than leaving them marked
delivered with their messages nowhere (lost).
The batch is folded into its net change per key first, as SQLite does
(store/changes.py); the cluster operations are not rows to fold and go
first, in the order they came, but for the cursors.

`apply` returns once Redis has answered every write: durable as far as
Redis's own persistence is (`appendfsync always` for what SQLite's
synchronous=FULL promises). It runs on the GroupCommitWriter thread with
the synchronous client; any Redis error becomes a StoreError naming the URL
(never its password), so the writer logs it and tries again.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from midge.cluster.codec import Record, decode_message, encode_message, encode_record, encode_will
from midge.cluster.keys import (
    RETAINED_DELETED,
    RETAINED_SET,
    ROUTE_DELETED,
    ROUTE_SET,
    ROUTES_RESET,
    Keys,
)
from midge.cluster.visibility import wait_until_read
from midge.message import Message
from midge.store.base import (
    Forwarded,
    InboundCursor,
    Operation,
    OutboundRow,
    OwnerReleased,
    RouteDeleted,
    RouteSet,
    SessionReleased,
    StoredSession,
    StoredState,
    StoreError,
    WillDeleted,
    WillStored,
)
from midge.store.changes import Changes, segments

# A Redis that is down refuses a connection at once; one that does not answer
# fails the apply after this long, and the writer tries again.
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 10.0
LOAD_CHUNK = 256  # sessions read per pipeline (five HGETALLs each) at load
SCAN_COUNT = 1000  # members per SSCAN / HSCAN: big sets never block Redis long
SADD_CHUNK = 10_000  # filters per SADD in replace_routes

# Delete the owner key if it still names this node (ARGV[1]).
_RELEASE_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return 0
"""
_CLUSTER_OPERATIONS = frozenset(
    (
        Forwarded,
        RouteSet,
        RouteDeleted,
        SessionReleased,
        OwnerReleased,
        WillStored,
        WillDeleted,
        InboundCursor,
    )
)
_OWNER, _DISCONNECTED_AT, _EXPIRY_INTERVAL = b"owner", b"disconnected_at", b"expiry_interval"

Fields = dict[FieldT, EncodableT]
_T = TypeVar("_T")
_R = TypeVar("_R")


class RedisStore:
    """The Store of cluster node `node`: its sessions, the shared retained
    messages and route sets, and its messages to the other nodes."""

    def __init__(
        self,
        client: redis.Redis,
        node: str,
        keys: Keys,
        url: str,
        change_log_max: int = 100_000,
    ) -> None:
        self.client = client
        self.node = node
        self.keys = keys
        self.url = redact(url)
        self._secrets = secrets(url)
        self.description = f"redis {self.url} (node {node})"
        self.change_log_max = change_log_max
        self._owner = node.encode()
        # Client id -> the highest seq ever written (changes.py): no row of the
        # client has a higher one. Only ever raised, except by SessionDeleted.
        self._written: dict[str, int] = {}
        self._knows_written = False  # load() (or a first apply) read it from Redis
        self._last_log = -1  # the pipeline's last change log entry (see `_log`)
        self._lock = threading.Lock()
        self.origin = ""  # this run of the node, on the bundles it sends (cluster/node.py)
        # Seconds to wait for every live node to read a batch's change log
        # entries before its acknowledgements go (visibility.py); 0: no wait.
        self.readers_timeout = 0.0

    @classmethod
    def open(cls, url: str, node: str, prefix: str = "midge") -> RedisStore:
        """Connect to the Redis at `url` and check that it answers."""
        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=CONNECT_TIMEOUT,
                # No retries of its own, with backoffs of seconds: a failure
                # reaches the writer at once, which logs it and retries the batch.
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            text = _scrubbed(str(exc), secrets(url))
            raise StoreError(f"{redact(url)} is not a Redis URL: {text}") from None
        store = cls(client, node, Keys(prefix), url)
        try:
            client.ping()
        except redis.RedisError as exc:
            client.close()
            raise StoreError(f"cannot reach Redis at {store._failure(exc)}") from None
        return store

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ load

    def load(self) -> StoredState:
        """This node's sessions and every retained message."""
        try:
            sessions = self._load_sessions()
            retained = self._load_retained()
        except redis.RedisError as exc:
            raise StoreError(f"cannot read from Redis at {self._failure(exc)}") from None
        self._knows_written = True
        return StoredState(sessions, retained)

    def _load_sessions(self) -> list[StoredSession]:
        keys = self.keys
        messages: dict[bytes, Message] = {}  # one object per message, as the broker had it
        sessions: list[StoredSession] = []
        for chunk in self._chunks(self._client_ids(), LOAD_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for client_id in chunk:
                for key in keys.client_keys(client_id):
                    pipe.hgetall(key)
            replies = pipe.execute()
            for n, client_id in enumerate(chunk):
                session = self._session(client_id, replies[5 * n : 5 * n + 5], messages)
                if session is not None:
                    sessions.append(session)
        return sessions

    def _client_ids(self) -> list[str]:
        key = self.keys.node_sessions(self.node)
        members = dict.fromkeys(self.client.sscan_iter(key, count=SCAN_COUNT))  # SSCAN may repeat
        return self._read(key, lambda raw: [member.decode() for member in raw], list(members))

    def load_session(self, client_id: str) -> StoredSession | None:
        """One session, whichever node owned it (this one claims it next):
        None if Redis has none. Raises StoreError."""
        keys = self.keys.client_keys(client_id)
        try:
            head = self.client.hgetall(keys[0])  # most clients have none: one command
            if not head:
                return None
            pipe = self.client.pipeline(transaction=False)
            for key in keys[1:]:
                pipe.hgetall(key)
            replies = [head, *pipe.execute()]
        except redis.RedisError as exc:
            raise StoreError(f"cannot read from Redis at {self._failure(exc)}") from None
        return self._session(client_id, replies, {}, any_owner=True)

    def _session(
        self,
        client_id: str,
        replies: list[dict[bytes, bytes]],
        messages: dict[bytes, Message],
        any_owner: bool = False,
    ) -> StoredSession | None:
        head, subscriptions, outbound, sent, releases = replies
        if not any_owner and head.get(_OWNER) != self._owner:
            return None  # deleted (a crash between its DEL and SREM), or another node's now
        keys = self.keys
        disconnected_at, expiry_interval = self._read(keys.session(client_id), _head, head)
        rows = self._read(keys.outbound(client_id), _rows, (outbound, messages))
        flights = self._read(keys.outbound_sent(client_id), _flights, sent)
        if rows:
            written = self._written
            written[client_id] = max(written.get(client_id, 0), *rows)
        return StoredSession(
            client_id,
            disconnected_at,
            self._read(keys.subscriptions(client_id), _subscriptions, subscriptions),
            # A flight without its row (an OutboundSent for a row never written) is nothing.
            [OutboundRow(seq, rows[seq], *flights.get(seq, (None, None))) for seq in sorted(rows)],
            self._read(keys.releases(client_id), _releases, (releases, messages)),
            expiry_interval,
        )

    def _load_retained(self) -> list[Message]:
        key = self.keys.retained
        # HSCAN may repeat a field: the dict keeps each topic once.
        retained: dict[bytes, bytes] = dict(self.client.hscan_iter(key, count=SCAN_COUNT))
        return list(self._read(key, lambda raw: _decoded(raw, {}), retained).values())

    def _learn_written(self) -> None:
        """`written` from Redis, for an apply before any load (which learns it)."""
        keys, written = self.keys, self._written
        for chunk in self._chunks(self._client_ids(), LOAD_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for client_id in chunk:
                pipe.hkeys(keys.outbound(client_id))
            for client_id, fields in zip(chunk, pipe.execute(), strict=True):
                seqs = self._read(keys.outbound(client_id), _seqs, fields)
                if seqs:
                    written[client_id] = max(written.get(client_id, 0), *seqs)
        self._knows_written = True

    def _read(self, key: str, parse: Callable[[_T], _R], raw: _T) -> _R:
        """`parse(raw)`, the value of `key`; a value it cannot read names the key."""
        try:
            return parse(raw)
        except ValueError as exc:  # CorruptValue, UnicodeDecodeError, int() and float()
            raise StoreError(
                f"Redis at {self.url}: {key} holds a value Midge cannot read ({exc}); it is "
                "corrupt or was not written by Midge. Repair or delete that key, then start "
                "again."
            ) from None

    @staticmethod
    def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
        for start in range(0, len(items), size):
            yield items[start : start + size]

    # ----------------------------------------------------------------- apply

    def apply(self, operations: Sequence[Operation]) -> None:
        if not operations:
            return
        # The writer thread applies; the loop's thread may replace the routes
        # (after an outage) meanwhile: one at a time, they share `_last_log`.
        with self._lock:
            self._apply(operations)

    def _apply(self, operations: Sequence[Operation]) -> None:
        popped: dict[str, int] = {}  # what SessionDeleted took out of `written`
        try:
            if not self._knows_written:
                self._learn_written()
            pipe = self.client.pipeline(transaction=False)
            self._last_log = -1
            self._queue(pipe, operations, popped)
            replies = pipe.execute()  # sends nothing when the fold left nothing to write
            if self._last_log >= 0 and self.readers_timeout:
                wait_until_read(
                    self.client, self.keys, self.node, replies[self._last_log], self.readers_timeout
                )
        except redis.RedisError as exc:
            # Some of the batch may be in Redis, rows of the deleted sessions too:
            # `written` must not stay below them for the retry (or any later batch).
            written = self._written
            for client_id, seq in popped.items():
                written[client_id] = max(seq, written.get(client_id, 0))
            raise StoreError(f"cannot write to Redis at {self._failure(exc)}") from None

    def _queue(
        self, pipe: Pipeline, operations: Sequence[Operation], popped: dict[str, int]
    ) -> None:
        encoded: dict[int, bytes] = {}  # id(message) -> its bytes: a fan-out encodes once
        cluster = [op for op in operations if type(op) in _CLUSTER_OPERATIONS]
        cursors: list[Operation] = []
        if cluster:
            operations = [op for op in operations if type(op) not in _CLUSTER_OPERATIONS]
            # The inbound cursors go last (see the module docstring).
            cursors = [op for op in cluster if type(op) is InboundCursor]
            if cursors:
                cluster = [op for op in cluster if type(op) is not InboundCursor]
            self._queue_cluster(pipe, cluster, encoded)
        written = self._written
        keys = self.keys
        for segment in segments(operations, written):
            if isinstance(segment, Changes):
                self._queue_changes(pipe, segment, encoded)
                continue
            # SessionDeleted: every key of these clients goes; the next session
            # of the same id numbers its messages from 1 again.
            for client_id in segment:
                pipe.delete(*keys.client_keys(client_id))
                popped[client_id] = max(popped.get(client_id, 0), written.pop(client_id, 0))
            pipe.srem(keys.node_sessions(self.node), *segment)
        for cursor in cursors:
            self._queue_node_state(pipe, cursor)

    def _queue_cluster(
        self, pipe: Pipeline, operations: list[Operation], encoded: dict[int, bytes]
    ) -> None:
        """The cluster's operations, in order; consecutive forwards become one
        bundle per target node (codec.py), written where the run of forwards ends."""
        keys = self.keys
        bundles: dict[str, list[bytes]] = {}
        for op in operations:
            if isinstance(op, Forwarded):
                record = Record(
                    _encoded(op.message, encoded),
                    op.plain,
                    op.shares,
                    op.target,
                    op.position,
                    op.sequence,
                )
                bundles.setdefault(op.node, []).append(encode_record(record))
                continue
            if bundles:
                self._queue_bundles(pipe, bundles)
                bundles = {}
            if isinstance(op, RouteSet):
                pipe.sadd(keys.routes(op.node), op.topic_filter)
                self._log(pipe, {"k": ROUTE_SET, "n": op.node, "f": op.topic_filter})
            elif isinstance(op, RouteDeleted):
                pipe.srem(keys.routes(op.node), op.topic_filter)
                self._log(pipe, {"k": ROUTE_DELETED, "n": op.node, "f": op.topic_filter})
            else:
                self._queue_node_state(pipe, op)
        if bundles:
            self._queue_bundles(pipe, bundles)

    def _queue_bundles(self, pipe: Pipeline, bundles: dict[str, list[bytes]]) -> None:
        # No MAXLEN: an entry holds messages acknowledged to their publishers.
        origin = self.origin or self.node
        for node, records in bundles.items():
            pipe.xadd(self.keys.inbound(node), {"b": b"".join(records), "o": origin})

    def _queue_node_state(self, pipe: Pipeline, op: Operation) -> None:
        keys = self.keys
        if isinstance(op, WillStored):
            blob = encode_will(op.message, op.expiry_interval)
            pipe.hset(keys.wills(self.node), mapping={op.client_id: blob})
        elif isinstance(op, WillDeleted):
            pipe.hdel(keys.wills(self.node), op.client_id)
        elif isinstance(op, InboundCursor):
            pipe.set(keys.cursor(op.node), op.entry_id)
        elif isinstance(op, OwnerReleased):
            pipe.eval(_RELEASE_OWNER, 1, keys.owner(op.client_id), self.node)
        elif isinstance(op, SessionReleased):
            # Another node owns it now: off this node's list; its rows stay.
            pipe.srem(keys.node_sessions(self.node), op.client_id)
            self._written.pop(op.client_id, None)

    def _log(self, pipe: Pipeline, fields: Fields) -> None:
        """An entry of the change log, which keeps its last entries only: a node
        that fell further behind reads the tables whole again."""
        self._last_log = len(pipe)  # where its reply will be: apply waits for readers
        pipe.xadd(self.keys.changes, fields, maxlen=self.change_log_max, approximate=True)

    def _queue_changes(self, pipe: Pipeline, changes: Changes, encoded: dict[int, bytes]) -> None:
        """One segment's net change: its keys are distinct, so the order of the
        writes within it does not matter, except that a session joins the
        node's set first (a crash between leaves a member without its hash,
        which load skips, as after a SessionDeleted cut short)."""
        keys = self.keys
        if changes.sessions:
            pipe.sadd(keys.node_sessions(self.node), *changes.sessions)
            for saved in changes.sessions.values():
                at, interval = saved.disconnected_at, saved.expiry_interval
                head: Fields = {
                    "owner": self.node,
                    "disconnected_at": "" if at is None else repr(float(at)),
                    "expiry_interval": "" if interval is None else str(interval),
                }
                pipe.hset(keys.session(saved.client_id), mapping=head)
        hashes = _Hashes()
        for (client_id, topic_filter), subscription in changes.subscriptions.items():
            key = keys.subscriptions(client_id)
            if subscription is None:
                hashes.delete(key, topic_filter)
            else:
                hashes.put(key, topic_filter, subscription.qos)
        if changes.outbound:
            self._outbound(changes, hashes, encoded)
        for (client_id, packet_id), pending in changes.releases.items():
            key, field = keys.releases(client_id), str(packet_id)
            if pending is None:
                hashes.delete(key, field)
            else:
                held = pending.message
                hashes.put(key, field, b"" if held is None else _encoded(held, encoded))
        hashes.send(pipe)
        if changes.retained:
            self._retained(pipe, changes.retained, encoded)

    def _outbound(self, changes: Changes, hashes: _Hashes, encoded: dict[int, bytes]) -> None:
        keys, written = self.keys, self._written
        for (client_id, seq), change in changes.outbound.items():
            field, sent = str(seq), keys.outbound_sent(client_id)
            if change is None:
                hashes.delete(keys.outbound(client_id), field)
                hashes.delete(sent, field)
                continue
            message, packet_id, awaiting = change
            if message is None:  # OutboundSent alone: load ignores it if no row exists
                hashes.put(sent, field, f"{packet_id}:{awaiting or 0}")
                continue
            hashes.put(keys.outbound(client_id), field, _encoded(message, encoded))
            if packet_id:
                hashes.put(sent, field, f"{packet_id}:{awaiting or 0}")
            else:  # queued: a flight left by an earlier row of this seq must go
                hashes.delete(sent, field)
            if seq > written.get(client_id, 0):
                written[client_id] = seq

    def _retained(
        self, pipe: Pipeline, retained: dict[str, Message | None], encoded: dict[int, bytes]
    ) -> None:
        key, node = self.keys.retained, self.node
        gone = [topic for topic, message in retained.items() if message is None]
        kept = {
            topic: _encoded(message, encoded)
            for topic, message in retained.items()
            if message is not None
        }
        if gone:
            pipe.hdel(key, *gone)
        if kept:
            pipe.hset(key, mapping=kept)
        # After the hash: a node that reads the log sees what the hash holds.
        for topic in retained:
            data = kept.get(topic)
            if data is None:
                self._log(pipe, {"k": RETAINED_DELETED, "n": node, "f": topic})
            else:
                self._log(pipe, {"k": RETAINED_SET, "n": node, "f": topic, "m": data})

    # ---------------------------------------------------------------- routes

    def replace_routes(self, filters: Iterable[str]) -> None:
        """This node's whole route set, announced (at start): the others read it
        again when the log says ROUTES_RESET."""
        with self._lock:
            self._replace_routes(filters)

    def _replace_routes(self, filters: Iterable[str]) -> None:
        key = self.keys.routes(self.node)
        members = list(filters)
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(key)
        for start in range(0, len(members), SADD_CHUNK):
            pipe.sadd(key, *members[start : start + SADD_CHUNK])
        self._log(pipe, {"k": ROUTES_RESET, "n": self.node})
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"cannot write to Redis at {self._failure(exc)}") from None

    def _failure(self, exc: Exception) -> str:
        """'URL: what went wrong', with no password of the URL in it."""
        return f"{self.url}: {_scrubbed(str(exc) or type(exc).__name__, self._secrets)}"


class _Hashes:
    """Writes to hash fields, grouped by key: one HDEL and one HSET per hash.
    Only for writes to distinct fields, whose order does not matter."""

    __slots__ = ("deleted", "values")

    def __init__(self) -> None:
        self.values: dict[str, Fields] = {}
        self.deleted: dict[str, list[str]] = {}

    def put(self, key: str, field: str, value: EncodableT) -> None:
        self.values.setdefault(key, {})[field] = value

    def delete(self, key: str, field: str) -> None:
        self.deleted.setdefault(key, []).append(field)

    def send(self, pipe: Pipeline) -> None:
        for key, fields in self.deleted.items():
            pipe.hdel(key, *fields)
        for key, values in self.values.items():
            pipe.hset(key, mapping=values)


def _encoded(message: Message, encoded: dict[int, bytes]) -> bytes:
    """The message's bytes, encoded once per apply (the batch keeps the object
    alive, so its id is not reused meanwhile)."""
    data = encoded.get(id(message))
    if data is None:
        data = encoded[id(message)] = encode_message(message)
    return data


# ------------------------------------------- parsing what load reads
# Each raises ValueError on a value Midge did not write; RedisStore._read
# turns that into a StoreError naming the key.


def _head(raw: dict[bytes, bytes]) -> tuple[float | None, int | None]:
    at, interval = raw.get(_DISCONNECTED_AT, b""), raw.get(_EXPIRY_INTERVAL, b"")
    return (float(at) if at else None), (int(interval) if interval else None)


def _subscriptions(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {topic_filter.decode(): int(value) for topic_filter, value in raw.items()}


def _seqs(raw: list[bytes]) -> list[int]:
    return [int(field) for field in raw]


def _decoded(raw: dict[bytes, bytes], cache: dict[bytes, Message]) -> dict[bytes, Message]:
    """Field -> its message, decoded once per distinct value (`cache`): the
    broker had one object for every receiver of a message, and has it again."""
    messages: dict[bytes, Message] = {}
    for field, data in raw.items():
        message = cache.get(data)
        if message is None:
            message = cache[data] = decode_message(data)
        messages[field] = message
    return messages


def _rows(arguments: tuple[dict[bytes, bytes], dict[bytes, Message]]) -> dict[int, Message]:
    return {int(seq): message for seq, message in _decoded(*arguments).items()}


def _flights(raw: dict[bytes, bytes]) -> dict[int, tuple[int | None, int | None]]:
    """Seq -> (packet id, awaiting); 0 is "none", as SQLite reads it."""
    flights: dict[int, tuple[int | None, int | None]] = {}
    for field, value in raw.items():
        packet_id, awaiting = value.split(b":")
        flights[int(field)] = (int(packet_id) or None, int(awaiting) or None)
    return flights


def _releases(
    arguments: tuple[dict[bytes, bytes], dict[bytes, Message]],
) -> dict[int, Message | None]:
    """Packet id -> the message held until its PUBREL; b"": none held."""
    raw, cache = arguments
    held = _decoded({field: data for field, data in raw.items() if data}, cache)
    return {int(field): held.get(field) for field in raw}


# ----------------------------------------------------------- the URL


def redact(url: str) -> str:
    """The URL without its user:password@ and any password= parameter."""
    scheme, separator, rest = url.partition("://")
    if separator:
        end = len(rest)
        for mark in "?#":
            if mark in rest:
                end = min(end, rest.index(mark))
        rest = rest[:end].rpartition("@")[2] + rest[end:]
    rest = re.sub(r"(?i)([?&])password=[^&#]*", r"\1password=***", rest)
    return f"{scheme}{separator}{rest}"


def _scrubbed(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def secrets(url: str) -> tuple[str, ...]:
    """The URL's password, as written and unquoted, to keep out of error texts."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [value for name, value in parse_qsl(parts.query) if name.lower() == "password"]
    except ValueError:
        return ()
    return tuple({variant for secret in found if secret for variant in (secret, unquote(secret))})
