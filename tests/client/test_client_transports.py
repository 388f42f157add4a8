"""The client over TLS, WebSocket and secure WebSocket against Midge's own listeners.

One Midge serves tcp + tls + ws + wss (certificates made by openssl for this
module); every transport talks to a plain TCP peer both ways at QoS 0/1/2.
Scripted fake servers (the `websockets` sans-I/O server in a test's
coroutine) do what Midge will not do on demand: refuse the upgrade, pick
another subprotocol, split CONNACK over frames, ping, close with an error
code, send a text frame. `midge pub --ws` / `midge sub --ws` run as
processes. Everything is loopback, every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from client_support import HOST, WAIT, Tool, abort, fake_broker, midge, unique, wait_until
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from websockets.utils import accept_key

from brokers import free_port, start_midge
from certificates import Certificates, make_certificates
from midge.client import CannotConnect, Client, ConnectionLost, ConnectTimeout
from midge.client.websocket import WebSocketError
from midge.protocol.codec import Decoder
from midge.protocol.packets import Connect, Disconnect, Packet

pytestmark = pytest.mark.timeout(30)


@dataclass(frozen=True)
class Listeners:
    tcp: int
    tls: int
    ws: int
    wss: int
    ca: Path
    tls_config: str  # certfile/keyfile lines of a TLS listener


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    return make_certificates(tmp_path_factory.mktemp("transports"))


@pytest.fixture(scope="module")
def listeners(certificates: Certificates) -> Iterator[Listeners]:
    tls = f'certfile = "{certificates.server_cert}"\nkeyfile = "{certificates.server_key}"\n'
    tls_port, ws_port, wss_port = free_port(), free_port(), free_port()
    config = (
        "allow_anonymous = true\n"  # declared listeners refuse anonymous clients by default
        "[[listeners]]\nport = 0\n"  # --port 0 moves this one; the first log line names it
        f'[[listeners]]\nport = {tls_port}\ntransport = "tls"\n{tls}'
        f'[[listeners]]\nport = {ws_port}\ntransport = "ws"\n'
        f'[[listeners]]\nport = {wss_port}\ntransport = "wss"\n{tls}'
    )
    with start_midge(config_toml=config) as (_, tcp_port, _):
        for port in (tls_port, ws_port, wss_port):
            wait_for_port(port)
        yield Listeners(tcp_port, tls_port, ws_port, wss_port, certificates.ca, tls)


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def client(net: Listeners, transport: str, **options: object) -> Client:
    """A Client over `transport`: tcp, tls, ws or wss."""
    port = getattr(net, transport)
    context = ssl.create_default_context(cafile=net.ca) if transport in ("tls", "wss") else None
    kind = "websocket" if transport in ("ws", "wss") else "tcp"
    return Client(HOST, port, ssl=context, transport=kind, **options)  # type: ignore[arg-type]


# ------------------------------------------------------------ both ways, QoS 0/1/2


@pytest.mark.parametrize("transport", ["tls", "ws", "wss"])
async def test_publish_and_subscribe_both_ways_with_a_tcp_peer(
    listeners: Listeners, transport: str
) -> None:
    topic = unique("tr/")
    async with client(listeners, transport) as other, client(listeners, "tcp") as tcp:
        assert await other.subscribe(f"{topic}/to-other", 2) == [2]
        assert await tcp.subscribe(f"{topic}/to-tcp", 2) == [2]
        for qos in (0, 1, 2):
            await tcp.publish(f"{topic}/to-other", f"tcp q{qos}", qos)
            await other.publish(f"{topic}/to-tcp", f"{transport} q{qos}", qos)
        for receiver, sender in ((other, "tcp"), (tcp, transport)):
            got = [await receiver.messages().get(WAIT) for _ in range(3)]
            assert [(m.payload, m.qos) for m in got] == [
                (f"{sender} q{qos}".encode(), qos) for qos in (0, 1, 2)
            ]


@pytest.mark.parametrize("transport", ["ws", "wss"])
async def test_200_kb_payload_over_websocket(listeners: Listeners, transport: str) -> None:
    """Larger than a frame (64 KiB) and than the stream reader's buffer, both ways."""
    topic = unique("big/")
    payload = bytes(range(256)) * 800  # 204,800 bytes
    async with client(listeners, transport) as web, client(listeners, "tcp") as tcp:
        await web.subscribe(f"{topic}/in", 1)
        await tcp.subscribe(f"{topic}/out", 1)
        await web.publish(f"{topic}/out", payload, 1)
        await tcp.publish(f"{topic}/in", payload[::-1], 1)
        assert (await tcp.messages().get(WAIT)).payload == payload
        assert (await web.messages().get(WAIT)).payload == payload[::-1]


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("transport", ["tls", "wss"])
async def test_unknown_ca_cannot_connect(listeners: Listeners, transport: str) -> None:
    port = getattr(listeners, transport)
    kind = "websocket" if transport == "wss" else "tcp"
    stranger = Client(HOST, port, ssl=ssl.create_default_context(), transport=kind)
    with pytest.raises(CannotConnect, match="TLS error: CERTIFICATE_VERIFY_FAILED"):
        await asyncio.wait_for(stranger.connect(), WAIT)


