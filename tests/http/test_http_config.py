"""The HTTP API's config keys and listeners: validation, and what they leave alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from http_support import running_api

import midge
from midge.broker.config import BrokerConfig, ConfigError, ListenerConfig, config_from_toml
from midge.embedding.services import services_for


def problems(text: str, folder: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_toml(text, "midge.toml", folder)
    return str(caught.value)


def test_http_listener_keys_are_checked(tmp_path: Path) -> None:
    text = problems(
        'http_max_body = 10\napi_key_file = "missing-keys"\n'
        '[[listeners]]\nport = 8080\ntransport = "http"\nallow_anonymous = true\n'
        "use_identity_as_username = true\n"
        '[[listeners]]\nport = 8443\ntransport = "https"\n'
        '[[listeners]]\nport = 8081\ntransport = "http"\ncertfile = "x.pem"\n',
        tmp_path,
    )
    assert "'listeners[0].allow_anonymous': an MQTT login setting" in text
    assert "'listeners[0].use_identity_as_username'" in text
    assert "'listeners[1].certfile': required for a TLS listener" in text
    assert "'listeners[2].certfile': only applies to transport 'tls', 'wss' or 'https'" in text
    assert "'http_max_body': must be >= 1024" in text
    assert f"'api_key_file': file not found: {tmp_path / 'missing-keys'}" in text


def test_api_key_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("")
    config = config_from_toml('api_key_file = "keys"\nmetrics_require_key = true\n', "f", tmp_path)
    assert config.api_key_file == str(tmp_path / "keys")
    assert config.metrics_require_key is True


def test_http_listeners_do_not_replace_the_mqtt_listener() -> None:
    config = BrokerConfig(listeners=(ListenerConfig(port=8080, transport="http"),)).validate()
    (mqtt,) = config.effective_listeners()
    assert (mqtt.host, mqtt.port, mqtt.transport) == ("127.0.0.1", 1883, "tcp")
    assert config.anonymous_allowed(mqtt)  # still the implicit loopback listener
    (http,) = config.http_listeners()
    assert (http.host, http.port) == ("127.0.0.1", 8080)
    moved = config.override(port=0)  # --port moves the MQTT listener, never the HTTP one
    assert moved.effective_listeners()[0].port == 0
    assert moved.http_listeners()[0].port == 8080
    both = BrokerConfig(
        listeners=(ListenerConfig(port=8080, transport="http"), ListenerConfig(port=1884))
    ).override(port=0)
    assert [item.port for item in both.effective_listeners()] == [0]
    assert [item.port for item in both.http_listeners()] == [8080]


def test_no_http_listener_no_service() -> None:
    assert not any(
        type(service).__name__ == "HttpService" for service in services_for(BrokerConfig())
    )


async def test_a_broken_key_file_stops_the_start(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("nonsense\n")
    config = BrokerConfig(
        store="memory",
        port=0,
        api_key_file=str(keys),
        listeners=(ListenerConfig(port=0), ListenerConfig(port=0, transport="http")),
    )
    broker = midge.Broker(config)
    with pytest.raises(ConfigError, match=r"api_key_file.*keys:1"):
        await broker.start()
    assert broker.listeners == ()


async def test_an_address_in_use_stops_the_start_and_frees_everything(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        taken = next(item.port for item in api.broker.listeners if item.transport == "http")
        config = BrokerConfig(
            store="memory",
            port=0,
            listeners=(ListenerConfig(port=0), ListenerConfig(port=taken, transport="http")),
        )
        broker = midge.Broker(config)
        with pytest.raises(OSError):
            await broker.start()
        assert broker.listeners == ()
