"""Acknowledged means seen: a change to routes or retained messages is
acknowledged only once every live node has read it.

Each node keeps its copy of the routes and retained messages by reading the
change log (node.py), and says how far it has read in `Keys.positions`. A
SUBACK, or the PUBACK of a retained message, vouches for the change, so a
PUBLISH that follows it on any node must see it: the store (store.py),
after writing a batch with change-log entries, waits here until each node
whose heartbeat is current has read past the last of them, on the writer
thread, so the acknowledgements of that batch wait and the loop does not.
A node that does not catch up within `timeout` (it is dying, its heartbeat
not yet expired) is given up on, logged once per episode.
"""

from __future__ import annotations

import logging
import time

import redis

from midge.cluster.keys import Keys

log = logging.getLogger("midge.cluster")

POLL_SECONDS = 0.0005


def entry_position(entry_id: bytes | str) -> tuple[int, int]:
    raw = entry_id.encode() if isinstance(entry_id, str) else entry_id
    ms, _, seq = raw.partition(b"-")
    return int(ms or 0), int(seq or 0)


def wait_until_read(
    client: redis.Redis, keys: Keys, node: str, entry_id: bytes | str, timeout: float
) -> bool:
    """Wait until every other live node has read the change log up to
    `entry_id`; False if one had not within `timeout`. Raises RedisError."""
    target = entry_position(entry_id)
    deadline = time.monotonic() + timeout
    while True:
        behind = _behind(client, keys, node, target)
        if not behind:
            return True
        if time.monotonic() >= deadline:
            log.warning(
                "cluster: nodes %s have not read the change log for %.1f s: acknowledging anyway",
                ", ".join(sorted(behind)),
                timeout,
            )
            return False
        time.sleep(POLL_SECONDS)


def _behind(client: redis.Redis, keys: Keys, node: str, target: tuple[int, int]) -> list[str]:
    positions: dict[bytes, bytes] = client.hgetall(keys.positions)  # type: ignore[assignment]
    laggards = [
        name.decode()
        for name, position in positions.items()
        if name.decode() != node and entry_position(position) < target
    ]
    if not laggards:
        return []
    pipe = client.pipeline(transaction=False)
    for name in laggards:
        pipe.exists(keys.alive(name))
    alive = pipe.execute()
    return [name for name, live in zip(laggards, alive, strict=True) if live]
