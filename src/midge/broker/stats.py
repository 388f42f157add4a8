"""The broker's counters: plain integers bumped on the hot path, read when asked."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Stats:
    """Counters since start; later published under $SYS and to Prometheus."""

    connections_accepted: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0  # every cause below
    dropped_queue_full: int = 0  # QoS 1/2 (and offline QoS 0) at a stalled or offline bound
    dropped_write_buffer: int = 0  # QoS 0 to a client whose socket buffer is full
    dropped_too_large: int = 0  # larger than a 5.0 client's Maximum Packet Size
    protocol_violations: int = 0
    internal_errors: int = 0
    backpressure_episodes: int = 0  # times a receiver fell behind and held publishers back
    publishers_held: int = 0  # publisher connections held back, over all episodes
    stalls: int = 0  # receivers that stopped acknowledging while they held publishers
