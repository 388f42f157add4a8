"""One handler per control packet a client may send; `HANDLERS` dispatches by type.

Each handler gets the broker, the connection the packet came on, the packet
and the current time. Handlers raise `ProtocolError` for violations; the
connection turns that into a close (with the will) in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from midge.broker.closing import CloseReason
from midge.broker.session import Awaiting, Session
from midge.message import Message
from midge.protocol.codec import (
    PUBACK_HEADER,
    PUBCOMP_HEADER,
    PUBREC_HEADER,
    PUBREL_HEADER,
    encode,
    encode_ack,
    encode_connack,
    encode_suback,
)
from midge.protocol.errors import ProtocolError
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1_1,
    PROTOCOL_MQTT_5,
    SUBACK_FAILURE,
    SUPPORTED_PROTOCOLS,
    ConnAck,
    Connect,
    ConnectReturnCode,
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
from midge.protocol.topics import is_valid_topic_filter
from midge.store.base import ReleaseDone, ReleasePending, SessionSaved

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.connection import Connection

log = logging.getLogger("midge.broker")

_PINGRESP = encode(PingResp())


def _session(connection: Connection) -> Session:
    session = connection.session
    assert session is not None, "handlers after CONNECT always have a session"
    return session


# ----------------------------------------------------------------- CONNECT


def handle_connect(broker: Broker, connection: Connection, packet: Connect, now: float) -> None:
    will = packet.will
    if will is not None and _beyond_topic_limits(broker, will.topic):
        # A will is a PUBLISH made later: the same limits (Mosquitto closes too).
        raise ProtocolError(
            f"will topic beyond max_topic_length / max_topic_levels: {will.topic[:64]!r}..."
        )
    # After failed logins from this address, answers wait their turn; with
    # no failed login on record (the usual case) every turn is now.
    throttle = broker.throttle
    turn = throttle.turn(connection.address, now) if len(throttle) else now
    if turn is None:
        # So many CONNECTs already wait that this one's turn is past the
        # longest delay: refused unchecked, so parallel guessing gains nothing.
        connection.send(encode_connack(ConnectReturnCode.SERVER_UNAVAILABLE, False, 0))
        broker.close_connection(
            connection,
            CloseReason.CONNECT_REFUSED,
            f"too many CONNECTs waiting after failed logins from {connection.address}",
            publish_will=False,
            flush=True,
        )
        return
    if turn > now:
        broker.defer_connect(connection, packet, now, turn)
        return
    answer_connect(broker, connection, packet, now)


_LOGIN_FAILURES = (ConnectReturnCode.BAD_USERNAME_OR_PASSWORD, ConnectReturnCode.NOT_AUTHORIZED)


def answer_connect(broker: Broker, connection: Connection, packet: Connect, now: float) -> None:
    """Accept or refuse a CONNECT whose turn has come."""
    code = _refusal(broker, connection, packet)
    throttle = broker.throttle
    if code in _LOGIN_FAILURES:
        throttle.failed(connection.address, now)
    elif code is None and len(throttle):
        throttle.succeeded(connection.address)
    if code is not None:
        # A refusal reads the same in 3.1 and 3.1.1.
        connection.send(encode_connack(code, False, connection.version))
        broker.close_connection(
            connection,
            CloseReason.CONNECT_REFUSED,
            _refusal_detail(code, packet),
            publish_will=False,
            flush=True,
        )
        return
    client_id = packet.client_id or broker.new_client_id()
    previous = broker.connections.get(client_id)
    if previous is not None:
        # One connection per client id: the newcomer takes over [MQTT-3.1.4-2].
        broker.close_connection(previous, CloseReason.TAKEN_OVER)
    session = broker.sessions.get(client_id)
    if session is not None and (packet.clean_session or not session.persistent):
        broker.discard_session(session)  # clean session discards the old one [MQTT-3.1.2-6]
        session = None
    present = session is not None
    if session is None:
        session = broker.add_session(client_id, persistent=not packet.clean_session)
    elif session.disconnected_at is not None:
        session.disconnected_at = None
        broker.persistence.record(SessionSaved(client_id))
    _attach(broker, connection, packet, session, client_id, now)
    # Session present is 1 only when a stored session resumes [MQTT-3.2.2-1/2/3].
    connection.send(encode_connack(ConnectReturnCode.ACCEPTED, present, connection.version))
    if log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
        log.info(
            "client %r connected from %s over %s (MQTT level %d, clean session %d, "
            "keep-alive %d s)",
            client_id,
            connection.peer,
            connection.listener.label,
            packet.protocol_level,
            packet.clean_session,
            packet.keep_alive,
        )
    if present:
        broker.delivery.end_drop_episode(session)
        broker.delivery.resend_inflight(session, connection, now)  # [MQTT-4.4.0-1]
        broker.delivery.resume(connection, now)


def _refusal_detail(code: ConnectReturnCode, packet: Connect) -> str:
    """What the log says of a refused CONNECT."""
    if code is ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION:
        # The rest of a CONNECT of another level is not parsed: no client id to name.
        level = packet.protocol_level
        name = " (MQTT 5.0)" if level == PROTOCOL_MQTT_5 else ""
        return (
            f"{code.name}: protocol {packet.protocol_name!r} level {level}{name} is not supported"
        )
    return f"{code.name} (client id {packet.client_id!r})"


def _refusal(broker: Broker, connection: Connection, packet: Connect) -> ConnectReturnCode | None:
    """The CONNACK code refusing this CONNECT, or None to accept it."""
    if SUPPORTED_PROTOCOLS.get(packet.protocol_name) != packet.protocol_level:
        return ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION  # [MQTT-3.1.2-2]
    if not _client_id_acceptable(broker, packet):
        return ConnectReturnCode.IDENTIFIER_REJECTED
    max_keepalive = broker.config.max_keepalive
    if max_keepalive and not 0 < packet.keep_alive <= max_keepalive:
        # 3.1.1 cannot name the allowed value; Mosquitto refuses the same way.
        log.info(
            "%s: keep-alive %d s is not within max_keepalive %d s",
            connection.name,
            packet.keep_alive,
            max_keepalive,
        )
        return ConnectReturnCode.IDENTIFIER_REJECTED
    config = broker.config
    if (
        config.max_connections
        and len(broker.connections) >= config.max_connections
        and packet.client_id not in broker.connections
    ):
        return ConnectReturnCode.SERVER_UNAVAILABLE
    listener = connection.listener
    if listener.use_identity_as_username:
        # The TLS handshake verified the certificate: it is the login (as in Mosquitto).
        if connection.tls_identity is None:
            return ConnectReturnCode.NOT_AUTHORIZED
        return None
    allow_anonymous = config.anonymous_allowed(listener)
    code = broker.authenticate(connection, packet, allow_anonymous)
    return None if code is ConnectReturnCode.ACCEPTED else code


def _client_id_acceptable(broker: Broker, packet: Connect) -> bool:
    client_id = packet.client_id
    if not client_id:
        # 3.1 requires an id; 3.1.1 assigns one, but only for a clean session
        # [MQTT-3.1.3-7, 3.1.3-8].
        return packet.protocol_level >= PROTOCOL_MQTT_3_1_1 and packet.clean_session
    if broker.config.strict_client_id:
        return len(client_id) <= 23 and client_id.isascii() and client_id.isalnum()
    return True


def _attach(
    broker: Broker,
    connection: Connection,
    packet: Connect,
    session: Session,
    client_id: str,
    now: float,
) -> None:
    if connection.listener.use_identity_as_username:
        connection.username = connection.tls_identity
    else:
        connection.username = packet.username
    connection.attach(client_id, session, packet, now)
    session.connected = True
    broker.connections[client_id] = connection
    if broker.authorizer is not None:
        # Who the session belongs to from now on, also while it is offline.
        broker.authorizer.identify(client_id, connection.username)
    if packet.keep_alive:
        broker.schedule_timer(connection, now + 1.5 * packet.keep_alive)


# ----------------------------------------------------------------- PUBLISH


def handle_publish(broker: Broker, connection: Connection, packet: Publish, now: float) -> None:
    topic = packet.topic
    if _beyond_topic_limits(broker, topic):
        raise ProtocolError(f"topic beyond max_topic_length / max_topic_levels: {topic[:64]!r}...")
    message = Message(topic, packet.payload, packet.qos, packet.retain)
    if packet.head is not None:
        message.reuse_head(packet.head)
    qos = packet.qos
    delivery = broker.delivery
    if qos == 0:
        delivery.publish_from_client(message, connection, now)
    elif qos == 1:
        delivery.publish_from_client(message, connection, now)
        connection.send(encode_ack(PUBACK_HEADER, packet.packet_id or 0))
    else:
        packet_id = packet.packet_id or 0
        session = _session(connection)
        pending = session.pending_releases
        # A repeated PUBLISH before PUBREL is the same message: forward it once.
        if packet_id not in pending:
            held = message if broker.config.qos2_delivery == "on_release" else None
            # Method A keeps the message until PUBREL; method B forwards it now
            # and keeps only the id.
            pending[packet_id] = held
            if session.persistent:
                broker.persistence.record(ReleasePending(session.client_id, packet_id, held))
            if held is None:
                delivery.publish_from_client(message, connection, now)
        connection.send(encode_ack(PUBREC_HEADER, packet_id))


def handle_pubrel(broker: Broker, connection: Connection, packet: PubRel, now: float) -> None:
    session = _session(connection)
    pending = session.pending_releases
    if packet.packet_id in pending:
        message = pending.pop(packet.packet_id)
        if session.persistent:
            broker.persistence.record(ReleaseDone(session.client_id, packet.packet_id))
        if message is not None:
            broker.delivery.publish_from_client(message, connection, now)
    # PUBCOMP even for an unknown id, so a retrying client can finish (section 4.3.3).
    connection.send(encode_ack(PUBCOMP_HEADER, packet.packet_id))


# ------------------------------------------------- acknowledgements of ours


def handle_puback(broker: Broker, connection: Connection, packet: PubAck, now: float) -> None:
    _complete(broker, connection, packet.packet_id, Awaiting.PUBACK, now)


def handle_pubcomp(broker: Broker, connection: Connection, packet: PubComp, now: float) -> None:
    _complete(broker, connection, packet.packet_id, Awaiting.PUBCOMP, now)


def _complete(
    broker: Broker, connection: Connection, packet_id: int, awaited: Awaiting, now: float
) -> None:
    session = _session(connection)
    entry = session.inflight.get(packet_id)
    if entry is None or entry.awaiting is not awaited:
        log.debug("%s acknowledged unknown packet id %d", connection.name, packet_id)
        return
    broker.delivery.acknowledged(connection, session, entry, now)


def handle_pubrec(broker: Broker, connection: Connection, packet: PubRec, now: float) -> None:
    session = _session(connection)
    entry = session.inflight.get(packet.packet_id)
    if entry is not None:
        if entry.awaiting is Awaiting.PUBACK:
            raise ProtocolError(f"PUBREC for QoS 1 message {packet.packet_id}")
        broker.delivery.received(connection, session, entry, now)
    # PUBREL even for an unknown id: the client believes the message is in flight.
    connection.send(encode_ack(PUBREL_HEADER, packet.packet_id))


# --------------------------------------------------------------- SUBSCRIBE


def handle_subscribe(broker: Broker, connection: Connection, packet: Subscribe, now: float) -> None:
    session = _session(connection)
    codes: list[int] = []  # one return code per filter, in order [MQTT-3.8.4-1, 3.8.4-5]
    granted = []
    authorizer = broker.authorizer
    config = broker.config
    max_length, max_levels = config.max_topic_length, config.max_topic_levels
    for subscription in packet.subscriptions:
        topic_filter = subscription.topic_filter
        if not is_valid_topic_filter(topic_filter):
            log.info("%s: refusing invalid topic filter %r", connection.name, topic_filter)
            codes.append(SUBACK_FAILURE)
            continue
        if _beyond_limits(topic_filter, max_length, max_levels):
            log.info(
                "%s: refusing topic filter beyond max_topic_length / max_topic_levels: %r...",
                connection.name,
                topic_filter[:64],
            )
            codes.append(SUBACK_FAILURE)
            continue
        if authorizer is not None and not authorizer.can_subscribe(connection, topic_filter):
            log.info("%s: subscription to %r not authorized", connection.name, topic_filter)
            codes.append(SUBACK_FAILURE)
            continue
        # The same filter again replaces the old subscription [MQTT-3.8.4-3].
        qos = subscription.qos
        broker.subscribe(session, topic_filter, qos)
        codes.append(qos)
        granted.append(subscription)
    connection.send(encode_suback(packet.packet_id, bytes(codes)))
    if broker.retained.count:  # nothing retained: nothing to look up per filter
        for subscription in granted:
            broker.delivery.deliver_retained(
                session, subscription.topic_filter, subscription.qos, now
            )


def _beyond_topic_limits(broker: Broker, topic: str) -> bool:
    config = broker.config
    return _beyond_limits(topic, config.max_topic_length, config.max_topic_levels)


def _beyond_limits(topic: str, max_length: int, max_levels: int) -> bool:
    length = len(topic)
    # A topic of L characters has at most L + 1 levels: count only long ones.
    return length > max_length or (length >= max_levels and topic.count("/") >= max_levels)


def handle_unsubscribe(
    broker: Broker, connection: Connection, packet: Unsubscribe, now: float
) -> None:
    session = _session(connection)
    for topic_filter in packet.topic_filters:
        broker.unsubscribe(session, topic_filter)
    # UNSUBACK even when nothing matched [MQTT-3.10.4-5].
    connection.send(encode(UnsubAck(packet.packet_id)))


# ----------------------------------------------------------- the rest


def handle_pingreq(broker: Broker, connection: Connection, packet: PingReq, now: float) -> None:
    connection.send(_PINGRESP)  # [MQTT-3.12.4-1]


def handle_disconnect(
    broker: Broker, connection: Connection, packet: Disconnect, now: float
) -> None:
    # A clean DISCONNECT discards the will [MQTT-3.14.4-3].
    broker.close_connection(
        connection, CloseReason.CLIENT_DISCONNECT, publish_will=False, flush=True
    )


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
    ConnAck: reject_server_packet,
    SubAck: reject_server_packet,
    UnsubAck: reject_server_packet,
    PingResp: reject_server_packet,
}
