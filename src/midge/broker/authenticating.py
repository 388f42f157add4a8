"""AUTH packets: the steps of enhanced authentication, and re-authentication
(MQTT 5.0, section 4.12). Which methods exist is enhanced_auth.py's business;
how a CONNECT's exchange ends (CONNACK) is connect.py's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from midge.broker.closing import CloseReason
from midge.broker.connect import auth_bytes, continue_exchange
from midge.broker.connection import State
from midge.broker.enhanced_auth import CONTINUE, SUCCESS, PendingAuth
from midge.protocol.errors import ProtocolError
from midge.protocol.packets import Auth
from midge.protocol.reasons import ReasonCode

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.connection import Connection


def handle_auth(broker: Broker, connection: Connection, packet: Auth, now: float) -> None:
    properties = packet.properties
    method = properties.authentication_method if properties is not None else None
    data = properties.authentication_data if properties is not None else None
    pending = connection.auth
    if connection.state is State.AUTHENTICATING:
        if (
            pending is None
            or packet.reason_code != ReasonCode.CONTINUE_AUTHENTICATION
            or method != pending.method
        ):
            raise ProtocolError("AUTH does not continue the authentication under way")
        continue_exchange(broker, connection, pending, data, now)
        return
    link = connection.mqtt5
    if link is None or link.authentication_method is None:
        raise ProtocolError("AUTH on a connection that did not use enhanced authentication")
    if method != link.authentication_method:
        raise ProtocolError("re-authentication must use the CONNECT's method")  # [MQTT-4.12.1-1]
    if packet.reason_code == ReasonCode.RE_AUTHENTICATE:
        exchange = broker.enhanced_auth.start(
            method, connection.client_id, connection.username, connection.peer
        )
        if exchange is None:  # the method went away with a reload
            broker.close_connection(connection, CloseReason.AUTHENTICATION_FAILED)
            return
        pending = PendingAuth(method, exchange, None)
    elif packet.reason_code != ReasonCode.CONTINUE_AUTHENTICATION or pending is None:
        raise ProtocolError("AUTH continues no re-authentication")
    _reauthenticate(broker, connection, pending, data)


def _reauthenticate(
    broker: Broker, connection: Connection, pending: PendingAuth, data: bytes | None
) -> None:
    """One step of a re-authentication; the connection goes on meanwhile."""
    status, answer = pending.exchange.step(data)
    if status == CONTINUE:
        connection.auth = pending
        connection.send(auth_bytes(ReasonCode.CONTINUE_AUTHENTICATION, pending.method, answer))
        return
    connection.auth = None
    if status == SUCCESS:
        connection.send(auth_bytes(ReasonCode.SUCCESS, pending.method, answer))
        return
    broker.stats.auth_failures += 1
    broker.close_connection(connection, CloseReason.AUTHENTICATION_FAILED)  # [MQTT-4.12.1-2]
