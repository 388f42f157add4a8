"""The client's session state that outlives a connection: its QoS 1/2 messages in
flight, its SUBSCRIBE / UNSUBSCRIBE requests, and the filters granted so far.

Plain bookkeeping for `ClientProtocol`: nothing here sends or decides; it
keeps order and answers "what next" (MQTT 3.1.1 section 4.1, 5.0 section 4.1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from midge.client.events import Subscribed, Unsubscribed
from midge.protocol.errors import ProtocolError
from midge.protocol.packets import Publish, SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe
from midge.protocol.properties import Properties


class Stage(IntEnum):
    """What an outgoing QoS 1/2 message waits for."""

    UNSENT = 0  # waits for a connection, or for room in the in-flight window
    PUBACK = 1
    PUBREC = 2
    PUBCOMP = 3  # PUBREL sent


@dataclass(slots=True)
class Outgoing:
    """One of our QoS 1/2 messages in flight: the packet and how far it got."""

    publish: Publish
    stage: Stage


class InFlight:
    """Our QoS 1/2 messages until acknowledged, in the order they were published."""

    def __init__(self) -> None:
        # Insertion order is the original order; UNSENT entries also wait, in
        # order, in `unsent` for a connection or for room in the window.
        self.entries: dict[int, Outgoing] = {}
        self.unsent: deque[int] = deque()
        self.sent = 0  # entries past UNSENT: what counts against the window

    def add(self, packet: Publish, packet_id: int) -> None:
        self.entries[packet_id] = Outgoing(packet, Stage.UNSENT)
        self.unsent.append(packet_id)

    def take(self, window: int) -> Iterator[tuple[int, Outgoing]]:
        """The waiting messages that fit in `window`, counted as sent as they are taken."""
        while self.unsent and self.sent < window:
            packet_id = self.unsent.popleft()
            self.sent += 1
            yield packet_id, self.entries[packet_id]

    def remove(self, packet_id: int) -> None:
        del self.entries[packet_id]
        self.sent -= 1

    def awaiting(self, packet_id: int, name: str, *stages: Stage) -> Outgoing:
        """The message `packet_id`, which must be at one of `stages` (else ProtocolError)."""
        entry = self.entries.get(packet_id)
        if entry is None:
            raise ProtocolError(f"{name} for packet id {packet_id}, which is not in flight")
        if entry.stage not in stages:
            raise ProtocolError(
                f"{name} for QoS {entry.publish.qos} message {packet_id} "
                f"waiting for {entry.stage.name}"
            )
        return entry

    def to_resend(self, window: int) -> list[tuple[int, Outgoing]]:
        """After a reconnect: what was sent before and may go again, in order.

        Every PUBREL goes (the broker has the message); a PUBLISH beyond a
        window smaller than last time waits again, DUP set, at the head of the
        queue, so the broker's Receive Maximum holds from the first packet.
        """
        sent = [(i, e) for i, e in self.entries.items() if e.stage is not Stage.UNSENT]
        room = window - sum(1 for _, e in sent if e.stage is Stage.PUBCOMP)
        resend, waiting = [], []
        for packet_id, entry in sent:
            if entry.stage is not Stage.PUBCOMP and room <= 0:
                entry.stage = Stage.UNSENT
                entry.publish = duplicate(entry.publish)
                self.sent -= 1
                waiting.append(packet_id)
                continue
            room -= entry.stage is not Stage.PUBCOMP
            resend.append((packet_id, entry))
        self.unsent.extendleft(reversed(waiting))
        return resend


def duplicate(packet: Publish) -> Publish:
    """`packet` with DUP set, for a re-delivery [MQTT-3.3.1-1]."""
    return Publish(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        True,
        packet.packet_id,
        properties=packet.properties,
    )


@dataclass(frozen=True, slots=True)
class Granted:
    """A filter the broker granted: how to ask for it again after a lost session."""

    subscription: Subscription  # with the granted QoS
    identifier: int | None  # the 5.0 Subscription Identifier of its SUBSCRIBE


class Subscriptions:
    """SUBSCRIBE / UNSUBSCRIBE requests awaiting their acknowledgement, and what is granted."""

    def __init__(self) -> None:
        self.requests: dict[int, Subscribe | Unsubscribe] = {}
        self.granted: dict[str, Granted] = {}

    def acknowledged(self, packet: SubAck) -> Subscribed:
        """A SUBACK: the filters it grants are recorded; ProtocolError if it matches nothing."""
        request = self.requests.get(packet.packet_id)
        if not isinstance(request, Subscribe):
            raise ProtocolError(f"SUBACK for packet id {packet.packet_id}: no such SUBSCRIBE")
        if len(packet.return_codes) != len(request.subscriptions):  # [MQTT-3.9.3-1]
            raise ProtocolError(
                f"SUBACK has {len(packet.return_codes)} return codes "
                f"for {len(request.subscriptions)} filters"
            )
        del self.requests[packet.packet_id]
        ids = () if request.properties is None else request.properties.subscription_identifiers
        for sub, code in zip(request.subscriptions, packet.return_codes, strict=True):
            if code < 0x80:
                self.granted[sub.topic_filter] = Granted(
                    _with_qos(sub, code), next(iter(ids), None)
                )
        filters = tuple(sub.topic_filter for sub in request.subscriptions)
        return Subscribed(packet.packet_id, filters, packet.return_codes, packet.properties)

    def unacknowledged(self, packet: UnsubAck, v5: bool) -> Unsubscribed:
        """An UNSUBACK: the filters it removes are forgotten."""
        request = self.requests.get(packet.packet_id)
        if not isinstance(request, Unsubscribe):
            raise ProtocolError(f"UNSUBACK for packet id {packet.packet_id}: no such UNSUBSCRIBE")
        codes = packet.reason_codes
        if v5 and len(codes) != len(request.topic_filters):  # [MQTT-3.11.3-1]
            raise ProtocolError(
                f"UNSUBACK has {len(codes)} reason codes for {len(request.topic_filters)} filters"
            )
        del self.requests[packet.packet_id]
        for index, topic_filter in enumerate(request.topic_filters):
            if not codes or codes[index] < 0x80:
                self.granted.pop(topic_filter, None)
        return Unsubscribed(packet.packet_id, codes, packet.properties)

    def to_restore(self) -> list[tuple[tuple[Subscription, ...], Properties | None]]:
        """The granted filters as SUBSCRIBE contents: one per Subscription Identifier."""
        groups: dict[int | None, list[Subscription]] = {}
        for granted in self.granted.values():
            groups.setdefault(granted.identifier, []).append(granted.subscription)
        return [
            (tuple(subs), None if ident is None else Properties(subscription_identifiers=(ident,)))
            for ident, subs in groups.items()
        ]


def _with_qos(sub: Subscription, qos: int) -> Subscription:
    return Subscription(
        sub.topic_filter, qos, sub.no_local, sub.retain_as_published, sub.retain_handling
    )
