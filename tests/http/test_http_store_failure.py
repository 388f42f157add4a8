"""503 while the store cannot commit: /healthz says so, publish answers 503
(after its PUBACK bound, then at once), and both recover when writes work again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from http_support import running_api

import midge.embedding.broker as embedding_broker
from midge.broker.config import BrokerConfig
from midge.store.base import Operation, Store, StoredState, StoreError


class FailingStore:
    """A real store whose apply() raises StoreError while `failing` is set
    (as a full disk would: the writer logs it and retries every second)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.description = f"failing {inner.description}"
        self.failing = threading.Event()

    def load(self) -> StoredState:
        return self.inner.load()

    def apply(self, operations: Sequence[Operation]) -> None:
        if self.failing.is_set():
            raise StoreError("test: disk full")
        self.inner.apply(operations)

    def close(self) -> None:
        self.inner.close()


async def wait_for_status(api, path: str, status: int, timeout: float = 5.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got, body = await api.get(path, key=None)
        if got == status or asyncio.get_running_loop().time() > deadline:
            assert got == status, body
            return body
        await asyncio.sleep(0.05)


async def test_publish_and_healthz_answer_503_while_the_store_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores: list[FailingStore] = []
    real_open_store = embedding_broker.open_store

    def open_failing_store(config: BrokerConfig) -> Store:
        store = FailingStore(real_open_store(config))
        stores.append(store)
        return store  # type: ignore[return-value]

    monkeypatch.setattr(embedding_broker, "open_store", open_failing_store)
    monkeypatch.setattr("midge.http.service.PUBLISH_TIMEOUT", 0.5)
    monkeypatch.setattr("midge.http.service.STORE_STALL_SECONDS", 0.3)
    monkeypatch.setattr("midge.http.service.HEALTH_CHECK_SECONDS", 0.05)
    async with running_api(tmp_path, store="sqlite", data_dir=str(tmp_path / "data")) as api:
        (store,) = stores
        message = {"topic": "kept/1", "payload": "v", "qos": 1, "retain": True}
        assert (await api.post("/api/v1/publish", message))[0] == 202
        store.failing.set()
        status, body = await api.post("/api/v1/publish", {**message, "payload": "w"})
        assert status == 503 and body["error"]["code"] == "timeout"
        health = await wait_for_status(api, "/healthz", 503)
        assert health["store"] == "not committing" and health["listening"] is True
        status, body = await api.post("/api/v1/publish", message)
        assert status == 503 and body["error"]["code"] == "store_unavailable"
        _, overview = await api.get("/api/v1/overview")
        assert overview["store"]["healthy"] is False
        _, metrics = await api.get("/metrics", key=None)
        assert "midge_store_healthy 0.0" in metrics
        store.failing.clear()  # the writer's next retry (within a second) commits
        assert (await wait_for_status(api, "/healthz", 200))["store"] == "ok"
        assert (await api.post("/api/v1/publish", {**message, "payload": "x"}))[0] == 202
        (retained,) = api.broker.retained("kept/1")
        assert retained.payload == b"x"
