"""The broker as a whole: /healthz, /metrics, version, overview, the OpenAPI text."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from midge import __version__, compiled
from midge.http.common import BROKER, HEALTH, json_response, uptime
from midge.http.metrics import exposition, retained_count, subscription_counts

REGISTRY = web.AppKey("midge_metrics_registry", CollectorRegistry)  # made by app.py
MQTT_VERSIONS = ("3.1", "3.1.1", "5.0")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/version", version)
    app.router.add_get("/api/v1/overview", overview_route)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/api/v1/bridges", bridges)


async def healthz(request: web.Request) -> web.Response:
    """200 while the broker listens and its store commits; 503 naming what is wrong."""
    broker = request.app[BROKER]
    listening = bool(broker.listeners)
    store_ok = request.app[HEALTH].check()
    data: dict[str, Any] = {
        "status": "ok" if listening and store_ok else "failing",
        "listening": listening,
        "store": "ok" if store_ok else "not committing",
    }
    if not store_ok:
        waited = request.app[HEALTH].waiting_seconds()
        data["message"] = f"the store has committed nothing for {waited:.0f} s"
    return json_response(data, 200 if data["status"] == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    body, content_type = exposition(registry, request.headers.get("Accept"))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type  # with its version and charset
    return response


async def version(request: web.Request) -> web.Response:
    return json_response(
        {
            "version": __version__,
            "build": "compiled" if compiled() else "pure",
            "mqtt": list(MQTT_VERSIONS),
        }
    )


async def overview_route(request: web.Request) -> web.Response:
    return json_response(overview(request.app))


def overview(app: web.Application) -> dict[str, Any]:
    """Counts and counters for the dashboard (and the events stream's `overview`)."""
    core = app[BROKER].core
    stats = core.stats
    online = len(core.connections)
    plain, shared = subscription_counts(core)
    writer = core.persistence.committer
    return {
        "connections": online,
        "sessions": {"online": online, "offline": max(len(core.sessions) - online, 0)},
        "subscriptions": plain + shared,
        "retained": retained_count(core),
        "messages": {
            "received": stats.messages_received,
            "sent": stats.messages_sent,
            "dropped": stats.messages_dropped,
        },
        "bytes": {
            "received": getattr(stats, "bytes_received", 0),
            "sent": getattr(stats, "bytes_sent", 0),
        },
        "store": {"commits": getattr(writer, "commits", 0), "healthy": app[HEALTH].check()},
        "uptime_seconds": round(uptime(app), 3),
    }


async def bridges(request: web.Request) -> web.Response:
    """The bridges to other brokers: state, address, topic rules and counts."""
    broker = request.app[BROKER]
    return json_response({"bridges": [bridge.describe() for bridge in broker.bridges]})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_text(), content_type="application/json")


@cache
def openapi_text() -> bytes:
    """The OpenAPI description shipped beside this module (checked to be JSON)."""
    text = resources.files("midge.http").joinpath("openapi.json").read_bytes()
    json.loads(text)
    return text
