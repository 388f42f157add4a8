"""Failed logins slow down the next answers to the same address (sans-IO, no sleeping)."""

from __future__ import annotations

import itertools
import random

import pytest

from midge.broker.connection import State
from midge.broker.throttle import FORGET_AFTER, MAX_ADDRESSES, MAX_BOOKINGS, LoginThrottle
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
    per booked turn just as it does per failure one after another, and those that
    would wait longer than the maximum are refused (None) without a turn."""
    throttle = LoginThrottle(delay=1.0, max_delay=10.0)
    throttle.failed("10.0.0.1", 0.0)
    turns = [throttle.turn("10.0.0.1", 0.5) for _ in range(5)]
    assert turns == [1.0, 3.0, 7.0, None, None]  # 15.0 would be 14.5 s away


def test_success_resets_and_quiet_addresses_are_forgotten():
    throttle = LoginThrottle(delay=1.0, max_delay=10.0)
    throttle.failed("a", 0.0)
    throttle.succeeded("a")
    assert throttle.turn("a", 0.1) == 0.1
    assert len(throttle) == 0  # a success forgets the address at once
    throttle.failed("a", 0.2)
    assert throttle.turn("a", 0.2) == 1.2  # and its next failure starts from the first delay
    throttle.failed("b", 0.0)
    throttle.forget(1.0)
    assert len(throttle) == 2
    throttle.forget(3.2 + FORGET_AFTER + 1)  # "a" was spaced until 3.2
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


# --------------------------------------------- issue 10: turns given back, waits capped

HOME = "127.0.0.1"
RETRY = 3.5  # the client of issue 10 tries again every 3.5 s,
PATIENCE = 3.0  # each time closing after 3 s without a CONNACK


def fail_in_turn(throttle: LoginThrottle, count: int, now: float) -> float:
    """`count` wrong passwords one after another, each answered at its turn; the last one's time."""
    for _ in range(count):
        turn = throttle.turn(HOME, now)
        assert turn is not None
        now = turn
        throttle.failed(HOME, now)
    return now


def retry_until_let_in(throttle: LoginThrottle, start: float) -> tuple[list[float], float]:
    """The valid client of issue 10, first trying at `start`: (the turns it was offered,
    when it was let in)."""
    offered: list[float] = []
    attempt = start
    while attempt < start + 120:
        turn = throttle.turn(HOME, attempt)
        assert turn is not None, (attempt, offered)  # never refused: its own turns came back
        offered.append(turn)
        if turn <= attempt + PATIENCE:  # answered while it still waits: the right password
            throttle.succeeded(HOME)
            return offered, turn
        throttle.cancel(HOME, turn)  # it gave up and closed the connection
        attempt += RETRY
    raise AssertionError(f"never let in; offered {offered}")


def test_issue_10_a_valid_login_after_20_failures_gets_in_within_the_maximum_delay():
    throttle = LoginThrottle(delay=0.5, max_delay=10.0)  # the defaults
    last_failure = fail_in_turn(throttle, 20, 0.0)
    start = last_failure + 1.0
    offered, let_in = retry_until_let_in(throttle, start)
    # Each abandoned attempt gave its turn back, so each was offered the same turn:
    # waits of 9, 5.5 and 2 s, where the issue saw 9, 15.5, 22, ... 54.5 s and no end.
    assert offered == [last_failure + 10.0] * 3
    assert let_in == last_failure + 10.0 <= start + 10.0


@pytest.mark.parametrize("pause", [0.0, 0.4, 3.2, 6.9, 9.9])
def test_a_client_giving_up_too_soon_keeps_its_first_turn(pause):
    throttle = LoginThrottle(delay=0.5, max_delay=10.0)
    start = fail_in_turn(throttle, 20, 0.0) + pause
    offered, let_in = retry_until_let_in(throttle, start)
    first = offered[0]
    assert start <= first <= start + 10.0
    assert offered[:-1] == [first] * (len(offered) - 1)  # not pushed back by its own retries
    # Let in at that turn, or at the next try if it had just given up.
    assert let_in <= first + RETRY - PATIENCE


