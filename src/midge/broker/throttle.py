"""Slow down password guessing: failed logins per client address.

After a failed login from an address, CONNECTs from that address are
answered one at a time, each at its own turn. The turns are spaced
`auth_failure_delay` apart after the first failure and the spacing doubles
with every CONNECT booked since (up to `auth_failure_max_delay`), whether
the CONNECTs come one after another or all at once: a guesser gains nothing
from opening many connections, and successes wait their turn too. A success
resets the address; one quiet for `FORGET_AFTER` seconds is forgotten.
Time is an argument, so this is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

FORGET_AFTER = 60.0  # seconds after its last turn before an address starts afresh
MAX_ADDRESSES = 100_000  # bound on remembered addresses (a botnet must not grow memory)


@dataclass(slots=True)
class _Record:
    failures: int = 0
    attempts: int = 0  # CONNECTs booked since the last success: sets the spacing
    next_turn: float = 0.0  # when the next CONNECT from this address may be answered


class LoginThrottle:
    def __init__(self, delay: float, max_delay: float) -> None:
        self.delay = delay
        self.max_delay = max_delay
        self._records: dict[str, _Record] = {}

    def turn(self, address: str, now: float) -> float:
        """When a CONNECT from `address` that arrives at `now` may be answered.

        A time after `now` is a reservation: the caller must come back then.
        """
        record = self._records.get(address)
        if record is None or not record.failures:
            return now
        at = max(now, record.next_turn)
        record.attempts += 1
        record.next_turn = at + self._delay(record.attempts)
        return at

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
        record.attempts = max(record.attempts, 1)  # a first failure was not booked
        record.next_turn = max(record.next_turn, now + self._delay(record.attempts))

    def succeeded(self, address: str) -> None:
        record = self._records.get(address)
        if record is not None:
            record.failures = record.attempts = 0

    def forget(self, now: float) -> None:
        """Drop addresses whose last turn is long past."""
        stale = [a for a, r in self._records.items() if r.next_turn + FORGET_AFTER < now]
        for address in stale:
            del self._records[address]

    def _delay(self, failures: int) -> float:
        return min(self.delay * float(2 ** min(failures - 1, 32)), self.max_delay)

    def __len__(self) -> int:
        return len(self._records)
