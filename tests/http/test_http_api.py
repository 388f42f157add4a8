"""The HTTP API in the test's own loop: every endpoint with good and bad input,
API key roles, JSON errors, pagination, and publish answered as EMQX does."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from http_support import WAIT, Api, running_api

from midge.client import Client, ConnectionLost, Properties


@pytest.fixture
async def api(tmp_path: Path):
    async with running_api(tmp_path, http_max_body=4096) as running:
        yield running


# ---------------------------------------------------------------- system


async def test_healthz_needs_no_key(api: Api) -> None:
    assert await api.get("/healthz", key=None) == (
        200,
        {"status": "ok", "listening": True, "store": "ok"},
    )


async def test_version_and_overview(api: Api) -> None:
    status, version = await api.get("/api/v1/version", key=api.reader)
    assert status == 200
    assert version["version"] == "0.1.0" and version["build"] in ("compiled", "pure")
    assert version["mqtt"] == ["3.1", "3.1.1", "5.0"]
    async with Client("127.0.0.1", api.mqtt_port, client_id="ov1") as client:
        await client.subscribe("ov/#", qos=1)
        await client.publish("ov/1", b"x", qos=1, retain=True)
        await client.messages().get(WAIT)
        status, overview = await api.get("/api/v1/overview", key=api.reader)
    assert status == 200
    assert overview["connections"] >= 1
    assert overview["sessions"]["online"] >= 1
    assert overview["subscriptions"] >= 1
    assert overview["retained"] == 1  # the broker's own $SYS topics are not counted
    assert overview["messages"]["received"] >= 1 and overview["messages"]["sent"] >= 1
    assert overview["bytes"]["received"] > 0
    assert overview["store"]["healthy"] is True
    assert overview["uptime_seconds"] >= 0


async def test_unknown_endpoint_and_method_are_json(api: Api) -> None:
    status, body = await api.get("/api/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await api.call("PUT", "/api/v1/publish")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic b3BzOnB3"},
        {"Authorization": "Bearer mk_0123456789ab_nope"},
        {"Authorization": "Bearer not-a-key"},
    ],
)
async def test_a_missing_or_bad_key_gets_401(api: Api, headers: dict[str, str]) -> None:
    status, body = await api.get("/api/v1/clients", key=None, headers=headers)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"


async def test_a_tampered_key_gets_401(api: Api) -> None:
    tampered = api.admin[:-1] + ("A" if api.admin[-1] != "A" else "B")
    assert (await api.get("/api/v1/version", key=tampered))[0] == 401


async def test_a_read_key_may_read_but_not_write(api: Api) -> None:
    assert (await api.get("/api/v1/clients", key=api.reader))[0] == 200
    status, body = await api.post("/api/v1/publish", {"topic": "t"}, key=api.reader)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _ = await api.delete("/api/v1/clients/x", key=api.reader)
    assert status == 403


async def test_metrics_need_no_key_by_default(api: Api) -> None:
    status, text = await api.get("/metrics", key=None)
    assert status == 200 and "midge_clients_connected" in text


# ---------------------------------------------------------------- publish


async def test_publish_qos1_reaches_a_subscriber_and_says_200(api: Api) -> None:
    async with Client("127.0.0.1", api.mqtt_port, client_id="sub1", protocol_version=5) as sub:
        await sub.subscribe("pub/#", qos=1)
        status, body = await api.post(
            "/api/v1/publish",
            {
                "topic": "pub/a",
                "payload": "héllo",
                "qos": 1,
                "retain": False,
                "properties": {
                    "user_properties": [["k", "v"], ["k", "w"]],
                    "content_type": "text/plain",
                    "response_topic": "reply/here",
                    "correlation_data": base64.b64encode(b"\x00\x01").decode(),
                    "message_expiry_interval": 60,
                    "payload_format_indicator": 1,
                },
            },
        )
        assert status == 200 and len(body["id"]) == 32
        message = await sub.messages().get(WAIT)
    assert (message.topic, message.payload, message.qos) == ("pub/a", "héllo".encode(), 1)
    properties = message.properties
    assert properties is not None
    assert properties.user_properties == (("k", "v"), ("k", "w"))
    assert properties.content_type == "text/plain"
    assert properties.response_topic == "reply/here"
    assert properties.correlation_data == b"\x00\x01"
    assert properties.payload_format_indicator == 1
    assert 0 < (properties.message_expiry_interval or 0) <= 60


async def test_publish_base64_and_user_properties_as_object(api: Api) -> None:
    async with api.broker.subscribe("bin/#") as messages:
        status, _ = await api.post(
            "/api/v1/publish",
            {
                "topic": "bin/1",
                "payload": base64.b64encode(b"\xff\x00\xfe").decode(),
                "payload_encoding": "base64",
                "qos": 2,
                "properties": {"user_properties": {"a": "1"}},
            },
        )
        assert status == 200
        message = await messages.get(WAIT)
    assert message.payload == b"\xff\x00\xfe"
    assert message.properties is not None and message.properties.user_properties == (("a", "1"),)


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_publish_without_subscriber_says_202(api: Api, qos: int) -> None:
    status, body = await api.post("/api/v1/publish", {"topic": "nobody/home", "qos": qos})
    assert status == 202
    assert body["message"] == "no subscriber matched" and body["id"]


async def test_publish_qos0_to_a_subscriber_says_200(api: Api) -> None:
    async with api.broker.subscribe("q0/+", qos=0) as messages:
        assert (await api.post("/api/v1/publish", {"topic": "q0/x", "payload": "p"}))[0] == 200
        assert (await messages.get(WAIT)).payload == b"p"


async def test_publish_retained_then_list_get_and_delete_it(api: Api) -> None:
    topic = "/a/b c/ü"  # a leading slash, a space and a non-ASCII letter
    status, _ = await api.post(
        "/api/v1/publish", {"topic": topic, "payload": "kept", "qos": 1, "retain": True}
    )
    assert status == 202
    status, page = await api.get("/api/v1/retained", params={"filter": "/a/#"})
    assert status == 200
    assert [item["topic"] for item in page["data"]] == [topic]
    assert page["data"][0]["payload"] == "kept" and page["data"][0]["payload_encoding"] == "plain"
    path = "/api/v1/retained/" + "%2Fa%2Fb%20c%2F%C3%BC"
    status, one = await api.get(path)
    assert status == 200 and one["topic"] == topic and one["size"] == 4
    status, one = await api.get(path, params={"payload_encoding": "base64"})
    assert one["payload"] == base64.b64encode(b"kept").decode()
    assert (await api.delete(path, key=api.reader))[0] == 403
    assert (await api.delete(path))[0] == 204
    assert (await api.get(path))[0] == 404
    assert (await api.delete(path))[0] == 404
    assert api.broker.retained("#") == []


async def test_retained_bad_filter_and_topic(api: Api) -> None:
    status, body = await api.get("/api/v1/retained", params={"filter": "a/#/b"})
    assert status == 400 and body["error"]["field"] == "filter"
    status, body = await api.get("/api/v1/retained/a%2F%23")
    assert status == 400 and body["error"]["field"] == "topic"


async def test_retained_pagination(api: Api) -> None:
    for index in range(5):
        await api.broker.publish(f"r/{index}", b"v", qos=1, retain=True)
    seen: list[str] = []
    after = ""
    while True:
        status, page = await api.get(
            "/api/v1/retained", params={"filter": "r/+", "limit": "2", "after": after}
        )
        assert status == 200
        seen += [item["topic"] for item in page["data"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == [f"r/{index}" for index in range(5)]


async def test_publish_bulk_answers_each_in_order(api: Api) -> None:
    async with api.broker.subscribe("bulk/#") as messages:
        status, results = await api.post(
            "/api/v1/publish/bulk",
            [
                {"topic": "bulk/1", "payload": "one", "qos": 1},
                {"topic": "elsewhere", "payload": "two", "qos": 1},
                {"topic": "bulk/3", "payload": "three", "qos": 0},
                {"topic": "$SYS/x", "payload": "four", "qos": 0},
            ],
        )
        assert status == 200
        assert [item["status"] for item in results] == [200, 202, 200, 403]
        assert results[3]["error"]["code"] == "not_authorized"
        got = [(await messages.get(WAIT)).payload for _ in range(2)]
    assert got == [b"one", b"three"]


async def test_bulk_with_one_bad_message_publishes_none(api: Api) -> None:
    async with api.broker.subscribe("bulk2/#") as messages:
        status, body = await api.post(
            "/api/v1/publish/bulk",
            [{"topic": "bulk2/1", "payload": "ok"}, {"topic": "bulk2/+", "payload": "bad"}],
        )
        assert status == 400 and body["error"]["field"] == "[1].topic"
        with pytest.raises(TimeoutError):
            await messages.get(0.3)
    for bad in ({"topic": "x"}, [], "nope"):
        status, body = await api.post("/api/v1/publish/bulk", bad)
        assert status == 400 and body["error"]["field"] == "body"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": "no topic"}, "topic"),
        ({"topic": ""}, "topic"),
        ({"topic": "a/+/b"}, "topic"),
        ({"topic": "a/#"}, "topic"),
        ({"topic": "a\u0000b"}, "topic"),
        ({"topic": 5}, "topic"),
        ({"topic": "a", "qos": 3}, "qos"),
        ({"topic": "a", "qos": "1"}, "qos"),
        ({"topic": "a", "qos": True}, "qos"),
        ({"topic": "a", "retain": "yes"}, "retain"),
        ({"topic": "a", "payload": {"json": "object"}}, "payload"),
        ({"topic": "a", "payload": 17}, "payload"),
        ({"topic": "a", "payload": "***", "payload_encoding": "base64"}, "payload"),
        ({"topic": "a", "payload": "abc", "payload_encoding": "base64"}, "payload"),
        ({"topic": "a", "payload_encoding": "hex"}, "payload_encoding"),
        ({"topic": "a", "qso": 1}, "qso"),
        ({"topic": "a", "properties": []}, "properties"),
        ({"topic": "a", "properties": {"colour": "red"}}, "properties.colour"),
        (
            {"topic": "a", "properties": {"user_properties": [["k"]]}},
            "properties.user_properties[0]",
        ),
        ({"topic": "a", "properties": {"user_properties": "k=v"}}, "properties.user_properties"),
        (
            {"topic": "a", "properties": {"user_properties": [["k", 1]]}},
            "properties.user_properties[0]",
        ),
        ({"topic": "a", "properties": {"correlation_data": "%%"}}, "properties.correlation_data"),
        ({"topic": "a", "properties": {"response_topic": "r/#"}}, "properties.response_topic"),
        (
            {"topic": "a", "properties": {"message_expiry_interval": -1}},
            "properties.message_expiry_interval",
        ),
        (
            {"topic": "a", "properties": {"payload_format_indicator": 2}},
            "properties.payload_format_indicator",
        ),
        (
            {
                "topic": "a",
                "payload": base64.b64encode(b"\xff").decode(),
                "payload_encoding": "base64",
                "properties": {"payload_format_indicator": 1},
            },
            "payload",
        ),
        ([{"topic": "a"}], "body"),
        ("just a string", "body"),
    ],
)
async def test_bad_publish_input_gets_400_naming_the_field(
    api: Api, body: object, field: str
) -> None:
    status, answer = await api.post("/api/v1/publish", body)
    assert status == 400, answer
    assert answer["error"]["field"] == field
    assert answer["error"]["message"]


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"\xff\xfe", b'{"topic": "a",}', b"[1, 2", b"nul"]
)
async def test_malformed_json_gets_400(api: Api, raw: bytes) -> None:
    status, body = await api.call(
        "POST", "/api/v1/publish", data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert body["error"]["code"] == "invalid_json" and body["error"]["field"] == "body"


async def test_an_oversized_body_gets_413(api: Api) -> None:
    status, body = await api.post("/api/v1/publish", {"topic": "a", "payload": "x" * 5000})
    assert status == 413
    assert body["error"]["code"] == "payload_too_large" and body["error"]["field"] == "body"


async def test_a_message_beyond_max_packet_size_gets_413(tmp_path: Path) -> None:
    async with running_api(tmp_path, max_packet_size=200) as api:
        status, body = await api.post("/api/v1/publish", {"topic": "a", "payload": "x" * 300})
        assert status == 413 and body["error"]["field"] == "payload"


async def test_publish_to_sys_is_refused(api: Api) -> None:
    for qos in (0, 1):
        status, body = await api.post("/api/v1/publish", {"topic": "$SYS/mine", "qos": qos})
        assert status == 403 and body["error"]["code"] == "not_authorized"


# ---------------------------------------------------------------- ACL


async def test_the_acl_applies_to_the_key_user(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("user ops\ntopic write allowed/#\ntopic read allowed/#\n")
    async with running_api(tmp_path, acl_file=str(acl)) as api:
        async with api.broker.subscribe("#") as messages:  # trusted: sees everything
            for qos in (0, 1, 2):
                status, body = await api.post("/api/v1/publish", {"topic": "denied/x", "qos": qos})
                assert status == 403, (qos, body)
                assert body["error"]["code"] == "not_authorized"
                status, _ = await api.post("/api/v1/publish", {"topic": "allowed/x", "qos": qos})
                assert status == 200
                assert (await messages.get(WAIT)).topic == "allowed/x"
            with pytest.raises(TimeoutError):
                await messages.get(0.2)
        clients = {item.client_id: item for item in api.broker.clients()}
        (publisher,) = [item for item in clients.values() if item.listener == "http-api"]
        assert publisher.username == "ops"


# ---------------------------------------------------------------- clients


async def test_clients_list_filters_and_paginates(api: Api) -> None:
    clients = [
        Client("127.0.0.1", api.mqtt_port, client_id=f"dev-{index}", username=f"u{index % 2}")
        for index in range(5)
    ]
    for client in clients:
        await client.connect()
    try:
        status, page = await api.get("/api/v1/clients", params={"client_id_prefix": "dev-"})
        assert status == 200
        assert [item["client_id"] for item in page["data"]] == [f"dev-{i}" for i in range(5)]
        assert page["next"] is None
        first = page["data"][0]
        assert first["protocol"] == "3.1.1" and first["protocol_version"] == 4
        assert first["listener"] == "mqtt" and first["address"].startswith("127.0.0.1:")
        assert first["connected_at"].endswith("Z")
        ids: list[str] = []
        after = ""
        while True:
            _, page = await api.get(
                "/api/v1/clients", params={"client_id_prefix": "dev-", "limit": "2", "after": after}
            )
            ids += [item["client_id"] for item in page["data"]]
            if page["next"] is None:
                break
            assert len(page["data"]) == 2
            after = page["next"]
        assert ids == [f"dev-{i}" for i in range(5)]
        _, page = await api.get("/api/v1/clients", params={"username": "u1"})
        assert [item["client_id"] for item in page["data"]] == ["dev-1", "dev-3"]
        _, page = await api.get("/api/v1/clients", params={"address": "10.9.9.9"})
        assert page["data"] == []
    finally:
        for client in clients:
            await client.disconnect()


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1", "1.5"])
async def test_a_bad_limit_gets_400(api: Api, limit: str) -> None:
    for path in ("/api/v1/clients", "/api/v1/sessions", "/api/v1/subscriptions"):
        status, body = await api.get(path, params={"limit": limit})
        assert status == 400 and body["error"]["field"] == "limit"


async def test_client_detail_and_disconnect_with_0x98(api: Api) -> None:
    client = Client("127.0.0.1", api.mqtt_port, client_id="five", protocol_version=5)
    await client.connect()
    await client.subscribe([("a/#", 1), ("$share/g/b", 0)])
    status, detail = await api.get("/api/v1/clients/five")
    assert status == 200
    assert detail["protocol"] == "5.0"
    assert {item["topic_filter"]: item["shared"] for item in detail["subscriptions"]} == {
        "a/#": False,
        "$share/g/b": True,
    }
    assert detail["inflight"] == 0 and detail["queued"] == 0
    assert (await api.delete("/api/v1/clients/five"))[0] == 204
    with pytest.raises(ConnectionLost) as lost:
        await asyncio.wait_for(client.subscribe("more", qos=0), WAIT)
    assert lost.value.reason_code == 0x98
    assert (await api.get("/api/v1/clients/five"))[0] == 404
    assert (await api.delete("/api/v1/clients/five"))[0] == 404


async def test_sessions_offline_persistent_listed_and_deleted(api: Api) -> None:
    async with Client(
        "127.0.0.1", api.mqtt_port, client_id="keeper", clean_session=False
    ) as client:
        await client.subscribe("kept/#", qos=1)
    await api.broker.publish("kept/1", b"queued", qos=1)
    status, page = await api.get("/api/v1/sessions", params={"connected": "false"})
    assert status == 200
    (session,) = [item for item in page["data"] if item["client_id"] == "keeper"]
    assert session["connected"] is False and session["persistent"] is True
    assert session["queued"] == 1 and session["subscription_count"] == 1
    assert session["disconnected_at"].endswith("Z")
    status, detail = await api.get("/api/v1/sessions/keeper")
    assert status == 200 and detail["subscriptions"][0]["topic_filter"] == "kept/#"
    status, body = await api.get("/api/v1/sessions", params={"connected": "maybe"})
    assert status == 400 and body["error"]["field"] == "connected"
    assert (await api.delete("/api/v1/sessions/keeper", key=api.reader))[0] == 403
    assert (await api.delete("/api/v1/sessions/keeper"))[0] == 204
    assert (await api.get("/api/v1/sessions/keeper"))[0] == 404
    assert (await api.delete("/api/v1/sessions/keeper"))[0] == 404
    async with Client(
        "127.0.0.1", api.mqtt_port, client_id="keeper", clean_session=False
    ) as client:
        assert not client.session_present


async def test_deleting_a_connected_session_disconnects_it(api: Api) -> None:
    client = Client("127.0.0.1", api.mqtt_port, client_id="online", clean_session=False)
    await client.connect()
    await client.subscribe("on/#", qos=1)
    assert (await api.delete("/api/v1/sessions/online"))[0] == 204
    assert api.broker.get_client("online") is None
    assert "online" not in {item.client_id for item in api.broker.sessions()}
    await client.disconnect()


async def test_subscriptions_filter_and_opaque_cursor(api: Api) -> None:
    async with (
        Client("127.0.0.1", api.mqtt_port, client_id="s1") as one,
        Client("127.0.0.1", api.mqtt_port, client_id="s2") as two,
    ):
        await one.subscribe([("x/1", 0), ("x/2", 1), ("common", 1)])
        await two.subscribe([("common", 2)])
        _, page = await api.get("/api/v1/subscriptions", params={"topic_filter": "common"})
        assert [(item["client_id"], item["qos"]) for item in page["data"]] == [
            ("s1", 1),
            ("s2", 2),
        ]
        _, page = await api.get("/api/v1/subscriptions", params={"client_id": "s1"})
        assert [item["topic_filter"] for item in page["data"]] == ["common", "x/1", "x/2"]
        rows: list[tuple[str, str]] = []
        after = ""
        while True:
            status, page = await api.get(
                "/api/v1/subscriptions", params={"limit": "1", "after": after}
            )
            assert status == 200
            rows += [(item["client_id"], item["topic_filter"]) for item in page["data"]]
            if page["next"] is None:
                break
            after = page["next"]
        assert rows == [("s1", "common"), ("s1", "x/1"), ("s1", "x/2"), ("s2", "common")]
        status, body = await api.get("/api/v1/subscriptions", params={"after": "garbage!"})
        assert status == 400 and body["error"]["field"] == "after"


async def test_the_publisher_comes_back_after_being_disconnected(api: Api) -> None:
    assert (await api.post("/api/v1/publish", {"topic": "t", "qos": 1}))[0] == 202
    (publisher,) = [item for item in api.broker.clients() if item.listener == "http-api"]
    assert (await api.delete(f"/api/v1/clients/{publisher.client_id}"))[0] == 204
    await asyncio.sleep(0.05)
    assert (await api.post("/api/v1/publish", {"topic": "t", "qos": 1}))[0] == 202


async def test_an_internal_error_is_json_without_a_traceback(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("secret detail")

    monkeypatch.setattr("midge.http.routes_system.overview", broken)
    status, body = await api.get("/api/v1/overview")
    assert status == 500
    assert body == {"error": {"code": "internal_error", "message": "internal error (logged)"}}


async def test_publish_with_properties_to_mqtt5_is_kept_on_retained(api: Api) -> None:
    await api.post(
        "/api/v1/publish",
        {
            "topic": "props/r",
            "payload": "v",
            "qos": 1,
            "retain": True,
            "properties": {"content_type": "x/y", "user_properties": [["a", "b"]]},
        },
    )
    status, one = await api.get("/api/v1/retained/props/r")
    assert status == 200
    assert one["properties"] == {"content_type": "x/y", "user_properties": [["a", "b"]]}
    (message,) = api.broker.retained("props/r")
    assert message.properties == Properties(content_type="x/y", user_properties=(("a", "b"),))


async def test_a_client_id_with_a_slash_is_addressable(api: Api) -> None:
    async with Client("127.0.0.1", api.mqtt_port, client_id="site/7", clean_session=False):
        status, detail = await api.get("/api/v1/clients/site%2F7")
        assert status == 200 and detail["client_id"] == "site/7"
        assert (await api.get("/api/v1/sessions/site/7"))[0] == 200
        assert (await api.delete("/api/v1/sessions/site%2F7"))[0] == 204
