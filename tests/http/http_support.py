"""Helpers for the HTTP API tests: a broker with an HTTP listener and keys, a client.

`running_api(tmp_path, ...)` starts a `midge.Broker` in the test's loop with
an MQTT listener and an HTTP listener on ephemeral loopback ports and a key
file holding one admin and one read key; `Api` calls it with aiohttp's
client and returns (status, JSON) pairs. `serve_with_api(...)` does the same
with a real `midge serve` process, for the tests that need one (curl,
mosquitto_sub, SIGHUP).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

import midge
from brokers import RunningMidge, start_midge_with_log
from midge.broker.config import BrokerConfig, ListenerConfig
from midge.http.apikeys import new_key

WAIT = 5.0
HTTP_LINE = re.compile(r"listening on (\S+):(\d+) \((https?)\)")


def write_keys(path: Path) -> tuple[str, str]:
    """A key file with an admin key `ops` and a read key `viewer`; returns both keys."""
    admin, admin_entry = new_key("ops", "admin")
    reader, reader_entry = new_key("viewer", "read")
    path.write_text(f"# test keys\n{admin_entry.line()}\n{reader_entry.line()}\n")
    return admin, reader


@dataclass
class Api:
    broker: midge.Broker
    base: str
    admin: str
    reader: str
    session: aiohttp.ClientSession

    @property
    def mqtt_port(self) -> int:
        return next(item.port for item in self.broker.listeners if item.transport == "tcp")

    def headers(self, key: str | None) -> dict[str, str]:
        return {} if key is None else {"Authorization": f"Bearer {key}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | bool | None = True,
        json_body: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON or None). `key` True: the admin key; None: no key."""
        chosen = self.admin if key is True else (None if key is False else key)
        all_headers = {**self.headers(chosen), **(headers or {})}
        async with self.session.request(
            method,
            self.base + path,
            json=json_body,
            data=data,
            headers=all_headers,
            params=params,
            timeout=aiohttp.ClientTimeout(total=WAIT * 3),
        ) as response:
            raw = await response.read()
            if not raw:
                return response.status, None
            if response.content_type == "application/json":
                return response.status, json.loads(raw)
            return response.status, raw.decode("utf-8", "replace")

    async def get(self, path: str, **options: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **options)

    async def post(self, path: str, body: Any = None, **options: Any) -> tuple[int, Any]:
        return await self.call("POST", path, json_body=body, **options)

    async def delete(self, path: str, **options: Any) -> tuple[int, Any]:
        return await self.call("DELETE", path, **options)


def http_config(tmp_path: Path, **settings: Any) -> BrokerConfig:
    """A memory-store config with MQTT and HTTP listeners on port 0 and a key file."""
    listeners = settings.pop(
        "listeners",
        (ListenerConfig(port=0, allow_anonymous=True), ListenerConfig(port=0, transport="http")),
    )
    settings.setdefault("store", "memory")
    return BrokerConfig(
        port=0, listeners=listeners, api_key_file=str(tmp_path / "keys"), **settings
    ).validate()


@contextlib.asynccontextmanager
async def running_api(tmp_path: Path, hooks: Any = (), **settings: Any) -> AsyncIterator[Api]:
    admin, reader = write_keys(tmp_path / "keys")
    config = http_config(tmp_path, **settings)
    async with midge.Broker(config, hooks=hooks) as broker:
        http = next(item for item in broker.listeners if item.transport in ("http", "https"))
        scheme = http.transport
        async with aiohttp.ClientSession() as session:
            yield Api(broker, f"{scheme}://127.0.0.1:{http.port}", admin, reader, session)


@dataclass
class ServedApi:
    running: RunningMidge
    http_port: int
    admin: str
    reader: str
    keys: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@contextlib.contextmanager
def serve_with_api(tmp_path: Path, extra_toml: str = "") -> Iterator[ServedApi]:
    """`midge serve` with a TCP listener and an HTTP listener, both on port 0."""
    keys = tmp_path / "keys"
    admin, reader = write_keys(keys)
    config = (
        f'api_key_file = "{keys}"\n{extra_toml}\n'
        "[[listeners]]\nport = 0\nallow_anonymous = true\n\n"
        '[[listeners]]\nport = 0\ntransport = "http"\n'
    )
    with start_midge_with_log(config) as running:
        (line,) = running.log.wait_for(HTTP_LINE)
        match = HTTP_LINE.search(line)
        assert match is not None
        yield ServedApi(running, int(match.group(2)), admin, reader, keys)
