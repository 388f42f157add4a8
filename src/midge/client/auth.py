"""MQTT 5.0 enhanced authentication, the client's side (section 4.12).

An Authentication Method in the CONNECT properties starts an exchange the
broker drives: each AUTH "continue authentication" (0x18) it sends carries a
challenge that `options.authenticator` answers, until the CONNACK. Later the
client may re-authenticate (AUTH 0x19) with the same method; the broker ends
that with AUTH 0 (success) or a DISCONNECT. Every AUTH and the CONNACK must
name the method of the CONNECT. Sans-IO: this decides, `ClientProtocol` sends.
"""

from __future__ import annotations

from midge.client.errors import AuthenticationError
from midge.client.events import Reauthenticated
from midge.client.options import Authenticator
from midge.protocol.errors import ProtocolError
from midge.protocol.packets import Auth
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode

CONTINUE_AUTHENTICATION = ReasonCode.CONTINUE_AUTHENTICATION
RE_AUTHENTICATE = ReasonCode.RE_AUTHENTICATE


class EnhancedAuth:
    """The CONNECT's method and authenticator, and whether we re-authenticate."""

    def __init__(self, method: str | None, authenticator: Authenticator | None) -> None:
        self.method = method
        self.authenticator = authenticator
        self.reauthenticating = False

    def check_connack(self, properties: Properties) -> None:
        if properties.authentication_method != self.method:
            raise ProtocolError("CONNACK's authentication method is not the one in CONNECT")

    def reauthentication(self, data: bytes | None) -> Auth:
        """The AUTH 0x19 that starts a re-authentication (sending it sets
        `reauthenticating`); ValueError when the CONNECT had no method."""
        if self.method is None:
            raise ValueError("re-authentication needs properties.authentication_method")
        auth = Properties(authentication_method=self.method, authentication_data=data)
        return Auth(RE_AUTHENTICATE, auth)

    def step(self, packet: Auth, connected: bool) -> Auth | Reauthenticated:
        """The broker's AUTH -> our answer to its challenge, or re-authentication done.

        ProtocolError for an AUTH out of turn or with another method;
        AuthenticationError when the authenticator raised.
        """
        props = packet.properties or Properties()
        method = self.method
        if method is None or props.authentication_method != method:
            raise ProtocolError("AUTH without the authentication method of CONNECT")
        if packet.reason_code == CONTINUE_AUTHENTICATION:
            answer = self._answer(method, props.authentication_data)
            auth = Properties(authentication_method=method, authentication_data=answer)
            return Auth(CONTINUE_AUTHENTICATION, auth)
        if packet.reason_code == 0 and connected and self.reauthenticating:
            self.reauthenticating = False
            return Reauthenticated(packet.properties)
        raise ProtocolError(f"unexpected AUTH reason code 0x{packet.reason_code:02X}")

    def _answer(self, method: str, data: bytes | None) -> bytes | None:
        authenticator = self.authenticator
        if authenticator is None:
            raise ProtocolError("the broker sent an AUTH challenge and no authenticator is set")
        try:
            return authenticator(method, data)
        except Exception as exc:
            raise AuthenticationError(f"authenticator for {method} failed: {exc}") from exc
