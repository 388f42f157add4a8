"""The HTTP API as an aiohttp Application: routes, API key checks, JSON errors.

`build_app(broker, keys, settings)` makes it; service.py serves it on the
broker's own event loop. Two middlewares wrap every request:

- `errors`: whatever a handler raises becomes a JSON error, `{"error":
  {"code", "message", "field"}}`: `ApiError` as it says, aiohttp's 404, 405
  and 413 (a body past `http_max_body`, which aiohttp stops reading there),
  and any other exception as 500 `internal_error`, logged with its traceback
  on the broker's log, never sent to the caller.
- `auth`: every path but /healthz (and /metrics unless
  `metrics_require_key`) needs `Authorization: Bearer KEY`; the events stream
  also takes `?key=KEY`, since a browser's EventSource cannot send headers.
  401 without a key or with one not in the key file, 403 for a `read` key on
  anything but GET.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from midge.embedding.broker import Broker
from midge.http import events, routes_clients, routes_publish, routes_retained, routes_system
from midge.http.apikeys import ApiKeys
from midge.http.common import (
    BROKER,
    HEALTH,
    KEYS,
    PUBLISHERS,
    REQUEST_KEY,
    SETTINGS,
    STARTED,
    ApiError,
    HttpSettings,
    error_body,
    json_response,
)
from midge.http.dashboard import add_dashboard_routes
from midge.http.health import StoreHealth
from midge.http.metrics import make_registry
from midge.http.publisher import Publishers

log = logging.getLogger("midge.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PATHS = frozenset({"/healthz"})
EVENTS_PATH = "/api/v1/events"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSAL_LOG_SECONDS = 10.0  # one warning per address this often for unknown keys
REFUSAL_LOG_ADDRESSES = 1024
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiCounters:
    """The HTTP API's own counters (plain integers, read by /metrics)."""

    __slots__ = ("auth_failures",)

    def __init__(self) -> None:
        self.auth_failures = 0


COUNTERS = web.AppKey("midge_api_counters", ApiCounters)


def build_app(broker: Broker, keys: ApiKeys, settings: HttpSettings) -> web.Application:
    """The API's application for a running `broker`, checking `keys`."""
    app = web.Application(
        client_max_size=settings.max_body,
        middlewares=[_errors, _Auth(keys, settings)],
        logger=log,
    )
    app[BROKER] = broker
    app[KEYS] = keys
    app[SETTINGS] = settings
    app[STARTED] = time.monotonic()
    health = app[HEALTH] = StoreHealth(broker, settings.store_stall)
    app[PUBLISHERS] = Publishers(broker)
    counters = app[COUNTERS] = ApiCounters()
    app[routes_system.REGISTRY] = make_registry(broker, health, counters)
    app[events.EVENTS_HUB] = events.EventHub(app, settings.events_interval)
    for module in (routes_system, routes_publish, routes_clients, routes_retained, events):
        module.add_routes(app)
    add_dashboard_routes(app)  # the page at / and /static/ (no key needed)
    app.on_shutdown.append(_shutdown)
    return app


async def _shutdown(app: web.Application) -> None:
    await app[events.EVENTS_HUB].stop()
    await app[PUBLISHERS].close()


# ------------------------------------------------------------------ middlewares


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = json_response(exc.body(), exc.status)
        response.headers.update(exc.headers)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("internal error in the HTTP API: %s %s", request.method, request.path)
        return json_response(error_body("internal_error", "internal error (logged)"), 500)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, "http_error")
    field = None
    if exc.status == 404:
        message = f"no such endpoint: {request.path}"
    elif exc.status == 405:
        message = f"{request.method} is not allowed on {request.path}"
    elif exc.status == 413:
        field = "body"
        limit = request.app[SETTINGS].max_body
        message = f"the body is larger than http_max_body ({limit} bytes)"
    else:
        message = exc.reason
    response = json_response(error_body(code, message, field), exc.status)
    allow = exc.headers.get("Allow")
    if allow:
        response.headers["Allow"] = allow
    return response


class _Auth:
    """The API key check, as a middleware object that holds the key set."""

    __middleware_version__ = 1  # aiohttp's mark of a new-style middleware

    def __init__(self, keys: ApiKeys, settings: HttpSettings) -> None:
        self.keys = keys
        self.settings = settings
        self._logged: dict[str, float] = {}  # address -> when its refusal was last logged

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or (path == "/metrics" and not self.settings.metrics_require_key):
            return await handler(request)
        token = _bearer(request)
        if token is None and path == EVENTS_PATH:
            token = request.query.get("key")
        if not token:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required: Authorization: Bearer KEY",
                headers={"WWW-Authenticate": 'Bearer realm="midge"'},
            )
        key = self.keys.authenticate(token)
        if key is None:
            request.app[COUNTERS].auth_failures += 1
            self._log_refusal(request)
            raise ApiError(
                401,
                "unauthorized",
                "unknown API key",
                headers={"WWW-Authenticate": 'Bearer realm="midge", error="invalid_token"'},
            )
        if request.method not in READ_METHODS and not key.may_write:
            raise ApiError(
                403,
                "forbidden",
                f"API key {key.name!r} has role read: {request.method} needs role admin",
            )
        token_set = REQUEST_KEY.set(key)
        try:
            return await handler(request)
        finally:
            REQUEST_KEY.reset(token_set)

    def _log_refusal(self, request: web.Request) -> None:
        address = request.remote or "?"
        now = time.monotonic()
        last = self._logged.get(address)
        if last is not None and now - last < REFUSAL_LOG_SECONDS:
            return
        if len(self._logged) >= REFUSAL_LOG_ADDRESSES:
            self._logged.clear()
        self._logged[address] = now
        log.warning(
            "HTTP API: unknown API key from %s (%s %s)", address, request.method, request.path
        )


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class AccessLog(AbstractAccessLogger):
    """One debug line per request on the broker's log; the path only, never the
    query string (where the events stream may carry its key)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "HTTP %s %s %s %d %.1f ms",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)
