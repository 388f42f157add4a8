"""What every route module shares: the app's state, JSON errors, input checks, pages.

Every error the API answers is JSON, `{"error": {"code", "message", "field"}}`,
where `field` names the bad input (`topic`, `properties.user_properties[1]`,
`[3].qos` in a bulk publish, `limit`, `body`) or is absent. Handlers raise
`ApiError`; app.py's middleware turns it, and anything else, into that shape.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from midge.embedding.broker import Broker
from midge.http.apikeys import ApiKey, ApiKeys

if TYPE_CHECKING:
    from midge.http.health import StoreHealth
    from midge.http.publisher import Publishers

T = TypeVar("T")
K = TypeVar("K", str, tuple[str, str])

MAX_PAGE = 1000
DEFAULT_PAGE = 100
PROTOCOL_NAMES = {3: "3.1", 4: "3.1.1", 5: "5.0"}


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What the HTTP API is told by the config, and bounds a test may shorten."""

    max_body: int = 1024 * 1024  # bytes of a request body (http_max_body)
    metrics_require_key: bool = False
    # A QoS 1/2 publish whose PUBACK has not come by then is answered 503: the
    # store is not committing (or subscribers that fell behind hold publishers
    # back). The message may still go out once it does.
    publish_timeout: float = 10.0
    # Seconds the store may have batches waiting without committing any before
    # /healthz and publish say it is failing (the writer retries every second).
    store_stall: float = 5.0
    events_interval: float = 1.0  # seconds between the events stream's batches


class ApiError(Exception):
    """An answer other than success: HTTP status, error code, message, bad field."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.field)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def bad_input(field: str, message: str, code: str = "invalid_field") -> ApiError:
    return ApiError(400, code, f"{field}: {message}" if field else message, field or None)


# ------------------------------------------------------------- the app's state

BROKER = web.AppKey("midge_broker", Broker)
KEYS = web.AppKey("midge_api_keys", ApiKeys)
SETTINGS = web.AppKey("midge_settings", HttpSettings)
PUBLISHERS: web.AppKey[Publishers] = web.AppKey("midge_publishers")
HEALTH: web.AppKey[StoreHealth] = web.AppKey("midge_store_health")
STARTED = web.AppKey("midge_started", float)  # time.monotonic() at start
# The key that authenticated the request being handled: set by the auth
# middleware in the request's own task (aiohttp runs each in one), so no
# per-request storage (whose typed keys differ between aiohttp versions).
REQUEST_KEY: ContextVar[ApiKey | None] = ContextVar("midge_api_key", default=None)


def request_key(request: web.Request) -> ApiKey | None:
    """The API key of `request` (None on the open endpoints)."""
    return REQUEST_KEY.get()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; 400 naming `body` for anything else (413 past
    http_max_body is raised by aiohttp and answered by the middleware)."""
    raw = await request.read()
    if not raw:
        raise bad_input("body", "a JSON body is required", "invalid_json")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_input("body", "not UTF-8", "invalid_json") from None
    except json.JSONDecodeError as exc:
        raise bad_input("body", f"not valid JSON: {exc}", "invalid_json") from None


# ------------------------------------------------------------- query strings


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise bad_input(name, f"must be an integer {low}..{high}, got {raw!r}") from None
    if not low <= value <= high:
        raise bad_input(name, f"must be {low}..{high}, got {value}")
    return value


def query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise bad_input(name, f"must be true or false, got {raw!r}")


def page_limit(request: web.Request) -> int:
    return query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)


def page(items: Iterable[tuple[K, T]], limit: int) -> tuple[list[T], K | None]:
    """The `limit` items with the smallest sort keys, and the cursor of the next
    page (the last key given, None when nothing follows). `items` are
    (sort key, item) pairs already past the request's cursor."""
    chosen = heapq.nsmallest(limit + 1, items, key=lambda pair: pair[0])
    more = len(chosen) > limit
    chosen = chosen[:limit]
    return [item for _, item in chosen], chosen[-1][0] if more else None


# ------------------------------------------------------------- values out


def iso_time(seconds: float | None) -> str | None:
    """Wall-clock seconds as ISO 8601 in UTC (milliseconds), None as None."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload_out(payload: bytes, encoding: str = "auto", limit: int | None = None) -> dict[str, Any]:
    """A payload as JSON: text when it is UTF-8 (or `encoding` says plain), else
    base64; cut at `limit` bytes (then `truncated` is true)."""
    truncated = limit is not None and len(payload) > limit
    data = payload[:limit] if truncated else payload
    if encoding != "base64":
        text = _utf8_prefix(data, whole=not truncated)
        if text is not None:
            return {"payload": text, "payload_encoding": "plain", "truncated": truncated}
    encoded = base64.b64encode(data).decode("ascii")
    return {"payload": encoded, "payload_encoding": "base64", "truncated": truncated}


def _utf8_prefix(data: bytes, whole: bool) -> str | None:
    """`data` as text; a cut one may lose up to 3 bytes of a character at its end."""
    for cut in range(1 if whole else 4):
        try:
            return data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def b64decode_field(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise bad_input(field, "must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_input(field, "is not valid base64") from None


def uptime(app: web.Application) -> float:
    return time.monotonic() - app[STARTED]
