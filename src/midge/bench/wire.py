"""Raw-socket MQTT for the load generator: pre-encoded packets, fixed-header framing.

Nothing here decodes a payload it only has to count. A subscriber that gets
PUBLISH packets of one known size (one topic length, one payload size, one
QoS) counts them from the byte count and checks the first byte of each with
one strided slice (`data[0::size].count(first)`), which runs at C speed; any
other stream goes through `scan`, which reads first byte and remaining
length only.

Every client speaks MQTT 3.1.1 (level 4) or 5.0 (level 5), as its spec says.
At 5.0 the generator sends what a plain 5.0 client does: CONNECT, SUBSCRIBE
and PUBLISH with an empty property block (one byte, 0), and PUBACK, PUBREC,
PUBREL and PUBCOMP in their 4-byte short form (success, no properties). It
reads the 5.0 CONNACK and SUBACK (with their properties), PUBLISH with a
property block before the payload, and acknowledgements with a reason code.
"""

from __future__ import annotations

import resource
import select
import socket
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from midge.protocol.codec import encode, encode_publish, encode_publish5, encode_remaining_length
from midge.protocol.packets import (
    PROTOCOL_MQTT_3_1_1,
    PROTOCOL_MQTT_5,
    Connect,
    Disconnect,
    Subscribe,
    Subscription,
)
from midge.protocol.properties import Properties

HOST = "127.0.0.1"
BATCH_BYTES = 64 * 1024  # a publisher writes at least this much per send
RECV_BYTES = 1 << 20
SEQ = array("I")  # 4-byte unsigned, the sequence number at the start of a payload
SEQ_BYTES = SEQ.itemsize
# A tagged id: the sequence number, then the publisher's tag (4 bytes each), read as
# one 8-byte number, so that messages from several publishers never share an id.
TAGGED = array("Q")
TAGGED_BYTES = TAGGED.itemsize
PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = encode(Disconnect())
PUBLISH = 3
PUBACK_FIRST, PUBREC_FIRST, PUBREL_FIRST, PUBCOMP_FIRST = 0x40, 0x50, 0x62, 0x70
MQTT_3_1_1, MQTT_5 = PROTOCOL_MQTT_3_1_1, PROTOCOL_MQTT_5  # protocol levels
PROTOCOL_NAMES = {MQTT_3_1_1: "3.1.1", MQTT_5: "5.0"}
EMPTY_PROPERTIES = b"\x00"  # a 5.0 property block with nothing in it
# What a persistent 5.0 session asks for (3.1.1's clean session 0): never expire.
PERSISTENT_SESSION = Properties(session_expiry_interval=0xFFFF_FFFF)

if SEQ_BYTES != 4 or TAGGED_BYTES != 2 * SEQ_BYTES:  # pragma: no cover - CPython today
    raise ImportError("array('I') is not 4 bytes here, or array('Q') not 8")


class BenchError(RuntimeError):
    """The broker refused, closed or did not answer where the benchmark needs it to."""


def raise_fd_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


# ------------------------------------------------------------------ packets


def seq_payload(seq: int, size: int) -> bytes:
    """A payload of `size` bytes starting with `seq` (4 bytes, native order)."""
    head = array("I", (seq & 0xFFFFFFFF,)).tobytes()
    return head + b"x" * (size - SEQ_BYTES)


@dataclass(frozen=True, slots=True)
class PublishShape:
    """Where things are in a PUBLISH of one topic length, payload size and QoS."""

    size: int  # the whole packet
    header: int  # fixed header: first byte + remaining length bytes
    packet_id_at: int  # offset of the packet id (QoS > 0)
    payload_at: int  # offset of the payload
    second: int  # the first remaining-length byte, the same in every such packet

    @classmethod
    def of(
        cls, topic_bytes: int, payload: int, qos: int, protocol: int = MQTT_3_1_1
    ) -> PublishShape:
        """At 5.0, with an empty property block (one byte) before the payload."""
        properties = len(EMPTY_PROPERTIES) if protocol >= MQTT_5 else 0
        body = 2 + topic_bytes + (2 if qos else 0) + properties + payload
        header = 1 + len(encode_remaining_length(body))
        packet_id_at = header + 2 + topic_bytes
        payload_at = packet_id_at + (2 if qos else 0) + properties
        return cls(
            header + body, header, packet_id_at, payload_at, encode_remaining_length(body)[0]
        )


