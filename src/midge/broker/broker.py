"""The broker's shared state and the paths every packet handler relies on.

Sans-IO like the rest of the core: connections hand it packets and the
current time; it answers by writing bytes to connection transports. The
packet handlers (one per packet type) are in `handlers.py`; this module owns
what several of them share: sessions, routing and delivery, closing a
connection (will, session clean-up, one log line), and timers.

Delivery to one session (`deliver`): QoS 0 goes straight to the socket
unless the client is not reading (then it is dropped and counted). QoS 1/2
goes out while the in-flight window has room and nothing older waits;
otherwise it waits in the session's bounded queue. At the queue's bound the
message is dropped (counted) or, with slow_consumer_policy = "disconnect",
the client is disconnected.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from midge.broker.auth import Authenticator
from midge.broker.authorizer import Authorizer, build_authorizer, load_acl
from midge.broker.config import BrokerConfig, ListenerConfig
from midge.broker.connection import Connection, State, Transport
from midge.broker.handlers import HANDLERS, answer_connect
from midge.broker.hooks import AuthHook, ask_authenticate, load_hook
from midge.broker.message import Message
from midge.broker.persistence import Persistence, restore_session
from midge.broker.router import RetainedStore, SubscriptionTrie
from midge.broker.session import Awaiting, InflightMessage, Session
from midge.broker.throttle import LoginThrottle
from midge.protocol.codec import PUBREL_HEADER, encode_ack, encode_publish
from midge.protocol.errors import MQTTError, ProtocolError
from midge.protocol.packets import Connect, ConnectReturnCode, Packet
from midge.store.base import (
    OutboundAdded,
    OutboundDeleted,
    OutboundSent,
    RetainedDeleted,
    RetainedSet,
    SessionDeleted,
    SessionSaved,
    Store,
    StoredState,
    SubscriptionDeleted,
    SubscriptionSet,
)

log = logging.getLogger("midge.broker")

SYS_PREFIX = "$SYS/"  # clients cannot publish here, as in Mosquitto
KEEP_ALIVE_GRACE = 1.5  # a client is gone after 1.5 x keep-alive of silence [MQTT-3.1.2-24]
EXPIRY_CHECK_SECONDS = 60.0  # how often abandoned persistent sessions are looked for


@dataclass(slots=True)
class Stats:
    """Counters since start; later published under $SYS and to Prometheus."""

    connections_accepted: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0
    protocol_violations: int = 0


class Broker:
    def __init__(
        self,
        config: BrokerConfig,
        authenticator: Authenticator | None = None,
        store: Store | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`store` receives every change to durable state; None keeps nothing."""
        self.config = config
        self.authenticator = authenticator or Authenticator.from_settings(config.password_file)
        self.auth_hook: AuthHook | None = load_hook(config.auth_hook) if config.auth_hook else None
        # None without an ACL file and a hook: then the hot path checks only this.
        self.authorizer: Authorizer | None = build_authorizer(config, self.auth_hook)
        self.sessions: dict[str, Session] = {}
        self.connections: dict[str, Connection] = {}  # client id -> its live connection
        self.subscriptions = SubscriptionTrie()
        self.retained = RetainedStore()
        self.stats = Stats()
        self._open: set[Connection] = set()  # every socket, CONNECT or not
        self._pending_output: list[Connection] = []  # connections with bytes to write
        self._timers: list[tuple[float, int, Connection]] = []
        self._timer_order = itertools.count()
        self._client_numbers = itertools.count(1)
        self.wall_clock = wall_clock
        self._next_expiry_check = 0.0
        self.persistence = Persistence(store, hold=config.durability != "memory")
        self.persistence.on_commit = self.committed
        self.holding: set[Connection] = set()  # connections with output awaiting a commit
        self.throttle = LoginThrottle(config.auth_failure_delay, config.auth_failure_max_delay)
        self._default_listener = config.effective_listeners()[0]

    def restore(self, state: StoredState) -> None:
        """Take over what the store kept: offline sessions and retained messages."""
        now_wall = self.wall_clock()
        for stored in state.sessions:
            session = restore_session(stored, now_wall)
            self.sessions[session.client_id] = session
            for topic_filter, qos in session.subscriptions.items():
                self.subscriptions.add(topic_filter, session.client_id, qos)
        for message in state.retained:
            self.retained.set(message)
        self.expire_sessions(now_wall)
        self.flush()  # expired sessions leave the store now, not at the next batch

    # ------------------------------------------------------------ connections

    def connection_made(
        self,
        transport: Transport,
        peer: str,
        now: float,
        listener: ListenerConfig | None = None,
        tls_identity: str | None = None,
    ) -> Connection:
        """A new socket on `listener` (default: the first configured one)."""
        connection = Connection(
            self, transport, peer, now, listener or self._default_listener, tls_identity
        )
        self._open.add(connection)
        self.stats.connections_accepted += 1
        self.schedule_timer(connection, now + self.config.connect_timeout)
        return connection

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def handle_packet(self, connection: Connection, packet: Packet, now: float) -> None:
        if connection.state is State.AWAITING_CONNECT:
            if type(packet) is not Connect:
                raise ProtocolError(f"first packet is {type(packet).__name__}, not CONNECT")
        elif type(packet) is Connect:
            raise ProtocolError("second CONNECT on one connection")  # [MQTT-3.1.0-2]
        HANDLERS[type(packet)](self, connection, packet, now)

    def close_connection(
        self,
        connection: Connection,
        reason: str,
        publish_will: bool = True,
        flush: bool = False,
    ) -> None:
        """The one way a connection ends: socket, session, will, log line.

        With `flush` the bytes already sent (a refusing CONNACK) go out first;
        otherwise the socket is dropped at once, since waiting to flush to a
        client that stopped reading could keep it open forever.
        """
        if connection.state is State.CLOSED:
            return
        connection.state = State.CLOSED
        self._open.discard(connection)
        connection.held.clear()
        self.holding.discard(connection)
        if flush and not connection.write_blocked:
            connection.write_outbox()
            connection.transport.close()
        else:
            connection.outbox.clear()
            connection.transport.abort()
        if reason.startswith("protocol violation"):
            self.stats.protocol_violations += 1
        log.info("closing %s: %s", connection.name, reason)
        will, connection.will = connection.will, None
        session = connection.session
        if session is not None and self.connections.get(session.client_id) is connection:
            del self.connections[session.client_id]
            session.connected = False
            if session.persistent:
                session.disconnected_at = self.wall_clock()
                # Not a barrier: lost in a crash, the restart dates it itself.
                self.persistence.record(
                    SessionSaved(session.client_id, session.disconnected_at), barrier=False
                )
            else:
                self.discard_session(session)  # [MQTT-3.1.2-6]
        if will is not None and publish_will:
            will_message = Message(will.topic, will.payload, will.qos, will.retain)
            self.publish_from_client(will_message, connection)

    def close_all(self, reason: str) -> None:
        """Broker shutdown: every socket closes; wills stay unpublished."""
        for connection in list(self._open):
            self.close_connection(connection, reason, publish_will=False, flush=True)
        self.flush()

    def mark_pending(self, connection: Connection) -> None:
        self._pending_output.append(connection)

    def flush(self) -> None:
        """End of a batch of input or timers: submit its store operations, then
        write every connection's queued bytes (one write each)."""
        self.persistence.end_batch()
        pending = self._pending_output
        if pending:
            self._pending_output = []
            for connection in pending:
                connection.write_outbox()

    def committed(self, epoch: int) -> None:
        """Batches up to `epoch` are durable: release what waited for them."""
        self.persistence.committed = max(self.persistence.committed, epoch)
        for connection in list(self.holding):
            connection.release_held(epoch)
        self.flush()

    def new_client_id(self) -> str:
        """A unique id for a client that sent an empty one [MQTT-3.1.3-6]."""
        while True:
            client_id = f"midge-auto-{next(self._client_numbers)}"
            if client_id not in self.sessions:
                return client_id

    # ---------------------------------------------------------- authentication

    def authenticate(
        self, connection: Connection, packet: Connect, allow_anonymous: bool
    ) -> ConnectReturnCode:
        """The CONNACK code for a CONNECT's credentials: the hook, then the password file.

        Every refusal is logged as a warning (never with the password).
        """
        code = self._login(connection, packet, allow_anonymous)
        if code is not ConnectReturnCode.ACCEPTED:
            log.warning(
                "login refused (%s): client %r, user %r, from %s",
                code.name,
                packet.client_id,
                packet.username,
                connection.peer,
            )
        return code

    def _login(
        self, connection: Connection, packet: Connect, allow_anonymous: bool
    ) -> ConnectReturnCode:
        hook = self.auth_hook
        if hook is not None:
            verdict = ask_authenticate(
                hook, packet.client_id, packet.username, packet.password, connection.peer
            )
            if verdict:
                return ConnectReturnCode.ACCEPTED
            if verdict is not None:
                if packet.username is None:
                    return ConnectReturnCode.NOT_AUTHORIZED
                return ConnectReturnCode.BAD_USERNAME_OR_PASSWORD
        return self.authenticator.check(packet.username, packet.password, allow_anonymous)

    def reload_auth(self) -> bool:
        """Re-read the password file and the ACL file (the SIGHUP handler calls this).

        Connected clients stay connected; the new rules apply to every later
        packet and delivery (cached decisions are dropped). If either file is
        unreadable or broken, both old ones stay, the error is logged, and the
        answer is False.
        """
        config = self.config
        try:
            authenticator = (
                Authenticator.from_settings(config.password_file) if config.password_file else None
            )
            acl = load_acl(config.acl_file)
        except (OSError, ValueError) as exc:  # PasswordFileError and AclFileError are ValueErrors
            log.error("reload of authentication failed, keeping the previous rules: %s", exc)
            return False
        if authenticator is not None:
            self.authenticator = authenticator
        if self.authorizer is not None:
            self.authorizer.replace_acl(acl)
        log.info("reloaded password file %r and ACL file %r", config.password_file, config.acl_file)
        return True

    # --------------------------------------------------------------- sessions

    def add_session(self, client_id: str, persistent: bool) -> Session:
        session = self.sessions[client_id] = Session(client_id, persistent)
        if persistent:
            self.persistence.record(SessionSaved(client_id))
        return session

    def discard_session(self, session: Session) -> None:
        for topic_filter in session.subscriptions:
            self.subscriptions.remove(topic_filter, session.client_id)
        if self.authorizer is not None:
            self.authorizer.forget(session.client_id)
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if session.persistent:
            self.persistence.record(SessionDeleted(session.client_id))

    def expire_sessions(self, now_wall: float) -> None:
        """Delete persistent sessions offline longer than persistent_session_expiry."""
        expiry = self.config.persistent_session_expiry
        if not expiry:
            return
        for session in list(self.sessions.values()):
            offline_since = session.disconnected_at
            if (
                not session.connected
                and offline_since is not None
                and now_wall - offline_since > expiry
            ):
                log.info("session %r expired after %d s offline", session.client_id, expiry)
                self.discard_session(session)

    def subscribe(self, session: Session, topic_filter: str, qos: int) -> None:
        session.subscriptions[topic_filter] = qos
        self.subscriptions.add(topic_filter, session.client_id, qos)
        if session.persistent:
            self.persistence.record(SubscriptionSet(session.client_id, topic_filter, qos))

    def unsubscribe(self, session: Session, topic_filter: str) -> None:
        if session.subscriptions.pop(topic_filter, None) is not None:
            self.subscriptions.remove(topic_filter, session.client_id)
            if session.persistent:
                self.persistence.record(SubscriptionDeleted(session.client_id, topic_filter))

    # ------------------------------------------------------ routing, delivery

    def publish_from_client(self, message: Message, origin: Connection) -> None:
        """Route a client's PUBLISH or will; `$SYS/...` belongs to the broker alone."""
        if message.topic.startswith(SYS_PREFIX):
            log.debug("ignoring message to %r from %s", message.topic, origin.name)
            return
        authorizer = self.authorizer
        if authorizer is not None and not authorizer.can_publish(origin, message.topic):
            return  # acknowledged by the caller all the same, as Mosquitto does
        self.publish(message)

    def publish(self, message: Message) -> None:
        """Route an incoming application message to every matching session."""
        self.stats.messages_received += 1
        if message.retain:
            self.retained.set(message)
            self.persistence.record(
                RetainedSet(message) if message.payload else RetainedDeleted(message.topic)
            )
        targets = self.subscriptions.match(message.topic)
        if not targets:
            return
        if self.authorizer is not None:
            # Checked on the concrete topic, per receiver, as Mosquitto does.
            targets = self.authorizer.readers(message.topic, targets, self.connections)
        sessions = self.sessions
        # One object per delivered QoS, so each is encoded once for all receivers.
        # Forwards to existing subscribers carry retain 0 [MQTT-3.3.1-9].
        variants = [message.with_delivery(qos, False) for qos in range(message.qos + 1)]
        top = message.qos
        for client_id, granted_qos in targets.items():
            session = sessions.get(client_id)
            if session is None:
                continue  # discarded while this loop ran (a slow consumer's will)
            self.deliver(session, variants[granted_qos if granted_qos < top else top])

    def deliver(self, session: Session, message: Message) -> None:
        connection = self.connections.get(session.client_id)
        if connection is None:
            self._deliver_offline(session, message)
        elif message.qos == 0:
            if connection.write_blocked:
                self._drop(session, "socket buffer full")
            else:
                self._write_publish(connection, message, None)
        elif (
            session.queue
            or connection.write_blocked
            or len(session.inflight) >= self.config.max_inflight_messages
        ):
            self._queue(session, connection, message)
        else:
            self._send_inflight(session, connection, message, None)

    def _deliver_offline(self, session: Session, message: Message) -> None:
        if message.qos == 0 and not self.config.queue_qos0_messages:
            return  # QoS 0 is not kept for offline clients by default
        self._queue(session, None, message)

    def _queue(self, session: Session, connection: Connection | None, message: Message) -> None:
        config = self.config
        if session.can_queue(message, config.max_queued_messages, config.max_queued_bytes):
            seq = session.next_seq()
            session.enqueue(seq, message)
            if session.persistent:
                self.persistence.record(OutboundAdded(session.client_id, seq, message))
        elif connection is not None and config.slow_consumer_policy == "disconnect":
            self.close_connection(connection, "slow consumer: message queue full")
            session.dropped_messages += 1
            self.stats.messages_dropped += 1
        else:
            self._drop(session, "message queue full")

    def _drop(self, session: Session, why: str) -> None:
        if session.dropped_messages == 0:
            log.warning("dropping messages for %r: %s", session.client_id, why)
        session.dropped_messages += 1
        self.stats.messages_dropped += 1

    def _send_inflight(
        self, session: Session, connection: Connection, message: Message, seq: int | None
    ) -> None:
        """Send a QoS 1/2 message; `seq` is None for one the store has not seen yet."""
        packet_id = session.allocate_packet_id()
        awaiting = Awaiting.PUBACK if message.qos == 1 else Awaiting.PUBREC
        if seq is None:
            seq = session.next_seq()
            if session.persistent:
                self.persistence.record(
                    OutboundAdded(session.client_id, seq, message, packet_id, awaiting)
                )
        elif session.persistent:
            # A QoS 1 message whose packet id is lost in a crash is sent again under
            # a new one: a duplicate QoS 1 allows. A QoS 2 one must not be.
            self.persistence.record(
                OutboundSent(session.client_id, seq, packet_id, awaiting),
                barrier=message.qos == 2,
            )
        session.inflight[packet_id] = InflightMessage(packet_id, message, awaiting, seq)
        # QoS 1 goes out before its row commits: if the client acknowledges
        # first, the writer drops the row unwritten (`net_operations`). QoS 2
        # must wait: a crash would make the publisher's re-send a second copy.
        self._write_publish(connection, message, packet_id, durable=message.qos != 1)

    def acknowledged(self, session: Session, entry: InflightMessage) -> None:
        """The client completed the flow of an outbound message (PUBACK / PUBCOMP)."""
        del session.inflight[entry.packet_id]
        if session.persistent:
            self.persistence.record(OutboundDeleted(session.client_id, entry.seq), barrier=False)

    def received(self, session: Session, entry: InflightMessage) -> None:
        """The client sent PUBREC: from now on the broker re-sends PUBREL, not PUBLISH."""
        entry.awaiting = Awaiting.PUBCOMP
        if session.persistent:
            self.persistence.record(
                OutboundSent(session.client_id, entry.seq, entry.packet_id, Awaiting.PUBCOMP)
            )

    def _write_publish(
        self,
        connection: Connection,
        message: Message,
        packet_id: int | None,
        dup: bool = False,
        durable: bool = True,
    ) -> None:
        self.stats.messages_sent += 1
        if dup:
            connection.send(
                encode_publish(
                    message.topic, message.payload, message.qos, message.retain, dup, packet_id
                )
            )
        else:
            connection.send(message.wire(packet_id), durable)

    def resume_delivery(self, connection: Connection) -> None:
        """Send queued messages while the window and the socket have room."""
        session = connection.session
        if session is None:
            return
        window = self.config.max_inflight_messages
        queue = session.queue
        authorizer = self.authorizer
        while queue and not connection.write_blocked and connection.state is State.CONNECTED:
            if queue[0][1].qos and len(session.inflight) >= window:
                return
            seq, message = session.dequeue()
            if authorizer is not None and not authorizer.can_receive(connection, message.topic):
                # Queued under other rules, or for a user name unknown then: checked now.
                if session.persistent:
                    self.persistence.record(OutboundDeleted(session.client_id, seq))
                continue
            if message.qos:
                self._send_inflight(session, connection, message, seq)
            else:
                if session.persistent:
                    # Deleted before it goes out: QoS 0 is at most once, even across a crash.
                    self.persistence.record(OutboundDeleted(session.client_id, seq))
                self._write_publish(connection, message, None)

    def resend_inflight(self, session: Session, connection: Connection) -> None:
        """On a resumed session, repeat every unacknowledged PUBLISH (DUP) and PUBREL."""
        for entry in session.inflight.values():
            if entry.awaiting is Awaiting.PUBCOMP:
                connection.send(encode_ack(PUBREL_HEADER, entry.packet_id))
            else:
                self._write_publish(connection, entry.message, entry.packet_id, dup=True)

    def deliver_retained(self, session: Session, topic_filter: str, granted_qos: int) -> None:
        """Retained messages for a new subscription, with the retain flag [MQTT-3.3.1-6]."""
        authorizer = self.authorizer
        connection = self.connections.get(session.client_id)
        for message in self.retained.match(topic_filter):
            if (
                authorizer is not None
                and connection is not None
                and not authorizer.can_receive(connection, message.topic)
            ):
                continue
            qos = min(granted_qos, message.qos)
            self.deliver(session, message.with_delivery(qos, True))

    # ----------------------------------------------------------------- timers

    def schedule_timer(self, connection: Connection, deadline: float) -> None:
        current = connection.timer_at
        if current is None or deadline < current:
            connection.timer_at = deadline
            heapq.heappush(self._timers, (deadline, next(self._timer_order), connection))

    def next_timer(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def handle_timer(self, now: float) -> None:
        """Close connections silent past their keep-alive or CONNECT deadline."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, connection = heapq.heappop(timers)
            if connection.timer_at != deadline or connection.state is State.CLOSED:
                continue  # superseded by an earlier deadline, or already gone
            connection.timer_at = None
            self._check_deadline(connection, now)
        if now >= self._next_expiry_check:
            self._next_expiry_check = now + EXPIRY_CHECK_SECONDS
            self.expire_sessions(self.wall_clock())
            self.throttle.forget(now)
        self.flush()

    def defer_connect(
        self, connection: Connection, packet: Connect, now: float, turn: float
    ) -> None:
        """Hold a CONNECT until `turn` (login throttling); later input waits too."""
        connection.state = State.THROTTLED
        connection.deferred_connect = (turn, packet)
        log.info(
            "%s: CONNECT answered in %.1f s (failed logins from %s)",
            connection.name,
            turn - now,
            connection.address,
        )
        self.schedule_timer(connection, turn)

    def _answer_deferred(self, connection: Connection, now: float) -> None:
        assert connection.deferred_connect is not None
        turn, packet = connection.deferred_connect
        if now < turn:  # an earlier timer of this connection (its connect timeout)
            self.schedule_timer(connection, turn)
            return
        connection.deferred_connect = None
        connection.state = State.AWAITING_CONNECT
        try:
            answer_connect(self, connection, packet, now)
        except MQTTError as exc:
            self.close_connection(connection, f"protocol violation: {exc}")
        connection.data_received(b"", now)  # what arrived while it waited

    def _check_deadline(self, connection: Connection, now: float) -> None:
        if connection.state is State.THROTTLED:
            self._answer_deferred(connection, now)
            return
        if connection.state is State.AWAITING_CONNECT:
            deadline = connection.opened_at + self.config.connect_timeout
            reason = "no CONNECT within connect_timeout"
        elif connection.keep_alive:
            deadline = connection.last_activity + KEEP_ALIVE_GRACE * connection.keep_alive
            reason = f"keep-alive timeout ({connection.keep_alive} s x {KEEP_ALIVE_GRACE})"
        else:
            return
        if deadline <= now:
            self.close_connection(connection, reason)  # sends nothing [MQTT-3.1.2-24]
        else:
            self.schedule_timer(connection, deadline)
