"""GET /api/v1/events: Server-Sent Events of overview, clients and topics, and
nothing running for them while no stream is open."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from http_support import WAIT, Api, running_api

from midge.client import Client


async def read_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    name, data = "message", ""
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\n")
        if not line:
            if data:
                yield name, json.loads(data)
            name, data = "message", ""
        elif line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data += line[len("data: ") :]


async def next_event(events: AsyncIterator[tuple[str, Any]], wanted: str, test=None) -> Any:
    async def find() -> Any:
        async for name, data in events:
            if name == wanted and (test is None or test(data)):
                return data
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(find(), WAIT)


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("midge.http.service.EVENTS_INTERVAL", 0.1)
    async with running_api(tmp_path) as running:
        yield running


def in_process(api: Api) -> set[str]:
    return {item.client_id for item in api.broker.clients() if item.listener == "in-process"}


async def test_events_stream_overview_clients_and_topics(api: Api) -> None:
    assert in_process(api) == set()  # nothing counts topics while no stream is open
    url = f"{api.base}/api/v1/events"
    async with api.session.get(url, params={"key": api.reader}) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        events = read_events(response)
        overview = await next_event(events, "overview")
        assert {"connections", "sessions", "messages", "store"} <= set(overview)
        async with Client("127.0.0.1", api.mqtt_port, client_id="watched") as client:
            connected = await next_event(
                events, "client", lambda data: data.get("client", {}).get("client_id") == "watched"
            )
            assert connected["event"] == "connected"
            for _ in range(3):
                await client.publish("ev/a", b"\xff\xfe binary", qos=1)
            await client.publish("ev/b", "text " * 100, qos=0, retain=True)
            topics = await next_event(events, "topics", lambda data: "ev/b" in data)
            if "ev/a" not in topics:
                topics.update(await next_event(events, "topics", lambda data: "ev/a" in data))
        gone = await next_event(events, "client", lambda data: data.get("client_id") == "watched")
        assert gone == {"event": "disconnected", "client_id": "watched"}
    assert topics["ev/b"]["payload_encoding"] == "plain"
    assert topics["ev/b"]["retained"] is True and topics["ev/b"]["truncated"] is True
    assert len(topics["ev/b"]["payload"]) == 256
    assert topics["ev/a"]["payload_encoding"] == "base64"
    for _ in range(50):  # the stream is gone: its counting subscription goes too
        if not in_process(api):
            break
        await asyncio.sleep(0.05)
    assert in_process(api) == set()


async def test_events_need_a_key(api: Api) -> None:
    assert (await api.get("/api/v1/events", key=None))[0] == 401
    status, _ = await api.get("/api/v1/events", key=None, params={"key": "mk_000000000000_x"})
    assert status == 401
    # ?key= is for the events stream only
    assert (await api.get("/api/v1/clients", key=None, params={"key": api.reader}))[0] == 401


async def test_two_streams_share_one_counter(api: Api) -> None:
    url = f"{api.base}/api/v1/events"
    headers = api.headers(api.reader)
    async with (
        api.session.get(url, headers=headers) as one,
        api.session.get(url, headers=headers) as two,
    ):
        first, second = read_events(one), read_events(two)
        await next_event(first, "overview")
        await next_event(second, "overview")
        assert len(in_process(api)) == 1
        await api.broker.publish("shared/t", b"x")
        await next_event(first, "topics", lambda data: "shared/t" in data)
        await next_event(second, "topics", lambda data: "shared/t" in data)


async def test_stopping_the_broker_ends_open_streams_at_once(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        response = await api.session.get(
            f"{api.base}/api/v1/events", headers=api.headers(api.reader)
        )
        events = read_events(response)
        await next_event(events, "overview")
        started = asyncio.get_running_loop().time()
        await api.broker.stop()
        assert asyncio.get_running_loop().time() - started < 1.5
        async for _ in events:  # the stream ends (what was queued may still come)
            pass
        response.release()
