"""MQTT 5.0 properties (section 2.2.2): the value object, and bytes <-> properties.

`Properties` holds every property of the specification as one attribute,
None (or an empty tuple) when absent. `decode_properties` reads a property
block (its variable byte integer length, then the properties) for one packet
type and raises what the specification names:

- an identifier the specification does not define or one the packet may not
  carry, a value cut short, a string that is not valid UTF-8 or a length
  that runs past the block: `MalformedPacket` (0x81);
- a second copy of a property that may appear once, or a value outside its
  range (Receive Maximum 0, Maximum QoS 2, ...): `ProtocolError` (0x82);
  a Topic Alias of 0: `TopicAliasInvalid` (0x94).

`encode_properties` writes them back, identifiers in ascending order with the
User Properties in the order they were given (which receivers must keep).
Nothing here knows what a property means to a broker or a client.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from midge.protocol.errors import MalformedPacket, ProtocolError, TopicAliasInvalid

WILL = 0
"""Stands for the Will Properties of a CONNECT where a packet type is expected."""

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH = 8, 9, 10, 11, 14, 15

MAX_VARIABLE_BYTE_INTEGER = 268_435_455


class PropertyId(IntEnum):
    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


@dataclass(slots=True, unsafe_hash=True, init=False, repr=False)
class Properties:
    """Every MQTT 5.0 property; None / () when absent. Immutable by convention.

    Flags the specification defines as a byte of 0 or 1 are kept as that int,
    so that what was on the wire round-trips exactly.
    """

    payload_format_indicator: int | None
    message_expiry_interval: int | None
    content_type: str | None
    response_topic: str | None
    correlation_data: bytes | None
    subscription_identifiers: tuple[int, ...]
    session_expiry_interval: int | None
    assigned_client_identifier: str | None
    server_keep_alive: int | None
    authentication_method: str | None
    authentication_data: bytes | None
    request_problem_information: int | None
    will_delay_interval: int | None
    request_response_information: int | None
    response_information: str | None
    server_reference: str | None
    reason_string: str | None
    receive_maximum: int | None
    topic_alias_maximum: int | None
    topic_alias: int | None
    maximum_qos: int | None
    retain_available: int | None
    user_properties: tuple[tuple[str, str], ...]
    maximum_packet_size: int | None
    wildcard_subscription_available: int | None
    subscription_identifier_available: int | None
    shared_subscription_available: int | None

    def __init__(
        self,
        *,
        payload_format_indicator: int | None = None,
        message_expiry_interval: int | None = None,
        content_type: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        subscription_identifiers: tuple[int, ...] = (),
        session_expiry_interval: int | None = None,
        assigned_client_identifier: str | None = None,
        server_keep_alive: int | None = None,
        authentication_method: str | None = None,
        authentication_data: bytes | None = None,
        request_problem_information: int | None = None,
        will_delay_interval: int | None = None,
        request_response_information: int | None = None,
        response_information: str | None = None,
        server_reference: str | None = None,
        reason_string: str | None = None,
        receive_maximum: int | None = None,
        topic_alias_maximum: int | None = None,
        topic_alias: int | None = None,
        maximum_qos: int | None = None,
        retain_available: int | None = None,
        user_properties: tuple[tuple[str, str], ...] = (),
        maximum_packet_size: int | None = None,
        wildcard_subscription_available: int | None = None,
        subscription_identifier_available: int | None = None,
        shared_subscription_available: int | None = None,
    ) -> None:
        self.payload_format_indicator = payload_format_indicator
        self.message_expiry_interval = message_expiry_interval
        self.content_type = content_type
        self.response_topic = response_topic
        self.correlation_data = correlation_data
        self.subscription_identifiers = subscription_identifiers
        self.session_expiry_interval = session_expiry_interval
        self.assigned_client_identifier = assigned_client_identifier
        self.server_keep_alive = server_keep_alive
        self.authentication_method = authentication_method
        self.authentication_data = authentication_data
        self.request_problem_information = request_problem_information
        self.will_delay_interval = will_delay_interval
        self.request_response_information = request_response_information
        self.response_information = response_information
        self.server_reference = server_reference
        self.reason_string = reason_string
        self.receive_maximum = receive_maximum
        self.topic_alias_maximum = topic_alias_maximum
        self.topic_alias = topic_alias
        self.maximum_qos = maximum_qos
        self.retain_available = retain_available
        self.user_properties = user_properties
        self.maximum_packet_size = maximum_packet_size
        self.wildcard_subscription_available = wildcard_subscription_available
        self.subscription_identifier_available = subscription_identifier_available
        self.shared_subscription_available = shared_subscription_available

    def is_empty(self) -> bool:
        return self == _NO_PROPERTIES

    def __repr__(self) -> str:
        shown = (f"{name}={getattr(self, name)!r}" for name in present(self))
        return f"Properties({', '.join(shown)})"


_NO_PROPERTIES: Final = Properties()

# ------------------------------------------------------------ the table


BYTE, TWO_BYTE, FOUR_BYTE, VARIABLE, STRING, BINARY, STRING_PAIR = range(7)

_EVERY_PACKET = frozenset(
    (CONNECT, CONNACK, PUBLISH, WILL, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK)
) | frozenset((UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH))
_ACKS_WITH_REASON = frozenset(
    (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH)
)


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One row of the specification's table 2-4."""

    identifier: int
    attribute: str
    kind: int
    packets: frozenset[int]
    # The smallest and largest value the specification allows (ints only);
    # outside them is a Protocol Error.
    low: int = 0
    high: int = MAX_VARIABLE_BYTE_INTEGER


