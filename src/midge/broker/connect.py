"""CONNECT: login throttling, refusal, session take-over or resumption, CONNACK.

3.1 and 3.1.1 clients are answered with a return code; a 5.0 client gets a
reason code and the properties that tell it the broker's limits (section
3.2.2.3): its Receive Maximum, Maximum Packet Size, Topic Alias Maximum, the
Server Keep Alive when `max_keepalive` shortens the client's, an Assigned
Client Identifier for an empty one, and Response Information on request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from midge.bridge.config import BRIDGE_CLIENT_PREFIX
from midge.broker.closing import CloseReason
from midge.broker.enhanced_auth import CONTINUE, SUCCESS, PendingAuth
from midge.broker.internal import INTERNAL_LISTENER, listener_label
from midge.broker.limits import check_topic_limits
from midge.broker.login import REASONS, authenticate, refusal_name
from midge.broker.mqtt5 import SESSION_NEVER_EXPIRES
from midge.broker.session import Session
from midge.protocol.codec import encode, encode_connack
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1_1,
    PROTOCOL_MQTT_5,
    SUPPORTED_PROTOCOLS,
    Auth,
    ConnAck,
    Connect,
    ConnectReturnCode,
)
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode
from midge.store.base import SessionSaved

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.connection import Connection

log = logging.getLogger("midge.broker")

MAX_PACKET_SIZE_LIMIT = 268_435_460  # the protocol's own: not announced
MAX_RECEIVE_MAXIMUM = 65535  # the protocol's own: not announced


def handle_connect(broker: Broker, connection: Connection, packet: Connect, now: float) -> None:
    will = packet.will
    if will is not None:
        check_topic_limits(broker.config, will.topic, "will topic")
    # After failed logins from this address, answers wait their turn; with
    # no failed login on record (the usual case) every turn is now.
    throttle = broker.throttle
    turn = throttle.turn(connection.address, now) if len(throttle) else now
    if turn is None:
        # So many CONNECTs already wait that this one's turn is past the
        # longest delay: refused unchecked, so parallel guessing gains nothing.
        _refuse(
            broker,
            connection,
            packet,
            ConnectReturnCode.SERVER_UNAVAILABLE,
            f"too many CONNECTs waiting after failed logins from {connection.address}",
        )
        return
    if turn > now:
        broker.defer_connect(connection, packet, now, turn)
        return
    answer_connect(broker, connection, packet, now)


_LOGIN_FAILURES = (ConnectReturnCode.BAD_USERNAME_OR_PASSWORD, ConnectReturnCode.NOT_AUTHORIZED)


def answer_connect(broker: Broker, connection: Connection, packet: Connect, now: float) -> None:
    """Accept or refuse a CONNECT whose turn has come, or start its enhanced
    authentication."""
    method = _method(packet) if packet.protocol_level == PROTOCOL_MQTT_5 else None
    code = _refusal(broker, connection, packet, check_login=method is None)
    throttle = broker.throttle
    if code in _LOGIN_FAILURES:
        broker.stats.auth_failures += 1
        throttle.failed(connection.address, now)
    elif code is None and len(throttle) and method is None:
        throttle.succeeded(connection.address)
    if code is not None:
        _refuse(broker, connection, packet, code, _refusal_detail(code, packet))
        return
    if method is None:
        _accept(broker, connection, packet, now)
        return
    exchange = broker.enhanced_auth.start(
        method, packet.client_id, packet.username, connection.peer
    )
    if exchange is None:
        detail = f"authentication method {method!r} is not offered"
        _refuse(broker, connection, packet, ReasonCode.BAD_AUTHENTICATION_METHOD, detail)
        return
    assert packet.properties is not None  # it named the method
    data = packet.properties.authentication_data
    continue_exchange(broker, connection, PendingAuth(method, exchange, packet), data, now)


def continue_exchange(
    broker: Broker, connection: Connection, pending: PendingAuth, data: bytes | None, now: float
) -> None:
    """One step of a CONNECT's enhanced authentication: AUTH 0x18 to go on,
    or its end in CONNACK [section 4.12]."""
    packet = pending.connect
    assert packet is not None, "a CONNECT's exchange"
    status, answer = pending.exchange.step(data)
    if status == CONTINUE:
        connection.await_auth(pending)
        connection.send(auth_bytes(ReasonCode.CONTINUE_AUTHENTICATION, pending.method, answer))
        return
    connection.auth = None
    throttle = broker.throttle
    if status == SUCCESS:
        if len(throttle):
            throttle.succeeded(connection.address)
        _accept(
            broker, connection, packet, now, (pending.method, answer), pending.exchange.username
        )
        return
    broker.stats.auth_failures += 1
    throttle.failed(connection.address, now)
    detail = f"{pending.method} authentication failed (client id {packet.client_id!r})"
    log.warning(
        "login refused: %s from %s",
        detail,
        connection.peer,
        extra={
            "client_id": packet.client_id,
            "user": packet.username,
            "address": connection.peer,
            "reason": "bad_user_name_or_password",
        },
    )
    _refuse(broker, connection, packet, ReasonCode.BAD_USER_NAME_OR_PASSWORD, detail)


def auth_bytes(reason_code: int, method: str, data: bytes | None) -> bytes:
    properties = Properties(authentication_method=method, authentication_data=data)
    return encode(Auth(reason_code, properties), PROTOCOL_MQTT_5)


def _accept(
    broker: Broker,
    connection: Connection,
    packet: Connect,
    now: float,
    auth: tuple[str, bytes | None] | None = None,
    username: str | None = None,
) -> None:
    """CONNACK 0: the session taken over or resumed, and what it held sent again.
    `auth` is the enhanced authentication's method and last data; `username`
    who it proved the client to be. In a cluster, a client id this node has
    no session for is claimed first (broker/clustered.py)."""
    client_id = packet.client_id or broker.new_client_id()
    if broker.claims is not None and client_id not in broker.sessions:
        connection.await_claim(PendingClaim(packet, client_id, auth, username))
        broker.claims.claim(connection, client_id)
        return
    accept_session(broker, connection, packet, client_id, now, auth, username)


class PendingClaim:
    """What a CONNECT waiting for its client id needs to go on."""

    __slots__ = ("auth", "client_id", "packet", "username")

    def __init__(
        self,
        packet: Connect,
        client_id: str,
        auth: tuple[str, bytes | None] | None,
        username: str | None,
    ) -> None:
        self.packet = packet
        self.client_id = client_id
        self.auth = auth
        self.username = username


def accept_session(
    broker: Broker,
    connection: Connection,
    packet: Connect,
    client_id: str,
    now: float,
    auth: tuple[str, bytes | None] | None,
    username: str | None,
) -> None:
    """The rest of `_accept`, for a client id this node may serve."""
    previous = broker.connections.get(client_id)
    if previous is not None:
        # One connection per client id: the newcomer takes over [MQTT-3.1.4-2].
        broker.close_connection(previous, CloseReason.TAKEN_OVER)
    session, present = _open_session(broker, packet, client_id)
    _attach(broker, connection, packet, session, client_id, now)
    stats = broker.stats
    stats.connections_total += 1
    stats.clients_maximum = max(stats.clients_maximum, len(broker.connections))
    if username is not None:
        connection.username = username
        if broker.authorizer is not None:
            broker.authorizer.identify(client_id, username)
    # Session present is 1 only when a stored session resumes [MQTT-3.2.2-1/2/3].
    if connection.mqtt5 is None:
        connection.send(encode_connack(ConnectReturnCode.ACCEPTED, present, connection.version))
    else:
        properties = _connack_properties(broker, packet, client_id)
        if auth is not None:
            properties = properties or Properties()
            properties.authentication_method, properties.authentication_data = auth
        connection.send(encode(ConnAck(0, present, properties), PROTOCOL_MQTT_5))
    _log_connected(connection, packet, client_id)
    if broker.claims is not None and packet.will is not None:
        broker.claims.store_will(connection, packet.will)
    events = broker.events
    if events is not None and events.connect:
        events.notify(events.connect, broker.client_info(connection))
    if present:
        broker.delivery.end_drop_episode(session)
        broker.delivery.resend_inflight(session, connection, now)  # [MQTT-4.4.0-1]
        broker.delivery.resume(connection, now)


def _refuse(
    broker: Broker,
    connection: Connection,
    packet: Connect,
    code: ConnectReturnCode | ReasonCode,
    detail: str,
) -> None:
    """CONNACK with a refusal in the client's protocol, then close. A CONNECT of
    an unknown protocol gets the 3.1.1 form, which every version can read."""
    refused = broker.stats.connections_refused
    name = refusal_name(code)
    refused[name] = refused.get(name, 0) + 1
    if packet.protocol_level == PROTOCOL_MQTT_5 and packet.protocol_name == "MQTT":
        reason = code if isinstance(code, ReasonCode) else REASONS[code]
        connection.send(encode(ConnAck(reason), PROTOCOL_MQTT_5))
    else:
        # A refusal reads the same in 3.1 and 3.1.1.
        connection.send(encode_connack(code, False, connection.version))
    broker.close_connection(
        connection, CloseReason.CONNECT_REFUSED, detail, publish_will=False, flush=True
    )


def _open_session(broker: Broker, packet: Connect, client_id: str) -> tuple[Session, bool]:
    """The session this CONNECT continues, or a new one; and whether it is resumed."""
    expiry = _session_expiry(broker, packet)
    persistent = not packet.clean_session if expiry is None else expiry > 0
    session = broker.sessions.get(client_id)
    if session is not None and (packet.clean_session or not session.persistent):
        broker.discard_session(session)  # clean session / start [MQTT-3.1.2-6, 3.1.2-4 (5.0)]
        session = None
    if session is None:
        session = broker.add_session(client_id, persistent, expiry)
        return session, False
    broker.wills.cancel(client_id)  # back in time: no will [MQTT-3.1.3-9]
    session.expiry_interval = expiry
    if session.persistent != persistent:
        # A 5.0 client resuming with Session Expiry 0: the session now ends with
        # this connection (and is no longer the store's business).
        broker.set_persistent(session, persistent)
    if session.disconnected_at is not None or expiry is not None:
        session.disconnected_at = None
        if persistent:
            broker.persistence.record(SessionSaved(client_id, None, expiry))
    return session, True


def _session_expiry(broker: Broker, packet: Connect) -> int | None:
    """A 5.0 CONNECT's Session Expiry Interval, capped by the configuration;
    None for 3.1 / 3.1.1, whose sessions follow clean session."""
    if packet.protocol_level != PROTOCOL_MQTT_5:
        return None
    asked = packet.properties.session_expiry_interval if packet.properties else None
    expiry = asked or 0
    cap = broker.config.max_session_expiry_interval
    if cap and expiry > cap:
        return cap
    return expiry


def _method(packet: Connect) -> str | None:
    return packet.properties.authentication_method if packet.properties else None


def _connack_properties(broker: Broker, packet: Connect, client_id: str) -> Properties | None:
    config = broker.config
    asked = packet.properties
    properties = Properties(
        receive_maximum=(
            config.receive_maximum if config.receive_maximum < MAX_RECEIVE_MAXIMUM else None
        ),
        maximum_packet_size=(
            config.max_packet_size if config.max_packet_size < MAX_PACKET_SIZE_LIMIT else None
        ),
        topic_alias_maximum=config.max_topic_alias or None,
        assigned_client_identifier=None if packet.client_id else client_id,
        server_keep_alive=_server_keep_alive(config.max_keepalive, packet.keep_alive),
    )
    asked_expiry = asked.session_expiry_interval if asked else None
    granted = _session_expiry(broker, packet)
    if granted != (asked_expiry or 0):
        properties.session_expiry_interval = granted  # the broker shortened it [MQTT-3.2.2-?]
    if asked is not None and asked.request_response_information and config.response_information:
        properties.response_information = config.response_information.replace(
            "{client_id}", client_id
        )
    return None if properties.is_empty() else properties


def _server_keep_alive(max_keepalive: int, asked: int) -> int | None:
    """The keep-alive a 5.0 client must use instead of its own, if `max_keepalive`
    forbids its own (0, "never", counts as longer than any) [MQTT-3.2.2-21]."""
    if max_keepalive and not 0 < asked <= max_keepalive:
        return max_keepalive
    return None


def _log_connected(connection: Connection, packet: Connect, client_id: str) -> None:
    if log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
        session = connection.session
        expiry = session.expiry_interval if session is not None else None
        lifetime = (
            f"clean session {packet.clean_session:d}"
            if expiry is None
            else f"clean start {packet.clean_session:d}, session expiry {expiry} s"
        )
        user = connection.username
        log.info(
            "client %r connected from %s over %s%s (MQTT level %d%s, %s, keep-alive %d s)",
            client_id,
            connection.peer,
            listener_label(connection.listener),
            "" if user is None else f" as user {user!r}",
            packet.protocol_level,
            ", a bridge" if packet.bridge else "",
            lifetime,
            connection.keep_alive,
            extra=connection.log_fields(),
        )


def _refusal_detail(code: ConnectReturnCode, packet: Connect) -> str:
    """What the log says of a refused CONNECT."""
    if code is ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION:
        # The rest of a CONNECT of another level is not parsed: no client id to name.
        level = packet.protocol_level
        return f"{code.name}: protocol {packet.protocol_name!r} level {level} is not supported"
    return f"{code.name} (client id {packet.client_id!r})"


def _refusal(
    broker: Broker, connection: Connection, packet: Connect, check_login: bool
) -> ConnectReturnCode | None:
    """The CONNACK code refusing this CONNECT, or None to accept it. Without
    `check_login` enhanced authentication decides who the client is."""
    if packet.protocol_level not in SUPPORTED_PROTOCOLS.get(packet.protocol_name, ()):
        return ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION  # [MQTT-3.1.2-2]
    if not _client_id_acceptable(broker, packet):
        return ConnectReturnCode.IDENTIFIER_REJECTED
    if packet.client_id.startswith(BRIDGE_CLIENT_PREFIX) and connection.listener is not (
        INTERNAL_LISTENER
    ):
        # A bridge's own session (bridge/link.py): a network client taking it
        # over would take the messages waiting for the remote broker.
        log.info("%s: client id %r is a bridge's own", connection.name, packet.client_id)
        return ConnectReturnCode.IDENTIFIER_REJECTED
    max_keepalive = broker.config.max_keepalive
    if (
        max_keepalive
        and not 0 < packet.keep_alive <= max_keepalive
        and packet.protocol_level != PROTOCOL_MQTT_5  # 5.0 is told the value instead
    ):
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
    if not check_login:
        return None
    if listener.use_identity_as_username:
        # The TLS handshake verified the certificate: it is the login (as in Mosquitto).
        if connection.tls_identity is None:
            return ConnectReturnCode.NOT_AUTHORIZED
        return None
    allow_anonymous = config.anonymous_allowed(listener)
    code = authenticate(broker, connection, packet, allow_anonymous)
    return None if code is ConnectReturnCode.ACCEPTED else code


def _client_id_acceptable(broker: Broker, packet: Connect) -> bool:
    client_id = packet.client_id
    if not client_id:
        # 3.1 requires an id; 3.1.1 assigns one, but only for a clean session
        # [MQTT-3.1.3-7, 3.1.3-8]; 5.0 assigns one in any case [MQTT-3.1.3-6].
        if packet.protocol_level == PROTOCOL_MQTT_5:
            return True
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
    keep_alive = _server_keep_alive(broker.config.max_keepalive, packet.keep_alive)
    if keep_alive is not None and connection.mqtt5 is not None:
        connection.keep_alive = keep_alive
    session.connected = True
    broker.connections[client_id] = connection
    if broker.authorizer is not None:
        # Who the session belongs to from now on, also while it is offline.
        broker.authorizer.identify(client_id, connection.username)
    if connection.keep_alive:
        broker.schedule_timer(connection, now + 1.5 * connection.keep_alive)


def refuse_claim(broker: Broker, connection: Connection, detail: str) -> None:
    """The cluster could not give this node the client id: CONNACK 3 / 0x88
    (Server unavailable), which a client retries."""
    pending = connection.pending_claim
    assert isinstance(pending, PendingClaim)
    _refuse(broker, connection, pending.packet, ConnectReturnCode.SERVER_UNAVAILABLE, detail)


__all__ = [
    "SESSION_NEVER_EXPIRES",
    "PendingClaim",
    "accept_session",
    "answer_connect",
    "handle_connect",
    "refusal_name",
    "refuse_claim",
]
