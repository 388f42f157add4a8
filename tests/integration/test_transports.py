"""TLS, mutual TLS, WebSocket and secure WebSocket listeners, side by side in one broker.

Real peers: mosquitto_pub / mosquitto_sub with --cafile / --cert / --key,
paho-mqtt over TLS and with transport="websockets", and a raw WebSocket
client (the `websockets` library) for what no MQTT client does on purpose:
one MQTT packet split over frames, several packets in one frame, a text
frame. Certificates are made by openssl for this test run, never committed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from integration_support import Paho, unique
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocket_connect

from brokers import HOST, free_port, start_midge, wait_for_port
from certificates import Certificates, make_certificates
from midge.protocol.codec import Decoder, encode
from midge.protocol.packets import (
    ConnAck,
    Connect,
    PingReq,
    PingResp,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
)

TIMEOUT = 10


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """CN=alice signed by the CA (mutual TLS), CN=mallory self-signed (refused)."""
    return make_certificates(tmp_path_factory.mktemp("tls"), "alice", "mallory")


@dataclass(frozen=True)
class Ports:
    tcp: int
    tls: int
    mutual: int
    ws: int
    wss: int


@pytest.fixture(scope="module")
def broker(certs: Certificates) -> Iterator[Ports]:
    tls_files = f'certfile = "{certs.server_cert}"\nkeyfile = "{certs.server_key}"\n'
    ports = [free_port() for _ in range(4)]
    config = (
        "allow_anonymous = true\n"
        "[[listeners]]\nport = 0\n"  # --port 0 moves this one; the log names its port
        f'[[listeners]]\nport = {ports[0]}\ntransport = "tls"\n{tls_files}'
        f'[[listeners]]\nport = {ports[1]}\ntransport = "tls"\n{tls_files}'
        f'cafile = "{certs.ca}"\nrequire_certificate = true\nuse_identity_as_username = true\n'
        "allow_anonymous = false\n"
        f'[[listeners]]\nport = {ports[2]}\ntransport = "ws"\n'
        f'[[listeners]]\nport = {ports[3]}\ntransport = "wss"\n{tls_files}'
    )
    with start_midge(config_toml=config) as (_host, port, _process):
        for extra in ports:
            wait_for_port(extra, TIMEOUT)
        yield Ports(port, *ports)


def _mosquitto(tool: str, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (apt-get install mosquitto-clients)")
    return subprocess.run(
        [tool, *args], check=False, capture_output=True, text=True, timeout=timeout
    )


def _sub_process(*args: str) -> subprocess.Popen[str]:
    if shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto_sub is not installed")
    return subprocess.Popen(
        ["mosquitto_sub", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _tcp_subscriber(ports: Ports, topic: str) -> Paho:
    subscriber = Paho(HOST, ports.tcp)
    subscriber.connect_ok()
    subscriber.subscribe(topic, 1)
    return subscriber


# ------------------------------------------------------------------ TLS


def test_mosquitto_clients_over_tls(broker: Ports, certs: Certificates) -> None:
    topic = unique("tls/")
    sub = _sub_process(
        "-h",
        HOST,
        "-p",
        str(broker.tls),
        "--cafile",
        str(certs.ca),
        "-t",
        topic,
        "-q",
        "1",
        "-C",
        "1",
        "-W",
        str(TIMEOUT),
    )
    try:
        time.sleep(0.5)  # let it subscribe
        pub = _mosquitto(
            "mosquitto_pub",
            "-h",
            HOST,
            "-p",
            str(broker.tls),
            "--cafile",
            str(certs.ca),
            "-t",
            topic,
            "-m",
            "over tls",
            "-q",
            "2",
        )
        assert pub.returncode == 0, pub.stderr
        out, err = sub.communicate(timeout=TIMEOUT)
    finally:
        sub.kill()
    assert sub.returncode == 0, err
    assert out == "over tls\n"


def test_tls_reaches_plain_tcp_subscribers(broker: Ports, certs: Certificates) -> None:
    topic = unique("tls/")
    subscriber = _tcp_subscriber(broker, topic)
    publisher = Paho(HOST, broker.tls, tls={"ca_certs": str(certs.ca)})
    try:
        publisher.connect_ok()
        publisher.publish(topic, b"x" * 100_000, qos=1)
        assert subscriber.get().payload == b"x" * 100_000
    finally:
        publisher.close()
        subscriber.close()


def test_plain_mqtt_on_a_tls_port_gets_nowhere(broker: Ports) -> None:
    with socket.create_connection((HOST, broker.tls), timeout=TIMEOUT) as sock:
        sock.sendall(encode(Connect("plain")))
        sock.settimeout(TIMEOUT)
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
    assert not data.startswith(b"\x20\x02")  # never a CONNACK in the clear


# ----------------------------------------------------------- mutual TLS


def test_client_certificate_logs_in_as_its_common_name(broker: Ports, certs: Certificates) -> None:
    """The listener refuses anonymous clients, so only the certificate's CN lets this in."""
    topic = unique("mtls/")
    subscriber = _tcp_subscriber(broker, topic)
    try:
        pub = _mosquitto(
            "mosquitto_pub",
            "-h",
            HOST,
            "-p",
            str(broker.mutual),
            "--cafile",
            str(certs.ca),
            "--cert",
            str(certs.client_cert),
            "--key",
            str(certs.client_key),
            "-t",
            topic,
            "-m",
            "from alice",
            "-q",
            "1",
        )
        assert pub.returncode == 0, pub.stderr
        assert subscriber.get().payload == b"from alice"
    finally:
        subscriber.close()


