"""What the client checks before anything reaches the wire: CONNECT options,
publish arguments, and which MQTT 5.0 properties a packet may carry.

Checking here, in the caller's stack frame, turns a mistake into a
ValueError that names it, instead of a broker's DISCONNECT later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from midge.protocol import properties as props
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1,
    PROTOCOL_MQTT_3_1_1,
    PROTOCOL_MQTT_5,
    Connect,
    Subscription,
    Will,
)
from midge.protocol.properties import Properties
from midge.protocol.topics import is_valid_topic_filter, is_valid_topic_name

PROTOCOL_NAMES = {PROTOCOL_MQTT_3_1: "MQIsdp", PROTOCOL_MQTT_3_1_1: "MQTT", PROTOCOL_MQTT_5: "MQTT"}

Authenticator = Callable[[str, bytes | None], bytes | None]
"""Enhanced authentication (MQTT 5.0 section 4.12): called with the method and
the broker's Authentication Data of each AUTH "continue" step; returns the
data of our answer. It raises to abort (the connection is then closed)."""

# What a client may put in each packet's properties. The broker's own (Topic
# Alias is the client's business, Subscription Identifier is the broker's on
# PUBLISH [MQTT-3.3.4-6]) are not the caller's to set.
_ALLOWED = {
    "CONNECT": frozenset(props.property_names(props.CONNECT)),
    "will": frozenset(props.property_names(props.WILL)),
    "PUBLISH": frozenset(props.property_names(props.PUBLISH)) - {"subscription_identifiers"},
    "SUBSCRIBE": frozenset(props.property_names(props.SUBSCRIBE)),
    "UNSUBSCRIBE": frozenset(props.property_names(props.UNSUBSCRIBE)),
    "DISCONNECT": frozenset(props.property_names(props.DISCONNECT)),
    "AUTH": frozenset(props.property_names(props.AUTH)),
}


def check_properties(properties: Properties | None, packet: str, version: int) -> None:
    """ValueError unless `properties` may go on `packet` ("PUBLISH", "will", ...)."""
    if properties is None:
        return
    if version != PROTOCOL_MQTT_5:
        raise ValueError(f"{packet} properties need MQTT 5.0 (protocol_version=5)")
    wrong = [name for name in props.present(properties) if name not in _ALLOWED[packet]]
    if wrong:
        raise ValueError(f"{packet} cannot carry {', '.join(wrong)}")
    if packet == "SUBSCRIBE" and len(properties.subscription_identifiers) > 1:
        raise ValueError("a SUBSCRIBE carries at most one subscription identifier")


def check_publish_args(topic: str, qos: int) -> None:
    if not is_valid_topic_name(topic):
        raise ValueError(f"invalid topic name {topic!r} (empty, wildcard or too long)")
    if qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")


def check_subscription(sub: Subscription, version: int) -> None:
    if not is_valid_topic_filter(sub.topic_filter):
        raise ValueError(f"invalid topic filter {sub.topic_filter!r}")
    if sub.qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, not {sub.qos!r}")
    if sub.retain_handling not in (0, 1, 2):
        raise ValueError(f"retain_handling must be 0, 1 or 2, not {sub.retain_handling!r}")
    options = sub.no_local or sub.retain_as_published or sub.retain_handling
    if options and version != PROTOCOL_MQTT_5:
        raise ValueError("subscription options need MQTT 5.0 (protocol_version=5)")


def check_disconnect(connect: Properties | None, disconnect: Properties | None) -> None:
    """[MQTT-3.14.2-2]: a session that was to expire at once cannot be kept at DISCONNECT."""
    wanted = None if disconnect is None else disconnect.session_expiry_interval
    current = None if connect is None else connect.session_expiry_interval
    if wanted and not current:
        raise ValueError("the session expiry interval cannot change from 0 at DISCONNECT")


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """What goes into CONNECT; checked here so the broker never sees nonsense.

    `properties` are the CONNECT properties of MQTT 5.0 (Session Expiry
    Interval, Receive Maximum, Maximum Packet Size, Topic Alias Maximum,
    Request Response / Problem Information, User Properties, Authentication
    Method and Data); in 5.0 `clean_session` is the Clean Start flag and the
    session outlives the connection only for a non-zero Session Expiry Interval.
    `authenticator` answers the broker's AUTH challenges (needs an
    Authentication Method).
    """

    client_id: str = ""
    clean_session: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    protocol_version: int = PROTOCOL_MQTT_3_1_1
    properties: Properties | None = None
    authenticator: Authenticator | None = None

    def __post_init__(self) -> None:
        if self.protocol_version not in PROTOCOL_NAMES:
            raise ValueError(
                "protocol_version must be 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5 (MQTT 5.0)"
            )
        if not 0 <= self.keepalive <= 0xFFFF:
            raise ValueError("keepalive must be 0..65535 seconds")
        v5 = self.protocol_version == PROTOCOL_MQTT_5
        if not self.clean_session and not self.client_id and not v5:
            # 5.0 brokers assign an id (CONNACK), which later connections reuse.
            raise ValueError("a persistent session (clean_session=False) needs a client_id")
        no_user = self.password is not None and self.username is None
        if no_user and self.protocol_version == PROTOCOL_MQTT_3_1_1:  # [MQTT-3.1.2-22]
            raise ValueError("a password needs a username in MQTT 3.1.1")
        check_properties(self.properties, "CONNECT", self.protocol_version)
        if self.will is not None:
            check_publish_args(self.will.topic, self.will.qos)
            check_properties(self.will.properties, "will", self.protocol_version)
        if self.authenticator is not None and self.auth_method is None:
            raise ValueError("an authenticator needs properties.authentication_method")

    @property
    def auth_method(self) -> str | None:
        return None if self.properties is None else self.properties.authentication_method

    def connect_packet(self) -> Connect:
        return Connect(
            client_id=self.client_id,
            clean_session=self.clean_session,
            keep_alive=self.keepalive,
            username=self.username,
            password=self.password,
            will=self.will,
            protocol_level=self.protocol_version,
            protocol_name=PROTOCOL_NAMES[self.protocol_version],
            properties=self.properties,
        )


UNLIMITED_PACKET_SIZE = 268_435_460  # the largest packet MQTT can express


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What the broker's CONNACK allows (MQTT 5.0 section 3.2.2.3); 3.1.1: the defaults."""

    receive_maximum: int = 65535
    maximum_packet_size: int = UNLIMITED_PACKET_SIZE
    topic_alias_maximum: int = 0
    maximum_qos: int = 2
    retain_available: bool = True

    @classmethod
    def from_connack(cls, properties: Properties | None) -> ServerLimits:
        if properties is None:
            return cls()
        p = properties
        return cls(
            receive_maximum=p.receive_maximum or 65535,
            maximum_packet_size=p.maximum_packet_size or UNLIMITED_PACKET_SIZE,
            topic_alias_maximum=p.topic_alias_maximum or 0,
            maximum_qos=2 if p.maximum_qos is None else p.maximum_qos,
            retain_available=p.retain_available != 0,
        )

    def check_publish(self, qos: int, retain: bool) -> None:
        """ValueError for what the broker said it does not support [MQTT-3.2.2-11, -14]."""
        if qos > self.maximum_qos:
            raise ValueError(f"the broker accepts QoS {self.maximum_qos} at most, not {qos}")
        if retain and not self.retain_available:
            raise ValueError("the broker does not support retained messages")
