"""Helpers for the integration tests: a blocking paho wrapper, raw MQTT bytes, /proc probes.

Every wait here has a timeout. Raw packets are built by hand from the MQTT
3.1.1 specification (not with Midge's own codec), so the broker is tested
against bytes it did not produce.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT = 5.0  # seconds for anything that should happen "at once" on loopback
MQTTV31 = mqtt.MQTTv31
MQTTV311 = mqtt.MQTTv311
PROTOCOLS = {"v31": MQTTV31, "v311": MQTTV311}

_ids = itertools.count(1)


def unique(prefix: str) -> str:
    """A short unique name (client ids stay below 23 characters for MQTT 3.1)."""
    return f"{prefix}{os.getpid() % 1000}x{next(_ids)}"


# ------------------------------------------------------------------- paho


@dataclass
class Connack:
    reason: Any  # paho ReasonCode
    session_present: bool


class Paho:
    """A paho-mqtt client (callback API 2) driven synchronously with timeouts."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str = "",
        protocol: int = MQTTV311,
        clean_session: bool = True,
        username: str | None = None,
        password: str | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        keepalive: int = 60,
        transport: str = "tcp",
        tls: dict[str, Any] | None = None,
    ) -> None:
        """`transport` "websockets" for MQTT over WebSocket; `tls`: `tls_set` arguments."""
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or unique("p"),
            clean_session=clean_session,
            protocol=protocol,
            reconnect_on_failure=False,
            transport=transport,  # type: ignore[arg-type]
        )
        if tls is not None:
            self.client.tls_set(**tls)
        self.client.max_inflight_messages_set(20)
        self.client.max_queued_messages_set(0)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connacks: queue.Queue[Connack] = queue.Queue()
        self.disconnected = threading.Event()
        self._acks: dict[int, queue.Queue[list[Any]]] = {}
        self._acks_lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_ack
        self.client.on_unsubscribe = self._on_ack
        self.client.on_disconnect = self._on_disconnect
        self._looping = False

    # callbacks run on paho's network thread
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connacks.put(Connack(reason, bool(flags.session_present)))

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _ack_queue(self, mid: int) -> queue.Queue[list[Any]]:
        with self._acks_lock:
            return self._acks.setdefault(mid, queue.Queue())

    def _on_ack(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._ack_queue(mid).put(list(codes))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, p: Any) -> None:
        self.disconnected.set()

    # operations
    def connect(self, timeout: float = WAIT) -> Connack:
        """Connect and wait for CONNACK; the network loop keeps running afterwards."""
        self.client.connect(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        self._looping = True
        try:
            return self.connacks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no CONNACK within {timeout}s") from None

    def connect_ok(self, timeout: float = WAIT) -> Connack:
        connack = self.connect(timeout)
        assert not connack.reason.is_failure, f"connection refused: {connack.reason}"
        return connack

    def subscribe(self, topic: str, qos: int, timeout: float = WAIT) -> list[Any]:
        result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        return self._wait_ack(mid, timeout, "SUBACK")

    def unsubscribe(self, topic: str, timeout: float = WAIT) -> None:
        result, mid = self.client.unsubscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        self._wait_ack(mid, timeout, "UNSUBACK")

    def _wait_ack(self, mid: int, timeout: float, what: str) -> list[Any]:
        try:
            return self._ack_queue(mid).get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {what} for mid {mid} within {timeout}s") from None

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 0,
        retain: bool = False,
        wait: bool = True,
        timeout: float = WAIT,
    ) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos, retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        if wait:
            info.wait_for_publish(timeout)
            assert info.is_published(), f"PUBLISH to {topic} not completed within {timeout}s"
        return info

    def get(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def get_many(self, count: int, timeout: float = WAIT) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        out: list[mqtt.MQTTMessage] = []
        while len(out) < count:
            remaining = deadline - time.monotonic()
            try:
                out.append(self.messages.get(timeout=max(remaining, 0.001)))
            except queue.Empty:
                raise AssertionError(
                    f"got {len(out)} of {count} messages within {timeout}s"
                ) from None
        return out

    def drain(self) -> list[mqtt.MQTTMessage]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def until(self, topic: str, timeout: float = WAIT) -> list[mqtt.MQTTMessage]:
        """Messages received up to and including the first one on `topic`."""
        deadline = time.monotonic() + timeout
        out = []
        for _ in range(100_000):
            remaining = deadline - time.monotonic()
            try:
                message = self.messages.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                seen = [m.topic for m in out]
                raise AssertionError(
                    f"no message on {topic} within {timeout}s; saw {seen}"
                ) from None
            out.append(message)
            if message.topic == topic:
                return out
        raise AssertionError("too many messages")

    def disconnect(self) -> None:
        """Clean DISCONNECT, then stop the network thread."""
        if self._looping:
            self.client.disconnect()
            self.disconnected.wait(WAIT)
            self.client.loop_stop()
            self._looping = False

    def drop(self) -> None:
        """Abrupt close: stop the network thread and close the socket, no DISCONNECT."""
        self.client.loop_stop()
        self._looping = False
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.disconnect()


@contextmanager
def paho(host: str, port: int, **kwargs: Any) -> Iterator[Paho]:
    """A connected paho client (CONNACK 0 checked), disconnected on exit."""
    client = Paho(host, port, **kwargs)
    try:
        client.connect_ok()
        yield client
    finally:
        client.close()


class Paho5:
    """A paho-mqtt MQTTv5 client driven synchronously, with timeouts."""

    def __init__(self, host: str, port: int, client_id: str = "") -> None:
        self.host, self.port = host, port
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or unique("p5"),
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connacks: queue.Queue[tuple[Any, Any, Any]] = queue.Queue()
        self.acks: queue.Queue[list[Any]] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, flags, reason, props: self.connacks.put(
            (flags, reason, props)
        )
        self.client.on_message = lambda c, u, message: self.messages.put(message)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.acks.put(list(codes))
        self.client.on_disconnect = lambda c, u, flags, reason, props: self.disconnects.put(reason)

    def connect(self, clean_start: bool = True, expiry: int | None = None) -> tuple[Any, Any]:
        properties = None
        if expiry is not None:
            properties = PahoProperties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = expiry
        self.client.connect(
            self.host, self.port, keepalive=30, clean_start=clean_start, properties=properties
        )
        self.client.loop_start()
        flags, reason, props = self.connacks.get(timeout=WAIT)
        assert not reason.is_failure, reason
        return flags, props

    def subscribe(self, topic: str, qos: int, subscription_id: int = 0, **options: Any) -> Any:
        properties = None
        if subscription_id:
            properties = PahoProperties(PacketTypes.SUBSCRIBE)
            properties.SubscriptionIdentifier = subscription_id
        self.client.subscribe(
            topic, options=SubscribeOptions(qos=qos, **options), properties=properties
        )
        return self.acks.get(timeout=WAIT)

    def publish(self, topic: str, payload: bytes, qos: int, **properties: Any) -> None:
        props = None
        if properties:
            props = PahoProperties(PacketTypes.PUBLISH)
            for name, value in properties.items():
                setattr(props, name, value)
        info = self.client.publish(topic, payload, qos, properties=props)
        info.wait_for_publish(WAIT)
        assert info.is_published()

    def get(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def paho5(broker: tuple[str, int, Any], client_id: str = "", **connect: Any) -> Iterator[Paho5]:
    """A connected MQTTv5 paho client for `broker` (host, port, ...), closed on exit."""
    client = Paho5(broker[0], broker[1], client_id)
    client.connect(**connect)
    try:
        yield client
    finally:
        client.close()


# --------------------------------------------------------- raw MQTT bytes


def remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def mqtt_string(value: str | bytes) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + remaining_length(len(body)) + body


def connect_packet(
    client_id: str,
    clean_session: bool = True,
    keep_alive: int = 60,
    level: int = 4,
    will: tuple[str, bytes, int, bool] | None = None,
    username: str | None = None,
    password: bytes | None = None,
) -> bytes:
    name = "MQTT" if level == 4 else "MQIsdp"
    flags = 0x02 if clean_session else 0
    payload = mqtt_string(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += mqtt_string(topic) + mqtt_string(message)
    if username is not None:
        flags |= 0x80
        payload += mqtt_string(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_string(password)
    body = mqtt_string(name) + bytes((level, flags)) + struct.pack("!H", keep_alive) + payload
    return packet(0x10, body)


def publish_packet(
    topic: str | bytes, payload: bytes, qos: int = 0, packet_id: int = 1, retain: bool = False
) -> bytes:
    body = mqtt_string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(0x30 | (qos << 1) | int(retain), body)


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(
        mqtt_string(topic) + bytes((qos,)) for topic, qos in filters
    )
    return packet(0x82, body)


DISCONNECT = b"\xe0\x00"
PINGREQ = b"\xc0\x00"


class RawClient:
    """A plain TCP socket speaking hand-built MQTT, with a timeout on every read."""

    def __init__(
        self, host: str, port: int, rcvbuf: int | None = None, source: str | None = None
    ) -> None:
        """`source`: the local (loopback) address to connect from; any by default."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect(), so the advertised window starts small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.settimeout(WAIT)
        self.sock.connect((host, port))
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def read_packet(self) -> tuple[int, bytes]:
        """(first byte, body) of the next packet."""
        first = self._recv_exact(1)[0]
        length = 0
        for shift in range(0, 28, 7):
            byte = self._recv_exact(1)[0]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
        return first, self._recv_exact(length)

    def connect(self, client_id: str, **kwargs: Any) -> tuple[int, int]:
        """Send CONNECT; (acknowledge flags, return code) of the CONNACK."""
        self.send(connect_packet(client_id, **kwargs))
        first, body = self.read_packet()
        assert first == 0x20 and len(body) == 2, (hex(first), body)
        return body[0], body[1]

    def connect_ok(self, client_id: str, **kwargs: Any) -> None:
        _flags, code = self.connect(client_id, **kwargs)
        assert code == 0, f"CONNACK return code {code}"

    def subscribe(self, filters: list[tuple[str, int]], packet_id: int = 1) -> bytes:
        self.send(subscribe_packet(packet_id, filters))
        first, body = self.read_packet()
        assert first == 0x90, hex(first)
        assert body[:2] == struct.pack("!H", packet_id)
        return body[2:]

    def closed_by_peer(self, timeout: float = WAIT) -> bool:
        """Whether the broker closes the connection within `timeout` (data is discarded)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


@contextmanager
def raw_client(host: str, port: int, **kwargs: Any) -> Iterator[RawClient]:
    client = RawClient(host, port, **kwargs)
    try:
        yield client
    finally:
        client.close()


# ----------------------------------------------------------------- /proc


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in kB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(predicate: Any, timeout: float = WAIT, interval: float = 0.05) -> bool:
    """Poll `predicate` until true or `timeout`; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def connack_times(clients: list[RawClient], deadline: float) -> list[tuple[int, float]]:
    """For each client: (CONNACK return code, time.monotonic() when it arrived)."""
    answered: dict[int, tuple[int, float]] = {}
    with selectors.DefaultSelector() as selector:
        for index, client in enumerate(clients):
            selector.register(client.sock, selectors.EVENT_READ, index)
        while len(answered) < len(clients) and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=remaining):
                at = time.monotonic()
                first, body = clients[key.data].read_packet()  # 4 bytes, already here
                assert first == 0x20 and len(body) == 2, (hex(first), body)
                answered[key.data] = (body[1], at)
                selector.unregister(key.fileobj)
    assert len(answered) == len(clients), f"{len(clients) - len(answered)} got no CONNACK"
    return [answered[index] for index in range(len(clients))]
