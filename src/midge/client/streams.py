"""Received messages, buffered until the application reads them.

Every message goes to each open filtered stream whose filter matches its
topic; a message no filtered stream takes goes to the client's inbox, the
stream `Client.messages()` returns. The inbox exists from the start, so
retained messages that arrive together with a SUBACK, or queued messages
that arrive with CONNACK, wait for the first `async for` instead of being
lost. Buffers are unbounded: a client that subscribes must read.

A stream ends after its buffered messages: with StopAsyncIteration after a
clean `disconnect()`, or with the error that ended the client (for example
`ConnectionLost` when the connection dropped and reconnect is off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from midge.client.errors import ClientError, ConnectionLost
from midge.client.events import Message
from midge.protocol.topics import is_valid_topic_filter, topic_matches


class _End:
    """Queued after the last message; re-queued by whoever takes it, so every
    reader of a shared stream sees the end."""

    __slots__ = ("error",)

    def __init__(self, error: ClientError | None) -> None:
        self.error = error


class MessageStream:
    """An async iterator of `Message`; `topic_filter` None means the inbox."""

    def __init__(
        self, topic_filter: str | None, on_close: Callable[[MessageStream], None] | None = None
    ) -> None:
        if topic_filter is not None and not is_valid_topic_filter(topic_filter):
            raise ValueError(f"invalid topic filter {topic_filter!r}")
        self.topic_filter = topic_filter
        self._on_close = on_close
        self._queue: asyncio.Queue[Message | _End] = asyncio.Queue()
        self._ended = False

    def matches(self, topic: str) -> bool:
        return self.topic_filter is None or topic_matches(self.topic_filter, topic)

    def push(self, message: Message) -> None:
        if not self._ended:
            self._queue.put_nowait(message)

    def finish(self, error: ClientError | None) -> None:
        """No more messages will come; readers get `error` (or the end) after the buffer."""
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_End(error))

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> Message:
        item = await self._queue.get()
        if isinstance(item, Message):
            return item
        self._queue.put_nowait(item)
        if item.error is not None:
            # A fresh exception per reader: one instance raised in several tasks
            # would collect their tracebacks.
            code = item.error.reason_code if isinstance(item.error, ConnectionLost) else None
            raise ConnectionLost(str(item.error), code) from item.error
        raise StopAsyncIteration

    async def get(self, timeout: float | None = None) -> Message:
        """The next message; StopAsyncIteration at the end, TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    def close(self) -> None:
        """Stop receiving into this stream (filtered streams unregister from the client)."""
        if self._on_close is not None:
            self._on_close(self)
            self._on_close = None
        self.finish(None)

    async def __aenter__(self) -> MessageStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
