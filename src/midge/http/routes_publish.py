"""POST /api/v1/publish and /api/v1/publish/bulk: MQTT messages from HTTP.

Answers as EMQX's API does: 200 `{"id"}` when at least one subscriber got
the message, 202 `{"id", "message": "no subscriber matched"}` when none did,
403 when the ACL refuses the key's user name, 503 while the store cannot
commit (or the PUBACK does not come within the publish timeout: the message
may then still go out), 400 naming the bad field. A QoS 1/2 message is
answered once its PUBACK came: stored (with a durable store) and routed. A
QoS 0 message has no acknowledgement, so its 202 and 403 are decided from
the subscription table and the ACL as it is sent (and a QoS 2 message's 202
from the table too: the client reports PUBCOMP's code, and 0x10 is PUBREC's).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from midge.broker.limits import beyond_topic_limits
from midge.client import Client, ClientError, PacketTooLarge, Properties, PublishError
from midge.http.apikeys import ApiKey
from midge.http.common import (
    BROKER,
    HEALTH,
    PUBLISHERS,
    SETTINGS,
    ApiError,
    b64decode_field,
    bad_input,
    json_response,
    read_json,
    request_key,
)
from midge.http.publisher import PublishRequest
from midge.protocol.reasons import NO_MATCHING_SUBSCRIBERS, ReasonCode
from midge.protocol.topics import is_valid_topic_name

log = logging.getLogger("midge.http")

MAX_BULK = 1000
MAX_STRING_BYTES = 65535  # an MQTT UTF-8 string
MAX_INTERVAL = 0xFFFF_FFFF
PUBLISH_OVERHEAD = 64  # bytes of a PUBLISH besides topic, payload and properties (generous)
FIELDS = frozenset({"topic", "payload", "payload_encoding", "qos", "retain", "properties"})
PROPERTIES = frozenset(
    {
        "user_properties",
        "content_type",
        "response_topic",
        "correlation_data",
        "message_expiry_interval",
        "payload_format_indicator",
    }
)
_REFUSED_BY_ACL = (ReasonCode.NOT_AUTHORIZED, ReasonCode.UNSPECIFIED_ERROR)

Outcome = tuple[int, dict[str, Any]]  # HTTP status, body


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/publish", publish)
    app.router.add_post("/api/v1/publish/bulk", publish_bulk)


async def publish(request: web.Request) -> web.Response:
    body = await read_json(request)
    message = parse_message(body, "", request.app)
    ((status, answer),) = await run(request.app, _key(request), [message])
    return json_response(answer, status)


async def publish_bulk(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, list):
        raise bad_input("body", "must be a JSON list of messages")
    if not 1 <= len(body) <= MAX_BULK:
        raise bad_input("body", f"must hold 1 to {MAX_BULK} messages, not {len(body)}")
    # All or nothing: a batch with one bad message publishes none.
    messages = [parse_message(item, f"[{index}].", request.app) for index, item in enumerate(body)]
    outcomes = await run(request.app, _key(request), messages)
    return json_response([{"status": status, **answer} for status, answer in outcomes])


def _key(request: web.Request) -> ApiKey:
    key = request_key(request)
    assert key is not None, "the auth middleware admits no write without a key"
    return key


# ------------------------------------------------------------------ input


def parse_message(item: Any, prefix: str, app: web.Application) -> PublishRequest:
    """One message of a request body, checked; ApiError naming `prefix` + field."""
    if not isinstance(item, dict):
        raise bad_input(prefix.rstrip(".") or "body", "must be a JSON object")
    for name in item:
        if name not in FIELDS:
            raise bad_input(
                f"{prefix}{name}", f"unknown field (known: {', '.join(sorted(FIELDS))})"
            )
    config = app[BROKER].config
    topic = _topic(item.get("topic"), f"{prefix}topic")
    if beyond_topic_limits(config, topic):
        raise bad_input(f"{prefix}topic", "beyond max_topic_length / max_topic_levels")
    qos = item.get("qos", 0)
    if type(qos) is not int or qos not in (0, 1, 2):
        raise bad_input(f"{prefix}qos", f"must be 0, 1 or 2, not {qos!r}")
    retain = item.get("retain", False)
    if type(retain) is not bool:
        raise bad_input(f"{prefix}retain", f"must be true or false, not {retain!r}")
    payload = _payload(item, prefix)
    properties = _properties(item.get("properties"), f"{prefix}properties")
    if (
        properties is not None
        and properties.payload_format_indicator == 1
        and config.validate_utf8_payloads
    ):
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_input(
                f"{prefix}payload", "is not UTF-8, but payload_format_indicator says it is"
            ) from None
    size = len(payload) + len(topic.encode("utf-8")) + PUBLISH_OVERHEAD
    if properties is not None:
        size += _properties_size(properties)
    if size > config.max_packet_size:
        raise ApiError(
            413,
            "payload_too_large",
            f"{prefix}payload: the message would be larger than max_packet_size "
            f"({config.max_packet_size} bytes)",
            f"{prefix}payload",
        )
    return PublishRequest(topic, payload, qos, retain, properties)


def _topic(value: Any, field: str) -> str:
    if value is None:
        raise bad_input(field, "required")
    _string(value, field)
    if not value:
        raise bad_input(field, "must not be empty")
    if not is_valid_topic_name(value):
        raise bad_input(field, "not a valid topic name (no + or # wildcards, no U+0000)")
    return str(value)


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise bad_input(field, f"must be a string, not {_json_type(value)}")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_input(field, "is not valid Unicode (a lone surrogate)") from None
    if "\x00" in value:
        raise bad_input(field, "must not contain U+0000")
    if len(encoded) > MAX_STRING_BYTES:
        raise bad_input(field, f"longer than {MAX_STRING_BYTES} bytes in UTF-8")
    return value


def _payload(item: Mapping[str, Any], prefix: str) -> bytes:
    encoding = item.get("payload_encoding", "plain")
    if encoding not in ("plain", "base64"):
        raise bad_input(f"{prefix}payload_encoding", f"must be plain or base64, not {encoding!r}")
    value = item.get("payload", "")
    field = f"{prefix}payload"
    if encoding == "base64":
        return b64decode_field(value, field)
    if not isinstance(value, str):
        raise bad_input(
            field, f"must be a string, not {_json_type(value)} (JSON-encode an object first)"
        )
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_input(field, "is not valid Unicode (a lone surrogate)") from None


def _properties(value: Any, field: str) -> Properties | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_input(field, f"must be a JSON object, not {_json_type(value)}")
    for name in value:
        if name not in PROPERTIES:
            known = ", ".join(sorted(PROPERTIES))
            raise bad_input(f"{field}.{name}", f"unknown property (known: {known})")
    settings: dict[str, Any] = {}
    if "user_properties" in value:
        settings["user_properties"] = _user_properties(
            value["user_properties"], f"{field}.user_properties"
        )
    for name in ("content_type", "response_topic"):
        if name in value:
            settings[name] = _string(value[name], f"{field}.{name}")
    if "response_topic" in value and not is_valid_topic_name(settings["response_topic"]):
        raise bad_input(f"{field}.response_topic", "not a valid topic name (no wildcards)")
    if "correlation_data" in value:
        data = b64decode_field(value["correlation_data"], f"{field}.correlation_data")
        if len(data) > MAX_STRING_BYTES:
            raise bad_input(f"{field}.correlation_data", f"longer than {MAX_STRING_BYTES} bytes")
        settings["correlation_data"] = data
    if "message_expiry_interval" in value:
        interval = value["message_expiry_interval"]
        if type(interval) is not int or not 0 <= interval <= MAX_INTERVAL:
            raise bad_input(
                f"{field}.message_expiry_interval", f"must be an integer 0..{MAX_INTERVAL}"
            )
        settings["message_expiry_interval"] = interval
    if "payload_format_indicator" in value:
        indicator = value["payload_format_indicator"]
        if type(indicator) is not int or indicator not in (0, 1):
            raise bad_input(f"{field}.payload_format_indicator", "must be 0 or 1")
        settings["payload_format_indicator"] = indicator
    return Properties(**settings) if settings else None


def _user_properties(value: Any, field: str) -> tuple[tuple[str, str], ...]:
    """[[name, value], ...] (order and repeats kept) or {name: value}."""
    if isinstance(value, dict):
        pairs: Sequence[Any] = [[name, item] for name, item in value.items()]
    elif isinstance(value, list):
        pairs = value
    else:
        raise bad_input(field, "must be a list of [name, value] pairs or an object")
    result = []
    for index, pair in enumerate(pairs):
        where = f"{field}[{index}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise bad_input(where, "must be a [name, value] pair of strings")
        result.append((_string(pair[0], where), _string(pair[1], where)))
    return tuple(result)


def _properties_size(properties: Properties) -> int:
    size = sum(len(k.encode()) + len(v.encode()) + 5 for k, v in properties.user_properties)
    for text in (properties.content_type, properties.response_topic):
        if text is not None:
            size += len(text.encode()) + 3
    if properties.correlation_data is not None:
        size += len(properties.correlation_data) + 3
    return size + 12


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# ------------------------------------------------------------------ sending


async def run(app: web.Application, key: ApiKey, messages: list[PublishRequest]) -> list[Outcome]:
    """Publish in order through the key's client; one outcome per message."""
    if not app[HEALTH].check():
        return [_unavailable("store_unavailable", "the store is not committing")] * len(messages)
    publishers = app[PUBLISHERS]
    try:
        client = await publishers.client_for(key)
    except ClientError as exc:
        log.warning("HTTP API: the publisher of key %r cannot connect: %s", key.name, exc)
        return [_unavailable("publisher_unavailable", str(exc))] * len(messages)
    ids = [uuid.uuid4().hex for _ in messages]
    outcomes: list[Outcome | None] = [None] * len(messages)
    tasks: dict[int, asyncio.Task[int]] = {}
    matched: dict[int, bool] = {}
    for index, message in enumerate(messages):
        if message.qos == 0:
            refusal = _qos0_refusal(app, client, message)
            if refusal is not None:
                outcomes[index] = refusal
                continue
        if message.qos != 1:
            # QoS 0 has no acknowledgement, and the client reports a QoS 2
            # flow's PUBCOMP code, not PUBREC's 0x10: ask the table now.
            matched[index] = _has_subscribers(app, message.topic)
        # Created in order and started in order: the client sends them in order.
        tasks[index] = asyncio.ensure_future(
            client.publish(
                message.topic,
                message.payload,
                message.qos,
                message.retain,
                properties=message.properties,
            )
        )
    if tasks:
        await asyncio.wait(tasks.values(), timeout=app[SETTINGS].publish_timeout)
    for index, task in tasks.items():
        if not task.done():
            publishers.track(task)
            outcomes[index] = _unavailable(
                "timeout",
                f"not acknowledged within {app[SETTINGS].publish_timeout:g} s: the store is not "
                "committing, or subscribers that fell behind hold publishers back; the message "
                "may still be delivered",
            )
            continue
        outcomes[index] = _outcome(task, ids[index], matched.get(index, True))
    for index, message in enumerate(messages):
        log.debug(
            "HTTP API: key %r published to %r (QoS %d): %d",
            key.name,
            message.topic,
            message.qos,
            (outcomes[index] or (0, {}))[0],
        )
    return [outcome if outcome is not None else (500, {}) for outcome in outcomes]


