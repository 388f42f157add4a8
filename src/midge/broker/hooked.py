"""Where event hooks meet the core (see midge/embedding/hooks.py for the hooks).

Nothing here runs unless hooks are configured: the broker installs
`handle_publish_hooked` in place of the plain PUBLISH handler only when a
hook has `on_publish`, and every other call site tests `broker.events` (one
attribute) first.

A PUBLISH with `on_publish` hooks: its topic is resolved (5.0 topic alias)
and checked, the hooks decide, and then the plain handler runs on a PUBLISH
carrying what they decided (so the ACL, the limits and the acknowledgement
are exactly as without hooks), or the message is acknowledged and dropped.
An async hook's decision is awaited while the client is held back: its
later packets wait, in order, as under backpressure.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from midge.broker.connection import State
from midge.broker.handlers import count_received, handle_publish
from midge.broker.limits import check_topic_limits
from midge.broker.mqtt5 import message_properties
from midge.broker.views import client_info, internal_message, public_message
from midge.client.events import Message as PublicMessage
from midge.message import Message
from midge.protocol.codec import PUBACK_HEADER, PUBREC_HEADER, encode_ack5
from midge.protocol.packets import Publish
from midge.protocol.properties import Properties
from midge.protocol.reasons import SUCCESS, UNSPECIFIED_ERROR
from midge.protocol.topics import is_valid_topic_name
from midge.store.base import ReleasePending

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.connection import Connection
    from midge.embedding.hooks import EventHooks

log = logging.getLogger("midge.hooks")


def handle_publish_hooked(
    broker: Broker, connection: Connection, packet: Publish, now: float
) -> None:
    events = broker.events
    assert events is not None
    topic = packet.topic
    properties = packet.properties
    link = connection.mqtt5
    if link is not None:
        alias = properties.topic_alias if properties is not None else None
        topic = link.resolve_alias(topic, alias, broker.config.max_topic_alias)
    check_topic_limits(broker.config, topic)
    offered = PublicMessage(
        topic, packet.payload, packet.qos, packet.retain, properties=message_properties(properties)
    )
    info = client_info(connection, broker.clock_offset)
    decision = events.decide(info, offered)
    if isinstance(decision, tuple):
        _decided(broker, connection, packet, *decision, now)
        return
    connection.holders += 1  # its later packets wait for the hook, in order
    events.when_decided(decision, partial(_decided_later, broker, connection, packet))


def _decided_later(
    broker: Broker,
    connection: Connection,
    packet: Publish,
    code: int,
    message: PublicMessage,
    now: float,
) -> None:
    connection.holders -= 1
    if connection.state is State.CLOSED:
        return  # gone meanwhile: unacknowledged, so the client sends it again
    connection.guarded(partial(_decided, broker, connection, packet, code, message), now)
    if not connection.holders:
        broker.wake(connection)
        broker.flush()


def _decided(
    broker: Broker,
    connection: Connection,
    packet: Publish,
    code: int,
    message: PublicMessage,
    now: float,
) -> None:
    if code == SUCCESS and not is_valid_topic_name(message.topic):
        log.error("on_publish gave back an invalid topic %r: not routed", message.topic)
        code = UNSPECIFIED_ERROR
    if code == SUCCESS:
        handle_publish(broker, connection, _replaced(packet, message), now)
    else:
        _acknowledge_unrouted(broker, connection, packet, code)


def _replaced(packet: Publish, message: PublicMessage) -> Publish:
    """The PUBLISH the client would have sent for `message`: its own QoS and
    packet id, no topic alias (resolved already), its Message Expiry Interval."""
    original = packet.properties
    kept = message.properties
    properties = None
    if kept is not None or (original is not None and original.message_expiry_interval):
        kept = kept or Properties()
        properties = Properties(
            payload_format_indicator=kept.payload_format_indicator,
            content_type=kept.content_type,
            response_topic=kept.response_topic,
            correlation_data=kept.correlation_data,
            user_properties=kept.user_properties,
            message_expiry_interval=(
                original.message_expiry_interval if original is not None else None
            ),
        )
    return Publish(
        message.topic,
        bytes(message.payload),
        packet.qos,
        message.retain,
        packet.dup,
        packet.packet_id,
        properties=properties,
    )


def _acknowledge_unrouted(
    broker: Broker, connection: Connection, packet: Publish, code: int
) -> None:
    """A message the hooks dropped (or failed on) ends its flow as one nobody
    subscribed to: acknowledged, with the reason code for a 5.0 client."""
    count_received(broker.stats, packet.qos, len(packet.payload))  # received all the same
    packet_id = packet.packet_id or 0
    if packet.qos == 1:
        connection.send(encode_ack5(PUBACK_HEADER, packet_id, code if connection.mqtt5 else 0))
    elif packet.qos == 2:
        session = connection.served_session()
        if code < UNSPECIFIED_ERROR and packet_id not in session.pending_releases:
            # The flow goes on to PUBREL/PUBCOMP, with nothing to forward at PUBREL.
            session.pending_releases[packet_id] = None
            if session.persistent:
                broker.persistence.record(ReleasePending(session.client_id, packet_id, None))
        connection.send(encode_ack5(PUBREC_HEADER, packet_id, code if connection.mqtt5 else 0))


def publish_will(
    broker: Broker, events: EventHooks, connection: Connection, message: Message
) -> None:
    """A will, decided by the on_publish hooks before it is routed."""
    info = client_info(connection, broker.clock_offset)
    decision = events.decide(info, public_message(message))
    if isinstance(decision, tuple):
        _route_will(broker, connection, message, *decision, broker.now)
    else:
        events.when_decided(decision, partial(_route_will, broker, connection, message))


def _route_will(
    broker: Broker,
    connection: Connection,
    original: Message,
    code: int,
    decided: PublicMessage,
    now: float,
) -> None:
    if code != SUCCESS:
        return
    if not is_valid_topic_name(decided.topic):
        log.error("on_publish gave back an invalid will topic %r: not routed", decided.topic)
        return
    message = internal_message(decided, original)
    broker.now = now
    broker.delivery.publish_from_client(message, connection, now)
    broker.flush()
