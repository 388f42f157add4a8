"""What the sans-IO client state machine reports to its front end.

`ClientProtocol.events_received()` returns these, in the order the packets
that caused them arrived. They are plain values: the asyncio layer turns
them into resolved futures and queued messages, a test compares them.
"""

from __future__ import annotations

from dataclasses import dataclass

from midge.protocol.properties import Properties


@dataclass(frozen=True, slots=True)
class Message:
    """An application message received from the broker.

    `retain` is set for a retained message sent because of a new
    subscription (a "stale" one, in mosquitto_sub's words); `dup` says the
    broker may have sent it before (it is delivered once all the same when
    QoS is 2). `packet_id` is the broker's id for QoS 1/2, None for QoS 0.
    `properties` (MQTT 5.0, None when the PUBLISH had none) are as received:
    User Properties in order, the Subscription Identifiers of every matching
    subscription, the Topic Alias if one was used (`topic` is resolved).
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    """CONNACK 0 arrived; `session_present` and (5.0) its properties as the broker sent them."""

    session_present: bool
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """CONNACK with a non-zero return (5.0: reason) code: the broker closes the connection."""

    return_code: int
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A PUBLISH to hand to the application (a repeated QoS 2 one is not)."""

    message: Message


@dataclass(frozen=True, slots=True)
class PublishCompleted:
    """Our QoS 1 (PUBACK) or QoS 2 (PUBCOMP) PUBLISH with this id is done.

    `reason_code` (5.0) is the acknowledgement's: 0 success, 0x10 no matching
    subscribers, 0x80 and above a failure (PUBACK or PUBREC; 0x95 also when the
    client dropped a message larger than the broker's Maximum Packet Size).
    """

    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Subscribed:
    """SUBACK: one return code per filter, 0x80 for a refused filter."""

    packet_id: int
    filters: tuple[str, ...]
    granted: tuple[int, ...]
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """UNSUBACK for the UNSUBSCRIBE with this id; 5.0: one reason code per filter."""

    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Keep-alive: no PINGRESP (nor any other packet) came back in time."""

    silent_for: float


@dataclass(frozen=True, slots=True)
class Disconnected:
    """5.0: the broker sent DISCONNECT (with its reason) and closes the connection."""

    reason_code: int
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Reauthenticated:
    """5.0: AUTH 0 ended a re-authentication the client started."""

    properties: Properties | None = None


Event = (
    Connected
    | Refused
    | MessageReceived
    | PublishCompleted
    | Subscribed
    | Unsubscribed
    | TimedOut
    | Disconnected
    | Reauthenticated
)
