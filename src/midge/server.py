"""Run a broker until SIGINT/SIGTERM: store, listener, timers, clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path
from typing import Final

from midge import __version__, compiled
from midge.broker.broker import Broker
from midge.broker.config import BrokerConfig, ListenerConfig
from midge.broker.listeners import start_listener
from midge.store.base import Store
from midge.store.memory import MemoryStore
from midge.store.sqlite import SQLiteStore
from midge.store.writer import GroupCommitWriter

log = logging.getLogger("midge.server")

STORE_FILE = "midge.db"

# The cyclic collector's thresholds while serving. With Python's default
# (700, 10, 10) a burst of CONNECTs or SUBSCRIBEs, each leaving long-lived
# objects behind, stopped for a young collection every 700 of them and for
# an older one every 7,000: 6-15% of the time the runner's 10,000-filter
# SUBSCRIBE burst took (benchmarks/RESULTS.md). At 50,000 such a burst pays
# none. Memory does not wait for the collector: reference counting frees
# what the broker drops (5,000 connections opened and closed left it no
# garbage at all).
GC_THRESHOLDS: Final = (50_000, 20, 20)


def open_store(config: BrokerConfig) -> Store:
    """The configured store; raises StoreError when its file cannot be used."""
    if config.store == "memory":
        return MemoryStore()
    synchronous = "full" if config.durability == "full" else "normal"
    return SQLiteStore(Path(config.data_dir) / STORE_FILE, synchronous)


async def serve(config: BrokerConfig) -> None:
    """Serve until a stop signal; returns after every connection is closed.

    Whatever ends it (a stop signal, a store it cannot read, an address it
    cannot bind), what was submitted is committed and the store is closed,
    which releases the data dir for the next start.
    """
    store = open_store(config)
    writer: GroupCommitWriter | None = None
    try:
        state = store.load()
        loop = asyncio.get_running_loop()
        timers = TimerDriver(loop)
        # The broker's own state is all a memory store could hold: copying every
        # change into a MemoryStore as well would only cost CPU and memory.
        on_disk = not isinstance(store, MemoryStore)
        # A disk store commits on its own thread, so the loop never waits on the disk.
        writer = GroupCommitWriter(store, loop.call_soon_threadsafe) if on_disk else None
        broker = Broker(
            config,
            store=store if on_disk else None,
            committer=writer,
            wake_at=timers.wake_at,
        )
        timers.start(broker)
        try:
            broker.restore(state)
            log.info(
                "store: %s; %d sessions, %d retained messages",
                store.description,
                len(state.sessions),
                len(state.retained),
            )
            settle_collector()
            await _run_listeners(broker, config, loop)
        finally:
            timers.stop()
    finally:
        if writer is not None:
            await asyncio.to_thread(writer.stop)
            log.info("store: %d commits of %d operations in all", writer.commits, writer.operations)
        store.close()
    log.info("stopped")


def settle_collector() -> None:
    """Take what exists before the first client out of the cyclic collector's
    sight, and collect less often while serving.

    Modules, configuration and restored sessions live as long as the process:
    `gc.freeze` moves them to a generation the collector never walks, so a
    full collection costs what clients made, not the whole interpreter.
    """
    gc.collect()  # first: start-up garbage, once frozen, would never be freed
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _run_listeners(
    broker: Broker, config: BrokerConfig, loop: asyncio.AbstractEventLoop
) -> None:
    """Listen until SIGINT or SIGTERM, then close every listener and connection."""
    # Signals first: whoever reads the "listening" line may stop us at once.
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, broker)
    servers = []
    try:
        for listener in config.effective_listeners():
            servers.append(await start_listener(broker, listener))
            _log_listening(servers[-1], listener)
        await stop.wait()
        log.info("stopping: closing %d connections", broker.open_connections)
    finally:
        for server in servers:
            server.close()
        broker.close_all()
        for server in servers:
            await server.wait_closed()


def _log_listening(server: asyncio.Server, listener: ListenerConfig) -> None:
    build = "compiled with mypyc" if compiled() else "pure Python"
    for sock in server.sockets:
        host, port = sock.getsockname()[:2]
        log.info(
            "midge %s (%s) listening on %s:%d (%s)",
            __version__,
            build,
            host,
            port,
            listener.label,
        )


def _reload(broker: Broker) -> None:
    """SIGHUP: read the password and ACL files again; a broken file keeps the old rules."""
    log.info("SIGHUP: reloading the password and ACL files")
    broker.reload_auth()


class TimerDriver:
    """Calls the broker's `handle_timer` when its next deadline comes, by the
    loop's `call_at`: no polling, and a new earlier deadline moves the call."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.broker: Broker | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def start(self, broker: Broker) -> None:
        self.broker = broker
        self.wake_at(self.loop.time())  # the first call starts the periodic checks

    def wake_at(self, deadline: float) -> None:
        if self.broker is None or (self._at is not None and self._at <= deadline):
            return
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        self._handle = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._handle = self._at = None
        broker = self.broker
        if broker is None:
            return
        try:
            broker.handle_timer(self.loop.time())
        except Exception:
            # handle_timer guards each connection; this is the last line, so one
            # bug can never stop the timeouts of every client.
            log.exception("internal error in the broker's timers")
        finally:
            deadline = broker.next_timer()
            if deadline is not None:
                self.wake_at(deadline)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._at = None
        self.broker = None


def run(config: BrokerConfig) -> None:
    """Serve on uvloop when it is installed, else on the default asyncio loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
