"""Slow down password guessing: failed logins per client address.

After a failed login from an address, CONNECTs from that address are
answered one at a time, each waiting its turn: `auth_failure_delay` after
the first failure, doubling with every further failure up to
`auth_failure_max_delay`. Answers that succeed wait their turn too, so a
guesser gains nothing from opening many connections at once: one address
gets at most one answer per delay. A success resets the count; an address
quiet for `FORGET_AFTER` seconds is forgotten. Time is an argument, so
this is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

FORGET_AFTER = 60.0  # seconds after its last turn before an address starts afresh
MAX_ADDRESSES = 100_000  # bound on remembered addresses (a botnet must not grow memory)


@dataclass(slots=True)
class _Record:
    failures: int = 0
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
        record.next_turn = at + self._delay(record.failures)
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
        record.next_turn = max(record.next_turn, now + self._delay(record.failures))

    def succeeded(self, address: str) -> None:
        record = self._records.get(address)
        if record is not None:
            record.failures = 0

    def forget(self, now: float) -> None:
        """Drop addresses whose last turn is long past."""
        stale = [a for a, r in self._records.items() if r.next_turn + FORGET_AFTER < now]
        for address in stale:
            del self._records[address]

    def _delay(self, failures: int) -> float:
        return min(self.delay * float(2 ** min(failures - 1, 32)), self.max_delay)

    def __len__(self) -> int:
        return len(self._records)
