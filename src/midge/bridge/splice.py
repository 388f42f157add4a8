"""A bridge's two sessions joined packet by packet: sans-IO, no sockets, no clock.

A bridge is two MQTT client sessions: *local*, an in-process MQTT 5.0 client
of this broker (a persistent session, `BridgeConfig.local_client_id`), and
*remote*, a client of the other broker. `Splice` is what passes between
them: the front end (link.py) feeds it each side's packets and sends what
it queues in `to_local` and `to_remote`.

Nothing is acknowledged on one side before the other side acknowledged it,
and a message keeps its packet identifier across the bridge:

    out:  local PUBLISH id 7  -> remote PUBLISH id 7
          remote PUBACK 7     -> local PUBACK 7       (QoS 1)
          remote PUBREC 7     -> local PUBREC 7       (QoS 2, then PUBREL and
          local PUBREL 7      -> remote PUBREL 7       PUBCOMP the same way)
          remote PUBCOMP 7    -> local PUBCOMP 7
    in:   the same with the sides swapped.

So each side's session state is the other's: the local broker keeps a
message for the remote in the bridge's session (in its store) until the
remote has it, and after a restart of either broker or a lost link each side
sends again what it had not seen acknowledged, with the same identifier,
which the other side's QoS 2 state recognises. The identifiers cannot clash:
the messages in flight on one side are exactly those in flight on the other.
The local broker sends at most `window` messages at once (the Receive
Maximum the bridge gives it, no more than the remote takes); the remote may
send more than the local broker takes at once (a 3.1.1 remote has no limit):
those wait here, unacknowledged, so the remote's own window bounds them.

Loops: the local subscriptions have No Local (what the bridge published
here does not go back out), the remote ones too on a 5.0 remote, and on a
3.1.1 remote the bridge says it is one (protocol level 0x84), which makes
Mosquitto (and Midge) treat its subscriptions the same way.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from typing import Final

from midge.bridge.config import BridgeConfig, TopicRule
from midge.protocol.encoding import encode
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1_1,
    PROTOCOL_MQTT_5,
    RETAIN_SEND_IF_NEW,
    ConnAck,
    Connect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Subscription,
    Will,
)
from midge.protocol.properties import Properties
from midge.protocol.topics import topic_matches

MAX_SESSION_EXPIRY: Final = 0xFFFFFFFF  # the local session: never ends while the broker lives
SUBSCRIBE_ID: Final = 1  # the one SUBSCRIBE each side gets per connection
FAILURE: Final = 0x80  # reason codes from here on: the receiver refused the message


@dataclasses.dataclass(slots=True)
class Figures:
    """What crossed the bridge, for $SYS, /metrics and the HTTP API."""

    sent: int = 0  # messages handed to the remote
    received: int = 0  # messages handed to this broker
    refused: int = 0  # refused by the receiving side (5.0 reason code >= 0x80)
    unrouted: int = 0  # no topic rule matched (acknowledged, dropped)
    too_large: int = 0  # above the remote's Maximum Packet Size (acknowledged, dropped)


class Splice:
    def __init__(self, config: BridgeConfig, private: bool) -> None:
        """`private`: a 3.1.1 remote is told this is a bridge (try_private)."""
        self.config = config
        self.remote_version = PROTOCOL_MQTT_5 if config.protocol == "5" else PROTOCOL_MQTT_3_1_1
        self.private = private and self.remote_version == PROTOCOL_MQTT_3_1_1
        self.out_rules = [rule for rule in config.topics if rule.outgoing]
        self.in_rules = [rule for rule in config.topics if rule.incoming]
        self.to_local: list[Packet] = []
        self.to_remote: list[Packet] = []
        self.figures = Figures()
        self.window = config.max_inflight  # set by remote_connected
        self.remote_max_packet: int | None = None  # the remote's Maximum Packet Size (5.0)
        self.local_room = 0  # the local broker's Receive Maximum (local_connected)
        self._local_unacked: set[int] = set()  # remote's messages in flight here
        self._waiting: deque[Publish] = deque()  # remote's messages past local_room

    # ------------------------------------------------------------ connecting

    def remote_connect(self) -> Connect:
        config = self.config
        version = self.remote_version
        properties = None
        if version == PROTOCOL_MQTT_5:
            expiry = 0 if config.clean_session else config.session_expiry
            properties = Properties(session_expiry_interval=expiry or None)
        return Connect(
            client_id=config.remote_client_id,
            clean_session=config.clean_session,
            keep_alive=config.keepalive,
            username=config.username or None,
            password=config.password.encode() if config.password else None,
            will=self._state_will(),
            protocol_level=version,
            properties=properties,
            bridge=self.private,
        )

    def _state_will(self) -> Will | None:
        """The remote publishes "0" on the state topic when the link dies."""
        config = self.config
        if not (config.notifications and config.notifications_remote):
            return None
        return Will(config.remote_state_topic, b"0", 1, True)

    def remote_state(self, up: bool) -> list[Packet]:
        """The state for the remote, retained (QoS 0: the packet ids are the
        local session's; the will covers a link that dies)."""
        config = self.config
        if not (config.notifications and config.notifications_remote):
            return []
        return [Publish(config.remote_state_topic, b"1" if up else b"0", 0, True)]

    def remote_connected(self, connack: ConnAck) -> None:
        """The remote accepted us: its Receive Maximum caps the window."""
        properties = connack.properties
        limit = properties.receive_maximum if properties else None
        self.window = min(self.config.max_inflight, limit or 65535)
        self.remote_max_packet = properties.maximum_packet_size if properties else None

    def local_connect(self) -> Connect:
        """The local session: persistent, receiving at most `window` at once."""
        properties = Properties(
            session_expiry_interval=MAX_SESSION_EXPIRY, receive_maximum=self.window
        )
        return Connect(
            client_id=self.config.local_client_id,
            clean_session=False,
            keep_alive=0,  # in-process: nothing in between can fail silently
            protocol_level=PROTOCOL_MQTT_5,
            properties=properties,
        )

    def local_connected(self, connack: ConnAck) -> None:
        limit = connack.properties.receive_maximum if connack.properties else None
        self.local_room = limit or 65535
        self._local_unacked.clear()  # a new connection: the broker's count starts again
        self._fill_local()

    def local_subscribe(self) -> Subscribe | None:
        return _subscribe((rule.local_filter, rule.qos) for rule in self.out_rules)

    def remote_subscribe(self) -> Subscribe | None:
        v5 = self.remote_version == PROTOCOL_MQTT_5
        return _subscribe(((rule.remote_filter, rule.qos) for rule in self.in_rules), v5)

    def connection_lost(self) -> None:
        """Either side went: both are closed; what waited is sent again by the remote."""
        self._waiting.clear()
        self._local_unacked.clear()
        self.to_local.clear()
        self.to_remote.clear()

    # ------------------------------------------------------------ from the local broker

    def from_local(self, packet: Packet) -> None:
        kind = type(packet)
        if kind is Publish:
            assert isinstance(packet, Publish)
            self._outgoing(packet)
        elif kind is PubRel:
            assert isinstance(packet, PubRel)
            self.to_remote.append(PubRel(packet.packet_id))
        elif kind is PubAck or kind is PubComp:
            assert isinstance(packet, PubAck | PubComp)
            self._acknowledged_here(packet.packet_id)
            self.to_remote.append(kind(packet.packet_id))
        elif kind is PubRec:
            assert isinstance(packet, PubRec)
            if packet.reason_code >= FAILURE:  # the flow ends here
                self.figures.refused += 1
                self._acknowledged_here(packet.packet_id)
            self.to_remote.append(PubRec(packet.packet_id))

    def _outgoing(self, packet: Publish) -> None:
        rule = _first(self.out_rules, packet.topic, local=True)
        if rule is None:
            self.figures.unrouted += 1
            self._ack(self.to_local, packet)
            return
        topic = rule.remote_prefix + packet.topic[len(rule.local_prefix) :]
        retain = packet.retain and self.config.outgoing_retain
        properties = self._carried(packet.properties, self.remote_version)
        publish = packet.passed_on(topic, properties, retain)
        limit = self.remote_max_packet
        if limit is not None and len(encode(publish, self.remote_version)) > limit:
            # The remote would close the link for it [MQTT-3.1.2-24]: it ends here.
            self.figures.too_large += 1
            self._ack(self.to_local, packet)
            return
        self.to_remote.append(publish)
        self.figures.sent += 1

    # ------------------------------------------------------------ from the remote broker

    def from_remote(self, packet: Packet) -> None:
        kind = type(packet)
        if kind is Publish:
            assert isinstance(packet, Publish)
            self._incoming(packet)
        elif kind is PubRel:
            assert isinstance(packet, PubRel)
            self.to_local.append(PubRel(packet.packet_id))
        elif kind is PubAck or kind is PubComp:
            assert isinstance(packet, PubAck | PubComp)
            if packet.reason_code >= FAILURE:
                self.figures.refused += 1
            self.to_local.append(kind(packet.packet_id))
        elif kind is PubRec:
            assert isinstance(packet, PubRec)
            if packet.reason_code >= FAILURE:
                # Refused (not authorized, quota): its flow ends here all the
                # same, or the bridge's session would hold it for ever.
                self.figures.refused += 1
            self.to_local.append(PubRec(packet.packet_id))

    def _incoming(self, packet: Publish) -> None:
        rule = _first(self.in_rules, packet.topic, local=False)
        if rule is None:
            self.figures.unrouted += 1
            self._ack(self.to_remote, packet)
            return
        topic = rule.local_prefix + packet.topic[len(rule.remote_prefix) :]
        local = packet.passed_on(
            topic, self._carried(packet.properties, PROTOCOL_MQTT_5), packet.retain
        )
        self.figures.received += 1
        if packet.qos == 0:
            self.to_local.append(local)
            return
        self._waiting.append(local)
        self._fill_local()

    def _fill_local(self) -> None:
        waiting = self._waiting
        unacked = self._local_unacked
        while waiting and len(unacked) < self.local_room:
            packet = waiting.popleft()
            assert packet.packet_id is not None
            unacked.add(packet.packet_id)
            self.to_local.append(packet)

    def _acknowledged_here(self, packet_id: int) -> None:
        """The local broker ended the flow of one of the remote's messages."""
        self._local_unacked.discard(packet_id)
        if self._waiting:
            self._fill_local()

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _ack(queue: list[Packet], packet: Publish) -> None:
        """A message no rule takes: its flow ends at once (QoS 2: PUBREC, then PUBREL comes)."""
        if packet.packet_id is None:
            return
        queue.append(PubAck(packet.packet_id) if packet.qos == 1 else PubRec(packet.packet_id))

    @staticmethod
    def _carried(properties: Properties | None, version: int) -> Properties | None:
        """A message's properties as they go on: none to 3.1.1; without what
        belonged to the hop it came over (subscription ids, topic alias)."""
        if properties is None or version != PROTOCOL_MQTT_5:
            return None
        if properties.subscription_identifiers or properties.topic_alias is not None:
            return dataclasses.replace(properties, subscription_identifiers=(), topic_alias=None)
        return properties


def _first(rules: list[TopicRule], topic: str, *, local: bool) -> TopicRule | None:
    """The first rule taking `topic`. A topic that matches a filter but does not
    start with its prefix (`a/#` matches `a`: "site1/#" matches "site1") has
    nothing to map: no rule takes it."""
    for rule in rules:
        prefix = rule.local_prefix if local else rule.remote_prefix
        if topic.startswith(prefix) and topic_matches(prefix + rule.pattern, topic):
            return rule
    return None


def _subscribe(filters: Iterable[tuple[str, int]], v5: bool = True) -> Subscribe | None:
    """One SUBSCRIBE for `filters`; on 5.0 with No Local, Retain As Published,
    and retained messages only for a subscription that is new (the sessions
    persist: a reconnection does not send them all again)."""
    subscriptions = tuple(
        Subscription(
            topic_filter,
            qos,
            no_local=v5,
            retain_as_published=v5,
            retain_handling=RETAIN_SEND_IF_NEW if v5 else 0,
        )
        for topic_filter, qos in dict(filters).items()
    )
    return Subscribe(SUBSCRIBE_ID, subscriptions) if subscriptions else None
