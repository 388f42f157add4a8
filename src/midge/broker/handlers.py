"""One handler per control packet a client may send; `HANDLERS` dispatches by type.

Each handler gets the broker, the connection the packet came on, the packet
and the current time. Handlers raise `ProtocolError` for violations; the
connection turns that into a close (with the will) in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from midge.broker.authenticating import handle_auth
from midge.broker.closing import CloseReason
from midge.broker.connect import handle_connect
from midge.broker.limits import check_topic_limits
from midge.broker.mqtt5 import Mqtt5Link, message_properties
from midge.broker.session import Awaiting
from midge.broker.subscribing import handle_subscribe, handle_unsubscribe
from midge.message import Message
from midge.protocol.codec import (
    PUBACK_HEADER,
    PUBCOMP_HEADER,
    PUBREC_HEADER,
    PUBREL_HEADER,
    encode,
    encode_ack,
    encode_ack5,
)
from midge.protocol.errors import PayloadFormatInvalid, ProtocolError, ReceiveMaximumExceeded
from midge.protocol.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from midge.protocol.reasons import SUCCESS, UNSPECIFIED_ERROR, ReasonCode
from midge.store.base import ReleaseDone, ReleasePending, SessionDeleted, SessionSaved

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.connection import Connection
    from midge.broker.stats import Stats

log = logging.getLogger("midge.broker")

_PINGRESP = encode(PingResp())


# ----------------------------------------------------------------- PUBLISH


def handle_publish(broker: Broker, connection: Connection, packet: Publish, now: float) -> None:
    link = connection.mqtt5
    if link is not None:
        _publish5(broker, connection, link, packet, now)
        return
    topic = packet.topic
    check_topic_limits(broker.config, topic)
    message = Message(topic, packet.payload, packet.qos, packet.retain)
    if packet.head is not None:
        message.reuse_head(packet.head)
    qos = packet.qos
    delivery = broker.delivery
    # Counted in the branches each PUBLISH takes anyway (stats.py).
    stats = broker.stats
    stats.publish_bytes_received += len(packet.payload)
    if qos == 0:
        stats.publish_received_qos0 += 1
        delivery.publish_from_client(message, connection, now)
    elif qos == 1:
        stats.publish_received_qos1 += 1
        delivery.publish_from_client(message, connection, now)
        connection.send(encode_ack(PUBACK_HEADER, packet.packet_id or 0))
    else:
        stats.publish_received_qos2 += 1
        _accept_qos2(broker, connection, message, packet.packet_id or 0, now)
        connection.send(encode_ack(PUBREC_HEADER, packet.packet_id or 0))


def _publish5(
    broker: Broker, connection: Connection, link: Mqtt5Link, packet: Publish, now: float
) -> None:
    """A 5.0 PUBLISH: its topic alias resolved, its properties checked and kept,
    and an acknowledgement that says what became of it."""
    config = broker.config
    properties = packet.properties
    qos = packet.qos
    packet_id = packet.packet_id or 0
    topic = packet.topic
    if properties is None and topic:
        # The common case, nothing but topic and payload: as cheap as 3.1.1's.
        check_topic_limits(config, topic)
        message = Message(topic, packet.payload, qos, packet.retain)
        if packet.head is not None:
            message.reuse_head5(packet.head)
    else:
        message_or_none = _message5(broker, connection, link, packet)
        if message_or_none is None:
            count_received(broker.stats, qos, len(packet.payload))
            return  # refused with its acknowledgement
        message = message_or_none
    delivery = broker.delivery
    stats = broker.stats
    stats.publish_bytes_received += len(packet.payload)
    if qos == 0:
        stats.publish_received_qos0 += 1
        delivery.publish_from_client(message, connection, now)
    elif qos == 1:
        stats.publish_received_qos1 += 1
        code = delivery.publish_from_client(message, connection, now)
        connection.send(encode_ack5(PUBACK_HEADER, packet_id, code))
    else:
        stats.publish_received_qos2 += 1
        session = connection.served_session()
        if (
            packet_id not in session.pending_releases
            and len(session.pending_releases) >= config.receive_maximum
        ):
            raise ReceiveMaximumExceeded(
                f"more than receive_maximum {config.receive_maximum} QoS 2 messages unreleased"
            )
        code = _accept_qos2(broker, connection, message, packet_id, now)
        connection.send(encode_ack5(PUBREC_HEADER, packet_id, code))


def count_received(stats: Stats, qos: int, size: int) -> None:
    """Count a PUBLISH received off the common path (a 5.0 one refused early)."""
    stats.publish_bytes_received += size
    if qos == 0:
        stats.publish_received_qos0 += 1
    elif qos == 1:
        stats.publish_received_qos1 += 1
    else:
        stats.publish_received_qos2 += 1


def _message5(
    broker: Broker, connection: Connection, link: Mqtt5Link, packet: Publish
) -> Message | None:
    """The message of a 5.0 PUBLISH with properties or a topic alias; None when its
    payload is not the UTF-8 it claims (then refused with a reason code here)."""
    config = broker.config
    properties = packet.properties
    alias = properties.topic_alias if properties is not None else None
    topic = link.resolve_alias(packet.topic, alias, config.max_topic_alias)
    check_topic_limits(config, topic)
    qos = packet.qos
    packet_id = packet.packet_id or 0
    expires_at = None
    if properties is not None:
        if properties.subscription_identifiers:
            raise ProtocolError("a client PUBLISH carries a Subscription Identifier")  # 3.3.4-6
        if not _payload_format_valid(
            config.validate_utf8_payloads, properties.payload_format_indicator, packet.payload
        ):
            if qos == 0:
                raise PayloadFormatInvalid("payload is not the UTF-8 its format indicator says")
            header = PUBACK_HEADER if qos == 1 else PUBREC_HEADER
            connection.send(encode_ack5(header, packet_id, ReasonCode.PAYLOAD_FORMAT_INVALID))
            return None
        interval = properties.message_expiry_interval
        if interval is not None:
            expires_at = broker.wall_clock() + interval
    return Message(
        topic, packet.payload, qos, packet.retain, message_properties(properties), expires_at
    )


def _payload_format_valid(check: bool, indicator: int | None, payload: bytes) -> bool:
    """A payload its sender marked as UTF-8 must be [MQTT-3.3.2-4 (5.0)]."""
    if indicator != 1 or not check:
        return True
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _accept_qos2(
    broker: Broker, connection: Connection, message: Message, packet_id: int, now: float
) -> int:
    """Remember an inbound QoS 2 packet id until PUBREL; the reason code for PUBREC."""
    session = connection.served_session()
    pending = session.pending_releases
    # A repeated PUBLISH before PUBREL is the same message: forward it once.
    if packet_id in pending:
        return SUCCESS
    held = message if broker.config.qos2_delivery == "on_release" else None
    # Method A keeps the message until PUBREL; method B forwards it now and
    # keeps only the id.
    code: int = SUCCESS
    if held is None:
        code = broker.delivery.publish_from_client(message, connection, now)
        if code >= UNSPECIFIED_ERROR:
            return code  # refused: the flow ends with this PUBREC [MQTT-4.3.3-?]
    pending[packet_id] = held
    if session.persistent:
        broker.persistence.record(ReleasePending(session.client_id, packet_id, held))
    return code


def handle_pubrel(broker: Broker, connection: Connection, packet: PubRel, now: float) -> None:
    session = connection.served_session()
    pending = session.pending_releases
    code: int = ReasonCode.SUCCESS
    if packet.packet_id in pending:
        message = pending.pop(packet.packet_id)
        if session.persistent:
            broker.persistence.record(ReleaseDone(session.client_id, packet.packet_id))
        if message is not None:
            broker.delivery.publish_from_client(message, connection, now)
    elif connection.mqtt5 is not None:
        code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
    # PUBCOMP even for an unknown id, so a retrying client can finish (section 4.3.3).
    connection.send(encode_ack5(PUBCOMP_HEADER, packet.packet_id, code))


# ------------------------------------------------- acknowledgements of ours


def handle_puback(broker: Broker, connection: Connection, packet: PubAck, now: float) -> None:
    _complete(broker, connection, packet.packet_id, Awaiting.PUBACK, now)


def handle_pubcomp(broker: Broker, connection: Connection, packet: PubComp, now: float) -> None:
    _complete(broker, connection, packet.packet_id, Awaiting.PUBCOMP, now)


def _complete(
    broker: Broker, connection: Connection, packet_id: int, awaited: Awaiting, now: float
) -> None:
    session = connection.served_session()
    entry = session.inflight.get(packet_id)
    if entry is None or entry.awaiting is not awaited:
        log.debug("%s acknowledged unknown packet id %d", connection.name, packet_id)
        return
    broker.delivery.acknowledged(connection, session, entry, now)


def handle_pubrec(broker: Broker, connection: Connection, packet: PubRec, now: float) -> None:
    session = connection.served_session()
    entry = session.inflight.get(packet.packet_id)
    if entry is not None:
        if entry.awaiting is Awaiting.PUBACK:
            raise ProtocolError(f"PUBREC for QoS 1 message {packet.packet_id}")
        if packet.reason_code >= ReasonCode.UNSPECIFIED_ERROR:
            # A 5.0 client refused the message: its flow ends here, no PUBREL
            # [MQTT-4.3.3-?]; the packet id is free again.
            if entry.awaiting is Awaiting.PUBREC:
                broker.delivery.acknowledged(connection, session, entry, now)
            return
        broker.delivery.received(connection, session, entry, now)
        code: int = ReasonCode.SUCCESS
    else:
        # PUBREL even for an unknown id: the client believes the message is in flight.
        code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if connection.mqtt5 else ReasonCode.SUCCESS
    connection.send(encode_ack5(PUBREL_HEADER, packet.packet_id, code))


# ----------------------------------------------------------- the rest


def handle_pingreq(broker: Broker, connection: Connection, packet: PingReq, now: float) -> None:
    connection.send(_PINGRESP)  # [MQTT-3.12.4-1]


def handle_disconnect(
    broker: Broker, connection: Connection, packet: Disconnect, now: float
) -> None:
    link = connection.mqtt5
    if link is not None:
        _session_expiry_at_disconnect(broker, connection, link, packet)
    # A clean DISCONNECT discards the will [MQTT-3.14.4-3], unless a 5.0
    # client asks for it (0x04, Disconnect with Will Message).
    with_will = packet.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
    broker.close_connection(
        connection, CloseReason.CLIENT_DISCONNECT, publish_will=with_will, flush=True
    )


def _session_expiry_at_disconnect(
    broker: Broker, connection: Connection, link: Mqtt5Link, packet: Disconnect
) -> None:
    """A 5.0 DISCONNECT may change the Session Expiry Interval, but not from 0:
    a session that was to end cannot be revived here [MQTT-3.14.2-2]."""
    properties = packet.properties
    interval = properties.session_expiry_interval if properties is not None else None
    if interval is None:
        return
    if link.session_expiry_interval == 0 and interval:
        raise ProtocolError("DISCONNECT sets a Session Expiry Interval after CONNECT's 0")
    cap = broker.config.max_session_expiry_interval
    interval = min(interval, cap) if cap else interval
    session = connection.served_session()
    session.expiry_interval = interval
    if not interval and session.persistent:
        session.persistent = False  # it ends with this connection, and leaves the store
        broker.persistence.record(SessionDeleted(session.client_id))
    elif session.persistent:
        broker.persistence.record(SessionSaved(session.client_id, None, interval))


def reject_server_packet(
    broker: Broker, connection: Connection, packet: Packet, now: float
) -> None:
    raise ProtocolError(f"a client sent {type(packet).__name__}, which only servers send")


HANDLERS: dict[type, Callable[[Broker, Connection, Any, float], None]] = {
    Connect: handle_connect,
    Publish: handle_publish,
    PubAck: handle_puback,
    PubRec: handle_pubrec,
    PubRel: handle_pubrel,
    PubComp: handle_pubcomp,
    Subscribe: handle_subscribe,
    Unsubscribe: handle_unsubscribe,
    PingReq: handle_pingreq,
    Disconnect: handle_disconnect,
    Auth: handle_auth,
    ConnAck: reject_server_packet,
    SubAck: reject_server_packet,
    UnsubAck: reject_server_packet,
    PingResp: reject_server_packet,
}
