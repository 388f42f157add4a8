"""Retained messages: list by topic filter, get one, delete one.

A topic may hold `/` (and start with it): `/api/v1/retained/{topic}` takes
the rest of the path, percent-decoded, as the topic. Deleting publishes an
empty retained message as the broker's own trusted client, the MQTT way
(as `mosquitto_pub -r -n` does): it is stored before the answer, and current
subscribers of the topic get the empty message, as MQTT defines.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from midge.client.events import Message
from midge.http.common import (
    BROKER,
    ApiError,
    bad_input,
    json_response,
    page,
    page_limit,
    payload_out,
)
from midge.protocol.topics import is_valid_topic_filter, is_valid_topic_name

PREVIEW_BYTES = 1024  # of each payload in a list; GET one gives it whole


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/retained", list_retained)
    app.router.add_get("/api/v1/retained/{topic:.+}", get_retained)
    app.router.add_delete("/api/v1/retained/{topic:.+}", delete_retained)


def message_json(message: Message, encoding: str, limit: int | None) -> dict[str, Any]:
    payload = bytes(message.payload)
    data: dict[str, Any] = {"topic": message.topic, "qos": message.qos, "size": len(payload)}
    data.update(payload_out(payload, encoding, limit))
    data["properties"] = properties_json(message)
    return data


def properties_json(message: Message) -> dict[str, Any]:
    properties = message.properties
    data: dict[str, Any] = {}
    if properties is None:
        return data
    if properties.user_properties:
        data["user_properties"] = [list(pair) for pair in properties.user_properties]
    for name in (
        "content_type",
        "response_topic",
        "message_expiry_interval",
        "payload_format_indicator",
    ):
        value = getattr(properties, name)
        if value is not None:
            data[name] = value
    if properties.correlation_data is not None:
        data["correlation_data"] = payload_out(properties.correlation_data, "base64")["payload"]
    return data


def _encoding(request: web.Request) -> str:
    encoding = request.query.get("payload_encoding", "auto")
    if encoding not in ("auto", "plain", "base64"):
        raise bad_input("payload_encoding", f"must be auto, plain or base64, not {encoding!r}")
    return encoding


async def list_retained(request: web.Request) -> web.Response:
    topic_filter = request.query.get("filter", "#")
    if not topic_filter or not is_valid_topic_filter(topic_filter):
        raise bad_input("filter", f"not a valid topic filter: {topic_filter!r}")
    limit = page_limit(request)
    after = request.query.get("after", "")
    encoding = _encoding(request)
    messages = request.app[BROKER].retained(topic_filter)
    rows = ((message.topic, message) for message in messages if message.topic > after)
    chosen, following = page(rows, limit)
    data = [message_json(message, encoding, PREVIEW_BYTES) for message in chosen]
    return json_response({"data": data, "next": following})


def _topic(request: web.Request) -> str:
    topic = request.match_info["topic"]
    if not is_valid_topic_name(topic):
        raise bad_input("topic", f"not a valid topic name: {topic!r}")
    return topic


def _retained(request: web.Request, topic: str) -> Message | None:
    """The topic's retained message (an expired one counts as none)."""
    for message in request.app[BROKER].retained(topic):
        if message.topic == topic:
            return message
    return None


async def get_retained(request: web.Request) -> web.Response:
    topic = _topic(request)
    message = _retained(request, topic)
    if message is None:
        raise ApiError(404, "not_found", f"no retained message on {topic!r}", "topic")
    return json_response(message_json(message, _encoding(request), None))


async def delete_retained(request: web.Request) -> web.Response:
    topic = _topic(request)
    if _retained(request, topic) is None:
        raise ApiError(404, "not_found", f"no retained message on {topic!r}", "topic")
    await request.app[BROKER].publish(topic, b"", qos=1, retain=True)
    return web.Response(status=204)
