"""Broker configuration: defaults, TOML file, validation naming the key, overrides."""

from __future__ import annotations

import dataclasses

import pytest

from midge.broker.config import BrokerConfig, ConfigError, load_config


def test_no_file_gives_the_defaults():
    assert load_config(None) == BrokerConfig()


def test_file_values_override_defaults(toml_file):
    path = toml_file(
        'host = "0.0.0.0"\n'
        "port = 1884\n"
        "allow_anonymous = false\n"
        "connect_timeout = 5\n"  # an integer where a float is expected is fine
        'qos2_delivery = "on_release"\n'
        'slow_consumer_policy = "disconnect"\n'
        "max_queued_messages = 0\n"
        "queue_qos0_messages = true\n"
    )
    config = load_config(path)
    assert config == dataclasses.replace(
        BrokerConfig(),
        host="0.0.0.0",
        port=1884,
        allow_anonymous=False,
        connect_timeout=5,
        qos2_delivery="on_release",
        slow_consumer_policy="disconnect",
        max_queued_messages=0,
        queue_qos0_messages=True,
    )
    assert config.max_inflight_messages == 20  # untouched default
    assert load_config(str(path)) == config


def test_unknown_key_is_an_error(toml_file):
    with pytest.raises(ConfigError, match="unknown config key 'prot'"):
        load_config(toml_file("prot = 1884\n"))


def test_table_is_an_unknown_key(toml_file):
    with pytest.raises(ConfigError, match="'broker'"):
        load_config(toml_file("[broker]\nport = 1884\n"))


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('port = "1883"', "port"),
        ("port = 1883.0", "port"),
        ("allow_anonymous = 1", "allow_anonymous"),
        ('allow_anonymous = "yes"', "allow_anonymous"),
        ("max_connections = true", "max_connections"),
        ('connect_timeout = "5"', "connect_timeout"),
        ("connect_timeout = true", "connect_timeout"),
        ("host = 127", "host"),
        ("qos2_delivery = 2", "qos2_delivery"),
    ],
)
def test_wrong_type_names_the_key(toml_file, line, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(toml_file(line + "\n"))


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("port = 70000", "port"),
        ("port = -1", "port"),
        ('qos2_delivery = "x"', "qos2_delivery"),
        ('slow_consumer_policy = "kill"', "slow_consumer_policy"),
        ('log_level = "loud"', "log_level"),
        ("max_inflight_messages = 0", "max_inflight_messages"),
        ("max_inflight_messages = 65536", "max_inflight_messages"),
        ("connect_timeout = 0", "connect_timeout"),
        ("max_connections = -1", "max_connections"),
        ("max_queued_messages = -1", "max_queued_messages"),
        ("max_queued_bytes = -1", "max_queued_bytes"),
        ("max_write_buffer = 1023", "max_write_buffer"),
        ("max_packet_size = 1", "max_packet_size"),
        ('password_file = "/nonexistent/midge/passwd"', "password_file"),
    ],
)
def test_impossible_value_names_the_key(toml_file, line, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        load_config(toml_file(line + "\n"))


def test_invalid_toml_and_missing_file(toml_file, tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(toml_file("port = \n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")


def test_override_wins_over_file_values(toml_file):
    """Command-line values (override) beat the file; None means 'not given'."""
    config = load_config(toml_file("port = 1884\nmax_connections = 7\n"))
    overridden = config.override(port=5, max_connections=None)
    assert overridden.port == 5
    assert overridden.max_connections == 7
    assert config.port == 1884  # frozen: the original is unchanged
    assert BrokerConfig().override(port=5) == dataclasses.replace(BrokerConfig(), port=5)


@pytest.mark.parametrize(
    ("changes", "key"),
    [({"port": 70000}, "port"), ({"port": "5"}, "port"), ({"nope": 1}, "nope")],
)
def test_override_is_validated(changes, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        BrokerConfig().override(**changes)
