"""Failed logins slow down the next answers to the same address (sans-IO, no sleeping)."""

from __future__ import annotations

import pytest

from midge.broker.connection import State
from midge.broker.throttle import FORGET_AFTER, MAX_ADDRESSES, LoginThrottle
from midge.protocol.codec import encode
from midge.protocol.packets import ConnAck, Connect, PingReq, PingResp

WRONG = {"username": "alice", "password": b"wrong"}
RIGHT = {"username": "alice", "password": b"s3cret"}


def test_throttle_waits_double_per_failure_up_to_the_maximum():
    throttle = LoginThrottle(delay=0.5, max_delay=3.0)
    assert throttle.turn("10.0.0.1", 100.0) == 100.0  # nothing failed yet
    waits = []
    now = 100.0
    for _ in range(5):
        throttle.failed("10.0.0.1", now)
        turn = throttle.turn("10.0.0.1", now)
        waits.append(turn - now)
        now = turn
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert throttle.turn("10.0.0.2", now) == now  # other addresses are not affected


def test_parallel_attempts_get_one_turn_each_spaced_as_if_sequential():
    """Many connections at once from one address gain nothing: the spacing doubles
    per booked turn just as it does per failure one after another."""
    throttle = LoginThrottle(delay=1.0, max_delay=10.0)
    throttle.failed("10.0.0.1", 0.0)
    turns = [throttle.turn("10.0.0.1", 0.5) for _ in range(5)]
    assert turns == [1.0, 3.0, 7.0, 15.0, 25.0]


def test_success_resets_and_quiet_addresses_are_forgotten():
    throttle = LoginThrottle(delay=1.0, max_delay=10.0)
    throttle.failed("a", 0.0)
    throttle.succeeded("a")
    assert throttle.turn("a", 0.1) == 0.1
    throttle.failed("b", 0.0)
    throttle.forget(1.0)
    assert len(throttle) == 2
    throttle.forget(1.0 + FORGET_AFTER + 1)
    assert len(throttle) == 0


def test_delay_zero_turns_it_off():
    throttle = LoginThrottle(delay=0.0, max_delay=0.0)
    throttle.failed("a", 0.0)
    assert throttle.turn("a", 0.0) == 0.0
    assert len(throttle) == 0


def test_memory_is_bounded_under_many_addresses():
    throttle = LoginThrottle(delay=1.0, max_delay=1.0)
    for number in range(MAX_ADDRESSES + 10):
        throttle.failed(f"a{number}", 0.0)
    assert len(throttle) == MAX_ADDRESSES


@pytest.fixture
def alice_file(password_file, password_lines):
    return password_file([password_lines["7"]("alice", "s3cret")])


@pytest.fixture
def auth_harness(make_harness, alice_file):
    return make_harness(
        allow_anonymous=False,
        password_file=alice_file,
        auth_failure_delay=1.0,
        auth_failure_max_delay=4.0,
    )


def test_after_a_failed_login_the_next_answer_waits(auth_harness):
    first = auth_harness.open()
    assert first.connect("c1", **WRONG) == [ConnAck(4)]
    second = auth_harness.open()  # same address: 192.0.2.1
    assert second.connect("c2", **RIGHT) == []  # held, not refused and not accepted
    assert second.connection.state is State.THROTTLED
    auth_harness.fire(0.9)
    assert second.received() == []
    auth_harness.fire(1.0)
    assert second.received() == [ConnAck(0)]
    assert "c2" in auth_harness.broker.connections


def test_packets_sent_while_waiting_are_handled_after_the_answer(auth_harness):
    auth_harness.open().connect("c1", **WRONG)
    client = auth_harness.open()
    data = encode(Connect("c2", **RIGHT)) + encode(PingReq())
    client.connection.data_received(data, auth_harness.now)
    assert client.received() == []
    auth_harness.fire(1.0)
    assert client.received() == [ConnAck(0), PingResp()]


def test_refusals_keep_doubling_and_connect_timeout_does_not_cut_in(auth_harness):
    auth_harness.open().connect("c1", **WRONG)  # failure 1: next turn at +1
    second = auth_harness.open()
    second.connect("c2", **WRONG)
    auth_harness.fire(1.0)
    assert second.received() == [ConnAck(4)]  # failure 2: the next wait is 2 s
    third = auth_harness.open()
    assert third.connect("c3", **RIGHT) == []
    auth_harness.fire(2.9)
    assert third.received() == []
    auth_harness.fire(3.0)
    assert third.received() == [ConnAck(0)]


def test_a_waiting_client_that_floods_is_closed(auth_harness):
    auth_harness.open().connect("c1", **WRONG)
    client = auth_harness.open()
    client.connect("c2", **RIGHT)
    client.connection.data_received(encode(PingReq()) * 40_000, auth_harness.now)
    assert client.closed
