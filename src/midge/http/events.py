"""GET /api/v1/events: Server-Sent Events for the dashboard.

Every `interval` (1 s) each open stream gets:

- `overview`: the object of GET /api/v1/overview;
- `client`: `{"event": "connected", "client": {...}}` (the client object of
  GET /api/v1/clients) or `{"event": "disconnected", "client_id": "..."}`, for
  what changed since the last batch; past MAX_CLIENT_EVENTS changes in one
  batch, one `{"event": "many", "connected": N, "disconnected": N}` instead
  (reload the list);
- `topics` (when messages were routed): `{TOPIC: {"count", "payload",
  "payload_encoding", "truncated", "retained"}}` for the messages routed since
  the last batch, with the first PAYLOAD_PREVIEW bytes of the latest payload;
  at most MAX_TOPICS topics a batch: messages to further topics are counted
  in the batch's `"$dropped": {"count": N}` entry (no topic starts with `$`
  here: `#` does not match them).

One `EventHub` serves every stream. It runs only while a stream is open, so
an API with no dashboard open costs nothing: connects and disconnects are
found by comparing the broker's table of connections with the previous
batch's (no event hook), and topics are counted by an in-process QoS 0
subscription to `#` that exists only while a stream is open. QoS 0 means it
never holds a publisher back; under overload the broker drops QoS 0 messages
to it like to any slow reader, so the counts are then a sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

from midge.broker.connection import Connection
from midge.http.common import BROKER, KEYS, payload_out, request_key
from midge.http.routes_clients import client_json

log = logging.getLogger("midge.http")

MAX_CLIENT_EVENTS = 500
MAX_TOPICS = 1000
PAYLOAD_PREVIEW = 256
STREAM_BACKLOG = 64  # batches a stream may fall behind before it is ended (it reconnects)
RETRY_MILLISECONDS = 2000

Event = tuple[str, Any]


class _TopicCount:
    __slots__ = ("count", "payload", "retained")

    def __init__(self) -> None:
        self.count = 0
        self.payload = b""
        self.retained = False


class EventHub:
    def __init__(self, app: web.Application, interval: float) -> None:
        self.app = app
        self.interval = interval
        self._streams: set[asyncio.Queue[Event | None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._counter: asyncio.Task[None] | None = None
        self._known: dict[str, Connection] = {}
        self._topics: dict[str, _TopicCount] = {}
        self._topics_dropped = 0

    @property
    def streams(self) -> int:
        return len(self._streams)

    def open(self) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(STREAM_BACKLOG)
        self._streams.add(queue)
        if self._ticker is None:
            self._known = dict(self.app[BROKER].core.connections)
            self._topics = {}
            self._topics_dropped = 0
            self._ticker = asyncio.ensure_future(self._tick())
            self._counter = asyncio.ensure_future(self._count_topics())
        return queue

    def close(self, queue: asyncio.Queue[Event | None]) -> None:
        self._streams.discard(queue)
        if not self._streams:
            self._cancel()

    def _cancel(self) -> None:
        for task in (self._ticker, self._counter):
            if task is not None:
                task.cancel()
        self._ticker = self._counter = None
        self._known = {}
        self._topics = {}

    async def stop(self) -> None:
        """The service stops: every stream ends."""
        for queue in list(self._streams):
            _end(queue)
        tasks = [task for task in (self._ticker, self._counter) if task is not None]
        self._cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------ producing

    async def _tick(self) -> None:
        from midge.http.routes_system import overview  # noqa: PLC0415 - routes import this module

        while True:
            try:
                events: list[Event] = [("overview", overview(self.app))]
                events.extend(self._client_events())
                topics = self._take_topics()
                if topics:
                    events.append(("topics", topics))
                self._send(events)
            except Exception:
                log.exception("internal error in the HTTP API's events stream")
            await asyncio.sleep(self.interval)

    def _send(self, events: list[Event]) -> None:
        for queue in list(self._streams):
            if queue.qsize() + len(events) > STREAM_BACKLOG:
                _end(queue)  # a reader this far behind starts again (EventSource reconnects)
                self._streams.discard(queue)
                continue
            for event in events:
                queue.put_nowait(event)

    def _client_events(self) -> list[Event]:
        core = self.app[BROKER].core
        current = core.connections
        known = self._known
        gone = [client_id for client_id, old in known.items() if current.get(client_id) is not old]
        new = [
            connection
            for client_id, connection in current.items()
            if known.get(client_id) is not connection
        ]
        self._known = dict(current)
        if len(gone) + len(new) > MAX_CLIENT_EVENTS:
            return [("client", {"event": "many", "connected": len(new), "disconnected": len(gone)})]
        events: list[Event] = [
            ("client", {"event": "disconnected", "client_id": client_id}) for client_id in gone
        ]
        events.extend(
            ("client", {"event": "connected", "client": client_json(core.client_info(connection))})
            for connection in new
        )
        return events

    def _take_topics(self) -> dict[str, Any]:
        topics, self._topics = self._topics, {}
        batch: dict[str, Any] = {}
        for topic, entry in topics.items():
            data: dict[str, Any] = {"count": entry.count, "retained": entry.retained}
            data.update(payload_out(entry.payload, "auto", PAYLOAD_PREVIEW))
            batch[topic] = data
        if self._topics_dropped:
            batch["$dropped"] = {"count": self._topics_dropped}
            self._topics_dropped = 0
        return batch

    async def _count_topics(self) -> None:
        broker = self.app[BROKER]
        subscription = broker.subscribe("#", qos=0, retain_as_published=True, retain_handling=2)
        try:
            async with subscription as messages:
                async for message in messages:
                    topics = self._topics
                    entry = topics.get(message.topic)
                    if entry is None:
                        if len(topics) >= MAX_TOPICS:
                            self._topics_dropped += 1
                            continue
                        entry = topics[message.topic] = _TopicCount()
                    entry.count += 1
                    entry.payload = bytes(message.payload[: PAYLOAD_PREVIEW + 1])
                    entry.retained = message.retain
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker stopping, say: the ticker goes on
            log.info("HTTP API events: the topic counter ended: %s", exc)


def _end(queue: asyncio.Queue[Event | None]) -> None:
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)


# ------------------------------------------------------------------ the route

EVENTS_HUB = web.AppKey("midge_events_hub", EventHub)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/events", events)


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[EVENTS_HUB]
    key = request_key(request)
    keys = request.app[KEYS]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    queue = hub.open()
    try:
        await response.write(f"retry: {RETRY_MILLISECONDS}\n\n".encode())
        while True:
            event = await queue.get()
            if event is None or (key is not None and not keys.current(key)):
                break
            name, data = event
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            await response.write(f"event: {name}\ndata: {text}\n\n".encode())
    except ConnectionResetError:
        pass  # the reader went away
    finally:
        hub.close(queue)
    return response
