"""MQTT 5.0 request / response (section 4.10): matching answers to questions.

A request is a PUBLISH with a Response Topic and Correlation Data; the
responder publishes its answer to that topic with the same Correlation Data.
`Responses` holds the futures of the requests still waiting, keyed by their
correlation data, and takes the answers out of the message flow before any
stream sees them. One response topic serves every request of a client: it
is subscribed once, on the first request.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from midge.client.events import Message
from midge.protocol.packets import PROTOCOL_MQTT_5
from midge.protocol.properties import Properties

if TYPE_CHECKING:
    from midge.client.protocol import ClientProtocol


class Responses:
    """Requests awaiting their answer, by correlation data."""

    def __init__(self) -> None:
        self.topic: str | None = None  # subscribed on the first request
        self.lock = asyncio.Lock()  # one first request subscribes, the others wait for it
        self._waiting: dict[bytes, asyncio.Future[Message]] = {}

    @staticmethod
    def topic_for(response_information: str | None) -> str:
        """A topic only this client listens on; under the broker's Response
        Information when it gave one (brokers may allow only that subtree)."""
        prefix = (response_information or "midge/responses").rstrip("/")
        return f"{prefix}/{secrets.token_hex(8)}"

    def expect(self) -> tuple[bytes, asyncio.Future[Message]]:
        """New correlation data and the future its answer resolves."""
        correlation = secrets.token_bytes(16)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        return correlation, future

    def forget(self, correlation: bytes) -> None:
        self._waiting.pop(correlation, None)

    def take(self, message: Message) -> bool:
        """Whether `message` came to the response topic; if it answers a waiting
        request, that request gets it. A late answer to a request that timed
        out is dropped: the topic is this client's, nobody else wants it."""
        if message.topic != self.topic:
            return False
        props = message.properties
        correlation = None if props is None else props.correlation_data
        future = None if correlation is None else self._waiting.pop(correlation, None)
        if future is not None and not future.done():
            future.set_result(message)
        return True

    def fail(self, error: BaseException) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(error)


class _Client(Protocol):
    """What `RequestResponse` needs of the `Client` it is mixed into."""

    _responses: Responses

    @property
    def protocol(self) -> ClientProtocol: ...

    @property
    def connack_properties(self) -> Properties | None: ...

    async def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> int: ...

    async def subscribe(self, topic: str, qos: int = 0) -> list[int]: ...


class RequestResponse:
    """`Client.request` and `Client.reply` (a mixin: see `Client`)."""

    async def request(
        self: _Client,
        topic: str,
        payload: bytes | str = b"",
        *,
        timeout: float = 10.0,
        qos: int = 1,
        properties: Properties | None = None,
    ) -> Message:
        """MQTT 5.0 request / response: publish with a Response Topic and
        Correlation Data, and return the message that answers it.

        The response topic is this client's own (subscribed on the first
        request, under the broker's Response Information if it sent one).
        Raises TimeoutError when no answer came within `timeout` seconds.
        """
        if self.protocol.options.protocol_version != PROTOCOL_MQTT_5:
            raise ValueError("request/response needs MQTT 5.0 (protocol_version=5)")
        async with asyncio.timeout(timeout):
            response_topic = await _response_topic(self)
            correlation, answer = self._responses.expect()
            try:
                asked = replace(
                    properties or Properties(),
                    response_topic=response_topic,
                    correlation_data=correlation,
                )
                await self.publish(topic, payload, qos, properties=asked)
                return await answer
            finally:
                self._responses.forget(correlation)

    async def reply(
        self: _Client,
        request: Message,
        payload: bytes | str = b"",
        qos: int = 1,
        *,
        properties: Properties | None = None,
    ) -> int:
        """Answer a request: publish to its Response Topic with its Correlation Data."""
        asked = request.properties
        if asked is None or not asked.response_topic:
            raise ValueError(f"the message on {request.topic!r} has no response topic")
        answer = replace(properties or Properties(), correlation_data=asked.correlation_data)
        return await self.publish(asked.response_topic, payload, qos, properties=answer)


async def _response_topic(client: _Client) -> str:
    async with client._responses.lock:
        if client._responses.topic is None:
            info = (
                None
                if client.connack_properties is None
                else client.connack_properties.response_information
            )
            topic = Responses.topic_for(info)
            await client.subscribe(topic, 1)
            client._responses.topic = topic
        return client._responses.topic
