"""The protocol's error family.

Every problem with bytes received from a peer is one of these; any other
exception escaping the codec is a bug. Each class carries the MQTT 5.0 reason
code it maps to, so a 5.0 connection can report it in DISCONNECT later; 3.1.1
connections simply close.
"""


class MQTTError(Exception):
    """Base of every error caused by what a peer sent."""

    reason_code: int = 0x80  # Unspecified error


class MalformedPacket(MQTTError):
    """The bytes cannot be parsed as a packet of the protocol."""

    reason_code = 0x81


class ProtocolError(MQTTError):
    """The packet parses but breaks a rule of the protocol."""

    reason_code = 0x82


class PacketTooLarge(MalformedPacket):
    """The remaining length exceeds the configured maximum packet size."""

    reason_code = 0x95


class TopicAliasInvalid(ProtocolError):
    """A Topic Alias of 0, above the receiver's maximum, or never set up."""

    reason_code = 0x94


class ReceiveMaximumExceeded(ProtocolError):
    """More unacknowledged QoS 1/2 PUBLISH packets than the receiver allows."""

    reason_code = 0x93


class PayloadFormatInvalid(ProtocolError):
    """A payload marked as UTF-8 that is not."""

    reason_code = 0x99