def test_random_clients_never_wait_past_the_maximum_nor_guess_faster_than_the_delay():
    """A guesser opening connections at random, some at once, some abandoned before
    their turn: every turn offered is within the maximum wait, and the passwords
    checked are never closer together than the delay."""
    rng = random.Random(10)
    throttle = LoginThrottle(delay=0.5, max_delay=4.0)
    waiting: list[float] = []  # the turns of the CONNECTs waiting
    checked: list[float] = []  # when a password was checked (and was wrong)
    now = arrival = 0.0
    while now < 600:
        if waiting and min(waiting) <= arrival:  # a waiting CONNECT's turn comes first
            now = min(waiting)
            waiting.remove(now)
            checked.append(now)
            throttle.failed(HOME, now)
            continue
        now, arrival = arrival, arrival + rng.choice([0.0, 0.0, 0.05, 0.3, 1.0, 5.0])
        if waiting and rng.random() < 0.3:
            given_up = rng.choice(waiting)
            waiting.remove(given_up)
            throttle.cancel(HOME, given_up)
        turn = throttle.turn(HOME, now)
        if turn is None:
            continue  # refused at once, its password unchecked
        assert now <= turn <= now + 4.0, (now, turn)
        if turn == now:
            checked.append(now)
            throttle.failed(HOME, now)
        else:
            waiting.append(turn)
    assert len(checked) > 100
    assert min(b - a for a, b in itertools.pairwise(checked)) >= 0.5 - 1e-9


def test_a_flood_of_parallel_guesses_checks_no_more_passwords_than_one_at_a_time():
    def one_at_a_time() -> list[float]:
        throttle = LoginThrottle(delay=0.5, max_delay=10.0)
        checked = [0.0]
        throttle.failed(HOME, 0.0)
        while checked[-1] < 120:
            turn = throttle.turn(HOME, checked[-1])
            assert turn is not None
            checked.append(turn)
            throttle.failed(HOME, turn)
        return checked

    def fifty_at_every_answer() -> list[float]:
        throttle = LoginThrottle(delay=0.5, max_delay=10.0)
        checked = [0.0]
        throttle.failed(HOME, 0.0)
        waiting: list[float] = []
        while checked[-1] < 120:
            for _ in range(50):
                turn = throttle.turn(HOME, checked[-1])
                if turn is not None:
                    waiting.append(turn)
            checked.append(min(waiting))
            waiting.remove(checked[-1])
            throttle.failed(HOME, checked[-1])
        return checked

    sequential = one_at_a_time()
    assert fifty_at_every_answer() == sequential
    assert sequential[:8] == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 25.5, 35.5]


def test_giving_back_the_last_turn_rolls_the_line_back():
    throttle = LoginThrottle(delay=1.0, max_delay=10.0)
    throttle.failed(HOME, 0.0)
    assert throttle.turn(HOME, 0.0) == 1.0
    assert throttle.turn(HOME, 0.0) == 3.0
    throttle.cancel(HOME, 3.0)
    assert throttle.turn(HOME, 0.5) == 3.0  # the same turn again, not 7
    assert throttle.turn(HOME, 0.5) == 7.0  # and the spacing doubles on from there


def test_a_turn_given_back_before_others_is_taken_by_the_next_connect():
    throttle = LoginThrottle(delay=1.0, max_delay=10.0)
    throttle.failed(HOME, 0.0)
    assert [throttle.turn(HOME, 0.0) for _ in range(4)] == [1.0, 3.0, 7.0, None]
    throttle.cancel(HOME, 3.0)  # a hole in the line: 7.0 still waits
    assert throttle.turn(HOME, 0.1) == 3.0
    assert throttle.turn(HOME, 0.1) is None
    throttle.cancel(HOME, 3.0)
    throttle.cancel(HOME, 7.0)  # the end of the line and the hole before it: both free
    assert throttle.turn(HOME, 0.2) == 3.0
    assert throttle.turn(HOME, 0.2) == 7.0