def _spec(
    identifier: PropertyId,
    kind: int,
    packets: tuple[int, ...] | frozenset[int],
    low: int = 0,
    high: int | None = None,
) -> PropertySpec:
    limit = {BYTE: 0xFF, TWO_BYTE: 0xFFFF, FOUR_BYTE: 0xFFFF_FFFF}.get(
        kind, MAX_VARIABLE_BYTE_INTEGER
    )
    return PropertySpec(
        int(identifier),
        identifier.name.lower(),
        kind,
        frozenset(packets),
        low,
        limit if high is None else high,
    )


_P = PropertyId
SPECS: Final[dict[int, PropertySpec]] = {
    spec.identifier: spec
    for spec in (
        _spec(_P.PAYLOAD_FORMAT_INDICATOR, BYTE, (PUBLISH, WILL), high=1),
        _spec(_P.MESSAGE_EXPIRY_INTERVAL, FOUR_BYTE, (PUBLISH, WILL)),
        _spec(_P.CONTENT_TYPE, STRING, (PUBLISH, WILL)),
        _spec(_P.RESPONSE_TOPIC, STRING, (PUBLISH, WILL)),
        _spec(_P.CORRELATION_DATA, BINARY, (PUBLISH, WILL)),
        _spec(_P.SUBSCRIPTION_IDENTIFIER, VARIABLE, (PUBLISH, SUBSCRIBE), low=1),
        _spec(_P.SESSION_EXPIRY_INTERVAL, FOUR_BYTE, (CONNECT, CONNACK, DISCONNECT)),
        _spec(_P.ASSIGNED_CLIENT_IDENTIFIER, STRING, (CONNACK,)),
        _spec(_P.SERVER_KEEP_ALIVE, TWO_BYTE, (CONNACK,)),
        _spec(_P.AUTHENTICATION_METHOD, STRING, (CONNECT, CONNACK, AUTH)),
        _spec(_P.AUTHENTICATION_DATA, BINARY, (CONNECT, CONNACK, AUTH)),
        _spec(_P.REQUEST_PROBLEM_INFORMATION, BYTE, (CONNECT,), high=1),
        _spec(_P.WILL_DELAY_INTERVAL, FOUR_BYTE, (WILL,)),
        _spec(_P.REQUEST_RESPONSE_INFORMATION, BYTE, (CONNECT,), high=1),
        _spec(_P.RESPONSE_INFORMATION, STRING, (CONNACK,)),
        _spec(_P.SERVER_REFERENCE, STRING, (CONNACK, DISCONNECT)),
        _spec(_P.REASON_STRING, STRING, _ACKS_WITH_REASON),
        _spec(_P.RECEIVE_MAXIMUM, TWO_BYTE, (CONNECT, CONNACK), low=1),
        _spec(_P.TOPIC_ALIAS_MAXIMUM, TWO_BYTE, (CONNECT, CONNACK)),
        _spec(_P.TOPIC_ALIAS, TWO_BYTE, (PUBLISH,), low=1),
        _spec(_P.MAXIMUM_QOS, BYTE, (CONNACK,), high=1),
        _spec(_P.RETAIN_AVAILABLE, BYTE, (CONNACK,), high=1),
        _spec(_P.USER_PROPERTY, STRING_PAIR, _EVERY_PACKET),
        _spec(_P.MAXIMUM_PACKET_SIZE, FOUR_BYTE, (CONNECT, CONNACK), low=1),
        _spec(_P.WILDCARD_SUBSCRIPTION_AVAILABLE, BYTE, (CONNACK,), high=1),
        _spec(_P.SUBSCRIPTION_IDENTIFIER_AVAILABLE, BYTE, (CONNACK,), high=1),
        _spec(_P.SHARED_SUBSCRIPTION_AVAILABLE, BYTE, (CONNACK,), high=1),
    )
}
"""Identifier -> its row. The attribute of SUBSCRIPTION_IDENTIFIER and
USER_PROPERTY is the plural tuple on `Properties` (see `_attribute`)."""

