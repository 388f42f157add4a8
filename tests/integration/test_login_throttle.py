"""Login throttling against a real broker over loopback sockets (issue 10).

After wrong passwords from 127.0.0.1, a client with the right password that
keeps retrying, each time closing the connection before its CONNECT's turn
came, must still get in within `auth_failure_max_delay`: a connection that
closes while it waits gives its turn back, so its retries are not pushed
further back by its own abandoned attempts. A flood of parallel CONNECTs
still gains nothing: those whose turn would be further away than the longest
wait are refused at once with CONNACK 3, their password unchecked.

The delays are small (0.2 s, doubling up to 1 s) so each test takes a few
seconds; the valid client's patience and retry interval are the issue's
(3 s and 3.5 s against the default 10 s maximum), scaled to that maximum.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from integration_support import RawClient, connack_times, connect_packet, raw_client, unique

from brokers import RunningMidge, password_text, pbkdf2_line, start_midge_with_log

pytestmark = pytest.mark.timeout(60)

AUTH_FAILURE_DELAY = 0.2
MAX_DELAY = 1.0
# Wrong passwords one after another: answered at +0, 0.2, 0.6, 1.4 and 2.4 s;
# after the fifth the spacing has reached the maximum: the next CONNECT waits 1 s.
WRONG_GUESSES = 5
PATIENCE = 0.3 * MAX_DELAY  # how long the valid client waits for its CONNACK,
RETRY = 0.35 * MAX_DELAY  # and how often it tries again
# The broker answers a waiting CONNECT on a timer at or a little after its turn
# (up to one 0.1 s tick in some builds), plus noise in noting times here.
TIMER_SLACK = 0.15
FLOOD = 8  # parallel CONNECTs, of which only the first two fit in the longest wait


@contextmanager
def throttled_broker(tmp_path: Path) -> Iterator[RunningMidge]:
    password_file = tmp_path / "passwd"
    password_file.write_text(password_text([pbkdf2_line("alice", "right")]))
    config = (
        f'allow_anonymous = false\npassword_file = "{password_file}"\n'
        f"auth_failure_delay = {AUTH_FAILURE_DELAY}\nauth_failure_max_delay = {MAX_DELAY}\n"
    )
    with start_midge_with_log(config_toml=config) as run:
        yield run
        assert run.process.poll() is None, "the broker died"


def guess_wrong(run: RunningMidge, count: int) -> None:
    """`count` wrong passwords one after another, each waiting for its CONNACK 4."""
    for _ in range(count):
        with raw_client(run.host, run.port) as guesser:
            code = guesser.connect(unique("guess"), username="alice", password=b"wrong")[1]
            assert code == 4, code


def try_right_password(run: RunningMidge, patience: float) -> int | None:
    """One CONNECT with the right password: the CONNACK's return code, or None when
    none came within `patience` seconds (the client then closes the connection)."""
    with raw_client(run.host, run.port) as client:
        client.send(connect_packet(unique("ok"), username="alice", password=b"right"))
        client.sock.settimeout(patience)  # a CONNACK is 4 bytes: one read
        try:
            first, body = client.read_packet()
        except (TimeoutError, ConnectionError):
            return None
        assert first == 0x20 and len(body) == 2, (hex(first), body)
        return body[1]


def announced_waits(run: RunningMidge) -> list[float]:
    """The waits the broker announced for CONNECTs it held back, in seconds."""
    pattern = r"CONNECT answered in ([0-9.]+) s \(failed logins from 127\.0\.0\.1\)"
    return [float(wait) for wait in re.findall(pattern, run.log.text())]


def peer(client: RawClient) -> str:
    host, port = client.sock.getsockname()[:2]
    return f"{host}:{port}"


def test_issue_10_a_valid_client_giving_up_too_soon_still_gets_in(tmp_path: Path) -> None:
    with throttled_broker(tmp_path) as run:
        guess_wrong(run, WRONG_GUESSES)
        start = time.monotonic()
        outcomes: list[int | None] = []
        while not outcomes or (outcomes[-1] is None and time.monotonic() < start + 5 * MAX_DELAY):
            time.sleep(max(0.0, start + len(outcomes) * RETRY - time.monotonic()))
            outcomes.append(try_right_password(run, PATIENCE))
        let_in = time.monotonic() - start

        # Each abandoned attempt gave its turn back (none was refused, none pushed
        # the next further away): the turn offered first stays, at most MAX_DELAY
        # away, and the client gets in then, or at its first try after it.
        assert outcomes[-1] == 0, f"never let in: {outcomes}"
        assert outcomes[:-1] == [None] * (len(outcomes) - 1), outcomes
        assert len(outcomes) >= 2, f"it never had to give up: {outcomes}"
        assert let_in <= MAX_DELAY + (RETRY - PATIENCE) + TIMER_SLACK, (let_in, outcomes)
        run.log.wait_for(r"client 'ok\w+' connected from 127\.0\.0\.1")
        waits = announced_waits(run)
        assert len(waits) >= WRONG_GUESSES - 1 + len(outcomes) - 1, waits
        assert max(waits) <= MAX_DELAY, waits


def test_parallel_guesses_beyond_the_longest_wait_are_refused_unchecked(tmp_path: Path) -> None:
    with throttled_broker(tmp_path) as run, ExitStack() as stack:
        guess_wrong(run, 1)  # the next turns: +0.2, +0.6, then +1.4, beyond the 1 s maximum
        guessers = [stack.enter_context(raw_client(run.host, run.port)) for _ in range(FLOOD)]
        sent = time.monotonic()
        for client in guessers:
            client.send(connect_packet(unique("flood"), username="alice", password=b"wrong"))
        answers = connack_times(guessers, deadline=sent + 5)

        codes = [code for code, _ in answers]
        assert sorted(codes) == [3] * (FLOOD - 2) + [4, 4], answers
        refused = [client for client, code in zip(guessers, codes, strict=True) if code == 3]
        assert all(at - sent < AUTH_FAILURE_DELAY for code, at in answers if code == 3), answers
        for client in refused:
            assert client.closed_by_peer(), "a refused CONNECT's connection stayed open"
            run.log.wait_for(
                rf"closing {re.escape(peer(client))}: CONNECT refused: too many CONNECTs "
                r"waiting .*from 127\.0\.0\.1"
            )
        # Only the first guess and the two that got a turn had their password checked.
        checked = r"login refused \(BAD_USERNAME_OR_PASSWORD\)"
        run.log.wait_for(checked, 3)
        time.sleep(0.2)  # a line logged by mistake would reach the pipe by now
        assert len(run.log.matching(checked)) == 3, run.log.matching(checked)
        assert max(announced_waits(run)) <= MAX_DELAY

        # The flood gained nothing and costs the right password no more than the longest wait.
        started = time.monotonic()
        assert try_right_password(run, MAX_DELAY + TIMER_SLACK) == 0
        assert time.monotonic() - started <= MAX_DELAY + TIMER_SLACK
