"""One slotted dataclass per MQTT control packet, frozen except the ones on hot paths.

PUBLISH and its acknowledgements are the hot path: a frozen dataclass costs
four times as much to create, so `Publish`, `PubAck`, `PubRec`, `PubRel` and
`PubComp` are only immutable by convention (nobody mutates one) and hash by
value like the others. So are `Connect` and `Will` (one per connection) and
`Subscribe` and `Subscription` (one per topic filter). These and `Publish`
write their own `__init__`: mypyc compiles a class's own `__init__` but runs
the one `dataclass` generates as interpreted Python, four to eight times
slower.

The packets describe what is on the wire independent of protocol version;
the codec decides how a field is written for 3.1 (level 3), 3.1.1 (level 4)
and 5.0 (level 5). Fields that 5.0 adds get defaults that mean "absent", so
3.1.1 code never sets them: `properties` is None when a packet carries none
(always, below 5.0), and a reason code of 0 is success. A 3.1.1 CONNACK's
return code and SUBACK's return codes hold 5.0 reason codes on a 5.0
connection (the codec checks each against its version's set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from midge.protocol.properties import Properties


class PacketType(IntEnum):
    """The control packet type: the high nibble of the first byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ConnectReturnCode(IntEnum):
    """CONNACK return codes of MQTT 3.1 / 3.1.1."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


SUBACK_FAILURE = 0x80
"""SUBACK return code for a refused subscription."""

# Final: compiled code reads them as constants, not module globals by name
# (the decoder compares its version with PROTOCOL_MQTT_5 for every PUBLISH).
PROTOCOL_MQTT_3_1: Final = 3
PROTOCOL_MQTT_3_1_1: Final = 4
PROTOCOL_MQTT_5: Final = 5
BRIDGE_BIT: Final = 0x80  # on a 3.1 / 3.1.1 CONNECT's protocol level: see Connect.bridge

SUPPORTED_PROTOCOLS: dict[str, frozenset[int]] = {
    "MQTT": frozenset((PROTOCOL_MQTT_3_1_1, PROTOCOL_MQTT_5)),
    "MQIsdp": frozenset((PROTOCOL_MQTT_3_1,)),
}
"""The levels each protocol name is spoken at; any other pairing gets CONNACK 1."""

RETAIN_SEND_ALWAYS = 0
RETAIN_SEND_IF_NEW = 1
RETAIN_SEND_NEVER = 2
"""Retain Handling of a 5.0 subscription (section 3.8.3.1): when retained
messages are sent on subscribing."""


@dataclass(slots=True, unsafe_hash=True, init=False)  # see the module docstring
class Will:
    """The will message a client registers in CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None  # the Will Properties (5.0)

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties


@dataclass(slots=True, unsafe_hash=True, init=False)  # see the module docstring
class Connect:
    client_id: str
    clean_session: bool = True
    keep_alive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    protocol_level: int = PROTOCOL_MQTT_3_1_1
    protocol_name: str = "MQTT"
    properties: Properties | None = None
    # A 3.1 / 3.1.1 client that says it is another broker's bridge: protocol
    # level with BRIDGE_BIT set (Mosquitto's `try_private`). Its subscriptions
    # act as No Local and Retain As Published, so what it brings is not sent
    # back to it and keeps its retain flag.
    bridge: bool = False
    # 5.0 calls the flag Clean Start: it ends an old session but says nothing
    # about the new one's lifetime (Session Expiry Interval does). Same bit.

    def __init__(
        self,
        client_id: str,
        clean_session: bool = True,
        keep_alive: int = 0,
        username: str | None = None,
        password: bytes | None = None,
        will: Will | None = None,
        protocol_level: int = PROTOCOL_MQTT_3_1_1,
        protocol_name: str = "MQTT",
        properties: Properties | None = None,
        bridge: bool = False,
    ) -> None:
        self.client_id = client_id
        self.clean_session = clean_session
        self.keep_alive = keep_alive
        self.username = username
        self.password = password
        self.will = will
        self.protocol_level = protocol_level
        self.protocol_name = protocol_name
        self.properties = properties
        self.bridge = bridge


@dataclass(frozen=True, slots=True)
class ConnAck:
    return_code: int  # on a 5.0 connection: the reason code
    session_present: bool = False
    properties: Properties | None = None


@dataclass(slots=True, unsafe_hash=True, init=False)  # see the module docstring
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    # As decoded: the received bytes up to the packet id (fixed header, topic)
    # when DUP and RETAIN are clear, so a broker can forward it at the same
    # QoS without encoding it again. Never part of equality. A 5.0 PUBLISH has
    # one only with an empty property block, and it serves 5.0 receivers only
    # (Message.wire5; at QoS 0 it ends with that block).
    head: bytes | None = field(default=None, compare=False, repr=False)
    properties: Properties | None = None

    def __init__(
        self,
        topic: str,
        payload: bytes = b"",
        qos: int = 0,
        retain: bool = False,
        dup: bool = False,
        packet_id: int | None = None,
        head: bytes | None = None,
        properties: Properties | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packet_id = packet_id
        self.head = head
        self.properties = properties

    def passed_on(self, topic: str, properties: Properties | None, retain: bool) -> Publish:
        """The same message and flow (QoS, DUP, packet id) under another topic,
        properties and retain flag, for another hop: no `head` (it would be
        this hop's bytes)."""
        return Publish(
            topic, self.payload, self.qos, retain, self.dup, self.packet_id, properties=properties
        )


@dataclass(slots=True, unsafe_hash=True)  # per message: see the module docstring
class PubAck:
    packet_id: int
    reason_code: int = 0  # 5.0 only; 0 is success
    properties: Properties | None = None


@dataclass(slots=True, unsafe_hash=True)  # per message: see the module docstring
class PubRec:
    packet_id: int
    reason_code: int = 0  # 5.0 only; 0 is success
    properties: Properties | None = None


@dataclass(slots=True, unsafe_hash=True)  # per message: see the module docstring
class PubRel:
    packet_id: int
    reason_code: int = 0  # 5.0 only; 0 is success
    properties: Properties | None = None


@dataclass(slots=True, unsafe_hash=True)  # per message: see the module docstring
class PubComp:
    packet_id: int
    reason_code: int = 0  # 5.0 only; 0 is success
    properties: Properties | None = None


@dataclass(slots=True, unsafe_hash=True, init=False)  # see the module docstring
class Subscription:
    """One topic filter of a SUBSCRIBE with its requested QoS and (5.0) options."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = RETAIN_SEND_ALWAYS

    def __init__(
        self,
        topic_filter: str,
        qos: int = 0,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = RETAIN_SEND_ALWAYS,
    ) -> None:
        self.topic_filter = topic_filter
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling


@dataclass(slots=True, unsafe_hash=True, init=False)  # see the module docstring
class Subscribe:
    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties | None = None

    def __init__(
        self,
        packet_id: int,
        subscriptions: tuple[Subscription, ...],
        properties: Properties | None = None,
    ) -> None:
        self.packet_id = packet_id
        self.subscriptions = subscriptions
        self.properties = properties


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    return_codes: tuple[int, ...]  # on a 5.0 connection: reason codes
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int
    reason_codes: tuple[int, ...] = ()  # 5.0 only: one per topic filter
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0  # 5.0 only; 0 is a normal disconnection
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Auth:
    """5.0 only: a step of enhanced authentication (section 3.15)."""

    reason_code: int = 0  # 0 success, 0x18 continue, 0x19 re-authenticate
    properties: Properties | None = None


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)