def _qos0_refusal(app: web.Application, client: Client, message: PublishRequest) -> Outcome | None:
    """What the broker would refuse silently at QoS 0 ($SYS, the ACL), answered 403."""
    if message.topic.startswith("$SYS/"):
        return _forbidden("$SYS topics belong to the broker")
    core = app[BROKER].core
    authorizer = core.authorizer
    connection = core.connections.get(client.client_id)
    if (
        authorizer is not None
        and connection is not None
        and not authorizer.can_publish(connection, message.topic)
    ):
        return _forbidden("not authorized: the ACL does not let this key publish here")
    return None


def _has_subscribers(app: web.Application, topic: str) -> bool:
    core = app[BROKER].core
    if core.subscriptions.match(topic):
        return True
    shared = core.delivery.shared
    return bool(shared.groups and shared.match(topic))


def _outcome(task: asyncio.Task[int], message_id: str, matched: bool) -> Outcome:
    exc = task.exception()
    if exc is None:
        code = task.result()
        if code == NO_MATCHING_SUBSCRIBERS or not matched:
            return 202, {"id": message_id, "message": "no subscriber matched"}
        return 200, {"id": message_id}
    if isinstance(exc, PublishError):
        code = exc.reason_code
        if code in _REFUSED_BY_ACL:
            return _forbidden("not authorized: the ACL does not let this key publish here")
        if code == ReasonCode.PAYLOAD_FORMAT_INVALID:
            return 400, ApiError(400, "invalid_field", "payload: not UTF-8", "payload").body()
        if code == ReasonCode.TOPIC_NAME_INVALID:
            return 400, ApiError(400, "invalid_field", "topic: refused", "topic").body()
        return _unavailable("refused", f"the broker refused the message: reason 0x{code:02X}")
    if isinstance(exc, PacketTooLarge):
        return 413, ApiError(413, "payload_too_large", str(exc), "payload").body()
    if isinstance(exc, ClientError):
        return _unavailable("publisher_unavailable", str(exc))
    raise exc  # a bug: the middleware answers 500 and logs it


def _forbidden(message: str) -> Outcome:
    return 403, ApiError(403, "not_authorized", message).body()


def _unavailable(code: str, message: str) -> Outcome:
    return 503, ApiError(503, code, message).body()
