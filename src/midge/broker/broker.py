"""The broker: who is connected, their sessions, closing connections, timers.

Sans-IO like the rest of the core: connections hand it packets and the
current time; it answers by writing bytes to connection transports. The
packet handlers (one per packet type) are in `handlers.py`, routing and
delivery in `delivery.py` (backpressure in `flow.py`), holding output until
the store commits in `persistence.py`. This module owns what ties them
together: the tables of sessions and connections, the one way a connection
ends (`close_connection`: will, session clean-up, one log line), the end of
a batch (`flush`), and per-connection deadlines, which a front end drives
with `next_timer` and `handle_timer`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from midge.broker.auth import Authenticator
from midge.broker.authorizer import Authorizer, build_authorizer
from midge.broker.bugs import BugLog
from midge.broker.closing import CloseReason
from midge.broker.config import BrokerConfig, ListenerConfig
from midge.broker.connect import answer_connect
from midge.broker.connection import CONNECTED, Connection, State, Transport, check_before_connack
from midge.broker.delivery import Delivery
from midge.broker.enhanced_auth import EnhancedAuth
from midge.broker.flow import FlowControl
from midge.broker.handlers import HANDLERS
from midge.broker.hooked import handle_publish_hooked, publish_will
from midge.broker.hooks import AuthHook, load_hook
from midge.broker.login import reload_auth
from midge.broker.mqtt5 import SESSION_NEVER_EXPIRES, disconnect_bytes, will_to_message
from midge.broker.persistence import Committer, Persistence, restore_session
from midge.broker.session import Session
from midge.broker.shared import SHARE_PREFIX
from midge.broker.stats import Stats
from midge.broker.throttle import LoginThrottle
from midge.broker.trace import traced, tracing
from midge.broker.views import ClientInfo, client_info
from midge.broker.wills import DelayedWills
from midge.message import Message
from midge.protocol.errors import ProtocolError
from midge.protocol.packets import Connect, Packet, Publish, Will
from midge.store.base import (
    OwnerReleased,
    SessionDeleted,
    SessionReleased,
    SessionSaved,
    Store,
    StoredState,
    SubscriptionDeleted,
    SubscriptionSet,
    WillDeleted,
)

if TYPE_CHECKING:
    from midge.broker.clustered import Claims
    from midge.cluster.routes import LocalRoutes
    from midge.embedding.hooks import EventHooks

log = logging.getLogger("midge.broker")

KEEP_ALIVE_GRACE = 1.5  # a client is gone after 1.5 x keep-alive of silence [MQTT-3.1.2-24]
EXPIRY_CHECK_SECONDS = 60.0  # how often abandoned persistent sessions are looked for
# Where the connect timeout still runs: no CONNACK 0 yet.
_BEFORE_CONNACK = frozenset({State.AWAITING_CONNECT, State.AUTHENTICATING, State.CLAIMING})
MIN_EXPIRY_RECHECK = 0.01  # seconds: a session due right now is looked at again this soon


class Broker:
    def __init__(
        self,
        config: BrokerConfig,
        authenticator: Authenticator | None = None,
        store: Store | None = None,
        wall_clock: Callable[[], float] = time.time,
        committer: Committer | None = None,
        wake_at: Callable[[float], None] | None = None,
        events: EventHooks | None = None,
    ) -> None:
        """`store` receives every change to durable state (None keeps nothing),
        through `committer` when given (a group-commit thread), else at once.
        `wake_at(t)` asks the front end to call `handle_timer` at loop time `t`
        (a new earliest deadline); without it the front end polls. `events`
        are the event hooks (None or empty: none, and no cost)."""
        self.config = config
        self.events = events if events else None
        # The packet handlers; with on_publish hooks, PUBLISH goes through them first.
        self.handlers = HANDLERS
        if self.events is not None and self.events.publish:
            self.handlers = {**HANDLERS, Publish: handle_publish_hooked}
        self.authenticator = authenticator or Authenticator.from_settings(config.password_file)
        self.auth_hook: AuthHook | None = load_hook(config.auth_hook) if config.auth_hook else None
        # None without an ACL file and a hook: then the hot path checks only this.
        self.authorizer: Authorizer | None = build_authorizer(config, self.auth_hook)
        self.enhanced_auth = EnhancedAuth(
            config.scram_file, getattr(self.auth_hook, "start_auth", None)
        )
        self.sessions: dict[str, Session] = {}
        self.connections: dict[str, Connection] = {}  # client id -> its live connection
        self.stats = Stats()
        # The debug packet trace (trace.py): when on, every handler is wrapped in
        # one that logs the packet first; off, it costs incoming packets nothing.
        self.trace = tracing()
        if self.trace:
            self.handlers = traced(self.handlers, config.log_payloads)
        # Every socket, CONNECT or not (a dict as an ordered set: at thousands of
        # connections its table is a third of a set's).
        self._open: dict[Connection, None] = {}
        self._pending_output: list[Connection] = []  # connections with bytes to write
        # Connections whose held-back input may go on, handled before the batch ends.
        self._woken: list[Connection] = []
        self._flushing = False
        self._timers: list[tuple[float, int, Connection]] = []
        self._timer_order = itertools.count()
        # Sockets waiting for their CONNECT, in the order opened: every one has
        # the same connect_timeout, so this line is also in deadline order and
        # needs no heap entry (nor a wake-up call) per connection.
        self._awaiting: deque[Connection] = deque()
        self._wake_at = wake_at
        self._client_numbers = itertools.count(1)
        self.wall_clock = wall_clock
        self.now = 0.0  # loop time of the event being handled (set by each entry point)
        # Wall-clock time minus loop time (asyncio's loop time is time.monotonic()'s;
        # a front end with another clock sets its own): for views, not for timers.
        self.clock_offset = wall_clock() - time.monotonic()
        # When the periodic session-expiry check is due; None: at the first timer.
        self._next_expiry_check: float | None = None
        self._bugs = BugLog()
        self.persistence = Persistence(
            store, config.durability != "memory", after_release=self.flush, committer=committer
        )
        self.throttle = LoginThrottle(config.auth_failure_delay, config.auth_failure_max_delay)
        self.flow = FlowControl(config, self.stats, self.schedule_timer, self._woken.append)
        self.delivery = Delivery(
            config,
            self.sessions,
            self.connections,
            self.persistence,
            self.stats,
            self.authorizer,
            self.flow,
            self.close_connection,
            wall_clock,
            self.events,
        )
        self.subscriptions = self.delivery.subscriptions
        # The cluster's count of this node's subscribers per filter
        # (cluster/routes.py); None: a lone broker.
        self.routes: LocalRoutes | None = None
        # Who claims client ids this node has no session for (broker/clustered.py).
        self.claims: Claims | None = None
        # Generated client ids start so; a cluster node makes its own unique
        # across nodes and runs (cluster/node.py).
        self.client_id_prefix = "midge-auto-"
        self.wills = DelayedWills(self._publish_will)
        self.retained = self.delivery.retained
        self._default_listener = config.effective_listeners()[0]

    def restore(self, state: StoredState) -> None:
        """Take over what the store kept: offline sessions and retained messages."""
        now_wall = self.wall_clock()
        for stored in state.sessions:
            session = restore_session(stored, now_wall)
            self.sessions[session.client_id] = session
            for topic_filter, qos in session.subscriptions.items():
                self.index_subscription(topic_filter, session.client_id, qos)
        for message in state.retained:
            self.retained.set(message)
        self.expire_sessions(now_wall)
        self.flush()  # expired sessions leave the store now, not at the next batch

    # ------------------------------------------------------------ connections

    def connection_made(
        self,
        transport: Transport,
        peer: str | None,
        now: float,
        listener: ListenerConfig | None = None,
        tls_identity: str | None = None,
    ) -> Connection:
        """A new socket on `listener` (default: the first configured one); `peer`
        is the client's address, or None for the connection to ask `transport`."""
        connection = Connection(
            self, transport, peer, now, listener or self._default_listener, tls_identity
        )
        self._open[connection] = None
        self.stats.connections_accepted += 1
        self.now = now
        awaiting = self._awaiting
        self._drop_answered(awaiting)
        if not awaiting and self._wake_at is not None:
            self._wake_at(now + self.config.connect_timeout)  # else the first's is earlier
        awaiting.append(connection)
        return connection

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def handle_packet(self, connection: Connection, packet: Packet, now: float) -> None:
        kind = type(packet)
        if kind is not Publish:  # a PUBLISH is counted by its handler, by QoS
            self.stats.control_packets_received += 1
        state = connection.state
        if state is not CONNECTED:
            check_before_connack(state, packet)
        elif kind is Connect:
            raise ProtocolError("second CONNECT on one connection")  # [MQTT-3.1.0-2]
        self.handlers[kind](self, connection, packet, now)

    def close_connection(
        self,
        connection: Connection,
        reason: CloseReason,
        detail: str = "",
        publish_will: bool = True,
        flush: bool = False,
        reason_code: int | None = None,
    ) -> None:
        """The one way a connection ends: socket, session, will, log line.

        With `flush` the bytes already sent (a refusing CONNACK) go out first;
        otherwise the socket is dropped at once, since waiting to flush to a
        client that stopped reading could keep it open forever. A 5.0 client
        is told why first, with a DISCONNECT carrying `reason_code` (default:
        the reason's own), where the reason has one.
        """
        if connection.mqtt5 is not None and connection.state is State.CONNECTED:
            code = reason.reason_code if reason_code is None else reason_code
            if code is not None:
                # Say what went wrong only for the client's own mistakes: a
                # bug's or another client's details are none of its business.
                explained = reason is CloseReason.PROTOCOL_VIOLATION
                connection.send_last(disconnect_bytes(code, detail if explained else ""))
                flush = True
        if not connection.mark_closed():
            return
        self._open.pop(connection, None)
        self.persistence.forget(connection)
        if flush and not connection.write_blocked:
            connection.write_outbox()
            connection.transport.close()
        else:
            connection.outbox = None
            connection.transport.abort()
        if reason is CloseReason.PROTOCOL_VIOLATION:
            self.stats.protocol_violations += 1
        if log.isEnabledFor(logging.INFO):  # naming the client costs more than the check
            described = reason.describe(detail)
            log.info(
                "closing %s: %s",
                connection.name,
                described,
                extra=connection.log_fields(described),
            )
        deferred = connection.deferred_connect
        if deferred is not None:
            self.throttle.cancel(connection.address, deferred[0])  # its turn goes back
        self.flow.release(connection)  # a receiver that is gone holds nobody back
        will, connection.will = connection.will, None
        session = connection.session
        if session is not None and self.connections.get(session.client_id) is connection:
            events = self.events
            if events is not None and events.disconnect:
                info = self.client_info(connection)
                events.notify(events.disconnect, info, reason.describe(detail))
            del self.connections[session.client_id]
            session.connected = False
            if self.delivery.shared.groups:
                self.delivery.hand_over_shared(session, self.now)
            if session.persistent:
                session.disconnected_at = self.wall_clock()
                # Not a barrier: lost in a crash, the restart dates it itself.
                self.persistence.record(
                    SessionSaved(
                        session.client_id, session.disconnected_at, session.expiry_interval
                    ),
                    barrier=False,
                )
                interval = session.expiry_interval
                if interval is not None and interval != SESSION_NEVER_EXPIRES:
                    self._expire_within(interval)
            else:
                self.discard_session(session)  # [MQTT-3.1.2-6]
        if will is not None and publish_will:
            self._will(connection, will, session)
        if connection.will_stored:  # after the will's own operations, in the batch
            connection.will_stored = False
            self.persistence.record(WillDeleted(connection.client_id), barrier=False)

    def _will(self, connection: Connection, will: Will, session: Session | None) -> None:
        """Publish a closed connection's will, or hold it for its Will Delay Interval
        while the session lives on."""
        message = will_to_message(will, self.wall_clock)
        delay = will.properties.will_delay_interval if will.properties is not None else None
        if delay and session is not None and self.sessions.get(session.client_id) is session:
            due = self.now + delay
            self.wills.hold(session.client_id, due, message, connection)
            if self._wake_at is not None:
                self._wake_at(due)
            return
        self._publish_will(message, connection)

    def _publish_will(self, message: Message, origin: Connection) -> None:
        events = self.events
        if events is not None and events.publish:
            publish_will(self, events, origin, message)
        else:
            self.delivery.publish_from_client(message, origin, self.now)

    def client_info(self, connection: Connection) -> ClientInfo:
        """A snapshot of one connection, for hooks and views."""
        return client_info(connection, self.clock_offset)

    def wake(self, connection: Connection) -> None:
        """Nothing holds `connection` back any more: its waiting input is handled
        before the current batch ends."""
        self._woken.append(connection)

    def internal_error(self, connection: Connection, exc: Exception) -> None:
        """A bug surfaced while serving `connection`: it is closed (logged by
        `BugLog`), and the broker goes on."""
        self.stats.internal_errors += 1
        self._bugs.report(exc, connection.name)
        try:
            self.close_connection(connection, CloseReason.INTERNAL_ERROR)
        except Exception:  # closing failed too: at least the socket goes
            log.exception("internal error closing %s", connection.name)
            connection.transport.abort()

    def close_all(self) -> None:
        """Broker shutdown: every socket closes; wills stay unpublished."""
        for connection in list(self._open):
            self.close_connection(connection, CloseReason.SHUTDOWN, publish_will=False, flush=True)
        self.flush()

    def mark_pending(self, connection: Connection) -> None:
        self._pending_output.append(connection)

    def flush(self) -> None:
        """End of a batch of input or timers: submit its store operations, write
        every connection's queued bytes (one write each), and handle the input
        of publishers that backpressure let go in this batch."""
        if self._flushing:
            return  # called from within: the loop below covers it
        self._flushing = True
        try:
            while True:
                self.persistence.end_batch()
                pending = self._pending_output
                if pending:
                    self._pending_output = []
                    for connection in pending:
                        try:
                            connection.write_outbox()
                        except Exception as exc:  # one transport's failure is its own
                            self.internal_error(connection, exc)
                if self._woken:
                    woken = self._woken[:]
                    self._woken.clear()
                    for connection in woken:
                        if connection.state is not State.CLOSED:
                            connection.guarded(connection.release_deferred, self.now)
                elif not self._pending_output and not self.persistence.operations:
                    return  # (closing after a failed write may have added both)
        finally:
            self._flushing = False

    def new_client_id(self) -> str:
        """A unique id for a client that sent an empty one [MQTT-3.1.3-6]."""
        while True:
            client_id = f"{self.client_id_prefix}{next(self._client_numbers)}"
            if client_id not in self.sessions:
                return client_id

    # ---------------------------------------------------------- authentication

    def reload_auth(self) -> bool:
        """Re-read the password file and the ACL file (SIGHUP): login.py."""
        return reload_auth(self)

    # --------------------------------------------------------------- sessions

    def add_session(
        self, client_id: str, persistent: bool, expiry_interval: int | None = None
    ) -> Session:
        session = Session(client_id, persistent, expiry_interval)
        self.sessions[client_id] = session
        if persistent:
            self.persistence.record(SessionSaved(client_id, None, expiry_interval))
        return session

    def set_persistent(self, session: Session, persistent: bool) -> None:
        """A resumed 5.0 session's lifetime changed: it joins or leaves the store."""
        session.persistent = persistent
        if persistent:
            self.persistence.record(SessionSaved(session.client_id, None, session.expiry_interval))
        else:
            self.persistence.record(SessionDeleted(session.client_id))

    def set_queue_limits(self, client_id: str, max_messages: int, drop_oldest: bool) -> None:
        """Give a session a queue bound of its own (a bridge's: bridge/link.py)."""
        session = self.sessions.get(client_id)
        if session is not None:
            session.queue_limits = (max_messages, drop_oldest)

    def discard_session(self, session: Session) -> None:
        self.wills.release(session.client_id)  # the session ends: a waiting will goes out
        self.forget_session(session, delete=True)
        if self.claims is not None:  # a cluster: the client id is free again
            self.persistence.record(OwnerReleased(session.client_id), barrier=False)

    def forget_session(self, session: Session, *, delete: bool) -> None:
        """`session` leaves this node's memory and its routes. The store deletes
        it (`delete`) or, when another node took it over (broker/clustered.py),
        keeps it for that node."""
        client_id = session.client_id
        if session.has_subscriptions():
            for topic_filter in session.subscriptions:
                self.unindex_subscription(topic_filter, client_id)
        if self.authorizer is not None:
            self.authorizer.forget(client_id)
        if self.sessions.get(client_id) is session:
            del self.sessions[client_id]
        if session.persistent:
            operation = SessionDeleted(client_id) if delete else SessionReleased(client_id)
            self.persistence.record(operation)

    def expire_sessions(self, now_wall: float) -> float:
        """Delete offline sessions whose time is up: a 5.0 session after its own
        Session Expiry Interval, a 3.1.1 one after persistent_session_expiry.
        Returns the seconds until the next one is due (at most the check period)."""
        default = self.config.persistent_session_expiry
        soonest = EXPIRY_CHECK_SECONDS
        for session in list(self.sessions.values()):
            offline_since = session.disconnected_at
            if session.connected or offline_since is None:
                continue
            interval = session.expiry_interval
            expiry = default if interval is None else interval
            if not expiry or expiry == SESSION_NEVER_EXPIRES:
                continue
            left = offline_since + expiry - now_wall
            if left < 0:
                log.info(
                    "session %r expired after %d s offline",
                    session.client_id,
                    expiry,
                    extra={"client_id": session.client_id, "reason": "session expired"},
                )
                self.stats.clients_expired += 1
                self.discard_session(session)
            elif interval is not None:
                # A 5.0 client chose the interval: keep it to the second, not to
                # the next periodic check.
                soonest = min(soonest, max(left, MIN_EXPIRY_RECHECK))
        return soonest

    def _expire_within(self, seconds: float) -> None:
        """Look for expired sessions again in `seconds` at the latest."""
        due = self.now + seconds
        if self._next_expiry_check is None or due < self._next_expiry_check:
            self._next_expiry_check = due
            if self._wake_at is not None:
                self._wake_at(due)

    def subscribe(self, session: Session, topic_filter: str, options: int) -> None:
        """Add or replace one subscription; `options` as subscribing.py packs them."""
        session.subscriptions[topic_filter] = options
        self.index_subscription(topic_filter, session.client_id, options)
        if session.persistent:
            self.persistence.record(SubscriptionSet(session.client_id, topic_filter, options))

    def index_subscription(self, topic_filter: str, client_id: str, options: int) -> None:
        """Make a subscription findable: shared ones have an index of their own."""
        if topic_filter.startswith(SHARE_PREFIX):
            self.delivery.shared.add(topic_filter, client_id, options)
        else:
            self.subscriptions.add(topic_filter, client_id, options)
        if self.routes is not None:
            self.routes.added(topic_filter)

    def unindex_subscription(self, topic_filter: str, client_id: str) -> None:
        if topic_filter.startswith(SHARE_PREFIX):
            self.delivery.shared.remove(topic_filter, client_id)
        else:
            self.subscriptions.remove(topic_filter, client_id)
        if self.routes is not None:
            self.routes.removed(topic_filter)

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        """Remove one subscription; False if there was none."""
        if session.subscriptions.pop(topic_filter, None) is None:
            return False
        self.unindex_subscription(topic_filter, session.client_id)
        if session.persistent:
            self.persistence.record(SubscriptionDeleted(session.client_id, topic_filter))
        return True

    # ----------------------------------------------------------------- timers

    def schedule_timer(self, connection: Connection, deadline: float) -> None:
        """Look at `connection` again at `deadline` (its earliest one counts)."""
        current = connection.timer_at
        if current is None or deadline < current:
            connection.timer_at = deadline
            timers = self._timers
            earliest = not timers or deadline < timers[0][0]
            heapq.heappush(timers, (deadline, next(self._timer_order), connection))
            if earliest and self._wake_at is not None:
                self._wake_at(deadline)

    def next_timer(self) -> float | None:
        """When `handle_timer` is next due (loop time); None: only once called
        for the first time (the front end calls it at start)."""
        timers = self._timers
        expiry = self._next_expiry_check
        earliest = timers[0][0] if timers else None
        awaiting = self._awaiting
        self._drop_answered(awaiting)
        if awaiting:
            connect_deadline = awaiting[0].opened_at + self.config.connect_timeout
            if earliest is None or connect_deadline < earliest:
                earliest = connect_deadline
        will_due = self.wills.next_due() if len(self.wills) else None
        if will_due is not None and (earliest is None or will_due < earliest):
            earliest = will_due
        if earliest is not None and (expiry is None or earliest < expiry):
            return earliest
        return expiry

    @staticmethod
    def _drop_answered(awaiting: deque[Connection]) -> None:
        """Forget the oldest sockets of the CONNECT line that no longer wait for it
        (connected, closed, or throttled: a throttled CONNECT is answered at its turn)."""
        while awaiting and awaiting[0].state not in _BEFORE_CONNACK:
            awaiting.popleft()

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that has come: CONNECT and keep-alive timeouts,
        throttled CONNECTs whose turn came, stalled receivers, session expiry.
        One connection's failure closes that connection only."""
        self.now = now
        awaiting = self._awaiting
        connect_timeout = self.config.connect_timeout
        while awaiting and awaiting[0].opened_at + connect_timeout <= now:
            connection = awaiting.popleft()
            if connection.state in _BEFORE_CONNACK:
                connection.guarded(partial(self._check_deadline, connection), now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, connection = heapq.heappop(timers)
            if connection.timer_at != deadline or connection.state is State.CLOSED:
                continue  # superseded by an earlier deadline, or already gone
            connection.timer_at = None
            connection.guarded(partial(self._check_deadline, connection), now)
        if len(self.wills):
            self.wills.publish_due(now)
        if self._next_expiry_check is None or now >= self._next_expiry_check:
            self._next_expiry_check = now + EXPIRY_CHECK_SECONDS
            try:
                self._next_expiry_check = now + self.expire_sessions(self.wall_clock())
                self.throttle.forget(now)
            except Exception:
                log.exception("internal error in the periodic session expiry")
        self.flush()

    def defer_connect(
        self, connection: Connection, packet: Connect, now: float, turn: float
    ) -> None:
        """Hold a CONNECT until `turn` (login throttling); later input waits too."""
        connection.defer_connect(turn, packet)
        log.info(
            "%s: CONNECT answered in %.1f s (failed logins from %s)",
            connection.name,
            turn - now,
            connection.address,
        )
        self.schedule_timer(connection, turn)

    def _answer_deferred(self, connection: Connection, now: float) -> None:
        assert connection.deferred_connect is not None
        turn = connection.deferred_connect[0]
        if now < turn:  # an earlier timer of this connection (its connect timeout)
            self.schedule_timer(connection, turn)
            return
        _, packet = connection.take_turn()
        answer_connect(self, connection, packet, now)
        connection.read_packets(now)  # what arrived while it waited

    def _check_deadline(self, connection: Connection, now: float) -> None:
        if connection.state is State.THROTTLED:
            self._answer_deferred(connection, now)
            return
        if connection.state in _BEFORE_CONNACK:
            # Its CONNECT deadline is kept by the line of waiting sockets, `_awaiting`:
            # enhanced authentication must end within it too.
            if connection.opened_at + self.config.connect_timeout <= now:
                self.close_connection(connection, CloseReason.CONNECT_TIMEOUT)
            return
        deadlines = []
        stall_check = self.flow.check_stall(connection, now)
        if stall_check is not None:
            deadlines.append(stall_check)
        if connection.keep_alive:
            if connection.holders:
                # Held back, it may be talking while we do not read: not silence.
                connection.last_activity = now
            grace = KEEP_ALIVE_GRACE * connection.keep_alive
            if connection.last_activity + grace <= now:
                detail = f"{connection.keep_alive} s x {KEEP_ALIVE_GRACE}"
                # Sends nothing in MQTT 3 [MQTT-3.1.2-24].
                self.close_connection(connection, CloseReason.KEEP_ALIVE_TIMEOUT, detail)
                return
            deadlines.append(connection.last_activity + grace)
        if deadlines:
            self.schedule_timer(connection, min(deadlines))
