"""The [cluster] table: what it becomes, and every bad key named (no Redis needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from midge.broker.config import ConfigError, config_from_toml


def test_a_cluster_table_becomes_its_config(tmp_path: Path) -> None:
    text = '[cluster]\nurl = "redis://127.0.0.1:6379/0"\nname = "edge-1"\nnode_timeout = 6\n'
    cluster = config_from_toml(text, "midge.toml", tmp_path).cluster
    assert cluster is not None
    assert (cluster.node_name, cluster.node_timeout) == ("edge-1", 6.0)  # an int for a float


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("colour = 1", "unknown config key 'cluster.colour' in midge.toml"),
        (
            'heartbeat_interval = "1"',
            "config key 'cluster.heartbeat_interval' in midge.toml: expected float, got str '1'",
        ),
    ],
)
def test_a_bad_key_is_named(tmp_path: Path, line: str, problem: str) -> None:
    text = f'[cluster]\nurl = "redis://127.0.0.1:6379/0"\n{line}\n'
    with pytest.raises(ConfigError) as raised:
        config_from_toml(text, "midge.toml", tmp_path)
    assert problem in str(raised.value)