def publish_stream(
    topics: list[str],
    payload: int,
    qos: int,
    first_seq: int,
    count: int,
    retain: bool = False,
    protocol: int = MQTT_3_1_1,
) -> bytes:
    """`count` PUBLISH packets cycling over `topics`, sequence numbers from `first_seq`,
    packet ids 1..65535 in turn (QoS > 0); at 5.0 with an empty property block."""
    packets = []
    for seq in range(first_seq, first_seq + count):
        packet_id = seq % 0xFFFF + 1 if qos else None
        topic = topics[seq % len(topics)]
        packets.append(
            publish_packet(topic, seq_payload(seq, payload), qos, retain, packet_id, protocol)
        )
    return b"".join(packets)


def publish_packet(
    topic: str, payload: bytes, qos: int, retain: bool, packet_id: int | None, protocol: int
) -> bytes:
    """One PUBLISH (DUP clear) at `protocol`'s level."""
    if protocol >= MQTT_5:
        return encode_publish5(topic, payload, qos, retain, False, packet_id, EMPTY_PROPERTIES)
    return encode_publish(topic, payload, qos, retain, False, packet_id)


def payload_start(buffer: bytes | bytearray, after_packet_id: int, protocol: int) -> int:
    """Where the payload of a PUBLISH starts: at 5.0, past its property block."""
    if protocol < MQTT_5:
        return after_packet_id
    length = shift = 0
    index = after_packet_id
    while True:
        byte = buffer[index]
        index += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return index + length
        shift += 7
        if shift > 21:
            raise BenchError("malformed property length from the broker")


def skip_properties(body: bytes, at: int) -> int:
    """The offset after the 5.0 property block (a variable-byte length, then
    that many bytes) that starts at `body[at]`."""
    return payload_start(body, at, MQTT_5)


def acks(first: int, packet_ids_hi: bytes | bytearray, packet_ids_lo: bytes | bytearray) -> bytes:
    """4-byte acknowledgements (`first`, 2, id) for columns of packet id bytes, at C speed."""
    count = len(packet_ids_hi)
    out = bytearray(4 * count)
    out[0::4] = bytes((first,)) * count
    out[1::4] = b"\x02" * count
    out[2::4] = packet_ids_hi
    out[3::4] = packet_ids_lo
    return bytes(out)


def seq_column(
    data: bytes | bytearray, start: int, stride: int, count: int, width: int = SEQ_BYTES
) -> array[int]:
    """The ids at `start`, `start + stride`, ... (count of them): sequence numbers,
    or tagged ids with `width` TAGGED_BYTES."""
    end = start + stride * (count - 1) + 1
    out = bytearray(width * count)
    for byte in range(width):
        out[byte::width] = data[start + byte : end + byte : stride]
    return array("I" if width == SEQ_BYTES else "Q", bytes(out))


def scan(buffer: bytearray) -> Iterator[tuple[int, int, int]]:
    """(first byte, body start, body end) of each complete packet in `buffer`.

    The caller deletes `buffer[:end]` of the last packet it took; the
    generator stops at the first incomplete one.
    """
    size = len(buffer)
    pos = 0
    while pos + 2 <= size:
        first = buffer[pos]
        length = shift = 0
        index = pos + 1
        while True:
            if index >= size:
                return
            byte = buffer[index]
            index += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise BenchError("malformed remaining length from the broker")
        end = index + length
        if end > size:
            return
        yield first, index, end
        pos = end


# ------------------------------------------------------------------ clients


