"""The load generator: worker processes driven by one parent (`Swarm`).

Each worker is a process of its own (multiprocessing, forkserver), so the
generator spreads over the CPUs rather than sharing one interpreter. Every
worker connects (and subscribes) first and reports; the parent starts them
all at once with one event, so setup never counts as load. Workers report
over one queue; the parent tells subscribers how many messages to expect
over a pipe each. As always with multiprocessing, a script that uses this
module must guard its entry point with `if __name__ == "__main__":`.

This module is the parent; the workers live beside it, and everything is
importable from here:

- `specs`: the specs the parent hands the workers, the timeouts, the clock,
  the reports.
- `publishing`: publishers (`publisher_main`: QoS 0 floods, QoS 1/2 windows,
  paced latency probes) and pairs (`pair_main`: one QoS 1/2 publisher and
  its subscriber in one loop, windowed end to end).
- `counting`: subscribers (`subscriber_main`) and the receiving side that
  counts, acknowledges and times (`make_counter`, `receive_all`).
- `connections`: connection openers (`opener_main`: many idle connections,
  held until told) and the sink (`sink_main`: a server that only reads, or
  streams to a subscriber: the generator's own ceiling).

Every loop ends by a deadline; workers that do not report in time are
terminated by the parent (only the processes it started, by their PID).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection as Pipe
from multiprocessing.context import ForkServerContext, ForkServerProcess
from multiprocessing.queues import Queue
from typing import Any

from midge.bench.connections import opener_main, sink_main
from midge.bench.counting import IDLE_SECONDS, LOW_WATER, make_counter, receive_all, subscriber_main
from midge.bench.publishing import RING, SEND_BUFFER, pair_main, publisher_main
from midge.bench.specs import (
    SETUP_TIMEOUT,
    STALL_SECONDS,
    Message,
    OpenerSpec,
    PublisherSpec,
    SinkSpec,
    SubscriberConn,
    SubscriberSpec,
    now_ns,
)
from midge.bench.wire import BenchError, raise_fd_limit

__all__ = [
    "IDLE_SECONDS",
    "LOW_WATER",
    "RING",
    "SEND_BUFFER",
    "SETUP_TIMEOUT",
    "STALL_SECONDS",
    "Message",
    "OpenerSpec",
    "PublisherSpec",
    "SinkSpec",
    "SubscriberConn",
    "SubscriberSpec",
    "Swarm",
    "make_counter",
    "now_ns",
    "opener_main",
    "pair_main",
    "publisher_main",
    "receive_all",
    "sink",
    "sink_main",
    "subscriber_main",
]


class Swarm:
    """Starts workers, gathers their reports, and stops them (only the ones it started)."""

    def __init__(self) -> None:
        raise_fd_limit()
        self.ctx: ForkServerContext = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(["midge.bench.loadgen"])
        self.results: Queue[Message] = self.ctx.Queue()
        self.go = self.ctx.Event()
        self.processes: list[ForkServerProcess] = []
        self.pipes: dict[tuple[str, int], Pipe] = {}
        self.inbox: dict[tuple[str, str, int], Any] = {}

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(self, role: str, index: int, target: Callable[..., None], *args: Any) -> None:
        """Start `target(*args, results_queue)` in a worker process."""
        process = self.ctx.Process(
            target=target,
            args=(*args, self.results),
            name=f"midge-bench-{role}-{index}",
            daemon=True,
        )
        process.start()
        self.processes.append(process)

    def _control(self, role: str, index: int) -> Pipe:
        ours, theirs = self.ctx.Pipe()
        self.pipes[role, index] = ours
        return theirs

    def publishers(self, specs: list[PublisherSpec]) -> None:
        for spec in specs:
            self.spawn("publisher", spec.index, publisher_main, spec, self.go)

    def subscribers(self, specs: list[SubscriberSpec]) -> None:
        for spec in specs:
            control = self._control("subscriber", spec.index)
            self.spawn("subscriber", spec.index, subscriber_main, spec, self.go, control)

    def openers(self, specs: list[OpenerSpec]) -> None:
        for spec in specs:
            control = self._control("opener", spec.index)
            self.spawn("opener", spec.index, opener_main, spec, self.go, control)

    def send(self, role: str, index: int, message: Any) -> None:
        self.pipes[role, index].send(message)

    def wait(self, kind: str, role: str, count: int, timeout: float) -> list[Any]:
        """The `kind` reports of workers 0..count-1 of `role`, in index order."""
        deadline = time.monotonic() + timeout
        wanted = [(kind, role, index) for index in range(count)]
        while not all(key in self.inbox for key in wanted):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [key for key in wanted if key not in self.inbox]
                raise BenchError(f"workers did not report in {timeout:g} s: {missing}")
            try:
                message = self.results.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                dead = [p.name for p in self.processes if p.exitcode not in (None, 0)]
                if dead:
                    raise BenchError(f"workers died: {dead}") from None
                continue
            got_kind, got_role, got_index, data = message
            if got_kind == "error":
                raise BenchError(f"{got_role} {got_index} failed:\n{data}")
            self.inbox[got_kind, got_role, got_index] = data
        return [self.inbox[key] for key in wanted]

    def close(self) -> None:
        self.go.set()  # a worker still waiting for the start leaves its wait
        for pipe in self.pipes.values():
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        deadline = time.monotonic() + 10.0
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # by its own PID: only the workers started here
                process.join(5.0)
        for pipe in self.pipes.values():
            pipe.close()
        self.results.close()
        self.results.join_thread()


@contextlib.contextmanager
def sink(spec: SinkSpec) -> Iterator[tuple[int, Swarm]]:
    """A sink server in a worker process; yields its port."""
    with Swarm() as swarm:
        stop = swarm.ctx.Event()
        swarm.spawn("sink", 0, sink_main, spec, stop)
        port = swarm.wait("listening", "sink", 1, SETUP_TIMEOUT)[0]
        try:
            yield int(port), swarm
        finally:
            stop.set()
