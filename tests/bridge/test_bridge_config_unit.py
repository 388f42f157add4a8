"""The [[bridges]] tables (bridge/config.py): what they become, and every bad value named."""

from __future__ import annotations

from pathlib import Path

import pytest

from midge.bridge.config import BridgeConfig, TopicRule, split_address
from midge.broker.config import ConfigError, config_from_toml

GOOD = """
[[bridges]]
name = "cloud"
addresses = ["mqtt.example.com:8883", "[::1]", "backup"]
protocol = "5"
tls = true
ca_file = "certs/ca.pem"
restart_delay = 1
topics = [
    { pattern = "sensors/#", direction = "out", qos = 1, remote_prefix = "site1/" },
    { pattern = "", direction = "in", qos = 2, local_prefix = "cmd", remote_prefix = "site1/cmd" },
]
"""


def test_a_bridge_table_becomes_its_config(tmp_path: Path) -> None:
    [bridge] = config_from_toml(GOOD, "midge.toml", tmp_path).bridges
    assert bridge.name == "cloud"
    assert bridge.addresses == ("mqtt.example.com:8883", "[::1]", "backup")
    assert [split_address(item) for item in bridge.addresses] == [
        ("mqtt.example.com", 8883),
        ("::1", 1883),
        ("backup", 1883),
    ]
    assert bridge.ca_file == str(tmp_path / "certs/ca.pem")  # beside the config file
    assert bridge.restart_delay == 1.0
    assert bridge.topics == (
        TopicRule("sensors/#", "out", 1, "", "site1/"),
        TopicRule("", "in", 2, "cmd", "site1/cmd"),
    )
    assert bridge.state_topic == "$SYS/broker/connection/cloud/state"
    assert bridge.local_client_id == "$bridge/cloud"
    assert bridge.remote_client_id.endswith(".cloud")


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('name = "a b"', "'bridges[0].name'"),
        ("addresses = []", "'bridges[0].addresses': required"),
        ('addresses = ["h:99999"]', "is not host:port"),
        ('protocol = "3.1"', "'bridges[0].protocol'"),
        ('start = "sometimes"', "'bridges[0].start'"),
        ('queue_full = "block"', "'bridges[0].queue_full'"),
        ("topics = []", "'bridges[0].topics': required"),
        ('topics = [{ pattern = "a/#", direction = "sideways" }]', "topics[0].direction"),
        ('topics = [{ pattern = "a/#", qos = 3 }]', "topics[0].qos"),
        ('topics = [{ pattern = "a/#/b" }]', "not a valid topic filter"),
        ('topics = [{ pattern = "x", colour = "red" }]', "'bridges[0].topics[0].colour'"),
        ('ca_file = "ca.pem"', "need tls = true"),
        ('topics = [{ pattern = "a", local_prefix = "+/" }]', "no wildcards in a prefix"),
        ('password = "secret"', "only with a username"),
        ("keepalive = -1", "'bridges[0].keepalive'"),
        ("restart_delay_max = 0.5", "'bridges[0].restart_delay_max'"),
        ('notification_topic = "a/+"', "'bridges[0].notification_topic'"),
        ("color = 1", "unknown config key 'bridges[0].color'"),
        ("max_inflight = true", "expected int"),
    ],
)
def test_a_bad_value_is_named(tmp_path: Path, table: str, problem: str) -> None:
    lines = {
        "name": 'name = "cloud"',
        "addresses": 'addresses = ["127.0.0.1:1883"]',
        "topics": 'topics = [{ pattern = "a/#" }]',
    }
    key = table.split("=", maxsplit=1)[0].strip()
    lines[key] = table
    text = "[[bridges]]\n" + "\n".join(lines.values()) + "\n"
    with pytest.raises(ConfigError) as raised:
        config_from_toml(text, "midge.toml", tmp_path)
    assert problem in str(raised.value)


def test_two_bridges_may_not_share_a_name(tmp_path: Path) -> None:
    one = '[[bridges]]\nname = "x"\naddresses = ["h"]\ntopics = [{ pattern = "#" }]\n'
    with pytest.raises(ConfigError, match="two bridges are named 'x'"):
        config_from_toml(one + one, "midge.toml", tmp_path)


def test_no_bridges_by_default() -> None:
    assert BridgeConfig().topics == ()
    assert config_from_toml("", "midge.toml", Path()).bridges == ()