async def test_websocket_to_the_mqtt_port_fails_at_once(listeners: Listeners) -> None:
    """Midge's TCP listener reads the HTTP request as a bad packet and hangs up."""
    web = Client(HOST, listeners.tcp, transport="websocket", connect_timeout=WAIT)
    started = time.monotonic()
    with pytest.raises(CannotConnect) as info:
        await asyncio.wait_for(web.connect(), WAIT + 1)
    assert time.monotonic() - started < WAIT / 2
    assert str(info.value) == (
        f"cannot connect to ws://{HOST}:{listeners.tcp}/mqtt: "
        "the server closed the connection instead of upgrading to a WebSocket"
    )
    assert isinstance(info.value.__cause__, WebSocketError)


async def _http_answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: str
) -> None:
    request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    key = next(
        line.split(":", 1)[1].strip()
        for line in request.decode().splitlines()
        if line.lower().startswith("sec-websocket-key:")
    )
    writer.write(answer.replace("{accept}", accept_key(key)).encode())
    await until_eof(reader)  # the client must hang up, not wait for the server to


async def until_eof(reader: asyncio.StreamReader, _: object = None) -> None:
    """Wait for the client to close (rather than sleep and be cancelled: on Python
    3.11 a cancellation can be lost in wait_for, and the sleep would run out)."""
    async with asyncio.timeout(WAIT):
        while await reader.read(65536):
            pass


UPGRADE = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno such\r\n",
            "WebSocket upgrade refused: HTTP 404 Not Found",
        ),
        (
            f"HTTP/1.1 101 Switching Protocols\r\n{UPGRADE}Sec-WebSocket-Protocol: chat\r\n\r\n",
            "WebSocket upgrade failed: unsupported subprotocol: chat (MQTT needs subprotocol mqtt)",
        ),
        ("SSH-2.0-OpenSSH_9.2\r\n\r\n", "the server's answer is not HTTP"),
    ],
    ids=["404", "wrong-subprotocol", "not-http"],
)
async def test_refused_upgrade_names_url_and_reason(answer: str, expected: str) -> None:
    async with fake_broker(lambda r, w: _http_answer(r, w, answer)) as port:
        web = Client(HOST, port, transport="websocket", path="/ws/mqtt?x=1")
        with pytest.raises(CannotConnect) as info:
            await asyncio.wait_for(web.connect(), WAIT)
    assert str(info.value).startswith(f"cannot connect to ws://{HOST}:{port}/ws/mqtt?x=1: ")
    assert expected in str(info.value)


async def test_unanswered_upgrade_times_out() -> None:
    async with fake_broker(until_eof) as port:
        web = Client(HOST, port, transport="websocket", connect_timeout=0.3)
        with pytest.raises(ConnectTimeout, match=f"connecting to ws://{HOST}:{port}/mqtt"):
            await asyncio.wait_for(web.connect(), WAIT)


def test_bad_transport_arguments() -> None:
    with pytest.raises(ValueError, match="transport must be one of tcp, websocket"):
        Client(transport="websockets")
    with pytest.raises(ValueError, match="must start with '/'"):
        Client(transport="websocket", path="mqtt")
    assert Client("::1", 8080, transport="websocket").address == "ws://[::1]:8080/mqtt"
    secure = Client("h", 443, transport="websocket", path="/", ssl=ssl.create_default_context())
    assert secure.address == "wss://h:443/"


