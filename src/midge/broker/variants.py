"""The copy of a message one 5.0 subscriber gets, under its subscription options.

A subscriber whose matching subscriptions are all plain (3.1.1, or 5.0
without options) shares one object per QoS with every other receiver
(delivery.py). One with No Local, Retain As Published or a Subscription
Identifier gets its own copy, worked out here from all of its subscriptions
that match (section 3.3.4): the highest QoS among them, the publisher's
retain flag if any asks for it, and every matching Subscription Identifier.
That costs a pass over the session's subscriptions, paid only by sessions
that use these options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from midge.broker.mqtt5 import message_properties
from midge.broker.shared import SHARE_PREFIX
from midge.broker.subscribing import NO_LOCAL, QOS_BITS, RETAIN_AS_PUBLISHED
from midge.message import Message
from midge.protocol.topics import topic_matches

if TYPE_CHECKING:
    from midge.broker.connection import Connection
    from midge.broker.session import Session


def options_for(session: Session, message: Message, origin: Connection | None) -> Message | None:
    """What `session` receives of `message`; None when No Local leaves nothing."""
    topic = message.topic
    own = origin is not None and origin.client_id == session.client_id
    qos = -1
    retain = False
    ids: list[int] = []
    for topic_filter, options in session.subscriptions.items():
        if topic_filter.startswith(SHARE_PREFIX) or not topic_matches(topic_filter, topic):
            continue
        if own and options & NO_LOCAL:
            continue  # not back to its own publisher [MQTT-3.8.3-3]
        qos = max(qos, options & QOS_BITS)
        retain = retain or bool(options & RETAIN_AS_PUBLISHED)
        subscription_id = options >> 8
        if subscription_id:
            ids.append(subscription_id)
    if qos < 0:
        return None
    delivered = message.with_delivery(min(qos, message.qos), message.retain and retain)
    if ids:
        delivered = with_subscription_ids(delivered, tuple(sorted(ids)))
    return delivered


def shared_copy(message: Message, options: int, share_name: str) -> Message:
    """The copy one member of a shared subscription gets, marked with the share."""
    retain = message.retain and bool(options & RETAIN_AS_PUBLISHED)
    delivered = Message(
        message.topic,
        message.payload,
        min(options & QOS_BITS, message.qos),
        retain,
        message.properties,
        message.expires_at,
    )
    subscription_id = options >> 8
    if subscription_id:
        delivered = with_subscription_ids(delivered, (subscription_id,))
    delivered.share = share_name
    return delivered


def with_subscription_ids(message: Message, ids: tuple[int, ...]) -> Message:
    """A copy carrying the receiver's Subscription Identifiers [MQTT-3.3.4-3]."""
    carried = message_properties(message.properties, ids)
    return Message(
        message.topic, message.payload, message.qos, message.retain, carried, message.expires_at
    )