def test_giving_back_a_turn_not_waiting_changes_nothing():
    throttle = LoginThrottle(delay=1.0, max_delay=10.0)
    throttle.cancel(HOME, 1.0)  # an address without failures
    throttle.failed(HOME, 0.0)
    assert throttle.turn(HOME, 0.0) == 1.0
    throttle.cancel(HOME, 2.0)  # no CONNECT waits for that turn
    assert throttle.turn(HOME, 0.0) == 3.0
    throttle.failed(HOME, 1.0)  # the first was answered at its turn
    assert throttle.turn(HOME, 3.5) == 7.0  # the turn at 1 is gone: nothing to give back


def test_a_failure_answered_after_a_booking_still_spaces_the_next_turn():
    """Answered on the broker's timer tick, a little after its turn: the next turn
    given back returns to a spacing after that failure, not after the turn."""
    throttle = LoginThrottle(delay=1.0, max_delay=10.0)
    throttle.failed(HOME, 0.0)
    assert throttle.turn(HOME, 0.0) == 1.0
    assert throttle.turn(HOME, 0.5) == 3.0
    throttle.failed(HOME, 1.25)  # the CONNECT due at 1 was answered at 1.25
    throttle.cancel(HOME, 3.0)
    assert throttle.turn(HOME, 1.5) == 3.25


def test_a_success_is_not_undone_by_turns_given_back_later():
    throttle = LoginThrottle(delay=1.0, max_delay=10.0)
    throttle.failed(HOME, 0.0)
    assert throttle.turn(HOME, 0.0) == 1.0  # the right password, as it turns out
    assert throttle.turn(HOME, 0.0) == 3.0  # a guess, still waiting
    throttle.succeeded(HOME)
    throttle.cancel(HOME, 3.0)
    assert throttle.turn(HOME, 1.0) == 1.0
    throttle.failed(HOME, 1.0)
    assert throttle.turn(HOME, 1.0) == 2.0  # the spacing starts again from the delay


def test_waiting_turns_per_address_are_bounded():
    """With a tiny delay the maximum wait would hold thousands of turns: only
    MAX_BOOKINGS are booked, the rest refused."""
    throttle = LoginThrottle(delay=1e-12, max_delay=10.0)
    throttle.failed(HOME, 0.0)
    turns = [throttle.turn(HOME, 0.0) for _ in range(MAX_BOOKINGS + 10)]
    assert sum(turn is not None for turn in turns) == MAX_BOOKINGS


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


def test_a_connect_closed_while_waiting_gives_its_turn_back(auth_harness):
    """Issue 10: Broker.close_connection gives a waiting CONNECT's turn back."""
    auth_harness.open().connect("c1", **WRONG)  # turns at +1, then +3
    impatient = auth_harness.open()
    assert impatient.connect("c2", **RIGHT) == []  # its turn: +1
    auth_harness.advance(0.5)
    impatient.drop()
    again = auth_harness.open()
    assert again.connect("c2", **RIGHT) == []  # the same turn, +1, not +3
    auth_harness.fire(1.0)
    assert again.received() == [ConnAck(0)]


def test_connects_beyond_the_maximum_wait_are_refused_at_once_unchecked(auth_harness):
    """Issue 10: handle_connect refuses with CONNACK 3 a CONNECT the throttle has no turn for."""
    auth_harness.open().connect("c1", **WRONG)  # turns at +1, +3, then +7: beyond 4 s
    waiting = [auth_harness.open(), auth_harness.open()]
    for number, client in enumerate(waiting):
        assert client.connect(f"w{number}", **WRONG) == []
    for client_id, login in (("c3", RIGHT), ("c4", WRONG)):  # right or wrong: not checked
        refused = auth_harness.open()
        assert refused.connect(client_id, **login) == [ConnAck(3)]
        assert refused.closed
    auth_harness.fire(1.0)
    assert waiting[0].received() == [ConnAck(4)]
    auth_harness.fire(3.0)
    assert waiting[1].received() == [ConnAck(4)]
