"""Where a cluster meets the core: claimed client ids, released sessions,
messages from other nodes. Sans-IO like the rest of the core; the asyncio
side (cluster/node.py, cluster/claims.py) calls these functions.

One client id has one connection cluster-wide. A CONNECT for a client id
this node has no session for waits in state CLAIMING (`connect._accept`)
while `Broker.claims` asks Redis who had it and has that node let go
(`release_client` there); `finish_claim` then adopts the session Redis kept,
if any, and answers the CONNECT as a lone broker would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from midge.broker.closing import CloseReason
from midge.broker.connect import PendingClaim, accept_session, refuse_claim
from midge.broker.connection import Connection, State
from midge.broker.mqtt5 import will_to_message
from midge.broker.persistence import restore_session
from midge.broker.session import Session
from midge.broker.variants import options_for
from midge.message import Message
from midge.protocol.packets import Will
from midge.store.base import SessionSaved, StoredSession, WillStored

if TYPE_CHECKING:
    from midge.broker.broker import Broker


class Claims(Protocol):
    """The cluster's side of a claim (cluster/claims.py)."""

    def claim(self, connection: Connection, client_id: str) -> None:
        """Make this node the client id's owner, then call `finish_claim`
        (or `fail_claim`) on the loop."""

    def store_will(self, connection: Connection, will: Will) -> None:
        """Keep the connected client's will where another node finds it."""


def finish_claim(
    broker: Broker, connection: Connection, stored: StoredSession | None, now: float
) -> None:
    """The cluster gave this node the client id, and the session Redis kept
    for it (None: none): the waiting CONNECT is answered."""
    if connection.state is not State.CLAIMING:
        return  # closed while it waited (its connect timeout, say)
    pending = connection.pending_claim
    assert isinstance(pending, PendingClaim)
    if stored is not None and pending.client_id not in broker.sessions:
        adopt_session(broker, stored)

    def answer(now: float) -> None:
        accept_session(
            broker,
            connection,
            pending.packet,
            pending.client_id,
            now,
            pending.auth,
            pending.username,
        )
        connection.read_packets(now)  # what arrived while it waited

    connection.guarded(answer, now)


def fail_claim(broker: Broker, connection: Connection, detail: str, now: float) -> None:
    """The cluster could not give this node the client id: refused, retryable."""
    if connection.state is State.CLAIMING:
        connection.guarded(lambda now: refuse_claim(broker, connection, detail), now)


def adopt_session(broker: Broker, stored: StoredSession) -> Session:
    """A persistent session from Redis becomes this node's: in memory, routed,
    and marked as this node's in the store."""
    session = restore_session(stored, broker.wall_clock())
    client_id = session.client_id
    broker.sessions[client_id] = session
    for topic_filter, options in session.subscriptions.items():
        broker.index_subscription(topic_filter, client_id, options)
    broker.persistence.record(
        SessionSaved(client_id, session.disconnected_at, session.expiry_interval)
    )
    return session


def release_client(
    broker: Broker, client_id: str, now: float, publish_will: bool = True
) -> dict[str, int] | None:
    """Another node took `client_id` over: its connection here closes (its
    will is published, as for any take-over, unless the other node did) and
    its session leaves this node's memory, not the store. Returns the
    session's subscriptions (None: this node had no session for it)."""
    broker.now = now
    connection = broker.connections.get(client_id)
    if connection is not None:
        broker.close_connection(connection, CloseReason.TAKEN_OVER, publish_will=publish_will)
    session = broker.sessions.get(client_id)
    if session is None:
        broker.flush()
        return None
    broker.wills.cancel(client_id)  # resumed elsewhere: a delayed will does not go out
    subscriptions = dict(session.subscriptions)
    broker.forget_session(session, delete=False)
    broker.flush()
    return subscriptions


def deliver_forwarded(
    broker: Broker,
    message: Message,
    plain: bool,
    shares: tuple[str, ...],
    skip: frozenset[str],
    now: float,
) -> None:
    """A message another node forwarded here: to this node's plain subscribers
    when `plain` (but those in `skip`, whose sessions arrived here after the
    sender routed it: see cluster/claims.py), and to one member of each
    share named."""
    broker.now = now
    delivery = broker.delivery
    for share_name in shares:
        delivery.deliver_shared(share_name, message, None, now)
    if plain:
        delivery.deliver_plain(message, None, now, skip)


def deliver_to_client(broker: Broker, client_id: str, message: Message, now: float) -> None:
    """A message relayed for one session that moved here (cluster/claims.py)."""
    broker.now = now
    session = broker.sessions.get(client_id)
    if session is None:
        return
    variant = options_for(session, message, None)
    if variant is not None:
        broker.delivery.deliver(session, variant, None, now)


def will_operation(connection: Connection, will: Will) -> WillStored:
    """The store operation that keeps `will` for the cluster (see `Claims`)."""
    connection.will_stored = True
    message = Message(will.topic, will.payload, will.qos, will.retain, None, None)
    properties = will.properties
    if properties is None:
        return WillStored(connection.client_id, message, None)
    full = will_to_message(will, lambda: 0.0)  # its properties as a message carries them
    message = Message(will.topic, will.payload, will.qos, will.retain, full.properties, None)
    return WillStored(connection.client_id, message, properties.message_expiry_interval)
