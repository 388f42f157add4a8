"""The packet trace: one debug line per MQTT packet in and out (logger `midge.trace`).

It is on when that logger is enabled for DEBUG as the broker is made
(`log_level = "debug"` for `midge serve`): the broker then wraps each of its
packet handlers in one that logs the packet first (`traced`), and
`Connection.write_outbox` logs what it writes. Off, incoming packets cost
nothing more and each write one boolean (`Broker.trace`); nothing is
formatted. Incoming packets are described from the decoded packet, outgoing
ones from their bytes (what is written, in order, after any wait for the
store). A line names the client and the packet's type, packet id, QoS,
topic (or topic filters) and, for PUBLISH, the payload's length. Passwords,
authentication data and will payloads are never logged; PUBLISH payloads
only with `log_payloads = true`.

Every field is also given to the log record (`extra`), so the JSON log
format (midge/logs.py) has them apart: direction, packet, packet_id, qos,
topic, length, client_id, address.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from midge.protocol.packets import (
    PROTOCOL_MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)

if TYPE_CHECKING:
    from midge.broker.broker import Broker
    from midge.broker.connection import Connection

Handler = Callable[["Broker", "Connection", Any, float], None]

log = logging.getLogger("midge.trace")

PAYLOAD_SHOWN = 256  # bytes of a payload the trace shows at most (log_payloads)
_ACKS = (PubAck, PubRec, PubRel, PubComp)
_NAMES = {member.value: member.name for member in PacketType}
_TYPES: dict[type, PacketType] = {
    Connect: PacketType.CONNECT,
    ConnAck: PacketType.CONNACK,
    Publish: PacketType.PUBLISH,
    PubAck: PacketType.PUBACK,
    PubRec: PacketType.PUBREC,
    PubRel: PacketType.PUBREL,
    PubComp: PacketType.PUBCOMP,
    Subscribe: PacketType.SUBSCRIBE,
    SubAck: PacketType.SUBACK,
    Unsubscribe: PacketType.UNSUBSCRIBE,
    UnsubAck: PacketType.UNSUBACK,
    PingReq: PacketType.PINGREQ,
    PingResp: PacketType.PINGRESP,
    Disconnect: PacketType.DISCONNECT,
    Auth: PacketType.AUTH,
}
# Packet types whose variable header starts with a packet id.
_WITH_ID = frozenset(
    {
        PacketType.PUBACK,
        PacketType.PUBREC,
        PacketType.PUBREL,
        PacketType.PUBCOMP,
        PacketType.SUBSCRIBE,
        PacketType.SUBACK,
        PacketType.UNSUBSCRIBE,
        PacketType.UNSUBACK,
    }
)


def tracing() -> bool:
    """Whether the packet trace is on (asked once, when a broker is made)."""
    return log.isEnabledFor(logging.DEBUG)


def traced(handlers: dict[type, Handler], payloads: bool) -> dict[type, Handler]:
    """`handlers` (the broker's, by packet type), each logging its packet first."""

    def wrap(handler: Handler) -> Handler:
        def handle(broker: Broker, connection: Connection, packet: Any, now: float) -> None:
            trace_in(connection, packet, payloads)
            handler(broker, connection, packet, now)

        return handle

    return {kind: wrap(handler) for kind, handler in handlers.items()}


def trace_in(connection: Connection, packet: Packet, payloads: bool) -> None:
    """One line for a packet the broker is about to handle."""
    fields: dict[str, Any] = {"packet": _TYPES[type(packet)].name}
    if type(packet) is Publish:
        _publish_fields(fields, packet.packet_id, packet.qos, packet.retain, packet.topic)
        fields["length"] = len(packet.payload)
        if payloads:
            fields["payload"] = packet.payload[:PAYLOAD_SHOWN]
    elif type(packet) is Connect:
        # Never the password, nor the will's payload.
        fields["client_id"] = packet.client_id
        fields["user"] = packet.username
        fields["protocol_level"] = packet.protocol_level
        fields["keep_alive"] = packet.keep_alive
        fields["clean"] = int(packet.clean_session)
        if packet.will is not None:
            fields["will_topic"] = packet.will.topic
    elif type(packet) is Subscribe:
        fields["packet_id"] = packet.packet_id
        fields["topic"] = ",".join(item.topic_filter for item in packet.subscriptions)
        fields["qos"] = ",".join(str(item.qos) for item in packet.subscriptions)
    elif type(packet) is Unsubscribe:
        fields["packet_id"] = packet.packet_id
        fields["topic"] = ",".join(packet.topic_filters)
    elif isinstance(packet, _ACKS):
        fields["packet_id"] = packet.packet_id
        if packet.reason_code:
            fields["reason_code"] = packet.reason_code
    elif isinstance(packet, (Disconnect, Auth)) and packet.reason_code:
        fields["reason_code"] = packet.reason_code  # never the authentication data
    _emit("in", connection, fields)


def trace_out(connection: Connection, chunks: list[bytes], payloads: bool) -> None:
    """One line per packet in `chunks`, the bytes about to be written."""
    mqtt5 = connection.version == PROTOCOL_MQTT_5
    for chunk in chunks:
        position = 0
        while position < len(chunk):
            fields, position = _describe_bytes(chunk, position, mqtt5, payloads)
            _emit("out", connection, fields)


def _emit(direction: str, connection: Connection, fields: dict[str, Any]) -> None:
    described = " ".join(f"{key}={value!r}" for key, value in fields.items() if key != "packet")
    name = connection.name
    log.debug(
        "%s %s %s %s",
        direction.ljust(3),
        name,
        fields["packet"],
        described,
        extra={
            "direction": direction,
            "client_id": connection.client_id or None,
            "address": connection.peer,
            **fields,  # a CONNECT names its client id itself
        },
    )


def _publish_fields(
    fields: dict[str, Any], packet_id: int | None, qos: int, retain: bool, topic: str
) -> None:
    if packet_id is not None:
        fields["packet_id"] = packet_id
    fields["qos"] = qos
    if retain:
        fields["retain"] = 1
    fields["topic"] = topic


def _describe_bytes(
    data: bytes, start: int, mqtt5: bool, payloads: bool
) -> tuple[dict[str, Any], int]:
    """The trace fields of the packet at `start`, and where the next one starts."""
    first = data[start]
    kind = first >> 4
    length = 0
    shift = 0
    position = start + 1
    while position < len(data):
        byte = data[position]
        position += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    end = min(position + length, len(data))
    fields: dict[str, Any] = {"packet": _NAMES.get(kind, f"type {kind}")}
    body = data[position:end]
    if kind == PacketType.PUBLISH:
        qos = (first >> 1) & 3
        topic_length = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + topic_length].decode("utf-8", "replace")
        at = 2 + topic_length
        packet_id = None
        if qos:
            packet_id = int.from_bytes(body[at : at + 2], "big")
            at += 2
        if mqtt5:
            properties, at = _varint(body, at)
            at += properties
        _publish_fields(fields, packet_id, qos, bool(first & 1), topic)
        fields["length"] = len(body) - at
        if payloads:
            fields["payload"] = body[at : at + PAYLOAD_SHOWN]
    elif kind in _WITH_ID and len(body) >= 2:
        fields["packet_id"] = int.from_bytes(body[:2], "big")
        if kind in (PacketType.SUBACK, PacketType.UNSUBACK):
            codes = body[2:]
            if mqtt5:
                properties, at = _varint(body, 2)
                codes = body[at + properties :]
            fields["codes"] = list(codes)
        elif len(body) > 2 and body[2]:
            fields["reason_code"] = body[2]
    elif kind == PacketType.CONNACK and len(body) >= 2:
        fields["session_present"] = body[0] & 1
        fields["reason_code"] = body[1]
    elif kind in (PacketType.DISCONNECT, PacketType.AUTH) and body and body[0]:
        fields["reason_code"] = body[0]
    return fields, end


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while at < len(data):
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value, at
