"""Routing and delivery: from an accepted PUBLISH to every matching session.

`publish` matches the topic against the subscription trie and hands one
delivery variant per granted QoS to `deliver`, so each variant is encoded
once for all its receivers. For one session:

- offline: the message waits in the session's bounded queue (QoS 0 only
  with `queue_qos0_messages`); at the bound it is dropped and counted.
- online, QoS 0: straight to the socket, or dropped (counted) while the
  client's socket buffer is full: at most once means best effort.
- online, QoS 1/2: out at once while the in-flight window has room and
  nothing older waits; otherwise into the queue. A queue at its high-water
  mark holds the publisher back instead of dropping (`flow.FlowControl`),
  unless the receiver has stalled.

It also keeps the QoS 1/2 in-flight bookkeeping (packet ids, PUBACK, PUBREC,
PUBCOMP, re-sends on resumption) and records each change for the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from midge.broker.authorizer import Authorizer
from midge.broker.closing import CloseReason
from midge.broker.config import BrokerConfig
from midge.broker.connection import Connection, State
from midge.broker.flow import FlowControl
from midge.broker.persistence import Persistence
from midge.broker.router import RetainedStore, SubscriptionTrie
from midge.broker.session import Awaiting, InflightMessage, Session
from midge.broker.shared import SharedSubscriptions
from midge.broker.stats import Stats
from midge.broker.subscribing import QOS_BITS, subscription_id_of
from midge.broker.variants import options_for, shared_copy, with_subscription_ids
from midge.broker.views import public_message
from midge.message import Message
from midge.protocol.codec import PUBREL_HEADER, encode_ack, encode_publish
from midge.protocol.reasons import NO_MATCHING_SUBSCRIBERS, NOT_AUTHORIZED, SUCCESS
from midge.store.base import (
    OutboundAdded,
    OutboundDeleted,
    OutboundSent,
    RetainedDeleted,
    RetainedSet,
)

if TYPE_CHECKING:
    from midge.cluster.forwarding import Forwarder
    from midge.embedding.hooks import EventHooks

log = logging.getLogger("midge.broker")

SYS_PREFIX = "$SYS/"  # clients cannot publish here, as in Mosquitto
# ... but another broker's bridge (Connect.bridge) may publish its state there.
BRIDGE_STATE_PREFIX = "$SYS/broker/connection/"


class Delivery:
    __slots__ = (
        "authorizer",
        "config",
        "connections",
        "disconnect",
        "events",
        "flow",
        "persistence",
        "remote",
        "retained",
        "sessions",
        "shared",
        "stats",
        "subscriptions",
        "wall_clock",
    )

    def __init__(
        self,
        config: BrokerConfig,
        sessions: dict[str, Session],
        connections: dict[str, Connection],
        persistence: Persistence,
        stats: Stats,
        authorizer: Authorizer | None,
        flow: FlowControl,
        disconnect: Callable[[Connection, CloseReason, str], None],
        wall_clock: Callable[[], float],
        events: EventHooks | None = None,
    ) -> None:
        """`sessions` and `connections` are the broker's own tables, read here;
        `disconnect` closes a slow consumer under slow_consumer_policy "disconnect";
        `events` are the event hooks (None: none)."""
        self.config = config
        self.sessions = sessions
        self.connections = connections
        self.persistence = persistence
        self.stats = stats
        self.authorizer = authorizer
        self.flow = flow
        self.disconnect = disconnect
        self.wall_clock = wall_clock  # message expiry is wall-clock time: it survives restarts
        # Only with on_deliver hooks: then deliver() tells them of every message.
        self.events = events if events is not None and events.deliver else None
        self.subscriptions = SubscriptionTrie()
        self.shared = SharedSubscriptions(config.shared_subscription_policy)
        self.retained = RetainedStore()
        # The cluster's forwarder (cluster/forwarding.py); None: a lone broker.
        self.remote: Forwarder | None = None

    # ------------------------------------------------------------ routing

    def publish_from_client(self, message: Message, origin: Connection, now: float) -> int:
        """Route a client's PUBLISH or will; `$SYS/...` belongs to the broker alone.
        Returns the 5.0 reason code for the acknowledgement."""
        if message.topic.startswith(SYS_PREFIX) and not (
            origin.bridge and message.topic.startswith(BRIDGE_STATE_PREFIX)
        ):
            log.debug("ignoring message to %r from %s", message.topic, origin.name)
            self.stats.dropped_acl += 1
            return NOT_AUTHORIZED
        authorizer = self.authorizer
        if authorizer is not None and not authorizer.can_publish(origin, message.topic):
            # 3.1.1 acknowledges it all the same, as Mosquitto does; 5.0 can say why.
            self.stats.dropped_acl += 1
            return NOT_AUTHORIZED
        # Counted here, not in `publish`: the broker's own $SYS messages are no traffic.
        self.stats.messages_received += 1
        if self.publish(message, origin, now):
            return SUCCESS
        if not message.retain:  # a retained one is kept all the same
            self.stats.dropped_no_subscribers += 1
        return NO_MATCHING_SUBSCRIBERS

    def publish(self, message: Message, origin: Connection | None, now: float) -> bool:
        """Route an application message to every matching session; `origin` is
        the connection it came from (held back if a receiver is behind).
        False when no subscription matched."""
        if message.retain:
            self.retained.set(message)
            # $SYS/ is the broker's own, published again after a restart: never stored.
            if not message.topic.startswith(SYS_PREFIX):
                self.persistence.record(
                    RetainedSet(message) if message.payload else RetainedDeleted(message.topic)
                )
        shares = self.shared.match(message.topic) if self.shared.groups else None
        remote = self.remote
        if remote is not None and not message.topic.startswith(SYS_PREFIX):
            # A cluster: other nodes get it too; shared subscriptions are decided there.
            forwarded, here = remote.forward(message, shares, origin)
            if here:
                for share_name in here:
                    self.deliver_shared(share_name, message, origin, now)
            return self.deliver_plain(message, origin, now) or forwarded or bool(here)
        if shares:
            for share_name in shares:
                self.deliver_shared(share_name, message, origin, now)
        return self.deliver_plain(message, origin, now) or bool(shares)

    def deliver_plain(
        self,
        message: Message,
        origin: Connection | None,
        now: float,
        skip: frozenset[str] | None = None,
    ) -> bool:
        """Deliver to the sessions of this node whose plain (not shared)
        subscriptions match, but those in `skip`; False when none did."""
        targets = self.subscriptions.match(message.topic)
        if not targets:
            return False
        if skip:  # a cluster's message for sessions that moved here (cluster/claims.py)
            targets = {key: value for key, value in targets.items() if key not in skip}
        if self.authorizer is not None:
            # Checked on the concrete topic, per receiver, as Mosquitto does.
            targets = self.authorizer.readers(message.topic, targets, self.connections)
        sessions = self.sessions
        # One object per delivered QoS, so each is encoded once for all receivers.
        # Forwards to existing subscribers carry retain 0 [MQTT-3.3.1-9].
        variants = [message.with_delivery(qos, False) for qos in range(message.qos + 1)]
        top = message.qos
        for client_id, options in targets.items():
            session = sessions.get(client_id)
            if session is None:
                continue  # discarded while this loop ran (a slow consumer's will)
            if options > QOS_BITS:  # 5.0 subscription options: see options_for
                variant = options_for(session, message, origin)
                if variant is None:
                    continue
            else:
                variant = variants[options if options < top else top]
            self.deliver(session, variant, origin, now)
        return True

    def deliver_shared(
        self,
        share_name: str,
        message: Message,
        origin: Connection | None,
        now: float,
        excluded: str = "",
    ) -> bool:
        """Give `message` to one member of a shared subscription (not `excluded`)."""
        publisher = origin.client_id if origin is not None else ""
        connections = self.connections
        chosen = self.shared.pick(
            share_name, message.topic, publisher, connections.__contains__, excluded
        )
        if chosen is None:
            return False
        client_id, options = chosen
        session = self.sessions.get(client_id)
        if session is None:
            return False
        authorizer = self.authorizer
        connection = connections.get(client_id)
        if (
            authorizer is not None
            and connection is not None
            and not authorizer.can_receive(connection, message.topic)
        ):
            return False
        self.deliver(session, shared_copy(message, options, share_name), origin, now)
        return True

    def hand_over_shared(self, session: Session, now: float) -> None:
        """A member's connection ended: its unacknowledged messages of shared
        subscriptions go to other members (section 4.8.2)."""
        for entry in list(session.inflight.values()):
            message = entry.message
            if message.share is None or entry.awaiting is Awaiting.PUBCOMP:
                continue  # after PUBREC the member has it: the flow just ends
            if self.deliver_shared(message.share, message, None, now, session.client_id):
                del session.inflight[entry.packet_id]
                if session.persistent:
                    self.persistence.record(OutboundDeleted(session.client_id, entry.seq))
        for seq, message in session.take_shared():
            assert message.share is not None
            if session.persistent:
                self.persistence.record(OutboundDeleted(session.client_id, seq))
            if not self.deliver_shared(message.share, message, None, now, session.client_id):
                self._enqueue(session, message)  # nobody else: it stays here

    def deliver(
        self, session: Session, message: Message, origin: Connection | None, now: float
    ) -> None:
        events = self.events
        if events is not None:
            events.notify(events.deliver, session.client_id, public_message(message))
        connection = self.connections.get(session.client_id)
        if connection is None:
            if message.qos or self.config.queue_qos0_messages:
                self._queue_offline(session, message)
        elif message.qos == 0:
            if connection.write_blocked:
                self._drop(session, "socket buffer full")
                self.stats.dropped_write_buffer += 1
            else:
                self._write_publish(connection, message, None)
        elif (
            session.queue
            or connection.write_blocked
            or len(session.inflight) >= self._window(connection)
        ):
            self._queue_online(session, connection, message, origin, now)
        else:
            self._send_inflight(session, connection, message, None, now)

    def deliver_retained(
        self, session: Session, topic_filter: str, options: int, now: float
    ) -> None:
        """Retained messages for a new subscription, with the retain flag [MQTT-3.3.1-6]."""
        authorizer = self.authorizer
        connection = self.connections.get(session.client_id)
        subscription_id = subscription_id_of(options)
        wall_now = self.wall_clock()
        for message in self.retained.match(topic_filter):
            if (
                authorizer is not None
                and connection is not None
                and not authorizer.can_receive(connection, message.topic)
            ):
                continue
            if message.expired(wall_now):
                continue  # never delivered from the retained store [MQTT-3.3.2-5]
            qos = min(options & QOS_BITS, message.qos)
            delivered = message.with_delivery(qos, True)
            if subscription_id:
                delivered = with_subscription_ids(delivered, (subscription_id,))
            self.deliver(session, delivered, None, now)

    # ------------------------------------------------------------- queues

    def _queue_offline(self, session: Session, message: Message) -> None:
        if session.queue_limits is not None:
            self._queue_bounded(session, message, session.queue_limits, "offline")
            return
        config = self.config
        if session.can_queue(message, config.max_queued_messages, config.max_queued_bytes):
            self._enqueue(session, message)
        else:
            self._drop(session, "message queue full while offline")
            self.stats.dropped_queue_full += 1

    def _queue_bounded(
        self, session: Session, message: Message, limits: tuple[int, bool], why: str
    ) -> None:
        """A session with a bound of its own (Session.queue_limits): at it, the
        newest or the oldest message is dropped, counted."""
        max_messages, drop_oldest = limits
        if session.can_queue(message, max_messages, 0):
            self._enqueue(session, message)
            return
        if drop_oldest:
            seq, _ = session.dequeue()
            self.persistence.record(OutboundDeleted(session.client_id, seq), barrier=False)
            self._enqueue(session, message)
        self._drop(
            session, f"message queue full ({why}): dropping the {('newest', 'oldest')[drop_oldest]}"
        )
        self.stats.dropped_queue_full += 1

    def _queue_online(
        self,
        session: Session,
        receiver: Connection,
        message: Message,
        origin: Connection | None,
        now: float,
    ) -> None:
        flow = self.flow
        if flow.has_room(session, message):
            self._enqueue(session, message)
            return
        if not flow.is_stalled(receiver, now):
            # Behind but acknowledging: never dropped; whoever feeds the queue waits.
            self._enqueue(session, message)
            if origin is None:
                flow.hold_back(receiver, None)  # a cluster's inbound stream waits for it
            elif origin.state is State.CONNECTED:
                flow.hold_back(receiver, origin)
            return
        if session.queue_limits is not None:
            self._queue_bounded(session, message, session.queue_limits, "the client stalled")
            return
        config = self.config
        if session.can_queue(message, config.max_queued_messages, config.max_queued_bytes):
            self._enqueue(session, message)
        elif config.slow_consumer_policy == "disconnect":
            self._count_drop(session)
            self.stats.dropped_queue_full += 1
            self.disconnect(receiver, CloseReason.SLOW_CONSUMER, "stalled with a full queue")
        else:
            self._drop(session, "message queue full and the client stalled")
            self.stats.dropped_queue_full += 1

    def _enqueue(self, session: Session, message: Message) -> None:
        seq = session.next_seq()
        session.enqueue(seq, message)
        if session.persistent:
            self.persistence.record(OutboundAdded(session.client_id, seq, message))

    def _drop(self, session: Session, why: str) -> None:
        """Count a dropped message; the first of an episode is logged."""
        if not session.dropping:
            session.dropping = True
            log.warning("dropping messages for %r: %s", session.client_id, why)
        self._count_drop(session)

    def _count_drop(self, session: Session) -> None:
        session.dropped_messages += 1
        self.stats.messages_dropped += 1

    def progress(self, connection: Connection, session: Session, now: float) -> None:
        """The client acknowledged something or read its socket's backlog."""
        self.flow.progress(connection, now)
        if session.dropping:
            self.end_drop_episode(session)

    def end_drop_episode(self, session: Session) -> None:
        """The client reads (or is back): the next drop starts a new episode."""
        if session.dropping:
            session.dropping = False
            log.info(
                "%r: %d messages dropped in all so far",
                session.client_id,
                session.dropped_messages,
            )

    # ----------------------------------------------------------- in flight

    def _send_inflight(
        self,
        session: Session,
        connection: Connection,
        message: Message,
        seq: int | None,
        now: float,
    ) -> None:
        """Send a QoS 1/2 message; `seq` is None for one the store has not seen yet."""
        packet_id = session.allocate_packet_id()
        link = connection.mqtt5
        data = None  # 3.1.1: `_write_publish` encodes it (once for all receivers)
        if link is not None:
            data = link.publish_bytes(message, packet_id, False, self.wall_clock)
            if data is None:
                # Too large for this client: as if sent and acknowledged [MQTT-3.1.2-25].
                self._count_too_large(session, seq)
                return
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
        self.flow.sent(connection, now)
        # QoS 1 goes out before its row commits: if the client acknowledges
        # first, the store never writes the row (store/changes.py). QoS 2
        # must wait: a crash would make the publisher's re-send a second copy.
        durable = message.qos != 1
        if data is None:
            self._write_publish(connection, message, packet_id, durable=durable)
        else:
            stats = self.stats
            if message.qos == 1:
                stats.publish_sent_qos1 += 1
            else:
                stats.publish_sent_qos2 += 1
            stats.publish_bytes_sent += len(message.payload)
            connection.send(data, durable)

    def acknowledged(
        self, connection: Connection, session: Session, entry: InflightMessage, now: float
    ) -> None:
        """The client completed the flow of an outbound message (PUBACK / PUBCOMP)."""
        del session.inflight[entry.packet_id]
        if session.persistent:
            self.persistence.record(OutboundDeleted(session.client_id, entry.seq), barrier=False)
        self.progress(connection, session, now)
        self.resume(connection, now)

    def received(
        self, connection: Connection, session: Session, entry: InflightMessage, now: float
    ) -> None:
        """The client sent PUBREC: from now on the broker re-sends PUBREL, not PUBLISH."""
        entry.awaiting = Awaiting.PUBCOMP
        if session.persistent:
            self.persistence.record(
                OutboundSent(session.client_id, entry.seq, entry.packet_id, Awaiting.PUBCOMP)
            )
        self.progress(connection, session, now)

    def _write_publish(
        self,
        connection: Connection,
        message: Message,
        packet_id: int | None,
        dup: bool = False,
        durable: bool = True,
    ) -> None:
        stats = self.stats
        link = connection.mqtt5
        data = None  # 3.1.1: encoded below (once for all receivers)
        if link is not None:
            data = link.publish_bytes(message, packet_id, dup, self.wall_clock)
            if data is None:
                stats.dropped_too_large += 1
                stats.messages_dropped += 1
                return
        qos = message.qos
        if qos == 0:
            stats.publish_sent_qos0 += 1
        elif qos == 1:
            stats.publish_sent_qos1 += 1
        else:
            stats.publish_sent_qos2 += 1
        stats.publish_bytes_sent += len(message.payload)
        if data is not None:
            connection.send(data, durable)
            return
        if dup:
            connection.send(
                encode_publish(
                    message.topic, message.payload, message.qos, message.retain, dup, packet_id
                )
            )
        else:
            connection.send(message.wire(packet_id), durable)

    def resume(self, connection: Connection, now: float) -> None:
        """Send queued messages while the window and the socket have room."""
        session = connection.session
        if session is None:
            return
        window = self._window(connection)
        queue = session.queue
        authorizer = self.authorizer
        sent = False
        while queue and not connection.write_blocked and connection.state is State.CONNECTED:
            if queue[0][1].qos and len(session.inflight) >= window:
                break
            seq, message = session.dequeue()
            sent = True
            if message.expires_at is not None and message.expired(self.wall_clock()):
                # Expired while it waited: never delivered [MQTT-3.3.2-5].
                self.stats.dropped_expired += 1
                if session.persistent:
                    self.persistence.record(OutboundDeleted(session.client_id, seq))
                continue
            if authorizer is not None and not authorizer.can_receive(connection, message.topic):
                # Queued under other rules, or for a user name unknown then: checked now.
                if session.persistent:
                    self.persistence.record(OutboundDeleted(session.client_id, seq))
                continue
            if message.qos:
                self._send_inflight(session, connection, message, seq, now)
            else:
                if session.persistent:
                    # Deleted before it goes out: QoS 0 is at most once, even across a crash.
                    self.persistence.record(OutboundDeleted(session.client_id, seq))
                self._write_publish(connection, message, None)
        if sent and connection.feeders is not None:
            self.flow.dequeued(connection, session)

    def _window(self, connection: Connection) -> int:
        """QoS 1/2 messages that may be unacknowledged: ours, or the 5.0 client's
        Receive Maximum if smaller [MQTT-3.3.4-9]."""
        window = self.config.max_inflight_messages
        link = connection.mqtt5
        if link is not None and link.receive_maximum < window:
            return link.receive_maximum
        return window

    def _count_too_large(self, session: Session, seq: int | None) -> None:
        self.stats.dropped_too_large += 1
        self.stats.messages_dropped += 1
        if seq is not None and session.persistent:
            self.persistence.record(OutboundDeleted(session.client_id, seq))

    def resend_inflight(self, session: Session, connection: Connection, now: float) -> None:
        """On a resumed session, repeat every unacknowledged PUBLISH (DUP) and PUBREL."""
        for entry in session.inflight.values():
            if entry.awaiting is Awaiting.PUBCOMP:
                connection.send(encode_ack(PUBREL_HEADER, entry.packet_id))
            else:
                self._write_publish(connection, entry.message, entry.packet_id, dup=True)
        if session.inflight:
            connection.waiting_since = now
