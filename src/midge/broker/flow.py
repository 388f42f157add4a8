"""Backpressure: publishers wait for the receivers their QoS 1/2 messages queue for.

An online receiver is in one of three states (offline is the fourth; see
docs/backpressure.md for the table):

- *reading*: its queue is below the high-water mark (the queue bound,
  `max_queued_messages` / `max_queued_bytes`). Nothing happens to publishers.
- *behind*: the queue reached the mark, and the receiver acknowledged
  something within `stall_timeout` (or has owed nothing for that long).
  Every connection that adds to its queue is *held back* (`Connection.holders`):
  its next packets wait, its PUBACK/PUBREC come later, TCP closes its window.
  Nothing is dropped; the queue passes its bound by at most a packet per
  held publisher. At the low-water mark (half the bound) they are let go.
- *stalled*: it owes an acknowledgement for `stall_timeout` and gave none.
  Its publishers are let go and its queue bound applies again with
  `slow_consumer_policy` (drop or disconnect), so one client that never
  reads cannot stop anyone else. Its next acknowledgement makes it reading
  (or behind) again.

QoS 0 never queues for an online client: it is dropped at the socket's
write-buffer bound, counted. None of this runs until a queue reaches its
mark: a broker whose receivers keep up pays one length check per queued
message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from midge.broker.config import BrokerConfig
from midge.broker.connection import Connection, State
from midge.broker.session import Session
from midge.broker.stats import Stats
from midge.message import Message

log = logging.getLogger("midge.flow")

DEFAULT_HIGH_WATER = 1000  # queued messages that hold publishers back when the bound is 0


class FlowControl:
    __slots__ = (
        "_schedule",
        "_wake",
        "behind",
        "high_bytes",
        "high_messages",
        "low_bytes",
        "low_messages",
        "policy",
        "stall_timeout",
        "stats",
    )

    def __init__(
        self,
        config: BrokerConfig,
        stats: Stats,
        schedule: Callable[[Connection, float], None],
        wake: Callable[[Connection], None],
    ) -> None:
        """`schedule(receiver, deadline)` asks for `check_stall` at `deadline`;
        `wake(publisher)` has its waiting input handled once this batch is done."""
        self.high_messages = config.max_queued_messages or DEFAULT_HIGH_WATER
        self.high_bytes = config.max_queued_bytes  # 0: messages alone set the mark
        self.low_messages = self.high_messages // 2
        self.low_bytes = self.high_bytes // 2
        self.stall_timeout = config.stall_timeout
        self.policy = config.slow_consumer_policy
        self.stats = stats
        self._schedule = schedule
        self._wake = wake
        # Receivers behind right now. A cluster's inbound stream waits while
        # there is one (cluster/inbound.py): its messages have no publisher
        # here to hold back.
        self.behind = 0

    def has_room(self, session: Session, message: Message) -> bool:
        """Whether `message` fits below the high-water mark."""
        return session.can_queue(message, self.high_messages, self.high_bytes)

    def drained(self, session: Session) -> bool:
        return len(session.queue) <= self.low_messages and (
            not self.high_bytes or session.queued_bytes <= self.low_bytes
        )

    def is_stalled(self, receiver: Connection, now: float) -> bool:
        """Whether the receiver stopped acknowledging (checked, and acted on, now)."""
        if receiver.stalled:
            return True
        since = receiver.waiting_since
        if since is not None and now - since >= self.stall_timeout:
            self._stall(receiver, now - since)
            return True
        return False

    def hold_back(self, receiver: Connection, publisher: Connection | None) -> None:
        """`publisher`'s message went into `receiver`'s queue past the mark
        (None: a message with no publisher here, the broker's or another node's)."""
        feeders = receiver.feeders
        if feeders is None:
            feeders = receiver.feeders = set()
            self.behind += 1
            self.stats.backpressure_episodes += 1
            log.debug("%s is behind: holding back its publishers", receiver.name)
            if receiver.waiting_since is not None:
                self._schedule(receiver, receiver.waiting_since + self.stall_timeout)
        if publisher is not None and publisher not in feeders:
            feeders.add(publisher)
            publisher.holders += 1
            self.stats.publishers_held += 1

    def progress(self, receiver: Connection, now: float) -> None:
        """The receiver acknowledged a delivery, or read its socket's backlog."""
        session = receiver.session
        owes_more = receiver.write_blocked or (session is not None and bool(session.inflight))
        receiver.waiting_since = now if owes_more else None
        if receiver.stalled:
            receiver.stalled = False
            log.info("%s acknowledges again after stalling", receiver.name)

    def sent(self, receiver: Connection, now: float) -> None:
        """A QoS 1/2 message went out: from now on the receiver owes an answer
        (and a blocked socket owes reading: `Connection.write_paused`)."""
        if receiver.waiting_since is None:
            receiver.waiting_since = now

    def dequeued(self, receiver: Connection, session: Session) -> None:
        """The queue shrank: below the low-water mark, publishers go on."""
        if receiver.feeders is not None and self.drained(session):
            self.release(receiver)

    def check_stall(self, receiver: Connection, now: float) -> float | None:
        """For the broker's timer: the next deadline to look again, if any."""
        if receiver.feeders is None or receiver.waiting_since is None:
            return None
        deadline = receiver.waiting_since + self.stall_timeout
        if now < deadline:
            return deadline
        self.is_stalled(receiver, now)
        return None

    def release(self, receiver: Connection) -> None:
        """Let every publisher the receiver holds back go on."""
        feeders, receiver.feeders = receiver.feeders, None
        if feeders is None:
            return
        self.behind -= 1
        if not feeders:
            return
        for publisher in feeders:
            publisher.holders -= 1
            if not publisher.holders and publisher.state is not State.CLOSED:
                self._wake(publisher)

    def _stall(self, receiver: Connection, silent_for: float) -> None:
        receiver.stalled = True
        self.stats.stalls += 1
        log.warning(
            "%s stalled: no acknowledgement for %.1f s; its publishers go on and its "
            "queue bound applies (slow_consumer_policy %s)",
            receiver.name,
            silent_for,
            self.policy,
        )
        self.release(receiver)