# ------------------------------------------------------- a scripted WebSocket broker


class FakeWebSocket:
    """The server end of one WebSocket connection, on the `websockets` sans-I/O protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = ServerProtocol(subprotocols=[Subprotocol("mqtt")])
        self.decoder = Decoder()
        self.frames: list[Frame] = []

    async def upgrade(self) -> None:
        while self.protocol.state is State.CONNECTING:
            for event in await self._events():
                if isinstance(event, Request):
                    self.protocol.send_response(self.protocol.accept(event))
            self.flush()

    async def packet(self) -> Packet:
        while (packet := self.decoder.next_packet()) is None:
            await self._events()
        return packet

    async def frame(self, opcode: Opcode) -> Frame:
        while not any(frame.opcode is opcode for frame in self.frames):
            await self._events()
        return next(frame for frame in self.frames if frame.opcode is opcode)

    def flush(self) -> None:
        self.writer.write(b"".join(self.protocol.data_to_send()))

    async def _events(self) -> list[object]:
        data = await asyncio.wait_for(self.reader.read(65536), WAIT)
        if not data:
            raise EOFError("the client closed the connection")
        self.protocol.receive_data(data)
        events: list[object] = list(self.protocol.events_received())
        for event in events:
            if isinstance(event, Frame):
                self.frames.append(event)
                if event.opcode in (Opcode.BINARY, Opcode.CONT):
                    self.decoder.feed(bytes(event.data))
        self.flush()  # pongs, close echoes
        return events


@pytest.mark.parametrize("ending", ["close-1000", "close-1011", "text-frame"])
async def test_frames_pings_and_how_the_broker_ends(ending: str) -> None:
    """CONNACK split over two frames and a ping are handled; then the broker ends
    the WebSocket and the waiting subscribe gets ConnectionLost saying how."""
    seen: dict[str, object] = {}

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = FakeWebSocket(reader, writer)
        await ws.upgrade()
        seen["connect"] = await ws.packet()
        ws.protocol.send_binary(b"\x20")
        ws.protocol.send_binary(b"\x02\x00\x00")
        ws.protocol.send_ping(b"are you there")
        ws.flush()
        seen["pong"] = (await ws.frame(Opcode.PONG)).data
        seen["subscribe"] = await ws.packet()
        if ending == "text-frame":
            ws.protocol.send_text(b"\x90\x03\x00\x01\x01")  # a SUBACK, but in a text frame
            ws.flush()
            seen["close"] = (await ws.frame(Opcode.CLOSE)).data
        else:
            ws.protocol.send_close(int(ending[-4:]), "bye")
            ws.flush()
        await until_eof(reader)

    async with fake_broker(script) as port:
        web = Client(HOST, port, transport="websocket", client_id="fake1")
        await asyncio.wait_for(web.connect(), WAIT)
        with pytest.raises(ConnectionLost) as info:
            await asyncio.wait_for(web.subscribe("t", 1), WAIT)
        await web.disconnect()
    assert seen["connect"] == Connect("fake1", keep_alive=60)
    assert seen["pong"] == b"are you there"
    url = f"ws://{HOST}:{port}/mqtt"
    if ending == "close-1000":
        assert str(info.value) == f"the broker at {url} closed the connection"
    elif ending == "close-1011":
        assert str(info.value) == (
            f"connection to {url} lost: the broker closed the WebSocket: 1011 (internal error) bye"
        )
        cause = info.value.__cause__  # the read loop's ConnectionLost, caused by:
        assert cause is not None and isinstance(cause.__cause__, WebSocketError)
    else:
        assert "text frame" in str(info.value)
        assert seen["close"][:2] == (1003).to_bytes(2, "big")  # type: ignore[index]


async def test_disconnect_sends_disconnect_then_a_close_frame() -> None:
    seen: list[object] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = FakeWebSocket(reader, writer)
        await ws.upgrade()
        await ws.packet()
        ws.protocol.send_binary(b"\x20\x02\x00\x00")
        ws.flush()
        seen.append(await ws.packet())
        seen.append((await ws.frame(Opcode.CLOSE)).data)

    async with fake_broker(script) as port:
        async with Client(HOST, port, transport="websocket") as web:
            assert web.connected
        await wait_until(lambda: len(seen) == 2)
    assert seen == [Disconnect(), (1000).to_bytes(2, "big")]


# ------------------------------------------------------------------ reconnect


@pytest.mark.parametrize("transport", ["ws", "wss"])
async def test_reconnects_over_websocket_after_a_dropped_connection(
    listeners: Listeners, transport: str
) -> None:
    topic = unique("rews/")
    options = {"reconnect": True, "reconnect_min_delay": 0.05}
    async with client(listeners, transport, **options) as web:
        await web.subscribe(topic, 1)
        abort(web)
        # Published into the dying connection: re-sent after the reconnect.
        await asyncio.wait_for(web.publish(topic, "after the drop", 1), WAIT)
        assert (await web.messages().get(WAIT)).payload == b"after the drop"
        assert web.connected


async def test_reconnects_over_tls_after_a_broker_restart(certificates: Certificates) -> None:
    tls_port = free_port()
    config = (
        "allow_anonymous = true\n[[listeners]]\nport = 0\n"
        f'[[listeners]]\nport = {tls_port}\ntransport = "tls"\n'
        f'certfile = "{certificates.server_cert}"\nkeyfile = "{certificates.server_key}"\n'
    )
    context = ssl.create_default_context(cafile=certificates.ca)
    topic = unique("retls/")
    options = {"reconnect": True, "reconnect_min_delay": 0.05, "reconnect_max_delay": 0.2}
    secure = Client(HOST, tls_port, ssl=context, **options)  # type: ignore[arg-type]
    with start_midge(config_toml=config):
        await asyncio.to_thread(wait_for_port, tls_port)
        await secure.connect()
        await secure.subscribe(topic, 1)
    # Stopped: the client is reconnecting in the background.
    await wait_until(lambda: not secure.connected)
    with start_midge(config_toml=config):
        # Waits for the reconnect; the filter is subscribed again (clean session).
        await asyncio.wait_for(secure.publish(topic, "back", 1), 3 * WAIT)
        assert (await secure.messages().get(WAIT)).payload == b"back"
        assert secure.connected
        await secure.disconnect()


# ------------------------------------------------------ midge pub / midge sub --ws


@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_midge_pub_and_sub_over_websocket(listeners: Listeners, transport: str) -> None:
    port = str(getattr(listeners, transport))
    tls = ["--cafile", str(listeners.ca)] if transport == "wss" else []
    topic = unique("cli/")
    sub = Tool(midge("sub", "-h", HOST, "-p", port, "--ws", *tls, "-d", "-t", topic, "-v",
                     "-q", "2", "-C", "2"))  # fmt: skip
    try:
        sub.wait_for_stderr("received SUBACK")
        for message, qos in (("over the web", "1"), ("exactly once", "2")):
            pub = Tool(midge("pub", "-h", HOST, "-p", port, "--ws-path", "/mqtt", *tls,
                             "-t", topic, "-m", message, "-q", qos))  # fmt: skip
            status, _, err = pub.finish()
            assert status == 0, err
        status, out, err = sub.finish()
    finally:
        sub.stop()
    assert status == 0, err
    assert out == f"{topic} over the web\n{topic} exactly once\n"


def test_midge_pub_ws_to_the_mqtt_port_exits_1(listeners: Listeners) -> None:
    status, _, err = Tool(
        midge("pub", "-h", HOST, "-p", str(listeners.tcp), "-w", "-t", "t", "-m", "x")
    ).finish()
    assert status == 1
    assert err == (
        f"midge pub: cannot connect to ws://{HOST}:{listeners.tcp}/mqtt: "
        "the server closed the connection instead of upgrading to a WebSocket\n"
    )


def test_ws_path_must_be_absolute() -> None:
    status, _, err = Tool(midge("sub", "--ws-path", "mqtt", "-t", "t")).finish()
    assert status == 2
    assert "--ws-path must start with '/'" in err
