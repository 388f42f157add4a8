"""The HTTP API as a service of `midge.Broker` (embedding/services.py).

Made only when a `[[listeners]]` table has transport `http` or `https`. It
serves app.py's application on the broker's own event loop with aiohttp's
AppRunner and one TCPSite per listener (TLS from the listener's certfile
and keyfile, as the MQTT listeners do), records each bound address in
`broker.listeners` and logs "listening on HOST:PORT (http)". SIGHUP
(`midge serve`) reloads `api_key_file`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from midge.broker.config import BrokerConfig, ConfigError
from midge.broker.tls import server_context
from midge.embedding.broker import Broker, ListenerAddress
from midge.http.apikeys import ApiKeyFileError, ApiKeys
from midge.http.app import AccessLog, build_app
from midge.http.common import HEALTH, PUBLISHERS, HttpSettings

log = logging.getLogger("midge.http")

# Bounds that are not config keys (tests shorten them).
PUBLISH_TIMEOUT = 10.0
STORE_STALL_SECONDS = 5.0
EVENTS_INTERVAL = 1.0
HEALTH_CHECK_SECONDS = 1.0  # how often the store's progress is sampled
SHUTDOWN_SECONDS = 2.0  # requests still running at stop get this long to finish


class HttpService:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.keys: ApiKeys | None = None
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._watch: asyncio.Task[None] | None = None

    def settings(self) -> HttpSettings:
        return HttpSettings(
            max_body=self.config.http_max_body,
            metrics_require_key=self.config.metrics_require_key,
            publish_timeout=PUBLISH_TIMEOUT,
            store_stall=STORE_STALL_SECONDS,
            events_interval=EVENTS_INTERVAL,
        )

    async def start(self, broker: Broker) -> None:
        config = self.config
        try:
            keys = self.keys = ApiKeys.load(config.api_key_file)
        except ApiKeyFileError as exc:
            raise ConfigError(f"config key 'api_key_file': {exc}") from None
        if not config.api_key_file:
            log.warning(
                "HTTP API: no api_key_file, so every endpoint but /healthz%s answers 401 "
                "(`midge apikey create NAME --role admin --file FILE` makes a key)",
                "" if config.metrics_require_key else " and /metrics",
            )
        app = self.app = build_app(broker, keys, self.settings())
        runner = self._runner = web.AppRunner(
            app,
            access_log_class=AccessLog,
            access_log=logging.getLogger("midge.http.access"),
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
        try:
            await runner.setup()
            for listener in config.http_listeners():
                context = server_context(listener) if listener.secure else None
                before = set(map(tuple, runner.addresses))
                site = web.TCPSite(
                    runner,
                    listener.host,
                    listener.port,
                    ssl_context=context,
                    reuse_address=True,
                )
                await site.start()
                for address in runner.addresses:
                    if tuple(address) not in before:
                        broker._note_bound(
                            ListenerAddress(
                                address[0], address[1], listener.transport, listener.label
                            )
                        )
        except BaseException:
            await self.stop()  # the broker stops only services that started
            raise
        self._watch = asyncio.ensure_future(self._watch_store(app))

    async def _watch_store(self, app: web.Application) -> None:
        health = app[HEALTH]
        was_healthy = True
        while True:
            healthy = health.check()
            if healthy != was_healthy:
                if healthy:
                    log.info("HTTP API: the store commits again; /healthz says ok")
                else:
                    log.warning("HTTP API: the store is not committing; /healthz answers 503")
                was_healthy = healthy
            await asyncio.sleep(HEALTH_CHECK_SECONDS)

    def reload(self) -> None:
        """SIGHUP: read api_key_file again; the publishers of deleted keys go."""
        if self.keys is None or self.app is None:
            return
        if self.keys.reload():
            self.app[PUBLISHERS].forget_except(self.keys.key_ids())

    async def stop(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        runner, self._runner = self._runner, None
        if runner is not None:
            try:
                await runner.cleanup()
            except Exception:
                log.exception("HTTP API: error while stopping")
