"""Helpers for the durability tests: a blocking raw MQTT 3.1.1 client on Midge's codec.

Every read has a timeout, and a broker that goes away (EOF, reset, broken
pipe) surfaces as `BrokerGone`, so a test can kill the broker under a client
and carry on with a restarted one.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from midge.protocol.codec import Decoder, encode, encode_publish
from midge.protocol.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
)

WAIT = 10.0  # seconds for anything that should happen "at once" on loopback
STORE_FILE = "midge.db"  # the SQLite store's name inside --data-dir


class BrokerGone(ConnectionError):
    """The broker closed the connection or its process is gone."""


def store_path(data_dir: Path) -> Path:
    return data_dir / STORE_FILE


def data_dir_args(data_dir: Path) -> list[str]:
    """extra_args for start_midge: a later --data-dir overrides the helper's own."""
    return ["--data-dir", str(data_dir)]


class RawClient:
    """One MQTT 3.1.1 connection over a plain socket; packets in, bytes out."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        clean_session: bool = True,
        keep_alive: int = 0,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        self.decoder = Decoder()
        self.client_id = client_id
        self.send(encode(Connect(client_id, clean_session=clean_session, keep_alive=keep_alive)))
        connack = self.read(WAIT)
        if not isinstance(connack, ConnAck) or connack.return_code != 0:
            self.close()
            raise AssertionError(f"{client_id}: expected CONNACK 0, got {connack!r}")
        self.session_present = connack.session_present

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise BrokerGone(f"send failed: {exc}") from exc

    def read(self, timeout: float = WAIT) -> Packet:
        """The next packet; TimeoutError after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while (packet := self.decoder.next_packet()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.client_id}: no packet within {timeout:g} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise BrokerGone(f"recv failed: {exc}") from exc
            if not data:
                raise BrokerGone("connection closed by the broker")
            self.decoder.feed(data)
        return packet

    def subscribe(self, topic_filter: str, qos: int, packet_id: int = 1) -> tuple[int, ...]:
        self.send(encode(Subscribe(packet_id, (Subscription(topic_filter, qos),))))
        suback = self.read()
        assert isinstance(suback, SubAck) and suback.packet_id == packet_id, suback
        return suback.return_codes

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, packet_id: int = 1
    ) -> None:
        """Publish and, for QoS 1/2, complete the whole acknowledgement flow."""
        self.send(encode_publish(topic, payload, qos, retain, packet_id=packet_id if qos else None))
        if qos == 1:
            ack = self.read()
            assert ack == PubAck(packet_id), ack
        elif qos == 2:
            ack = self.read()
            assert ack == PubRec(packet_id), ack
            self.send(encode(PubRel(packet_id)))
            ack = self.read()
            assert ack == PubComp(packet_id), ack

    def receive(self, timeout: float = WAIT) -> Publish:
        """The next PUBLISH, acknowledged as its QoS requires (QoS 2: the whole flow)."""
        packet = self.read(timeout)
        assert isinstance(packet, Publish), packet
        if packet.qos == 1:
            self.send(encode(PubAck(packet.packet_id or 0)))
        elif packet.qos == 2:
            self.send(encode(PubRec(packet.packet_id or 0)))
            release = self.read(timeout)
            assert release == PubRel(packet.packet_id or 0), release
            self.send(encode(PubComp(packet.packet_id or 0)))
        return packet

    def expect_silence(self, seconds: float) -> None:
        """Nothing arrives for `seconds`."""
        try:
            packet = self.read(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"{self.client_id}: expected nothing, got {packet!r}")

    def disconnect(self) -> None:
        try:
            self.send(encode(Disconnect()))
        finally:
            self.close()

    def close(self) -> None:
        self.sock.close()
