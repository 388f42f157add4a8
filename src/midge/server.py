"""`midge serve`: the broker of embedding/broker.py, run until SIGINT/SIGTERM.

What only a process that is nothing but a broker may do lives here, not in
`midge.Broker`: signal handlers (SIGINT/SIGTERM stop, SIGHUP reloads the
password and ACL files), the cyclic collector's settings, systemd's
readiness notification, and the choice of uvloop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import Final

from midge import sdnotify
from midge.broker.config import BrokerConfig
from midge.embedding.broker import Broker

log = logging.getLogger("midge.server")

# The cyclic collector's thresholds while serving. With Python's default
# (700, 10, 10) a burst of CONNECTs or SUBSCRIBEs, each leaving long-lived
# objects behind, stopped for a young collection every 700 of them and for
# an older one every 7,000: 6-15% of the time the runner's 10,000-filter
# SUBSCRIBE burst took (benchmarks/RESULTS.md). At 50,000 such a burst pays
# none. Memory does not wait for the collector: reference counting frees
# what the broker drops (5,000 connections opened and closed left it no
# garbage at all).
GC_THRESHOLDS: Final = (50_000, 20, 20)


async def serve(config: BrokerConfig, reuse_port: bool = False) -> None:
    """Serve until a stop signal; returns after every connection is closed.
    `reuse_port`: listen with SO_REUSEPORT, beside the other workers of
    `midge serve --workers` (midge/workers/).

    Whatever ends it (a stop signal, a store it cannot read, an address it
    cannot bind), what was submitted is committed and the store is closed,
    which releases the data dir for the next start.
    """
    loop = asyncio.get_running_loop()
    # Signals first: whoever reads the "listening" line may stop us at once.
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    broker = Broker(config, reuse_port=reuse_port)
    try:
        async with broker:
            loop.add_signal_handler(signal.SIGHUP, _reload, broker)
            settle_collector()
            sdnotify.notify("READY=1")
            await stop.wait()
            sdnotify.notify("STOPPING=1")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


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


def _reload(broker: Broker) -> None:
    """SIGHUP: read the password, ACL and API key files again (in a cluster,
    every node does); a broken file keeps the old rules."""
    log.info("SIGHUP: reloading the password, ACL and API key files")
    task = asyncio.get_running_loop().create_task(broker.reload())
    _reloads.add(task)
    task.add_done_callback(_reloads.discard)


_reloads: set[asyncio.Task[None]] = set()  # kept until done (the loop holds tasks weakly)


def run(config: BrokerConfig, reuse_port: bool = False) -> None:
    """Serve on uvloop when it is installed, else on the default asyncio loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        asyncio.run(serve(config, reuse_port))
    else:
        uvloop.run(serve(config, reuse_port))