class Client:
    """A blocking socket with a read buffer: CONNECT, SUBSCRIBE, read whole packets."""

    def __init__(self, sock: socket.socket, client_id: str, protocol: int = MQTT_3_1_1) -> None:
        self.sock = sock
        self.client_id = client_id
        self.protocol = protocol
        self.buffer = bytearray()

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        client_id: str,
        clean_session: bool = True,
        timeout: float = 10.0,
        protocol: int = MQTT_3_1_1,
    ) -> Client:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(sock, client_id, protocol)
        try:
            sock.sendall(connect_packet(client_id, clean_session, protocol))
            client.expect_connack()
        except BaseException:
            sock.close()
            raise
        return client

    def expect_connack(self) -> None:
        """3.1.1: `20 02 flags 00`; 5.0: flags, reason code 0, then properties."""
        first, body = self.read_packet()
        size_ok = len(body) == 2 if self.protocol < MQTT_5 else len(body) >= 2
        if first != 0x20 or not size_ok or body[1] != 0:
            raise BenchError(
                f"{self.client_id}: CONNACK refused: {bytes((first,)).hex()} {body.hex()}"
            )

    def read_packet(self, timeout: float = 10.0) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            for first, start, end in scan(self.buffer):
                body = bytes(self.buffer[start:end])
                del self.buffer[:end]
                return first, body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(
                    f"{self.client_id}: no packet from the broker within {timeout:g} s"
                )
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(RECV_BYTES)
            except TimeoutError:
                continue
            if not data:
                raise BenchError(f"{self.client_id}: the broker closed the connection")
            self.buffer += data

    def send_subscribe(self, filters: list[tuple[str, int]], packet_id: int = 1) -> None:
        subscriptions = tuple(Subscription(topic_filter, qos) for topic_filter, qos in filters)
        self.sock.sendall(encode(Subscribe(packet_id, subscriptions), self.protocol))

    def expect_suback(self, count: int, timeout: float = 30.0) -> None:
        """One code per filter, none a failure (0x80 and up); at 5.0 after properties."""
        first, body = self.read_packet(timeout)
        codes_at = 2 if self.protocol < MQTT_5 or len(body) < 3 else skip_properties(body, 2)
        codes = body[codes_at:]
        if first != 0x90 or len(codes) != count or any(code >= 0x80 for code in codes):
            raise BenchError(
                f"{self.client_id}: unexpected SUBACK {bytes((first,)).hex()} {body.hex()}"
            )

    def subscribe(self, filters: list[tuple[str, int]], timeout: float = 30.0) -> None:
        self.send_subscribe(filters)
        self.expect_suback(len(filters), timeout)

    def ping(self, timeout: float) -> None:
        """PINGREQ, then wait for PINGRESP: the broker has handled all we sent before."""
        self.sock.sendall(PINGREQ)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            first, _ = self.read_packet(remaining)
            if first == 0xD0:
                return
        raise BenchError(f"{self.client_id}: no PINGRESP within {timeout:g} s")

    def discard_available(self) -> int:
        """Read what has arrived without waiting; drop the whole packets; return how many."""
        dropped = 0
        for _ in range(64):  # bounded even if the broker never stops sending
            if not select.select([self.sock], [], [], 0)[0]:
                break
            data = self.sock.recv(RECV_BYTES)
            if not data:
                raise BenchError(f"{self.client_id}: the broker closed the connection")
            self.buffer += data
            taken = 0
            for _first, _start, end in scan(self.buffer):
                taken = end
                dropped += 1
            del self.buffer[:taken]
        return dropped

    def close(self) -> None:
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(DISCONNECT)
        except OSError:
            pass
        self.sock.close()


def connect_packet(client_id: str, clean_session: bool, protocol: int) -> bytes:
    """CONNECT at `protocol`'s level. At 5.0 its property block is empty, except for a
    persistent session (clean session 0), which asks never to expire, as 3.1.1's does."""
    if protocol < MQTT_5:
        return encode(Connect(client_id, clean_session=clean_session))
    properties = None if clean_session else PERSISTENT_SESSION
    return encode(
        Connect(client_id, clean_session, protocol_level=MQTT_5, properties=properties), MQTT_5
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]