_PACKET_NAMES = {
    WILL: "will properties", CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH",
    PUBACK: "PUBACK", PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE", SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK", DISCONNECT: "DISCONNECT", AUTH: "AUTH",
}  # fmt: skip


def _attribute(spec: PropertySpec) -> str:
    if spec.identifier == PropertyId.SUBSCRIPTION_IDENTIFIER:
        return "subscription_identifiers"
    if spec.identifier == PropertyId.USER_PROPERTY:
        return "user_properties"
    return spec.attribute


_ATTRIBUTES: Final = tuple(_attribute(spec) for spec in SPECS.values())


def present(properties: Properties) -> list[str]:
    """The names of the properties that are set (not from `__slots__`: a
    mypyc-compiled class has none)."""
    return [name for name in _ATTRIBUTES if getattr(properties, name) not in (None, ())]


# ---------------------------------------------------------------- decoding


def decode_variable_integer(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A variable byte integer (section 1.5.5) at `pos`: its value and the position after it."""
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise MalformedPacket("packet ends inside a variable byte integer")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift == 28:
            raise MalformedPacket("variable byte integer longer than four bytes")


def _utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"invalid UTF-8 in a property: {exc.reason}") from None
    if "\x00" in text:
        raise MalformedPacket("property string contains U+0000")  # [MQTT-1.5.4-2]
    return text


def _length_prefixed(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket("property block ends before a two-byte length")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket("property value runs past the end of its block")
    return data[pos + 2 : stop], stop


def _fixed(data: bytes, pos: int, end: int, size: int) -> tuple[int, int]:
    if pos + size > end:
        raise MalformedPacket("property block ends inside an integer property")
    return int.from_bytes(data[pos : pos + size], "big"), pos + size


_Value = int | str | bytes | tuple[str, str]


def _read_value(kind: int, data: bytes, pos: int, end: int) -> tuple[_Value, int]:
    if kind == BYTE:
        return _fixed(data, pos, end, 1)
    if kind == TWO_BYTE:
        return _fixed(data, pos, end, 2)
    if kind == FOUR_BYTE:
        return _fixed(data, pos, end, 4)
    if kind == VARIABLE:
        return decode_variable_integer(data, pos, end)
    if kind == BINARY:
        return _length_prefixed(data, pos, end)
    raw, pos = _length_prefixed(data, pos, end)
    if kind == STRING:
        return _utf8(raw), pos
    value_raw, pos = _length_prefixed(data, pos, end)
    return (_utf8(raw), _utf8(value_raw)), pos


def decode_properties(
    data: bytes, pos: int, end: int, packet: int
) -> tuple[Properties | None, int]:
    """The property block at `data[pos:end]` of a `packet` (a packet type, or WILL).

    Returns the properties (None when the block is empty, the common case) and
    the position after the block.
    """
    length, pos = decode_variable_integer(data, pos, end)
    if length == 0:
        return None, pos
    stop = pos + length
    if stop > end:
        raise MalformedPacket(f"property length {length} runs past the end of the packet")
    values: dict[str, object] = {}
    user_properties: list[tuple[str, str]] = []
    subscription_identifiers: list[int] = []
    while pos < stop:
        identifier, pos = decode_variable_integer(data, pos, stop)
        spec = SPECS.get(identifier)
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{identifier:02X}")
        if packet not in spec.packets:
            # "An Identifier which is not valid for its packet type" makes a
            # Malformed Packet (section 2.2.2.2), unlike a second copy.
            raise MalformedPacket(f"{spec.attribute} is not allowed in {_PACKET_NAMES[packet]}")
        value, pos = _read_value(spec.kind, data, pos, stop)
        if isinstance(value, int) and not spec.low <= value <= spec.high:
            error = TopicAliasInvalid if identifier == PropertyId.TOPIC_ALIAS else ProtocolError
            raise error(f"{spec.attribute} of {value} is out of range")  # [MQTT-3.3.2-8]
        if spec.kind == STRING_PAIR:
            user_properties.append(value)  # type: ignore[arg-type]
        elif identifier == PropertyId.SUBSCRIPTION_IDENTIFIER and packet == PUBLISH:
            subscription_identifiers.append(value)  # type: ignore[arg-type]
        elif spec.attribute in values or (
            identifier == PropertyId.SUBSCRIPTION_IDENTIFIER and subscription_identifiers
        ):
            raise ProtocolError(f"{spec.attribute} appears twice in {_PACKET_NAMES[packet]}")
        elif identifier == PropertyId.SUBSCRIPTION_IDENTIFIER:
            subscription_identifiers.append(value)  # type: ignore[arg-type]
        else:
            values[spec.attribute] = value
    properties = Properties(**values)  # type: ignore[arg-type]
    properties.user_properties = tuple(user_properties)
    properties.subscription_identifiers = tuple(subscription_identifiers)
    return properties, stop


# ---------------------------------------------------------------- encoding


def encode_variable_integer(value: int) -> bytes:
    if not 0 <= value <= MAX_VARIABLE_BYTE_INTEGER:
        raise ValueError(f"variable byte integer {value} outside 0..{MAX_VARIABLE_BYTE_INTEGER}")
    if value < 128:
        return bytes((value,))
    out = bytearray()
    while value:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | 0x80 if value else byte)
    return bytes(out)


def _binary(raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise ValueError(f"property value of {len(raw)} bytes exceeds 65535")
    return len(raw).to_bytes(2, "big") + raw


def _write_value(kind: int, value: _Value) -> bytes:
    if isinstance(value, tuple):  # a User Property: a name and a value
        return _binary(value[0].encode()) + _binary(value[1].encode())
    if isinstance(value, str):
        return _binary(value.encode())
    if isinstance(value, bytes):
        return _binary(value)
    if kind == VARIABLE:
        return encode_variable_integer(value)
    return value.to_bytes(_INTEGER_SIZES[kind], "big")


_INTEGER_SIZES: Final = {BYTE: 1, TWO_BYTE: 2, FOUR_BYTE: 4}


def encode_property_values(properties: Properties) -> bytes:
    """The properties without their length: ascending identifiers, User Properties in order."""
    out = bytearray()
    for identifier, attribute, kind, repeated in _ENCODING_ORDER:
        value = getattr(properties, attribute)
        if value is None or value == ():
            continue
        for item in value if repeated else (value,):
            out.append(identifier)
            out += _write_value(kind, item)
    return bytes(out)


# (identifier, attribute, kind, whether the attribute is a tuple of repeats),
# in ascending identifier order: worked out once, not per message.
_ENCODING_ORDER: Final = tuple(
    (identifier, _attribute(spec), spec.kind, spec.kind in (STRING_PAIR, VARIABLE))
    for identifier, spec in sorted(SPECS.items())
)


EMPTY_PROPERTIES: Final = b"\x00"


def encode_properties(properties: Properties | None) -> bytes:
    """A property block: its variable byte integer length, then the properties."""
    if properties is None:
        return EMPTY_PROPERTIES
    values = encode_property_values(properties)
    return encode_variable_integer(len(values)) + values


def property_names(packet: int) -> tuple[str, ...]:
    """The `Properties` attributes a `packet` (a packet type, or WILL) may carry."""
    return tuple(_attribute(spec) for spec in SPECS.values() if packet in spec.packets)
