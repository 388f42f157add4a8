"""Who a CONNECT is: its credentials checked (the auth hook, then the password
file), and the password and ACL files read again on SIGHUP."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from midge.broker.auth import Authenticator
from midge.broker.authorizer import load_acl
from midge.broker.hooks import ask_authenticate
from midge.broker.internal import API_LISTENER, INTERNAL_LISTENER
from midge.protocol.packets import Connect, ConnectReturnCode
from midge.protocol.reasons import ReasonCode

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.connection import Connection

log = logging.getLogger("midge.broker")

# The 5.0 reason code for each 3.1.1 refusal (section 3.2.2.2).
REASONS = {
    ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ConnectReturnCode.IDENTIFIER_REJECTED: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
    ConnectReturnCode.SERVER_UNAVAILABLE: ReasonCode.SERVER_UNAVAILABLE,
    ConnectReturnCode.BAD_USERNAME_OR_PASSWORD: ReasonCode.BAD_USER_NAME_OR_PASSWORD,
    ConnectReturnCode.NOT_AUTHORIZED: ReasonCode.NOT_AUTHORIZED,
}


def refusal_name(code: ConnectReturnCode | ReasonCode) -> str:
    """How counters and JSON logs name a CONNACK refusal: its 5.0 reason code's
    name in lower case, for a 3.1.1 return code too ("bad_user_name_or_password")."""
    reason = code if isinstance(code, ReasonCode) else REASONS[code]
    return reason.name.lower()


def authenticate(
    broker: Broker, connection: Connection, packet: Connect, allow_anonymous: bool
) -> ConnectReturnCode:
    """The CONNACK code for a CONNECT's credentials: the hook, then the password file.

    Every refusal is logged as a warning (never with the password).
    """
    code = _login(broker, connection, packet, allow_anonymous)
    if code is not ConnectReturnCode.ACCEPTED:
        log.warning(
            "login refused (%s): client %r, user %r, from %s",
            code.name,
            packet.client_id,
            packet.username,
            connection.peer,
            extra={
                "client_id": packet.client_id,
                "user": packet.username,
                "address": connection.peer,
                "reason": refusal_name(code),
            },
        )
    return code


def _login(
    broker: Broker, connection: Connection, packet: Connect, allow_anonymous: bool
) -> ConnectReturnCode:
    listener = connection.listener
    if listener is INTERNAL_LISTENER:
        return ConnectReturnCode.ACCEPTED  # the embedding program's own client
    if listener is API_LISTENER:
        return ConnectReturnCode.ACCEPTED  # the HTTP API checked its API key (the ACL applies)
    hook = broker.auth_hook
    if hook is not None:
        verdict = ask_authenticate(
            hook, packet.client_id, packet.username, packet.password, connection.peer
        )
        if verdict:
            return ConnectReturnCode.ACCEPTED
        if verdict is not None:
            if packet.username is None:
                return ConnectReturnCode.NOT_AUTHORIZED
            return ConnectReturnCode.BAD_USERNAME_OR_PASSWORD
    return broker.authenticator.check(packet.username, packet.password, allow_anonymous)


def reload_auth(broker: Broker) -> bool:
    """Re-read the password file and the ACL file (the SIGHUP handler calls this).

    Connected clients stay connected; the new rules apply to every later
    packet and delivery (cached decisions are dropped). If either file is
    unreadable or broken, both old ones stay, the error is logged, and the
    answer is False.
    """
    config = broker.config
    try:
        authenticator = (
            Authenticator.from_settings(config.password_file) if config.password_file else None
        )
        acl = load_acl(config.acl_file)
        broker.enhanced_auth.reload()
    except (OSError, ValueError) as exc:  # PasswordFileError and AclFileError are ValueErrors
        log.error("reload of authentication failed, keeping the previous rules: %s", exc)
        return False
    if authenticator is not None:
        broker.authenticator = authenticator
    if broker.authorizer is not None:
        broker.authorizer.replace_acl(acl)
    log.info("reloaded password file %r and ACL file %r", config.password_file, config.acl_file)
    return True
