"""The broker's counters: plain integers bumped on the hot path, read when asked.

Every counter counts since the broker started and only goes up (gauges such
as "clients connected now" are not kept here: they are read from the
broker's tables when asked, see `broker/sys_topics.py`). Nothing here is
computed on the hot path: sums are properties, worked out by whoever reads
them ($SYS every `sys_interval` seconds, /metrics at scrape time).

What is counted where, and what does not count as client traffic:

- bytes: what a connection's front end hands over (`Connection.data_received`)
  and what it writes (`Connection.write_outbox`), one addition per read or
  write; MQTT bytes, so a WebSocket's framing and TLS are not included.
- packets: every packet the broker handles (`Broker.handle_packet` counts
  all but PUBLISH, which `handlers.handle_publish` counts by QoS in the
  branch it takes anyway) and writes (`Connection.write_outbox` adds the
  packets of each write; `Delivery._write_publish` counts each PUBLISH
  written, by QoS).
- In-process clients (`midge.Broker.publish`, `.subscribe`, `.client`, the
  HTTP API's) are real MQTT clients on a pipe and count like any other. The
  $SYS publisher is not a client: what it publishes counts nowhere on the
  receiving side, and what subscribers are sent of it counts like any other
  delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Stats:
    """Counters since start, read by $SYS (`sys_topics.py`) and /metrics by name."""

    # Connections.
    connections_accepted: int = 0  # sockets opened (every front end), CONNECT or not
    connections_total: int = 0  # CONNECTs accepted with CONNACK 0 (in-process clients too)
    # CONNECTs refused, by 5.0 reason code name in lower case ("not_authorized",
    # "bad_user_name_or_password", "server_unavailable", ...); a 3.1.1 return code
    # counts under the name of its 5.0 equivalent.
    connections_refused: dict[str, int] = field(default_factory=dict)
    auth_failures: int = 0  # logins refused: bad user name or password, not authorized, SCRAM
    clients_expired: int = 0  # offline sessions deleted when their expiry came
    clients_maximum: int = 0  # the most clients connected at once
    # Traffic.
    bytes_received: int = 0  # MQTT bytes read from clients
    bytes_sent: int = 0  # MQTT bytes written to clients
    control_packets_received: int = 0  # MQTT packets handled but PUBLISH (packets_received)
    packets_sent: int = 0  # MQTT packets of any type written
    publish_received_qos0: int = 0  # PUBLISH packets from clients, QoS 0
    publish_received_qos1: int = 0  # ... QoS 1
    publish_received_qos2: int = 0  # ... QoS 2 (a re-sent duplicate counts again)
    # (A PUBLISH that breaks a rule, and so closes its connection, is not counted.)
    publish_sent_qos0: int = 0  # PUBLISH packets written to clients, QoS 0
    publish_sent_qos1: int = 0  # ... QoS 1 (a re-send on resumption counts again)
    publish_sent_qos2: int = 0  # ... QoS 2
    publish_bytes_received: int = 0  # payload bytes of the PUBLISH packets received
    publish_bytes_sent: int = 0  # payload bytes of the PUBLISH packets written
    # Application messages routed to subscribers: accepted PUBLISHes (a QoS 2 one
    # once, at PUBLISH or at PUBREL per qos2_delivery), wills, in-process publishes;
    # not the $SYS publisher's, not what the ACL or $SYS/ refused.
    messages_received: int = 0
    # Dropped: messages_dropped is the sum of dropped_queue_full,
    # dropped_write_buffer and dropped_too_large (a message that was to reach
    # a subscriber and did not); the dropped_* after them are counted apart.
    messages_dropped: int = 0
    dropped_queue_full: int = 0  # QoS 1/2 (and offline QoS 0) at a stalled or offline bound
    dropped_write_buffer: int = 0  # QoS 0 to a client whose socket buffer is full
    dropped_too_large: int = 0  # larger than a 5.0 client's Maximum Packet Size
    dropped_expired: int = 0  # 5.0 Message Expiry Interval passed while queued
    dropped_no_subscribers: int = 0  # non-retained messages that matched no subscription
    dropped_acl: int = 0  # PUBLISHes and wills refused: by the ACL, or to $SYS/
    # Errors.
    protocol_violations: int = 0  # connections closed for breaking the protocol
    internal_errors: int = 0  # connections closed by a bug (logged with its traceback)
    # Backpressure (docs/backpressure.md).
    backpressure_episodes: int = 0  # times a receiver fell behind and held publishers back
    publishers_held: int = 0  # publisher connections held back, over all episodes
    stalls: int = 0  # receivers that stopped acknowledging while they held publishers

    @property
    def publish_received(self) -> int:
        """PUBLISH packets received from clients, every QoS."""
        return self.publish_received_qos0 + self.publish_received_qos1 + self.publish_received_qos2

    @property
    def packets_received(self) -> int:
        """MQTT packets of any type handled: PUBLISH and the others."""
        return self.publish_received + self.control_packets_received

    @property
    def publish_sent(self) -> int:
        """PUBLISH packets written to clients, every QoS."""
        return self.publish_sent_qos0 + self.publish_sent_qos1 + self.publish_sent_qos2

    @property
    def messages_sent(self) -> int:
        """PUBLISH packets written to clients (the same as `publish_sent`; kept
        under its first name)."""
        return self.publish_sent

    @property
    def connections_refused_total(self) -> int:
        """CONNECTs refused, every reason."""
        return sum(self.connections_refused.values())
