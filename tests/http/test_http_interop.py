"""The HTTP API of a real `midge serve`: curl publishes, mosquitto_sub and paho
receive at QoS 1, an HTTP-only pusher reaches phones that were offline (the
seed documents' PHP push service), SIGHUP reloads the key file, and HTTPS."""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from http_support import WAIT, ServedApi, running_api, serve_with_api

from certificates import make_certificates
from midge.broker.config import ListenerConfig
from midge.tools.apikey import create as create_key
from midge.tools.apikey import delete as delete_key


def http_json(
    served: ServedApi, method: str, path: str, body: Any = None, key: str | None = None
) -> tuple[int, Any]:
    """One request with nothing but the standard library, as a PHP script would make it."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(served.base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_for_subscription(served: ServedApi, topic_filter: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        _, page = http_json(
            served,
            "GET",
            f"/api/v1/subscriptions?topic_filter={urllib.request.quote(topic_filter, safe='')}",
            key=served.reader,
        )
        if page["data"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"nobody subscribed to {topic_filter!r}")


class Phone:
    """A paho-mqtt subscriber with a persistent session (clean session 0)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.port = port
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected: queue.Queue[Any] = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            reconnect_on_failure=False,
        )
        self.client.on_message = lambda c, u, message: self.messages.put(message)
        self.client.on_connect = lambda c, u, flags, reason, p: self.connected.put(flags)
        self.subscribed: queue.Queue[Any] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.put(codes)

    def connect(self) -> Any:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return self.connected.get(timeout=WAIT)

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        self.subscribed.get(timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_curl_publish_reaches_mosquitto_sub_and_paho_at_qos1(tmp_path: Path) -> None:
    curl = shutil.which("curl")
    mosquitto_sub = shutil.which("mosquitto_sub")
    if curl is None or mosquitto_sub is None:
        pytest.skip("curl and mosquitto_sub are needed (apt-get install curl mosquitto-clients)")
    with serve_with_api(tmp_path) as served:
        port = str(served.running.port)
        receiver = subprocess.Popen(
            [
                *(mosquitto_sub, "-h", "127.0.0.1", "-p", port, "-q", "1", "-t", "alerts/#"),
                *("-C", "1", "-v", "-i", "curlsub", "-W", "10"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        phone = Phone(served.running.port, "pahosub")
        try:
            phone.connect()
            phone.subscribe("alerts/#")
            wait_for_subscription(served, "alerts/#")
            deadline = time.monotonic() + WAIT
            while True:  # until mosquitto_sub's SUBSCRIBE is in too
                _, page = http_json(served, "GET", "/api/v1/clients/curlsub", key=served.admin)
                if page.get("subscriptions") or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            done = subprocess.run(
                [
                    *(curl, "-sS", "-X", "POST", f"{served.base}/api/v1/publish"),
                    *("-H", f"Authorization: Bearer {served.admin}"),
                    *("-H", "Content-Type: application/json"),
                    *("-d", '{"topic": "alerts/fire", "payload": "evacuate", "qos": 1}'),
                    *("-w", "\n%{http_code}"),
                ],
                capture_output=True,
                text=True,
                timeout=WAIT * 2,
                check=True,
            )
            body, code = done.stdout.rsplit("\n", 1)
            assert code == "200", done.stdout
            assert json.loads(body)["id"]
            out, err = receiver.communicate(timeout=WAIT * 2)
            assert out.strip() == "alerts/fire evacuate", err
            message = phone.messages.get(timeout=WAIT)
            assert (message.topic, message.payload, message.qos) == ("alerts/fire", b"evacuate", 1)
        finally:
            phone.close()
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait(timeout=WAIT)


def test_http_only_pusher_reaches_phones_that_were_offline(tmp_path: Path) -> None:
    """The seed documents' push service: a PHP site that speaks only HTTP sends a
    JSON notification to `phones/<user>`; each phone holds a persistent session
    at QoS 1, so what came while it was offline arrives when it reconnects."""
    with serve_with_api(tmp_path) as served:
        users = ["alice", "bob"]
        phones = {user: Phone(served.running.port, f"phone-{user}") for user in users}
        for user, phone in phones.items():
            phone.connect()
            phone.subscribe(f"phones/{user}")
            phone.close()  # the phone goes offline; its session stays
        sent = {}
        for number, user in enumerate(users * 2):
            notification = {"title": f"news {number}", "body": "你有一条新消息", "badge": number}
            status, body = http_json(
                served,
                "POST",
                "/api/v1/publish",
                {"topic": f"phones/{user}", "payload": json.dumps(notification), "qos": 1},
                key=served.admin,
            )
            assert status == 200, body  # the offline persistent session matched
            sent.setdefault(user, []).append(notification)
        _, sessions = http_json(
            served, "GET", "/api/v1/sessions?connected=false", key=served.reader
        )
        queued = {item["client_id"]: item["queued"] for item in sessions["data"]}
        assert queued == {"phone-alice": 2, "phone-bob": 2}
        for user in users:
            phone = Phone(served.running.port, f"phone-{user}")
            flags = phone.connect()
            try:
                assert flags.session_present
                got = [phone.messages.get(timeout=WAIT) for _ in sent[user]]
                assert [json.loads(message.payload) for message in got] == sent[user]
                assert {message.qos for message in got} == {1}
            finally:
                phone.close()


def test_sighup_reloads_the_key_file(tmp_path: Path) -> None:
    with serve_with_api(tmp_path) as served:
        new = create_key(served.keys, "late", "admin")
        assert http_json(served, "GET", "/api/v1/version", key=new)[0] == 401
        served.running.process.send_signal(signal.SIGHUP)
        served.running.log.wait_for("reloaded API key file")
        assert http_json(served, "GET", "/api/v1/version", key=new)[0] == 200
        publish = {"topic": "t", "qos": 1}
        assert http_json(served, "POST", "/api/v1/publish", publish, key=served.admin)[0] == 202
        delete_key(served.keys, "ops")
        served.keys.write_text(served.keys.read_text() + "broken line\n")
        served.running.process.send_signal(signal.SIGHUP)
        served.running.log.wait_for("reload of the API key file failed")
        assert http_json(served, "GET", "/api/v1/version", key=served.admin)[0] == 200
        served.keys.write_text(served.keys.read_text().replace("broken line\n", ""))
        served.running.process.send_signal(signal.SIGHUP)
        served.running.log.wait_for("reloaded API key file", count=2)
        assert http_json(served, "GET", "/api/v1/version", key=served.admin)[0] == 401
        assert http_json(served, "GET", "/api/v1/version", key=new)[0] == 200
        assert served.running.process.poll() is None


async def test_https_listener(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    listeners = (
        ListenerConfig(port=0, allow_anonymous=True),
        ListenerConfig(
            port=0,
            transport="https",
            certfile=str(certificates.server_cert),
            keyfile=str(certificates.server_key),
        ),
    )
    async with running_api(tmp_path, listeners=listeners) as api:
        assert api.base.startswith("https://")
        (https,) = [item for item in api.broker.listeners if item.transport == "https"]
        assert https.label == "https"
        context = ssl.create_default_context(cafile=str(certificates.ca))
        async with api.session.get(
            api.base + "/api/v1/version", headers=api.headers(api.reader), ssl=context
        ) as response:
            assert response.status == 200
            assert (await response.json())["mqtt"] == ["3.1", "3.1.1", "5.0"]
        with pytest.raises(aiohttp.ClientConnectorError):  # not trusted without the CA
            async with api.session.get(api.base + "/healthz"):
                pass
        with pytest.raises(aiohttp.ClientError):  # plain HTTP to a TLS port
            async with api.session.get(
                api.base.replace("https", "http") + "/healthz",
                timeout=aiohttp.ClientTimeout(total=WAIT),
            ):
                pass
        await asyncio.sleep(0)
