"""Read-only snapshots of the broker's state, for hooks and embedding programs.

Each is a frozen value taken when asked: holding one keeps nothing of the
broker alive, and changing the broker later does not change it. Building
them walks the broker's tables, so they are for inspection, not for a
per-message path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from midge.broker.internal import listener_label
from midge.broker.mqtt5 import message_properties
from midge.broker.subscribing import (
    NO_LOCAL,
    QOS_BITS,
    RETAIN_AS_PUBLISHED,
    subscription_id_of,
)
from midge.client.events import Message as PublicMessage
from midge.message import Message

if TYPE_CHECKING:
    from midge.broker.connection import Connection
    from midge.broker.session import Session


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One connected client. `protocol_version` is 3 (MQTT 3.1), 4 (3.1.1) or 5;
    `listener` the label of where it connected ("mqtt", "mqtt+tls", "mqtt+ws",
    "mqtt+wss", or "in-process" for the broker's own in-process clients);
    `connected_at` wall-clock seconds (time.time())."""

    client_id: str
    username: str | None
    address: str
    protocol_version: int
    listener: str
    keep_alive: int
    persistent: bool
    connected_at: float
    inflight: int
    queued: int


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """One subscription of one session, with its MQTT 5.0 options."""

    client_id: str
    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    subscription_id: int = 0


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session, online or offline. `expiry_interval` is a 5.0 client's
    Session Expiry Interval (None for 3.1.1 sessions); `disconnected_at` the
    wall-clock time it went offline (None while connected)."""

    client_id: str
    connected: bool
    persistent: bool
    expiry_interval: int | None
    disconnected_at: float | None
    subscriptions: tuple[SubscriptionInfo, ...]
    inflight: int
    queued: int
    dropped: int


def client_info(connection: Connection, clock_offset: float) -> ClientInfo:
    """`clock_offset` turns the connection's loop times into wall-clock times."""
    session = connection.session
    return ClientInfo(
        client_id=connection.client_id,
        username=connection.username,
        address=connection.peer,
        protocol_version=connection.version,
        listener=listener_label(connection.listener),
        keep_alive=connection.keep_alive,
        persistent=session is not None and session.persistent,
        connected_at=connection.opened_at + clock_offset,
        inflight=len(session.inflight) if session is not None else 0,
        queued=len(session.queue) if session is not None else 0,
    )


def subscription_info(client_id: str, topic_filter: str, options: int) -> SubscriptionInfo:
    return SubscriptionInfo(
        client_id,
        topic_filter,
        options & QOS_BITS,
        bool(options & NO_LOCAL),
        bool(options & RETAIN_AS_PUBLISHED),
        subscription_id_of(options),
    )


def session_info(session: Session) -> SessionInfo:
    client_id = session.client_id
    return SessionInfo(
        client_id=client_id,
        connected=session.connected,
        persistent=session.persistent,
        expiry_interval=session.expiry_interval,
        disconnected_at=None if session.connected else session.disconnected_at,
        subscriptions=tuple(
            subscription_info(client_id, topic_filter, options)
            for topic_filter, options in session.subscriptions.items()
        ),
        inflight=len(session.inflight),
        queued=len(session.queue),
        dropped=session.dropped_messages,
    )


def public_message(message: Message) -> PublicMessage:
    """The broker's message as hooks and embedding programs see it."""
    return PublicMessage(
        message.topic, message.payload, message.qos, message.retain, properties=message.properties
    )


def internal_message(public: PublicMessage, original: Message) -> Message:
    """A message a hook gave back, as the broker routes it (the original's expiry kept)."""
    return Message(
        public.topic,
        bytes(public.payload),
        public.qos,
        public.retain,
        message_properties(public.properties),  # per-hop properties never travel
        original.expires_at,
    )
