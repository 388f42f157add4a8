"""The HTTP API's publishers: one in-process MQTT 5.0 client per API key.

Each is `midge.Broker.client(trusted=False, username=KEY NAME)`: no socket
and no password (the API key was the login), but the ACL applies to the
key's name exactly as to a network client of that user name, and so do
the topic rules, hooks, backpressure and durability: a QoS 1 publish is
answered once its PUBACK came, that is once it is stored and routed. A
client is made on first use, reused, and made again when its connection was
lost (a `DELETE /api/v1/clients/...` of it, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from midge.client import Client, ClientError, Properties
from midge.embedding.broker import Broker
from midge.http.apikeys import ApiKey

log = logging.getLogger("midge.http")

CLIENT_ID_PREFIX = "midgeapi"  # + the key's 12 hex digits: valid under strict_client_id


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """One checked message to publish (routes_publish.py builds it from JSON)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None


class Publishers:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._clients: dict[str, Client] = {}  # key id -> its client
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[int]] = set()  # publishes answered 503, still going
        self._closing: set[asyncio.Task[None]] = set()  # clients of deleted keys, leaving

    async def client_for(self, key: ApiKey) -> Client:
        """The key's connected client; raises ClientError when it cannot connect."""
        client = self._clients.get(key.key_id)
        if client is not None and client.connected:
            return client
        async with self._lock:
            client = self._clients.get(key.key_id)
            if client is None or not client.connected:
                client = self.broker.client(
                    f"{CLIENT_ID_PREFIX}{key.key_id}",
                    trusted=False,
                    username=key.name,
                    max_inflight=0,  # no limit: the broker's own flow control applies
                )
                await client.connect()
                self._clients[key.key_id] = client
            return client

    def track(self, task: asyncio.Task[int]) -> None:
        """A publish whose answer timed out goes on; its end is only noted."""
        self._pending.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[int]) -> None:
        self._pending.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.info("HTTP API publish answered 503 ended with: %s", exc)

    def forget_except(self, key_ids: set[str]) -> None:
        """After a reload: the clients of keys no longer in force go."""
        for key_id in list(self._clients):
            if key_id not in key_ids:
                client = self._clients.pop(key_id)
                task = asyncio.ensure_future(_quietly_disconnect(client))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await _quietly_disconnect(client)


async def _quietly_disconnect(client: Client) -> None:
    with contextlib.suppress(ClientError, OSError, RuntimeError):
        await client.disconnect()
