"""The `[cluster]` table: which Redis, which node this is.

    [cluster]
    url = "redis://redis.example:6379/0"   # rediss:// for TLS
    name = "edge-1"                        # default: the host name
    prefix = "midge"                       # key prefix: clusters may share a database

`midge serve --cluster URL --node-name NAME --cluster-prefix PREFIX` sets
the same keys. A node's name is its identity across restarts (the sessions
it owns, its inbound stream), so two live nodes may not share one.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from midge.config_tables import typed_fields

URL_SCHEMES = ("redis", "rediss", "unix")
# What a node name and a prefix may contain: they become parts of Redis keys
# and log lines, and `{` `}` would change the hash tags of keys.
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    url: str = ""
    name: str = ""  # "": the host name
    prefix: str = "midge"
    # Seconds between heartbeats; a node silent for node_timeout is dead.
    heartbeat_interval: float = 1.0
    node_timeout: float = 5.0

    @property
    def node_name(self) -> str:
        return self.name or socket.gethostname().split(".")[0]

    def problems(self, key: str = "cluster") -> list[str]:
        found: list[str] = []

        def check(condition: bool, field: str, message: str) -> None:
            if not condition:
                found.append(f"config key '{key}.{field}': {message}")

        scheme = urlsplit(self.url).scheme
        check(bool(self.url), "url", "required: the Redis to cluster on, redis://HOST:PORT/DB")
        if self.url:
            check(scheme in URL_SCHEMES, "url", f"scheme must be one of {URL_SCHEMES}")
        check(_is_name(self.node_name), "name", "letters, digits, '-', '_' and '.' only")
        check(_is_name(self.prefix), "prefix", "letters, digits, '-', '_' and '.' only")
        check(self.heartbeat_interval > 0, "heartbeat_interval", "must be > 0")
        check(
            self.node_timeout >= 2 * self.heartbeat_interval,
            "node_timeout",
            "must be at least twice heartbeat_interval",
        )
        return found

    def with_flags(self, url: str | None, name: str | None, prefix: str | None) -> ClusterConfig:
        return replace(
            self,
            url=self.url if url is None else url,
            name=self.name if name is None else name,
            prefix=self.prefix if prefix is None else prefix,
        )


def _is_name(text: str) -> bool:
    return bool(text) and set(text) <= _NAME_CHARACTERS


def cluster_from_table(value: Any, source: str, problems: list[str]) -> ClusterConfig | None:
    """The `[cluster]` table's config; each bad key adds a problem."""
    if not isinstance(value, Mapping):
        problems.append(f"config key 'cluster' in {source}: expected a [cluster] table")
        return None
    template = ClusterConfig()
    return replace(template, **typed_fields(value, template, "cluster", source, problems))


def redacted(url: str) -> str:
    """`url` without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=f"{user}{host}{port}").geturl()
