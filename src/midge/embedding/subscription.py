"""An in-process subscription: one in-process client, one filter, its messages."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from midge.client.client import Client
from midge.client.events import Message
from midge.client.streams import MessageStream


class Subscription:
    """`async with broker.subscribe("a/#") as messages:` then `async for message
    in messages` or `await messages.get(timeout)`. Leaving the context
    unsubscribes (the client disconnects, and its session ends)."""

    def __init__(
        self, client: Client, topic_filter: str, qos: int, options: dict[str, Any]
    ) -> None:
        self.client = client
        self.topic_filter = topic_filter
        self.qos = qos
        self._options = options
        self._stream: MessageStream | None = None

    async def __aenter__(self) -> Subscription:
        await self.client.connect()
        try:
            self._stream = self.client.messages()  # the inbox: everything it receives
            await self.client.subscribe(self.topic_filter, self.qos, **self._options)
        except BaseException:
            await self.client.disconnect()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.client.disconnect()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        return await self._messages().__anext__()

    async def get(self, timeout: float | None = None) -> Message:
        """The next message; TimeoutError after `timeout` seconds."""
        return await self._messages().get(timeout)

    def _messages(self) -> MessageStream:
        if self._stream is None:
            raise RuntimeError("use `async with broker.subscribe(...) as messages:` first")
        return self._stream
