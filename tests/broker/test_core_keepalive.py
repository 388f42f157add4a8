"""Keep alive and the CONNECT deadline: time is an argument, timers fire on handle_timer."""

from __future__ import annotations

from midge.protocol.codec import encode
from midge.protocol.packets import Connect, PingReq, PingResp, Publish


def test_keep_alive_closes_after_one_and_a_half_periods(harness):
    """[MQTT-3.1.2-24] no packet within 1.5 x keep alive: close, sending nothing."""
    client = harness.connect("c1", keep_alive=10)
    harness.fire(14.9)
    assert not client.closed
    assert harness.broker.connections == {"c1": client.connection}
    harness.fire(15.1)
    assert client.closed
    assert client.raw() == b""
    assert harness.broker.connections == {}
    assert harness.broker.open_connections == 0


def test_any_packet_resets_the_keep_alive_deadline(harness):
    """[MQTT-3.1.2-24] the deadline counts from the last packet received."""
    client = harness.connect("c1", keep_alive=10)
    harness.advance(10)
    client.send(PingReq())
    assert client.received() == [PingResp()]  # [MQTT-3.12.4-1]
    harness.fire(15.1)
    assert not client.closed
    harness.fire(20)
    client.send(Publish("t", b"x"))
    harness.fire(24.9)
    assert not client.closed
    harness.fire(34.9)
    assert not client.closed
    harness.fire(35.1)
    assert client.closed
    assert client.raw() == b""


def test_keep_alive_zero_never_times_out(harness):
    """Keep alive 0 turns the mechanism off (section 3.1.2.10)."""
    client = harness.connect("c1", keep_alive=0)
    harness.fire(10)
    harness.fire(1_000_000)
    assert not client.closed
    client.send(PingReq())
    assert client.received() == [PingResp()]


def test_short_keep_alive_is_not_hidden_behind_the_connect_timeout(harness):
    """A keep alive shorter than connect_timeout still fires at 1.5 x keep alive."""
    client = harness.connect("c1", keep_alive=1)
    assert harness.broker.next_timer() == harness.now + 1.5
    harness.fire(1.4)
    assert not client.closed
    harness.fire(1.6)
    assert client.closed


def test_keep_alive_counts_from_a_late_connect(harness):
    """[MQTT-3.1.2-24] the period starts at CONNECT, not at the socket's opening."""
    client = harness.open()
    harness.advance(9)
    client.send(Connect("c1", keep_alive=10))
    harness.fire(10)  # the CONNECT deadline passes harmlessly
    harness.fire(23.9)
    assert not client.closed
    harness.fire(24.1)
    assert client.closed


def test_connect_timeout_closes_a_silent_socket(harness):
    """A socket that never sends CONNECT is closed after connect_timeout (default 10 s)."""
    client = harness.open()
    harness.fire(9.9)
    assert not client.closed
    assert harness.broker.open_connections == 1
    harness.fire(10.0)
    assert client.closed
    assert client.raw() == b""
    assert harness.broker.open_connections == 0


def test_connect_timeout_closes_a_socket_with_a_partial_connect(make_harness):
    """Bytes that never complete a CONNECT do not keep the socket open past the deadline."""
    harness = make_harness(connect_timeout=2.5)
    client = harness.open()
    client.send(encode(Connect("c1"))[:5])
    harness.fire(2.4)
    assert not client.closed
    harness.fire(2.5)
    assert client.closed
    assert client.raw() == b""


def test_connect_in_time_disarms_the_connect_timeout(harness):
    """After CONNECT (keep alive 0) the CONNECT deadline no longer applies."""
    client = harness.connect("c1")
    harness.fire(10)
    harness.fire(100)
    assert not client.closed
    assert client.connection.timer_at is None
    # Only the broker's periodic session-expiry check is left to do.
    assert harness.broker.next_timer() == harness.now + 60


def test_timer_fires_only_for_the_silent_client(harness):
    """Each connection has its own deadline: an active client survives a silent one."""
    silent = harness.connect("silent", keep_alive=10)
    active = harness.connect("active", keep_alive=10)
    harness.advance(14)
    active.send(PingReq())
    harness.fire(15.1)
    assert silent.closed
    assert not active.closed
    assert active.received() == [PingResp()]
    assert list(harness.broker.connections) == ["active"]
