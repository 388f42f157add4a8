"""Every entry point is guarded: a bug costs one connection, never the broker's timers.

Also the connection's state table, typed close reasons, and the timer driver
that schedules `handle_timer` with the loop's `call_at` instead of polling.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from midge.broker import handlers
from midge.broker.closing import CloseReason
from midge.broker.connection import TRANSITIONS, State
from midge.embedding.timers import TimerDriver
from midge.protocol.packets import Connect, PingReq


class BuggyThrottle:
    """A login throttle that defers every CONNECT by a second, then fails on it."""

    def turn(self, address, now):
        return now + 1

    def succeeded(self, address):
        raise KeyError("a bug in a timer")

    def failed(self, address, now):
        pass

    def cancel(self, address, turn):
        pass

    def forget(self, now):
        pass


def test_a_bug_in_one_timer_closes_that_connection_and_the_others_still_time_out(harness, caplog):
    others = [harness.connect(f"c{n}", keep_alive=2) for n in range(3)]
    waiting = harness.open()  # never sends CONNECT: the connect timeout must still fire
    # (Injected through a plain attribute: the compiled broker's methods cannot be patched.)
    harness.broker.throttle = BuggyThrottle()
    victim = harness.open()
    assert victim.connect("victim") == []  # deferred: answered by the timer, which fails
    with caplog.at_level(logging.INFO):
        harness.fire(3.1)
    assert victim.closed
    assert all(client.closed for client in others)  # their keep-alive still fired
    assert any("internal error" in r.getMessage() for r in caplog.records)
    assert harness.broker.stats.internal_errors == 1
    harness.fire(10)
    assert waiting.closed


def test_a_bug_while_handling_input_closes_only_that_connection(harness, monkeypatch, caplog):
    bystander = harness.connect("bystander")
    client = harness.connect("client")

    def buggy(broker, connection, packet, now):
        raise ValueError("a bug in a handler")

    monkeypatch.setitem(handlers.HANDLERS, PingReq, buggy)
    with caplog.at_level(logging.ERROR):
        client.send(PingReq())
        second = harness.connect("second")
        second.send(PingReq())
    assert client.closed
    assert second.closed
    assert not bystander.closed
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # the same bug again: one line, no second traceback
    assert any("(again)" in r.getMessage() for r in caplog.records)


def test_the_state_table_allows_only_its_transitions(harness):
    client = harness.open()
    connection = client.connection
    assert connection.state is State.AWAITING_CONNECT
    with pytest.raises(RuntimeError, match="no transition"):
        connection._move(State.AWAITING_CONNECT)
    connection.defer_connect(harness.now + 1, Connect(client_id="x"))
    assert connection.state is State.THROTTLED
    with pytest.raises(RuntimeError, match="no transition"):
        connection._move(State.CONNECTED)  # a throttled CONNECT is answered first
    assert connection.take_turn()[1].client_id == "x"
    assert connection.mark_closed()
    assert not connection.mark_closed()  # closing happens once
    assert TRANSITIONS[State.CLOSED] == frozenset()


def test_close_reasons_are_typed_and_carry_mqtt5_codes():
    assert CloseReason.KEEP_ALIVE_TIMEOUT.reason_code == 0x8D
    assert CloseReason.TAKEN_OVER.reason_code == 0x8E
    assert CloseReason.SHUTDOWN.reason_code == 0x8B
    assert CloseReason.PROTOCOL_VIOLATION.describe("x") == "protocol violation: x"


def test_a_refused_connect_of_an_unknown_level_names_the_level(harness, caplog):
    client = harness.open()
    with caplog.at_level(logging.INFO):
        client.connect("ignored", level=6)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("level 6 is not supported" in line for line in lines), lines
    assert not any("client id ''" in line for line in lines)


class _Broker:
    """What TimerDriver sees of a broker: deadlines, and a handle_timer that fails once."""

    def __init__(self, loop):
        self.loop = loop
        self.calls: list[float] = []
        self.fail_next = True

    def next_timer(self):
        return self.loop.time() + 0.02 if len(self.calls) < 4 else None

    def handle_timer(self, now):
        self.calls.append(now)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a bug in handle_timer")


async def test_timer_driver_calls_at_deadlines_and_survives_a_failure(caplog):
    loop = asyncio.get_running_loop()
    broker = _Broker(loop)
    driver = TimerDriver(loop)
    with caplog.at_level(logging.ERROR):
        driver.start(broker)  # type: ignore[arg-type]
        for _ in range(100):
            if len(broker.calls) >= 4:
                break
            await asyncio.sleep(0.01)
    driver.stop()
    assert len(broker.calls) == 4  # went on after the failure, stopped when nothing was due
    assert any("internal error in the broker's timers" in r.getMessage() for r in caplog.records)


async def test_timer_driver_moves_to_an_earlier_deadline():
    loop = asyncio.get_running_loop()
    broker = _Broker(loop)
    broker.fail_next = False
    driver = TimerDriver(loop)
    driver.broker = broker  # type: ignore[assignment]
    driver.wake_at(loop.time() + 60)
    driver.wake_at(loop.time() + 0.01)  # earlier: replaces the later call
    await asyncio.sleep(0.1)
    driver.stop()
    assert broker.calls


def test_a_transport_that_fails_to_write_costs_only_its_connection(harness):
    """One socket's write raising must not keep the batch's other writes back."""
    broken = harness.connect("broken")
    broken.subscribed(("t", 0))
    fine = harness.connect("fine")
    fine.subscribed(("t", 0))

    def refuse(data):
        raise OSError("a transport bug")

    broken.transport.write = refuse
    pub = harness.connect("pub")
    pub.published("t", b"hello", 0)
    assert broken.closed
    assert [p.payload for p in fine.received()] == [b"hello"]
    assert harness.broker.stats.internal_errors == 1
