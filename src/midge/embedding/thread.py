"""A `midge.Broker` on its own thread and event loop, for programs (and tests)
that are not asyncio themselves: a Flask app, a paho-mqtt test suite.

    with midge.BrokerThread(port=0, store="memory") as running:
        paho_client.connect("127.0.0.1", running.port)
        running.call(lambda broker: broker.publish("a/b", b"x", qos=1))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from midge.embedding.broker import Broker

T = TypeVar("T")
START_TIMEOUT = 30.0


class BrokerThread:
    """Starts `Broker(*args, **kwargs)` in a new thread on entering (or
    `start()`); returns once it listens, or raises what stopped it starting.
    Leaving (or `stop()`) stops the broker and joins the thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="midge-broker", daemon=True)

    def __enter__(self) -> BrokerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the broker did not start within {timeout:g} s")
        if self._failure is not None:
            self._thread.join(timeout)
            raise self._failure

    def stop(self, timeout: float = START_TIMEOUT) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)

    @property
    def broker(self) -> Broker:
        """The broker; use it only through `call` / `read` (its loop's thread)."""
        if self._broker is None:
            raise RuntimeError("the broker thread is not running")
        return self._broker

    @property
    def port(self) -> int:
        return self.broker.port

    def call(self, make: Callable[[Broker], Awaitable[T]], timeout: float | None = None) -> T:
        """Run `make(broker)` (a coroutine) on the broker's loop; wait for its result."""

        async def run() -> T:
            return await make(self.broker)

        return self._submit(run(), timeout)

    def read(self, look: Callable[[Broker], T], timeout: float | None = None) -> T:
        """`look(broker)` on the broker's loop, e.g. `read(lambda b: b.clients())`."""

        async def run() -> T:
            return look(self.broker)

        return self._submit(run(), timeout)

    def _submit(self, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the broker thread is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(), not lost in the thread
            if not self._started.is_set():
                self._failure = exc
                self._started.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with Broker(*self._args, **self._kwargs) as broker:
            self._broker = broker
            self._loop = asyncio.get_running_loop()
            self._started.set()
            await self._stop.wait()
        self._broker = None
