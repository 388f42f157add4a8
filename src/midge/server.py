"""Run a broker until SIGINT/SIGTERM: listener, timers, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from midge import __version__
from midge.broker.broker import Broker
from midge.broker.config import BrokerConfig
from midge.broker.listeners import start_tcp_listener

log = logging.getLogger("midge.server")

TIMER_RESOLUTION = 0.1  # seconds between keep-alive / connect-timeout checks


async def serve(config: BrokerConfig) -> None:
    """Serve until a stop signal; returns after every connection is closed."""
    broker = Broker(config)
    loop = asyncio.get_running_loop()
    # Signals first: whoever reads the "listening" line may stop us at once.
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await start_tcp_listener(broker, config.host, config.port)
    for sock in server.sockets:
        host, port = sock.getsockname()[:2]
        log.info("midge %s listening on %s:%d", __version__, host, port)
    ticker = asyncio.create_task(_run_timers(broker, loop))
    try:
        await stop.wait()
    finally:
        log.info("stopping: closing %d connections", broker.open_connections)
        server.close()
        broker.close_all("broker shutting down")
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await server.wait_closed()
        log.info("stopped")


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
