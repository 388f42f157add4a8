"""A node's heartbeat, on a thread of its own.

Liveness is not responsiveness: a node whose event loop is busy for seconds
(a flood, a big batch to deliver) is alive and will catch up, and must not
be taken for dead (reaper.py) and have its clients moved away. So the
heartbeat key is refreshed from a thread with its own Redis connection,
which the event loop's load does not delay; only a dead process (or one cut
off from Redis) stops it.
"""

from __future__ import annotations

import logging
import threading

import redis

log = logging.getLogger("midge.cluster")


class Heartbeat:
    def __init__(self, url: str, key: str, value: str, interval: float, ttl: float) -> None:
        self.key = key
        self.value = value
        self.interval = interval
        self.ttl_ms = int(ttl * 1000)
        self._client = redis.Redis.from_url(
            url, socket_timeout=interval, socket_connect_timeout=interval
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="midge-heartbeat", daemon=True)
        self.beats = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._client.set(self.key, self.value, px=self.ttl_ms)
                self.beats += 1
            except redis.RedisError as exc:  # the node's other tasks log the outage
                log.debug("cluster: heartbeat failed: %s", exc)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """End the thread (within one interval) and close its connection."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=2 * self.interval + 1)
        self._client.close()