@pytest.mark.parametrize("which", ["none", "not-signed-by-the-ca"])
def test_mutual_tls_refuses_clients_without_a_valid_certificate(
    broker: Ports, certs: Certificates, which: str
) -> None:
    args = ["-h", HOST, "-p", str(broker.mutual), "--cafile", str(certs.ca), "-t", "x", "-m", "y"]
    if which != "none":
        args += ["--cert", str(certs.stranger_cert), "--key", str(certs.stranger_key)]
    result = _mosquitto("mosquitto_pub", *args)
    assert result.returncode != 0
    # And the broker still serves everyone else.
    probe = Paho(HOST, broker.tcp)
    try:
        probe.connect_ok()
    finally:
        probe.close()


def test_paho_with_client_certificate(broker: Ports, certs: Certificates) -> None:
    client = Paho(
        HOST,
        broker.mutual,
        tls={
            "ca_certs": str(certs.ca),
            "certfile": str(certs.client_cert),
            "keyfile": str(certs.client_key),
        },
    )
    try:
        client.connect_ok()
        topic = unique("mtls/")
        client.subscribe(topic, 2)
        client.publish(topic, b"loop", qos=2)
        assert client.get().payload == b"loop"
    finally:
        client.close()


# ------------------------------------------------------------- WebSocket


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_paho_over_websocket_both_ways(broker: Ports, certs: Certificates, secure: bool) -> None:
    port = broker.wss if secure else broker.ws
    tls = {"ca_certs": str(certs.ca)} if secure else None
    topic = unique("ws/")
    web = Paho(HOST, port, transport="websockets", tls=tls)
    tcp = _tcp_subscriber(broker, topic + "/to-tcp")
    try:
        web.connect_ok()
        web.subscribe(topic + "/to-web", 1)
        web.publish(topic + "/to-tcp", b"a" * 70_000, qos=1)  # several frames' worth
        assert tcp.get().payload == b"a" * 70_000
        tcp.publish(topic + "/to-web", b"hello browser", qos=1)
        assert web.get().payload == b"hello browser"
    finally:
        web.close()
        tcp.close()


def test_raw_frames_one_packet_split_and_several_joined(broker: Ports) -> None:
    """One CONNECT split over two frames, then SUBSCRIBE + PUBLISH + PINGREQ in one frame."""
    topic = unique("ws/")
    url = f"ws://{HOST}:{broker.ws}/mqtt"
    with websocket_connect(url, subprotocols=["mqtt"], open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol == "mqtt"
        connect = encode(Connect(unique("raw")))
        ws.send(connect[:5])
        ws.send(connect[5:])
        assert _packets(ws, 1) == [ConnAck(0)]
        ws.send(
            encode(Subscribe(1, (Subscription(topic, 0),)))
            + encode(Publish(topic, b"one frame", 0))
            + encode(PingReq())
        )
        assert _packets(ws, 3) == [SubAck(1, (0,)), Publish(topic, b"one frame", 0), PingResp()]


def test_text_frame_closes_the_connection(broker: Ports) -> None:
    url = f"ws://{HOST}:{broker.ws}/mqtt"
    with websocket_connect(url, subprotocols=["mqtt"], open_timeout=TIMEOUT) as ws:
        ws.send(encode(Connect(unique("raw"))))
        assert _packets(ws, 1) == [ConnAck(0)]
        ws.send("not binary")  # MQTT must travel in binary frames [MQTT-6.0.0-1]
        with pytest.raises(ConnectionClosed):
            for _ in range(10):
                ws.recv(timeout=TIMEOUT)


def test_plain_http_is_not_upgraded(broker: Ports) -> None:
    with socket.create_connection((HOST, broker.ws), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(TIMEOUT)
        answer = sock.recv(1000)
    assert answer.startswith(b"HTTP/1.1 4")


def _packets(ws: object, count: int) -> list[object]:
    decoder = Decoder()
    packets: list[object] = []
    deadline = time.monotonic() + TIMEOUT
    while len(packets) < count:
        data = ws.recv(timeout=max(deadline - time.monotonic(), 0.01))  # type: ignore[attr-defined]
        decoder.feed(data)
        while (packet := decoder.next_packet()) is not None:
            packets.append(packet)
    return packets
