"""SUBSCRIBE and UNSUBSCRIBE, for 3.1.1 and 5.0 clients.

A subscription is kept as one int, its *options*: the granted QoS in bits
0-1, and for 5.0 No Local (bit 2), Retain As Published (bit 3) and the
Subscription Identifier (bits 8 and up). A 3.1.1 subscription's options
are its QoS, so the router and the store keep one int per subscription
either way, and a value below 4 means "plain QoS": the fast path.
Retain Handling matters only while subscribing and is not kept.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from midge.broker.limits import beyond_limits
from midge.broker.shared import SHARE_PREFIX, parse_share
from midge.protocol.codec import encode, encode_suback
from midge.protocol.errors import ProtocolError
from midge.protocol.packets import (
    PROTOCOL_MQTT_5,
    RETAIN_SEND_IF_NEW,
    RETAIN_SEND_NEVER,
    SUBACK_FAILURE,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from midge.protocol.reasons import ReasonCode
from midge.protocol.topics import is_valid_topic_filter

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.connection import Connection

log = logging.getLogger("midge.broker")

# Final: compiled code reads them as constants, not module globals by name
# (QOS_BITS is checked for every receiver of every message).
QOS_BITS: Final = 0x03
NO_LOCAL: Final = 0x04
RETAIN_AS_PUBLISHED: Final = 0x08
SUBSCRIPTION_ID_SHIFT: Final = 8
BRIDGE_OPTIONS: Final = NO_LOCAL | RETAIN_AS_PUBLISHED


def pack_options(subscription: Subscription, subscription_id: int) -> int:
    """The int a subscription is kept as (see the module docstring)."""
    options = subscription.qos
    if subscription.no_local:
        options |= NO_LOCAL
    if subscription.retain_as_published:
        options |= RETAIN_AS_PUBLISHED
    return options | (subscription_id << SUBSCRIPTION_ID_SHIFT)


def subscription_id_of(options: int) -> int:
    """The Subscription Identifier kept in `options`; 0: none."""
    return options >> SUBSCRIPTION_ID_SHIFT


def handle_subscribe(broker: Broker, connection: Connection, packet: Subscribe, now: float) -> None:
    session = connection.served_session()
    mqtt5 = connection.mqtt5 is not None
    properties = packet.properties
    subscription_id = 0
    if mqtt5 and properties is not None and properties.subscription_identifiers:
        subscription_id = properties.subscription_identifiers[0]
    codes: list[int] = []  # one per filter, in order [MQTT-3.8.4-1, 3.8.4-5]
    retained_for: list[tuple[str, int]] = []
    for subscription in packet.subscriptions:
        code = _refusal(broker, connection, subscription, mqtt5)
        if code is not None:
            codes.append(code if mqtt5 else SUBACK_FAILURE)
            continue
        topic_filter = subscription.topic_filter
        existed = topic_filter in session.subscriptions
        if mqtt5:
            options = pack_options(subscription, subscription_id)
        else:  # a bridge: what it brought is not sent back, retain flags kept (Connect.bridge)
            options = subscription.qos | BRIDGE_OPTIONS if connection.bridge else subscription.qos
        # The same filter again replaces the old subscription [MQTT-3.8.4-3].
        broker.subscribe(session, topic_filter, options)
        codes.append(subscription.qos)
        events = broker.events
        if events is not None and events.subscribe:
            events.notify(
                events.subscribe, broker.client_info(connection), topic_filter, subscription.qos
            )
        handling = subscription.retain_handling
        if topic_filter.startswith(SHARE_PREFIX):
            continue  # no retained messages on a shared subscription [MQTT-4.8.2-?]
        if handling != RETAIN_SEND_NEVER and not (handling == RETAIN_SEND_IF_NEW and existed):
            retained_for.append((topic_filter, options))  # [MQTT-3.3.1-9..11 (5.0)]
    if mqtt5:
        connection.send(encode(SubAck(packet.packet_id, tuple(codes)), PROTOCOL_MQTT_5))
    else:
        connection.send(encode_suback(packet.packet_id, bytes(codes)))
    if broker.retained.count:  # nothing retained: nothing to look up per filter
        for topic_filter, options in retained_for:
            broker.delivery.deliver_retained(session, topic_filter, options, now)


def _refusal(
    broker: Broker, connection: Connection, subscription: Subscription, mqtt5: bool
) -> int | None:
    """The 5.0 reason code refusing one filter (3.1.1 sends 0x80 for any), or None."""
    topic_filter = subscription.topic_filter
    config = broker.config
    try:
        share = parse_share(topic_filter)
    except ValueError as exc:
        log.info("%s: refusing %s", connection.name, exc)
        return ReasonCode.TOPIC_FILTER_INVALID
    if share is not None and subscription.no_local and mqtt5:
        raise ProtocolError("No Local on a shared subscription")  # [MQTT-3.8.3-4]
    checked = topic_filter if share is None else share[1]
    if not is_valid_topic_filter(checked):
        log.info("%s: refusing invalid topic filter %r", connection.name, topic_filter)
        return ReasonCode.TOPIC_FILTER_INVALID
    if beyond_limits(topic_filter, config.max_topic_length, config.max_topic_levels):
        log.info(
            "%s: refusing topic filter beyond max_topic_length / max_topic_levels: %r...",
            connection.name,
            topic_filter[:64],
        )
        return ReasonCode.TOPIC_FILTER_INVALID
    authorizer = broker.authorizer
    # A shared subscription reads its filter's topics: that is what the ACL decides.
    if authorizer is not None and not authorizer.can_subscribe(connection, checked):
        log.info(
            "%s: subscription to %r not authorized",
            connection.name,
            topic_filter,
            extra=connection.log_fields("subscription not authorized"),
        )
        # 0x80, not 0x87: what the ACL holds is not the client's business (and
        # the Paho interoperability suite expects exactly this answer).
        return ReasonCode.UNSPECIFIED_ERROR
    return None


def handle_unsubscribe(
    broker: Broker, connection: Connection, packet: Unsubscribe, now: float
) -> None:
    session = connection.served_session()
    codes: list[int] = []
    for topic_filter in packet.topic_filters:
        existed = broker.unsubscribe(session, topic_filter)
        events = broker.events
        if existed and events is not None and events.unsubscribe:
            events.notify(events.unsubscribe, broker.client_info(connection), topic_filter)
        codes.append(ReasonCode.SUCCESS if existed else ReasonCode.NO_SUBSCRIPTION_EXISTED)
    # UNSUBACK even when nothing matched [MQTT-3.10.4-5].
    if connection.mqtt5 is not None:
        unsuback = UnsubAck(packet.packet_id, tuple(codes))
        connection.send(encode(unsuback, PROTOCOL_MQTT_5))
    else:
        connection.send(encode(UnsubAck(packet.packet_id)))
