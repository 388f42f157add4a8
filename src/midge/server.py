"""Run a broker until SIGINT/SIGTERM: store, listener, timers, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from midge import __version__, compiled
from midge.broker.broker import Broker
from midge.broker.config import BrokerConfig, ListenerConfig
from midge.broker.listeners import start_listener
from midge.store.base import Store
from midge.store.memory import MemoryStore
from midge.store.sqlite import SQLiteStore
from midge.store.writer import GroupCommitWriter

log = logging.getLogger("midge.server")

TIMER_RESOLUTION = 0.1  # seconds between keep-alive / connect-timeout checks
STORE_FILE = "midge.db"


def open_store(config: BrokerConfig) -> Store:
    """The configured store; raises StoreError when its file cannot be used."""
    if config.store == "memory":
        return MemoryStore()
    synchronous = "full" if config.durability == "full" else "normal"
    return SQLiteStore(Path(config.data_dir) / STORE_FILE, synchronous)


async def serve(config: BrokerConfig) -> None:
    """Serve until a stop signal; returns after every connection is closed."""
    store = open_store(config)
    state = store.load()
    # The broker's own state is all a memory store could hold: copying every
    # change into a MemoryStore as well would only cost CPU and memory.
    broker = Broker(config, store=None if isinstance(store, MemoryStore) else store)
    broker.restore(state)
    log.info(
        "store: %s; %d sessions, %d retained messages",
        store.description,
        len(state.sessions),
        len(state.retained),
    )
    loop = asyncio.get_running_loop()
    writer = _start_writer(broker, store, loop)
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
    except BaseException:
        for server in servers:
            server.close()
        raise
    ticker = asyncio.create_task(_run_timers(broker, loop))
    try:
        await stop.wait()
    finally:
        log.info("stopping: closing %d connections", broker.open_connections)
        for server in servers:
            server.close()
        broker.close_all("broker shutting down")
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        for server in servers:
            await server.wait_closed()
        if writer is not None:
            await asyncio.to_thread(writer.stop)
            log.info(
                "store: %d commits of %d operations in all",
                writer.commits,
                writer.operations,
            )
        store.close()
        log.info("stopped")


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


def _start_writer(
    broker: Broker, store: Store, loop: asyncio.AbstractEventLoop
) -> GroupCommitWriter | None:
    """A disk store commits on its own thread, so the loop never waits on the disk."""
    if isinstance(store, MemoryStore):
        return None

    def on_commit(epoch: int) -> None:  # runs on the writer thread
        loop.call_soon_threadsafe(broker.committed, epoch)

    writer = GroupCommitWriter(store, on_commit)
    broker.persistence.submit = writer.submit
    writer.start()
    return writer


async def _run_timers(broker: Broker, loop: asyncio.AbstractEventLoop) -> None:
    while True:
        await asyncio.sleep(TIMER_RESOLUTION)
        broker.handle_timer(loop.time())


def run(config: BrokerConfig) -> None:
    """Serve on uvloop when it is installed, else on the default asyncio loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
