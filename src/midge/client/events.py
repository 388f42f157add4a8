"""What the sans-IO client state machine reports to its front end.

`ClientProtocol.events_received()` returns these, in the order the packets
that caused them arrived. They are plain values: the asyncio layer turns
them into resolved futures and queued messages, a test compares them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """An application message received from the broker.

    `retain` is set for a retained message sent because of a new
    subscription (a "stale" one, in mosquitto_sub's words); `dup` says the
    broker may have sent it before (it is delivered once all the same when
    QoS is 2). `packet_id` is the broker's id for QoS 1/2, None for QoS 0.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    """CONNACK 0 arrived; `session_present` as the broker reported it."""

    session_present: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """CONNACK with a non-zero return code: the broker closes the connection."""

    return_code: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A PUBLISH to hand to the application (a repeated QoS 2 one is not)."""

    message: Message


@dataclass(frozen=True, slots=True)
class PublishCompleted:
    """Our QoS 1 (PUBACK) or QoS 2 (PUBCOMP) PUBLISH with this id is done."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """SUBACK: one return code per filter, 0x80 for a refused filter."""

    packet_id: int
    filters: tuple[str, ...]
    granted: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """UNSUBACK for the UNSUBSCRIBE with this id."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Keep-alive: no PINGRESP (nor any other packet) came back in time."""

    silent_for: float


Event = (
    Connected | Refused | MessageReceived | PublishCompleted | Subscribed | Unsubscribed | TimedOut
)
