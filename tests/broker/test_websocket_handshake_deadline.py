"""The WebSocket listener's upgrade deadline, driven without sockets or a real loop.

A WebSocket socket has `connect_timeout` seconds to upgrade; after that the
broker's own CONNECT timeout takes over. The deadline must close (and log)
only a socket that is still open and not upgraded: a connection that upgraded,
or that already closed, is not mentioned `connect_timeout` seconds later.
`FakeLoop` runs `call_later` callbacks only when a test moves its clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from midge.broker.broker import Broker
from midge.broker.config import BrokerConfig, ListenerConfig
from midge.broker.listeners import WebSocketProtocol

TIMEOUT = 5.0
DEADLINE_LOG = "no WebSocket upgrade within connect_timeout"
WEBSOCKET = ListenerConfig(8080, host="127.0.0.1", transport="ws")
UPGRADE = (
    b"GET /mqtt HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: mqtt\r\n"
    b"\r\n"
)
PLAIN_GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


class FakeTimer:
    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """`time` and `call_later` of an event loop whose clock moves only in `advance`."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t.when <= self.now and not t.cancelled]
        self.timers = [t for t in self.timers if t not in due]
        for timer in due:
            timer.callback(*timer.args)

    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]


class FakeSocket:
    """The asyncio transport of one accepted socket: records writes and the close."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("198.51.100.7", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture
def loop() -> FakeLoop:
    return FakeLoop()


@pytest.fixture
def broker() -> Broker:
    return Broker(BrokerConfig(connect_timeout=TIMEOUT, allow_anonymous=True).validate())


def accept(broker: Broker, loop: FakeLoop) -> tuple[WebSocketProtocol, FakeSocket]:
    protocol = WebSocketProtocol(broker, loop, WEBSOCKET)  # type: ignore[arg-type]
    sock = FakeSocket()
    protocol.connection_made(sock)  # type: ignore[arg-type]
    return protocol, sock


def deadline_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if DEADLINE_LOG in r.getMessage()]


def test_an_upgraded_and_closed_connection_is_not_logged_later(
    broker: Broker, loop: FakeLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="midge.listeners")
    protocol, sock = accept(broker, loop)
    protocol.data_received(UPGRADE)
    assert bytes(sock.data).startswith(b"HTTP/1.1 101")
    assert protocol.connection is not None
    sock.close()
    protocol.connection_lost(None)
    loop.advance(TIMEOUT * 2)
    assert deadline_lines(caplog) == []


def test_an_upgraded_connection_still_open_is_left_to_the_broker(
    broker: Broker, loop: FakeLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="midge.listeners")
    protocol, sock = accept(broker, loop)
    protocol.data_received(UPGRADE)
    assert not loop.pending()  # no timer left holding the protocol until it would fire
    loop.advance(TIMEOUT * 2)
    assert deadline_lines(caplog) == []
    assert protocol.connection is not None
    assert not sock.closed


def test_a_connection_closed_before_upgrading_is_not_logged_later(
    broker: Broker, loop: FakeLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="midge.listeners")
    protocol, sock = accept(broker, loop)
    protocol.connection_lost(None)  # the client went away without a request
    loop.advance(TIMEOUT * 2)
    assert deadline_lines(caplog) == []
    assert not sock.closed  # nothing for us to close: the socket was already gone


def test_a_refused_upgrade_is_not_logged_as_a_timeout(
    broker: Broker, loop: FakeLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="midge.listeners")
    protocol, sock = accept(broker, loop)
    protocol.data_received(PLAIN_GET)
    assert sock.closed
    assert not bytes(sock.data).startswith(b"HTTP/1.1 101")
    # connection_lost comes a loop iteration after the close; the deadline may come first.
    loop.advance(TIMEOUT * 2)
    protocol.connection_lost(None)
    assert deadline_lines(caplog) == []


def test_a_socket_that_never_upgrades_is_closed_and_logged_once(
    broker: Broker, loop: FakeLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="midge.listeners")
    protocol, sock = accept(broker, loop)
    loop.advance(TIMEOUT - 0.5)
    assert not sock.closed
    assert deadline_lines(caplog) == []
    loop.advance(1.0)
    assert sock.closed
    [line] = deadline_lines(caplog)
    assert "198.51.100.7:50000" in line
    protocol.connection_lost(None)
    loop.advance(TIMEOUT * 2)
    assert len(deadline_lines(caplog)) == 1
