"""Clients, sessions and subscriptions: list (paginated), one, delete.

Lists are sorted by client id (subscriptions by client id, then filter) and
paginated by cursor: `?limit=N&after=CURSOR`, answered `{"data": [...],
"next": CURSOR or null}`. A page is chosen with a heap over the broker's
tables (O(n log limit)), and only its rows are turned into JSON. A client id
may hold `/`: `/api/v1/clients/{client_id}` takes the rest of the path,
percent-decoded, as the id.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from aiohttp import web

from midge.broker.views import (
    ClientInfo,
    SessionInfo,
    SubscriptionInfo,
    session_info,
    subscription_info,
)
from midge.http.common import (
    BROKER,
    PROTOCOL_NAMES,
    ApiError,
    bad_input,
    iso_time,
    json_response,
    page,
    page_limit,
    query_bool,
    request_key,
)

log = logging.getLogger("midge.http")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/clients", list_clients)
    app.router.add_get("/api/v1/clients/{client_id:.+}", get_client)
    app.router.add_delete("/api/v1/clients/{client_id:.+}", delete_client)
    app.router.add_get("/api/v1/sessions", list_sessions)
    app.router.add_get("/api/v1/sessions/{client_id:.+}", get_session)
    app.router.add_delete("/api/v1/sessions/{client_id:.+}", delete_session)
    app.router.add_get("/api/v1/subscriptions", list_subscriptions)


# ------------------------------------------------------------------ JSON


def client_json(info: ClientInfo) -> dict[str, Any]:
    return {
        "client_id": info.client_id,
        "username": info.username,
        "address": info.address,
        "protocol_version": info.protocol_version,
        "protocol": PROTOCOL_NAMES.get(info.protocol_version, str(info.protocol_version)),
        "listener": info.listener,
        "keep_alive": info.keep_alive,
        "persistent": info.persistent,
        "connected_at": iso_time(info.connected_at),
        "inflight": info.inflight,
        "queued": info.queued,
    }


def subscription_json(info: SubscriptionInfo) -> dict[str, Any]:
    return {
        "client_id": info.client_id,
        "topic_filter": info.topic_filter,
        "qos": info.qos,
        "no_local": info.no_local,
        "retain_as_published": info.retain_as_published,
        "subscription_id": info.subscription_id or None,
        "shared": info.topic_filter.startswith("$share/"),
    }


def session_json(info: SessionInfo, with_subscriptions: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "client_id": info.client_id,
        "connected": info.connected,
        "persistent": info.persistent,
        "expiry_interval": info.expiry_interval,
        "disconnected_at": iso_time(info.disconnected_at),
        "subscription_count": len(info.subscriptions),
        "inflight": info.inflight,
        "queued": info.queued,
        "dropped": info.dropped,
    }
    if with_subscriptions:
        data["subscriptions"] = [subscription_json(item) for item in info.subscriptions]
    return data


# ------------------------------------------------------------------ clients


async def list_clients(request: web.Request) -> web.Response:
    """Connected clients, filtered by client id prefix, user name, address prefix."""
    core = request.app[BROKER].core
    query = request.query
    limit = page_limit(request)
    after = query.get("after", "")
    prefix = query.get("client_id_prefix", "")
    username = query.get("username")
    address = query.get("address", "")
    rows = (
        (client_id, connection)
        for client_id, connection in core.connections.items()
        if client_id > after
        and client_id.startswith(prefix)
        and (username is None or connection.username == username)
        and connection.peer.startswith(address)
    )
    chosen, following = page(rows, limit)
    data = [client_json(core.client_info(connection)) for connection in chosen]
    return json_response({"data": data, "next": following})


async def get_client(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    client_id = request.match_info["client_id"]
    info = broker.get_client(client_id)
    if info is None:
        raise _not_connected(client_id)
    data = client_json(info)
    session = broker.core.sessions.get(client_id)
    if session is not None:
        view = session_info(session)
        data["subscriptions"] = [subscription_json(item) for item in view.subscriptions]
        data["dropped"] = view.dropped
    else:
        data["subscriptions"] = []
        data["dropped"] = 0
    return json_response(data)


async def delete_client(request: web.Request) -> web.Response:
    """Disconnect (5.0 clients get DISCONNECT 0x98); the session stays if persistent."""
    client_id = request.match_info["client_id"]
    if not await request.app[BROKER].disconnect(client_id):
        raise _not_connected(client_id)
    _audit(request, "disconnected client", client_id)
    return web.Response(status=204)


def _not_connected(client_id: str) -> ApiError:
    return ApiError(404, "not_found", f"client {client_id!r} is not connected", "client_id")


# ------------------------------------------------------------------ sessions


async def list_sessions(request: web.Request) -> web.Response:
    """Every session, offline persistent ones too; `connected=true|false` filters."""
    core = request.app[BROKER].core
    limit = page_limit(request)
    after = request.query.get("after", "")
    prefix = request.query.get("client_id_prefix", "")
    connected = query_bool(request, "connected")
    rows = (
        (client_id, session)
        for client_id, session in core.sessions.items()
        if client_id > after
        and client_id.startswith(prefix)
        and (connected is None or session.connected == connected)
    )
    chosen, following = page(rows, limit)
    data = [session_json(session_info(session), with_subscriptions=False) for session in chosen]
    return json_response({"data": data, "next": following})


async def get_session(request: web.Request) -> web.Response:
    client_id = request.match_info["client_id"]
    session = request.app[BROKER].core.sessions.get(client_id)
    if session is None:
        raise _no_session(client_id)
    return json_response(session_json(session_info(session), with_subscriptions=True))


async def delete_session(request: web.Request) -> web.Response:
    """Discard the session (disconnecting its client first), its queue and subscriptions."""
    client_id = request.match_info["client_id"]
    if not await request.app[BROKER].delete_session(client_id):
        raise _no_session(client_id)
    _audit(request, "deleted session", client_id)
    return web.Response(status=204)


def _no_session(client_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no session for client {client_id!r}", "client_id")


# ------------------------------------------------------------------ subscriptions


async def list_subscriptions(request: web.Request) -> web.Response:
    """Every subscription (shared ones too), filtered by exact client id and/or
    exact topic filter. The cursor is opaque: pass `next` back as `after`."""
    core = request.app[BROKER].core
    limit = page_limit(request)
    after = _subscription_cursor(request.query.get("after"))
    client_id = request.query.get("client_id")
    topic_filter = request.query.get("topic_filter")
    if client_id is not None:
        session = core.sessions.get(client_id)
        sessions = [session] if session is not None else []
    else:
        sessions = list(core.sessions.values())
    rows = (
        ((session.client_id, name), (session.client_id, name, options))
        for session in sessions
        for name, options in session.subscriptions.items()
        if (topic_filter is None or name == topic_filter) and (session.client_id, name) > after
    )
    chosen, last = page(rows, limit)
    data = [subscription_json(subscription_info(*row)) for row in chosen]
    following = _encode_cursor(last) if last is not None else None
    return json_response({"data": data, "next": following})


def _encode_cursor(position: tuple[str, str]) -> str:
    raw = json.dumps(list(position), ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _subscription_cursor(raw: str | None) -> tuple[str, str]:
    if not raw:
        return ("", "")
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        value = json.loads(decoded.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise bad_input("after", "not a cursor this API gave (pass `next` back as is)") from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise bad_input("after", "not a cursor this API gave (pass `next` back as is)")
    return value[0], value[1]


def _audit(request: web.Request, action: str, client_id: str) -> None:
    key = request_key(request)
    log.info(
        "HTTP API: key %r %s %r (from %s)",
        key.name if key is not None else None,
        action,
        client_id,
        request.remote,
    )
