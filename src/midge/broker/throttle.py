"""Slow down password guessing: failed logins per client address.

After a failed login from an address, CONNECTs from that address are
answered one at a time, each at its own turn. The turns are spaced
`auth_failure_delay` apart after the first failure and the spacing doubles
with every CONNECT booked since (up to `auth_failure_max_delay`), whether
the CONNECTs come one after another or all at once.

No CONNECT waits longer than `auth_failure_max_delay`. When the turns
already booked reach further than that (many CONNECTs at once), `turn`
returns None and the caller refuses the CONNECT at once without checking
its password: a guesser gains nothing from opening many connections, as at
most one password is checked per turn.

A connection that closes while its CONNECT waits gives its turn back
(`cancel`): a client that gives up sooner than its wait and retries is
offered the same turn again, instead of one pushed back by each of its
abandoned attempts (issue 10). Successes wait their turn too; a success
resets the address; one quiet for `FORGET_AFTER` seconds is forgotten.
Time is an argument, so this is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORGET_AFTER = 60.0  # seconds after its last turn before an address starts afresh
MAX_ADDRESSES = 100_000  # bound on remembered addresses (a botnet must not grow memory)
# Bound on the turns waiting per address. Within the maximum wait there are only
# about log2(max_delay / delay) + 2 turns, so this bites only with a tiny delay.
MAX_BOOKINGS = 32


@dataclass(slots=True)
class _Booking:
    """A turn given to a waiting CONNECT, and what to restore if it is given back."""

    at: float
    next_turn_before: float
    attempts_before: int
    waiting: bool = True  # False: given back; a later CONNECT may take it


@dataclass(slots=True)
class _Record:
    failures: int = 0
    attempts: int = 0  # CONNECTs booked since the last success: sets the spacing
    next_turn: float = 0.0  # when the next CONNECT from this address may be answered
    failed_at: float = 0.0  # the last failure: the next answer waits a spacing after it
    # Turns booked for CONNECTs still waiting, earliest first. Turns already
    # due are dropped as new ones are booked: those CONNECTs were answered.
    booked: list[_Booking] = field(default_factory=list)


class LoginThrottle:
    def __init__(self, delay: float, max_delay: float) -> None:
        self.delay = delay
        self.max_delay = max_delay
        self._records: dict[str, _Record] = {}

    def turn(self, address: str, now: float) -> float | None:
        """When a CONNECT from `address` that arrives at `now` may be answered.

        A time after `now` (never more than `max_delay` after it) is a
        reservation: the caller must come back then, or `cancel` it if the
        connection closes first. None: the turns within the maximum wait are
        all taken, so the caller must refuse this CONNECT without checking it.
        """
        record = self._records.get(address)
        if record is None or not record.failures:
            return now
        while record.booked and record.booked[0].at <= now:
            del record.booked[0]  # due: answered (or about to be on the next timer tick)
        for booking in record.booked:
            if not booking.waiting:  # a turn given back before later ones: take it over
                booking.waiting = True
                return booking.at
        at = max(now, record.next_turn)
        if at > now + self.max_delay or len(record.booked) >= MAX_BOOKINGS:
            return None
        if at > now:  # answered now, it could not be given back
            record.booked.append(_Booking(at, record.next_turn, record.attempts))
        record.attempts += 1
        record.next_turn = at + self._delay(record.attempts)
        return at

    def cancel(self, address: str, turn: float) -> None:
        """The CONNECT that waited for `turn` will not be answered: give the turn back.

        Turns given back at the end of the line are free again, as if never
        booked (the spacing too): the next CONNECT is not pushed back by
        abandoned ones. One given back before others still waiting stays a
        hole in the line, for the next CONNECT to take.
        """
        record = self._records.get(address)
        if record is None:
            return
        for booking in record.booked:
            if booking.at == turn and booking.waiting:
                booking.waiting = False
                break
        else:
            return  # answered already, or the address was reset or forgotten
        released = None
        while record.booked and not record.booked[-1].waiting:
            released = record.booked.pop()
        if released is not None:  # the earliest of the turns freed at the end
            record.attempts = released.attempts_before
            # A failure answered since it was booked still spaces the next answer.
            record.next_turn = max(
                released.next_turn_before, record.failed_at + self._delay(record.attempts)
            )

    def failed(self, address: str, now: float) -> None:
        if not self.delay:
            return
        record = self._records.get(address)
        if record is None:
            if len(self._records) >= MAX_ADDRESSES:
                self.forget(now)
                if len(self._records) >= MAX_ADDRESSES:
                    self._records.pop(next(iter(self._records)))  # the oldest entry
            record = self._records[address] = _Record()
        record.failures += 1
        record.failed_at = now
        record.attempts = max(record.attempts, 1)  # a first failure was not booked
        record.next_turn = max(record.next_turn, now + self._delay(record.attempts))

    def succeeded(self, address: str) -> None:
        """A login succeeded: the address starts afresh (turns still waiting keep theirs)."""
        self._records.pop(address, None)

    def forget(self, now: float) -> None:
        """Drop addresses whose last turn is long past."""
        stale = [a for a, r in self._records.items() if r.next_turn + FORGET_AFTER < now]
        for address in stale:
            del self._records[address]

    def _delay(self, attempts: int) -> float:
        return min(self.delay * float(2 ** min(attempts - 1, 32)), self.max_delay)

    def __len__(self) -> int:
        return len(self._records)
